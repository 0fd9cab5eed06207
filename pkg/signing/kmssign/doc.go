// Package kmssign opens signing keys held in a KMS (awskms://…) through
// sigstore's KMS support, for the publisher. It lives apart from signing
// so the agent, which only verifies, does not link the KMS clients.
package kmssign
