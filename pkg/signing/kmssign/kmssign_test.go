package kmssign_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/signing"
	"github.com/cohuron/deploy/pkg/signing/kmssign"
)

// fakeKMS answers the three AWS KMS calls sigstore's awskms:// signer makes
// (DescribeKey, GetPublicKey, Sign) with a real P-256 key, over TLS as the
// SDK requires. It records the calls, so the test can see the digest path.
type fakeKMS struct {
	key     *ecdsa.PrivateKey
	calls   []string
	regions []string // from each request's SigV4 credential scope
}

func (f *fakeKMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	f.calls = append(f.calls, op)
	// Credential=AKID/DATE/REGION/kms/aws4_request
	if _, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
		if parts := strings.Split(cred, "/"); len(parts) > 2 {
			f.regions = append(f.regions, parts[2])
		}
	}
	var in map[string]any
	json.NewDecoder(r.Body).Decode(&in)
	meta := map[string]any{
		"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "Enabled": true, "KeyState": "Enabled",
		"KeyUsage": "SIGN_VERIFY", "KeySpec": "ECC_NIST_P256", "CustomerMasterKeySpec": "ECC_NIST_P256",
		"SigningAlgorithms": []string{"ECDSA_SHA_256"},
	}
	var out map[string]any
	switch op {
	case "DescribeKey":
		out = map[string]any{"KeyMetadata": meta}
	case "GetPublicKey":
		der, _ := x509.MarshalPKIXPublicKey(&f.key.PublicKey)
		out = map[string]any{"KeyId": meta["KeyId"], "PublicKey": der, "KeySpec": "ECC_NIST_P256",
			"KeyUsage": "SIGN_VERIFY", "SigningAlgorithms": meta["SigningAlgorithms"]}
	case "Sign":
		if in["MessageType"] != "DIGEST" || in["SigningAlgorithm"] != "ECDSA_SHA_256" {
			http.Error(w, `{"__type":"ValidationException","message":"want a SHA-256 digest"}`, http.StatusBadRequest)
			return
		}
		digest, _ := json.Marshal(in["Message"])
		var d []byte
		json.Unmarshal(digest, &d)
		sig, err := ecdsa.SignASN1(rand.Reader, f.key, d)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		out = map[string]any{"KeyId": meta["KeyId"], "Signature": sig, "SigningAlgorithm": "ECDSA_SHA_256"}
	default:
		http.Error(w, `{"__type":"UnsupportedOperationException"}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

// TestKMSSigner signs through an awskms:// reference, the path CI takes
// with the KMS key from infra-tf, and checks the result is an ordinary
// cosign blob signature verifiable with the key's public half.
func TestKMSSigner(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeKMS{key: key}
	srv := httptest.NewTLSServer(fake)
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	t.Setenv("AWS_CA_BUNDLE", caFile)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))

	host := strings.TrimPrefix(srv.URL, "https://")
	for _, tc := range []struct{ ref, region string }{
		{"awskms://" + host + "/alias/cohuron-ci", "us-east-1"},
		// A key ARN (what infra-tf's kms_key_uri output holds) signs in
		// its own region, whatever AWS_REGION says.
		{"awskms://" + host + "/arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", "eu-west-1"},
	} {
		fake.calls, fake.regions = nil, nil
		signAndCheck(t, fake, key, tc.ref)
		for _, r := range fake.regions {
			if r != tc.region {
				t.Errorf("%s: request signed for region %s, want %s", tc.ref, r, tc.region)
			}
		}
		if len(fake.regions) == 0 {
			t.Errorf("%s: no signed request reached KMS", tc.ref)
		}
	}
}

func signAndCheck(t *testing.T, fake *fakeKMS, key *ecdsa.PrivateKey, ref string) {
	t.Helper()
	if !signing.IsKMSRef(ref) {
		t.Fatalf("IsKMSRef(%q) = false", ref)
	}
	ctx := context.Background()
	signer, err := kmssign.LoadSigner(ctx, ref, nil)
	if err != nil {
		t.Fatalf("LoadSigner(%s): %v", ref, err)
	}
	msg := []byte("apiVersion: deploy.cohuron.dev/v1\nkind: Release\n")
	sig, err := signing.Sign(ctx, signer, bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("Sign via KMS: %v (calls %v)", err, fake.calls)
	}
	pubPEM, err := signing.PublicKeyPEM(ctx, signer)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := signing.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(pub) {
		t.Fatal("public key from KMS differs from the key that signed")
	}
	if err := signing.Verify(pub, sig, bytes.NewReader(msg)); err != nil {
		t.Fatalf("KMS signature does not verify as a cosign blob signature: %v", err)
	}
	if err := signing.Verify(pub, sig, bytes.NewReader(append(msg, ' '))); err == nil {
		t.Fatal("KMS signature verified other bytes")
	}
	signed := false
	for _, c := range fake.calls {
		signed = signed || c == "Sign"
	}
	if !signed {
		t.Fatalf("no Sign call reached KMS: %v", fake.calls)
	}
}

func TestRegion(t *testing.T) {
	for ref, want := range map[string]string{
		"awskms:///arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab": "eu-west-1",
		"awskms://localhost:4566/arn:aws-us-gov:kms:us-gov-west-1:123456789012:alias/x":         "us-gov-west-1",
		"awskms:///alias/cohuron-ci":                     "",
		"awskms:///1234abcd-12ab-34cd-56ef-1234567890ab": "",
		"cosign.key": "",
	} {
		if got := kmssign.Region(ref); got != want {
			t.Errorf("Region(%q) = %q, want %q", ref, got, want)
		}
	}
}
