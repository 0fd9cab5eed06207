package deps

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/proc"
	"github.com/cohuron/deploy/pkg/tree"
)

func TestKey(t *testing.T) {
	a := Key("sha256:aaaa", Tools{Node: "v20.20.2", Pnpm: "9.15.9"})
	if !strings.HasPrefix(a, "sha256:") || len(a) != len("sha256:")+64 {
		t.Fatalf("Key = %q, want sha256:<64 hex>", a)
	}
	if a != Key("sha256:aaaa", Tools{Node: "v20.20.2", Pnpm: "9.15.9"}) {
		t.Error("Key is not deterministic")
	}
	for _, other := range []string{
		Key("sha256:aaab", Tools{Node: "v20.20.2", Pnpm: "9.15.9"}),
		Key("sha256:aaaa", Tools{Node: "v22.0.0", Pnpm: "9.15.9"}),
		Key("sha256:aaaa", Tools{Node: "v20.20.2", Pnpm: "10.0.0"}),
	} {
		if other == a {
			t.Errorf("a changed input gives the same key %s", a)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v20.20.2\n":                            "v20.20.2",
		"9.15.9":                                "9.15.9",
		"Update available! 9 -> 10\n\n9.15.9\n": "9.15.9",
		"10.0.0-rc.1\n":                         "10.0.0-rc.1",
	} {
		if got, err := parseVersion([]byte(in)); err != nil || got != want {
			t.Errorf("parseVersion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := parseVersion([]byte("command not found")); err == nil || !strings.Contains(err.Error(), `found "command not found"`) {
		t.Errorf("parseVersion(garbage) error = %v", err)
	}
}

func TestFindModules(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"node_modules/.pnpm/x/node_modules", "apps/web/node_modules/y/node_modules", "apps/api/node_modules", "apps/api/src"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "node_modules"), filepath.Join(dir, "apps", "api", "src", "node_modules")); err != nil {
		t.Fatal(err)
	}
	got, err := findModules(dir)
	want := []string{"node_modules", "apps/api/node_modules", "apps/web/node_modules"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("findModules = %q, %v; want %q", got, err, want)
	}
}

func TestMarkerValidation(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "node_modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ marker, want string }{
		{`{"key":"sha256:ab","dirs":["node_modules","../../etc/node_modules"]}`, "expected clean relative node_modules paths"},
		{`{"key":"sha256:ab","dirs":["node_modules","apps/api/src"]}`, "expected clean relative node_modules paths"},
		{`{"key":"sha256:ab","dirs":["apps/api/node_modules"]}`, "expected dirs to start with node_modules"},
		{`{"key":"md5:ab","dirs":["node_modules"]}`, "expected a key sha256:<hex>"},
		{`not json`, "unreadable"},
	} {
		if err := os.WriteFile(filepath.Join(dir, Marker), []byte(tc.marker), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Check(dir, "sha256:ab"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("marker %s: Check = %v, want %q", tc.marker, err, tc.want)
		}
	}
	// A marker that is a symlink is not followed.
	os.Remove(filepath.Join(dir, Marker))
	other := filepath.Join(dir, "other.json")
	os.WriteFile(other, []byte(`{"key":"sha256:ab","dirs":["node_modules"]}`), 0o644)
	os.Symlink(other, filepath.Join(dir, Marker))
	if err := Check(dir, "sha256:ab"); err == nil {
		t.Error("Check followed a symlinked marker")
	}
}

// fixture is a pnpm workspace prepared for the app user.
type fixture struct {
	base string // owned by root, 0755; holds the store, cache and copies
	user string
	uid  int
	gid  int
	env  []string // for the child: PATH with pnpm and node
	n    int
}

var lock struct {
	once sync.Once
	yaml []byte
	err  error
}

const (
	rootPackage = `{"name":"root","private":true}` + "\n"
	workspace   = "packages:\n  - \"apps/*\"\n"
	apiPackage  = `{"name":"api","version":"1.0.0","private":true,"dependencies":{"ms":"2.1.3","semver":"7.6.3"}}` + "\n"
	webPackage  = `{"name":"web","version":"1.0.0","private":true,"dependencies":{"api":"workspace:*"}}` + "\n"
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	user := testenv.AppUser(t)
	pnpmDir := testenv.PnpmForUser(t)
	u, err := proc.LookupUser(user)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{base: t.TempDir(), user: user, uid: int(u.Uid), gid: int(u.Gid),
		env: []string{"PATH=" + pnpmDir + ":/usr/local/bin:/usr/bin:/bin"}}
	// t.TempDir's directories are 0700: let the app user through.
	for _, d := range []string{filepath.Dir(f.base), f.base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"store", "cache"} {
		f.mkUserDir(t, filepath.Join(f.base, d))
	}
	lock.once.Do(func() { lock.yaml, lock.err = f.makeLockfile() })
	if lock.err != nil {
		t.Fatalf("creating pnpm-lock.yaml: %v", lock.err)
	}
	return f
}

func (f *fixture) mkUserDir(t *testing.T, d string) {
	t.Helper()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, f.uid, f.gid); err != nil {
		t.Fatal(err)
	}
}

