package realapp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/store/s3store"
)

// The app's own ports, as manifests/prod.yaml and the old deployer use
// them: no test elsewhere takes them (the kernel hands out ephemeral ports
// far above), and LockAppPorts serializes the tests that do.
const (
	apiPort = 4000
	webPort = 5173
)

// appUser is spec.user of manifests/prod.yaml, created as the operator's
// guide says.
const appUser = "cohuron"

// Commits of the app's history (git log --first-parent main), all since
// tools/db-import.sh last changed (2025-11-29): manifests/prod.yaml lists
// its schema files in its order, and each of these commits has them.
const (
	// What the Lambda deployer last deployed on the host the migration
	// starts from (its tools/db-import.sh laid the database out).
	commitOld = "859032e9"
	// The first release, which adopts the old host: API, web and docs
	// changes, the same schema files.
	commitAdopt = "161c7f44"
	// Parent of the web-only change.
	commitBeforeWeb = commitAdopt
	// Web-only: seven files under apps/web/src (the entity cache's hooks
	// and types, a page).
	commitWeb = "c64548e9"
	// Parent of the API-only change.
	commitBeforeAPI = "f651bcbb"
	// API-only: routes of nine modules under apps/api/src/modules moved
	// onto a shared entity route factory.
	commitAPI = "ddb23d0d"

	// A second host, which the old deployer last deployed at the parent
	// of a dependency change (its database imported for that commit).
	commitBeforeDeps = "9451230a"
	// A dependency change: apps/web/package.json and pnpm-lock.yaml gain
	// date-fns (with the web sources that use it).
	commitDeps = "c835ff09"

	// Parent of the schema change.
	commitBeforeSchema = "2eb67f2e"
	// A schema change: db/entity_configuration_settings/06_entity_rbac.ddl
	// gains the unique index the API's permission upserts (ON CONFLICT)
	// need, with the API's changes.
	commitSchema = "0e847c53"

	// main: its web build fails (index.ts exports a component the same
	// commit deleted), so it is never published.
	commitBroken = "be54e1b0"
)

// realHost is one scratch host for the real app, with what the test
// needs around it: PostgreSQL behind the compose service db, a private
// Docker engine with stand-in images, MinIO as the store, PM2, pnpm.
type realHost struct {
	t         testing.TB
	dir       string // world-traversable: the app user reaches releases under it
	app       string // a clone of the app's repository
	root      string // /opt/cohuron of this host
	backups   string // /opt/cohuron-backups of this host
	legacyPM2 string // PM2_HOME of the old deployer's PM2 (root's)
	pm2Home   string // the agent's PM2_HOME
	manifest  string // manifests/prod.yaml as shipped, paths and secret sources overridden
	config    string // the agent's configuration
	store     string
	pg        *testenv.Postgres
	docker    *testenv.Docker
	env       []string // for the publisher, the agent, the old deployer and the helpers
}

