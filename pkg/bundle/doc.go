// Package bundle builds the reproducible tar.gz of a git commit and
// indexes bundles.
//
// A bundle holds the tracked files of one commit (never the working tree),
// minus node_modules, .git, dist, build and the patterns in the commit's
// .bundleignore. Entries are sorted, owned by 0:0 with no names, stamped
// with the commit time and given normalized modes, so the same commit
// gives the same bytes from any clone. The index (path, mode, size, sha256
// per file) is what release inputs are computed from; building and reading
// a bundle give the same index.
package bundle
