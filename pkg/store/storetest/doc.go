// Package storetest is the conformance suite every store.Store passes:
// the directory store always, MinIO when present (always in CI), real S3
// when COHURON_TEST_S3 names a bucket.
package storetest
