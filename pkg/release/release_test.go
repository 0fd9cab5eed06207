package release_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/gitbundle"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/release"
	"github.com/cohuron/deploy/pkg/signing"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/store/dirstore"
	"github.com/cohuron/deploy/pkg/trust"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// testKey is one throwaway key pair per test binary: scrypt makes
// generating and decrypting keys slow under -race.
var testKey = sync.OnceValues(func() (signing.Signer, []byte) {
	signer, pub, err := generateKey()
	if err != nil {
		panic(err)
	}
	return signer, pub
})

// generateKey makes a throwaway cosign key pair.
func generateKey() (signing.Signer, []byte, error) {
	priv, pub, err := signing.GenerateKeyPair(signing.StaticPass([]byte("pw")))
	if err != nil {
		return nil, nil, err
	}
	signer, err := signing.SignerFromPEM(priv, signing.StaticPass([]byte("pw")))
	return signer, pub, err
}

type fixture struct {
	st     *dirstore.Store
	signer signing.Signer
	pol    *trust.Policy
	env    *manifest.Environment
	repo   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := dirstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	signer, pub := testKey()
	pol, err := trust.ForKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../testdata/demo/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env, err := manifest.ParseEnvironment("demo.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	repo := testenv.NewRepo(t, map[string]string{
		"package.json": `{"name":"x"}`, "apps/api/server.js": "v1\n", "apps/api/package.json": `{"name":"api"}`,
	})
	return &fixture{st: st, signer: signer, pol: pol, env: env, repo: repo}
}

func (f *fixture) publisher() *release.Publisher {
	return &release.Publisher{Store: f.st, Signers: []signing.Signer{f.signer}, Now: func() time.Time { return now }, Log: slog.New(slog.DiscardHandler)}
}

func (f *fixture) localBundle(t *testing.T) *release.LocalBundle {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	res, err := gitbundle.Build(context.Background(), gitbundle.Options{Repo: f.repo}, out)
	if err != nil {
		t.Fatal(err)
	}
	return &release.LocalBundle{Path: path, Name: res.Name, SHA256: res.SHA256, Size: res.Size, Source: res.Source, Index: res.Index}
}

func (f *fixture) verifyLatest(t *testing.T) *release.Verified {
	t.Helper()
	ctx := context.Background()
	v, err := release.FetchLatestVerified(ctx, f.st, "demo", f.pol, trust.Expect{Env: "demo", Now: now})
	if err != nil {
		t.Fatalf("verifying latest: %v", err)
	}
	if _, err := release.VerifyBundle(ctx, f.st, v.Release, f.pol, now); err != nil {
		t.Fatalf("verifying bundle: %v", err)
	}
	return v
}

func TestPublishThenConfigOnly(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.publisher()
	r1, err := p.Publish(ctx, release.Request{Env: f.env, Bundle: f.localBundle(t)})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Seq != 1 || !r1.BundleUploaded || r1.ConfigOnly {
		t.Fatalf("first publish = %+v", r1)
	}
	v1 := f.verifyLatest(t)
	if v1.Release.Seq != 1 || v1.Release.ExpiresAt != now.Add(release.DefaultTTL) {
		t.Fatalf("latest = seq %d expires %s", v1.Release.Seq, v1.Release.ExpiresAt)
	}

	// A manifest change without --repo keeps the bundle and carries the new spec.
	env2 := *f.env
	env2.Spec.EnvFiles = []manifest.EnvFile{{Path: "apps/api/.env", Vars: map[string]manifest.Value{"PORT": {Literal: "4000"}, "APP_GREETING": {Literal: "bonjour"}}}}
	r2, err := p.Publish(ctx, release.Request{Env: &env2})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Seq != 2 || !r2.ConfigOnly || r2.ReusedSeq != 1 || r2.Bundle != r1.Bundle || r2.Source != r1.Source {
		t.Fatalf("config-only publish = %+v", r2)
	}
	if r2.Inputs.Code.Digest != r1.Inputs.Code.Digest || r2.Inputs.Config.Digest == r1.Inputs.Config.Digest {
		t.Fatal("config-only release: want the same code digest and a new config digest")
	}
	if r2.Inputs.Config.Files["apps/api/.env"] == r1.Inputs.Config.Files["apps/api/.env"] {
		t.Fatal("changed env file kept its digest")
	}
	if v := f.verifyLatest(t); v.Release.Seq != 2 || v.Release.Spec.EnvFiles[0].Vars["APP_GREETING"].Literal != "bonjour" {
		t.Fatalf("latest after config-only = %d", v.Release.Seq)
	}

	// Publishing the same commit again does not upload the bundle again.
	r3, err := p.Publish(ctx, release.Request{Env: f.env, Bundle: f.localBundle(t)})
	if err != nil || r3.Seq != 3 || r3.BundleUploaded {
		t.Fatalf("republish = %+v, %v; want seq 3 without upload", r3, err)
	}
}

