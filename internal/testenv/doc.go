// Package testenv gives tests the real components they need: a MinIO
// server on a free loopback port, the cosign CLI, git repositories,
// PostgreSQL, a private Docker engine and, since no image registry is
// reachable, stand-in images for the app's Compose services. A
// missing component skips the test on a developer machine and fails it
// under CI=true, so CI can never go green by skipping.
//
// Binaries are looked up in $COHURON_TEST_BIN, then in the cache that
// scripts/install-test-deps.sh fills (~/.cache/cohuron-test/bin), then
// on PATH.
package testenv