func newRealHost(t testing.TB) *realHost {
	bundle := testenv.AppBundle(t)
	testenv.LockAppPorts(t)
	for _, port := range []int{apiPort, webPort} {
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			testenv.Missing(t, fmt.Sprintf("port %d for the app", port), err.Error())
		}
		l.Close()
	}
	testenv.SystemUser(t, appUser)
	pnpmDir := testenv.PnpmForUser(t)
	pm2 := testenv.Bin(t, "pm2")
	node := testenv.Bin(t, "node")
	compose := testenv.Bin(t, "docker-compose")
	testenv.Bin(t, "git")

	h := &realHost{t: t, dir: t.TempDir()}
	for d := h.dir; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	// The host's /var, /opt and /etc, as a real host has them (0755).
	for _, d := range []string{"var/lib", "var/log", "opt", "etc", "root"} {
		os.MkdirAll(filepath.Join(h.dir, d), 0o755)
	}
	os.Chmod(filepath.Join(h.dir, "root"), 0o700)
	h.root, h.backups = filepath.Join(h.dir, "opt/cohuron"), filepath.Join(h.dir, "opt/cohuron-backups")
	h.legacyPM2, h.pm2Home = filepath.Join(h.dir, "root/.pm2"), filepath.Join(h.dir, "var/lib/cohuron-agent/pm2")

	h.pg = testenv.StartPostgresOpts(t, testenv.PostgresOptions{ListenBridges: true})
	h.pg.CreateAppDB(t)
	h.docker = testenv.StartDocker(t)
	h.docker.BuildAppStandins(t, h.pg.Port)
	m := testenv.StartMinIO(t)

	path := strings.Join([]string{binDir, pnpmDir, filepath.Dir(pm2), filepath.Dir(node), filepath.Dir(compose), h.pg.Bin,
		"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}, ":")
	h.env = append(append(testenv.GitEnv("2026-01-02T03:04:05Z"), m.Env()...),
		"PATH="+path, "HOME="+filepath.Join(h.dir, "root"), "COSIGN_PASSWORD=realapp", "LANG=C.UTF-8",
		"AWS_CONFIG_FILE="+filepath.Join(h.dir, "none"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(h.dir, "none"),
		"DOCKER_HOST="+h.docker.Host)
	os.MkdirAll(filepath.Join(h.dir, "root"), 0o700)
	t.Cleanup(func() {
		if t.Failed() {
			h.dumpLogs()
		}
		for _, home := range []string{h.pm2Home, h.legacyPM2} {
			c := h.cmd("pm2", "kill")
			c.Env = append(c.Env, "PM2_HOME="+home)
			c.Run()
		}
	})

	// The store: a bucket of its own on MinIO.
	m.SetEnv(t)
	s3, err := s3store.Open(context.Background(), "realapp", "", s3store.Options{Endpoint: m.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.store = "s3://realapp/prod"

	h.app = filepath.Join(h.dir, "pmo")
	h.run("git", "clone", "-q", bundle, h.app)
	h.run("publisher", "keygen", "--out", filepath.Join(h.dir, "keys"))
	h.writeManifest()
	h.writeSecrets(map[string]string{
		"database-url":  "postgresql://app:app@127.0.0.1:5434/app",
		"jwt-secret":    "realapp-jwt-secret-1",
		"s3-access-key": "minio",
		"s3-secret-key": "minio123",
		"rabbitmq-url":  "amqp://admin:admin123@127.0.0.1:5672",
	})
	h.config = filepath.Join(h.dir, "etc/cohuron-agent/agent.yaml")
	cfg := fmt.Sprintf(`store: %s
env: prod
key: %[2]s/keys/cosign.pub
root: %[3]s
backups: %[4]s
stateDir: %[2]s/var/lib/cohuron-agent
pm2Home: %[5]s
legacyPM2Home: %[6]s
appLogDir: %[2]s/var/log/cohuron
secretsDir: %[2]s/secrets
metricsAddr: "off"
`, h.store, h.dir, h.root, h.backups, h.pm2Home, h.legacyPM2)
	testenv.WriteFiles(t, filepath.Dir(h.config), map[string]string{"agent.yaml": cfg})
	return h
}

// writeManifest writes manifests/prod.yaml as shipped with this host's
// paths and secrets read from files under its secretsDir instead of SSM:
// nothing else differs, and the test checks that.
func (h *realHost) writeManifest() {
	shipped, err := os.ReadFile("../../manifests/prod.yaml")
	if err != nil {
		h.t.Fatal(err)
	}
	m := strings.ReplaceAll(string(shipped), "/opt/cohuron", filepath.Join(h.dir, "opt/cohuron"))
	m = strings.ReplaceAll(m, "{ssm: /cohuron/prod/", "{file: /cohuron/prod/")
	// Only paths and secret sources changed.
	a, b := strings.Split(string(shipped), "\n"), strings.Split(m, "\n")
	if len(a) != len(b) {
		h.t.Fatal("the manifest override changed the number of lines")
	}
	for i := range a {
		if a[i] != b[i] && !strings.Contains(a[i], "/opt/cohuron") && !strings.Contains(a[i], "{ssm: /cohuron/prod/") {
			h.t.Fatalf("the manifest override changed line %d: %q -> %q", i+1, a[i], b[i])
		}
	}
	h.manifest = filepath.Join(h.dir, "manifests/prod.yaml")
	testenv.WriteFiles(h.t, filepath.Dir(h.manifest), map[string]string{"prod.yaml": m})
}

// writeSecrets puts the values the manifest's secret references name
// under the agent's secretsDir (as SSM would hold them).
func (h *realHost) writeSecrets(vals map[string]string) {
	dir := filepath.Join(h.dir, "secrets/cohuron/prod")
	os.MkdirAll(dir, 0o700)
	for k, v := range vals {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *realHost) cmd(name string, args ...string) *exec.Cmd {
	for _, d := range filepath.SplitList(h.envVal("PATH")) {
		if p := filepath.Join(d, name); fileExists(p) {
			name = p
			break
		}
	}
	c := exec.Command(name, args...)
	c.Dir = h.dir
	c.Env = append([]string(nil), h.env...)
	return c
}

func (h *realHost) envVal(k string) string {
	v := ""
	for _, kv := range h.env {
		if s, ok := strings.CutPrefix(kv, k+"="); ok {
			v = s
		}
	}
	return v
}

func (h *realHost) run(name string, args ...string) string {
	h.t.Helper()
	out, err := h.cmd(name, args...).CombinedOutput()
	if err != nil {
		h.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// publish publishes commit with the manifest; it returns the output and
// the exit code.
func (h *realHost) publish(commit string) (string, int) {
	h.t.Helper()
	return h.exit(h.cmd("publisher", "publish", "--repo", h.app, "--ref", commit, "--branch", "main", "--env", "prod",
		"--store", h.store, "--key", filepath.Join(h.dir, "keys/cosign.key"), "--manifest", h.manifest,
		// The test runs the publisher as root; CI runs it as its own user.
		"--build-user", appUser))
}

func (h *realHost) mustPublish(commit string) string {
	h.t.Helper()
	out, code := h.publish(commit)
	if code != 0 {
		h.t.Fatalf("publishing %s: exit %d\n%s", commit, code, out)
	}
	return out
}

// agent runs an agent command with this host's configuration.
func (h *realHost) agent(args ...string) (string, int) {
	h.t.Helper()
	return h.exit(h.cmd("agent", append(args, "--config", h.config)...))
}

// mustAgent is agent, which must succeed.
func (h *realHost) mustAgent(args ...string) string {
	h.t.Helper()
	out, code := h.agent(args...)
	if code != 0 {
		h.t.Fatalf("agent %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

func (h *realHost) exit(c *exec.Cmd) (string, int) {
	h.t.Helper()
	out, err := c.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		h.t.Fatal(err)
	}
	return string(out), 0
}

func (h *realHost) once(want int) string {
	h.t.Helper()
	out, code := h.agent("once")
	if code != want {
		h.t.Fatalf("agent once: exit %d, want %d\n%s", code, want, out)
	}
	return out
}

// plan is `agent plan`, which must succeed.
func (h *realHost) plan() string {
	h.t.Helper()
	return h.mustAgent("plan")
}

// pm2Procs lists the processes of a PM2 daemon: name -> pids.
func (h *realHost) pm2Procs(home string) map[string][]int {
	h.t.Helper()
	c := h.cmd("pm2", "jlist")
	c.Env = append(c.Env, "PM2_HOME="+home, "PM2_DISABLE_VERSION_CHECK=true")
	out, err := c.Output()
	if err != nil {
		return nil
	}
	i := bytes.IndexByte(out, '[')
	if i < 0 {
		return nil
	}
	var list []struct {
		Name   string `json:"name"`
		PID    int    `json:"pid"`
		PM2Env struct {
			Status string `json:"status"`
		} `json:"pm2_env"`
	}
	json.NewDecoder(bytes.NewReader(out[i:])).Decode(&list)
	procs := map[string][]int{}
	for _, p := range list {
		if p.PM2Env.Status == "online" && p.PID > 0 {
			procs[p.Name] = append(procs[p.Name], p.PID)
		}
	}
	return procs
}

// pm2Alive reports whether the PM2 daemon of home runs.
func pm2Alive(home string) bool {
	data, err := os.ReadFile(filepath.Join(home, "pm2.pid"))
	if err != nil {
		return false
	}
	var pid int
	fmt.Sscan(string(data), &pid)
	return pid > 0 && exec.Command("kill", "-0", fmt.Sprint(pid)).Run() == nil
}

// releaseOf is the release directory a process runs from (its cwd,
// below the releases directory), or its cwd when elsewhere.
func (h *realHost) releaseOf(pid int) string {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return ""
	}
	rel, err := filepath.Rel(filepath.Join(h.backups, "releases"), cwd)
	if err != nil || strings.HasPrefix(rel, "..") {
		return cwd
	}
	first, _, _ := strings.Cut(rel, "/")
	return first
}

// liveRelease is the release directory the root points at.
func (h *realHost) liveRelease() string {
	target, err := os.Readlink(h.root)
	if err != nil {
		h.t.Fatal(err)
	}
	return filepath.Base(target)
}

// processesRunFrom checks every PM2 worker of the agent's process name
// runs from release dir (as user appUser).
func (h *realHost) processesRunFrom(name, release string) {
	h.t.Helper()
	pids := h.pm2Procs(h.pm2Home)[name]
	if len(pids) == 0 {
		h.t.Fatalf("process %s is not running under the agent's PM2", name)
	}
	u, err := user.Lookup(appUser)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, pid := range pids {
		if got := h.releaseOf(pid); got != release {
			h.t.Errorf("process %s (pid %d) runs from %s, want %s", name, pid, got, release)
		}
		if st, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil && fmt.Sprint(st.Sys().(*syscall.Stat_t).Uid) != u.Uid {
			h.t.Errorf("process %s (pid %d) runs as uid %d, want %s (%s)", name, pid, st.Sys().(*syscall.Stat_t).Uid, appUser, u.Uid)
		}
	}
}

// client sends each request from another loopback address, as from
// another client: the API rate-limits each client address (100 requests
// a minute with NODE_ENV=production), and a test's probes are not one
// client's traffic.
var client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
	DisableKeepAlives: true,
	DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+rand.IntN(254)), byte(1+rand.IntN(254)))}
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: src}
		return d.DialContext(ctx, network, addr)
	},
}}

// get returns the status and body of an HTTP GET on loopback.
func get(url string) (int, string) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

// login signs in as a user the app's seed data creates (db/05_employee.ddl),
// which reads app.employee: the API is up and talks to the database.
func login() (int, string) {
	resp, err := client.Post(fmt.Sprintf("http://127.0.0.1:%d/api/v1/auth/login", apiPort), "application/json",
		strings.NewReader(`{"email":"james.miller@huronhome.ca","password":"password123"}`))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

// waitFor polls f until it reports true, failing t after timeout.
func (h *realHost) waitFor(what string, timeout time.Duration, f func() (bool, string)) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: not after %s: %s", what, timeout, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// rowCounts counts the rows of every table of schema app.
func (h *realHost) rowCounts() map[string]int {
	h.t.Helper()
	out := h.sql(`SELECT format('%s %s', table_name, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM app.%I', table_name), false, true, '')))[1]::text)
FROM information_schema.tables WHERE table_schema = 'app' AND table_type = 'BASE TABLE' ORDER BY 1`)
	counts := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		var name string
		var n int
		if _, err := fmt.Sscan(l, &name, &n); err == nil {
			counts[name] = n
		}
	}
	return counts
}

// sql runs one query as the app's role through the compose service db.
func (h *realHost) sql(q string) string {
	h.t.Helper()
	return strings.TrimSpace(h.run("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "postgresql://app:app@127.0.0.1:5434/app", "-c", q))
}

// containers maps each compose service of project cohuron to its container ID.
func (h *realHost) containers() map[string]string {
	out := h.run("docker", "ps", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project=cohuron",
		"--format", `{{.Label "com.docker.compose.service"}} {{.ID}}`)
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if svc, id, ok := strings.Cut(l, " "); ok {
			m[svc] = id
		}
	}
	return m
}

// webAssets is the set of script assets the web's index.html names (its
// build's content hashes).
func webAssets() (string, error) {
	code, body := get(fmt.Sprintf("http://127.0.0.1:%d/", webPort))
	if code != http.StatusOK {
		return "", fmt.Errorf("GET / of the web: %d %s", code, firstLine(body))
	}
	assets := regexp.MustCompile(`/assets/[A-Za-z0-9._-]+\.js`).FindAllString(body, -1)
	sort.Strings(assets)
	if len(assets) == 0 {
		return "", fmt.Errorf("index.html names no script asset: %s", firstLine(body))
	}
	return strings.Join(assets, " "), nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	if len(l) > 300 {
		l = l[:300]
	}
	return l
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// contains fails t unless out has every sub.
func contains(t testing.TB, what, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Fatalf("%s lacks %q:\n%s", what, s, out)
		}
	}
}

// lacks fails t when a line of out (skip lines aside) has any sub.
func lacks(t testing.TB, what, out string, subs ...string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "skip ") {
			continue
		}
		for _, s := range subs {
			if strings.Contains(line, s) {
				t.Fatalf("%s has %q:\n%s", what, s, out)
			}
		}
	}
}

// dumpLogs logs the end of every PM2 log and agent log of the host, for a
// failed test.
func (h *realHost) dumpLogs() {
	var files []string
	for _, g := range []string{"root/.pm2/logs/*.log", "var/log/cohuron/*/*.log", "var/log/cohuron/*.log", "var/lib/cohuron-agent/logs/*/*.log", "tmp/deploy-*.log", "var/lib/cohuron-agent/pm2/pm2.log", "var/lib/cohuron-agent/pm2/logs/*.log"} {
		m, _ := filepath.Glob(filepath.Join(h.dir, g))
		files = append(files, m...)
	}
	for _, f := range files {
		data, _ := os.ReadFile(f)
		h.t.Logf("--- %s\n%s", strings.TrimPrefix(f, h.dir+"/"), tail(string(data), 3000))
	}
}
