package trust

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"gopkg.in/yaml.v3"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/signing"
	"github.com/cohuron/deploy/pkg/strictyaml"
)

// KindTrustPolicy is the kind of a trust policy document.
const KindTrustPolicy = "TrustPolicy"

// Any matches every environment or branch in a policy list.
const Any = "*"

// Defaults for limits a policy leaves unset.
const (
	DefaultManifestBytes = 1 << 20 // 1 MiB
	DefaultBundleBytes   = 1 << 30 // 1 GiB
	DefaultFiles         = 200_000
	DefaultUnpackedBytes = 4 << 30 // 4 GiB
	// DefaultMaxSeqJump bounds how far past the last applied seq a release
	// may be (the fast-forward attack: a leaked key signs seq 2^63 and no
	// honest release is ever newer again).
	DefaultMaxSeqJump = 10_000
)

// Policy is a parsed trust policy.
type Policy struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   manifest.Metadata `yaml:"metadata"`
	Spec       Spec              `yaml:"spec"`

	keys []trustedKey // decoded public keys, one per signer
}

// Spec is what a policy trusts and allows.
type Spec struct {
	// Signers whose signatures count.
	Signers []Signer `yaml:"signers"`
	// Threshold is how many distinct signers must have signed (default 1).
	Threshold int `yaml:"threshold,omitempty"`
	// Environments a release may target; "*" for any.
	Environments []string `yaml:"environments"`
	// Branches a bundle may come from; "*" for any.
	Branches []string `yaml:"branches"`
	// BundleSources are the URL schemes a bundle may be fetched with (default file, s3).
	BundleSources []string `yaml:"bundleSources,omitempty"`
	Limits        Limits   `yaml:"limits,omitempty"`
	// MaxAge rejects releases issued longer ago than this (0: only expiresAt counts).
	MaxAge manifest.Duration `yaml:"maxAge,omitempty"`
}

// Signer is one trusted key.
type Signer struct {
	Name string `yaml:"name"`
	// PublicKey is an inline PEM public key.
	PublicKey string `yaml:"publicKey,omitempty"`
	// PublicKeyFile is a PEM file, relative to the policy file or absolute
	// (a path on the host, e.g. installed by user data).
	PublicKeyFile string `yaml:"publicKeyFile,omitempty"`
	// NotBefore and NotAfter bound when this signer's signatures count,
	// by the host clock: a rotated-out key stops counting at NotAfter on
	// every host, even one whose policy file is never updated again.
	NotBefore *time.Time `yaml:"notBefore,omitempty"`
	NotAfter  *time.Time `yaml:"notAfter,omitempty"`
}

// Limits cap what a release may make the host download and unpack.
type Limits struct {
	ManifestBytes ByteSize `yaml:"manifestBytes,omitempty"`
	BundleBytes   ByteSize `yaml:"bundleBytes,omitempty"`
	Files         int      `yaml:"files,omitempty"`
	UnpackedBytes ByteSize `yaml:"unpackedBytes,omitempty"`
	// MaxSeqJump is how many seqs past the last applied one a release may
	// be (default 10000); 0 takes the default.
	MaxSeqJump uint64 `yaml:"maxSeqJump,omitempty"`
}

// ByteSize is a byte count written as an integer or "512MiB".
type ByteSize int64

// UnmarshalYAML accepts an integer or a humanized size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a size such as 512MiB", n.Line)
	}
	v, err := humanize.ParseBytes(n.Value)
	if err != nil || v > 1<<50 {
		return fmt.Errorf("line %d: invalid size %q: expected a number of bytes or a size such as 512MiB", n.Line, n.Value)
	}
	*b = ByteSize(v)
	return nil
}

type trustedKey struct {
	name                string
	pub                 crypto.PublicKey
	notBefore, notAfter *time.Time
}

