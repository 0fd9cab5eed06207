package agent_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/agent"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
)

// schema.mode declarative through the agent, with the real PostgreSQL and
// a role that has CREATEDB only: a first install loads the files' rows; a
// file edited in place (a column added) is applied without touching the
// rows users wrote, once the role may create the shadow database (before,
// the preflight says so and nothing is touched); a table the files no
// longer create is refused (exit 4, known bad, the running release and
// the database as they were) until the manifest declares it in
// schema.drops. The files are the schema file listed first and a glob.
func TestDeclarativeSchema(t *testing.T) {
	pg := testenv.StartPostgres(t)
	dbURL := pg.CreateAppDB(t)
	f := newFixture(t, 0)
	f.a.ToolEnv = []string{"PATH=" + pg.Bin + ":/usr/local/bin:/usr/bin:/bin"}
	secretsRoot := filepath.Join(filepath.Dir(f.root), "..", "secrets")
	testenv.WriteFiles(t, secretsRoot, map[string]string{"etc/cohuron/demo/database-url": dbURL + "\n"})
	ddl := map[string]string{
		"db/01_schema.ddl": "DROP SCHEMA IF EXISTS app CASCADE;\nCREATE SCHEMA app;\n",
		"db/02_task.ddl": "CREATE TABLE app.task (id serial PRIMARY KEY, name text NOT NULL);\n" +
			"INSERT INTO app.task (name) VALUES ('seeded 1'), ('seeded 2');\n",
		"db/03_old.ddl": "CREATE TABLE app.old (id int);\n",
	}
	commit := func(files map[string]string, msg string) {
		testenv.WriteFiles(t, f.repoDir, files)
		testenv.Git(t, f.repoDir, "add", "-A")
		testenv.Git(t, f.repoDir, "commit", "-qm", msg)
		f.buildBundle()
	}
	commit(ddl, "schema")
	env := func(drops ...string) *manifest.Environment {
		e := f.env("hello", "ok")
		e.Spec.Schema = &manifest.Schema{Dir: "db", DatabaseURL: manifest.Value{RefKind: manifest.RefFile, Ref: "/etc/cohuron/demo/database-url"},
			Files: []string{"db/01_schema.ddl", "db/*.ddl"}, Schemas: []string{"app"}, Mode: manifest.SchemaDeclarative, Drops: drops}
		return e
	}
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	query := func(q string) string {
		t.Helper()
		var s string
		if err := db.QueryRow(q).Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return s
	}

	f.publishEnv(env())
	f.mustConverge(1)
	if got := query("SELECT count(*)::text FROM app.task"); got != "2" {
		t.Fatalf("first install loaded %s rows, want the 2 seeded", got)
	}
	if _, err := db.Exec("INSERT INTO app.task (name) VALUES ('a user''s task'); DELETE FROM app.task WHERE name = 'seeded 1'"); err != nil {
		t.Fatal(err)
	}

	// Edited in place: a column added; the file still drops and seeds.
	ddl["db/02_task.ddl"] = "CREATE TABLE app.task (id serial PRIMARY KEY, name text NOT NULL, priority text DEFAULT 'normal');\n" +
		"INSERT INTO app.task (name) VALUES ('seeded 1'), ('seeded 2');\n"
	commit(ddl, "priority")
	f.publishEnv(env())

	// The role without CREATEDB: refused by the preflight with the fix,
	// nothing known bad, the database untouched; then granted.
	super, err := sql.Open("pgx", pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close()
	if _, err := super.Exec("ALTER ROLE " + testenv.AppDBUser + " NOCREATEDB"); err != nil {
		t.Fatal(err)
	}
	p, err := f.a.Plan(context.Background())
	if err == nil || p == nil || len(p.Preflight) != 1 || !strings.Contains(p.Preflight[0], "ALTER ROLE "+testenv.AppDBUser+" CREATEDB") {
		t.Fatalf("Plan with a role lacking CREATEDB = %+v, %v; want the preflight problem with its fix", p, err)
	}
	if out, err := f.once(); err == nil || !strings.Contains(err.Error(), "neither CREATEDB nor SUPERUSER") || fault.ExitCode(err) != fault.ExitError {
		t.Fatalf("Once with a role lacking CREATEDB = %+v, %v (exit %d); want the preflight refusal (exit 1)", out, err, fault.ExitCode(err))
	}
	if st := f.state(); len(st.KnownBad) != 0 || st.Current == nil || st.Current.Seq != 1 {
		t.Fatalf("state after the preflight refusal: bad %v, current %+v", st.KnownBad, st.Current)
	}
	if got := query("SELECT count(*)::text FROM information_schema.columns WHERE table_schema = 'app' AND column_name = 'priority'"); got != "0" {
		t.Fatal("the refused release changed the database")
	}
	if _, err := super.Exec("ALTER ROLE " + testenv.AppDBUser + " CREATEDB"); err != nil {
		t.Fatal(err)
	}
	p, err = f.a.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Plan.Steps; !strings.Contains(planText(p), "schema") || len(s) == 0 {
		t.Fatalf("plan has no schema step:\n%s", planText(p))
	}
	if p.Schema == nil || len(p.Schema.Statements) != 1 || !strings.Contains(p.Schema.Statements[0].SQL, `ADD COLUMN "priority"`) {
		t.Fatalf("plan's schema statements = %+v (unobserved %v); want the column added", p.Schema, p.Plan.Unobserved)
	}
	f.mustConverge(2)
	if got := query("SELECT string_agg(name || ':' || priority, ',' ORDER BY id) FROM app.task"); got != "seeded 2:normal,a user's task:normal" {
		t.Fatalf("after the column was added, app.task holds %q", got)
	}
	if out, _ := f.once(); out.Result != agent.ResultUpToDate {
		t.Fatalf("Once after converging = %+v, want up to date (the digest is recorded)", out)
	}
	// agent schema diff: nothing, then what a hand-made change undid.
	if d, err := f.a.SchemaDiff(context.Background()); err != nil || len(d.Statements)+len(d.Refused) != 0 {
		t.Fatalf("SchemaDiff after converging = %+v, %v; want nothing to do", d, err)
	}
	if _, err := db.Exec("ALTER TABLE app.task DROP COLUMN priority"); err != nil {
		t.Fatal(err)
	}
	d, err := f.a.SchemaDiff(context.Background())
	if err != nil || len(d.Statements) != 1 || !strings.Contains(d.Statements[0].SQL, `ADD COLUMN "priority" text NULL DEFAULT 'normal'`) {
		t.Fatalf("SchemaDiff after a column was dropped by hand = %+v, %v; want it added back", d, err)
	}
	if _, err := db.Exec("ALTER TABLE app.task ADD COLUMN priority text DEFAULT 'normal'"); err != nil {
		t.Fatal(err)
	}

	// A table the files no longer create.
	delete(ddl, "db/03_old.ddl")
	testenv.Git(t, f.repoDir, "rm", "-q", "db/03_old.ddl")
	commit(ddl, "no old")
	f.publishEnv(env())
	out, err := f.once()
	if fault.ExitCode(err) != fault.ExitConvergeFailed || !strings.Contains(err.Error(), "app.old") || !strings.Contains(err.Error(), "schema.drops: [app.old]") {
		t.Fatalf("Once with a dropped table = %+v, %v (exit %d); want known bad naming app.old and schema.drops", out, err, fault.ExitCode(err))
	}
	if got := query("SELECT count(*)::text FROM information_schema.tables WHERE table_schema = 'app' AND table_name = 'old'"); got != "1" {
		t.Fatal("the refused release dropped app.old")
	}
	if st := f.state(); st.Current == nil || st.Current.Seq != 2 {
		t.Fatalf("running release after the refusal: %+v, want seq 2", st.Current)
	}
	f.publishEnv(env("app.old"))
	f.mustConverge(4)
	if got := query("SELECT count(*)::text FROM information_schema.tables WHERE table_schema = 'app' AND table_name = 'old'"); got != "0" {
		t.Fatal("app.old was declared in schema.drops and is still there")
	}
	if got := query("SELECT count(*)::text FROM app.task"); got != "2" {
		t.Fatalf("app.task has %s rows after the drop of another table, want 2", got)
	}
	if got := query("SELECT count(*)::text FROM pg_database WHERE datname LIKE 'cohuron_shadow_%'"); got != "0" {
		t.Fatalf("%s shadow databases left", got)
	}
}

func planText(p *agent.Outcome) string {
	var b strings.Builder
	for _, s := range p.Plan.Steps {
		b.WriteString(s.String() + "\n")
	}
	return b.String()
}
