package release_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/artifact"
	"github.com/cohuron/deploy/pkg/gitbundle"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/release"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/trust"
)

// fakeBuilder packs apps/web/dist holding what it was asked to build
// from, and its call number when notReproducible; fail makes it fail.
type fakeBuilder struct {
	calls           int
	fail            bool
	notReproducible bool
}

func (b *fakeBuilder) Build(_ context.Context, _ *manifest.Spec, in manifest.Inputs, h manifest.Hook, _ string, mtime time.Time, out string) (*release.LocalBundle, error) {
	b.calls++
	if b.fail {
		return nil, fmt.Errorf("build hook %q: exit status 1", h.Name)
	}
	dir, err := os.MkdirTemp("", "fake-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	content := in.Hooks[h.Name].Digest
	if b.notReproducible {
		content += fmt.Sprint(b.calls)
	}
	if err := os.MkdirAll(filepath.Join(dir, "apps/web/dist"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "apps/web/dist/index.html"), []byte(content), 0o644); err != nil {
		return nil, err
	}
	built, err := artifact.Pack(dir, h.Outputs, mtime, out)
	if err != nil {
		return nil, err
	}
	return &release.LocalBundle{Path: built.Path, SHA256: built.SHA256, Size: built.Size, Index: built.Index}, nil
}

func bundleOf(t *testing.T, files map[string]string) *release.LocalBundle {
	t.Helper()
	repo := testenv.NewRepo(t, files)
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	res, err := gitbundle.Build(context.Background(), gitbundle.Options{Repo: repo}, out)
	if err != nil {
		t.Fatal(err)
	}
	return &release.LocalBundle{Path: path, Name: res.Name, SHA256: res.SHA256, Size: res.Size, Source: res.Source, Index: res.Index}
}

func appFiles(api, web string) map[string]string {
	return map[string]string{
		"package.json": `{"name":"x"}`, "apps/api/package.json": `{"name":"api"}`, "apps/api/server.js": api,
		"apps/web/package.json": `{"name":"web"}`, "apps/web/src/main.js": web,
	}
}

// TestPublishTimeArtifacts: an artifact is built once per inputs and
// reused while they do not change; a failed build publishes nothing; an
// object at the artifact's key that the latest release does not name is
// never signed into a release.
func TestPublishTimeArtifacts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.env.Spec.User = "cohuron"
	f.env.Spec.Build = []manifest.Hook{{Name: "web", Cwd: "apps/web", Command: []string{"true"}, At: manifest.AtPublish,
		Inputs: []string{"apps/web/**"}, Outputs: []string{"apps/web/dist"}}}
	b := &fakeBuilder{}
	p := f.publisher()
	p.Builder = b
	publish := func(files map[string]string) (*release.Result, error) {
		return p.Publish(ctx, release.Request{Env: f.env, Bundle: bundleOf(t, files)})
	}
	artifactOf := func(seq uint64) manifest.Artifact {
		t.Helper()
		v, err := release.FetchVerified(ctx, f.st, "demo", seq, f.pol, trust.Expect{Env: "demo", Now: now})
		if err != nil {
			t.Fatal(err)
		}
		a, ok := v.Release.Artifact("web")
		if !ok {
			t.Fatalf("release %d has no web artifact", seq)
		}
		return a
	}

	r1, err := publish(appFiles("v1", "w1"))
	if err != nil {
		t.Fatal(err)
	}
	if b.calls != 1 || len(r1.Built) != 1 {
		t.Fatalf("first publish: %d builds, built %v; want one", b.calls, r1.Built)
	}
	a1 := artifactOf(1)

	// An API-only change: the web's inputs are the same, nothing is built.
	if _, err := publish(appFiles("v2", "w1")); err != nil {
		t.Fatal(err)
	}
	if a2 := artifactOf(2); b.calls != 1 || a2 != a1 {
		t.Fatalf("API-only change: %d builds, artifact %+v; want the first one reused (%+v)", b.calls, a2, a1)
	}

	// A failing build (the builder's second call): no bundle, no release.
	b.fail = true
	objects := func() int {
		n := 0
		for _, prefix := range []string{"bundles/", "releases/demo/"} {
			keys, err := f.st.List(ctx, prefix)
			if err != nil {
				t.Fatal(err)
			}
			n += len(keys)
		}
		return n
	}
	before := objects()
	if _, err := publish(appFiles("v3", "w3")); err == nil || !strings.Contains(err.Error(), `build hook "web"`) {
		t.Fatalf("failing build: %v, want the hook's error", err)
	}
	if after := objects(); after != before {
		t.Fatalf("a failed build left %d new objects in the store", after-before)
	}
	b.fail = false

	// Someone who can write to the store puts other bytes (an older,
	// validly signed artifact) at the key of the next web inputs; the
	// publisher builds its own and ships it beside them.
	r3, err := publish(appFiles("v3", "w3"))
	if err != nil {
		t.Fatal(err)
	}
	a3 := artifactOf(r3.Seq)
	if b.calls != 3 || a3.SHA256 == a1.SHA256 || a3.Key != release.ArtifactKey("web", a3.Inputs) {
		t.Fatalf("web change: %d builds, artifact %+v", b.calls, a3)
	}
	w4 := appFiles("v3", "w4")
	in, err := bundleOf(t, w4).Index.Inputs(&f.env.Spec)
	if err != nil {
		t.Fatal(err)
	}
	rogue := release.ArtifactKey("web", in.Hooks["web"].Digest)
	copyObject(t, f.st, a1.Key, rogue)
	copyObject(t, f.st, store.SigKey(a1.Key), store.SigKey(rogue))
	b.notReproducible = true
	r4, err := publish(w4)
	if err != nil {
		t.Fatal(err)
	}
	a4 := artifactOf(r4.Seq)
	if b.calls != 4 || a4.SHA256 == a1.SHA256 || a4.Key == rogue {
		t.Fatalf("the store's object at the key was taken: %+v (first artifact %s)", a4, a1.SHA256)
	}

	// A revert to inputs built before, not reproducibly: the new build
	// goes beside the old object, which releases may still name.
	r5, err := publish(appFiles("v3", "w1"))
	if err != nil {
		t.Fatal(err)
	}
	a5 := artifactOf(r5.Seq)
	if b.calls != 5 || a5.Key == a1.Key || a5.Inputs != a1.Inputs || !strings.Contains(a5.Key, a5.SHA256[:16]) {
		t.Fatalf("revert: %d builds, artifact %+v; want a new one beside %s", b.calls, a5, a1.Key)
	}
}

func copyObject(t *testing.T, st store.Store, from, to string) {
	t.Helper()
	ctx := context.Background()
	rc, info, err := st.Get(ctx, from, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := st.Put(ctx, to, rc, info.Size); err != nil {
		t.Fatal(err)
	}
}
