package realapp

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/fault"
)

// replayCommits is how many of the last commits of the app's main that
// touch db/ TestSchemaReplay deploys, in order.
const replayCommits = 30

// userTables get a row written by "users" between deploys.
var userTables = []string{"project", "task", "person"}

// TestSchemaReplay deploys the last commits of the real app that touch
// db/, oldest first, through `publisher publish` and `agent once`, to one
// host and one database (real PostgreSQL, a role with CREATEDB only). Each
// release's manifest is prod.yaml's schema section with that commit's own
// import order (its tools/db-import.sh, as the manifest of the day would
// have listed it) and the declarations made so far. The first deploy is a
// first install (the files' rows loaded); each next one is imported into
// a shadow database and applied as a difference. Between deploys users
// write rows and delete a seeded one. A deploy that would lose data must
// be refused (exit 4) with an error naming each object and the
// declaration that allows it; the test declares it as an operator would
// (the rename the refusal suggests, else the drop), publishes again, and
// that must converge. No user row may be lost; the deleted one stays
// deleted.
func TestSchemaReplay(t *testing.T) {
	r := newReplayHost(t)
	commits := strings.Fields(r.git("log", "--format=%h", fmt.Sprintf("-%d", replayCommits), "main", "--", "db/"))
	slices.Reverse(commits)
	if len(commits) != replayCommits {
		t.Fatalf("%d commits touch db/, want %d", len(commits), replayCommits)
	}
	written, marker := map[string]int{}, map[string]string{}
	deleted := ""
	var declared []string
	for i, commit := range commits {
		for attempt := 0; ; attempt++ {
			r.publish(commit)
			refused := r.planRefusals()
			out, code := r.agent("once")
			if len(refused) == 0 {
				if code != 0 {
					t.Fatalf("%s: agent once: exit %d\n%s", commit, code, out)
				}
				break
			}
			if code != fault.ExitConvergeFailed {
				t.Fatalf("%s: agent plan refuses %v, agent once exited %d, want %d (known bad)\n%s", commit, refused, code, fault.ExitConvergeFailed, out)
			}
			if attempt == 3 {
				t.Fatalf("%s: still refused with the declarations:\n%s", commit, out)
			}
			for _, f := range refused {
				if !strings.Contains(out, f.Object+": ") || !strings.Contains(out, f.Allow) || !strings.Contains(out, "schema.drops: ["+f.Object+"]") {
					t.Fatalf("%s: the refusal does not name %s and the declaration that allows it:\n%s", commit, f.Object, out)
				}
				for _, ut := range userTables {
					if f.Object == "app."+ut {
						t.Fatalf("%s: the files drop table %s, which holds user rows: %+v", commit, f.Object, f)
					}
				}
				if f.Rename != "" {
					r.renames[f.Object] = f.Rename
					declared = append(declared, commit+": renames "+f.Object+" -> "+f.Rename)
				} else {
					r.drops = append(r.drops, f.Object)
					declared = append(declared, commit+": drops "+f.Object)
				}
			}
			t.Logf("%s: refused (exit 4); declared %d more", commit, len(refused))
		}
		if i == 0 {
			if n := r.sql("SELECT count(*) FROM app.task"); n == "0" {
				t.Fatalf("%s: the first install loaded no task of the files' rows", commit)
			}
		}

		// Users at work.
		for _, ut := range userTables {
			if col := r.insertUserRow(ut, fmt.Sprintf("cohuron-user-%s-%d", ut, i)); col != "" {
				written[ut]++
				marker[ut] = col
			}
		}
		if deleted == "" {
			deleted = r.sql(`DELETE FROM app.task WHERE id = (SELECT id FROM app.task WHERE name NOT LIKE 'cohuron-user-%' ORDER BY id LIMIT 1) RETURNING id::text`)
		}
		for ut, n := range written {
			if got := r.sql(fmt.Sprintf("SELECT count(*) FROM app.%s WHERE %s LIKE 'cohuron-user-%%'", ut, marker[ut])); got != fmt.Sprint(n) {
				t.Fatalf("after %s: app.%s has %s user rows, want %d", commit, ut, got, n)
			}
		}
		if got := r.sql("SELECT count(*) FROM app.task WHERE id::text = '" + deleted + "'"); got != "0" {
			t.Fatalf("after %s: the deleted task %s is back", commit, deleted)
		}
	}
	// A pull request to the manifest: the app's cursor pagination
	// indexes (db/indexes/, in no list of tools/db-import.sh) added by a
	// glob. publisher preview lists, from the files alone, on a scratch
	// server, the statements hosts will run; a config-only publish, and
	// the host's plan and converge run exactly those.
	last := commits[len(commits)-1]
	m := r.writeManifest(last, "db/indexes/*.ddl")
	out := r.stdout("publisher", "preview", "--store", r.store(), "--env", "prod", "--key", filepath.Join(r.dir, "keys/cosign.pub"),
		"--manifest", m, "--schema-server", r.dbURL, "--json")
	var pv struct{ Schema *schemaStatements }
	if err := json.Unmarshal([]byte(out), &pv); err != nil || pv.Schema == nil {
		t.Fatalf("publisher preview --json: %v\n%s", err, out)
	}
	if len(pv.Schema.Statements) == 0 || len(pv.Schema.Refused) != 0 || !strings.Contains(pv.Schema.Statements[0].SQL, "CREATE INDEX") || pv.Schema.Statements[0].Hazard == "" {
		t.Fatalf("publisher preview of the pagination indexes: %+v; want CREATE INDEX statements with their hazard, nothing refused", pv.Schema)
	}
	text := r.run("publisher", "preview", "--store", r.store(), "--env", "prod", "--key", filepath.Join(r.dir, "keys/cosign.pub"),
		"--manifest", m, "--schema-server", r.dbURL)
	if !strings.Contains(text, fmt.Sprintf("schema, declarative: %d statement(s)", len(pv.Schema.Statements))) || !strings.Contains(text, pv.Schema.Statements[0].SQL) {
		t.Fatalf("publisher preview (text) does not list the statements:\n%s", text)
	}
	r.run("publisher", "publish", "--env", "prod", "--store", r.store(), "--key", filepath.Join(r.dir, "keys/cosign.key"), "--manifest", m)
	plan := r.agentJSON("plan")
	var hp struct{ Schema *schemaStatements }
	if err := json.Unmarshal([]byte(plan), &hp); err != nil || hp.Schema == nil {
		t.Fatalf("agent plan --json: %v\n%s", err, plan)
	}
	if !slices.Equal(hp.Schema.Statements, pv.Schema.Statements) {
		t.Fatalf("the host's plan differs from the preview:\nhost    %+v\npreview %+v", hp.Schema.Statements, pv.Schema.Statements)
	}
	if out, code := r.agent("once"); code != 0 {
		t.Fatalf("agent once with the pagination indexes: exit %d\n%s", code, out)
	}
	if got := r.sql(`SELECT count(*) FROM pg_indexes WHERE schemaname = 'app' AND indexname LIKE 'idx_%_cursor_%'`); got != fmt.Sprint(len(pv.Schema.Statements)) {
		t.Fatalf("%s cursor indexes after the converge, want the %d statements' indexes", got, len(pv.Schema.Statements))
	}

	if got := r.sql(`SELECT count(*) FROM pg_database WHERE datname LIKE 'cohuron_shadow_%'`); got != "0" {
		t.Fatalf("%s shadow databases left", got)
	}
	var never []string
	for _, ut := range userTables {
		if written[ut] == 0 {
			never = append(never, "app."+ut)
		}
	}
	if len(never) > 0 {
		// app.person: db/04a_person.ddl's CREATE TABLE does not parse
		// (WHEN first_name IS AND last_name IS ...), in every commit.
		t.Logf("no user rows written to %v: the files create no such table (or none with a name or code column)", never)
	}
	deploys := map[string]bool{}
	for _, d := range declared {
		c, _, _ := strings.Cut(d, ":")
		deploys[c] = true
	}
	t.Logf("%d deploys, %d of them needed %d declarations:\n%s\nuser rows kept: %v", len(commits), len(deploys), len(declared), strings.Join(declared, "\n"), written)
}

