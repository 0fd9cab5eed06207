package release

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/signing"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/trust"
)

// DefaultTTL is how long a release stays valid when nothing newer is
// published; agents refuse to apply an expired release.
const DefaultTTL = 30 * 24 * time.Hour

// claimAttempts bounds retries when racing publishers claim the same seq.
const claimAttempts = 10

// Publisher uploads bundles and signed releases.
type Publisher struct {
	Store store.Store
	// Signers each add one signature line to every object the publisher
	// signs: a policy with a threshold of k needs k of them, here or
	// added later by co-signers (CoSign).
	Signers []signing.Signer
	Now     func() time.Time
	Log     *slog.Logger
	// Progress wraps an upload body to report progress; nil for none.
	Progress func(label string, size int64, r io.Reader) io.Reader
	// Builder runs publish-time build hooks (nil: a release with one is
	// refused unless its artifact is already in the store).
	Builder Builder

	temps []string // downloads, removed when a publish ends
}

// Builder builds the outputs of a publish-time hook from a bundle into
// an archive at out (pkg/artifact).
type Builder interface {
	Build(ctx context.Context, spec *manifest.Spec, in manifest.Inputs, h manifest.Hook, bundlePath string, mtime time.Time, out string) (*LocalBundle, error)
}

// LocalBundle is a bundle built on this machine, in a file.
type LocalBundle struct {
	Path   string
	Name   string // file name in the store, under bundles/
	SHA256 string
	Size   int64
	Source manifest.Source
	Index  *bundle.Index
}

// Request is one publish.
type Request struct {
	Env *manifest.Environment
	// Bundle to upload; nil makes a config-only release that reuses the
	// bundle of release ReuseSeq (0: the newest release).
	Bundle   *LocalBundle
	ReuseSeq uint64
	// Policy is the hosts' trust policy. It verifies the release whose
	// bundle is reused (nil: trust the first signer's key), and when its
	// threshold needs more signers than signed, the latest hint stays
	// where it is until co-signers complete the release (CoSign).
	Policy *trust.Policy
	TTL    time.Duration
	// Check, when set, is called with the index of the bundle the release
	// carries (the one to upload, or the kept one of a config-only
	// release) and a reader of its files, before anything is written to
	// the store; an error refuses the publish (or preview) as it is.
	Check func(ix *bundle.Index, read func(name string) ([]byte, error)) error
}

// MaxCheckedFile caps a bundle file read for Request.Check.
const MaxCheckedFile = 4 << 20

// Result says what was published.
type Result struct {
	Env            string             `json:"env"`
	Seq            uint64             `json:"seq"`
	Key            string             `json:"key"`
	Digest         string             `json:"sha256"`
	Bundle         manifest.BundleRef `json:"bundle"`
	BundleUploaded bool               `json:"bundleUploaded"`
	ConfigOnly     bool               `json:"configOnly"`
	ReusedSeq      uint64             `json:"reusedSeq,omitempty"`
	Signers        int                `json:"signers"`
	// AwaitingSignatures is how many more trusted signers the policy
	// needs before agents may apply the release; 0 when it is live.
	AwaitingSignatures int             `json:"awaitingSignatures,omitempty"`
	Source             manifest.Source `json:"source"`
	Inputs             manifest.Inputs `json:"inputs"`
	// Artifacts of the publish-time hooks; Built names those built now
	// (the others were in the store already, built from the same inputs).
	Artifacts []manifest.Artifact `json:"artifacts,omitempty"`
	Built     []string            `json:"built,omitempty"`
}

