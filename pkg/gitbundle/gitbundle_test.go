package gitbundle_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/gitbundle"
	"github.com/cohuron/deploy/pkg/manifest"
)

var sample = map[string]string{
	"package.json":             `{"name":"x"}`,
	"pnpm-lock.yaml":           "lockfileVersion: '9.0'\n",
	"apps/api/package.json":    `{"name":"api"}`,
	"apps/api/server.js":       "console.log('v1')\n",
	"apps/web/index.html":      "<h1>hi</h1>\n",
	"db/01_schema.ddl":         "CREATE SCHEMA app;\n",
	"db/02_task.ddl":           "CREATE TABLE app.task(id int);\n",
	"docker-compose.yml":       "services: {}\n",
	"node_modules/left/pad.js": "tracked by mistake\n",
	"apps/web/dist/bundle.js":  "built output\n",
	"build/out.txt":            "built output\n",
	"docs/guide.md":            "excluded by .bundleignore\n",
	"scripts/debug.log":        "excluded by .bundleignore\n",
	".bundleignore":            "docs/\n*.log\n",
	"scripts/deploy.sh":        "#!/bin/sh\necho deploy\n",
	"a-very/deeply/nested/" + strings.Repeat("long-name-", 12) + "/file.txt": "long path\n",
}

// newSampleRepo commits sample plus an executable and an internal symlink.
func newSampleRepo(t *testing.T) string {
	t.Helper()
	dir := testenv.NewRepo(t, sample)
	os.Chmod(filepath.Join(dir, "scripts/deploy.sh"), 0o755)
	os.Symlink("server.js", filepath.Join(dir, "apps/api/main.js"))
	testenv.Git(t, dir, "add", "-A")
	testenv.Git(t, dir, "commit", "-q", "-m", "exec and link")
	return dir
}

func build(t *testing.T, repo, ref string) (*gitbundle.Result, []byte) {
	t.Helper()
	var buf bytes.Buffer
	res, err := gitbundle.Build(context.Background(), gitbundle.Options{Repo: repo, Ref: ref}, &buf)
	if err != nil {
		t.Fatalf("Build(%s, %s): %v", repo, ref, err)
	}
	return res, buf.Bytes()
}

// TestReproducibleAcrossClones builds the same commit from two clones made
// at different times, with different mtimes, umask and a dirty work tree.
func TestReproducibleAcrossClones(t *testing.T) {
	origin := newSampleRepo(t)

	cloneA := filepath.Join(t.TempDir(), "a")
	testenv.Git(t, "", "clone", "-q", "file://"+origin, cloneA)

	cloneB := filepath.Join(t.TempDir(), "b")
	testenv.Run(t, "", append(testenv.GitEnv(""), "GIT_TEST_UMASK=1"), "sh", "-c", "umask 077 && git clone -q --no-hardlinks "+origin+" "+cloneB)
	later := time.Now().Add(72 * time.Hour)
	filepath.Walk(cloneB, func(p string, info os.FileInfo, err error) error {
		if err == nil && !strings.Contains(p, "/.git/") {
			os.Chtimes(p, later, later)
		}
		return nil
	})
	// The working tree must not matter: edit, add and delete files.
	os.WriteFile(filepath.Join(cloneB, "apps/api/server.js"), []byte("console.log('uncommitted')\n"), 0o600)
	os.WriteFile(filepath.Join(cloneB, "untracked.txt"), []byte("x"), 0o600)
	os.Remove(filepath.Join(cloneB, "db/02_task.ddl"))
	testenv.Git(t, cloneB, "repack", "-adq") // other object storage: one pack

	resO, bytesO := build(t, origin, "main")
	resA, bytesA := build(t, cloneA, "origin/main")
	resB, bytesB := build(t, cloneB, "HEAD")
	if !bytes.Equal(bytesA, bytesB) || !bytes.Equal(bytesO, bytesA) {
		t.Fatalf("same commit gave different bytes: origin %s, clone A %s, clone B %s", resO.SHA256, resA.SHA256, resB.SHA256)
	}
	if resA.Name != resB.Name || !strings.HasPrefix(resA.Name, "cohuron-main-") || !strings.HasSuffix(resA.Name, "-20260102-030405.tar.gz") {
		t.Fatalf("names %q and %q: want equal cohuron-main-<sha>-20260102-030405.tar.gz", resA.Name, resB.Name)
	}
	// And building twice in one process is stable too.
	if _, again := build(t, cloneB, "HEAD"); !bytes.Equal(again, bytesB) {
		t.Fatal("second build of the same clone differs")
	}
}

