package schema_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/schema"
)

// column runs q (one text column) on the database at url.
func column(ctx context.Context, url, q string, args ...any) ([]string, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// shadows lists the shadow databases of the server at url.
func shadows(t *testing.T, url string) []string {
	t.Helper()
	names, err := column(context.Background(), url, "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1", schema.ShadowPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestShadow imports files into a shadow database the way psql without
// ON_ERROR_STOP does, and checks what the caller sees of it.
func TestShadow(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	files := map[string]string{
		// Needs db/2_b.ddl's table: fails first, runs when retried.
		"db/1_a.ddl": "CREATE SCHEMA IF NOT EXISTS app;\nCREATE TABLE app.a (\n  id int PRIMARY KEY,\n  b int REFERENCES app.b (id)\n);\n",
		"db/2_b.ddl": "CREATE TABLE app.b (id int PRIMARY KEY);\nINSERT INTO app.b VALUES (1);\n" +
			// A fragment, as the real app has (db/17_inventory.ddl:52): psql warns.
			"END;\n" +
			// Fails for good.
			"CREATE TABLE app.c (id nosuchtype);\n" +
			// Fails, and must not be retried once app.a exists.
			"DROP TABLE app.gone;\nDROP TABLE app.a_later;\n",
		// The second statement does not parse: not run again.
		"db/3_later.ddl": "CREATE TABLE app.a_later (id int);\nCREATE TABLE app.broken (id int,);\n",
	}
	order := []string{"db/1_a.ddl", "db/2_b.ddl", "db/3_later.ddl"}

	t.Run("warnings, order problems, shadow dropped, live untouched", func(t *testing.T) {
		f := newFixture(t, pg, "shadow_warnings")
		for n, s := range files {
			f.write(n, s)
		}
		var inShadow []string
		res, err := f.importer().Shadow(ctx, f.load(order...), schema.ShadowOptions{Host: "h1"}, func(ctx context.Context, u string) error {
			if !strings.Contains(u, schema.ShadowPrefix) {
				return fmt.Errorf("inspect got %s, not a shadow", u)
			}
			var err error
			inShadow, err = column(ctx, u, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'app' ORDER BY 1")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(inShadow, ","), "a,a_later,b"; got != want {
			t.Errorf("shadow has tables %s, want %s", got, want)
		}
		var got []string
		for _, w := range res.Warnings {
			got = append(got, w.String())
		}
		t.Logf("warnings:\n%s", strings.Join(got, "\n"))
		if len(res.Warnings) != 5 {
			t.Fatalf("%d warnings, want 5 (a's reference, c's type, two drops, a syntax error)", len(res.Warnings))
		}
		if got := res.Warnings[0].Code + " " + res.Warnings[1].Code; got != "42P01 42704" {
			t.Errorf("SQLSTATEs %s, want 42P01 42704 (undefined table, undefined object)", got)
		}
		for _, w := range res.Warnings {
			if strings.Contains(w.Message, "LOCATION:") || strings.HasPrefix(w.Message, "ERROR:  4") {
				t.Errorf("message %q: want psql's default text, without the SQLSTATE or LOCATION", w.Message)
			}
		}
		w := res.Warnings[0]
		if w.File != "db/1_a.ddl" || w.Line != 5 || !w.Order || !strings.Contains(w.Message, `relation "app.b" does not exist`) || !strings.Contains(w.Statement, "REFERENCES app.b") {
			t.Errorf("first warning %+v, want db/1_a.ddl:5, relation app.b missing, an order problem", w)
		}
		w = res.Warnings[1]
		if w.File != "db/2_b.ddl" || w.Line != 4 || w.Order || !strings.Contains(w.Message, `type "nosuchtype" does not exist`) {
			t.Errorf("second warning %+v, want db/2_b.ddl:4, type nosuchtype, not an order problem", w)
		}
		for _, w := range res.Warnings[2:4] {
			if w.Order || !strings.HasPrefix(w.Statement, "DROP TABLE") {
				t.Errorf("warning %+v: a failed DROP must not be run again", w)
			}
		}
		if w := res.Warnings[4]; w.File != "db/3_later.ddl" || w.Line != 2 || w.Order || w.Code != "42601" {
			t.Errorf("last warning %+v, want db/3_later.ddl:2, a syntax error (42601)", w)
		}
		if n := len(res.Failed()); n != 4 {
			t.Errorf("Failed() has %d, want 4", n)
		}
		if s := shadows(t, pg.URL); len(s) != 0 {
			t.Errorf("shadow databases left: %v", s)
		}
		if tables := f.query("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'app'"); tables[0] != "0" {
			t.Errorf("the live database got %s tables of schema app", tables[0])
		}
	})

	t.Run("strict refuses at the first failing statement", func(t *testing.T) {
		f := newFixture(t, pg, "shadow_strict")
		for n, s := range files {
			f.write(n, s)
		}
		_, err := f.importer().Shadow(ctx, f.load(order...), schema.ShadowOptions{Host: "h1", Strict: true}, nil)
		var fe *schema.FileError
		if !errors.As(err, &fe) || fe.File != "db/1_a.ddl" || fe.Line != 5 || fe.Transient() || !strings.Contains(err.Error(), "schema.strict") {
			t.Fatalf("strict: %v, want a refusal at db/1_a.ddl:5 naming schema.strict", err)
		}
		if s := shadows(t, pg.URL); len(s) != 0 {
			t.Errorf("shadow databases left: %v", s)
		}
	})

	t.Run("psql meta-commands refused before anything runs", func(t *testing.T) {
		f := newFixture(t, pg, "shadow_meta")
		canary := filepath.Join(t.TempDir(), "ran")
		f.write("db/x.sql", "CREATE TABLE t (id int);\nSELECT 1; \\! touch "+canary+"\n")
		_, err := f.importer().Shadow(ctx, f.load("db/x.sql"), schema.ShadowOptions{Host: "h1"}, nil)
		var fe *schema.FileError
		if !errors.As(err, &fe) || fe.Line != 2 || !strings.Contains(err.Error(), `meta-command \!`) {
			t.Fatalf("meta-command: %v, want a refusal at db/x.sql:2 naming \\!", err)
		}
		if _, err := os.Stat(canary); err == nil {
			t.Error("psql ran the meta-command")
		}
		if s := shadows(t, pg.URL); len(s) != 0 {
			t.Errorf("shadow databases made: %v", s)
		}
	})

	t.Run("a crashed import's shadow is dropped, another host's kept", func(t *testing.T) {
		f := newFixture(t, pg, "shadow_crash")
		f.write("db/1.ddl", "CREATE TABLE t (id int);\n")
		imp := f.importer()
		// Leave a shadow of each host, as a kill -9 in inspect would.
		for _, host := range []string{"h1", "h2"} {
			_, err := imp.Shadow(ctx, f.load("db/1.ddl"), schema.ShadowOptions{Host: host}, func(ctx context.Context, u string) error {
				conn, err := pgx.Connect(ctx, f.url)
				if err != nil {
					return err
				}
				defer conn.Close(ctx)
				db := strings.TrimPrefix(mustURL(t, u).Path, "/")
				_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db + "_left"}.Sanitize())
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if s := shadows(t, pg.URL); len(s) != 2 {
			t.Fatalf("shadows before: %v, want one per host", s)
		}
		if err := imp.DropShadows(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		s := shadows(t, pg.URL)
		if len(s) != 1 {
			t.Fatalf("shadows after DropShadows(h1): %v, want h2's only", s)
		}
		if err := imp.DropShadows(ctx, "h2"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a role without CREATEDB is told so", func(t *testing.T) {
		f := newFixture(t, pg, "shadow_nocreatedb")
		f.write("db/1.ddl", "CREATE TABLE t (id int);\n")
		conn, err := pgx.Connect(ctx, pg.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "CREATE ROLE shadow_nocreatedb LOGIN PASSWORD 'pw'"); err != nil {
			t.Fatal(err)
		}
		u := mustURL(t, f.url)
		u.User = url.UserPassword("shadow_nocreatedb", "pw")
		imp := f.importer()
		imp.URL = u.String()
		_, err = imp.Shadow(ctx, f.load("db/1.ddl"), schema.ShadowOptions{Host: "h1"}, nil)
		if err == nil || !strings.Contains(err.Error(), "CREATEDB") || strings.Contains(err.Error(), "pw@") {
			t.Fatalf("without CREATEDB: %v, want an error naming CREATEDB (and no password)", err)
		}
	})
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Files run in one psql, each as in a session of its own: a search_path
// or an open transaction of one file does not reach the next; each
// failure is reported at its own file and line; a file that ends inside
// a literal runs alone, as it would.
func TestImportBatches(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	f := newFixture(t, pg, "batches")
	for n, s := range map[string]string{
		"db/1.ddl": "CREATE SCHEMA app;\nSET search_path TO app, public;\nCREATE TABLE t1 (id int);\nBEGIN;\nCREATE TABLE app.left_open (id int);\n",
		// Unqualified: public, as in a new session (not app).
		"db/2.ddl": "CREATE TABLE t2 (id int);\nSELECT nosuch;\nCREATE TABLE app.t3 (id int)", // no final semicolon
		"db/3.ddl": "CREATE TABLE app.t4 (id int);\n\nSELECT 1/0;\n",
		"db/4.ddl": "CREATE TABLE app.t5 (id int);\nSELECT 'unterminated;\n",
		"db/5.ddl": "CREATE TABLE app.t6 (id int);\nSELECT alsonosuch;\n",
	} {
		f.write(n, s)
	}
	var tables []string
	res, err := f.importer().Shadow(ctx, f.load("db/1.ddl", "db/2.ddl", "db/3.ddl", "db/4.ddl", "db/5.ddl"), schema.ShadowOptions{Host: "batches"}, func(ctx context.Context, u string) error {
		var err error
		tables, err = column(ctx, u, "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_schema IN ('app', 'public') ORDER BY 1")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"app.t1", "app.t3", "app.t4", "app.t5", "app.t6", "public.t2"}; !slices.Equal(tables, want) {
		t.Errorf("tables %v, want %v (the open transaction rolled back, t2 in public)", tables, want)
	}
	var got []string
	for _, w := range res.Warnings {
		got = append(got, fmt.Sprintf("%s:%d", w.File, w.Line))
	}
	if want := []string{"db/2.ddl:2", "db/3.ddl:3", "db/4.ddl:2", "db/5.ddl:2"}; !slices.Equal(got, want) {
		t.Errorf("warnings at %v, want %v:\n%v", got, want, res.Warnings)
	}
}

// An order hint is read from what the failing statements name and the
// files that create it, then tried: moving one file can make another
// fail (here the view, once its table moved after it), which the next
// round reads and fixes.
func TestOrderThatWorks(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	f := newFixture(t, pg, "order_hint")
	for n, s := range map[string]string{
		"db/0.ddl": "CREATE SCHEMA app;\n",
		"db/a.ddl": "CREATE TABLE app.x (id int PRIMARY KEY, y int REFERENCES app.y (id));\n",
		"db/b.ddl": "CREATE VIEW app.vx AS SELECT * FROM app.x;\n",
		"db/c.ddl": "CREATE TABLE IF NOT EXISTS app.y (id int PRIMARY KEY);\n",
	} {
		f.write(n, s)
	}
	files := f.load("db/0.ddl", "db/a.ddl", "db/b.ddl", "db/c.ddl")
	res, err := f.importer().Shadow(ctx, files, schema.ShadowOptions{Host: "order"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := schema.HintOrder(files, res.Warnings)
	if h == nil || len(h.Moves) != 1 || h.Moves[0].String() != "db/a.ddl after db/c.ddl (db/a.ddl:1 needs app.y)" {
		t.Fatalf("hint from the errors = %+v (warnings %v)", h, res.Warnings)
	}
	h, err = f.importer().OrderThatWorks(ctx, files, res.Warnings, schema.ShadowOptions{Host: "order"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"db/0.ddl", "db/c.ddl", "db/a.ddl", "db/b.ddl"}; h == nil || !h.Verified || !slices.Equal(h.Order, want) {
		t.Fatalf("order that works = %+v, want %v, verified", h, want)
	}
	if lines := h.Lines(); len(lines) != 7 || !strings.Contains(lines[0], "imported to check") || lines[3] != "  - db/0.ddl" {
		t.Errorf("lines:\n%s", strings.Join(lines, "\n"))
	}
	if got := shadows(t, pg.URL); len(got) != 0 {
		t.Errorf("shadows left: %v", got)
	}
}

// TestShadowRealApp imports the real app's db/ at the head of main, in
// its import script's order (../shared/cohuron-schema-order.txt), as the
// app's role (CREATEDB, not superuser): the schema the app runs on comes
// out, with the statements its importer ignores as warnings.
func TestShadowRealApp(t *testing.T) {
	order := testenv.AppSchemaOrder(t)
	root := testenv.AppTree(t, testenv.AppClone(t), "main", "db")
	files, err := schema.Load(root, order)
	if err != nil {
		t.Fatalf("the app's schema order against main: %v", err)
	}
	pg := testenv.StartPostgres(t)
	imp := &schema.Importer{URL: pg.CreateAppDB(t), Env: []string{"PATH=/usr/bin:/bin"}, Bin: pg.Bin}
	counts := map[string]string{}
	res, err := imp.Shadow(context.Background(), files, schema.ShadowOptions{Host: "h1"}, func(ctx context.Context, u string) error {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		for _, q := range []string{
			"SELECT count(*) FROM information_schema.tables WHERE table_schema = 'app'",
			"SELECT count(*) FROM app.project", "SELECT count(*) FROM app.task", "SELECT count(*) FROM app.employee",
		} {
			var n int
			if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
			counts[q] = fmt.Sprint(n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	byFile := map[string]int{}
	orderFixed := 0
	for _, w := range res.Warnings {
		if w.Order {
			orderFixed++
		} else {
			byFile[w.File]++
		}
	}
	t.Logf("%d files in %s: %d statements failed in %d files, %d ran when retried after the rest; %v",
		len(files), res.Took.Round(1e6), len(res.Failed()), len(byFile), orderFixed, counts)
	for q, n := range counts {
		if n == "0" {
			t.Errorf("%s = 0 in the shadow", q)
		}
	}
	if byFile["db/17_inventory.ddl"] == 0 {
		t.Error("no warning from db/17_inventory.ddl, whose line 52 psql cannot run")
	}
	if s := shadows(t, pg.URL); len(s) != 0 {
		t.Errorf("shadow databases left: %v", s)
	}
}
