// Package dirstore is the store in a local directory (file:///abs/dir),
// the embedded default that needs no service. Writes are atomic (temp
// file, fsync, rename or link, fsync of the directory) and every path goes
// through os.Root, so no key can reach outside the directory.
package dirstore
