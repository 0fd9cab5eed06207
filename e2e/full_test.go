package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/store/s3store"
)

// fullHost is one scratch host running the Cohuron-shaped sample
// (testdata/cohuronapp) with every step: real pnpm as an unprivileged
// user, PostgreSQL, a Docker engine with compose, PM2 and MinIO.
type fullHost struct {
	t       testing.TB
	dir     string // world-traversable: the app user reads releases under it
	app     string // the application's git work tree
	project string // compose project
	ports   struct{ api, web, cache, queue int }
	db      string // database URL
	pg      *testenv.Postgres
	docker  *testenv.Docker
	env     []string // environment of publisher, agent and helpers
	store   string
	// reversible is written into the manifest's schema section.
	reversible bool
	// mark is a value in apps/web/.env, for config-only changes.
	mark string
}

func newFullHost(t testing.TB) *fullHost {
	testenv.AppUser(t) // the manifest runs pnpm, hooks and processes as cohuron-app
	pnpmDir := testenv.PnpmForUser(t)
	pm2 := testenv.Bin(t, "pm2")
	node := testenv.Bin(t, "node")
	compose := testenv.Bin(t, "docker-compose")
	h := &fullHost{t: t, dir: t.TempDir(), reversible: true}
	// t.TempDir is 0700 (and so is its parent): the app user must reach
	// the release directories under it.
	for d := h.dir; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	h.pg = testenv.StartPostgres(t)
	h.db = h.pg.CreateDB(t, "cohuron")
	h.docker = testenv.StartDocker(t)
	h.docker.BuildStubImage(t, "cohuron-stub:test")
	m := testenv.StartMinIO(t)
	h.project = fmt.Sprintf("e2e%d", time.Now().UnixNano()%1e9)
	h.ports.api, h.ports.web, h.ports.cache, h.ports.queue = testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)

	path := strings.Join([]string{binDir, pnpmDir, filepath.Dir(pm2), filepath.Dir(node), filepath.Dir(compose), h.pg.Bin, "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"}, ":")
	h.env = append(append(testenv.GitEnv("2026-01-02T03:04:05Z"), m.Env()...),
		"PATH="+path, "HOME="+h.dir, "COSIGN_PASSWORD=e2e", "PM2_HOME="+filepath.Join(h.dir, "pm2"),
		"AWS_CONFIG_FILE="+filepath.Join(h.dir, "none"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(h.dir, "none"),
		"DOCKER_HOST="+h.docker.Host)
	t.Cleanup(func() { h.cmd("pm2", "kill").Run() })

	// The store: a bucket of its own on MinIO.
	for _, kv := range m.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	s3, err := s3store.Open(context.Background(), "full", "", s3store.Options{Endpoint: m.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.store = "s3://full/prod"

	h.app = filepath.Join(h.dir, "app")
	src, _ := filepath.Abs("../testdata/cohuronapp")
	if err := os.CopyFS(h.app, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	h.git("init", "-q", "-b", "main")
	h.commit("sample app v1")
	h.run("publisher", "keygen", "--out", filepath.Join(h.dir, "keys"))
	secret := filepath.Join(h.dir, "secrets/etc/cohuron/full/database-url")
	os.MkdirAll(filepath.Dir(secret), 0o755)
	if err := os.WriteFile(secret, []byte(h.db), 0o600); err != nil {
		t.Fatal(err)
	}
	h.writeManifest()
	cfg := fmt.Sprintf(`store: %s
env: full
key: %[2]s/keys/cosign.pub
root: %[2]s/opt/cohuron
backups: %[2]s/opt/cohuron-backups
stateDir: %[2]s/state
pm2Home: %[2]s/pm2
appLogDir: %[2]s/app-logs
secretsDir: %[2]s/secrets
metricsAddr: "off"
`, h.store, h.dir)
	if err := os.WriteFile(filepath.Join(h.dir, "agent.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// schemaOrder is the sample's import order, without the seed.
func (h *fullHost) schemaOrder() []string {
	data, err := os.ReadFile(filepath.Join(h.app, "db/ORDER.txt"))
	if err != nil {
		h.t.Fatal(err)
	}
	var files []string
	for _, l := range strings.Fields(string(data)) {
		if l != "db/seed.sql" {
			files = append(files, l)
		}
	}
	return files
}

// writeManifest writes manifests/full.yaml from the app's current order file.
func (h *fullHost) writeManifest() {
	files := "[" + strings.Join(h.schemaOrder(), ", ") + "]"
	m := fmt.Sprintf(`apiVersion: deploy.cohuron.dev/v1
kind: Environment
metadata:
  name: full
spec:
  paths:
    root: %[9]s/opt/cohuron
    backups: %[9]s/opt/cohuron-backups
  user: cohuron-app
  envFiles:
    - path: .env
      vars:
        CACHE_PORT: "%[1]d"
        QUEUE_PORT: "%[2]d"
    - path: apps/api/.env
      vars:
        PORT: "%[3]d"
        DATABASE_URL: {file: /etc/cohuron/full/database-url}
    - path: apps/web/.env
      vars:
        PORT: "%[4]d"
        CRASH_MARK: "%[8]s"
  install:
    command: [pnpm, install, --frozen-lockfile]
    timeout: 5m
  build:
    - name: api
      command: [pnpm, --filter, api, build]
      outputs: [apps/api/dist]
    - name: web
      command: [pnpm, --filter, web, build]
      outputs: [apps/web/dist]
  compose:
    file: docker-compose.yml
    project: %[5]s
    envFile: .env
    services: [cache, queue]
    healthTimeout: 60s
  schema:
    dir: db
    databaseURL: {file: /etc/cohuron/full/database-url}
    files: %[6]s
    seed: [db/seed.sql]
    schemas: [app]
    reversible: %[7]t
  processes:
    - name: api
      cwd: apps/api
      command: [node, server.js]
      envFile: apps/api/.env
      port: %[3]d
      mode: cluster
      instances: 2
      health:
        - http: {url: "http://127.0.0.1:%[3]d/api/v1/health"}
          timeout: 3s
          within: 15s
    - name: web
      cwd: apps/web
      command: [node, server.js]
      envFile: apps/web/.env
      port: %[4]d
      health:
        - http: {url: "http://127.0.0.1:%[4]d/"}
          timeout: 3s
          within: 30s
`, h.ports.cache, h.ports.queue, h.ports.api, h.ports.web, h.project, files, h.reversible, h.mark, h.dir)
	if err := os.WriteFile(filepath.Join(h.dir, "full.yaml"), []byte(m), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// addSchemaFile adds a DDL file to the app, last before the seed in the
// import order, and writes the manifest with that order.
func (h *fullHost) addSchemaFile(file, sql string) {
	h.edit(file, func(string) string { return sql })
	h.edit("db/ORDER.txt", func(s string) string { return strings.Replace(s, "db/seed.sql", file+"\ndb/seed.sql", 1) })
	h.writeManifest()
}

func (h *fullHost) cmd(name string, args ...string) *exec.Cmd {
	for _, d := range filepath.SplitList(h.envVal("PATH")) {
		if p := filepath.Join(d, name); fileExists(p) {
			name = p
			break
		}
	}
	c := exec.Command(name, args...)
	c.Dir = h.dir
	c.Env = h.env
	return c
}

func (h *fullHost) envVal(k string) string {
	for _, kv := range h.env {
		if v, ok := strings.CutPrefix(kv, k+"="); ok {
			return v
		}
	}
	return ""
}

func (h *fullHost) run(name string, args ...string) string {
	h.t.Helper()
	out, err := h.cmd(name, args...).CombinedOutput()
	if err != nil {
		h.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// agent runs an agent command and returns its output and exit code.
func (h *fullHost) agent(args ...string) (string, int) {
	h.t.Helper()
	out, err := h.cmd("agent", append(args, "--config", filepath.Join(h.dir, "agent.yaml"))...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatal(err)
	}
	return string(out), code
}

// once runs `agent once` and fails unless it exits with want.
func (h *fullHost) once(want int) string {
	h.t.Helper()
	out, code := h.agent("once")
	if code != want {
		h.t.Fatalf("agent once: exit %d, want %d\n%s", code, want, out)
	}
	return out
}

func (h *fullHost) git(args ...string) {
	h.t.Helper()
	c := h.cmd("git", args...)
	c.Dir = h.app
	if out, err := c.CombinedOutput(); err != nil {
		h.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func (h *fullHost) commit(msg string) {
	h.git("add", "-A")
	h.git("commit", "-q", "--allow-empty", "-m", msg)
}

func (h *fullHost) publish() string {
	h.t.Helper()
	return h.run("publisher", "publish", "--repo", h.app, "--env", "full", "--store", h.store,
		"--key", filepath.Join(h.dir, "keys/cosign.key"), "--manifest", filepath.Join(h.dir, "full.yaml"))
}

// publishConfig publishes a config-only release: the current bundle with
// the manifest as it is now.
func (h *fullHost) publishConfig() string {
	h.t.Helper()
	return h.run("publisher", "publish", "--env", "full", "--store", h.store,
		"--key", filepath.Join(h.dir, "keys/cosign.key"), "--manifest", filepath.Join(h.dir, "full.yaml"))
}

// edit rewrites a file of the app.
func (h *fullHost) edit(rel string, f func(string) string) {
	h.t.Helper()
	p := filepath.Join(h.app, rel)
	data, _ := os.ReadFile(p)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(f(string(data))), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// apiHealth is the API's /api/v1/health answer.
type apiHealth struct {
	Status  string `json:"status"`
	Version string `json:"version"`
	Error   string `json:"error"`
	Schema  struct {
		Tables  int  `json:"tables"`
		Tasks   int  `json:"tasks"`
		History *int `json:"history"`
	} `json:"schema"`
}

func (h *fullHost) health() (apiHealth, int) {
	h.t.Helper()
	var a apiHealth
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/health", h.ports.api))
	if err != nil {
		return a, 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	json.Unmarshal(body, &a)
	return a, resp.StatusCode
}

// sql runs one query through psql and returns its trimmed output.
func (h *fullHost) sql(q string) string {
	h.t.Helper()
	return strings.TrimSpace(h.run("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", h.db, "-c", q))
}

// containers maps each compose service of the project to its container ID.
func (h *fullHost) containers() map[string]string {
	out := h.run("docker", "ps", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project="+h.project,
		"--format", `{{.Label "com.docker.compose.service"}} {{.ID}}`)
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if svc, id, ok := strings.Cut(l, " "); ok {
			m[svc] = id
		}
	}
	return m
}

func (h *fullHost) liveRelease() string {
	target, err := os.Readlink(filepath.Join(h.dir, "opt/cohuron"))
	if err != nil {
		h.t.Fatal(err)
	}
	return filepath.Base(target)
}

// TestFullConverge walks the sample through every kind of change with the
// real pnpm, PostgreSQL, Docker engine and compose, PM2 and MinIO, and
// checks that each step ran only when its inputs changed.
func TestFullConverge(t *testing.T) {
	h := newFullHost(t)
	mustContain := func(out string, subs ...string) {
		t.Helper()
		for _, s := range subs {
			if !strings.Contains(out, s) {
				t.Fatalf("output lacks %q:\n%s", s, out)
			}
		}
	}
	mustNot := func(out string, subs ...string) {
		t.Helper()
		for _, s := range subs {
			if strings.Contains(out, s) {
				t.Fatalf("output has %q:\n%s", s, out)
			}
		}
	}

	// First converge: everything runs, seed included.
	h.publish()
	out, _ := h.agent("plan")
	mustContain(out, "install", "build    api", "compose", "first compose up", "db/01_schema_create.ddl added", "db/seed.sql    seed: first install, runs once")
	h.once(0)
	hl, code := h.health()
	if code != 200 || hl.Schema.Tasks != 30 || hl.Schema.Tables != 5 {
		t.Fatalf("after the first converge: %d %+v", code, hl)
	}
	if n := h.sql("SELECT count(*) FROM cohuron_agent.schema_history"); n != "7" {
		t.Fatalf("schema history has %s rows, want 7 (6 files and the seed)", n)
	}
	if owner := h.run("stat", "-c", "%U", filepath.Join(h.dir, "opt/cohuron/node_modules/.modules.yaml")); strings.TrimSpace(owner) != "cohuron-app" {
		t.Fatalf("node_modules owned by %s, want the app user", owner)
	}
	ctr := h.containers()
	if len(ctr) != 2 {
		t.Fatalf("containers: %v", ctr)
	}
	h.sql("INSERT INTO app.tasks (project_id, title) SELECT id, 'added by hand' FROM app.project LIMIT 1")

	// Code change with the same lockfile: no install, compose or schema;
	// the first DDL file drops schema app, and every row stays.
	h.edit("apps/api/server.js", func(s string) string { return s + "\n// code change 1\n" })
	h.commit("code change")
	h.publish()
	out, _ = h.agent("plan")
	mustContain(out, "skip install", "node_modules of seq 1 reused without network", "skip compose", "skip schema", "build    api")
	h.once(0)
	if got := h.containers(); got["cache"] != ctr["cache"] || got["queue"] != ctr["queue"] {
		t.Fatalf("a code change recreated containers: %v -> %v", ctr, got)
	}
	if n := h.sql("SELECT count(*) FROM app.tasks"); n != "31" {
		t.Fatalf("tasks after a code-only deploy: %s, want 31 (every row kept)", n)
	}
	if fileExists(filepath.Join(h.dir, "state/logs", h.liveRelease(), "install.log")) {
		t.Fatal("a code change ran pnpm install")
	}

	// Dependency change: install runs, compose and schema do not.
	for _, f := range []string{"apps/api/package.json", "pnpm-lock.yaml"} {
		data, err := os.ReadFile(filepath.Join("../testdata/cohuronapp-changes/deps", f))
		if err != nil {
			t.Fatal(err)
		}
		h.edit(f, func(string) string { return string(data) })
	}
	h.commit("add ms")
	h.publish()
	out, _ = h.agent("plan")
	mustContain(out, "apps/api/package.json changed", "pnpm-lock.yaml changed", "skip compose", "skip schema")
	mustNot(out, "skip install")
	h.once(0)
	if !fileExists(filepath.Join(h.dir, "opt/cohuron/apps/api/node_modules/ms/package.json")) {
		t.Fatal("the new dependency is not installed")
	}
	if got := h.containers(); got["cache"] != ctr["cache"] {
		t.Fatal("a dependency change recreated containers")
	}

	// A lockfile that does not match: pnpm's message, not activated.
	live := h.liveRelease()
	h.edit("apps/web/package.json", func(s string) string {
		return strings.Replace(s, `"version": "1.0.0",`, `"version": "1.0.0",
  "dependencies": {"ms": "2.1.3"},`, 1)
	})
	h.commit("package.json without lockfile update")
	h.publish()
	out = h.once(4)
	mustContain(out, "ERR_PNPM_OUTDATED_LOCKFILE", "not activated")
	if h.liveRelease() != live {
		t.Fatal("a failed install switched the release")
	}
	h.git("revert", "--no-edit", "HEAD")

	// Compose change: only the changed service is recreated.
	h.edit("docker-compose.yml", func(s string) string { return strings.Replace(s, "NAME: queue", "NAME: queue2", 1) })
	h.commit("compose change")
	h.publish()
	out, _ = h.agent("plan")
	mustContain(out, "docker-compose.yml changed", "skip install", "skip schema")
	h.once(0)
	got := h.containers()
	if got["cache"] != ctr["cache"] || got["queue"] == ctr["queue"] || got["queue"] == "" {
		t.Fatalf("compose change: cache must stay and queue be recreated: %v -> %v", ctr, got)
	}
	ctr = got

	// Schema change: only the new file is imported; rows stay.
	h.addSchemaFile("db/07_comments.ddl", "CREATE TABLE app.comments (\n  id serial PRIMARY KEY,\n  task_id uuid REFERENCES app.tasks(id),\n  body text NOT NULL\n);\n")
	h.commit("schema change")
	h.publish()
	out, _ = h.agent("plan")
	mustContain(out, "db/07_comments.ddl added", "skip install", "skip compose")
	mustNot(out, "db/01_schema_create.ddl")
	h.once(0)
	if hl, _ := h.health(); hl.Schema.Tables != 6 || hl.Schema.Tasks != 31 {
		t.Fatalf("after the schema change: %+v", hl)
	}

	// A broken DDL file: the database is untouched, the release not activated.
	live = h.liveRelease()
	history := h.sql("SELECT count(*) FROM cohuron_agent.schema_history")
	h.addSchemaFile("db/08_broken.ddl", "CREATE TABLE app.labels (id serial PRIMARY KEY);\n\nCRAETE TABLE app.oops (id int);\n")
	h.commit("broken ddl")
	h.publish()
	out = h.once(4)
	mustContain(out, "db/08_broken.ddl:3", "not activated")
	if h.liveRelease() != live {
		t.Fatal("a failed schema import switched the release")
	}
	if n := h.sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'app' AND table_name = 'labels'"); n != "0" {
		t.Fatal("the broken import left app.labels behind")
	}
	if n := h.sql("SELECT count(*) FROM cohuron_agent.schema_history"); n != history {
		t.Fatalf("schema history %s -> %s after a failed import", history, n)
	}
	h.git("revert", "--no-edit", "HEAD")
	h.writeManifest()

	// A schema change that breaks the app: health fails, the release rolls
	// back, and the dump (reversible) brings the table back with its rows.
	h.addSchemaFile("db/09_rename.ddl", "ALTER TABLE app.tasks RENAME TO tasks_old;\n")
	h.commit("rename tasks")
	h.publish()
	out = h.once(4)
	mustContain(out, "rolled back")
	if hl, code := h.health(); code != 200 || hl.Schema.Tasks != 31 {
		t.Fatalf("after the rollback: %d %+v", code, hl)
	}
	out, _ = h.agent("status")
	mustContain(out, "schema:   restored the dump taken before seq")

	// A service stopped by hand: the next reconcile brings it back, alone.
	h.run("docker", "stop", ctr["cache"])
	out, _ = h.agent("plan")
	mustContain(out, "service cache not running")
	h.once(0)
	got = h.containers()
	if got["cache"] == "" || got["queue"] != ctr["queue"] {
		t.Fatalf("after repairing cache: %v (was %v)", got, ctr)
	}
	// Repaired, and the rolled-back seq is still not retried.
	out = h.once(0)
	mustContain(out, "blocked", "known-bad")

	// node_modules damaged by hand: installed again in place, then restarted.
	live = h.liveRelease()
	os.RemoveAll(filepath.Join(h.dir, "opt/cohuron/apps/api/node_modules"))
	out, _ = h.agent("plan")
	mustContain(out, "node_modules of the running release is damaged", "apps/api/node_modules missing")
	h.once(0)
	if h.liveRelease() != live || !fileExists(filepath.Join(h.dir, "opt/cohuron/apps/api/node_modules/pg/package.json")) {
		t.Fatal("node_modules not repaired in place")
	}
	if _, code := h.health(); code != 200 {
		t.Fatalf("after repairing node_modules: health %d", code)
	}

	// The same breaking change in a release that does not declare its
	// import reversible: the rollback keeps the schema change and says so;
	// the old code cannot run on it either, so the rollback fails loudly.
	h.git("revert", "--no-edit", "HEAD") // drop db/09_rename.ddl
	h.reversible = false
	h.addSchemaFile("db/10_rename.ddl", "ALTER TABLE app.tasks RENAME TO tasks_gone;\n")
	h.commit("rename tasks, not reversible")
	h.publish()
	h.once(5)
	out, _ = h.agent("status")
	mustContain(out, "schema:   kept seq", "db/10_rename.ddl", "does not declare its import reversible")
	if n := h.sql("SELECT count(*) FROM app.tasks_gone"); n != "31" {
		t.Fatalf("the kept schema change lost rows: %s", n)
	}
}
