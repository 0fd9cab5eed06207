// Package e2e holds the end-to-end tests: the real publisher and agent
// binaries, a real MinIO store, real PM2 running the Node sample app from
// testdata/sampleapp, driven by testscript scripts in testdata/.
package e2e
