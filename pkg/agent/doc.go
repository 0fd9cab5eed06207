// Package agent makes a host match the latest signed release: poll the
// store cheaply, verify before parsing, plan, converge (fetch, extract,
// env files, atomic switch of the root, restart, health checks) and roll
// back automatically to the previous release on any failure after the
// switch. Every phase is journaled, so after a crash the host ends wholly
// on the old release or the new one.
//
// The release tree lives in <backups>/releases/<id>; the root
// (/opt/cohuron) is a symlink switched with one rename. The agent never
// runs a child process itself (proc does), never parses unverified
// bytes, and never deletes the last good release.
package agent
