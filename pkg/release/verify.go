package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/trust"
)

// Verified is a release whose signature and claims passed the policy.
type Verified struct {
	Release *manifest.Release
	Key     string // store key of the manifest
	Raw     []byte // the signed bytes
	Digest  string // sha256 hex of Raw
	Signers []string
}

// FetchVerified reads release seq of env and verifies it against the
// policy before parsing it.
func FetchVerified(ctx context.Context, st store.Store, env string, seq uint64, pol *trust.Policy, exp trust.Expect) (*Verified, error) {
	key := store.ReleaseKey(env, seq)
	raw, _, err := store.ReadAll(ctx, st, key, int64(pol.Spec.Limits.ManifestBytes))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fault.Rejected(fmt.Errorf("release %d of %s: the latest hint names it but %s is missing: %w", seq, env, key, err))
		}
		return nil, fmt.Errorf("reading release %d of %s: %w", seq, env, err)
	}
	sigs, err := ReadSigs(ctx, st, key)
	if err != nil {
		return nil, fmt.Errorf("reading signature of %s: %w", key, err)
	}
	rel, signers, err := pol.VerifyRelease(key, raw, sigs, exp)
	if err != nil {
		return nil, err
	}
	if rel.Seq != seq {
		return nil, &trust.VerificationError{Check: "seq", Expected: fmt.Sprintf("%d (from the object name %s)", seq, key), Found: fmt.Sprint(rel.Seq)}
	}
	sum := sha256.Sum256(raw)
	return &Verified{Release: rel, Key: key, Raw: raw, Digest: hex.EncodeToString(sum[:]), Signers: signers}, nil
}

// FetchLatestVerified follows the latest hint of env and verifies that release.
func FetchLatestVerified(ctx context.Context, st store.Store, env string, pol *trust.Policy, exp trust.Expect) (*Verified, error) {
	seq, err := LatestHint(ctx, st, env)
	if err != nil {
		return nil, err
	}
	return FetchVerified(ctx, st, env, seq, pol, exp)
}

// VerifyBundleStream reads a bundle from r, refusing more bytes than the
// release pins, and checks its digest, its detached signature and its
// file count and unpacked size against the release. It returns the index.
func VerifyBundleStream(r io.Reader, rel *manifest.Release, pol *trust.Policy, sigs [][]byte) (*bundle.Index, error) {
	h := sha256.New()
	lr := &io.LimitedReader{R: r, N: rel.Bundle.Size + 1}
	tee := io.TeeReader(lr, h)
	ix, ixErr := bundle.ReadIndex(tee, bundle.ReadLimits{Files: rel.Bundle.Files, UnpackedBytes: rel.Bundle.Unpacked})
	// Hash what the tar reader did not need (padding, trailing bytes).
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, fmt.Errorf("reading bundle %s: %w", rel.Bundle.Key, err)
	}
	size := rel.Bundle.Size + 1 - lr.N
	if size != rel.Bundle.Size {
		return nil, &trust.VerificationError{Check: "bundle size", Expected: fmt.Sprintf("%d bytes (signed)", rel.Bundle.Size), Found: fmt.Sprintf("%d bytes", size)}
	}
	digest := h.Sum(nil)
	if got := hex.EncodeToString(digest); got != rel.Bundle.SHA256 {
		return nil, &trust.VerificationError{Check: "bundle digest", Expected: "sha256 " + rel.Bundle.SHA256 + " (signed)", Found: "sha256 " + got}
	}
	if _, err := pol.VerifyDigest("bundle "+rel.Bundle.Key, digest, sigs); err != nil {
		return nil, err
	}
	if ixErr != nil {
		return nil, fault.Rejected(fmt.Errorf("bundle %s: %w", rel.Bundle.Key, ixErr))
	}
	if len(ix.Entries) != rel.Bundle.Files || ix.Unpacked() != rel.Bundle.Unpacked {
		return nil, &trust.VerificationError{Check: "bundle contents",
			Expected: fmt.Sprintf("%d files, %d bytes unpacked (signed)", rel.Bundle.Files, rel.Bundle.Unpacked),
			Found:    fmt.Sprintf("%d files, %d bytes", len(ix.Entries), ix.Unpacked())}
	}
	return ix, nil
}

// VerifyBundle fetches the release's bundle from the store and verifies it.
func VerifyBundle(ctx context.Context, st store.Store, rel *manifest.Release, pol *trust.Policy) (*bundle.Index, error) {
	sigs, err := ReadSigs(ctx, st, rel.Bundle.Key)
	if err != nil {
		return nil, fmt.Errorf("reading signature of %s: %w", rel.Bundle.Key, err)
	}
	rc, _, err := st.Get(ctx, rel.Bundle.Key, "")
	if err != nil {
		return nil, fmt.Errorf("fetching bundle: %w", err)
	}
	defer rc.Close()
	return VerifyBundleStream(rc, rel, pol, sigs)
}
