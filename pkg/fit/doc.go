// Package fit checks an environment spec against the bundle it will be
// deployed with: that every file, directory and compose service the
// manifest names is there, that build outputs and env files land inside
// the release without replacing its sources, and that input globs match
// something. What would otherwise fail on the hosts is refused when the
// release is checked or published, at the manifest field's line.
//
// It is pure: it reads the bundle only through its index and the file
// reader it is given, and never writes, runs or fetches anything.
package fit
