package trust_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"gopkg.in/yaml.v3"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/manifest/manifesttest"
	"github.com/cohuron/deploy/pkg/signing"
	"github.com/cohuron/deploy/pkg/strictyaml"
	"github.com/cohuron/deploy/pkg/trust"
)

// testKey is a throwaway cosign key pair.
type testKey struct {
	name   string
	signer signing.Signer
	pub    []byte
}

var (
	keysOnce sync.Once
	keys     map[string]testKey
)

// keyNames are the signers tests use; "mallory" is never in a policy.
var keyNames = []string{"ci", "release-manager", "security", "mallory"}

func testKeys(t testing.TB) map[string]testKey {
	t.Helper()
	keysOnce.Do(func() {
		keys = map[string]testKey{}
		for _, name := range keyNames {
			priv, pub, err := signing.GenerateKeyPair(signing.StaticPass([]byte("test-" + name)))
			if err != nil {
				panic(err)
			}
			s, err := signing.SignerFromPEM(priv, signing.StaticPass([]byte("test-"+name)))
			if err != nil {
				panic(err)
			}
			keys[name] = testKey{name: name, signer: s, pub: pub}
		}
	})
	return keys
}

// readTestKey serves publicKeyFile NAME.pub from the test keys.
func readTestKey(t testing.TB) func(string) ([]byte, error) {
	ks := testKeys(t)
	return func(p string) ([]byte, error) {
		if k, ok := ks[strings.TrimSuffix(p, ".pub")]; ok {
			return k.pub, nil
		}
		return nil, os.ErrNotExist
	}
}

// basePolicy is a valid policy; tests mutate it and expect problems at
// these lines.
const basePolicy = `apiVersion: deploy.cohuron.dev/v1
kind: TrustPolicy
metadata:
  name: prod
spec:
  signers:
    - name: ci
      publicKeyFile: ci.pub
    - name: release-manager
      publicKeyFile: release-manager.pub
  threshold: 1
  environments: [prod, staging]
  branches: [main]
  limits:
    manifestBytes: 64KiB
    bundleBytes: 1MiB
    files: 100
    unpackedBytes: 4MiB
  maxAge: 720h
`

const (
	lineKind        = 2
	lineMetadata    = 3
	lineSigners     = 6
	lineSigner0     = 7
	lineSigner1     = 9
	lineSigner1File = 10
	lineThreshold   = 11
	lineEnvs        = 12
	lineBranches    = 13
	lineManifest    = 15
	lineBundle      = 16
	lineFiles       = 17
	lineMaxAge      = 19
)

func mutatePolicy(t testing.TB, old, new string) []byte {
	t.Helper()
	if n := strings.Count(basePolicy, old); n != 1 {
		t.Fatalf("%q occurs %d times in basePolicy, want 1", old, n)
	}
	return []byte(strings.Replace(basePolicy, old, new, 1))
}

// policyFor returns a parsed policy trusting the named test keys.
func policyFor(t testing.TB, threshold int, names ...string) *trust.Policy {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: deploy.cohuron.dev/v1\nkind: TrustPolicy\nmetadata:\n  name: test\nspec:\n  signers:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "    - name: %s\n      publicKeyFile: %s.pub\n", n, n)
	}
	fmt.Fprintf(&b, "  threshold: %d\n", threshold)
	b.WriteString(strings.SplitN(basePolicy, "  threshold: 1\n", 2)[1])
	p, err := trust.Parse("policy.yaml", []byte(b.String()), readTestKey(t))
	if err != nil {
		t.Fatalf("parsing test policy: %v\n%s", err, b.String())
	}
	if p.KeysLoaded() != len(names) {
		t.Fatalf("KeysLoaded = %d, want %d", p.KeysLoaded(), len(names))
	}
	return p
}

