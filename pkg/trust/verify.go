package trust

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/signing"
)

// VerificationError is a refusal to trust or apply a release. It is its
// own type so callers can tell it from an outage, and is always
// fault.KindRejected.
type VerificationError struct {
	Check    string // what was checked: signature, environment, replay, …
	Expected string
	Found    string
	Err      error // underlying cause, if any
	// Clock: the verdict depends on the host clock (expiry, issue time,
	// age, a signer's validity window), so it may change when the clock
	// is put right; callers check the same bytes again later.
	Clock bool
}

func (e *VerificationError) Error() string {
	msg := "release rejected: " + e.Check
	if e.Expected != "" || e.Found != "" {
		msg += fmt.Sprintf(": expected %s, found %s", e.Expected, e.Found)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *VerificationError) Unwrap() error { return e.Err }

// FaultKind makes every VerificationError a rejection.
func (e *VerificationError) FaultKind() fault.Kind { return fault.KindRejected }

func reject(check, expected, found string, err error) error {
	return &VerificationError{Check: check, Expected: expected, Found: found, Err: err}
}

func clockReject(check, expected, found string, err error) error {
	return &VerificationError{Check: check, Expected: expected, Found: found, Err: err, Clock: true}
}

// ErrBelowThreshold is wrapped by a signature rejection when every
// signature that counted was good but too few signers signed yet: the
// release may be waiting for co-signers (publisher sign), so callers
// check again later instead of giving up on it.
var ErrBelowThreshold = errors.New("fewer trusted signers than the policy's threshold")

// VerifyBlob checks that at least Threshold distinct trusted signers,
// within their validity windows at now, signed data. sigs are base64
// cosign signatures in any order.
func (p *Policy) VerifyBlob(what string, data []byte, sigs [][]byte, now time.Time) ([]string, error) {
	return p.verify(what, sigs, now, func(k trustedKey, sig []byte) error {
		return signing.Verify(k.pub, sig, bytes.NewReader(data))
	})
}

// VerifyDigest is VerifyBlob for a SHA-256 digest computed while streaming.
func (p *Policy) VerifyDigest(what string, sha256Digest []byte, sigs [][]byte, now time.Time) ([]string, error) {
	return p.verify(what, sigs, now, func(k trustedKey, sig []byte) error {
		return signing.VerifyDigest(k.pub, sig, sha256Digest)
	})
}

func (p *Policy) verify(what string, sigs [][]byte, now time.Time, check func(trustedKey, []byte) error) ([]string, error) {
	if len(p.keys) == 0 {
		return nil, reject(what+" signature", "a policy with trusted keys", "no keys loaded", nil)
	}
	var signers, outside []string
	var lastErr error
	for _, k := range p.keys {
		for _, sig := range sigs {
			if err := check(k, sig); err != nil {
				lastErr = err
				continue
			}
			if why := k.outside(now); why != "" {
				outside = append(outside, fmt.Sprintf("%s, whose key is %s (host clock %s)", k.name, why, now.UTC().Format(time.RFC3339)))
			} else {
				signers = append(signers, k.name)
			}
			break
		}
	}
	if len(signers) < p.Spec.Threshold {
		found := fmt.Sprintf("%d valid among %d signature(s)", len(signers), len(sigs))
		if len(signers) > 0 {
			found = fmt.Sprintf("%d valid (%s) among %d signature(s)", len(signers), strings.Join(signers, ", "), len(sigs))
		}
		if len(outside) > 0 {
			found += "; not counted: " + strings.Join(outside, "; ")
		}
		if len(sigs) == 0 {
			found = "no signature"
			lastErr = nil
		}
		if len(signers) > 0 && len(outside) == 0 && len(signers) == len(sigs) {
			// Only good signatures, just not enough of them yet.
			lastErr = ErrBelowThreshold
		}
		return signers, &VerificationError{Check: what + " signature", Expected: fmt.Sprintf("signatures by %d trusted signer(s) of policy %s", p.Spec.Threshold, p.Metadata.Name),
			Found: found, Err: lastErr, Clock: len(outside) > 0}
	}
	return signers, nil
}

// Applied is what the host last applied, for replay checks.
type Applied struct {
	Seq    uint64
	Digest string // sha256 hex of that release manifest's bytes
}

// Expect is what the verifier knows besides the bytes.
type Expect struct {
	Env  string    // the environment this host belongs to
	Now  time.Time // injected clock
	Last Applied   // zero when nothing was applied yet
	// ClockSkew tolerated for issuedAt in the future (default 5m).
	ClockSkew time.Duration
	// AllowExpired skips expiry and age, for a publisher reusing the bundle
	// of an older release (config-only release, rollback). Agents never set it.
	AllowExpired bool
}

// VerifyRelease checks signatures over the raw bytes before parsing them,
// then the release's claims. It returns the parsed release or a
// *VerificationError (or a parse error marked rejected), and the names of
// the signers whose signatures counted.
func (p *Policy) VerifyRelease(name string, raw []byte, sigs [][]byte, exp Expect) (*manifest.Release, []string, error) {
	if max := int64(p.Spec.Limits.ManifestBytes); int64(len(raw)) > max {
		return nil, nil, reject("manifest size", fmt.Sprintf("at most %d bytes", max), fmt.Sprintf("%d bytes", len(raw)), nil)
	}
	signers, err := p.VerifyBlob("release manifest "+name, raw, sigs, exp.Now)
	if err != nil {
		return nil, nil, err
	}
	rel, err := manifest.ParseRelease(name, raw, int(p.Spec.Limits.ManifestBytes))
	if err != nil {
		return nil, nil, reject("release manifest", "a valid release manifest", "an invalid one", err)
	}
	sum := sha256.Sum256(raw)
	if err := p.CheckRelease(rel, hex.EncodeToString(sum[:]), exp); err != nil {
		return nil, nil, err
	}
	return rel, signers, nil
}

// CheckRelease checks a parsed, signature-verified release against the
// policy and the host's history. digest is the sha256 hex of its bytes.
func (p *Policy) CheckRelease(rel *manifest.Release, digest string, exp Expect) error {
	s := &p.Spec
	if exp.Env != "" && rel.Env != exp.Env {
		return reject("environment", fmt.Sprintf("%q (this host's)", exp.Env), fmt.Sprintf("%q", rel.Env), nil)
	}
	if !contains(s.Environments, rel.Env) {
		return reject("environment", "one of "+strings.Join(s.Environments, ", ")+" (policy "+p.Metadata.Name+")", fmt.Sprintf("%q", rel.Env), nil)
	}
	if !contains(s.Branches, rel.Source.Branch) {
		return reject("branch", "one of "+strings.Join(s.Branches, ", ")+" (policy "+p.Metadata.Name+")", fmt.Sprintf("%q", rel.Source.Branch), nil)
	}
	if exp.Now.IsZero() {
		return reject("expiry", "a known current time", "no clock", errors.New("caller passed no time"))
	}
	skew := exp.ClockSkew
	if skew == 0 {
		skew = 5 * time.Minute
	}
	if rel.IssuedAt.After(exp.Now.Add(skew)) {
		return clockReject("issue time", "issuedAt not after the host clock "+exp.Now.UTC().Format(time.RFC3339),
			rel.IssuedAt.UTC().Format(time.RFC3339)+" (is the host clock behind?)", nil)
	}
	if !exp.AllowExpired && !exp.Now.Before(rel.ExpiresAt) {
		return clockReject("expiry", "expiresAt after the host clock "+exp.Now.UTC().Format(time.RFC3339),
			rel.ExpiresAt.UTC().Format(time.RFC3339)+" (expired; publish again, or check the host clock)", nil)
	}
	if !exp.AllowExpired && s.MaxAge.Duration > 0 && exp.Now.Sub(rel.IssuedAt) > s.MaxAge.Duration {
		return clockReject("age", "issued within "+s.MaxAge.String(), "issued "+exp.Now.Sub(rel.IssuedAt).Round(time.Second).String()+" ago", nil)
	}
	if rel.Seq < exp.Last.Seq {
		return reject("replay", fmt.Sprintf("seq %d or higher (last applied)", exp.Last.Seq), fmt.Sprintf("seq %d", rel.Seq), nil)
	}
	if rel.Seq == exp.Last.Seq && exp.Last.Digest != "" && digest != exp.Last.Digest {
		return reject("replay", fmt.Sprintf("seq %d with digest %s (as applied)", rel.Seq, exp.Last.Digest), "different bytes, digest "+digest, nil)
	}
	lim := s.Limits
	if exp.Last.Seq > 0 && rel.Seq-exp.Last.Seq > lim.MaxSeqJump {
		return reject("seq jump", fmt.Sprintf("at most %d past the last applied seq %d (policy limits.maxSeqJump)", lim.MaxSeqJump, exp.Last.Seq),
			fmt.Sprintf("seq %d (a fast-forward; if it is genuine, raise the limit)", rel.Seq), nil)
	}
	if rel.Bundle.Size > int64(lim.BundleBytes) {
		return reject("bundle size", fmt.Sprintf("at most %d bytes", lim.BundleBytes), fmt.Sprintf("%d bytes", rel.Bundle.Size), nil)
	}
	if rel.Bundle.Files > lim.Files {
		return reject("bundle file count", fmt.Sprintf("at most %d", lim.Files), fmt.Sprintf("%d", rel.Bundle.Files), nil)
	}
	if rel.Bundle.Unpacked > int64(lim.UnpackedBytes) {
		return reject("bundle unpacked size", fmt.Sprintf("at most %d bytes", lim.UnpackedBytes), fmt.Sprintf("%d bytes", rel.Bundle.Unpacked), nil)
	}
	for _, a := range rel.Artifacts {
		switch {
		case a.Size > int64(lim.BundleBytes):
			return reject("artifact size", fmt.Sprintf("at most %d bytes (limits.bundleBytes)", lim.BundleBytes), fmt.Sprintf("%d bytes (%s)", a.Size, a.Key), nil)
		case a.Files > lim.Files:
			return reject("artifact file count", fmt.Sprintf("at most %d", lim.Files), fmt.Sprintf("%d (%s)", a.Files, a.Key), nil)
		case a.Unpacked > int64(lim.UnpackedBytes):
			return reject("artifact unpacked size", fmt.Sprintf("at most %d bytes", lim.UnpackedBytes), fmt.Sprintf("%d bytes (%s)", a.Unpacked, a.Key), nil)
		}
	}
	return nil
}
