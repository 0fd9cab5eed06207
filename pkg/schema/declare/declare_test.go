package declare_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/schema/declare"
)

func openDB(t testing.TB, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// databases starts a PostgreSQL server with two empty databases: the
// live one and the desired one (what a shadow import would leave).
func databases(t *testing.T) (live, desired *sql.DB) {
	t.Helper()
	pg := testenv.StartPostgres(t)
	return openDB(t, pg.CreateDB(t, "live")), openDB(t, pg.CreateDB(t, "desired"))
}

func execSQL(t *testing.T, db *sql.DB, stmts string) {
	t.Helper()
	if _, err := db.Exec(stmts); err != nil {
		t.Fatalf("%v\n%s", err, stmts)
	}
}

const liveDDL = `
CREATE SCHEMA app;
CREATE TABLE app.task (id int PRIMARY KEY, name varchar(50), old_note text, done int);
INSERT INTO app.task VALUES (1, 'a user''s task', 'note', 0);
CREATE TABLE app.gone (id int PRIMARY KEY);
INSERT INTO app.gone VALUES (7);
CREATE TABLE app.invoice_head (id int PRIMARY KEY, total int);
INSERT INTO app.invoice_head VALUES (1, 100);
`

// The files' schema: task gains columns and an index, loses old_note and
// changes done's type; invoice_head is now invoice; gone is gone; a new
// table, function and trigger.
const desiredDDL = `
CREATE SCHEMA app;
CREATE TABLE app.task (id int PRIMARY KEY, name varchar(100), done boolean, priority text DEFAULT 'normal', updated_at timestamptz);
CREATE INDEX task_name_idx ON app.task (name);
CREATE TABLE app.invoice (id int PRIMARY KEY, total int);
CREATE TABLE app.person (id int PRIMARY KEY, email text NOT NULL);
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER task_touch BEFORE UPDATE ON app.task FOR EACH ROW EXECUTE FUNCTION app.touch();
`

func TestDiffRefusesThenApplies(t *testing.T) {
	ctx := context.Background()
	live, desired := databases(t)
	execSQL(t, live, liveDDL)
	execSQL(t, desired, desiredDDL)

	opt := declare.Options{Schemas: []string{"app"}}
	p, err := declare.Diff(ctx, live, desired, opt)
	if err != nil {
		t.Fatal(err)
	}
	var refused []string
	for _, r := range p.Refused {
		refused = append(refused, r.String())
	}
	t.Logf("refused:\n%s", strings.Join(refused, "\n"))
	for _, r := range p.Refused {
		if r.Object == "app.task.old_note" && r.Rename != "" {
			t.Errorf("old_note looks renamed to %s: no new column is like it", r.Rename)
		}
	}
	for _, want := range []string{
		"app.gone: the schema files no longer create this table", "schema.drops: [app.gone]",
		"app.invoice_head: the schema files no longer create this table", "it looks renamed to app.invoice (the same columns): declare schema.renames: {app.invoice_head: invoice}",
		"app.task.old_note: the schema files no longer create this column",
		"app.task.done: type integer -> boolean has no cast that keeps every value",
	} {
		if !strings.Contains(strings.Join(refused, "\n"), want) {
			t.Errorf("refusals lack %q", want)
		}
	}
	var re *declare.RefusedError
	if err := declare.Apply(ctx, live, p, 0); !errors.As(err, &re) {
		t.Fatalf("Apply of a refusing plan: %v, want a RefusedError", err)
	}
	if got := count(t, live, "SELECT count(*) FROM app.gone"); got != 1 {
		t.Fatalf("the refused plan changed live: app.gone has %d rows", got)
	}

	// Declared: the rename keeps the invoices, the drops are allowed.
	opt.Renames = map[string]string{"app.invoice_head": "invoice"}
	opt.Drops = []string{"app.gone", "app.task.old_note", "app.task.done"}
	p, err = declare.Diff(ctx, live, desired, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Refused) != 0 {
		t.Fatalf("refused with every declaration: %v", p.Refused)
	}
	var text strings.Builder
	for _, s := range p.Statements {
		text.WriteString(s.String() + "\n")
	}
	t.Logf("plan:\n%s", text.String())
	for _, want := range []string{
		`ALTER TABLE "app"."invoice_head" RENAME TO "invoice"`,
		"lock: writes to the table wait while the index builds",
		"data loss (declared in schema.drops)",
		"CREATE OR REPLACE FUNCTION app.touch()",
		"CREATE TRIGGER task_touch",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	if err := declare.Apply(ctx, live, p, 0); err != nil {
		t.Fatal(err)
	}
	if got := count(t, live, "SELECT count(*) FROM app.invoice WHERE total = 100"); got != 1 {
		t.Errorf("the renamed table lost its row: %d", got)
	}
	if got := count(t, live, "SELECT count(*) FROM app.task WHERE name = 'a user''s task' AND priority = 'normal'"); got != 1 {
		t.Errorf("app.task lost its row or the new column's default: %d", got)
	}
	execSQL(t, live, "UPDATE app.task SET name = 'x'")
	if got := count(t, live, "SELECT count(*) FROM app.task WHERE updated_at IS NOT NULL"); got != 1 {
		t.Errorf("the trigger does not run: %d", got)
	}

	// Converged: nothing more to do.
	p, err = declare.Diff(ctx, live, desired, opt)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		t.Fatalf("after applying, the plan is not empty: %+v", p)
	}
}

func count(t testing.TB, db *sql.DB, q string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// Reference tables get the files' rows live lacks, by primary key; other
// tables never get a row from a deploy.
func TestReferenceData(t *testing.T) {
	ctx := context.Background()
	live, desired := databases(t)
	execSQL(t, live, `CREATE SCHEMA app;
CREATE TABLE app.label (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, upper_name text GENERATED ALWAYS AS (upper(name)) STORED);
INSERT INTO app.label (name) VALUES ('one'), ('two');
INSERT INTO app.label (id, name) OVERRIDING SYSTEM VALUE VALUES (10, 'a user''s label');
DELETE FROM app.label WHERE id = 2;
CREATE TABLE app.task (id int PRIMARY KEY, name text);
INSERT INTO app.task VALUES (1, 'seeded');
DELETE FROM app.task WHERE id = 1;`)
	execSQL(t, desired, `CREATE SCHEMA app;
CREATE TABLE app.label (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, upper_name text GENERATED ALWAYS AS (upper(name)) STORED);
INSERT INTO app.label (name) VALUES ('one'), ('two'), ('it''s three');
CREATE TABLE app.task (id int PRIMARY KEY, name text);
INSERT INTO app.task VALUES (1, 'seeded'), (2, 'seeded too');`)
	opt := declare.Options{Schemas: []string{"app"}, ReferenceData: []string{"app.label"}}
	p, err := declare.Diff(ctx, live, desired, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Statements) != 2 || !strings.Contains(p.Statements[0].Comment, "2 row(s) of app.label") || !strings.Contains(p.Statements[1].SQL, "setval") {
		t.Fatalf("plan %+v, want one insert of labels 2 and 3 and the sequence moved past them", p.Statements)
	}
	if err := declare.Apply(ctx, live, p, 0); err != nil {
		t.Fatal(err)
	}
	var labels string
	if err := live.QueryRow(`SELECT string_agg(id || ':' || name || ':' || upper_name, ',' ORDER BY id) FROM app.label`).Scan(&labels); err != nil {
		t.Fatal(err)
	}
	if want := "1:one:ONE,2:two:TWO,3:it's three:IT'S THREE,10:a user's label:A USER'S LABEL"; labels != want {
		t.Errorf("labels %q, want %q", labels, want)
	}
	// A user's next label gets a key of its own.
	execSQL(t, live, "INSERT INTO app.label (name) VALUES ('next')")
	if n := count(t, live, "SELECT count(*) FROM app.task"); n != 0 {
		t.Errorf("app.task, not reference data, got %d rows from the deploy", n)
	}
	if p, err := declare.Diff(ctx, live, desired, opt); err != nil || !p.Empty() {
		t.Fatalf("after applying: %+v, %v; want nothing to do", p, err)
	}
	// A reference table the files give no primary key: no row, a note
	// naming it and why; the rest of the change still goes.
	execSQL(t, desired, "CREATE TABLE app.keyless (name text); INSERT INTO app.keyless VALUES ('x')")
	opt.ReferenceData = []string{"app.label", "app.keyless"}
	p, err = declare.Diff(ctx, live, desired, opt)
	if err != nil || len(p.Statements) != 1 || !strings.Contains(p.Statements[0].SQL, `CREATE TABLE "app"."keyless"`) ||
		len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "app.keyless gets no rows: the schema files give it no primary key") {
		t.Fatalf("a keyless reference table: %+v (notes %q), %v; want the table created, no row, a note", p.Statements, p.Notes, err)
	}
	opt.ReferenceData = []string{"app.nosuch"}
	if _, err := declare.Diff(ctx, live, desired, opt); err == nil || !strings.Contains(err.Error(), "create no table app.nosuch") {
		t.Fatalf("an unknown reference table: %v", err)
	}
}

// A statement the live data refuses (a unique index over duplicates) is
// not a failure of the moment: retrying it at every poll changes nothing.
func TestApplyRefusedByData(t *testing.T) {
	ctx := context.Background()
	live, desired := databases(t)
	execSQL(t, live, "CREATE SCHEMA app; CREATE TABLE app.person (id int PRIMARY KEY, email text); INSERT INTO app.person VALUES (1, 'a@x'), (2, 'a@x')")
	execSQL(t, desired, "CREATE SCHEMA app; CREATE TABLE app.person (id int PRIMARY KEY, email text); CREATE UNIQUE INDEX person_email ON app.person (email)")
	p, err := declare.Diff(ctx, live, desired, declare.Options{Schemas: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	err = declare.Apply(ctx, live, p, 0)
	var se *declare.StatementError
	if !errors.As(err, &se) || se.Transient() || !strings.Contains(err.Error(), "person_email") {
		t.Fatalf("Apply over duplicates: %v; want a StatementError, not transient, naming the index", err)
	}
}

// Precision, scale and length count: narrowing any is refused, widening
// a varchar is not (and rewrites nothing).
func TestTypeChanges(t *testing.T) {
	ctx := context.Background()
	live, desired := databases(t)
	execSQL(t, live, "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, amount numeric(10,2), code varchar(100), name varchar(50), at timestamp(6)); INSERT INTO app.t VALUES (1, 12.34, 'abc', 'n', now())")
	execSQL(t, desired, "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, amount numeric(10,0), code varchar(10), name varchar(100), at timestamp(0))")
	p, err := declare.Diff(ctx, live, desired, declare.Options{Schemas: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]bool{}
	for _, r := range p.Refused {
		refused[r.Object] = true
	}
	for _, obj := range []string{"app.t.amount", "app.t.code", "app.t.at"} {
		if !refused[obj] {
			t.Errorf("narrowing %s was not refused: %v", obj, p.Refused)
		}
	}
	if refused["app.t.name"] {
		t.Errorf("widening app.t.name was refused")
	}
	for _, s := range p.Statements {
		if strings.Contains(s.SQL, `"name" TYPE`) && s.Hazard != "" {
			t.Errorf("widening a varchar has hazard %q, want none", s.Hazard)
		}
	}
}

// A declared rename with other changes of the same table: the checks that
// read live rows look under live's (old) names.
func TestRenameWithRowChecks(t *testing.T) {
	ctx := context.Background()
	live, desired := databases(t)
	execSQL(t, live, "CREATE SCHEMA app; CREATE TABLE app.cust (id int PRIMARY KEY, cust_name text); INSERT INTO app.cust VALUES (1, NULL)")
	execSQL(t, desired, "CREATE SCHEMA app; CREATE TABLE app.customer (id int PRIMARY KEY, name text NOT NULL, code text NOT NULL)")
	p, err := declare.Diff(ctx, live, desired, declare.Options{Schemas: []string{"app"},
		Renames: map[string]string{"app.cust": "customer", "app.cust.cust_name": "name"}})
	if err != nil {
		t.Fatalf("Diff with renames and row checks: %v", err)
	}
	got := map[string]string{}
	for _, r := range p.Refused {
		got[r.Object] = r.What
	}
	if !strings.Contains(got["app.customer.name"], "NOT NULL on a column that holds NULLs") || !strings.Contains(got["app.customer.code"], "NOT NULL column without a default, on a table with rows") {
		t.Fatalf("refused %v, want name (NULLs) and code (no default, rows)", p.Refused)
	}
}

// A new column whose default calls a new function, and a new function
// returning a new table's rows: each created in an order that works.
func TestFunctionOrder(t *testing.T) {
	ctx := context.Background()
	live, desired := databases(t)
	execSQL(t, live, "CREATE SCHEMA app; CREATE TABLE app.task (id int PRIMARY KEY); INSERT INTO app.task VALUES (1)")
	execSQL(t, desired, `CREATE SCHEMA app;
CREATE FUNCTION app.next_code() RETURNS text LANGUAGE sql AS $$ SELECT 'T-' || floor(random() * 1000)::int $$;
CREATE TABLE app.task (id int PRIMARY KEY, code text DEFAULT app.next_code());
CREATE TABLE app.checkpoint (id int PRIMARY KEY, at timestamptz);
CREATE FUNCTION app.last_checkpoint() RETURNS app.checkpoint LANGUAGE sql AS $$ SELECT * FROM app.checkpoint ORDER BY at DESC LIMIT 1 $$;`)
	p, err := declare.Diff(ctx, live, desired, declare.Options{Schemas: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := declare.Apply(ctx, live, p, 0); err != nil {
		t.Fatal(err)
	}
	if n := count(t, live, "SELECT count(*) FROM app.task WHERE code LIKE 'T-%'"); n != 1 {
		t.Errorf("the existing row got no default from the new function (%d)", n)
	}
}
