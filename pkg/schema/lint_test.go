package schema

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/cohuron/deploy/internal/testenv"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestDestructive(t *testing.T) {
	for _, tc := range []struct {
		name, sql string
		want      []string // "line: statement"
	}{
		{"drop schema", "DROP SCHEMA IF EXISTS app CASCADE;", []string{"1: DROP SCHEMA"}},
		{"lower case", "drop table app.users;", []string{"1: DROP TABLE"}},
		{"mixed case and newlines", "\n\nDrOp\n\t  TaBlE\nx;", []string{"3: DROP TABLE"}},
		{"comment between words", "DROP /* not here */ -- nor here\n TABLE x;", []string{"1: DROP TABLE"}},
		{"drop database", "DROP DATABASE cohuron;", []string{"1: DROP DATABASE"}},
		{"drop owned", "DROP OWNED BY app_user;", []string{"1: DROP OWNED"}},
		{"truncate", "SELECT 1;\nTRUNCATE app.tasks, app.users;", []string{"2: TRUNCATE"}},
		{"truncate table restart", "truncate table only app.tasks restart identity;", []string{"1: TRUNCATE"}},
		{"drop column", "ALTER TABLE app.users\n  DROP COLUMN email;", []string{"2: ALTER TABLE ... DROP COLUMN"}},
		{"drop column without COLUMN", "ALTER TABLE app.users DROP IF EXISTS email, ADD x int;", []string{"1: ALTER TABLE ... DROP COLUMN"}},
		{"drop quoted column", `ALTER TABLE ONLY app.users DROP "Email";`, []string{"1: ALTER TABLE ... DROP COLUMN"}},
		{"several", "DROP TABLE a;\n-- DROP TABLE b;\nTRUNCATE c;\nDROP SCHEMA d;", []string{"1: DROP TABLE", "3: TRUNCATE", "4: DROP SCHEMA"}},
		{"dollar-quoted function body", "CREATE FUNCTION f() RETURNS void AS $fn$\nBEGIN\n  TRUNCATE app.log;\nEND\n$fn$ LANGUAGE plpgsql;", []string{"3: TRUNCATE"}},
		{"DO block with $$", "DO $$\nBEGIN\n  EXECUTE 'x';\n  DROP TABLE old_stuff;\nEND $$;", []string{"4: DROP TABLE"}},
		{"nested dollar quotes", "DO $a$ BEGIN PERFORM $b$ text $b$; DROP SCHEMA s; END $a$;", []string{"1: DROP SCHEMA"}},

		// Not destructive.
		{"drop index", "DROP INDEX IF EXISTS app.tasks_idx;", nil},
		{"drop view function type", "DROP VIEW v; DROP FUNCTION f(); DROP TRIGGER t ON x; DROP POLICY p ON x;", nil},
		{"identifier containing drop", "CREATE TABLE dropped_tables (drop_table text, truncated bool);", nil},
		{"string", "INSERT INTO log VALUES ('DROP TABLE x');", nil},
		{"string with doubled quote", "SELECT 'it''s; DROP TABLE x';", nil},
		{"escape string", `SELECT E'it\'s DROP TABLE x', E'\\';`, nil},
		{"escape string lower e", `select e'\' drop schema s';`, nil},
		{"quoted identifier", `CREATE TABLE "drop table x" (id int);`, nil},
		{"line comment", "-- DROP SCHEMA app CASCADE\nCREATE SCHEMA app;", nil},
		{"nested block comment", "/* outer /* inner */ DROP TABLE still_comment */ SELECT 1;", nil},
		{"alter column drop default", "ALTER TABLE t ALTER COLUMN c DROP DEFAULT, ALTER c DROP NOT NULL;", nil},
		{"alter table drop constraint", "ALTER TABLE t DROP CONSTRAINT t_pkey;", nil},
		{"alter other drop", "ALTER TABLE t ADD c int; DROP INDEX i;", nil},
		{"truncate trigger", "CREATE TRIGGER t AFTER TRUNCATE ON x FOR EACH STATEMENT EXECUTE FUNCTION f();\nCREATE TRIGGER u BEFORE INSERT OR TRUNCATE ON x EXECUTE FUNCTION f();", nil},
		{"grant truncate", "GRANT SELECT, TRUNCATE ON app.t TO r; REVOKE TRUNCATE ON app.t FROM r;", nil},
		{"on commit drop", "CREATE TEMP TABLE tmp (id int) ON COMMIT DROP;", nil},
		{"positional parameter", "PREPARE p AS SELECT $1; DROP INDEX i;", nil},
		{"bit and hex strings", "SELECT B'1010', X'DROP', N'DROP TABLE t', U&'DROP TABLE t';", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, f := range Destructive("db/x.ddl", tc.sql) {
				if f.File != "db/x.ddl" {
					t.Errorf("finding names file %q", f.File)
				}
				got = append(got, fmt.Sprintf("%d: %s", f.Line, f.Statement))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Destructive(%q)\n got %q\nwant %q", tc.sql, got, tc.want)
			}
		})
	}
}