// copy writes a fresh copy of the workspace (with the lockfile once it
// exists), owned by the app user, and returns its path.
func (f *fixture) copy(t *testing.T) string {
	t.Helper()
	f.n++
	dir := filepath.Join(f.base, fmt.Sprintf("release-%d", f.n))
	if err := f.write(dir, lock.yaml); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (f *fixture) write(dir string, lockfile []byte) error {
	files := map[string]string{
		"package.json":          rootPackage,
		"pnpm-workspace.yaml":   workspace,
		"apps/api/package.json": apiPackage,
		"apps/web/package.json": webPackage,
		"apps/api/src/index.js": "module.exports = require('ms')('1m');\n",
		// A per-test store and cache, independent of the user's home.
		".npmrc": fmt.Sprintf("store-dir=%s\ncache-dir=%s\nupdate-notifier=false\n",
			filepath.Join(f.base, "store"), filepath.Join(f.base, "cache")),
	}
	if lockfile != nil {
		files["pnpm-lock.yaml"] = string(lockfile)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return tree.Chown(dir, f.uid, f.gid)
}

// makeLockfile resolves the workspace once (pnpm install --lockfile-only)
// and returns pnpm-lock.yaml.
func (f *fixture) makeLockfile() ([]byte, error) {
	dir := filepath.Join(f.base, "lock")
	if err := f.write(dir, nil); err != nil {
		return nil, err
	}
	env, err := proc.UserEnv(f.env, f.user, "install scripts")
	if err != nil {
		return nil, err
	}
	_, err = proc.Run(context.Background(), proc.Cmd{
		Name: "pnpm", Args: []string{"install", "--lockfile-only"}, Dir: dir, Env: env, User: f.user,
		Timeout: 3 * time.Minute,
	})
	if err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(dir, "pnpm-lock.yaml"))
}

func (f *fixture) installer() *Installer {
	return &Installer{Env: f.env, User: f.user, Log: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}
}

// node runs a node snippet in dir as the app user.
func (f *fixture) node(t *testing.T, dir, script string) (string, error) {
	t.Helper()
	env, err := proc.UserEnv(f.env, f.user, "install scripts")
	if err != nil {
		t.Fatal(err)
	}
	res, err := proc.Run(context.Background(), proc.Cmd{
		Name: "node", Args: []string{"-e", script}, Dir: dir, Env: env, User: f.user, Timeout: time.Minute,
	})
	return strings.TrimSpace(string(res.Output)), err
}

func owner(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*syscall.Stat_t)
	return s.Uid, s.Gid
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

const install = "pnpm install --frozen-lockfile"

func TestVersions(t *testing.T) {
	f := newFixture(t)
	tools, err := Versions(context.Background(), f.env, f.user)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tools.Node, "v") || !versionRE.MatchString(tools.Node) || !versionRE.MatchString(tools.Pnpm) || strings.HasPrefix(tools.Pnpm, "v") {
		t.Fatalf("Versions = %+v, want node vX.Y.Z and pnpm X.Y.Z", tools)
	}
	if _, err := Versions(context.Background(), f.env, ""); err == nil || !strings.Contains(err.Error(), "install scripts never run as root") {
		t.Errorf("Versions as root: err = %v, want a refusal", err)
	}
}