// outside says why the key does not count at now, or "".
func (k trustedKey) outside(now time.Time) string {
	switch {
	case k.notBefore == nil && k.notAfter == nil:
		return ""
	case now.IsZero():
		return "no clock to check its validity window"
	case k.notBefore != nil && now.Before(*k.notBefore):
		return "trusted only from " + k.notBefore.UTC().Format(time.RFC3339)
	case k.notAfter != nil && !now.Before(*k.notAfter):
		return "trusted only until " + k.notAfter.UTC().Format(time.RFC3339)
	}
	return ""
}

// Load reads and validates a policy file, resolving key files relative to it.
func Load(file string) (*Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading trust policy: %w", err)
	}
	return Parse(file, data, func(p string) ([]byte, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(file), p)
		}
		return os.ReadFile(p)
	})
}

// Parse decodes and validates a policy. readKey loads publicKeyFile
// entries; nil skips loading them (format check only).
func Parse(file string, data []byte, readKey func(string) ([]byte, error)) (*Policy, error) {
	var p Policy
	doc, err := strictyaml.Decode(file, data, manifest.MaxManifestBytes, &p)
	if err != nil {
		return nil, err
	}
	if perr := doc.Problems(file, p.validate(readKey)); perr != nil {
		return nil, perr
	}
	return &p, nil
}

// ForKey is the policy behind `--key cosign.pub`: one trusted key, any
// environment and branch, default limits.
func ForKey(pubPEM []byte) (*Policy, error) {
	p := &Policy{
		APIVersion: manifest.APIVersion, Kind: KindTrustPolicy,
		Metadata: manifest.Metadata{Name: "single-key"},
		Spec: Spec{
			Signers:      []Signer{{Name: "key", PublicKey: string(pubPEM)}},
			Threshold:    1,
			Environments: []string{Any},
			Branches:     []string{Any},
		},
	}
	if ps := p.validate(nil); len(ps) > 0 {
		return nil, fmt.Errorf("public key: %s", ps[0].Msg)
	}
	return p, nil
}