// Publish checks the release, then uploads the bundle (if any), then
// claims the next seq with the signed release manifest, then moves the
// latest hint. Nothing is written before the release's inputs are
// computed and req.Check passed.
func (p *Publisher) Publish(ctx context.Context, req Request) (*Result, error) {
	env := req.Env.Metadata.Name
	res := &Result{Env: env}
	defer p.cleanup()
	b := req.Bundle
	var prev *Verified
	if b != nil {
		res.Bundle = manifest.BundleRef{Key: store.BundleKey(b.Name), SHA256: b.SHA256, Size: b.Size, Files: len(b.Index.Entries), Unpacked: b.Index.Unpacked()}
		res.Source = b.Source
	} else {
		var err error
		if prev, b, err = p.reuse(ctx, env, req); err != nil {
			return nil, err
		}
		res.ConfigOnly = true
		res.ReusedSeq = prev.Release.Seq
		res.Bundle = prev.Release.Bundle
		res.Source = prev.Release.Source
	}
	if err := check(req, b); err != nil {
		return nil, err
	}
	rel, err := p.newRelease(req, res.Bundle, res.Source, b.Index)
	if err != nil {
		return nil, err
	}
	// Artifacts first: a build that fails leaves nothing in the store.
	arts, err := p.artifacts(ctx, req, rel, b.Path)
	if err != nil {
		return nil, err
	}
	if req.Bundle != nil {
		if res.BundleUploaded, err = p.uploadBundle(ctx, b); err != nil {
			return nil, err
		}
	} else if err := p.signKeptBundle(ctx, prev.Release); err != nil {
		return nil, err
	}
	for _, a := range arts {
		if _, err := p.uploadBundle(ctx, a.lb); err != nil {
			return nil, fmt.Errorf("artifact of build hook %q: %w", a.hook, err)
		}
		if a.built {
			res.Built = append(res.Built, a.hook)
		}
	}
	res.Inputs, res.Artifacts = rel.Inputs, rel.Artifacts
	if err := p.claim(ctx, rel, req.Policy, res); err != nil {
		return nil, err
	}
	if res.AwaitingSignatures > 0 {
		p.Log.Warn("release awaits co-signers; the latest hint stays until they sign", "env", env, "seq", rel.Seq, "more", res.AwaitingSignatures)
		return res, nil
	}
	if err := p.moveLatest(ctx, env, rel.Seq); err != nil {
		return nil, err
	}
	p.Log.Info("published release", "env", env, "seq", rel.Seq, "bundle", res.Bundle.Key, "configOnly", res.ConfigOnly)
	return res, nil
}

// check runs req.Check against the bundle b the release carries.
func check(req Request, b *LocalBundle) error {
	if req.Check == nil {
		return nil
	}
	return req.Check(b.Index, bundle.FileReader(b.Path, MaxCheckedFile))
}

// ArtifactKey is where the artifact of hook name built from inputs digest
// lives: the same inputs name the same artifact, so an unchanged hook is
// never built again, whichever release asks for it.
func ArtifactKey(hook, digest string) string {
	d := strings.TrimPrefix(digest, "sha256:")
	if len(d) > 16 {
		d = d[:16]
	}
	return store.BundleKey("artifact-" + hook + "-" + d + ".tar.gz")
}

// pendingArtifact is an artifact of a release, on disk, to upload.
type pendingArtifact struct {
	hook  string
	lb    *LocalBundle
	built bool // built now, not taken from the store
}

