// Package bundle is the bundle format: a gzip-compressed tar of one
// commit's files with normalized entries (see gitbundle for how it is
// built), and its index (path, mode, size, sha256 per file), from which
// release inputs are computed. Building a bundle and reading one back
// give the same index. It does no git and no network I/O.
package bundle
