package artifact_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/artifact"
	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
)

var mtime = time.Date(2025, 12, 1, 12, 0, 0, 0, time.UTC)

// write creates files (path -> content; "-> target" makes a symlink,
// "<dir>" an empty directory)
// under dir.
func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if content == "<dir>" {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if target, ok := strings.CutPrefix(content, "-> "); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readIndex(t *testing.T, path string) *bundle.Index {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ix, err := bundle.ReadIndex(f, bundle.ReadLimits{})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func paths(ix *bundle.Index) string {
	var ps []string
	for _, e := range ix.Entries {
		ps = append(ps, e.Path)
	}
	return strings.Join(ps, " ")
}

// TestPackReproducible packs the same outputs from two trees written at
// different times: the same bytes, only what the outputs hold, and the
// index the archive really has.
func TestPackReproducible(t *testing.T) {
	files := map[string]string{
		"apps/web/dist/index.html":    "<html></html>",
		"apps/web/dist/assets/app.js": "console.log(1)",
		"apps/web/dist/latest.js":     "-> assets/app.js",
		"apps/web/src/main.tsx":       "not an output",
		"apps/web/dist-notes/readme":  "not an output either",
		"apps/api/dist/should-not-be": "other hook's",
	}
	var sums []string
	for i := range 2 {
		dir := t.TempDir()
		write(t, dir, files)
		if i == 1 {
			later := time.Now().Add(time.Hour)
			os.Chtimes(filepath.Join(dir, "apps/web/dist/index.html"), later, later)
		}
		out := filepath.Join(t.TempDir(), "a.tar.gz")
		built, err := artifact.Pack(dir, []string{"apps/web/dist"}, mtime, out)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(data)) != built.Size {
			t.Errorf("Size %d, file has %d bytes", built.Size, len(data))
		}
		if got, want := paths(built.Index), "apps/web/dist/assets/app.js apps/web/dist/index.html apps/web/dist/latest.js"; got != want {
			t.Errorf("packed %s, want %s", got, want)
		}
		if got := paths(readIndex(t, out)); got != paths(built.Index) {
			t.Errorf("archive holds %s, index says %s", got, paths(built.Index))
		}
		sums = append(sums, built.SHA256)
	}
	if sums[0] != sums[1] {
		t.Errorf("same outputs packed twice: %s and %s", sums[0], sums[1])
	}
}

func TestPackRefuses(t *testing.T) {
	for _, c := range []struct {
		name    string
		files   map[string]string
		outputs []string
		want    string
	}{
		{"not built", map[string]string{"apps/web/src/a": "x"}, []string{"apps/web/dist"}, "declared output apps/web/dist was not built"},
		{"not clean", map[string]string{"dist/a": "x"}, []string{"dist/../dist"}, `output "dist/../dist": expected a clean path`},
		{"outside", map[string]string{"dist/a": "x"}, []string{"../dist"}, `output "../dist": expected a clean path`},
		{"empty", map[string]string{"dist": "<dir>"}, []string{"dist"}, "declared output dist holds no files"},
		{"symlinked parent", map[string]string{"real/dist/a": "x", "apps": "-> real"}, []string{"apps/dist"}, "output apps/dist: apps is a symlink"},
		{"output a symlink out of the tree", map[string]string{"dist": "-> /etc"}, []string{"dist"}, "symlink dist -> /etc leaves the declared outputs"},
		{"symlink out of the outputs", map[string]string{"dist/a": "x", "secret": "s", "dist/leak": "-> ../secret"}, []string{"dist"}, "dist/leak"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, c.files)
			_, err := artifact.Pack(dir, c.outputs, mtime, filepath.Join(t.TempDir(), "a.tar.gz"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Pack: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestLiteral(t *testing.T) {
	spec := &manifest.Spec{EnvFiles: []manifest.EnvFile{
		{Path: "apps/web/.env", Vars: map[string]manifest.Value{"VITE_API_BASE_URL": {Literal: "https://api.example"}}},
		{Path: "apps/api/.env", Vars: map[string]manifest.Value{
			"PORT":         {Literal: "4000"},
			"JWT_SECRET":   {RefKind: manifest.RefFile, Ref: "/run/jwt"},
			"DATABASE_URL": {RefKind: manifest.RefFile, Ref: "/run/db"},
		}},
	}}
	web := manifest.Hook{Name: "web", Inputs: []string{"apps/web/**"}, At: manifest.AtPublish}
	if err := artifact.Literal(spec, web); err != nil {
		t.Errorf("a hook reading only the literal env file: %v", err)
	}
	all := manifest.Hook{Name: "all", At: manifest.AtPublish}
	err := artifact.Literal(spec, all)
	if err == nil || fault.ExitCode(err) != fault.ExitRejected {
		t.Fatalf("a hook reading every file, secrets included: %v (exit %d), want rejected", err, fault.ExitCode(err))
	}
	for _, want := range []string{`build hook "all"`, "apps/api/.env", "DATABASE_URL, JWT_SECRET are", "at: host"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestBuild runs a hook at publish time as an unprivileged user from a
// bundle: it sees the literal env file, runs as that user, and only its
// outputs are archived. A failing hook is an error naming it, and root
// without a build user is refused before anything runs.
func TestBuild(t *testing.T) {
	var src bytes.Buffer
	bw, err := bundle.NewWriter(&src, mtime)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ path, data string }{
		{"apps/web/index.html", "<h1>hi</h1>"},
		{"apps/web/package.json", "{}"},
	} {
		if err := bw.Add(bundle.Entry{Path: f.path, Mode: bundle.ModeFile}, []byte(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	bundlePath := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if err := os.WriteFile(bundlePath, src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := &manifest.Spec{EnvFiles: []manifest.EnvFile{
		{Path: "apps/web/.env", Vars: map[string]manifest.Value{"VITE_API_BASE_URL": {Literal: "https://api.example"}}},
	}}
	hook := manifest.Hook{Name: "web", Cwd: "apps/web", At: manifest.AtPublish, Outputs: []string{"apps/web/dist"},
		Command: []string{"sh", "-c", "mkdir -p dist && cp index.html dist/ && id -u > dist/uid && cat .env > dist/env"}}

	if os.Geteuid() == 0 {
		_, err := (&artifact.Builder{}).Build(context.Background(), spec, manifest.Inputs{}, hook, bundlePath, mtime, filepath.Join(t.TempDir(), "x.tar.gz"))
		if err == nil || fault.ExitCode(err) != fault.ExitUsage || !strings.Contains(err.Error(), "--build-user") {
			t.Fatalf("root without a build user: %v (exit %d), want a usage error naming --build-user", err, fault.ExitCode(err))
		}
	}
	b := &artifact.Builder{Env: []string{"PATH=/usr/bin:/bin"}}
	if os.Geteuid() == 0 {
		b.User = testenv.SystemUser(t, "cohuron-app")
	}
	out := filepath.Join(t.TempDir(), "web.tar.gz")
	built, err := b.Build(context.Background(), spec, manifest.Inputs{}, hook, bundlePath, mtime, out)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := paths(built.Index), "apps/web/dist/env apps/web/dist/index.html apps/web/dist/uid"; got != want {
		t.Errorf("artifact holds %s, want %s", got, want)
	}
	read := func(name string) string {
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		data, err := bundle.ReadFile(f, name, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	if got := read("apps/web/dist/env"); !strings.Contains(got, "VITE_API_BASE_URL=") || !strings.Contains(got, "https://api.example") {
		t.Errorf("the hook saw env file %q, want the literal VITE_API_BASE_URL", got)
	}
	if os.Geteuid() == 0 && read("apps/web/dist/uid") == "0" {
		t.Errorf("the hook ran as root")
	}

	hook.Command = []string{"sh", "-c", "echo broken >&2; exit 3"}
	_, err = b.Build(context.Background(), spec, manifest.Inputs{}, hook, bundlePath, mtime, filepath.Join(t.TempDir(), "y.tar.gz"))
	if err == nil || !strings.Contains(err.Error(), `"web"`) {
		t.Fatalf("failing hook: %v, want an error naming hook \"web\"", err)
	}
}
