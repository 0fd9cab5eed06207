// Package reliability records what the proving-ground tests prove — each
// fault or attack, the defense, the test and whether it passed — so that
// docs/RELIABILITY.md is generated from a test run instead of typed by
// hand (make reliability; cmd/report renders it).
//
// Recording is off unless COHURON_RELIABILITY_OUT names a directory; it
// never changes what a test checks.
package reliability
