// Package tree clones and re-owns directory trees without copying file
// contents: LinkClone recreates a tree with hard links (how a release
// reuses the previous release's node_modules or build outputs), Chown
// hands a tree to the application user, WriteFile writes a file into one
// (an env file into the running release, as root).
//
// Both walk by directory file descriptor and open nothing through a
// symlink, so a tree written by the (less trusted) application user
// cannot redirect them outside it, even by swapping a directory for a
// symlink while they run. tree must never follow a symlink, copy or
// create devices, fifos or sockets, or leave a half-built clone at the
// destination: a clone is built in a temporary sibling and renamed into
// place only when complete.
package tree
