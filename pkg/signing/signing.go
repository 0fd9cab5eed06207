package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

// PassFunc returns the password of an encrypted private key.
type PassFunc = cryptoutils.PassFunc

// StaticPass returns a PassFunc that always answers pw.
func StaticPass(pw []byte) PassFunc {
	return func(bool) ([]byte, error) { return pw, nil }
}

// GenerateKeyPair returns a new ECDSA P-256 key pair as cosign writes it:
// the private key encrypted with the password, the public key as PEM.
func GenerateKeyPair(pass PassFunc) (privPEM, pubPEM []byte, err error) {
	return cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), pass)
}

// Signer signs blobs and knows its public key.
type Signer interface {
	signature.Signer
}

// IsKMSRef reports whether ref names a KMS key rather than a key file.
func IsKMSRef(ref string) bool {
	return strings.HasPrefix(ref, "awskms://")
}

// LoadSigner opens a key file (cosign.key). KMS references are opened by
// kmssign.LoadSigner, kept apart so hosts that only verify do not link the
// KMS clients. pass is asked only for an encrypted key file.
func LoadSigner(ctx context.Context, ref string, pass PassFunc) (Signer, error) {
	if IsKMSRef(ref) {
		return nil, fmt.Errorf("key reference %s: KMS keys are opened with kmssign.LoadSigner", ref)
	}
	if strings.Contains(ref, "://") {
		return nil, fmt.Errorf("key reference %q: expected a key file path or awskms://…", ref)
	}
	pemBytes, err := os.ReadFile(ref)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	return SignerFromPEM(pemBytes, pass)
}

// SignerFromPEM decodes a cosign private key (encrypted or not).
func SignerFromPEM(pemBytes []byte, pass PassFunc) (Signer, error) {
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, pass)
	if err != nil {
		// The library's message may say "decryption failed"; keep it, it
		// holds no secret, and say what we expected.
		return nil, fmt.Errorf("decoding private key (expected a cosign key encrypted with COSIGN_PASSWORD): %w", err)
	}
	ec, ok := priv.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("private key is %T; expected ECDSA P-256 as cosign generates", priv)
	}
	return signature.LoadECDSASignerVerifier(ec, crypto.SHA256)
}

// Sign returns the base64 cosign blob signature of data.
func Sign(ctx context.Context, s Signer, data io.Reader) ([]byte, error) {
	raw, err := s.SignMessage(data, options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	out := make([]byte, base64.StdEncoding.EncodedLen(len(raw)))
	base64.StdEncoding.Encode(out, raw)
	return out, nil
}

// PublicKey returns the public key of a signer.
func PublicKey(ctx context.Context, s Signer) (crypto.PublicKey, error) {
	pub, err := s.PublicKey(options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading public key: %w", err)
	}
	return pub, nil
}

// PublicKeyPEM returns the PEM public key of a signer.
func PublicKeyPEM(ctx context.Context, s Signer) ([]byte, error) {
	pub, err := s.PublicKey(options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading public key: %w", err)
	}
	return cryptoutils.MarshalPublicKeyToPEM(pub)
}

// ParsePublicKey decodes a PEM public key and checks it is one we verify:
// ECDSA P-256.
func ParsePublicKey(pemBytes []byte) (crypto.PublicKey, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(bytes.TrimSpace(pemBytes))
	if err != nil {
		return nil, fmt.Errorf("decoding public key (expected a PEM \"PUBLIC KEY\" block): %w", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("public key is %T; expected ECDSA P-256", pub)
	}
	return pub, nil
}

// ErrBadSignature is returned (wrapped) when a signature does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// Verify checks a base64 cosign blob signature of data against pub.
func Verify(pub crypto.PublicKey, sigB64 []byte, data io.Reader) error {
	return verify(pub, sigB64, data)
}

func verify(pub crypto.PublicKey, sigB64 []byte, data io.Reader, opts ...signature.VerifyOption) error {
	sigB64 = bytes.TrimSpace(sigB64)
	if len(sigB64) == 0 {
		return fmt.Errorf("%w: signature is empty", ErrBadSignature)
	}
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(sigB64)))
	n, err := base64.StdEncoding.Decode(raw, sigB64)
	if err != nil {
		return fmt.Errorf("%w: signature is not base64: %w", ErrBadSignature, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("loading verifier: %w", err)
	}
	if err := v.VerifySignature(bytes.NewReader(raw[:n]), data, opts...); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return nil
}

// VerifyDigest checks a signature against a SHA-256 digest computed while
// streaming, so a large bundle need not be read twice.
func VerifyDigest(pub crypto.PublicKey, sigB64 []byte, sha256Digest []byte) error {
	return verify(pub, sigB64, bytes.NewReader(nil), options.WithDigest(sha256Digest))
}