func marshalRelease(t testing.TB, rel *manifest.Release) []byte {
	t.Helper()
	raw, err := yaml.Marshal(rel)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func sign(t testing.TB, name string, data []byte) []byte {
	t.Helper()
	sig, err := signing.Sign(context.Background(), testKeys(t)[name].signer, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// wantRejected checks err is a *trust.VerificationError for check, and
// classified as rejected input (exit code 3).
func wantRejected(t *testing.T, err error, check string) *trust.VerificationError {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want rejected by %q", check)
	}
	var ve *trust.VerificationError
	if !errors.As(err, &ve) {
		t.Fatalf("error is %T (%v), want *trust.VerificationError", err, err)
	}
	if ve.Check != check {
		t.Errorf("Check = %q, want %q (%v)", ve.Check, check, err)
	}
	if code := fault.ExitCode(err); code != fault.ExitRejected {
		t.Errorf("ExitCode = %d, want %d", code, fault.ExitRejected)
	}
	if k := fault.KindOf(fmt.Errorf("verifying: %w", err)); k != fault.KindRejected {
		t.Errorf("KindOf(wrapped) = %s, want rejected", k)
	}
	if !strings.HasPrefix(err.Error(), "release rejected: "+check) {
		t.Errorf("Error() = %q", err)
	}
	return ve
}

const relName = "prod/7.yaml"

const sigCheck = "release manifest " + relName + " signature"

func TestVerifyRelease(t *testing.T) {
	now := manifesttest.Now
	p1 := policyFor(t, 1, "ci", "release-manager")

	type tc struct {
		name   string
		policy *trust.Policy
		mutate func(*manifest.Release)   // before signing
		sign   func(raw []byte) [][]byte // default: signed by ci
		tamper func(raw []byte) []byte   // after signing
		expect func(e *trust.Expect)     // default: Env prod, Now now
		check  string                    // "" for accepted
		after  func(*testing.T, *trust.VerificationError)
	}
	by := func(names ...string) func([]byte) [][]byte {
		return func(raw []byte) [][]byte {
			var sigs [][]byte
			for _, n := range names {
				sigs = append(sigs, sign(t, n, raw))
			}
			return sigs
		}
	}
	notYAML := []byte("this: [is not a release\n")
	tests := []tc{
		{name: "valid"},
		{name: "valid, signed by the second signer", sign: by("release-manager")},
		{name: "valid among bad signatures", sign: func(raw []byte) [][]byte {
			return [][]byte{[]byte("garbage"), sign(t, "mallory", raw), sign(t, "ci", raw)}
		}},
		{name: "valid with trailing newline in signature", sign: func(raw []byte) [][]byte {
			return [][]byte{append(sign(t, "ci", raw), '\n')}
		}},
		{name: "missing signature", sign: func([]byte) [][]byte { return nil }, check: sigCheck,
			after: func(t *testing.T, ve *trust.VerificationError) {
				if ve.Found != "no signature" {
					t.Errorf("Found = %q, want no signature", ve.Found)
				}
			}},
		{name: "empty signature", sign: func([]byte) [][]byte { return [][]byte{{}} }, check: sigCheck,
			after: func(t *testing.T, ve *trust.VerificationError) {
				if !errors.Is(ve, signing.ErrBadSignature) {
					t.Errorf("error does not wrap ErrBadSignature: %v", ve)
				}
			}},
		{name: "not base64", sign: func([]byte) [][]byte { return [][]byte{[]byte("!!not base64!!")} }, check: sigCheck},
		{name: "signature by an untrusted key", sign: by("mallory"), check: sigCheck},
		{name: "signature over other bytes", sign: func([]byte) [][]byte {
			return [][]byte{sign(t, "ci", []byte("some other release"))}
		}, check: sigCheck},
		{name: "one flipped byte in the manifest", tamper: func(raw []byte) []byte {
			out := bytes.Clone(raw)
			i := bytes.Index(out, []byte("seq: 7"))
			out[i+5] = '9' // seq: 9
			return out
		}, check: sigCheck},
		{name: "one flipped bit at the end", tamper: func(raw []byte) []byte {
			out := bytes.Clone(raw)
			out[len(out)-2] ^= 1
			return out
		}, check: sigCheck},
		{name: "appended bytes", tamper: func(raw []byte) []byte {
			return append(bytes.Clone(raw), "# trailing comment\n"...)
		}, check: sigCheck},
		{name: "wrong env for this host", expect: func(e *trust.Expect) { e.Env = "staging" }, check: "environment",
			after: func(t *testing.T, ve *trust.VerificationError) {
				if !strings.Contains(ve.Found, `"prod"`) || !strings.Contains(ve.Expected, `"staging"`) {
					t.Errorf("Expected %q / Found %q", ve.Expected, ve.Found)
				}
			}},
		{name: "env not in policy", mutate: func(r *manifest.Release) { r.Env = "dev" }, expect: func(e *trust.Expect) { e.Env = "dev" }, check: "environment"},
		{name: "env not in policy, host env unset", mutate: func(r *manifest.Release) { r.Env = "dev" }, expect: func(e *trust.Expect) { e.Env = "" }, check: "environment"},
		{name: "branch not allowed", mutate: func(r *manifest.Release) { r.Source.Branch = "feature/x" }, check: "branch"},
		{name: "branch wildcard in release does not match", mutate: func(r *manifest.Release) { r.Source.Branch = "*" }, check: "branch"},
		{name: "expired", expect: func(e *trust.Expect) { e.Now = manifesttest.Release().ExpiresAt.Add(time.Second) }, check: "expiry"},
		{name: "expires exactly now", expect: func(e *trust.Expect) { e.Now = manifesttest.Release().ExpiresAt }, check: "expiry"},
		{name: "expired but allowed", expect: func(e *trust.Expect) {
			e.Now = manifesttest.Release().ExpiresAt.Add(time.Hour)
			e.AllowExpired = true
		}},
		{name: "no clock", expect: func(e *trust.Expect) { e.Now = time.Time{} }, check: "expiry"},
		{name: "issued in the future beyond skew", mutate: func(r *manifest.Release) { r.IssuedAt = now.Add(10 * time.Minute) }, check: "issue time"},
		{name: "issued in the future within skew", mutate: func(r *manifest.Release) { r.IssuedAt = now.Add(4 * time.Minute) }},
		{name: "issued in the future beyond a custom skew", mutate: func(r *manifest.Release) { r.IssuedAt = now.Add(2 * time.Minute) },
			expect: func(e *trust.Expect) { e.ClockSkew = time.Minute }, check: "issue time"},
		{name: "maxAge exceeded", mutate: func(r *manifest.Release) { r.IssuedAt = now.Add(-721 * time.Hour) }, check: "age"},
		{name: "maxAge exceeded but expiry allowed", mutate: func(r *manifest.Release) { r.IssuedAt = now.Add(-721 * time.Hour) },
			expect: func(e *trust.Expect) { e.AllowExpired = true }},
		{name: "replay of a lower seq", expect: func(e *trust.Expect) { e.Last = trust.Applied{Seq: 8, Digest: strings.Repeat("0", 64)} }, check: "replay"},
		{name: "same seq, other bytes", expect: func(e *trust.Expect) { e.Last = trust.Applied{Seq: 7, Digest: strings.Repeat("0", 64)} }, check: "replay"},
		{name: "same seq, same bytes", expect: func(e *trust.Expect) {
			e.Last = trust.Applied{Seq: 7, Digest: sha256hex(marshalRelease(t, manifesttest.Release()))}
		}},
		{name: "fast-forward past limits.maxSeqJump", mutate: func(r *manifest.Release) { r.Seq = 6 + trust.DefaultMaxSeqJump + 1 },
			expect: func(e *trust.Expect) { e.Last = trust.Applied{Seq: 6, Digest: strings.Repeat("0", 64)} }, check: "seq jump"},
		{name: "jump of exactly limits.maxSeqJump", mutate: func(r *manifest.Release) { r.Seq = 6 + trust.DefaultMaxSeqJump },
			expect: func(e *trust.Expect) { e.Last = trust.Applied{Seq: 6, Digest: strings.Repeat("0", 64)} }},
		{name: "first release may have any seq", mutate: func(r *manifest.Release) { r.Seq = 1 << 40 }},
		{name: "higher seq than applied", expect: func(e *trust.Expect) { e.Last = trust.Applied{Seq: 6, Digest: strings.Repeat("0", 64)} }},
		{name: "bundle over size limit", mutate: func(r *manifest.Release) { r.Bundle.Size = 1<<20 + 1 }, check: "bundle size"},
		{name: "bundle at size limit", mutate: func(r *manifest.Release) { r.Bundle.Size = 1 << 20 }},
		{name: "bundle over file limit", mutate: func(r *manifest.Release) { r.Bundle.Files = 101 }, check: "bundle file count"},
		{name: "bundle over unpacked limit", mutate: func(r *manifest.Release) { r.Bundle.Unpacked = 4<<20 + 1 }, check: "bundle unpacked size"},
		{name: "manifest over limits.manifestBytes", mutate: func(r *manifest.Release) { r.Source.Message = strings.Repeat("x", 64<<10) }, check: "manifest size"},
		{name: "signed but invalid release", mutate: func(r *manifest.Release) { r.Seq = 0 }, check: "release manifest",
			after: func(t *testing.T, ve *trust.VerificationError) {
				var se *strictyaml.Error
				if !errors.As(ve, &se) || !strings.Contains(se.Error(), "seq: must be 1 or more") {
					t.Errorf("cause = %v, want the strictyaml problem", ve.Err)
				}
			}},
		{name: "signed but not YAML", sign: func([]byte) [][]byte { return [][]byte{sign(t, "ci", notYAML)} },
			tamper: func([]byte) []byte { return notYAML }, check: "release manifest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.policy
			if p == nil {
				p = p1
			}
			rel := manifesttest.Release()
			if tt.mutate != nil {
				tt.mutate(rel)
			}
			raw := marshalRelease(t, rel)
			sigs := by("ci")(raw)
			if tt.sign != nil {
				sigs = tt.sign(raw)
			}
			if tt.tamper != nil {
				raw = tt.tamper(raw)
			}
			exp := trust.Expect{Env: "prod", Now: now}
			if tt.expect != nil {
				tt.expect(&exp)
			}
			got, signers, err := p.VerifyRelease(relName, raw, sigs, exp)
			if tt.check == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if got == nil || got.Seq != rel.Seq || got.Env != rel.Env {
					t.Errorf("returned release %+v", got)
				}
				if len(signers) != 1 {
					t.Errorf("signers = %v, want one", signers)
				}
				return
			}
			if got != nil || signers != nil {
				t.Errorf("returned a release or signers with an error")
			}
			ve := wantRejected(t, err, tt.check)
			if tt.after != nil {
				tt.after(t, ve)
			}
		})
	}
}

