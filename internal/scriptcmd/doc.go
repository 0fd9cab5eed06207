// Package scriptcmd holds the testscript commands the end-to-end scripts
// share (cmd/publisher's and e2e's): git repositories of the sample app,
// exit codes, MinIO objects, HTTP on loopback, cosign in its own network
// namespace.
package scriptcmd