func TestTransactionControl(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want []string
	}{
		{"BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;", []string{"1: BEGIN", "3: COMMIT"}},
		{"start transaction; select 1; end;", []string{"1: START TRANSACTION", "1: END"}},
		{"SELECT 1;\n  rollback;", []string{"2: ROLLBACK"}},
		{"DO $$ BEGIN PERFORM 1; END $$;", nil},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT CASE WHEN true THEN 1 END;\nEND;\nSELECT 2;", nil},
		{"CREATE TEMP TABLE x (id int) ON COMMIT DROP;", nil},
		{"PREPARE q AS SELECT 1; -- COMMIT;\n/* BEGIN; */ SELECT 'COMMIT';", nil},
		{"PREPARE TRANSACTION 'x';", []string{"1: PREPARE TRANSACTION"}},
	} {
		var got []string
		for _, f := range transactionControl("f.sql", tc.sql) {
			got = append(got, fmt.Sprintf("%d: %s", f.Line, f.Statement))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("transactionControl(%q)\n got %q\nwant %q", tc.sql, got, tc.want)
		}
	}
}

func TestLineOfChar(t *testing.T) {
	text := "-- é✓ ü\nSELECT 1;\nCRAETE x;"
	pos := len([]rune("-- é✓ ü\nSELECT 1;\n")) + 1 // the C of CRAETE
	if got := lineOfChar(text, pos); got != 3 {
		t.Errorf("lineOfChar = %d, want 3", got)
	}
	if got := lineOfChar(text, 1); got != 1 {
		t.Errorf("lineOfChar(1) = %d, want 1", got)
	}
	if got := lineOfChar(text, 1000); got != 3 {
		t.Errorf("lineOfChar(past end) = %d, want 3", got)
	}
}

func TestLockKey(t *testing.T) {
	sum := sha256.Sum256([]byte("cohuron-agent schema"))
	if want := int64(binary.BigEndian.Uint64(sum[:8])); LockKey != want {
		t.Errorf("LockKey = %d, want %d", LockKey, want)
	}
}

func TestSplitPassword(t *testing.T) {
	for _, tc := range []struct{ in, rest, pw string }{
		{"postgres://app:s3cr%40t@db:5432/cohuron?sslmode=require", "postgres://app@db:5432/cohuron?sslmode=require", "s3cr@t"},
		{"postgresql://app@db/cohuron", "postgresql://app@db/cohuron", ""},
		{"postgres://app:pw@h1:5432,h2:5433/db", "postgres://app@h1:5432,h2:5433/db", "pw"},
		{"postgres://db/x?password=hunter2&sslmode=disable", "postgres://db/x?sslmode=disable", "hunter2"},
		{"host=db user=app password='it\\'s' dbname=x", "host=db user=app dbname=x", "it's"},
		{"host=db password=plain user=app", "host=db user=app", "plain"},
	} {
		rest, pw, err := splitPassword(tc.in)
		if err != nil || rest != tc.rest || pw != tc.pw {
			t.Errorf("splitPassword(%q) = %q, %q, %v; want %q, %q", tc.in, rest, pw, err, tc.rest, tc.pw)
		}
		if strings.Contains(redactURL(tc.in), tc.pw) && tc.pw != "" {
			t.Errorf("redactURL(%q) keeps the password", tc.in)
		}
	}
}