// replayHost is a host for the schema replay: the agent with a directory
// store, PostgreSQL, PM2 for one small process.
type replayHost struct {
	t       *testing.T
	dir     string
	app     string // a clone of the app's repository
	dbURL   string
	config  string
	port    int
	path    string // the PATH of every command
	env     []string
	renames map[string]string
	drops   []string
}

func newReplayHost(t *testing.T) *replayHost {
	r := &replayHost{t: t, dir: t.TempDir(), renames: map[string]string{}}
	bundle := testenv.AppBundle(t)
	pm2 := testenv.Bin(t, "pm2")
	node := testenv.Bin(t, "node")
	testenv.Bin(t, "git")
	pg := testenv.StartPostgres(t)
	r.dbURL = pg.CreateAppDB(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.port = l.Addr().(*net.TCPAddr).Port
	l.Close()

	r.path = strings.Join([]string{binDir, filepath.Dir(pm2), filepath.Dir(node), pg.Bin, "/usr/local/bin", "/usr/bin", "/bin"}, ":")
	pm2Home := filepath.Join(r.dir, "pm2")
	r.env = append(testenv.GitEnv("2026-01-02T03:04:05Z"), "PATH="+r.path, "HOME="+r.dir, "COSIGN_PASSWORD=replay", "LANG=C.UTF-8")
	t.Cleanup(func() {
		c := r.cmd("pm2", "kill")
		c.Env = append(c.Env, "PM2_HOME="+pm2Home)
		c.Run()
	})
	r.app = filepath.Join(r.dir, "pmo")
	r.run("git", "clone", "-q", bundle, r.app)
	r.run("publisher", "keygen", "--out", filepath.Join(r.dir, "keys"))
	testenv.WriteFiles(t, filepath.Join(r.dir, "secrets/cohuron/prod"), map[string]string{"database-url": r.dbURL})
	testenv.WriteFiles(t, r.dir, map[string]string{"stand-in.js": fmt.Sprintf("require('http').createServer((q, s) => s.end('ok')).listen(%d, '127.0.0.1')\n", r.port)})
	r.config = filepath.Join(r.dir, "agent.yaml")
	testenv.WriteFiles(t, r.dir, map[string]string{"agent.yaml": fmt.Sprintf(`store: file://%[1]s/store
env: prod
key: %[1]s/keys/cosign.pub
root: %[1]s/opt/cohuron
backups: %[1]s/opt/cohuron-backups
stateDir: %[1]s/state
pm2Home: %[2]s
appLogDir: %[1]s/log
secretsDir: %[1]s/secrets
metricsAddr: "off"
`, r.dir, pm2Home)})
	return r
}

// manifest is prod.yaml's schema section (its comments aside) with
// files, the order of the commit's own tools/db-import.sh, and the
// declarations made so far; one small process (outside the release)
// stands for the app.
func (r *replayHost) manifest(files []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: deploy.cohuron.dev/v1
kind: Environment
metadata:
  name: prod
spec:
  paths:
    root: %[1]s/opt/cohuron
    backups: %[1]s/opt/cohuron-backups
  schema:
    mode: declarative
    dir: db
    databaseURL: {file: /cohuron/prod/database-url}
    schemas: [app]
    referenceData: [app.entity]
    files:
`, r.dir)
	for _, f := range files {
		fmt.Fprintf(&b, "      - %s\n", f)
	}
	if len(r.renames) > 0 {
		b.WriteString("    renames:\n")
		keys := make([]string, 0, len(r.renames))
		for k := range r.renames {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "      %s: %s\n", k, r.renames[k])
		}
	}
	if len(r.drops) > 0 {
		fmt.Fprintf(&b, "    drops: [%s]\n", strings.Join(r.drops, ", "))
	}
	fmt.Fprintf(&b, `  processes:
    - name: stand-in
      command: [node, %[2]s/stand-in.js]
      port: %[1]d
      inputs: [pnpm-workspace.yaml]
      health:
        - http: {url: "http://127.0.0.1:%[1]d/"}
          within: 30s
`, r.port, r.dir)
	return b.String()
}

// publish publishes commit with its own import order (and extra).
func (r *replayHost) publish(commit string, extra ...string) {
	r.t.Helper()
	r.run("publisher", "publish", "--repo", r.app, "--ref", commit, "--branch", "main", "--env", "prod",
		"--store", r.store(), "--key", filepath.Join(r.dir, "keys/cosign.key"), "--manifest", r.writeManifest(commit, extra...))
}

// writeManifest writes the manifest of commit: its own import order, then
// extra entries of schema.files.
func (r *replayHost) writeManifest(commit string, extra ...string) string {
	r.t.Helper()
	script := r.git("show", commit+":tools/db-import.sh")
	var files []string
	for _, f := range testenv.ImportScriptOrder([]byte(script)) {
		if exec.Command("git", "-C", r.app, "cat-file", "-e", commit+":"+f).Run() == nil {
			files = append(files, f)
		}
	}
	m := filepath.Join(r.dir, "manifests/prod.yaml")
	testenv.WriteFiles(r.t, filepath.Dir(m), map[string]string{"prod.yaml": r.manifest(append(files, extra...))})
	return m
}

func (r *replayHost) store() string { return "file://" + filepath.Join(r.dir, "store") }

// schemaStatements is the schema part of agent plan --json and publisher
// preview --json.
type schemaStatements struct {
	Statements []struct{ SQL, Comment, Hazard string }
	Refused    []refusal
}

// refusal is what agent plan --json says a schema change would refuse.
type refusal struct {
	Object, What, Allow, Rename string
}

// planRefusals is what `agent plan --json` says the pending release's
// schema change refuses.
func (r *replayHost) planRefusals() []refusal {
	r.t.Helper()
	out := r.agentJSON("plan")
	var p struct {
		Schema *struct{ Refused []refusal }
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		r.t.Fatalf("agent plan --json: %v\n%s", err, out)
	}
	if p.Schema == nil {
		return nil
	}
	return p.Schema.Refused
}

// insertUserRow writes a row marked name into app.table (its name
// column, else its code column), when the table exists and takes a row
// with only that; it returns the column, or "" when it wrote nothing.
func (r *replayHost) insertUserRow(table, name string) string {
	r.t.Helper()
	for _, col := range []string{"name", "code"} {
		if r.sql(fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'app' AND table_name = '%s' AND column_name = '%s')`, table, col)) != "t" {
			continue
		}
		r.sql(fmt.Sprintf("INSERT INTO app.%s (%s) VALUES ('%s')", table, col, name))
		return col
	}
	return ""
}