func TestConfigOnlyNeedsARelease(t *testing.T) {
	f := newFixture(t)
	_, err := f.publisher().Publish(context.Background(), release.Request{Env: f.env})
	if fault.KindOf(err) != fault.KindUsage || !strings.Contains(err.Error(), "--repo") {
		t.Fatalf("config-only on an empty store: %v, want a usage error suggesting --repo", err)
	}
}

func TestManifestNamingMissingFilesIsRejected(t *testing.T) {
	f := newFixture(t)
	env := *f.env
	env.Spec.Schema = &manifest.Schema{Dir: "db", DatabaseURL: manifest.Value{RefKind: manifest.RefSSM, Ref: "/x"}, Files: []string{"db/01.ddl"}}
	_, err := f.publisher().Publish(context.Background(), release.Request{Env: &env, Bundle: f.localBundle(t)})
	if fault.ExitCode(err) != fault.ExitRejected || !strings.Contains(err.Error(), "db/01.ddl") {
		t.Fatalf("manifest naming a missing schema file: %v", err)
	}
	if _, err := f.st.Stat(context.Background(), store.ReleaseKey("demo", 1)); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a release was written despite the error")
	}
}

// TestCheckRefusesBeforeWriting: Request.Check sees the bundle the
// release carries (the new one, or the kept one of a config-only
// release) and its files, and a refusal leaves the store as it was: no
// bundle, no signature, no release.
func TestCheckRefusesBeforeWriting(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	refused := errors.New("refused by the check")
	var seen []string
	refuse := func(ix *bundle.Index, read func(string) ([]byte, error)) error {
		data, err := read("apps/api/server.js")
		if err != nil {
			return err
		}
		seen = append(seen, fmt.Sprintf("%d files, server.js %q", len(ix.Entries), data))
		return fault.Rejected(refused)
	}
	keys := func() []string {
		k, err := f.st.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		return k
	}

	if _, err := f.publisher().Publish(ctx, release.Request{Env: f.env, Bundle: f.localBundle(t), Check: refuse}); !errors.Is(err, refused) {
		t.Fatalf("publish with a refusing check: %v", err)
	}
	if k := keys(); len(k) != 0 {
		t.Fatalf("a refused publish wrote %v", k)
	}

	if _, err := f.publisher().Publish(ctx, release.Request{Env: f.env, Bundle: f.localBundle(t)}); err != nil {
		t.Fatal(err)
	}
	before := keys()
	// A new key would co-sign the kept bundle: not when the check refuses.
	other, _, err := generateKey()
	if err != nil {
		t.Fatal(err)
	}
	p := f.publisher()
	p.Signers = append(p.Signers, other)
	sig, _, err := store.ReadAll(ctx, f.st, store.SigKey(store.ReleaseKey("demo", 1)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	bundleSigBefore := f.bundleSig(t)
	if _, err := p.Publish(ctx, release.Request{Env: f.env, Check: refuse}); !errors.Is(err, refused) {
		t.Fatalf("config-only publish with a refusing check: %v", err)
	}
	if _, err := p.Preview(ctx, release.Request{Env: f.env, Policy: f.pol, Check: refuse}); !errors.Is(err, refused) {
		t.Fatalf("preview with a refusing check: %v", err)
	}
	if after := keys(); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Fatalf("a refused config-only publish changed the store: %v -> %v", before, after)
	}
	if after, _, _ := store.ReadAll(ctx, f.st, store.SigKey(store.ReleaseKey("demo", 1)), 1<<20); !bytes.Equal(after, sig) || !bytes.Equal(f.bundleSig(t), bundleSigBefore) {
		t.Fatal("a refused config-only publish rewrote a signature")
	}
	want := `files, server.js "v1\n"`
	if len(seen) != 3 || !strings.HasSuffix(seen[0], want) || seen[1] != seen[0] || seen[2] != seen[0] {
		t.Fatalf("the check saw %q; want the same bundle three times, ending %s", seen, want)
	}
}

func (f *fixture) bundleSig(t *testing.T) []byte {
	t.Helper()
	keys, err := f.st.List(context.Background(), "bundles/")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasSuffix(k, ".sig") {
			sig, _, err := store.ReadAll(context.Background(), f.st, k, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			return sig
		}
	}
	t.Fatal("no bundle signature in the store")
	return nil
}

func TestTamperingIsDetected(t *testing.T) {
	ctx := context.Background()
	corrupt := map[string]func(t *testing.T, f *fixture, rel *manifest.Release) string{
		"bundle byte flipped": func(t *testing.T, f *fixture, rel *manifest.Release) string {
			data, _, _ := store.ReadAll(ctx, f.st, rel.Bundle.Key, 1<<30)
			data[len(data)/2] ^= 0x01
			f.st.Put(ctx, rel.Bundle.Key, bytes.NewReader(data), int64(len(data)))
			return "bundle digest"
		},
		"bundle truncated": func(t *testing.T, f *fixture, rel *manifest.Release) string {
			data, _, _ := store.ReadAll(ctx, f.st, rel.Bundle.Key, 1<<30)
			f.st.Put(ctx, rel.Bundle.Key, bytes.NewReader(data[:len(data)-10]), int64(len(data)-10))
			return "bundle size"
		},
		"bundle signature removed": func(t *testing.T, f *fixture, rel *manifest.Release) string {
			f.st.Put(ctx, store.SigKey(rel.Bundle.Key), strings.NewReader(""), 0)
			return "bundle " + rel.Bundle.Key + " signature"
		},
		"manifest byte flipped": func(t *testing.T, f *fixture, rel *manifest.Release) string {
			key := store.ReleaseKey("demo", 1)
			data, _, _ := store.ReadAll(ctx, f.st, key, 1<<20)
			data = bytes.Replace(data, []byte("seq: 1"), []byte("seq: 9"), 1)
			f.st.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
			return "release manifest releases/demo/1.yaml signature"
		},
	}
	for name, fn := range corrupt {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			if _, err := f.publisher().Publish(ctx, release.Request{Env: f.env, Bundle: f.localBundle(t)}); err != nil {
				t.Fatal(err)
			}
			v := f.verifyLatest(t)
			check := fn(t, f, v.Release)
			v2, err := release.FetchLatestVerified(ctx, f.st, "demo", f.pol, trust.Expect{Env: "demo", Now: now})
			if err == nil {
				_, err = release.VerifyBundle(ctx, f.st, v2.Release, f.pol, now)
			}
			var ve *trust.VerificationError
			if !errors.As(err, &ve) || ve.Check != check || fault.ExitCode(err) != fault.ExitRejected {
				t.Fatalf("got %v, want a rejection by check %q", err, check)
			}
		})
	}
}

