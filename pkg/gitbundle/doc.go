// Package gitbundle builds the reproducible bundle of a git commit with
// go-git: the tracked files of the commit (never the working tree), minus
// node_modules, .git, dist, build and the commit's .bundleignore, sorted,
// owned by 0:0 with no names, stamped with the commit time, with
// normalized modes. The same commit gives the same bytes from any clone.
// The format and its index are package bundle's; only the publisher links
// this package (and go-git).
package gitbundle
