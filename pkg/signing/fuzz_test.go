package signing_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/cohuron/deploy/pkg/signing"
)

// FuzzVerify: signatures that were not made by the key never verify, and
// no input makes Verify or VerifyDigest panic.
func FuzzVerify(f *testing.F) {
	kp := testPair(f)
	pub, err := signing.ParsePublicKey(kp.pub)
	if err != nil {
		f.Fatal(err)
	}
	signed := []byte("apiVersion: deploy.cohuron.dev/v1\nkind: Release\nseq: 1\n")
	sig, err := signing.Sign(context.Background(), kp.signer, bytes.NewReader(signed))
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(string(sig))
	signedSum := sha256.Sum256(signed)

	f.Add(sig, []byte("apiVersion: deploy.cohuron.dev/v1\nkind: Release\nseq: 2\n"))
	f.Add(sig[:len(sig)-4], signed)
	f.Add(raw, signed)
	f.Add([]byte(base64.StdEncoding.EncodeToString(raw[:len(raw)/2])), signed)
	f.Add([]byte(""), []byte(""))
	f.Add([]byte("MEUCIQ=="), []byte("x"))
	f.Add([]byte("====\n"), []byte{0})

	f.Fuzz(func(t *testing.T, sig, data []byte) {
		err := signing.Verify(pub, sig, bytes.NewReader(data))
		if err == nil && !bytes.Equal(data, signed) {
			t.Fatalf("signature %q verifies data %q that the key never signed", sig, data)
		}
		if err != nil && !errors.Is(err, signing.ErrBadSignature) {
			t.Fatalf("error %v is not ErrBadSignature", err)
		}
		sum := sha256.Sum256(data)
		derr := signing.VerifyDigest(pub, sig, sum[:])
		if (derr == nil) != (err == nil) {
			t.Fatalf("Verify says %v, VerifyDigest says %v", err, derr)
		}
		// Any bytes as a digest, including the wrong length.
		if err := signing.VerifyDigest(pub, sig, data); err == nil && !bytes.Equal(data, signedSum[:]) {
			t.Fatalf("signature %q verifies digest %x that the key never signed", sig, data)
		}
	})
}
