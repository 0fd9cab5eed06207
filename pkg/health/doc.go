// Package health probes a running process: an HTTP GET that must answer an
// expected status, a TCP connect, or a command that must exit 0. The agent
// uses WaitHealthy after starting a release to decide between keeping it
// and rolling back.
//
// Probes are read-only and bounded: each by its timeout, waiting by the
// check's Within measured on the injected clock. health must never follow
// a proxy or more than three redirects, read more than 64 KiB of a body,
// start a command other than through proc (with the explicit environment
// it is given), or classify its own failures: the caller decides whether a
// failed check means retry or rollback.
package health