func TestVerifyReleaseThreshold(t *testing.T) {
	p := policyFor(t, 2, "ci", "release-manager", "security")
	raw := marshalRelease(t, manifesttest.Release())
	exp := trust.Expect{Env: "prod", Now: manifesttest.Now}
	tests := []struct {
		name    string
		signers []string
		ok      bool
	}{
		{"one of three", []string{"ci"}, false},
		{"one valid, one untrusted", []string{"ci", "mallory"}, false},
		{"the same signer twice", []string{"ci", "ci"}, false},
		{"two of three", []string{"ci", "security"}, true},
		{"two of three, other order", []string{"security", "release-manager"}, true},
		{"three of three", []string{"ci", "release-manager", "security"}, true},
		{"two plus an untrusted one", []string{"mallory", "ci", "release-manager"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sigs [][]byte
			for _, n := range tt.signers {
				sigs = append(sigs, sign(t, n, raw))
			}
			_, signers, err := p.VerifyRelease(relName, raw, sigs, exp)
			if !tt.ok {
				ve := wantRejected(t, err, sigCheck)
				if !strings.Contains(ve.Expected, "2 trusted signer(s)") {
					t.Errorf("Expected = %q", ve.Expected)
				}
				return
			}
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if len(signers) < 2 {
				t.Errorf("signers = %v, want at least 2", signers)
			}
			seen := map[string]bool{}
			for _, s := range signers {
				if seen[s] || s == "mallory" {
					t.Errorf("signers = %v: duplicate or untrusted", signers)
				}
				seen[s] = true
			}
		})
	}
}

