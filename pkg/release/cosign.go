package release

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/signing"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/trust"
)

// CoSignResult says what a co-signer added.
type CoSignResult struct {
	Env     string          `json:"env"`
	Seq     uint64          `json:"seq"`
	Key     string          `json:"key"`
	Bundle  string          `json:"bundle"`
	Source  manifest.Source `json:"source"`
	Signers []string        `json:"signers"` // trusted signers that now count
	// AwaitingSignatures is how many more the policy needs; 0 means the
	// release is complete and the latest hint names it (or a newer one).
	AwaitingSignatures int `json:"awaitingSignatures"`
}

// CoSign adds the publisher's signatures to release seq of env and to its
// bundle, for policies whose threshold needs several signers. It signs
// only what it checked: a release already signed by a signer pol trusts,
// for this environment, not expired, whose bundle has the signed digest.
// When the threshold is then met it moves the latest hint, so agents
// never see a release before it is complete.
func (p *Publisher) CoSign(ctx context.Context, env string, seq uint64, pol *trust.Policy) (*CoSignResult, error) {
	for _, s := range p.Signers {
		pub, err := signing.PublicKey(ctx, s)
		if err != nil {
			return nil, err
		}
		if pol.SignerOf(pub) == "" {
			return nil, fault.Usage(fmt.Errorf("the signing key is not one of the signers of policy %s: its signature would not count", pol.Metadata.Name))
		}
	}
	key := store.ReleaseKey(env, seq)
	raw, _, err := store.ReadAll(ctx, p.Store, key, int64(pol.Spec.Limits.ManifestBytes))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fault.Usage(fmt.Errorf("release %d of %s: %s not found in %s", seq, env, key, p.Store))
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	sigs, err := ReadSigs(ctx, p.Store, key)
	if err != nil {
		return nil, fmt.Errorf("reading the signatures of %s: %w", key, err)
	}
	now := p.Now()
	if _, err := pol.VerifyBlob("release manifest "+key, raw, sigs, now); err != nil && !errors.Is(err, trust.ErrBelowThreshold) {
		return nil, fmt.Errorf("refusing to co-sign a release no trusted signer published: %w", err)
	}
	rel, err := manifest.ParseRelease(key, raw, int(pol.Spec.Limits.ManifestBytes))
	if err != nil {
		return nil, fault.Rejected(err)
	}
	sum := sha256.Sum256(raw)
	if rel.Seq != seq {
		return nil, &trust.VerificationError{Check: "seq", Expected: fmt.Sprintf("%d (from the object name %s)", seq, key), Found: fmt.Sprint(rel.Seq)}
	}
	if err := pol.CheckRelease(rel, hex.EncodeToString(sum[:]), trust.Expect{Env: env, Now: now}); err != nil {
		return nil, err
	}
	bundleDigest, err := p.coSignBundle(ctx, rel)
	if err != nil {
		return nil, err
	}
	sigData, err := p.signatures(ctx, sigs, sum[:], func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		return nil, err
	}
	if err := p.Store.Put(ctx, store.SigKey(key), bytes.NewReader(sigData), int64(len(sigData))); err != nil {
		return nil, fmt.Errorf("writing the signatures of %s: %w", key, err)
	}
	res := &CoSignResult{Env: env, Seq: seq, Key: key, Bundle: rel.Bundle.Key, Source: rel.Source}
	// Count the signatures the store holds now, as an agent will (a racing
	// co-signer may have rewritten them); the bytes were checked above.
	stored, err := ReadSigs(ctx, p.Store, key)
	if err != nil {
		return nil, fmt.Errorf("reading back the signatures of %s: %w", key, err)
	}
	res.Signers, err = pol.VerifyBlob("release manifest "+key, raw, stored, now)
	switch {
	case errors.Is(err, trust.ErrBelowThreshold):
		res.AwaitingSignatures = pol.Spec.Threshold - len(res.Signers)
		return res, nil
	case err != nil:
		return nil, fmt.Errorf("release %d after co-signing: %w", seq, err)
	}
	bundleSigs, err := ReadSigs(ctx, p.Store, rel.Bundle.Key)
	if err != nil {
		return nil, fmt.Errorf("reading back the signatures of %s: %w", rel.Bundle.Key, err)
	}
	if _, err := pol.VerifyDigest("bundle "+rel.Bundle.Key, bundleDigest, bundleSigs, now); err != nil {
		return nil, fmt.Errorf("bundle of release %d after co-signing: %w", seq, err)
	}
	if err := p.moveLatest(ctx, env, seq); err != nil {
		return nil, err
	}
	p.Log.Info("release complete: latest hint moved", "env", env, "seq", seq, "signers", res.Signers)
	return res, nil
}

// coSignBundle downloads the release's bundle, checks its size and
// digest against the signed manifest, adds our signatures to it, and
// returns the digest.
func (p *Publisher) coSignBundle(ctx context.Context, rel *manifest.Release) ([]byte, error) {
	rc, _, err := p.Store.Get(ctx, rel.Bundle.Key, "")
	if err != nil {
		return nil, fmt.Errorf("fetching bundle %s: %w", rel.Bundle.Key, err)
	}
	tmp, err := os.CreateTemp("", "cosign-bundle-*.tar.gz")
	if err != nil {
		rc.Close()
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(rc, rel.Bundle.Size+1))
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("reading bundle %s: %w", rel.Bundle.Key, err)
	}
	digest := h.Sum(nil)
	if got := hex.EncodeToString(digest); n != rel.Bundle.Size || got != rel.Bundle.SHA256 {
		return nil, &trust.VerificationError{Check: "bundle digest", Expected: fmt.Sprintf("sha256 %s, %d bytes (signed)", rel.Bundle.SHA256, rel.Bundle.Size), Found: fmt.Sprintf("sha256 %s, %d bytes", got, n)}
	}
	existing, err := ReadSigs(ctx, p.Store, rel.Bundle.Key)
	if err != nil {
		return nil, fmt.Errorf("reading the signatures of %s: %w", rel.Bundle.Key, err)
	}
	sig, err := p.signatures(ctx, existing, digest, func() (io.ReadCloser, error) { return os.Open(tmp.Name()) })
	if err != nil {
		return nil, err
	}
	if err := p.Store.Put(ctx, store.SigKey(rel.Bundle.Key), bytes.NewReader(sig), int64(len(sig))); err != nil {
		return nil, fmt.Errorf("writing the signatures of %s: %w", rel.Bundle.Key, err)
	}
	return digest, nil
}
