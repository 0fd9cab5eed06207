package signing_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/cohuron/deploy/pkg/signing"
)

const password = "correct horse battery staple"

type keyPair struct {
	priv, pub []byte
	signer    signing.Signer
}

var (
	pairOnce sync.Once
	pair     keyPair
	pairErr  error
)

// testPair is a throwaway encrypted key pair shared by the tests.
func testPair(t testing.TB) keyPair {
	t.Helper()
	pairOnce.Do(func() {
		pair.priv, pair.pub, pairErr = signing.GenerateKeyPair(signing.StaticPass([]byte(password)))
		if pairErr == nil {
			pair.signer, pairErr = signing.SignerFromPEM(pair.priv, signing.StaticPass([]byte(password)))
		}
	})
	if pairErr != nil {
		t.Fatal(pairErr)
	}
	return pair
}

func pemType(t *testing.T, b []byte) string {
	t.Helper()
	blk, rest := pem.Decode(b)
	if blk == nil {
		t.Fatalf("not PEM: %q", b)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Errorf("trailing data after PEM block")
	}
	return blk.Type
}

func TestKeyPairRoundTrip(t *testing.T) {
	kp := testPair(t)
	if got := pemType(t, kp.priv); got != "ENCRYPTED SIGSTORE PRIVATE KEY" {
		t.Errorf("private key PEM type = %q, want ENCRYPTED SIGSTORE PRIVATE KEY (cosign's)", got)
	}
	if got := pemType(t, kp.pub); got != "PUBLIC KEY" {
		t.Errorf("public key PEM type = %q", got)
	}
	if bytes.Contains(kp.priv, []byte(password)) {
		t.Errorf("private key PEM contains the password")
	}

	pubPEM, err := signing.PublicKeyPEM(context.Background(), kp.signer)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pubPEM, kp.pub) {
		t.Errorf("PublicKeyPEM of the decrypted key differs from the generated public key")
	}
	pub, err := signing.ParsePublicKey(kp.pub)
	if err != nil {
		t.Fatal(err)
	}
	if ec, ok := pub.(*ecdsa.PublicKey); !ok || ec.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want ECDSA P-256", pub)
	}

	// A second pair is a different key.
	_, pub2, err := signing.GenerateKeyPair(signing.StaticPass([]byte(password)))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(pub2, kp.pub) {
		t.Errorf("two generated key pairs share a public key")
	}
}

func TestWrongPassword(t *testing.T) {
	kp := testPair(t)
	for _, pw := range []string{"wrong password", "", password + " "} {
		_, err := signing.SignerFromPEM(kp.priv, signing.StaticPass([]byte(pw)))
		if err == nil {
			t.Fatalf("password %q accepted", pw)
		}
		msg := err.Error()
		if !strings.Contains(msg, "decoding private key") || !strings.Contains(msg, "COSIGN_PASSWORD") {
			t.Errorf("error %q does not say what went wrong", msg)
		}
		if pw != "" && strings.Contains(msg, pw) || strings.Contains(msg, password) {
			t.Errorf("error %q contains a password", msg)
		}
	}
	passErr := errors.New("no terminal")
	if _, err := signing.SignerFromPEM(kp.priv, func(bool) ([]byte, error) { return nil, passErr }); err == nil {
		t.Errorf("a failing PassFunc was ignored")
	}
}

func TestSignerFromPEMRejectsOtherKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err = x509.MarshalPKCS8PrivateKey(p384)
	if err != nil {
		t.Fatal(err)
	}
	p384PEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for name, in := range map[string][]byte{
		"RSA":        rsaPEM,
		"P-384":      p384PEM,
		"garbage":    []byte("not a key"),
		"public key": testPair(t).pub,
	} {
		if _, err := signing.SignerFromPEM(in, signing.StaticPass(nil)); err == nil {
			t.Errorf("%s accepted as a signing key", name)
		}
	}
}

func TestLoadSigner(t *testing.T) {
	kp := testPair(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "cosign.key")
	if err := os.WriteFile(keyFile, kp.priv, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := signing.LoadSigner(ctx, keyFile, signing.StaticPass([]byte(password)))
	if err != nil {
		t.Fatal(err)
	}
	if pubPEM, err := signing.PublicKeyPEM(ctx, s); err != nil || !bytes.Equal(pubPEM, kp.pub) {
		t.Errorf("LoadSigner gave another key (%v)", err)
	}

	tests := []struct {
		name, ref, msg string
		notExist       bool
	}{
		{name: "unknown KMS scheme", ref: "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", msg: "expected a key file path or awskms://"},
		{name: "hashivault", ref: "hashivault://key", msg: "expected a key file path or awskms://"},
		{name: "URL", ref: "https://example.com/cosign.key", msg: "expected a key file path"},
		{name: "missing file", ref: filepath.Join(dir, "missing.key"), msg: "reading signing key", notExist: true},
		{name: "wrong password", ref: keyFile, msg: "decoding private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pass := signing.StaticPass([]byte(password))
			if tt.name == "wrong password" {
				pass = signing.StaticPass([]byte("nope"))
			}
			_, err := signing.LoadSigner(ctx, tt.ref, pass)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q, want it to contain %q", err, tt.msg)
			}
			if tt.notExist != errors.Is(err, os.ErrNotExist) {
				t.Errorf("errors.Is(err, os.ErrNotExist) = %v, want %v", !tt.notExist, tt.notExist)
			}
		})
	}

	for ref, want := range map[string]bool{
		"awskms:///alias/cohuron-release": true,
		"awskms://localhost:4566/alias/x": true,
		"cosign.key":                      false,
		"gcpkms://x":                      false,
		"/keys/awskms://x":                false,
	} {
		if got := signing.IsKMSRef(ref); got != want {
			t.Errorf("IsKMSRef(%q) = %v, want %v", ref, got, want)
		}
	}
}

