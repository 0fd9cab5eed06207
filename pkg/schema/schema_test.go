package schema_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/schema"
)

var clock = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// The app's layout: applied in manifest order, which is not alphabetical;
// the first file wipes the schema, as Cohuron's does.
var appFiles = map[string]string{
	"db/20_base.ddl": "DROP SCHEMA IF EXISTS app CASCADE;\nCREATE SCHEMA app;\n" +
		"CREATE TABLE app.users (id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), name text NOT NULL);\n",
	"db/05_tasks.ddl": "-- needs app.users from db/20_base.ddl\n" +
		"CREATE TABLE app.tasks (id bigserial PRIMARY KEY, owner uuid REFERENCES app.users, title text);\n",
	// uuid_generate_v4 (uuid-ossp) by default, digest (pgcrypto).
	"seed/users.sql": "INSERT INTO app.users (name) SELECT 'alice' WHERE encode(digest('x', 'sha256'), 'hex') <> '';\n",
}

var appOrder = []string{"db/20_base.ddl", "db/05_tasks.ddl"}

type fixture struct {
	t    *testing.T
	pg   *testenv.Postgres
	url  string
	root string
}

func newFixture(t *testing.T, pg *testenv.Postgres, db string) *fixture {
	f := &fixture{t: t, pg: pg, url: pg.CreateDB(t, db), root: t.TempDir()}
	for name, text := range appFiles {
		f.write(name, text)
	}
	return f
}

func (f *fixture) write(name, text string) {
	f.t.Helper()
	p := filepath.Join(f.root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) load(names ...string) []schema.File {
	f.t.Helper()
	files, err := schema.Load(f.root, names)
	if err != nil {
		f.t.Fatal(err)
	}
	return files
}

func (f *fixture) importer() *schema.Importer {
	return &schema.Importer{
		URL: f.url,
		Log: slog.New(slog.NewTextHandler(testWriter{f.t}, nil)),
		Now: func() time.Time { return clock },
		Env: []string{"PATH=/usr/bin:/bin"},
		Bin: f.pg.Bin,
	}
}

func (f *fixture) apply(files, seeds []schema.File, opt schema.ApplyOptions) schema.Result {
	f.t.Helper()
	res, err := f.importer().Apply(context.Background(), files, seeds, opt)
	if err != nil {
		f.t.Fatalf("Apply: %v", err)
	}
	return res
}

func (f *fixture) pending(files, seeds []schema.File) schema.Pending {
	f.t.Helper()
	p, err := f.importer().Pending(context.Background(), files, seeds)
	if err != nil {
		f.t.Fatalf("Pending: %v", err)
	}
	return p
}

// query returns the first column of every row, as text.
func (f *fixture) query(sql string) []string {
	f.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.url)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var v any
		if err := r.Scan(&v); err != nil {
			return "", err
		}
		if v == nil {
			return "NULL", nil
		}
		return fmt.Sprint(v), nil
	})
	if err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func (f *fixture) exists(rel string) bool {
	f.t.Helper()
	return f.query("SELECT to_regclass('" + rel + "') IS NOT NULL")[0] == "true"
}