func (r *replayHost) sql(q string) string {
	r.t.Helper()
	return strings.TrimSpace(r.run("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", r.dbURL, "-c", q))
}

func (r *replayHost) git(args ...string) string {
	r.t.Helper()
	return r.run("git", append([]string{"-C", r.app}, args...)...)
}

func (r *replayHost) agent(args ...string) (string, int) {
	r.t.Helper()
	out, err := r.cmd("agent", append(args, "--config", r.config)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		r.t.Fatal(err)
	}
	return string(out), 0
}

// agentJSON runs an agent command with --json, which must succeed, and
// returns what it printed on stdout.
func (r *replayHost) agentJSON(args ...string) string {
	r.t.Helper()
	return r.stdout("agent", append(args, "--json", "--config", r.config)...)
}

// stdout runs a command, which must succeed, and returns its stdout (its
// stderr, the log, only when it fails).
func (r *replayHost) stdout(name string, args ...string) string {
	r.t.Helper()
	c := r.cmd(name, args...)
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		r.t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func (r *replayHost) cmd(name string, args ...string) *exec.Cmd {
	for _, d := range filepath.SplitList(r.path) {
		if p := filepath.Join(d, name); fileExists(p) {
			name = p
			break
		}
	}
	c := exec.Command(name, args...)
	c.Dir = r.dir
	c.Env = append([]string(nil), r.env...)
	return c
}

func (r *replayHost) run(name string, args ...string) string {
	r.t.Helper()
	out, err := r.cmd(name, args...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