// artifacts gives rel an artifact for each publish-time hook: the one the
// latest release names for the same inputs, taken from the store, or one
// built now from the bundle. Nothing is uploaded yet.
func (p *Publisher) artifacts(ctx context.Context, req Request, rel *manifest.Release, bundlePath string) ([]pendingArtifact, error) {
	var out []pendingArtifact
	var latest *manifest.Release
	looked := false
	for _, h := range rel.Spec.Build {
		if !h.AtPublish() {
			continue
		}
		if !looked {
			latest, looked = p.latestRelease(ctx, req), true
		}
		in := rel.Inputs.Hooks[h.Name]
		key := ArtifactKey(h.Name, in.Digest)
		lb, err := p.storedArtifact(ctx, latest, h.Name, in.Digest)
		built := false
		if errors.Is(err, store.ErrNotFound) {
			if p.Builder == nil {
				return nil, fault.Usage(fmt.Errorf("build hook %q runs at publish time and the latest release has no artifact of it for these inputs (%s): this publisher cannot build it", h.Name, in.Digest))
			}
			out := filepath.Join(filepath.Dir(bundlePath), filepath.Base(key))
			p.temps = append(p.temps, out)
			p.Log.Info("building at publish time", "hook", h.Name, "inputs", in.Digest)
			if lb, err = p.Builder.Build(ctx, &rel.Spec, rel.Inputs, h, bundlePath, rel.Source.Time, out); err == nil {
				built = true
				lb.Name = path.Base(key)
				if k, kerr := p.freeArtifactKey(ctx, key, lb); kerr != nil {
					err = kerr
				} else {
					key, lb.Name = k, path.Base(k)
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("artifact of build hook %q: %w", h.Name, err)
		}
		out = append(out, pendingArtifact{hook: h.Name, lb: lb, built: built})
		rel.Artifacts = append(rel.Artifacts, manifest.Artifact{Hook: h.Name, Inputs: in.Digest,
			BundleRef: manifest.BundleRef{Key: key, SHA256: lb.SHA256, Size: lb.Size, Files: len(lb.Index.Entries), Unpacked: lb.Index.Unpacked()}})
	}
	return out, nil
}

// latestRelease is the environment's latest release, verified against
// req.Policy (or our first key), or nil when there is none or it does
// not verify: then every artifact is built.
func (p *Publisher) latestRelease(ctx context.Context, req Request) *manifest.Release {
	env := req.Env.Metadata.Name
	seqs, err := Seqs(ctx, p.Store, env)
	if err != nil || len(seqs) == 0 {
		return nil
	}
	pol := req.Policy
	if pol == nil {
		pub, err := signing.PublicKeyPEM(ctx, p.Signers[0])
		if err != nil {
			return nil
		}
		if pol, err = trust.ForKey(pub); err != nil {
			return nil
		}
	}
	v, err := FetchVerified(ctx, p.Store, env, seqs[len(seqs)-1], pol, trust.Expect{Env: env, Now: p.Now(), AllowExpired: true})
	if err != nil {
		p.Log.Warn("the latest release does not verify: publish-time artifacts are built, not reused", "env", env, "seq", seqs[len(seqs)-1], "err", err)
		return nil
	}
	return v.Release
}

// storedArtifact downloads the artifact of hook that release latest names
// for inputs digest, checking it is the one that release signed for. Without such an entry it returns store.ErrNotFound: an
// object that merely sits at the key, even signed by one of our keys,
// could be an older artifact copied there (a downgrade), and would be
// signed into this release.
func (p *Publisher) storedArtifact(ctx context.Context, latest *manifest.Release, hook, digest string) (*LocalBundle, error) {
	if latest == nil {
		return nil, store.ErrNotFound
	}
	a, ok := latest.Artifact(hook)
	if !ok || a.Inputs != digest {
		return nil, store.ErrNotFound
	}
	lb, err := p.download(ctx, a.BundleRef)
	if errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("the artifact release %d names: %w", latest.Seq, err)
	}
	return lb, nil
}

// freeArtifactKey is key, unless the store holds other bytes there (an
// artifact of the same inputs built before, not reproducibly, or put
// there by someone else): then a key naming lb's digest too.
func (p *Publisher) freeArtifactKey(ctx context.Context, key string, lb *LocalBundle) (string, error) {
	info, err := p.Store.Stat(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return key, nil
	}
	if err != nil {
		return "", fmt.Errorf("checking %s: %w", key, err)
	}
	if same, err := p.sameBytes(ctx, key, info, lb); err != nil || same {
		return key, err
	}
	alt := strings.TrimSuffix(key, ".tar.gz") + "-" + lb.SHA256[:16] + ".tar.gz"
	p.Log.Info("the store holds other bytes for these inputs: the artifact goes beside them", "key", key, "as", alt)
	return alt, nil
}

// download copies the archive ref names from the store into a temp file,
// checks its size and digest against ref, and only then indexes it.
func (p *Publisher) download(ctx context.Context, ref manifest.BundleRef) (*LocalBundle, error) {
	rc, _, err := p.Store.Get(ctx, ref.Key, "")
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	f, err := os.CreateTemp("", "publisher-*.tar.gz")
	if err != nil {
		return nil, err
	}
	p.temps = append(p.temps, f.Name())
	defer f.Close()
	h := sha256.New()
	// Never more than ref says: what is read is not verified yet.
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, ref.Size+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ref.Key, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != ref.Size || sum != ref.SHA256 {
		return nil, &trust.VerificationError{Check: "stored archive " + ref.Key, Expected: fmt.Sprintf("sha256 %s, %d bytes", ref.SHA256, ref.Size),
			Found: fmt.Sprintf("sha256 %s, %d bytes or more; the object was replaced: remove it, and publish again to rebuild it", sum, n)}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	ix, err := bundle.ReadIndex(f, bundle.ReadLimits{Files: ref.Files, UnpackedBytes: ref.Unpacked})
	if err != nil {
		return nil, fault.Rejected(fmt.Errorf("%s: %w", ref.Key, err))
	}
	return &LocalBundle{Path: f.Name(), Name: path.Base(ref.Key), SHA256: ref.SHA256, Size: n, Index: ix}, nil
}

// cleanup removes what the publisher downloaded.
func (p *Publisher) cleanup() {
	for _, t := range p.temps {
		os.Remove(t)
	}
	p.temps = nil
}

// newRelease is the release manifest of req, without its seq: the
// inputs of each converge step from the bundle's index and the spec.
func (p *Publisher) newRelease(req Request, b manifest.BundleRef, src manifest.Source, ix *bundle.Index) (*manifest.Release, error) {
	env := req.Env.Metadata.Name
	inputs, err := ix.Inputs(&req.Env.Spec)
	if err != nil {
		return nil, fault.Rejected(fmt.Errorf("environment %s: %w", env, err))
	}
	ttl := req.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	now := p.Now().UTC().Truncate(time.Second)
	return &manifest.Release{
		APIVersion: manifest.APIVersion, Kind: manifest.KindRelease,
		Env: env, IssuedAt: now, ExpiresAt: now.Add(ttl),
		Bundle: b, Source: src, Inputs: inputs, Spec: req.Env.Spec,
	}, nil
}

// claim writes releases/<env>/<seq>.yaml(.sig) with conditional puts,
// moving to the next seq when another publisher got there first. With a
// policy, signatures it would refuse are caught before anything is
// written, and res says how many co-signers are still needed.
func (p *Publisher) claim(ctx context.Context, rel *manifest.Release, pol *trust.Policy, res *Result) error {
	seqs, err := Seqs(ctx, p.Store, rel.Env)
	if err != nil {
		return err
	}
	rel.Seq = 1
	if len(seqs) > 0 {
		rel.Seq = seqs[len(seqs)-1] + 1
	}
	for range claimAttempts {
		raw, err := Marshal(rel)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(raw)
		sigData, err := p.signatures(ctx, nil, sum[:], func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
		if err != nil {
			return err
		}
		awaiting, err := awaitingSigners(pol, raw, sigData, p.Now())
		if err != nil {
			return err
		}
		// The signature claims the seq; the manifest follows. Readers list
		// manifests, so a visible manifest always has its signature, and a
		// publisher that dies in between leaves only a signature, which the
		// next publisher steps over.
		key := store.ReleaseKey(rel.Env, rel.Seq)
		err = p.Store.PutIfAbsent(ctx, store.SigKey(key), bytes.NewReader(sigData), int64(len(sigData)))
		if errors.Is(err, store.ErrExists) {
			p.Log.Info("seq taken by another publisher, trying the next", "seq", rel.Seq)
			rel.Seq++
			continue
		}
		if err != nil {
			return fmt.Errorf("writing signature of %s: %w", key, err)
		}
		if err := p.Store.PutIfAbsent(ctx, key, bytes.NewReader(raw), int64(len(raw))); err != nil {
			return fmt.Errorf("writing %s after claiming it: %w", key, err)
		}
		res.Seq, res.Key, res.Digest = rel.Seq, key, hex.EncodeToString(sum[:])
		res.Signers, res.AwaitingSignatures = len(p.Signers), awaiting
		return nil
	}
	return fault.Transient(fmt.Errorf("could not claim a release seq for %s after %d attempts: other publishers keep winning", rel.Env, claimAttempts))
}

// Marshal renders a release manifest and checks that it parses back
// strictly, so nothing is signed that an agent would refuse to read.
func Marshal(rel *manifest.Release) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# Release manifest generated by `publisher publish`. Signed: do not edit.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(rel); err != nil {
		return nil, fmt.Errorf("encoding release: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	if _, err := manifest.ParseRelease("generated release", buf.Bytes(), 0); err != nil {
		return nil, fmt.Errorf("generated release does not validate (a bug): %w", err)
	}
	return buf.Bytes(), nil
}

func (p *Publisher) moveLatest(ctx context.Context, env string, seq uint64) error {
	if cur, err := LatestHint(ctx, p.Store, env); err == nil && cur >= seq {
		return nil // a racing publisher already moved it further
	}
	data := []byte(strconv.FormatUint(seq, 10) + "\n")
	if err := p.Store.Put(ctx, store.LatestKey(env), bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("writing %s (release %d is published; agents see it once latest moves): %w", store.LatestKey(env), seq, err)
	}
	return nil
}

// uploadBundle uploads the bundle unless the same bytes are already there,
// then its signature. A bundle name is never overwritten with other bytes:
// older releases may point at it.
func (p *Publisher) uploadBundle(ctx context.Context, lb *LocalBundle) (bool, error) {
	b := lb
	key := store.BundleKey(b.Name)
	uploaded := false
	if info, err := p.Store.Stat(ctx, key); err == nil {
		same, err := p.sameBytes(ctx, key, info, b)
		if err != nil {
			return false, err
		}
		if !same {
			return false, fault.Rejected(fmt.Errorf("%s already exists in %s with other bytes; refusing to overwrite a bundle that releases may point at", key, p.Store))
		}
		p.Log.Info("bundle already in store", "key", key)
	} else if errors.Is(err, store.ErrNotFound) {
		f, err := os.Open(lb.Path)
		if err != nil {
			return false, err
		}
		var body io.Reader = f
		if p.Progress != nil {
			body = p.Progress("uploading "+b.Name, b.Size, f)
		}
		err = p.Store.PutIfAbsent(ctx, key, body, b.Size)
		f.Close()
		if err != nil && !errors.Is(err, store.ErrExists) {
			return false, fmt.Errorf("uploading bundle: %w", err)
		}
		uploaded = err == nil
	} else {
		return false, fmt.Errorf("checking %s: %w", key, err)
	}

	digest, err := hex.DecodeString(b.SHA256)
	if err != nil {
		return false, fmt.Errorf("bundle digest %q: %w", b.SHA256, err)
	}
	existing, err := ReadSigs(ctx, p.Store, key)
	if err != nil {
		return false, fmt.Errorf("reading the signatures of %s: %w", key, err)
	}
	sig, err := p.signatures(ctx, existing, digest, func() (io.ReadCloser, error) { return os.Open(lb.Path) })
	if err != nil {
		return false, err
	}
	if err := p.Store.Put(ctx, store.SigKey(key), bytes.NewReader(sig), int64(len(sig))); err != nil {
		return false, fmt.Errorf("uploading bundle signature: %w", err)
	}
	return uploaded, nil
}

func (p *Publisher) sameBytes(ctx context.Context, key string, info store.Info, b *LocalBundle) (bool, error) {
	if info.Size != b.Size {
		return false, nil
	}
	rc, _, err := p.Store.Get(ctx, key, "")
	if err != nil {
		return false, err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return false, fmt.Errorf("reading %s: %w", key, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == b.SHA256, nil
}

// reuse finds and verifies the release whose bundle a config-only release
// keeps, and downloads and indexes that bundle (removed by cleanup).
func (p *Publisher) reuse(ctx context.Context, env string, req Request) (*Verified, *LocalBundle, error) {
	seq := req.ReuseSeq
	if seq == 0 {
		seqs, err := Seqs(ctx, p.Store, env)
		if err != nil {
			return nil, nil, err
		}
		if len(seqs) == 0 {
			return nil, nil, fault.Usage(fmt.Errorf("environment %s has no release in %s to take the bundle from; publish with --repo first", env, p.Store))
		}
		seq = seqs[len(seqs)-1]
	}
	pol := req.Policy
	if pol == nil {
		pub, err := signing.PublicKeyPEM(ctx, p.Signers[0])
		if err != nil {
			return nil, nil, err
		}
		if pol, err = trust.ForKey(pub); err != nil {
			return nil, nil, err
		}
	}
	v, err := FetchVerified(ctx, p.Store, env, seq, pol, trust.Expect{Env: env, Now: p.Now(), AllowExpired: true})
	if err != nil {
		return nil, nil, fmt.Errorf("release %d, whose bundle this release would keep (pass --policy if another key signed it): %w", seq, err)
	}
	ix, file, err := fetchVerifiedBundle(ctx, p.Store, v.Release, pol, p.Now())
	if file != "" {
		p.temps = append(p.temps, file)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("bundle of release %d: %w", seq, err)
	}
	b := v.Release.Bundle
	return v, &LocalBundle{Path: file, Name: path.Base(b.Key), SHA256: b.SHA256, Size: b.Size, Source: v.Release.Source, Index: ix}, nil
}

// signKeptBundle adds our signatures to the bundle a config-only release
// keeps when one of our keys has not signed it: a key being rotated in
// must sign the bundles such releases keep, or hosts that trust only that
// key refuse them (and a later publish with that key alone cannot verify
// the bundle it keeps).
func (p *Publisher) signKeptBundle(ctx context.Context, rel *manifest.Release) error {
	digest, err := hex.DecodeString(rel.Bundle.SHA256)
	if err != nil {
		return fmt.Errorf("bundle %s: sha256 %q: %w", rel.Bundle.Key, rel.Bundle.SHA256, err)
	}
	existing, err := ReadSigs(ctx, p.Store, rel.Bundle.Key)
	if err != nil {
		return fmt.Errorf("reading the signatures of %s: %w", rel.Bundle.Key, err)
	}
	for _, s := range p.Signers {
		pub, err := signing.PublicKey(ctx, s)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(existing, func(sig []byte) bool { return signing.VerifyDigest(pub, sig, digest) == nil }) {
			p.Log.Info("signing the kept bundle with a key that has not signed it", "bundle", rel.Bundle.Key)
			_, err := p.coSignBundle(ctx, rel)
			return err
		}
	}
	return nil
}

// signatures signs an object (its sha256 digest, its bytes from open)
// with every signer and merges the lines into existing ones: a signature
// by one of our keys is replaced, any other is kept — a co-signer's, or
// one by a key being rotated out that hosts not yet updated still need.
func (p *Publisher) signatures(ctx context.Context, existing [][]byte, digest []byte, open func() (io.ReadCloser, error)) ([]byte, error) {
	if len(p.Signers) == 0 {
		return nil, fault.Usage(errors.New("no signing key"))
	}
	var out bytes.Buffer
	pubs := make([]crypto.PublicKey, len(p.Signers))
	for i, s := range p.Signers {
		pub, err := signing.PublicKey(ctx, s)
		if err != nil {
			return nil, err
		}
		pubs[i] = pub
	}
	for _, sig := range existing {
		if !slices.ContainsFunc(pubs, func(pub crypto.PublicKey) bool { return signing.VerifyDigest(pub, sig, digest) == nil }) {
			out.Write(sig)
			out.WriteByte('\n')
		}
	}
	for _, s := range p.Signers {
		r, err := open()
		if err != nil {
			return nil, err
		}
		sig, err := signing.Sign(ctx, s, r)
		r.Close()
		if err != nil {
			return nil, err
		}
		out.Write(sig)
		out.WriteByte('\n')
	}
	if out.Len() > MaxSigBytes {
		return nil, fmt.Errorf("signatures would take %d bytes, over the %d agents read", out.Len(), MaxSigBytes)
	}
	return out.Bytes(), nil
}

// awaitingSigners says how many more trusted signers pol needs for a
// manifest signed with sigData; it refuses signatures pol would reject
// for any other reason (an untrusted key, say), before they are written.
func awaitingSigners(pol *trust.Policy, raw, sigData []byte, now time.Time) (int, error) {
	if pol == nil {
		return 0, nil
	}
	signers, err := pol.VerifyBlob("new release manifest", raw, splitSigs(sigData), now)
	switch {
	case err == nil:
		return 0, nil
	case errors.Is(err, trust.ErrBelowThreshold):
		return pol.Spec.Threshold - len(signers), nil
	}
	return 0, fmt.Errorf("the policy %s would refuse this release (are you signing with a key it trusts?): %w", pol.Metadata.Name, err)
}