func (f *fixture) history() []string {
	f.t.Helper()
	if !f.exists("cohuron_agent.schema_history") {
		return nil
	}
	return f.query("SELECT kind || ' ' || file || ' seq=' || seq || ' host=' || host FROM cohuron_agent.schema_history ORDER BY id")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func equal[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// TestImporter runs against one PostgreSQL server, a database per subtest.
func TestImporter(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()

	t.Run("first install in manifest order, then nothing to do", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, pg, "first_install")
		files, seeds := f.load(appOrder...), f.load("seed/users.sql")

		p := f.pending(files, seeds)
		if !p.FirstInstall || !slices.Equal(p.Seeds, []string{"seed/users.sql"}) ||
			!slices.Equal(p.Changes, []schema.Change{{"db/20_base.ddl", "added"}, {"db/05_tasks.ddl", "added"}}) {
			t.Fatalf("Pending on a fresh database = %+v", p)
		}
		if f.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'cohuron_agent'")[0] != "0" {
			t.Error("Pending created the history schema; it must only read")
		}

		// DROP SCHEMA in the first file is fine: the database is empty.
		res := f.apply(files, seeds, schema.ApplyOptions{Seq: 7, Host: "web-1"})
		equal(t, "Applied", res.Applied, appOrder)
		equal(t, "Seeded", res.Seeded, []string{"seed/users.sql"})
		if res.AlreadyDone {
			t.Error("AlreadyDone on first install")
		}
		equal(t, "users", f.query("SELECT name FROM app.users"), []string{"alice"})
		equal(t, "history", f.history(), []string{
			"schema db/20_base.ddl seq=7 host=web-1",
			"schema db/05_tasks.ddl seq=7 host=web-1",
			"seed seed/users.sql seq=7 host=web-1",
		})
		rows, err := f.importer().Applied(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 3 || rows[0].SHA256 != files[0].SHA256 || !rows[0].AppliedAt.Equal(clock) ||
			rows[2].Kind != schema.KindSeed || rows[1].Seq != 7 {
			t.Errorf("Applied() = %+v", rows)
		}

		// Digests alone (no paths, as from the signed release) will do.
		digests := slices.Clone(files)
		for i := range digests {
			digests[i].Path = ""
		}
		if p := f.pending(digests, []schema.File{{Name: "seed/users.sql", SHA256: seeds[0].SHA256}}); !p.Empty() || p.FirstInstall {
			t.Errorf("Pending after install = %+v, want empty", p)
		}
		res = f.apply(files, seeds, schema.ApplyOptions{Seq: 8, Host: "web-1"})
		if !res.AlreadyDone || len(res.Applied)+len(res.Seeded) != 0 {
			t.Errorf("second Apply = %+v, want AlreadyDone and nothing run", res)
		}
		equal(t, "users after second Apply", f.query("SELECT name FROM app.users"), []string{"alice"})
		if n := len(f.history()); n != 3 {
			t.Errorf("history has %d rows after a no-op Apply, want 3", n)
		}
	})

	t.Run("changed and added files; seeds never rerun", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, pg, "changes")
		f.apply(f.load(appOrder...), f.load("seed/users.sql"), schema.ApplyOptions{Seq: 1, Host: "a"})

		f.write("db/05_tasks.ddl", strings.Replace(appFiles["db/05_tasks.ddl"], "CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)+
			"ALTER TABLE app.tasks ADD COLUMN IF NOT EXISTS done boolean NOT NULL DEFAULT false;\n")
		f.write("db/30_notes.ddl", "CREATE TABLE app.notes (id bigserial PRIMARY KEY, body text);\n")
		f.write("seed/users.sql", "INSERT INTO app.users (name) VALUES ('bob');\n")
		files := f.load("db/20_base.ddl", "db/05_tasks.ddl", "db/30_notes.ddl")
		seeds := f.load("seed/users.sql")

		p := f.pending(files, seeds)
		equal(t, "changes", p.Changes, []schema.Change{{"db/05_tasks.ddl", "changed"}, {"db/30_notes.ddl", "added"}})
		if len(p.Seeds) != 0 || p.FirstInstall {
			t.Errorf("Pending = %+v; a changed seed must not run again", p)
		}
		res := f.apply(files, seeds, schema.ApplyOptions{Seq: 2, Host: "b"})
		equal(t, "Applied", res.Applied, []string{"db/05_tasks.ddl", "db/30_notes.ddl"})
		equal(t, "Seeded", res.Seeded, nil)
		equal(t, "users", f.query("SELECT name FROM app.users"), []string{"alice"})
		if !f.exists("app.notes") || f.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'tasks' AND column_name = 'done'")[0] != "1" {
			t.Error("changed/added files did not run")
		}
		if p := f.pending(files, seeds); !p.Empty() {
			t.Errorf("Pending after Apply = %+v", p)
		}
	})

	t.Run("syntax error names file and line, changes nothing", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, pg, "syntax")
		f.write("db/01_ok.ddl", "CREATE TABLE public.first_file (id int);\n")
		f.write("db/07_tasks.ddl", "-- tâches ✓ (multi-byte characters before the error)\n"+
			"CREATE TABLE public.second_file (id int);\n\n"+
			"/* a comment\n   over lines */\n"+
			"CRAETE TABLE broken (id int);\n")
		files := f.load("db/01_ok.ddl", "db/07_tasks.ddl")
		_, err := f.importer().Apply(ctx, files, nil, schema.ApplyOptions{Seq: 1, Host: "a"})
		var fe *schema.FileError
		if !errors.As(err, &fe) || fe.File != "db/07_tasks.ddl" || fe.Line != 6 {
			t.Fatalf("Apply error = %v (%#v), want a FileError for db/07_tasks.ddl line 6", err, fe)
		}
		if want := `db/07_tasks.ddl:6: ERROR: syntax error at or near "CRAETE" (SQLSTATE 42601)`; err.Error() != want {
			t.Errorf("error text\n got %s\nwant %s", err, want)
		}
		if f.exists("public.first_file") || f.exists("public.second_file") || f.history() != nil {
			t.Error("a failed Apply left tables or history behind")
		}

		// After an install, a failing file leaves the history as it was;
		// the error of an unknown relation has a position too.
		f.write("db/07_tasks.ddl", "CREATE TABLE public.second_file (id int);\n")
		f.apply(f.load("db/01_ok.ddl", "db/07_tasks.ddl"), nil, schema.ApplyOptions{Seq: 1, Host: "a"})
		f.write("db/08_more.ddl", "CREATE TABLE public.third (id int);\nALTER TABLE public.third\n  ADD COLUMN x int;\nINSERT INTO public.nope VALUES (1);\n")
		_, err = f.importer().Apply(ctx, f.load("db/01_ok.ddl", "db/07_tasks.ddl", "db/08_more.ddl"), nil, schema.ApplyOptions{Seq: 2, Host: "a"})
		if !errors.As(err, &fe) || fe.File != "db/08_more.ddl" || fe.Line != 4 || !strings.Contains(err.Error(), "42P01") {
			t.Fatalf("Apply error = %v, want db/08_more.ddl:4 undefined table", err)
		}
		if f.exists("public.third") || len(f.history()) != 2 {
			t.Errorf("failed Apply changed the database: third exists=%v history=%q", f.exists("public.third"), f.history())
		}
	})

	t.Run("transaction control in a file is refused", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, pg, "txcontrol")
		f.write("db/tx.ddl", "CREATE TABLE public.a (id int);\nCOMMIT;\n")
		_, err := f.importer().Apply(ctx, f.load("db/tx.ddl"), nil, schema.ApplyOptions{Seq: 1})
		var fe *schema.FileError
		if !errors.As(err, &fe) || fe.File != "db/tx.ddl" || fe.Line != 2 || !strings.Contains(err.Error(), "COMMIT") {
			t.Fatalf("Apply error = %v, want db/tx.ddl:2 COMMIT refused", err)
		}
		if f.exists("public.a") {
			t.Error("table created despite the refusal")
		}
	})

	t.Run("destructive change refused on data, allowed when asked", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, pg, "destructive")
		f.apply(f.load(appOrder...), f.load("seed/users.sql"), schema.ApplyOptions{Seq: 1, Host: "a"})

		f.write("db/20_base.ddl", appFiles["db/20_base.ddl"]+"CREATE INDEX users_name ON app.users (name);\n")
		f.write("db/05_tasks.ddl", appFiles["db/05_tasks.ddl"]+"ALTER TABLE app.tasks\n  DROP COLUMN title;\n")
		files, seeds := f.load(appOrder...), f.load("seed/users.sql")
		_, err := f.importer().Apply(ctx, files, seeds, schema.ApplyOptions{Seq: 2, Host: "a"})
		var de *schema.DestructiveError
		if !errors.As(err, &de) {
			t.Fatalf("Apply error = %v, want a DestructiveError", err)
		}
		equal(t, "findings", de.Findings, []schema.Finding{
			{File: "db/20_base.ddl", Line: 1, Statement: "DROP SCHEMA"},
			{File: "db/05_tasks.ddl", Line: 4, Statement: "ALTER TABLE ... DROP COLUMN"},
		})
		for _, want := range []string{"db/20_base.ddl:1: DROP SCHEMA", "db/05_tasks.ddl:4: ALTER TABLE ... DROP COLUMN",
			"schema.allowDestructive: true", "pg_dump", "app.users"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		equal(t, "users kept", f.query("SELECT name FROM app.users"), []string{"alice"})
		if len(f.history()) != 3 {
			t.Errorf("history changed: %q", f.history())
		}

		res := f.apply(files, seeds, schema.ApplyOptions{Seq: 2, Host: "a", AllowDestructive: true})
		equal(t, "Applied", res.Applied, appOrder)
		equal(t, "users after the allowed wipe", f.query("SELECT count(*) FROM app.users"), []string{"0"})
	})

	t.Run("first install over a database the old deployer filled", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, pg, "adopt")
		f.query("CREATE SCHEMA app; CREATE TABLE app.users (id uuid PRIMARY KEY, name text); INSERT INTO app.users VALUES (gen_random_uuid(), 'prod') RETURNING 1")
		files, seeds := f.load(appOrder...), f.load("seed/users.sql")
		if p := f.pending(files, seeds); !p.FirstInstall || len(p.Changes) != 2 {
			t.Errorf("Pending = %+v, want a first install", p)
		}
		_, err := f.importer().Apply(ctx, files, seeds, schema.ApplyOptions{Seq: 1, Host: "a"})
		var de *schema.DestructiveError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), "db/20_base.ddl:1: DROP SCHEMA") {
			t.Fatalf("Apply = %v, want the DROP SCHEMA refused", err)
		}
		equal(t, "production rows", f.query("SELECT name FROM app.users"), []string{"prod"})
		if f.history() != nil {
			t.Errorf("history created by a refused Apply: %q", f.history())
		}
	})

	t.Run("a blocked statement fails after lock_timeout", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, pg, "lock_timeout")
		f.apply(f.load(appOrder...), nil, schema.ApplyOptions{Seq: 1, Host: "a"})
		conn, err := pgx.Connect(ctx, f.url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "LOCK TABLE app.users IN ACCESS SHARE MODE"); err != nil {
			t.Fatal(err)
		}
		f.write("db/40_alter.ddl", "-- needs an exclusive lock\nALTER TABLE app.users ADD COLUMN email text;\n")
		im := f.importer()
		im.LockTimeout = 200 * time.Millisecond
		began := time.Now()
		_, err = im.Apply(ctx, f.load("db/20_base.ddl", "db/05_tasks.ddl", "db/40_alter.ddl"), nil, schema.ApplyOptions{Seq: 2, Host: "a"})
		var fe *schema.FileError
		if !errors.As(err, &fe) || fe.File != "db/40_alter.ddl" || !strings.Contains(err.Error(), "55P03") {
			t.Fatalf("Apply = %v, want db/40_alter.ddl failing with lock_not_available", err)
		}
		if d := time.Since(began); d > 10*time.Second {
			t.Errorf("Apply took %s despite a 200ms lock_timeout", d)
		}
	})

	t.Run("concurrent importers apply once", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, pg, "concurrent")
		f.write("db/05_tasks.ddl", appFiles["db/05_tasks.ddl"]+"SELECT pg_sleep(0.3);\n")
		files, seeds := f.load(appOrder...), f.load("seed/users.sql")
		var (
			wg      sync.WaitGroup
			results [2]schema.Result
			errs    [2]error
		)
		for i := range 2 {
			wg.Go(func() {
				results[i], errs[i] = f.importer().Apply(ctx, files, seeds, schema.ApplyOptions{Seq: 3, Host: []string{"web-1", "web-2"}[i]})
			})
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("Apply errors: %v, %v", errs[0], errs[1])
		}
		if results[0].AlreadyDone == results[1].AlreadyDone {
			t.Fatalf("results %+v and %+v: want exactly one AlreadyDone", results[0], results[1])
		}
		done := results[0]
		if done.AlreadyDone {
			done = results[1]
		}
		equal(t, "Applied", done.Applied, appOrder)
		if n := len(f.history()); n != 3 {
			t.Errorf("history has %d rows, want 3: %q", n, f.history())
		}
		equal(t, "users", f.query("SELECT name FROM app.users"), []string{"alice"})
	})

	t.Run("dump, destructive change, restore", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, pg, "dump_restore")
		f.apply(f.load(appOrder...), f.load("seed/users.sql"), schema.ApplyOptions{Seq: 1, Host: "a"})
		f.query("INSERT INTO app.tasks (owner, title) SELECT id, 'write tests' FROM app.users RETURNING id")

		dump := filepath.Join(t.TempDir(), "pre-2.sql")
		if err := f.importer().Dump(ctx, []string{"app"}, dump); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(dump); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("dump file: %v, %v; want mode 0600", fi, err)
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dump), ".*.tmp")); len(left) != 0 {
			t.Errorf("temporary files left: %v", left)
		}

		f.write("db/20_base.ddl", appFiles["db/20_base.ddl"]+"-- v2\n")
		files := f.load(appOrder...)
		f.apply(files, nil, schema.ApplyOptions{Seq: 2, Host: "a", AllowDestructive: true})
		equal(t, "users after the wipe", f.query("SELECT count(*) FROM app.users"), []string{"0"})
		equal(t, "history seqs", f.query("SELECT seq FROM cohuron_agent.schema_history ORDER BY id"), []string{"1", "1", "1", "2"})

		if err := f.importer().Restore(ctx, []string{"app"}, dump, 2); err != nil {
			t.Fatal(err)
		}
		equal(t, "users restored", f.query("SELECT name FROM app.users"), []string{"alice"})
		equal(t, "tasks restored", f.query("SELECT title FROM app.tasks"), []string{"write tests"})
		equal(t, "history seqs", f.query("SELECT seq FROM cohuron_agent.schema_history ORDER BY id"), []string{"1", "1", "1"})
		equal(t, "pending after restore", f.pending(files, nil).Changes, []schema.Change{{"db/20_base.ddl", "changed"}})

		// A failing restore changes nothing.
		bad := filepath.Join(t.TempDir(), "bad.sql")
		if err := os.WriteFile(bad, []byte("CREATE SCHEMA app;\nCRAETE;\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := f.importer().Restore(ctx, []string{"app"}, bad, 1); err == nil || !strings.Contains(err.Error(), "CRAETE") {
			t.Errorf("Restore of a broken dump = %v, want the psql error", err)
		}
		equal(t, "users after failed restore", f.query("SELECT name FROM app.users"), []string{"alice"})
		equal(t, "history after failed restore", f.query("SELECT count(*) FROM cohuron_agent.schema_history"), []string{"3"})
	})

	t.Run("dump before the first import, restore drops the schema", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, pg, "dump_first")
		dump := filepath.Join(t.TempDir(), "pre-1.sql")
		if err := f.importer().Dump(ctx, []string{"app"}, dump); err != nil {
			t.Fatalf("dumping a schema that does not exist yet: %v", err)
		}
		f.apply(f.load(appOrder...), f.load("seed/users.sql"), schema.ApplyOptions{Seq: 1, Host: "a"})
		if err := f.importer().Restore(ctx, []string{"app"}, dump, 1); err != nil {
			t.Fatal(err)
		}
		equal(t, "schema app after restore", f.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'app'"), []string{"0"})
		equal(t, "history after restore", f.query("SELECT count(*) FROM cohuron_agent.schema_history"), []string{"0"})
	})

	t.Run("password never in errors or command lines", func(t *testing.T) {
		t.Parallel()
		const secret = "Sup3rS3cretPW"
		im := &schema.Importer{
			URL: "postgres://postgres:" + secret + "@127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) + "/nope?sslmode=disable&connect_timeout=2",
			Now: func() time.Time { return clock },
			Env: []string{"PATH=/usr/bin:/bin"},
			Bin: pg.Bin,
		}
		file := schema.File{Name: "a.ddl", SHA256: strings.Repeat("0", 64)}
		_, err1 := im.Pending(ctx, []schema.File{file}, nil)
		_, err2 := im.Apply(ctx, []schema.File{file}, nil, schema.ApplyOptions{})
		err3 := im.Dump(ctx, []string{"app"}, filepath.Join(t.TempDir(), "d.sql"))
		dump := filepath.Join(t.TempDir(), "r.sql")
		os.WriteFile(dump, nil, 0o600)
		err4 := im.Restore(ctx, []string{"app"}, dump, 1)
		for i, err := range []error{err1, err2, err3, err4} {
			if err == nil {
				t.Errorf("call %d: no error connecting to a closed port", i+1)
			} else if t.Logf("call %d: %v", i+1, err); strings.Contains(err.Error(), secret) {
				t.Errorf("call %d: error shows the password: %v", i+1, err)
			}
		}
	})
}