func TestFileErrorTransient(t *testing.T) {
	for code, want := range map[string]bool{
		"42601": false, // syntax error: the file
		"42P01": false, // undefined table: the file
		"23505": false, // unique violation: the file (or its data)
		"55P03": true,  // lock not available: lock_timeout
		"40P01": true,  // deadlock
		"57014": true,  // query canceled (statement timeout)
		"08006": true,  // connection failure
		"53100": true,  // disk full
	} {
		e := &FileError{File: "db/x.ddl", Line: 1, Err: &pgconn.PgError{Code: code}}
		if got := e.Transient(); got != want {
			t.Errorf("SQLSTATE %s: Transient() = %v, want %v", code, got, want)
		}
	}
	if !(&FileError{File: "db/x.ddl", Err: errors.New("conn closed")}).Transient() {
		t.Error("an error without a server verdict is not transient")
	}
	// The real app's db/17_inventory.ddl:52 (an END of a function body the
	// splitter sees as transaction control): refused by the agent, so the
	// release is broken, not the database (it was retried every poll).
	if (&FileError{File: "db/17_inventory.ddl", Line: 52, Refused: true, Err: errors.New("END: files must not control transactions")}).Transient() {
		t.Error("a file the agent refuses for what it says is transient")
	}
}

// TestRealAppTransactionControl: the file the agent refused on the real
// app is refused with its line, as a file the agent will not run (exit 4,
// known bad), not as a database fault retried every poll.
func TestRealAppTransactionControl(t *testing.T) {
	text := string(testenv.AppFile(t, "main", "db/17_inventory.ddl"))
	tc := transactionControl("db/17_inventory.ddl", text)
	if len(tc) == 0 {
		t.Fatal("db/17_inventory.ddl: no statement taken for transaction control; the agent refused the real app at line 52")
	}
	if tc[0].Line != 52 {
		t.Errorf("first transaction control at line %d, want 52 (%q)", tc[0].Line, tc[0].Statement)
	}
}

// In the live database app, app.app.t is app.t; the shadow is named
// otherwise, so the files' three-part names lose the database's part —
// and nothing inside literals, comments, bodies or longer names does.
func TestAsDatabase(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"SELECT array_agg(id) INTO v_ids FROM app.app.product;", "SELECT array_agg(id) INTO v_ids FROM app.product;"},
		{"INSERT INTO APP . app.\"Office\" VALUES (1)", "INSERT INTO  app.\"Office\" VALUES (1)"},
		{"CREATE TABLE IF NOT EXISTS app.app.t (id int REFERENCES app.app.u)", "CREATE TABLE IF NOT EXISTS app.t (id int REFERENCES app.u)"},
		{"SELECT 'app.app.x', \"app\".app.x -- app.app.x\n", "SELECT 'app.app.x', \"app\".app.x -- app.app.x\n"},
		{"DO $$ BEGIN PERFORM 1 FROM app.app.x; END $$;", "DO $$ BEGIN PERFORM 1 FROM app.app.x; END $$;"},
		// Columns: schema.table.column, and db.schema.table.column.
		{"SELECT app.app.x, app.app.t.c, a.app.app.x FROM app.app", "SELECT app.app.x, app.app.t.c, a.app.app.x FROM app.app"},
	} {
		if got := asDatabase(c.in, "app"); got != c.want {
			t.Errorf("asDatabase(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
	if got := asDatabase("SELECT 1 FROM App.app.x", "App"); got != "SELECT 1 FROM App.app.x" {
		t.Errorf("a database name with capitals (only quoted it names it) was rewritten: %q", got)
	}
}
