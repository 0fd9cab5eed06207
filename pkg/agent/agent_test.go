package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/reliability"
	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/agent"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/fetch"
	"github.com/cohuron/deploy/pkg/gitbundle"
	"github.com/cohuron/deploy/pkg/health"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/pm2"
	"github.com/cohuron/deploy/pkg/release"
	"github.com/cohuron/deploy/pkg/secrets"
	"github.com/cohuron/deploy/pkg/signing"
	"github.com/cohuron/deploy/pkg/state"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/store/dirstore"
	"github.com/cohuron/deploy/pkg/trust"
)

// now is the clock of publisher and agent alike: releases are valid.
var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// testKey is one key pair per test binary: scrypt is slow under -race.
var testKey = sync.OnceValues(func() (signing.Signer, []byte) {
	pass := signing.StaticPass([]byte("pw"))
	priv, pub, err := signing.GenerateKeyPair(pass)
	if err != nil {
		panic(err)
	}
	signer, err := signing.SignerFromPEM(priv, pass)
	if err != nil {
		panic(err)
	}
	return signer, pub
})

const (
	apiName = "cohuron-api"
	webName = "cohuron-web"
	apiEnv  = "apps/api/.env"
	webEnv  = "apps/web/.env"
	// jwtValue is the secret behind {file: /etc/cohuron/demo/jwt-secret}.
	jwtValue = "s3cret-jwt-value"
)

// countingStore counts every request the agent makes of the store.
type countingStore struct {
	store.Store
	mu   sync.Mutex
	reqs []string
}

func (c *countingStore) note(op, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, op+" "+key)
}

func (c *countingStore) Get(ctx context.Context, key, ifNoneMatch string) (io.ReadCloser, store.Info, error) {
	c.note("GET", key)
	return c.Store.Get(ctx, key, ifNoneMatch)
}

func (c *countingStore) Stat(ctx context.Context, key string) (store.Info, error) {
	c.note("STAT", key)
	return c.Store.Stat(ctx, key)
}

func (c *countingStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	c.note("PUT", key)
	return c.Store.Put(ctx, key, r, size)
}

func (c *countingStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	c.note("PUTIFABSENT", key)
	return c.Store.PutIfAbsent(ctx, key, r, size)
}

func (c *countingStore) List(ctx context.Context, prefix string) ([]string, error) {
	c.note("LIST", prefix)
	return c.Store.List(ctx, prefix)
}

// take returns the requests made since the last take.
func (c *countingStore) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reqs
	c.reqs = nil
	return r
}

// fakeProcs records what the agent asks of the process manager. A process
// it applied runs, with the env it was given, until stopped.
type fakeProcs struct {
	mu       sync.Mutex
	running  map[string]map[string]string
	applied  [][]string // names of each Apply
	stopped  [][]string
	roots    []string // root of each Apply
	prepared []string // dir of each Prepare
}

func (f *fakeProcs) Prepare(dir string, _ *manifest.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prepared = append(f.prepared, dir)
	return nil
}

func (f *fakeProcs) Apply(_ context.Context, root string, spec *manifest.Spec, envs map[string]map[string]string, names []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running == nil {
		f.running = map[string]map[string]string{}
	}
	f.applied = append(f.applied, slices.Clone(names))
	f.roots = append(f.roots, root)
	for _, p := range spec.Processes {
		if len(names) == 0 || slices.Contains(names, p.Name) {
			f.running[p.Name] = maps.Clone(envs[p.EnvFile])
		}
	}
	return nil
}

func (f *fakeProcs) Stop(_ context.Context, names []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, slices.Clone(names))
	for _, n := range names {
		delete(f.running, n)
	}
	return nil
}

func (f *fakeProcs) Status(context.Context) (map[string]pm2.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := map[string]pm2.Status{}
	for n := range f.running {
		res[n] = pm2.Status{Name: n, Running: true, State: "online", PIDs: []int{1000}}
	}
	return res, nil
}

// env is the environment process name runs with, nil when it does not run.
func (f *fakeProcs) env(name string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running[name]
}

// takeApplied returns the Apply calls since the last take.
func (f *fakeProcs) takeApplied() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.applied
	f.applied = nil
	return a
}

type fixture struct {
	t                       *testing.T
	root, backups, stateDir string
	store                   *countingStore
	pub                     *release.Publisher
	repoDir                 string
	bundle                  *release.LocalBundle
	procs                   *fakeProcs
	healthURL               string
	fetches                 atomic.Int64
	a                       *agent.Agent
}