func readTar(t *testing.T, data []byte) map[string]*tar.Header {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]*tar.Header{}
	var order []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := out[h.Name]; dup {
			t.Fatalf("duplicate entry %s", h.Name)
		}
		out[h.Name] = h
		order = append(order, h.Name)
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Fatalf("entries not sorted: %q before %q", order[i-1], order[i])
		}
	}
	return out
}

func TestContentsAndNormalization(t *testing.T) {
	repo := newSampleRepo(t)
	res, data := build(t, repo, "main")
	hdrs := readTar(t, data)
	for _, gone := range []string{"node_modules/left/pad.js", "apps/web/dist/bundle.js", "build/out.txt", "docs/guide.md", "scripts/debug.log", ".git/HEAD"} {
		if _, ok := hdrs[gone]; ok {
			t.Errorf("%s is bundled; want it excluded", gone)
		}
	}
	for _, want := range []string{"package.json", "apps/api/server.js", "db/01_schema.ddl", ".bundleignore", "apps/api/", "a-very/deeply/nested/" + strings.Repeat("long-name-", 12) + "/file.txt"} {
		if _, ok := hdrs[want]; !ok {
			t.Errorf("%s is missing from the bundle", want)
		}
	}
	commitTime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for name, h := range hdrs {
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(commitTime) {
			t.Errorf("%s: uid %d gid %d uname %q gname %q mtime %s; want 0 0 \"\" \"\" %s", name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime, commitTime)
		}
	}
	if m := hdrs["scripts/deploy.sh"].Mode; m != 0o755 {
		t.Errorf("executable mode %o, want 755", m)
	}
	if m := hdrs["apps/api/server.js"].Mode; m != 0o644 {
		t.Errorf("file mode %o, want 644", m)
	}
	if h := hdrs["apps/api/main.js"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "server.js" {
		t.Errorf("symlink apps/api/main.js = %+v, want a symlink to server.js", h)
	}
	if res.Source.Branch != "main" || len(res.Source.Commit) != 40 || res.Source.Message != "exec and link" || res.Source.Author != "Test Author <author@example.com>" {
		t.Errorf("source = %+v", res.Source)
	}

	// The index read back from the bytes equals the one built while writing.
	ix, err := bundle.ReadIndex(bytes.NewReader(data), bundle.ReadLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Entries) != len(res.Index.Entries) {
		t.Fatalf("ReadIndex has %d entries, Build %d", len(ix.Entries), len(res.Index.Entries))
	}
	for i := range ix.Entries {
		if ix.Entries[i] != res.Index.Entries[i] {
			t.Fatalf("entry %d: read %+v, built %+v", i, ix.Entries[i], res.Index.Entries[i])
		}
	}
}

func TestRefs(t *testing.T) {
	repo := newSampleRepo(t)
	head := strings.TrimSpace(testenv.Git(t, repo, "rev-parse", "HEAD"))
	testenv.Git(t, repo, "tag", "v1.0.0")
	testenv.Git(t, repo, "checkout", "-q", "-b", "feature/x")
	testenv.WriteFiles(t, repo, map[string]string{"new.txt": "new"})
	testenv.Git(t, repo, "add", "-A")
	testenv.Git(t, repo, "commit", "-q", "-m", "feature")
	for _, tc := range []struct{ ref, branch string }{
		{"main", "main"}, {"v1.0.0", "detached"}, {head, "detached"}, {"HEAD", "feature/x"}, {"feature/x", "feature/x"},
	} {
		res, _ := build(t, repo, tc.ref)
		if res.Source.Branch != tc.branch {
			t.Errorf("ref %s: branch %q, want %q", tc.ref, res.Source.Branch, tc.branch)
		}
	}
	if res, _ := build(t, repo, "HEAD"); !strings.HasPrefix(res.Name, "cohuron-feature-x-") {
		t.Errorf("name %q: want the branch sanitized to feature-x", res.Name)
	}
	_, err := gitbundle.Build(context.Background(), gitbundle.Options{Repo: repo, Ref: "no-such-ref"}, io.Discard)
	if fault.KindOf(err) != fault.KindUsage || !strings.Contains(err.Error(), "no-such-ref") {
		t.Errorf("unknown ref: %v, want a usage error naming it", err)
	}
}

func TestRefusesEscapingSymlink(t *testing.T) {
	for _, target := range []string{"../../etc/passwd", "/etc/passwd", "../.."} {
		repo := testenv.NewRepo(t, map[string]string{"a/file": "x"})
		os.Symlink(target, filepath.Join(repo, "a/link"))
		testenv.Git(t, repo, "add", "-A")
		testenv.Git(t, repo, "commit", "-q", "-m", "link")
		_, err := gitbundle.Build(context.Background(), gitbundle.Options{Repo: repo}, io.Discard)
		if fault.KindOf(err) != fault.KindRejected || !strings.Contains(err.Error(), "a/link") {
			t.Errorf("symlink to %q: %v, want a rejection naming a/link", target, err)
		}
	}
}

func TestInputs(t *testing.T) {
	repo := newSampleRepo(t)
	res, _ := build(t, repo, "main")
	spec := manifest.Spec{
		Compose:   &manifest.Compose{File: "docker-compose.yml", Project: "x"},
		Schema:    &manifest.Schema{Dir: "db", Files: []string{"db/02_task.ddl", "db/01_schema.ddl"}},
		EnvFiles:  []manifest.EnvFile{{Path: "apps/api/.env", Vars: map[string]manifest.Value{"A": {Literal: "1"}}}},
		Processes: []manifest.Process{{Name: "api", Cwd: "apps/api"}},
	}
	in, err := res.Index.Inputs(&spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Dependencies.Files) != 3 { // package.json, apps/api/package.json, pnpm-lock.yaml
		t.Errorf("dependency files %v, want the lockfile and both package.json", in.Dependencies.Files)
	}
	if in.Schema.Files["db/01_schema.ddl"] == "" || in.Compose.Files["docker-compose.yml"] == "" || in.Config.Files["apps/api/.env"] == "" {
		t.Errorf("inputs missing per-file digests: %+v", in)
	}
	// Order of schema files is part of the digest.
	spec.Schema.Files = []string{"db/01_schema.ddl", "db/02_task.ddl"}
	in2, _ := res.Index.Inputs(&spec)
	if in2.Schema.Digest == in.Schema.Digest {
		t.Error("reordering schema files left the schema digest unchanged")
	}
	if in2.Code.Digest != in.Code.Digest || in2.Dependencies.Digest != in.Dependencies.Digest {
		t.Error("code or dependency digest depends on the spec")
	}
	spec.Schema.Files = append(spec.Schema.Files, "db/99_missing.ddl")
	spec.Processes[0].Cwd = "apps/nope"
	_, err = res.Index.Inputs(&spec)
	if err == nil || !strings.Contains(err.Error(), "db/99_missing.ddl") || !strings.Contains(err.Error(), "apps/nope") {
		t.Errorf("missing files: %v, want both named", err)
	}
}

func TestName(t *testing.T) {
	ts := time.Date(2026, 11, 25, 13, 14, 15, 0, time.UTC)
	for branch, want := range map[string]string{
		"main":            "cohuron-main-abcdef1-20261125-131415.tar.gz",
		"feature/new ui!": "cohuron-feature-new-ui-abcdef1-20261125-131415.tar.gz",
		"":                "cohuron-detached-abcdef1-20261125-131415.tar.gz",
		"../../etc":       "cohuron-etc-abcdef1-20261125-131415.tar.gz",
	} {
		if got := gitbundle.Name(branch, "abcdef1234567890", ts); got != want {
			t.Errorf("Name(%q) = %q, want %q", branch, got, want)
		}
	}
}

func TestSourceRepoHasNoCredentials(t *testing.T) {
	repo := newSampleRepo(t)
	testenv.Git(t, repo, "remote", "add", "origin", "https://ghs_abcdefTOKEN123@github.com/cohuron/app.git")
	res, _ := build(t, repo, "main")
	if res.Source.Repo != "https://github.com/cohuron/app.git" {
		t.Fatalf("source repo %q: want the origin URL without the token", res.Source.Repo)
	}
}
