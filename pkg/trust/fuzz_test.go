package trust

import (
	"errors"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/signing"
	"github.com/cohuron/deploy/pkg/strictyaml"
)

const fuzzPolicy = `apiVersion: deploy.cohuron.dev/v1
kind: TrustPolicy
metadata:
  name: prod
spec:
  signers:
    - name: ci
      publicKeyFile: ci.pub
    - name: release-manager
      publicKeyFile: /etc/cohuron-agent/keys/rm.pub
  threshold: 2
  environments: [prod, staging]
  branches: [main, "*"]
  bundleSources: [s3]
  limits:
    manifestBytes: 64KiB
    bundleBytes: 512MiB
    files: 100000
    unpackedBytes: 2GiB
  maxAge: 720h
`

// FuzzParsePolicy: Parse (without a key reader) never panics, refuses
// with *strictyaml.Error, and what it accepts validates again unchanged.
func FuzzParsePolicy(f *testing.F) {
	_, pub, err := signing.GenerateKeyPair(signing.StaticPass([]byte("fuzz")))
	if err != nil {
		f.Fatal(err)
	}
	inline := strings.Replace(fuzzPolicy, "publicKeyFile: ci.pub",
		"publicKey: |\n        "+strings.ReplaceAll(strings.TrimSpace(string(pub)), "\n", "\n        "), 1)
	f.Add([]byte(fuzzPolicy))
	f.Add([]byte(inline))
	for _, m := range []struct{ old, new string }{
		{"threshold: 2", "threshold: 3"},
		{"threshold: 2", "threshold: 0"},
		{"  signers:\n", "  signers: []\n  old:\n"},
		{"publicKeyFile: ci.pub", "publicKeyFile: ci.pub\n      publicKey: x"},
		{"publicKeyFile: ci.pub", "publicKey: not a PEM"},
		{"bundleBytes: 512MiB", "bundleBytes: lots"},
		{"bundleBytes: 512MiB", "bundleBytes: 18446744073709551615"},
		{"files: 100000", "files: -1"},
		{"maxAge: 720h", "maxAge: -1h"},
		{"maxAge: 720h", "maxAge: 720"},
		{"manifestBytes: 64KiB", "manifestBytes: 2MiB"},
		{"environments: [prod, staging]", "environments: []"},
		{"bundleSources: [s3]", "bundleSources: [ftp]"},
		{"- name: release-manager", "- name: ci"},
		{"kind: TrustPolicy", "kind: Environment"},
	} {
		f.Add([]byte(strings.Replace(fuzzPolicy, m.old, m.new, 1)))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data, nil)
		if err != nil {
			var se *strictyaml.Error
			if !errors.As(err, &se) || len(se.Problems) == 0 {
				t.Fatalf("error is %T (%v), want *strictyaml.Error with problems", err, err)
			}
			return
		}
		keys := p.KeysLoaded()
		if ps := p.validate(nil); len(ps) > 0 {
			t.Fatalf("accepted policy does not validate again: %v", ps)
		}
		if p.KeysLoaded() != keys {
			t.Fatalf("validating again changed the keys: %d, then %d", keys, p.KeysLoaded())
		}
		s := p.Spec
		if s.Threshold < 1 || s.Threshold > len(s.Signers) || keys > len(s.Signers) {
			t.Fatalf("threshold %d, %d signers, %d keys", s.Threshold, len(s.Signers), keys)
		}
		l := s.Limits
		if l.ManifestBytes <= 0 || l.ManifestBytes > manifest.MaxManifestBytes || l.BundleBytes <= 0 || l.Files <= 0 || l.UnpackedBytes <= 0 {
			t.Fatalf("limits %+v", l)
		}
		if len(s.Environments) == 0 || len(s.Branches) == 0 || len(s.BundleSources) == 0 {
			t.Fatalf("empty allow lists: %+v", s)
		}
	})
}
