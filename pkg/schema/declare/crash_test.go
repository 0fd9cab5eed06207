package declare_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/schema"
	"github.com/cohuron/deploy/pkg/schema/declare"
)

// TestMain makes the test binary TestKill9's child when $DECLARE_CRASH_AT
// is set: it converges the files at $DECLARE_DIR and is SIGKILLed at that
// point (exit 1 if it gets past it).
func TestMain(m *testing.M) {
	if point := os.Getenv("DECLARE_CRASH_AT"); point != "" {
		_, err := convergeFiles(os.Getenv("DECLARE_URL"), os.Getenv("DECLARE_DIR"), os.Getenv("DECLARE_BIN"), func(p string) {
			if p == point {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		})
		fmt.Fprintf(os.Stderr, "not killed at %s: %v\n", point, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func convergeFiles(url, dir, bin string, crash func(string)) (*declare.Result, error) {
	files, err := schema.Load(dir, []string{"db/01.ddl", "db/02.ddl"})
	if err != nil {
		return nil, err
	}
	imp := &schema.Importer{URL: url, Env: []string{"PATH=" + bin + ":/usr/bin:/bin"}, Bin: bin}
	return declare.Converge(context.Background(), declare.Request{Importer: imp, Files: files, Options: declare.Options{Schemas: []string{"app"}},
		Host: "crash-test", Digest: "v2", Seq: 2, Now: time.Now(), Crash: crash})
}

func converge(t *testing.T, url, dir, bin string, crash func(string)) *declare.Result {
	t.Helper()
	res, err := convergeFiles(url, dir, bin, crash)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// kill -9 with the shadow imported, after the diff, and with every
// statement run but not committed: the live database is wholly old, a
// shadow left behind is dropped by the next run, which converges.
func TestKill9(t *testing.T) {
	pg := testenv.StartPostgres(t)
	for _, point := range declare.CrashPoints {
		t.Run(point, func(t *testing.T) {
			url := pg.CreateDB(t, strings.ReplaceAll(point, "-", "_"))
			dir := t.TempDir()
			write := func(v2 bool) {
				task := "CREATE TABLE app.task (id int PRIMARY KEY, name text);\n"
				if v2 {
					task = "CREATE TABLE app.task (id int PRIMARY KEY, name text, priority text DEFAULT 'normal');\nCREATE INDEX task_name ON app.task (name);\n"
				}
				testenv.WriteFiles(t, dir, map[string]string{"db/01.ddl": "CREATE SCHEMA IF NOT EXISTS app;\n", "db/02.ddl": task})
			}
			write(false)
			live := openDB(t, url)
			execSQL(t, live, "CREATE SCHEMA app; CREATE TABLE app.task (id int PRIMARY KEY, name text); INSERT INTO app.task VALUES (1, 'a user''s task')")
			write(true)

			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "DECLARE_CRASH_AT="+point, "DECLARE_URL="+url, "DECLARE_DIR="+dir, "DECLARE_BIN="+pg.Bin)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the child was not killed at %s: %v\n%s", point, err, out)
			}
			if n := count(t, live, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'app' AND table_name = 'task' AND column_name = 'priority'"); n != 0 {
				t.Fatalf("killed at %s: the live database has the new column (half applied)", point)
			}
			// Killed while the shadow exists, it stays behind; after the
			// diff it was already dropped.
			want := 0
			if point == "schema-shadow-imported" {
				want = 1
			}
			if n := count(t, live, "SELECT count(*) FROM pg_database WHERE datname LIKE 'cohuron_shadow_%'"); n != want {
				t.Fatalf("killed at %s: %d shadow databases, want %d", point, n, want)
			}
			res := converge(t, url, dir, pg.Bin, nil)
			if len(res.Statements) != 2 {
				t.Fatalf("after the crash: %v, want the column and the index", res.Statements)
			}
			if n := count(t, live, "SELECT count(*) FROM app.task WHERE priority = 'normal'"); n != 1 {
				t.Fatalf("after the crash and a converge, app.task has %d rows with the new column, want the user's 1", n)
			}
			if n := count(t, live, "SELECT count(*) FROM pg_database WHERE datname LIKE 'cohuron_shadow_%'"); n != 0 {
				t.Fatalf("after the next converge %d shadow databases are left", n)
			}
		})
	}
}

// Hosts sharing a database: the second to get the lock finds the digest
// recorded and runs nothing.
func TestAlreadyDoneByAnotherHost(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.CreateDB(t, "shared")
	dir := t.TempDir()
	testenv.WriteFiles(t, dir, map[string]string{"db/01.ddl": "CREATE SCHEMA IF NOT EXISTS app;\n", "db/02.ddl": "CREATE TABLE app.task (id int PRIMARY KEY, name text, priority text);\n"})
	live := openDB(t, url)
	execSQL(t, live, "CREATE SCHEMA app; CREATE TABLE app.task (id int PRIMARY KEY, name text)")
	if res := converge(t, url, dir, pg.Bin, nil); res.AlreadyDone || len(res.Statements) != 1 {
		t.Fatalf("first host: %+v, want the column added", res)
	}
	if res := converge(t, url, dir, pg.Bin, nil); !res.AlreadyDone || len(res.Statements) != 0 {
		t.Fatalf("second host: %+v, want already done", res)
	}
}