func (p *Policy) validate(readKey func(string) ([]byte, error)) []strictyaml.Problem {
	var ps []strictyaml.Problem
	add := func(path, format string, args ...any) {
		ps = append(ps, strictyaml.Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if p.APIVersion != manifest.APIVersion {
		add("apiVersion", "expected %q, found %q", manifest.APIVersion, p.APIVersion)
	}
	if p.Kind != KindTrustPolicy {
		add("kind", "expected %q, found %q", KindTrustPolicy, p.Kind)
	}
	if p.Metadata.Name == "" {
		add("metadata.name", "required")
	}
	s := &p.Spec
	if len(s.Signers) == 0 {
		add("spec.signers", "trust at least one signer")
	}
	names := map[string]bool{}
	p.keys = nil
	for i, sg := range s.Signers {
		at := fmt.Sprintf("spec.signers[%d]", i)
		if sg.Name == "" || names[sg.Name] {
			add(at+".name", "expected a unique name, found %q", sg.Name)
		}
		names[sg.Name] = true
		var pemBytes []byte
		switch {
		case (sg.PublicKey == "") == (sg.PublicKeyFile == ""):
			add(at, "set exactly one of publicKey and publicKeyFile")
			continue
		case sg.PublicKey != "":
			pemBytes = []byte(sg.PublicKey)
		case readKey == nil:
			continue
		default:
			b, err := readKey(sg.PublicKeyFile)
			if errors.Is(err, errKeyOnHost) {
				continue
			}
			if err != nil {
				add(at+".publicKeyFile", "cannot read %s: %v", sg.PublicKeyFile, err)
				continue
			}
			pemBytes = b
		}
		pub, err := signing.ParsePublicKey(pemBytes)
		if err != nil {
			add(at, "%v", err)
			continue
		}
		// One key under two names would meet a threshold of 2 with one signature.
		if dup := p.signerWithKey(pub); dup != "" {
			add(at, "same public key as signer %q; each signer needs its own key", dup)
			continue
		}
		if sg.NotBefore != nil && sg.NotAfter != nil && !sg.NotBefore.Before(*sg.NotAfter) {
			add(at+".notAfter", "expected a time after notBefore %s, found %s", sg.NotBefore.UTC().Format(time.RFC3339), sg.NotAfter.UTC().Format(time.RFC3339))
			continue
		}
		p.keys = append(p.keys, trustedKey{name: sg.Name, pub: pub, notBefore: sg.NotBefore, notAfter: sg.NotAfter})
	}
	if s.Threshold == 0 {
		s.Threshold = 1
	}
	if s.Threshold < 1 || s.Threshold > len(s.Signers) {
		add("spec.threshold", "expected 1 to %d (the number of signers), found %d", len(s.Signers), s.Threshold)
	}
	for _, l := range []struct {
		name string
		vals []string
	}{{"environments", s.Environments}, {"branches", s.Branches}} {
		if len(l.vals) == 0 {
			add("spec."+l.name, "list the allowed %s, or \"*\" for any", l.name)
		}
		for i, v := range l.vals {
			if strings.TrimSpace(v) == "" || strings.ContainsAny(v, " \t") {
				add(fmt.Sprintf("spec.%s[%d]", l.name, i), "invalid entry %q", v)
			}
		}
	}
	if len(s.BundleSources) == 0 {
		s.BundleSources = []string{"file", "s3"}
	}
	for i, src := range s.BundleSources {
		if src != "file" && src != "s3" {
			add(fmt.Sprintf("spec.bundleSources[%d]", i), "expected file or s3, found %q", src)
		}
	}
	lim := &s.Limits
	for _, l := range []struct {
		name string
		v    *ByteSize
		def  ByteSize
	}{{"manifestBytes", &lim.ManifestBytes, DefaultManifestBytes}, {"bundleBytes", &lim.BundleBytes, DefaultBundleBytes}, {"unpackedBytes", &lim.UnpackedBytes, DefaultUnpackedBytes}} {
		if *l.v < 0 {
			add("spec.limits."+l.name, "must be positive, found %d", *l.v)
		}
		if *l.v == 0 {
			*l.v = l.def
		}
	}
	if lim.ManifestBytes > manifest.MaxManifestBytes {
		add("spec.limits.manifestBytes", "at most %d bytes, found %d", manifest.MaxManifestBytes, lim.ManifestBytes)
	}
	if lim.Files < 0 {
		add("spec.limits.files", "must be positive, found %d", lim.Files)
	}
	if lim.Files == 0 {
		lim.Files = DefaultFiles
	}
	if lim.MaxSeqJump == 0 {
		lim.MaxSeqJump = DefaultMaxSeqJump
	}
	if s.MaxAge.Duration < 0 {
		add("spec.maxAge", "must not be negative, found %s", s.MaxAge)
	}
	return ps
}

func (p *Policy) signerWithKey(pub crypto.PublicKey) string {
	for _, k := range p.keys {
		if eq, ok := k.pub.(interface{ Equal(crypto.PublicKey) bool }); ok && eq.Equal(pub) {
			return k.name
		}
	}
	return ""
}

// SignerOf names the signer whose key pub is, or "" when the policy does
// not trust it.
func (p *Policy) SignerOf(pub crypto.PublicKey) string { return p.signerWithKey(pub) }

// AllowsSource reports whether the policy lets bundles be fetched with scheme.
func (p *Policy) AllowsSource(scheme string) bool { return contains(p.Spec.BundleSources, scheme) }

// KeysLoaded reports how many signer keys were decoded; policies parsed
// without a key reader have none and cannot verify.
func (p *Policy) KeysLoaded() int { return len(p.keys) }

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v || x == Any {
			return true
		}
	}
	return false
}

// RepoKeyReader reads publicKeyFile entries for `publisher check` in a
// repository: relative paths against the policy file; absolute paths name
// files on the hosts, which are not here, so they are skipped.
func RepoKeyReader(policyFile string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		if filepath.IsAbs(p) {
			return nil, errKeyOnHost
		}
		return os.ReadFile(filepath.Join(filepath.Dir(policyFile), p))
	}
}

var errKeyOnHost = errors.New("key file lives on the host")
