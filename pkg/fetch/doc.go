// Package fetch downloads a release's bundle with hashicorp/go-getter,
// restricted to what the trust policy allows: only the store's own
// schemes (file, s3) through getters that read from the store, no forced
// getters ("git::…"), no detectors, no automatic decompression, and never
// more bytes than the signed size. Verification of the bytes is the
// caller's (release.VerifyBundleStream).
package fetch
