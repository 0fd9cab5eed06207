// Package signing makes and checks detached cosign blob signatures:
// base64 of an ASN.1 ECDSA P-256 signature over the SHA-256 of the bytes,
// interchangeable with `cosign sign-blob` / `cosign verify-blob`.
//
// Keys are cosign key pairs (an "ENCRYPTED SIGSTORE PRIVATE KEY" PEM
// sealed with a password, and a PKIX public key) or KMS references
// (awskms://…) through sigstore's KMS support. It never logs or returns
// key material or passwords in errors.
package signing