func TestVerifyWithoutKeys(t *testing.T) {
	// Parsed without a key reader: the policy's format is checked, but it
	// holds no keys and must refuse everything.
	p, err := trust.Parse("policy.yaml", []byte(basePolicy), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.KeysLoaded() != 0 {
		t.Fatalf("KeysLoaded = %d, want 0", p.KeysLoaded())
	}
	raw := marshalRelease(t, manifesttest.Release())
	_, _, err = p.VerifyRelease(relName, raw, [][]byte{sign(t, "ci", raw)}, trust.Expect{Env: "prod", Now: manifesttest.Now})
	ve := wantRejected(t, err, sigCheck)
	if ve.Found != "no keys loaded" {
		t.Errorf("Found = %q", ve.Found)
	}
}

func TestVerifyDigestAndBlob(t *testing.T) {
	p := policyFor(t, 1, "ci")
	bundle := bytes.Repeat([]byte("bundle bytes "), 1000)
	sum := sha256.Sum256(bundle)
	sig := sign(t, "ci", bundle)

	if signers, err := p.VerifyDigest("bundle b.tar.gz", sum[:], [][]byte{sig}, manifesttest.Now); err != nil || len(signers) != 1 || signers[0] != "ci" {
		t.Errorf("VerifyDigest = %v, %v", signers, err)
	}
	if _, err := p.VerifyBlob("bundle b.tar.gz", bundle, [][]byte{sig}, manifesttest.Now); err != nil {
		t.Errorf("VerifyBlob: %v", err)
	}
	bad := sum
	bad[0] ^= 0x80
	_, err := p.VerifyDigest("bundle b.tar.gz", bad[:], [][]byte{sig}, manifesttest.Now)
	wantRejected(t, err, "bundle b.tar.gz signature")
	_, err = p.VerifyDigest("bundle b.tar.gz", sum[:8], [][]byte{sig}, manifesttest.Now)
	wantRejected(t, err, "bundle b.tar.gz signature")
	_, err = p.VerifyBlob("bundle b.tar.gz", bundle[1:], [][]byte{sig}, manifesttest.Now)
	wantRejected(t, err, "bundle b.tar.gz signature")
	_, err = p.VerifyBlob("bundle b.tar.gz", bundle, [][]byte{sign(t, "mallory", bundle)}, manifesttest.Now)
	wantRejected(t, err, "bundle b.tar.gz signature")
}

func TestCheckRelease(t *testing.T) {
	p := policyFor(t, 1, "ci")
	rel := manifesttest.Release()
	if err := p.CheckRelease(rel, "", trust.Expect{Env: "prod", Now: manifesttest.Now}); err != nil {
		t.Errorf("CheckRelease: %v", err)
	}
	rel.Bundle.Files = 1000
	wantRejected(t, p.CheckRelease(rel, "", trust.Expect{Env: "prod", Now: manifesttest.Now}), "bundle file count")
}

func TestForKey(t *testing.T) {
	k := testKeys(t)["ci"]
	p, err := trust.ForKey(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	if p.KeysLoaded() != 1 || !p.AllowsSource("s3") || !p.AllowsSource("file") || p.AllowsSource("http") {
		t.Errorf("ForKey policy: keys %d, sources %v", p.KeysLoaded(), p.Spec.BundleSources)
	}
	rel := manifesttest.Release()
	rel.Env, rel.Source.Branch = "anything", "any/branch"
	raw := marshalRelease(t, rel)
	if _, _, err := p.VerifyRelease(relName, raw, [][]byte{sign(t, "ci", raw)}, trust.Expect{Env: "anything", Now: manifesttest.Now}); err != nil {
		t.Errorf("single-key policy rejects a release signed by its key: %v", err)
	}
	_, _, err = p.VerifyRelease(relName, raw, [][]byte{sign(t, "mallory", raw)}, trust.Expect{Env: "anything", Now: manifesttest.Now})
	wantRejected(t, err, sigCheck)

	if _, err := trust.ForKey([]byte("not a key")); err == nil {
		t.Errorf("ForKey accepted garbage")
	}
}

// TestRepoPolicies parses the committed policies as publisher check does.
func TestRepoPolicies(t *testing.T) {
	files, err := filepath.Glob("../../policies/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no policies/*.yaml in the repository: policies/prod.yaml must be there")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := trust.Parse(f, data, trust.RepoKeyReader(f))
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if p.Spec.Threshold < 1 || len(p.Spec.Signers) < p.Spec.Threshold {
			t.Errorf("%s: threshold %d of %d signers", f, p.Spec.Threshold, len(p.Spec.Signers))
		}
	}
}

func TestParsePolicy(t *testing.T) {
	p, err := trust.Parse("policy.yaml", []byte(basePolicy), readTestKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if p.KeysLoaded() != 2 || p.Spec.Threshold != 1 {
		t.Errorf("keys %d, threshold %d", p.KeysLoaded(), p.Spec.Threshold)
	}
	lim := p.Spec.Limits
	if lim.ManifestBytes != 64<<10 || lim.BundleBytes != 1<<20 || lim.Files != 100 || lim.UnpackedBytes != 4<<20 {
		t.Errorf("limits = %+v", lim)
	}
	if p.Spec.MaxAge.Duration != 720*time.Hour {
		t.Errorf("maxAge = %s", p.Spec.MaxAge)
	}
}

func TestParsePolicySizes(t *testing.T) {
	tests := []struct {
		in   string
		want trust.ByteSize
	}{
		{"512MiB", 512 << 20},
		{"1GiB", 1 << 30},
		{"1GB", 1_000_000_000},
		{"64KiB", 64 << 10},
		{"1.5MiB", 3 << 19},
		{"1048576", 1 << 20},
		{`"2 MiB"`, 2 << 20},
	}
	for _, tt := range tests {
		data := mutatePolicy(t, "bundleBytes: 1MiB", "bundleBytes: "+tt.in)
		p, err := trust.Parse("policy.yaml", data, nil)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if got := p.Spec.Limits.BundleBytes; got != tt.want {
			t.Errorf("%s = %d, want %d", tt.in, got, tt.want)
		}
	}

	// Unset limits get the defaults.
	data := mutatePolicy(t, "  limits:\n    manifestBytes: 64KiB\n    bundleBytes: 1MiB\n    files: 100\n    unpackedBytes: 4MiB\n", "")
	p, err := trust.Parse("policy.yaml", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := trust.Limits{ManifestBytes: trust.DefaultManifestBytes, BundleBytes: trust.DefaultBundleBytes, Files: trust.DefaultFiles, UnpackedBytes: trust.DefaultUnpackedBytes, MaxSeqJump: trust.DefaultMaxSeqJump}
	if p.Spec.Limits != want {
		t.Errorf("default limits = %+v, want %+v", p.Spec.Limits, want)
	}
	if len(p.Spec.BundleSources) != 2 {
		t.Errorf("default bundleSources = %v", p.Spec.BundleSources)
	}
}

func TestParsePolicyRejects(t *testing.T) {
	ks := testKeys(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM, err := cryptoutils.MarshalPublicKeyToPEM(rsaKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384PEM, err := cryptoutils.MarshalPublicKeyToPEM(p384.Public())
	if err != nil {
		t.Fatal(err)
	}
	inline := func(pem []byte) string {
		return "publicKey: |\n        " + strings.ReplaceAll(strings.TrimSpace(string(pem)), "\n", "\n        ")
	}
	tests := []struct {
		name     string
		old, new string
		line     int
		msg      string
	}{
		{"threshold over signers", "threshold: 1", "threshold: 3", lineThreshold, "expected 1 to 2 (the number of signers), found 3"},
		{"negative threshold", "threshold: 1", "threshold: -1", lineThreshold, "expected 1 to 2"},
		{"no signers", "  signers:\n    - name: ci\n      publicKeyFile: ci.pub\n    - name: release-manager\n      publicKeyFile: release-manager.pub\n",
			"  signers: []\n", lineSigners, "trust at least one signer"},
		{"publicKey and publicKeyFile", "      publicKeyFile: release-manager.pub", "      publicKeyFile: release-manager.pub\n      publicKey: x",
			lineSigner1, "set exactly one of publicKey and publicKeyFile"},
		{"neither publicKey nor publicKeyFile", "      publicKeyFile: release-manager.pub\n", "", lineSigner1, "set exactly one"},
		{"bad PEM", "publicKeyFile: release-manager.pub", "publicKey: not a PEM key", lineSigner1, "decoding public key"},
		{"RSA key", "publicKeyFile: release-manager.pub", inline(rsaPEM), lineSigner1, "expected ECDSA P-256"},
		{"P-384 key", "publicKeyFile: release-manager.pub", inline(p384PEM), lineSigner1, "expected ECDSA P-256"},
		{"private key instead of public", "publicKeyFile: release-manager.pub", "publicKey: \"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\\nAAAA\\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\\n\"", lineSigner1, "decoding public key"},
		{"missing key file", "publicKeyFile: release-manager.pub", "publicKeyFile: nobody.pub", lineSigner1File, "cannot read nobody.pub"},
		{"same key under two names", "publicKeyFile: release-manager.pub", "publicKeyFile: ci.pub", lineSigner1, `same public key as signer "ci"`},
		{"same key inline and from file", "publicKeyFile: release-manager.pub", inline(ks["ci"].pub), lineSigner1, "same public key"},
		{"duplicate signer names", "- name: release-manager", "- name: ci", lineSigner1, `expected a unique name, found "ci"`},
		{"no environments", "environments: [prod, staging]", "environments: []", lineEnvs, "list the allowed environments"},
		{"bad environment", "environments: [prod, staging]", `environments: [prod, "sta ging"]`, lineEnvs, "invalid entry"},
		{"no branches", "branches: [main]", "branches: []", lineBranches, "list the allowed branches"},
		{"bad bundle source", "  maxAge: 720h", "  maxAge: 720h\n  bundleSources: [ftp]", lineMaxAge + 1, `expected file or s3, found "ftp"`},
		{"manifestBytes over the cap", "manifestBytes: 64KiB", "manifestBytes: 2MiB", lineManifest, "at most 1048576 bytes"},
		{"bad size", "bundleBytes: 1MiB", "bundleBytes: lots", lineBundle, `invalid size "lots"`},
		{"negative size", "bundleBytes: 1MiB", "bundleBytes: -5", lineBundle, "invalid size"},
		{"huge size", "bundleBytes: 1MiB", "bundleBytes: 2PiB", lineBundle, "invalid size"},
		{"size as a list", "bundleBytes: 1MiB", "bundleBytes: [1]", lineBundle, "expected a size"},
		{"negative files", "files: 100", "files: -1", lineFiles, "must be positive"},
		{"negative maxAge", "maxAge: 720h", "maxAge: -1h", lineMaxAge, "must not be negative"},
		{"bare number maxAge", "maxAge: 720h", "maxAge: 720", lineMaxAge, "duration must be a string"},
		{"wrong kind", "kind: TrustPolicy", "kind: Environment", lineKind, `expected "TrustPolicy"`},
		{"missing name", "  name: prod\n", "  labels: {a: b}\n", lineMetadata, "required"},
		{"unknown field", "threshold: 1", "threshold: 1\n  quorum: 2", lineThreshold + 1, "field quorum not found"},
		{"keyless identity not supported yet", "      publicKeyFile: ci.pub", "      publicKeyFile: ci.pub\n      issuer: https://token.actions.githubusercontent.com", lineSigner0 + 2, "field issuer not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := trust.Parse("policy.yaml", mutatePolicy(t, tt.old, tt.new), readTestKey(t))
			if err == nil {
				t.Fatal("accepted")
			}
			var se *strictyaml.Error
			if !errors.As(err, &se) {
				t.Fatalf("error is %T (%v), want *strictyaml.Error", err, err)
			}
			for _, p := range se.Problems {
				if p.Line == tt.line && strings.Contains(p.Msg, tt.msg) {
					if !strings.HasPrefix(p.String(), fmt.Sprintf("policy.yaml:%d: ", tt.line)) {
						t.Errorf("String() = %q", p)
					}
					return
				}
			}
			t.Errorf("no problem at line %d containing %q; got:\n%v", tt.line, tt.msg, err)
		})
	}
}

func TestLoad(t *testing.T) {
	ks := testKeys(t)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ci", "release-manager"} {
		if err := os.WriteFile(filepath.Join(dir, "keys", n+".pub"), ks[n].pub, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	abs := filepath.Join(dir, "keys", "release-manager.pub")
	data := strings.Replace(basePolicy, "publicKeyFile: ci.pub", "publicKeyFile: keys/ci.pub", 1)
	data = strings.Replace(data, "publicKeyFile: release-manager.pub", "publicKeyFile: "+abs, 1)
	file := filepath.Join(dir, "prod.yaml")
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}

	p, err := trust.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if p.KeysLoaded() != 2 {
		t.Errorf("Load: KeysLoaded = %d, want 2 (relative and absolute key files)", p.KeysLoaded())
	}

	// publisher check: absolute paths are host paths and are skipped.
	p, err = trust.Parse(file, []byte(data), trust.RepoKeyReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if p.KeysLoaded() != 1 {
		t.Errorf("RepoKeyReader: KeysLoaded = %d, want 1", p.KeysLoaded())
	}

	if _, err := trust.Load(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// TestBelowThreshold: good signatures that are merely too few are marked
// ErrBelowThreshold (co-signers may still come); anything bad is not.
func TestBelowThreshold(t *testing.T) {
	p := policyFor(t, 2, "ci", "release-manager", "security")
	raw := marshalRelease(t, manifesttest.Release())
	exp := trust.Expect{Env: "prod", Now: manifesttest.Now}
	for _, tt := range []struct {
		name    string
		signers []string
		pending bool
	}{
		{"one good signature", []string{"ci"}, true},
		{"one good, one untrusted", []string{"ci", "mallory"}, false},
		{"only untrusted", []string{"mallory"}, false},
		{"none", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var sigs [][]byte
			for _, n := range tt.signers {
				sigs = append(sigs, sign(t, n, raw))
			}
			_, _, err := p.VerifyRelease(relName, raw, sigs, exp)
			wantRejected(t, err, sigCheck)
			if got := errors.Is(err, trust.ErrBelowThreshold); got != tt.pending {
				t.Errorf("errors.Is(err, ErrBelowThreshold) = %v, want %v (%v)", got, tt.pending, err)
			}
		})
	}
}

// TestKeyRotation walks a rotation from key "ci" to key "security": an
// overlap where both count, then the old key stops counting at its
// notAfter by the host clock alone, and a new key can be staged with
// notBefore. A clock far off fails closed and says so.
func TestKeyRotation(t *testing.T) {
	now := manifesttest.Now
	at := func(d time.Duration) string { return now.Add(d).UTC().Format(time.RFC3339) }
	policy := fmt.Sprintf(`apiVersion: deploy.cohuron.dev/v1
kind: TrustPolicy
metadata:
  name: rotating
spec:
  signers:
    - name: ci
      publicKeyFile: ci.pub
      notAfter: %s
    - name: security
      publicKeyFile: security.pub
    - name: release-manager
      publicKeyFile: release-manager.pub
      notBefore: %s
  threshold: 1
  environments: [prod]
  branches: [main]
`, at(24*time.Hour), at(48*time.Hour))
	p, err := trust.Parse("policy.yaml", []byte(policy), readTestKey(t))
	if err != nil {
		t.Fatal(err)
	}
	rel := manifesttest.Release()
	rel.ExpiresAt = now.Add(30 * 24 * time.Hour)
	raw := marshalRelease(t, rel)
	for _, tt := range []struct {
		name    string
		signers []string
		clock   time.Duration // host clock relative to now
		found   string        // "" = accepted
	}{
		{"old key during the overlap", []string{"ci"}, time.Hour, ""},
		{"new key during the overlap", []string{"security"}, time.Hour, ""},
		{"both keys (the publisher signs with both while hosts update)", []string{"ci", "security"}, time.Hour, ""},
		{"old key after its notAfter", []string{"ci"}, 25 * time.Hour, "ci, whose key is trusted only until " + at(24*time.Hour)},
		{"new key after the old one's notAfter", []string{"security"}, 25 * time.Hour, ""},
		{"staged key before its notBefore", []string{"release-manager"}, time.Hour, "release-manager, whose key is trusted only from " + at(48*time.Hour)},
		{"staged key after its notBefore", []string{"release-manager"}, 49 * time.Hour, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var sigs [][]byte
			for _, n := range tt.signers {
				sigs = append(sigs, sign(t, n, raw))
			}
			_, signers, err := p.VerifyRelease(relName, raw, sigs, trust.Expect{Env: "prod", Now: now.Add(tt.clock), ClockSkew: time.Hour})
			if tt.found == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if len(signers) == 0 {
					t.Error("no signer counted")
				}
				return
			}
			ve := wantRejected(t, err, sigCheck)
			if !strings.Contains(ve.Found, tt.found) {
				t.Errorf("Found = %q, want it to contain %q", ve.Found, tt.found)
			}
			if errors.Is(err, trust.ErrBelowThreshold) {
				t.Error("an expired key's signature must not look like a pending co-signature")
			}
		})
	}

	// Key windows need a clock: without one, windowed keys never count.
	_, err = p.VerifyBlob("blob", raw, [][]byte{sign(t, "ci", raw)}, time.Time{})
	if ve := wantRejected(t, err, "blob signature"); !strings.Contains(ve.Found, "no clock") {
		t.Errorf("Found = %q, want it to say there is no clock", ve.Found)
	}
	if _, err := p.VerifyBlob("blob", raw, [][]byte{sign(t, "security", raw)}, time.Time{}); err != nil {
		t.Errorf("a key without a window needs no clock: %v", err)
	}

	// A window that ends before it starts is a policy error.
	bad := strings.Replace(policy, "notBefore: "+at(48*time.Hour), "notBefore: "+at(48*time.Hour)+"\n      notAfter: "+at(47*time.Hour), 1)
	if _, err := trust.Parse("policy.yaml", []byte(bad), readTestKey(t)); err == nil || !strings.Contains(err.Error(), "notAfter") {
		t.Errorf("inverted window: err = %v, want a notAfter problem", err)
	}
}
