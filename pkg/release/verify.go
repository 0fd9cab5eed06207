package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

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
			// A store that lags (replication, a publisher between writes)
			// or a hint planted by someone with write access: either way
			// nothing to apply or to blame yet; look again later.
			return nil, fault.Transient(fmt.Errorf("release %d of %s: the latest hint names it but %s is missing: %w", seq, env, key, err))
		}
		if errors.Is(err, store.ErrTooLarge) {
			return nil, &trust.VerificationError{Check: "manifest size", Expected: fmt.Sprintf("at most %d bytes (policy limits.manifestBytes)", pol.Spec.Limits.ManifestBytes), Found: "more", Err: err}
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

// VerifyBundleDigest reads a bundle from r, refusing more bytes than the
// release pins, and checks its size, its sha256 and its detached
// signature (whose signers must be trusted at now). It parses nothing: the
// bytes are not trusted until it returns.
func VerifyBundleDigest(r io.Reader, rel *manifest.Release, pol *trust.Policy, sigs [][]byte, now time.Time) error {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, rel.Bundle.Size+1))
	if err != nil {
		return fmt.Errorf("reading bundle %s: %w", rel.Bundle.Key, err)
	}
	if n != rel.Bundle.Size {
		return &trust.VerificationError{Check: "bundle size", Expected: fmt.Sprintf("%d bytes (signed)", rel.Bundle.Size), Found: fmt.Sprintf("%d bytes", n)}
	}
	digest := h.Sum(nil)
	if got := hex.EncodeToString(digest); got != rel.Bundle.SHA256 {
		return &trust.VerificationError{Check: "bundle digest", Expected: "sha256 " + rel.Bundle.SHA256 + " (signed)", Found: "sha256 " + got}
	}
	_, err = pol.VerifyDigest("bundle "+rel.Bundle.Key, digest, sigs, now)
	return err
}

// VerifyBundle fetches the release's bundle from the store into a temp
// file, verifies its digest and signature, and only then indexes it and
// checks its file count and unpacked size against the release.
func VerifyBundle(ctx context.Context, st store.Store, rel *manifest.Release, pol *trust.Policy, now time.Time) (*bundle.Index, error) {
	ix, file, err := fetchVerifiedBundle(ctx, st, rel, pol, now)
	if file != "" {
		os.Remove(file)
	}
	return ix, err
}

// fetchVerifiedBundle is VerifyBundle that keeps the verified bundle in
// a temp file, returned (even with an error) for the caller to remove.
func fetchVerifiedBundle(ctx context.Context, st store.Store, rel *manifest.Release, pol *trust.Policy, now time.Time) (*bundle.Index, string, error) {
	sigs, err := ReadSigs(ctx, st, rel.Bundle.Key)
	if err != nil {
		return nil, "", fmt.Errorf("reading signature of %s: %w", rel.Bundle.Key, err)
	}
	rc, _, err := st.Get(ctx, rel.Bundle.Key, "")
	if err != nil {
		return nil, "", fmt.Errorf("fetching bundle: %w", err)
	}
	tmp, err := os.CreateTemp("", "bundle-*.tar.gz")
	if err != nil {
		rc.Close()
		return nil, "", err
	}
	defer tmp.Close()
	err = VerifyBundleDigest(io.TeeReader(rc, tmp), rel, pol, sigs, now)
	rc.Close()
	if err != nil {
		return nil, tmp.Name(), err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, tmp.Name(), err
	}
	ix, err := bundle.ReadIndex(tmp, bundle.ReadLimits{Files: rel.Bundle.Files, UnpackedBytes: rel.Bundle.Unpacked})
	if err != nil {
		return nil, tmp.Name(), fault.Rejected(fmt.Errorf("bundle %s: %w", rel.Bundle.Key, err))
	}
	if len(ix.Entries) != rel.Bundle.Files || ix.Unpacked() != rel.Bundle.Unpacked {
		return nil, tmp.Name(), &trust.VerificationError{Check: "bundle contents",
			Expected: fmt.Sprintf("%d files, %d bytes unpacked (signed)", rel.Bundle.Files, rel.Bundle.Unpacked),
			Found:    fmt.Sprintf("%d files, %d bytes", len(ix.Entries), ix.Unpacked())}
	}
	return ix, tmp.Name(), nil
}