func TestSignVerify(t *testing.T) {
	kp := testPair(t)
	pub, err := signing.ParsePublicKey(kp.pub)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("apiVersion: deploy.cohuron.dev/v1\nkind: Release\n")
	sig, err := signing.Sign(context.Background(), kp.signer, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}

	// The cosign blob format: base64 of an ASN.1 ECDSA signature over the
	// SHA-256 of the bytes, checkable without this package.
	raw, err := base64.StdEncoding.DecodeString(string(sig))
	if err != nil {
		t.Fatalf("signature is not standard base64: %v", err)
	}
	sum := sha256.Sum256(data)
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), sum[:], raw) {
		t.Errorf("signature is not ASN.1 ECDSA over SHA-256 of the data")
	}

	if err := signing.Verify(pub, sig, bytes.NewReader(data)); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if err := signing.VerifyDigest(pub, sig, sum[:]); err != nil {
		t.Errorf("VerifyDigest: %v", err)
	}
	// cosign writes the .sig file without a newline, editors add one.
	if err := signing.Verify(pub, append(bytes.Clone(sig), '\n'), bytes.NewReader(data)); err != nil {
		t.Errorf("Verify with a trailing newline: %v", err)
	}

	flippedData := bytes.Clone(data)
	flippedData[3] ^= 1
	flippedSum := sum
	flippedSum[31] ^= 1
	flippedRaw := bytes.Clone(raw)
	flippedRaw[len(flippedRaw)-1] ^= 1
	flippedSig := []byte(base64.StdEncoding.EncodeToString(flippedRaw))
	_, otherPub, err := signing.GenerateKeyPair(signing.StaticPass([]byte("other")))
	if err != nil {
		t.Fatal(err)
	}
	other, err := signing.ParsePublicKey(otherPub)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		verify func() error
		msg    string
	}{
		{"flipped byte in data", func() error { return signing.Verify(pub, sig, bytes.NewReader(flippedData)) }, ""},
		{"truncated data", func() error { return signing.Verify(pub, sig, bytes.NewReader(data[:len(data)-1])) }, ""},
		{"flipped byte in signature", func() error { return signing.Verify(pub, flippedSig, bytes.NewReader(data)) }, ""},
		{"flipped byte in digest", func() error { return signing.VerifyDigest(pub, sig, flippedSum[:]) }, ""},
		{"short digest", func() error { return signing.VerifyDigest(pub, sig, sum[:16]) }, ""},
		{"other key", func() error { return signing.Verify(other, sig, bytes.NewReader(data)) }, ""},
		{"not base64", func() error { return signing.Verify(pub, []byte("%%% not base64 %%%"), bytes.NewReader(data)) }, "not base64"},
		{"URL-safe base64", func() error {
			return signing.Verify(pub, []byte(strings.NewReplacer("+", "-", "/", "_").Replace(string(sig))+"-_"), bytes.NewReader(data))
		}, "not base64"},
		{"empty", func() error { return signing.Verify(pub, nil, bytes.NewReader(data)) }, "signature is empty"},
		{"whitespace only", func() error { return signing.Verify(pub, []byte(" \n"), bytes.NewReader(data)) }, "signature is empty"},
		{"base64 of garbage", func() error {
			return signing.Verify(pub, []byte(base64.StdEncoding.EncodeToString([]byte("garbage"))), bytes.NewReader(data))
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.verify()
			if !errors.Is(err, signing.ErrBadSignature) {
				t.Fatalf("error = %v, want ErrBadSignature", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error = %q, want it to contain %q", err, tt.msg)
			}
		})
	}

	// A key we cannot verify with is an error, not a panic nor a pass.
	if err := signing.Verify(nil, sig, bytes.NewReader(data)); err == nil {
		t.Errorf("Verify with a nil key passed")
	}
}

func TestParsePublicKey(t *testing.T) {
	kp := testPair(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(pub any) []byte {
		b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		in   []byte
		msg  string // "" for accepted
	}{
		{"P-256", kp.pub, ""},
		{"P-256 with surrounding whitespace", append(append([]byte("\n  \n"), kp.pub...), "\n\n"...), ""},
		{"P-384", pemOf(p384.Public()), "expected ECDSA P-256"},
		{"RSA", pemOf(rsaKey.Public()), "expected ECDSA P-256"},
		{"Ed25519", pemOf(edPub), "expected ECDSA P-256"},
		{"garbage", []byte("not a key"), "decoding public key"},
		{"empty", nil, "decoding public key"},
		{"private key", kp.priv, "decoding public key"},
		{"corrupt body", bytes.Replace(kp.pub, []byte("PUBLIC KEY-----\n"), []byte("PUBLIC KEY-----\nAAAA"), 1), "decoding public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, err := signing.ParsePublicKey(tt.in)
			if tt.msg == "" {
				if err != nil || pub == nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %T", pub)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error = %q, want it to contain %q", err, tt.msg)
			}
		})
	}
}