func TestRacingPublishersGetDistinctSeqs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.publisher().Publish(ctx, release.Request{Env: f.env, Bundle: f.localBundle(t)}); err != nil {
		t.Fatal(err)
	}
	const n = 6
	var wg sync.WaitGroup
	seqs := make([]uint64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := f.publisher().Publish(ctx, release.Request{Env: f.env})
			errs[i] = err
			if err == nil {
				seqs[i] = r.Seq
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("publisher %d: %v", i, errs[i])
		}
		if seen[seqs[i]] {
			t.Fatalf("two publishers claimed seq %d", seqs[i])
		}
		seen[seqs[i]] = true
	}
	all, _ := release.Seqs(ctx, f.st, "demo")
	if fmt.Sprint(all) != "[1 2 3 4 5 6 7]" {
		t.Fatalf("seqs in store = %v", all)
	}
	if v := f.verifyLatest(t); v.Release.Seq != 7 {
		t.Fatalf("latest = %d after the race, want 7", v.Release.Seq)
	}
}

func TestBundleIsNeverOverwritten(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	lb := f.localBundle(t)
	key := store.BundleKey(lb.Name)
	other := bytes.Repeat([]byte{1}, int(lb.Size))
	if err := f.st.Put(ctx, key, bytes.NewReader(other), int64(len(other))); err != nil {
		t.Fatal(err)
	}
	_, err := f.publisher().Publish(ctx, release.Request{Env: f.env, Bundle: lb})
	if fault.KindOf(err) != fault.KindRejected || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("publish over a different bundle: %v", err)
	}
	rc, _, _ := f.st.Get(ctx, key, "")
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, other) {
		t.Fatal("existing bundle was modified")
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	f := newFixture(t)
	r, err := f.publisher().Publish(context.Background(), release.Request{Env: f.env, Bundle: f.localBundle(t), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	v := f.verifyLatest(t)
	again, err := release.Marshal(v.Release)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, v.Raw) {
		t.Fatalf("re-marshaling a parsed release changed its bytes:\n%s\n---\n%s", v.Raw, again)
	}
	if v.Digest != r.Digest {
		t.Fatalf("digest %s, publish said %s", v.Digest, r.Digest)
	}
}