func TestLoad(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "db"), 0o755)
	os.WriteFile(filepath.Join(root, "db", "a.ddl"), []byte("SELECT 1;\n"), 0o644)
	os.Symlink("a.ddl", filepath.Join(root, "db", "link.ddl"))
	os.Symlink("db", filepath.Join(root, "dblink"))
	os.MkdirAll(filepath.Join(root, "db", "dir.ddl"), 0o755)

	files, err := schema.Load(root, []string{"db/a.ddl"})
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256([]byte("SELECT 1;\n")); files[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("SHA256 = %q", files[0].SHA256)
	}
	if want := filepath.Join(root, "db", "a.ddl"); files[0].Path != want || files[0].Name != "db/a.ddl" {
		t.Errorf("Load = %+v, want Path %s", files[0], want)
	}

	for _, tc := range []struct {
		names []string
		want  string
	}{
		{[]string{"db/missing.ddl"}, "no such file"},
		{[]string{"db/link.ddl"}, "symlink"},
		{[]string{"dblink/a.ddl"}, "symlink"},
		{[]string{"db/dir.ddl"}, "not a regular file"},
		{[]string{"../etc/passwd"}, "relative path inside"},
		{[]string{"/etc/passwd"}, "relative path inside"},
		{[]string{"db//a.ddl"}, "not clean"},
		{[]string{"./db/a.ddl"}, "not clean"},
		{[]string{""}, "empty"},
		{[]string{"db/a.ddl", "db/a.ddl"}, "listed twice"},
	} {
		_, err := schema.Load(root, tc.names)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q) = %v, want an error containing %q", tc.names, err, tc.want)
		}
	}
	if _, err := schema.Load(root, []string{"db/missing.ddl"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file error %v does not match fs.ErrNotExist", err)
	}
}