// newFixture makes a host (root, backups, state dir, secrets) in a temp
// dir, a store with a built bundle ready to publish, and an agent.
func newFixture(t *testing.T, keep int) *fixture {
	t.Helper()
	tmp := t.TempDir()
	f := &fixture{
		t:        t,
		root:     filepath.Join(tmp, "opt", "cohuron"),
		backups:  filepath.Join(tmp, "opt", "cohuron-backups"),
		stateDir: filepath.Join(tmp, "var", "lib", "cohuron-agent"),
		procs:    &fakeProcs{},
	}

	// The health endpoint of each process answers as the process would:
	// 200, unless it was started with HEALTH=fail; 502 when not running.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env := f.procs.env(strings.TrimPrefix(r.URL.Path, "/health/"))
		switch {
		case env == nil:
			w.WriteHeader(http.StatusBadGateway)
		case env["HEALTH"] == "fail":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok")
		}
	}))
	t.Cleanup(srv.Close)
	f.healthURL = srv.URL

	ds, err := dirstore.Open(filepath.Join(tmp, "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	f.store = &countingStore{Store: ds}

	signer, pub := testKey()
	pol, err := trust.ForKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	f.pub = &release.Publisher{Store: ds, Signers: []signing.Signer{signer}, Now: func() time.Time { return now }, Log: slog.New(slog.DiscardHandler)}

	f.repoDir = testenv.NewRepo(t, map[string]string{
		"package.json":          `{"name":"app","private":true}`,
		"apps/api/package.json": `{"name":"api"}`,
		"apps/api/server.js":    "// api v1\n",
		"apps/web/package.json": `{"name":"web"}`,
		"apps/web/index.js":     "// web v1\n",
	})
	f.buildBundle()

	secretsRoot := filepath.Join(tmp, "secrets")
	testenv.WriteFiles(t, secretsRoot, map[string]string{"etc/cohuron/demo/jwt-secret": jwtValue + "\n"})

	fetcher := &fetch.Fetcher{Store: f.store, StoreURL: "file://" + filepath.Join(tmp, "store"), Policy: pol}
	// Health waits run on a fake clock: each reading is a second later,
	// and sleeping takes no time.
	var ticks atomic.Int64
	f.a = &agent.Agent{
		Cfg: agent.Config{Env: "demo", HostID: "host-1", Root: f.root, Backups: f.backups, StateDir: f.stateDir,
			Keep: keep, HealthEvery: time.Second},
		Store:  f.store,
		Policy: pol,
		Fetch: func(ctx context.Context, rel *manifest.Release, dst string) error {
			f.fetches.Add(1)
			return fetcher.Fetch(ctx, rel, dst)
		},
		Secrets: &secrets.Chain{File: &secrets.FileResolver{Root: secretsRoot}},
		Procs:   f.procs,
		Health: &health.Checker{
			Now:   func() time.Time { return now.Add(time.Duration(ticks.Add(1)) * time.Second) },
			Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		},
		Now: func() time.Time { return now },
		Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if err := f.a.Init(); err != nil {
		t.Fatal(err)
	}
	return f
}

// buildBundle builds the bundle of the repository's HEAD, for the next
// publish with a bundle.
func (f *fixture) buildBundle() {
	f.t.Helper()
	path := filepath.Join(f.t.TempDir(), "bundle.tar.gz")
	out, err := os.Create(path)
	if err != nil {
		f.t.Fatal(err)
	}
	res, err := gitbundle.Build(context.Background(), gitbundle.Options{Repo: f.repoDir}, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		f.t.Fatal(err)
	}
	f.bundle = &release.LocalBundle{Path: path, Name: res.Name, SHA256: res.SHA256, Size: res.Size, Source: res.Source, Index: res.Index}
}

// env is the environment manifest; greeting and healthVar vary between
// releases (HEALTH=fail makes the api's health check fail).
func (f *fixture) env(greeting, healthVar string) *manifest.Environment {
	check := func(name string) []manifest.HealthCheck {
		return []manifest.HealthCheck{{
			HTTP:    &manifest.HTTPCheck{URL: f.healthURL + "/health/" + name},
			Timeout: manifest.Duration{Duration: 5 * time.Second},
			Within:  manifest.Duration{Duration: 10 * time.Second},
		}}
	}
	return &manifest.Environment{
		APIVersion: manifest.APIVersion, Kind: manifest.KindEnvironment,
		Metadata: manifest.Metadata{Name: "demo"},
		Spec: manifest.Spec{
			Paths: manifest.Paths{Root: f.root, Backups: f.backups},
			EnvFiles: []manifest.EnvFile{
				{Path: apiEnv, Vars: map[string]manifest.Value{
					"PORT": {Literal: "4000"}, "APP_GREETING": {Literal: greeting}, "HEALTH": {Literal: healthVar},
					"JWT_SECRET": {RefKind: manifest.RefFile, Ref: "/etc/cohuron/demo/jwt-secret"},
				}},
				{Path: webEnv, Vars: map[string]manifest.Value{"PORT": {Literal: "5173"}}},
			},
			Processes: []manifest.Process{
				{Name: apiName, Cwd: "apps/api", Command: []string{"node", "server.js"}, EnvFile: apiEnv, Port: 4000, Health: check(apiName)},
				{Name: webName, Cwd: "apps/web", Command: []string{"node", "index.js"}, EnvFile: webEnv, Port: 5173, Health: check(webName)},
			},
		},
	}
}

// publish publishes a release: with the bundle the first time, then
// config-only (reusing it).
func (f *fixture) publish(greeting, healthVar string) *release.Result {
	f.t.Helper()
	_, err := f.store.Stat(context.Background(), store.LatestKey("demo"))
	return f.doPublish(greeting, healthVar, errors.Is(err, store.ErrNotFound))
}

// publishBundle publishes a release with the current bundle.
func (f *fixture) publishBundle(greeting, healthVar string) *release.Result {
	f.t.Helper()
	return f.doPublish(greeting, healthVar, true)
}

func (f *fixture) doPublish(greeting, healthVar string, withBundle bool) *release.Result {
	f.t.Helper()
	req := release.Request{Env: f.env(greeting, healthVar)}
	if withBundle {
		req.Bundle = f.bundle
	}
	f.store.take()
	res, err := f.pub.Publish(context.Background(), req)
	if err != nil {
		f.t.Fatalf("publishing: %v", err)
	}
	return res
}

func (f *fixture) once() (*agent.Outcome, error) {
	f.t.Helper()
	f.store.take()
	f.procs.takeApplied()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang guard only
	defer cancel()
	return f.a.Once(ctx)
}

func (f *fixture) mustConverge(seq uint64) *agent.Outcome {
	f.t.Helper()
	out, err := f.once()
	if err != nil {
		f.t.Fatalf("Once: %v", err)
	}
	if out.Result != agent.ResultConverged || out.Seq != seq {
		f.t.Fatalf("Once = %s seq %d, want converged seq %d", out.Result, out.Seq, seq)
	}
	return out
}

func (f *fixture) state() *state.State {
	f.t.Helper()
	st, err := state.Store{Dir: f.stateDir}.Load()
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// rootTarget is where the root symlink points; it fails the test when the
// root is not a symlink.
func (f *fixture) rootTarget() string {
	f.t.Helper()
	fi, err := os.Lstat(f.root)
	if err != nil {
		f.t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		f.t.Fatalf("root %s is a %v, want a symlink", f.root, fi.Mode().Type())
	}
	target, err := os.Readlink(f.root)
	if err != nil {
		f.t.Fatal(err)
	}
	return target
}

// releaseDirs lists <backups>/releases.
func (f *fixture) releaseDirs() []string {
	f.t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.backups, "releases"))
	if err != nil {
		f.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func (f *fixture) noJournal() {
	f.t.Helper()
	if j, err := (state.Store{Dir: f.stateDir}).LoadJournal(); err != nil || j != nil {
		f.t.Fatalf("journal after Once: %+v, %v; want none", j, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestFirstOnceConverges(t *testing.T) {
	f := newFixture(t, 0)
	r1 := f.publish("hello", "ok")
	f.mustConverge(1)

	target := f.rootTarget()
	wantDir := filepath.Join(f.backups, "releases", fmt.Sprintf("%06d-%s", 1, r1.Digest[:12]))
	if target != wantDir {
		t.Fatalf("root -> %s, want %s", target, wantDir)
	}
	if got := readFile(t, filepath.Join(f.root, "apps/api/server.js")); got != "// api v1\n" {
		t.Errorf("apps/api/server.js through the root = %q", got)
	}
	wantEnv := "APP_GREETING=hello\nHEALTH=ok\nJWT_SECRET=" + jwtValue + "\nPORT=4000\n"
	if got := readFile(t, filepath.Join(f.root, apiEnv)); got != wantEnv {
		t.Errorf("%s = %q, want %q", apiEnv, got, wantEnv)
	}
	if got := readFile(t, filepath.Join(f.root, webEnv)); got != "PORT=5173\n" {
		t.Errorf("%s = %q", webEnv, got)
	}
	if fi, err := os.Stat(filepath.Join(f.root, apiEnv)); err != nil || fi.Mode().Perm()&0o007 != 0 {
		t.Errorf("env file with a secret is readable by others: %v %v", fi.Mode(), err)
	}

	st := f.state()
	if st.Current == nil || st.Current.Seq != 1 || st.Current.Dir != wantDir || st.Current.Digest != r1.Digest || st.Current.Spec == nil {
		t.Fatalf("state current = %+v", st.Current)
	}
	if ref := st.Current.BundleRef; ref == nil || *ref != r1.Bundle || st.Current.Bundle != r1.Bundle.SHA256 {
		t.Fatalf("state current bundle = %q, %+v; want %+v", st.Current.Bundle, ref, r1.Bundle)
	}
	if st.LastSeq != 1 || st.LastDigest != r1.Digest || st.Last == nil || st.Last.Result != agent.ResultConverged {
		t.Fatalf("state: lastSeq %d, last attempt %+v", st.LastSeq, st.Last)
	}
	if len(st.Previous) != 0 {
		t.Fatalf("first install kept previous releases: %+v", st.Previous)
	}
	f.noJournal()

	// Both processes were started from the root, with the resolved env.
	f.procs.mu.Lock()
	applied, roots := f.procs.applied, f.procs.roots
	f.procs.mu.Unlock()
	if len(applied) != 1 || !slices.Equal(applied[0], []string{apiName, webName}) || roots[0] != f.root {
		t.Fatalf("Apply calls %v from %v, want one of [%s %s] from %s", applied, roots, apiName, webName, f.root)
	}
	if env := f.procs.env(apiName); env["JWT_SECRET"] != jwtValue || env["APP_GREETING"] != "hello" {
		t.Fatalf("api runs with env %v", env)
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d bundle fetches, want 1", n)
	}
}

func TestOnceWithNothingNewIsCheap(t *testing.T) {
	f := newFixture(t, 0)
	f.publish("hello", "ok")
	f.mustConverge(1)

	statePath := filepath.Join(f.stateDir, "state.json")
	before := readFile(t, statePath)
	fiBefore, err := os.Stat(statePath)
	if err != nil {
		t.Fatal(err)
	}

	for i := range 2 {
		out, err := f.once()
		if err != nil {
			t.Fatalf("Once %d: %v", i+2, err)
		}
		if out.Result != agent.ResultUpToDate || out.Seq != 1 || len(out.Plan.Steps) != 0 {
			t.Fatalf("Once %d = %+v, want up-to-date at seq 1", i+2, out)
		}
		if reqs := f.store.take(); len(reqs) != 1 || reqs[0] != "GET "+store.LatestKey("demo") {
			t.Fatalf("Once %d made store requests %q, want one conditional GET of the latest hint", i+2, reqs)
		}
		if a := f.procs.takeApplied(); len(a) != 0 {
			t.Fatalf("Once %d restarted %v", i+2, a)
		}
	}
	fiAfter, err := os.Stat(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if after := readFile(t, statePath); after != before || !fiAfter.ModTime().Equal(fiBefore.ModTime()) || !os.SameFile(fiBefore, fiAfter) {
		t.Fatalf("state.json was rewritten by an up-to-date Once")
	}
}

func TestOnceRepairsDrift(t *testing.T) {
	f := newFixture(t, 0)
	f.publish("hello", "ok")
	f.mustConverge(1)

	// The web process died: only it is restarted.
	f.procs.Stop(context.Background(), []string{webName})
	out, err := f.once()
	if err != nil {
		t.Fatal(err)
	}
	if out.Result != agent.ResultConverged || !out.Plan.Has("restart", webName) || out.Plan.Has("restart", apiName) {
		t.Fatalf("Once after a process died = %s, plan:\n%v", out.Result, out.Plan.Steps)
	}
	if a := f.procs.takeApplied(); len(a) != 1 || !slices.Equal(a[0], []string{webName}) {
		t.Fatalf("Apply calls %v, want [[%s]]", a, webName)
	}
	if reqs := f.store.take(); len(reqs) != 2 || reqs[0] != "GET "+store.LatestKey("demo") || !strings.HasPrefix(reqs[1], "PUT status/") {
		t.Fatalf("drift repair made store requests %q, want the poll and the status report", reqs)
	}
}

func TestHealthFailureRollsBack(t *testing.T) {
	f := newFixture(t, 0)
	f.publish("hello", "ok")
	f.mustConverge(1)
	dir1 := f.rootTarget()

	r2 := f.publish("bonjour", "fail")
	out, err := f.once()
	if err == nil {
		t.Fatalf("Once with a failing health check = %+v, want an error", out)
	}
	if out == nil || out.Result != agent.ResultRolledBack || out.Seq != 2 {
		t.Fatalf("Once = %+v, want rolled-back seq 2", out)
	}
	if fault.KindOf(err) != fault.KindConvergeFailed || fault.ExitCode(err) != fault.ExitConvergeFailed {
		t.Fatalf("error %v is %v (exit %d), want converge-failed (exit 4)", err, fault.KindOf(err), fault.ExitCode(err))
	}
	if !strings.Contains(err.Error(), "health of "+apiName) || !strings.Contains(err.Error(), "503") {
		t.Errorf("error %q does not say which check failed and how", err)
	}
	if strings.Contains(err.Error(), jwtValue) {
		t.Errorf("error %q shows a secret", err)
	}
	if got := f.rootTarget(); got != dir1 {
		t.Fatalf("root -> %s after rollback, want %s", got, dir1)
	}
	// Only the api's env file changed, so only the api was restarted for
	// seq 2; the rollback restarted everything of seq 1.
	if a := f.procs.takeApplied(); len(a) != 2 || !slices.Equal(a[0], []string{apiName}) || !slices.Equal(a[1], []string{apiName, webName}) {
		t.Fatalf("Apply calls %v, want [[%s] [%s %s]]", a, apiName, apiName, webName)
	}
	if env := f.procs.env(apiName); env["APP_GREETING"] != "hello" || env["HEALTH"] != "ok" || env["JWT_SECRET"] != jwtValue {
		t.Fatalf("after rollback the api runs with %v, want seq 1's env", env)
	}
	st := f.state()
	if st.Current == nil || st.Current.Seq != 1 || st.Current.Dir != dir1 {
		t.Fatalf("state current = %+v, want seq 1", st.Current)
	}
	if b, ok := st.IsBad(2, r2.Digest); !ok || !strings.Contains(b.Reason, "health") {
		t.Fatalf("seq 2 not marked bad: %+v %v (known bad %+v)", b, ok, st.KnownBad)
	}
	if st.Last == nil || st.Last.Result != agent.ResultRolledBack || st.Rollback == nil {
		t.Fatalf("last attempt %+v, rollback %+v", st.Last, st.Rollback)
	}
	f.noJournal()

	// The bad release is not retried: neither with the cached ETag...
	out, err = f.once()
	if err != nil || out.Result != agent.ResultBlocked || out.Seq != 2 || !strings.Contains(out.Blocked, "known-bad") {
		t.Fatalf("Once after the rollback = %+v, %v; want blocked on known-bad seq 2", out, err)
	}
	if a := f.procs.takeApplied(); len(a) != 0 {
		t.Fatalf("the bad release was retried: Apply %v", a)
	}
	// ...nor after reading and verifying it again.
	st = f.state()
	st.LatestETag = ""
	if err := (state.Store{Dir: f.stateDir}).Save(st); err != nil {
		t.Fatal(err)
	}
	out, err = f.once()
	if err != nil || out.Result != agent.ResultBlocked || out.Seq != 2 || !strings.Contains(out.Blocked, "known-bad") {
		t.Fatalf("Once re-reading the bad release = %+v, %v; want blocked on known-bad seq 2", out, err)
	}
	if a := f.procs.takeApplied(); len(a) != 0 {
		t.Fatalf("the bad release was retried: Apply %v", a)
	}
	if got := f.rootTarget(); got != dir1 {
		t.Fatalf("root -> %s, want %s", got, dir1)
	}

	// A newer good release goes through.
	f.publish("salut", "ok")
	f.mustConverge(3)
	if env := f.procs.env(apiName); env["APP_GREETING"] != "salut" {
		t.Fatalf("api runs with %v after seq 3", env)
	}
}

func TestAdoptPlainRoot(t *testing.T) {
	f := newFixture(t, 0)
	testenv.WriteFiles(t, f.root, map[string]string{"old-deploy.txt": "from the old script\n", "apps/api/.env": "OLD=1\n"})
	r1 := f.publish("hello", "ok")
	f.mustConverge(1)

	target := f.rootTarget()
	if want := filepath.Join(f.backups, "releases", fmt.Sprintf("%06d-%s", 1, r1.Digest[:12])); target != want {
		t.Fatalf("root -> %s, want %s", target, want)
	}
	adopted, err := filepath.Glob(filepath.Join(f.backups, "releases", "adopted-*"))
	if err != nil || len(adopted) != 1 {
		t.Fatalf("adopted trees %v (%v), want one", adopted, err)
	}
	if got := readFile(t, filepath.Join(adopted[0], "old-deploy.txt")); got != "from the old script\n" {
		t.Fatalf("adopted tree lost the old files: %q", got)
	}
	st := f.state()
	if len(st.Previous) != 1 || st.Previous[0].Dir != adopted[0] || st.Previous[0].ID != filepath.Base(adopted[0]) || st.Previous[0].Seq != 0 {
		t.Fatalf("state previous = %+v, want the adopted tree %s", st.Previous, adopted[0])
	}
	if st.Current == nil || st.Current.Seq != 1 {
		t.Fatalf("state current = %+v", st.Current)
	}

	// The adopted tree is a rollback target.
	rel, err := f.a.Rollback(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if rel.Dir != adopted[0] || f.rootTarget() != adopted[0] {
		t.Fatalf("rollback to %+v, root -> %s; want the adopted tree", rel, f.rootTarget())
	}
}

func TestManualRollback(t *testing.T) {
	f := newFixture(t, 0)
	f.publish("hello", "ok")
	f.mustConverge(1)
	dir1 := f.rootTarget()
	r2 := f.publish("bonjour", "ok")
	f.mustConverge(2)
	dir2 := f.rootTarget()
	if dir2 == dir1 {
		t.Fatal("seq 2 did not get its own directory")
	}

	f.procs.takeApplied()
	rel, err := f.a.Rollback(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if rel.Seq != 1 || rel.Dir != dir1 {
		t.Fatalf("rolled back to %+v, want seq 1", rel)
	}
	if got := f.rootTarget(); got != dir1 {
		t.Fatalf("root -> %s, want %s", got, dir1)
	}
	if a := f.procs.takeApplied(); len(a) != 1 || !slices.Equal(a[0], []string{apiName, webName}) {
		t.Fatalf("Apply calls %v, want every process of seq 1", a)
	}
	if env := f.procs.env(apiName); env["APP_GREETING"] != "hello" || env["JWT_SECRET"] != jwtValue {
		t.Fatalf("after rollback the api runs with %v, want seq 1's env", env)
	}
	st := f.state()
	if st.Current == nil || st.Current.Seq != 1 {
		t.Fatalf("state current = %+v", st.Current)
	}
	if _, ok := st.IsBad(2, r2.Digest); !ok {
		t.Fatalf("seq 2 not marked bad after a manual rollback: %+v", st.KnownBad)
	}
	// The release left behind is known bad: it is no rollback target.
	if len(st.Previous) != 0 {
		t.Fatalf("state previous = %+v, want none (seq 2 is known bad)", st.Previous)
	}
	_ = dir2
	if st.Rollback == nil || !st.Rollback.Manual {
		t.Fatalf("rollback record %+v", st.Rollback)
	}
	f.noJournal()

	// The loop does not re-apply seq 2.
	out, err := f.once()
	if err != nil || out.Result != agent.ResultBlocked {
		t.Fatalf("Once after a manual rollback = %+v, %v; want blocked", out, err)
	}
	if a := f.procs.takeApplied(); len(a) != 0 {
		t.Fatalf("seq 2 was re-applied: %v", a)
	}

	// A release that is not kept is a usage error, naming what is kept
	// (nothing now: seq 2 is known bad, and seq 1 runs).
	if _, err := f.a.Rollback(context.Background(), "99"); fault.KindOf(err) != fault.KindUsage || !strings.Contains(err.Error(), `no previous release "99"`) || strings.Contains(err.Error(), filepath.Base(dir2)) {
		t.Fatalf("rollback to an unknown release: %v, want a usage error that does not offer the bad %s", err, filepath.Base(dir2))
	}
}

func TestKeepPrunesOldReleases(t *testing.T) {
	f := newFixture(t, 2)
	var dirs []string
	for i := 1; i <= 5; i++ {
		f.publish(fmt.Sprintf("hello %d", i), "ok")
		f.mustConverge(uint64(i))
		dirs = append(dirs, filepath.Base(f.rootTarget()))
	}
	want := slices.Clone(dirs[2:])
	sort.Strings(want)
	if got := f.releaseDirs(); !slices.Equal(got, want) {
		t.Fatalf("release dirs %v, want the current and 2 previous %v", got, want)
	}
	st := f.state()
	if len(st.Previous) != 2 || st.Previous[0].Seq != 4 || st.Previous[1].Seq != 3 || st.Current.Seq != 5 {
		t.Fatalf("state: current %+v, previous %+v", st.Current, st.Previous)
	}
	// Config-only releases reuse the cached bundle.
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d bundle fetches for 5 releases of one bundle, want 1", n)
	}
	if got := readFile(t, filepath.Join(f.root, apiEnv)); !strings.Contains(got, "APP_GREETING='hello 5'\n") {
		t.Fatalf("env file of seq 5: %q", got)
	}
}

func TestPlanChangesNothing(t *testing.T) {
	f := newFixture(t, 0)
	f.publish("hello", "ok")
	f.mustConverge(1)
	f.publish("bonjour", "ok")
	before := readFile(t, filepath.Join(f.stateDir, "state.json"))

	out, err := f.a.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if out.Seq != 2 || out.Plan.FromSeq != 1 || !out.Plan.Has("restart", apiName) || out.Plan.Has("restart", webName) {
		t.Fatalf("plan = %+v", out)
	}
	var reasons bytes.Buffer
	for _, s := range out.Plan.Steps {
		reasons.WriteString(s.String() + "\n")
	}
	if !strings.Contains(reasons.String(), "env file apps/api/.env changed: APP_GREETING") {
		t.Fatalf("plan does not say why:\n%s", reasons.String())
	}
	if after := readFile(t, filepath.Join(f.stateDir, "state.json")); after != before {
		t.Fatal("Plan changed the state")
	}
	if a := f.procs.takeApplied(); len(a) != 1 { // only the first converge's
		t.Fatalf("Plan restarted processes: %v", a)
	}
}

// TestFailedStagingIsRetried: a converge that fails before the switch for
// a reason that does not make the release bad (here the store is
// unreachable while fetching the bundle) leaves the running release alone,
// and the next Once tries the release again.
func TestFailedStagingIsRetried(t *testing.T) {
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprintf("first install %v", first), func(t *testing.T) {
			f := newFixture(t, 0)
			var want uint64 = 1
			if !first {
				f.publish("hello", "ok")
				f.mustConverge(1)
				// A new commit: the new bundle must be fetched.
				testenv.WriteFiles(t, f.repoDir, map[string]string{"apps/api/server.js": "// api v2\n"})
				testenv.Git(t, f.repoDir, "commit", "-qam", "v2")
				f.buildBundle()
				want = 2
			}
			f.publishBundle("bonjour", "ok")

			fetch := f.a.Fetch
			f.a.Fetch = func(context.Context, *manifest.Release, string) error {
				return fault.Transient(errors.New("store unreachable"))
			}
			out, err := f.once()
			if fault.KindOf(err) != fault.KindTransient || out == nil || out.Result != agent.ResultFailed {
				t.Fatalf("Once with the store unreachable = %+v, %v; want failed, transient", out, err)
			}
			if a := f.procs.takeApplied(); len(a) != 0 {
				t.Fatalf("processes restarted after a failed fetch: %v", a)
			}
			if st := f.state(); st.KnownBad != nil {
				t.Fatalf("a transient failure marked the release bad: %+v", st.KnownBad)
			}

			f.a.Fetch = fetch
			f.mustConverge(want)
			if got := readFile(t, filepath.Join(f.root, "apps/api/.env")); !strings.Contains(got, "APP_GREETING=bonjour") {
				t.Fatalf("env file after the retry: %q", got)
			}
		})
	}
}

func TestOnceReinstallsMissingCurrentDir(t *testing.T) {
	f := newFixture(t, 0)
	f.publish("hello", "ok")
	f.mustConverge(1)
	dir1 := f.rootTarget()
	if err := os.RemoveAll(dir1); err != nil {
		t.Fatal(err)
	}

	out, err := f.once()
	if err != nil {
		t.Fatalf("Once with the current release directory gone: %v (plan %v)", err, out)
	}
	if out.Result != agent.ResultConverged || out.Seq != 1 || !out.Plan.Has("extract", "") {
		t.Fatalf("Once = %+v, want a reinstall of seq 1", out)
	}
	if got := f.rootTarget(); got != dir1 {
		t.Fatalf("root -> %s, want %s", got, dir1)
	}
	if got := readFile(t, filepath.Join(f.root, apiEnv)); !strings.Contains(got, "JWT_SECRET="+jwtValue) {
		t.Fatalf("env file after the reinstall: %q", got)
	}
	if a := f.procs.takeApplied(); len(a) != 1 || !slices.Equal(a[0], []string{apiName, webName}) {
		t.Fatalf("Apply calls %v, want every process", a)
	}
	if st := f.state(); st.Current == nil || st.Current.Dir != dir1 || len(st.Previous) != 0 {
		t.Fatalf("state after the reinstall: current %+v, previous %+v", st.Current, st.Previous)
	}
}

// TestHostClockFarOff: with the host clock a year ahead, a fresh release
// looks expired; a day behind, it looks issued in the future. Both fail
// closed, say the clock may be wrong, and leave the running release
// alone; once the clock is right the same release applies, without a new
// publish.
func TestHostClockFarOff(t *testing.T) {
	reliability.Record(t, reliability.Case{Area: reliability.AreaResource, Name: "host-clock-far-off",
		Attack:  "the host clock is a year ahead, then a day behind",
		Defense: "expiry and issue time fail closed and name the host clock; the verdict is not cached, so the release applies once the clock is right"})
	f := newFixture(t, 0)
	f.publish("hello", "ok")
	f.mustConverge(1)
	root := f.rootTarget()
	f.publish("changed", "ok")
	for _, tt := range []struct {
		name  string
		shift time.Duration
		check string
		hint  string
	}{
		{"a year ahead", 365 * 24 * time.Hour, "expiry", "check the host clock"},
		{"a day behind", -24 * time.Hour, "issue time", "is the host clock behind?"},
	} {
		f.a.Now = func() time.Time { return now.Add(tt.shift) }
		out, err := f.once()
		var ve *trust.VerificationError
		if !errors.As(err, &ve) || ve.Check != tt.check || !strings.Contains(err.Error(), tt.hint) {
			t.Fatalf("clock %s: Once = %v, %v; want a %s rejection saying %q", tt.name, out, err, tt.check, tt.hint)
		}
		if fault.ExitCode(err) != fault.ExitRejected {
			t.Errorf("clock %s: exit code %d, want %d", tt.name, fault.ExitCode(err), fault.ExitRejected)
		}
		if got := f.rootTarget(); got != root || f.state().Current.Seq != 1 {
			t.Fatalf("clock %s: root %s seq %d, want %s seq 1", tt.name, got, f.state().Current.Seq, root)
		}
		if a := f.procs.takeApplied(); len(a) != 0 {
			t.Fatalf("clock %s: processes touched: %v", tt.name, a)
		}
	}
	f.a.Now = func() time.Time { return now }
	f.mustConverge(2)
}

// TestAwaitingCoSigners: under a 2-of-2 policy a release with one good
// signature blocks without being marked bad, is recorded once, is read
// again at each poll (a co-signature does not change the latest hint),
// and applies once the second signer co-signs.
func TestAwaitingCoSigners(t *testing.T) {
	f := newFixture(t, 0)
	signer, pub := testKey()
	pass := signing.StaticPass([]byte("pw"))
	priv2, pub2, err := signing.GenerateKeyPair(pass)
	if err != nil {
		t.Fatal(err)
	}
	second, err := signing.SignerFromPEM(priv2, pass)
	if err != nil {
		t.Fatal(err)
	}
	indent := func(pem []byte) string { return strings.ReplaceAll(strings.TrimSpace(string(pem)), "\n", "\n        ") }
	pol, err := trust.Parse("policy.yaml", []byte(`apiVersion: deploy.cohuron.dev/v1
kind: TrustPolicy
metadata:
  name: two
spec:
  signers:
    - name: ci
      publicKey: |
        `+indent(pub)+`
    - name: security
      publicKey: |
        `+indent(pub2)+`
  threshold: 2
  environments: ["*"]
  branches: ["*"]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.a.Policy = pol
	f.pub.Signers = []signing.Signer{signer}
	// Published without the policy, so latest moves at once: an agent may
	// meet an incomplete release (a hand-moved hint, an older publisher).
	res := f.publish("hello", "ok")

	for poll := range 2 {
		out, err := f.once()
		if err != nil || out.Result != agent.ResultBlocked || !strings.Contains(out.Blocked, "awaiting co-signers") {
			t.Fatalf("poll %d: Once = %+v, %v; want blocked awaiting co-signers", poll, out, err)
		}
		reqs := strings.Join(f.store.take(), " ")
		if !strings.Contains(reqs, "GET "+store.ReleaseKey("demo", res.Seq)) {
			t.Fatalf("poll %d did not read the release again: %s", poll, reqs)
		}
		if reported := strings.Contains(reqs, "PUT status/"); reported != (poll == 0) {
			t.Errorf("poll %d reported status: %v (only the first poll should): %s", poll, reported, reqs)
		}
		if _, bad := f.state().IsBad(res.Seq, res.Digest); bad {
			t.Fatal("an incomplete release was marked bad")
		}
	}
	if st := f.state(); st.Current != nil {
		t.Fatalf("an incomplete release was applied: %+v", st.Current)
	}

	co := &release.Publisher{Store: f.pub.Store, Signers: []signing.Signer{second}, Now: f.pub.Now, Log: f.pub.Log}
	if _, err := co.CoSign(context.Background(), "demo", res.Seq, pol); err != nil {
		t.Fatal(err)
	}
	f.mustConverge(res.Seq)
}