func TestInstallCheckReuse(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := Key("sha256:inputs", Tools{Node: "v20", Pnpm: "9"})
	first := f.copy(t)
	logPath := filepath.Join(f.base, "logs", "install.log")
	if err := f.installer().Install(ctx, first, strings.Fields(install), 0, logPath, key); err != nil {
		t.Fatal(err)
	}

	// The marker, the owner, the log.
	b, err := os.ReadFile(filepath.Join(first, Marker))
	if err != nil {
		t.Fatal(err)
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	wantDirs := []string{"node_modules", "apps/api/node_modules", "apps/web/node_modules"}
	if m.Key != key || !reflect.DeepEqual(m.Dirs, wantDirs) || !m.InstalledAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("marker = %+v, want key %s, dirs %q, installedAt from Now", m, key, wantDirs)
	}
	for _, p := range []string{"node_modules", Marker, "node_modules/.modules.yaml", "apps/api/node_modules", "apps/api/node_modules/ms"} {
		if uid, gid := owner(t, filepath.Join(first, p)); int(uid) != f.uid || int(gid) != f.gid {
			t.Errorf("%s owned by %d:%d, want the app user %d:%d", p, uid, gid, f.uid, f.gid)
		}
	}
	if st, err := os.Stat(logPath); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("log %s: %v, %v; want mode 0640", logPath, st, err)
	}
	if log, _ := os.ReadFile(logPath); !strings.Contains(string(log), install) || !strings.Contains(string(log), "Done in") {
		t.Errorf("log lacks the command or pnpm's output:\n%s", log)
	}
	if err := Check(first, key); err != nil {
		t.Fatalf("Check after Install: %v", err)
	}

	// Reuse into a fresh copy: a working install sharing inodes.
	second := f.copy(t)
	if err := Reuse(first, second, key); err != nil {
		t.Fatal(err)
	}
	if err := Check(second, key); err != nil {
		t.Fatal(err)
	}
	msFile := "node_modules/.pnpm/ms@2.1.3/node_modules/ms/index.js"
	if inode(t, filepath.Join(first, msFile)) != inode(t, filepath.Join(second, msFile)) {
		t.Errorf("%s: the clone is not a hard link", msFile)
	}
	if st, err := os.Lstat(filepath.Join(second, "apps/api/node_modules/ms")); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("apps/api/node_modules/ms in the clone: %v, %v; want a symlink", st, err)
	}
	shim, err := os.ReadFile(filepath.Join(second, "apps/api/node_modules/.bin/semver"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(shim), first+"/") || !strings.Contains(string(shim), second+"/node_modules/.pnpm") {
		t.Errorf(".bin/semver still points into %s:\n%s", first, shim)
	}
	if old, _ := os.ReadFile(filepath.Join(first, "apps/api/node_modules/.bin/semver")); !strings.Contains(string(old), first+"/node_modules/.pnpm") {
		t.Errorf("rewriting the clone's shim changed the original:\n%s", old)
	}

	// The clone works on its own: remove the original first.
	if err := os.RemoveAll(first); err != nil {
		t.Fatal(err)
	}
	out, err := f.node(t, filepath.Join(second, "apps/api"), `console.log(require.resolve('ms'), require('./src/index.js'))`)
	if err != nil {
		t.Fatalf("require('ms') in the clone: %v", err)
	}
	if !strings.HasPrefix(out, second+"/node_modules/.pnpm/ms@2.1.3/") || !strings.HasSuffix(out, " 60000") {
		t.Errorf("require in the clone = %q, want ms from %s and 60000", out, second)
	}
	env, _ := proc.UserEnv(f.env, f.user, "install scripts")
	res, err := proc.Run(ctx, proc.Cmd{Name: "pnpm", Args: []string{"exec", "semver", "1.2.3"},
		Dir: filepath.Join(second, "apps/api"), Env: env, User: f.user, Timeout: time.Minute})
	if err != nil || strings.TrimSpace(string(res.Output)) != "1.2.3" {
		t.Errorf("pnpm exec semver in the clone: %q, %v", res.Output, err)
	}

	t.Run("check failures", func(t *testing.T) {
		clone := func(t *testing.T) string {
			dir := f.copy(t)
			if err := Reuse(second, dir, key); err != nil {
				t.Fatal(err)
			}
			return dir
		}
		fresh := f.copy(t)
		if err := Check(fresh, key); err == nil || !strings.Contains(err.Error(), "node_modules missing") {
			t.Errorf("no node_modules: Check = %v", err)
		}
		dir := clone(t)
		other := Key("sha256:other", Tools{})
		want := fmt.Sprintf("installed for key %s, not %s", key, other)
		if err := Check(dir, other); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("wrong key: Check = %v, want %q", err, want)
		}
		os.RemoveAll(filepath.Join(dir, "apps/api/node_modules"))
		if err := Check(dir, key); err == nil || !strings.Contains(err.Error(), "apps/api/node_modules missing") {
			t.Errorf("deleted dir: Check = %v", err)
		}
		dir = clone(t)
		os.Remove(filepath.Join(dir, Marker))
		if err := Check(dir, key); err == nil || !strings.Contains(err.Error(), Marker+" missing") {
			t.Errorf("no marker: Check = %v", err)
		}
		dir = clone(t)
		os.Remove(filepath.Join(dir, "node_modules/.modules.yaml"))
		if err := Check(dir, key); err == nil || !strings.Contains(err.Error(), ".modules.yaml missing") {
			t.Errorf("no .modules.yaml: Check = %v", err)
		}
		dir = clone(t)
		os.RemoveAll(filepath.Join(dir, "apps/web/node_modules"))
		os.Symlink("../../node_modules", filepath.Join(dir, "apps/web/node_modules"))
		if err := Check(dir, key); err == nil || !strings.Contains(err.Error(), "apps/web/node_modules: expected a directory") {
			t.Errorf("symlinked dir: Check = %v", err)
		}
	})

	t.Run("reuse refusals", func(t *testing.T) {
		dir := f.copy(t)
		if err := Reuse(second, dir, Key("sha256:other", Tools{})); err == nil || !strings.Contains(err.Error(), "installed for key") {
			t.Errorf("Reuse with another key = %v", err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "node_modules")); err == nil {
			t.Error("a refused Reuse created node_modules")
		}
		// A workspace package missing in the new release: nothing left behind.
		os.RemoveAll(filepath.Join(dir, "apps/web"))
		if err := Reuse(second, dir, key); err == nil || !strings.Contains(err.Error(), "apps/web missing") {
			t.Errorf("Reuse without apps/web = %v", err)
		}
		for _, d := range []string{"node_modules", "apps/api/node_modules"} {
			if _, err := os.Lstat(filepath.Join(dir, d)); err == nil {
				t.Errorf("a failed Reuse left %s", d)
			}
		}
		// node_modules already there.
		dir = f.copy(t)
		os.Mkdir(filepath.Join(dir, "node_modules"), 0o755)
		if err := Reuse(second, dir, key); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("Reuse over node_modules = %v", err)
		}
	})

	t.Run("outdated lockfile", func(t *testing.T) {
		// A reused install whose package.json then changes: the failed
		// install must also remove the stale marker.
		dir := f.copy(t)
		if err := Reuse(second, dir, key); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "apps/api/package.json")
		changed := strings.Replace(apiPackage, `"ms":"2.1.3"`, `"ms":"2.1.3","is-number":"7.0.0"`, 1)
		if err := os.WriteFile(p, []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		err := f.installer().Install(ctx, dir, strings.Fields(install), time.Minute, filepath.Join(f.base, "logs", "outdated.log"), key)
		if err == nil || !strings.Contains(err.Error(), "ERR_PNPM_OUTDATED_LOCKFILE") {
			t.Fatalf("Install with an outdated lockfile = %v, want ERR_PNPM_OUTDATED_LOCKFILE", err)
		}
		t.Logf("the error as the agent reports it:\n%v", err)
		if !strings.Contains(err.Error(), "exit 1") {
			t.Errorf("error lacks the exit status: %v", err)
		}
		if _, err := os.Lstat(filepath.Join(dir, Marker)); err == nil {
			t.Error("a failed install left the marker")
		}
		if err := Check(dir, key); err == nil {
			t.Error("Check passes after a failed install")
		}
	})
}

func TestInstallRefusesRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the refusal applies when we are root")
	}
	dir := t.TempDir()
	for _, user := range []string{"", "root", "0"} {
		in := &Installer{User: user}
		err := in.Install(context.Background(), dir, []string{"true"}, time.Minute, filepath.Join(dir, "log"), "sha256:ab")
		if err == nil || !strings.Contains(err.Error(), "install scripts never run as root; set spec.user") {
			t.Errorf("User %q: Install = %v, want a refusal", user, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "log")); err == nil {
		t.Error("a refused install opened its log")
	}
}

func TestInstallChecksOwner(t *testing.T) {
	user := testenv.AppUser(t)
	dir := t.TempDir() // root's
	in := &Installer{User: user}
	err := in.Install(context.Background(), dir, []string{"true"}, time.Minute, filepath.Join(dir, "log"), "sha256:ab")
	if err == nil || !strings.Contains(err.Error(), "owned by uid 0, expected "+user) {
		t.Errorf("Install in root's directory = %v, want an owner error", err)
	}
}

func TestFingerprint(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"node", "pnpm.cjs"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("v1"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("pnpm.cjs", filepath.Join(dir, "pnpm")); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=relative:" + dir}
	fp1, err := Fingerprint(env)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fp1, filepath.Join(dir, "pnpm.cjs")) {
		t.Errorf("fingerprint %q does not follow the pnpm link", fp1)
	}
	if fp, _ := Fingerprint(env); fp != fp1 {
		t.Errorf("fingerprint changed without a change: %q -> %q", fp1, fp)
	}
	// An upgrade rewrites the file.
	if err := os.WriteFile(filepath.Join(dir, "pnpm.cjs"), []byte("v2 longer"), 0o755); err != nil {
		t.Fatal(err)
	}
	if fp, _ := Fingerprint(env); fp == fp1 {
		t.Errorf("fingerprint unchanged after pnpm changed: %q", fp)
	}
	if _, err := Fingerprint([]string{"PATH=/nonexistent"}); err == nil || !strings.Contains(err.Error(), "node not found in PATH /nonexistent") {
		t.Errorf("missing node: %v", err)
	}
}
