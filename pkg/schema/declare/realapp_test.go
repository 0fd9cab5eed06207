package declare_test

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/schema"
	"github.com/cohuron/deploy/pkg/schema/declare"
)

// replayCommits is how many of the last commits of the real app's main
// that touch db/ TestRealAppHistory deploys, in order.
const replayCommits = 30

// userTables get a row written by "users" between deploys.
var userTables = []string{"project", "task", "person"}

// TestRealAppHistory deploys the last commits of the real app that touch
// db/, one after the other, against one database: the first imported as
// a first install (the files' rows loaded), each next one imported into a
// shadow, diffed against live and applied. Between deploys users write
// rows and delete a seeded one. A deploy the diff refuses is deployed
// again with the declaration the refusal names (as an operator would add
// it to the manifest). No user row may be lost, the deleted one must stay
// deleted.
func TestRealAppHistory(t *testing.T) {
	order := testenv.AppSchemaOrder(t)
	clone := testenv.AppClone(t)
	log := strings.Fields(testenv.Run(t, clone, testenv.GitEnv(""), "git", "log", "--format=%h", fmt.Sprintf("-%d", replayCommits), "main", "--", "db/"))
	slices.Reverse(log)

	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	liveURL := pg.CreateAppDB(t)
	live := openDB(t, liveURL)
	imp := &schema.Importer{URL: liveURL, Env: []string{"PATH=/usr/bin:/bin"}, Bin: pg.Bin}
	opt := declare.Options{Schemas: []string{"app"}, Renames: map[string]string{}}
	written, marker := map[string]int{}, map[string]string{}
	deleted := ""
	var declared []string
	for i, commit := range log {
		root := testenv.AppTree(t, clone, commit, "db", "tools")
		files, err := schema.Load(root, importOrder(t, root, order))
		if err != nil {
			t.Fatalf("%s: %v", commit, err)
		}
		if i == 0 {
			res, err := imp.Import(ctx, files, schema.ShadowOptions{Host: "replay"})
			if err != nil {
				t.Fatalf("first install of %s: %v", commit, err)
			}
			t.Logf("%s: first install, %d files, %d statements failed", commit, len(files), len(res.Failed()))
		} else {
			var p *declare.Plan
			for attempt := 0; ; attempt++ {
				_, err := imp.Shadow(ctx, files, schema.ShadowOptions{Host: "replay"}, func(ctx context.Context, u string) error {
					shadow, err := sql.Open("pgx", u)
					if err != nil {
						return err
					}
					defer shadow.Close()
					p, err = declare.Diff(ctx, live, shadow, opt)
					return err
				})
				if err != nil {
					t.Fatalf("%s: %v", commit, err)
				}
				if len(p.Refused) == 0 {
					break
				}
				if attempt == 3 {
					// A declared rename may show what the renamed table's
					// columns need; more rounds than that mean no end.
					t.Fatalf("%s: still refused with the declarations: %v", commit, p.Err())
				}
				for _, r := range p.Refused {
					for _, ut := range userTables {
						if r.Object == "app."+ut {
							t.Fatalf("%s: the files drop table %s, which holds user rows: %v", commit, r.Object, r)
						}
					}
					// As an operator would: the rename the refusal suggests,
					// else the drop.
					if r.Rename != "" {
						t.Logf("%s: refused %s; declared in schema.renames", commit, r)
						opt.Renames[r.Object] = r.Rename
						declared = append(declared, commit+": renames "+r.Object+" -> "+r.Rename)
					} else {
						t.Logf("%s: refused %s; declared in schema.drops", commit, r)
						opt.Drops = append(opt.Drops, r.Object)
						declared = append(declared, commit+": drops "+r.Object)
					}
				}
			}
			if err := declare.Apply(ctx, live, p, 0); err != nil {
				t.Fatalf("%s: %v", commit, err)
			}
			t.Logf("%s: %d statements applied", commit, len(p.Statements))
		}
		// Users at work.
		for _, ut := range userTables {
			if col := insertUserRow(t, live, ut, fmt.Sprintf("cohuron-user-%s-%d", ut, i)); col != "" {
				written[ut]++
				marker[ut] = col
			}
		}
		if deleted == "" {
			if err := live.QueryRow(`DELETE FROM app.task WHERE id = (SELECT id FROM app.task WHERE name NOT LIKE 'cohuron-user-%' ORDER BY id LIMIT 1) RETURNING id::text`).Scan(&deleted); err != nil {
				t.Fatalf("deleting a seeded task: %v", err)
			}
		}
		for ut, n := range written {
			if got := count(t, live, fmt.Sprintf("SELECT count(*) FROM app.%s WHERE %s LIKE 'cohuron-user-%%'", ut, marker[ut])); got != n {
				t.Fatalf("after %s: app.%s has %d user rows, want %d", commit, ut, got, n)
			}
		}
		if got := count(t, live, fmt.Sprintf("SELECT count(*) FROM app.task WHERE id::text = '%s'", deleted)); got != 0 {
			t.Fatalf("after %s: the deleted task %s is back", commit, deleted)
		}
	}
	deploys := map[string]bool{}
	for _, d := range declared {
		c, _, _ := strings.Cut(d, ":")
		deploys[c] = true
	}
	t.Logf("%d deploys, %d of them needed %d declarations:\n%s\nuser rows kept: %v", len(log), len(deploys), len(declared), strings.Join(declared, "\n"), written)
}

// insertUserRow writes a row marked name into app.table (its name
// column, else its code column), when the table exists and takes a row
// with only that; it returns the column, or "" when it wrote nothing.
func insertUserRow(t *testing.T, db *sql.DB, table, name string) string {
	t.Helper()
	for _, col := range []string{"name", "code"} {
		var exists bool
		db.QueryRow(`SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'app' AND table_name = $1 AND column_name = $2)`, table, col).Scan(&exists)
		if !exists {
			continue
		}
		if _, err := db.Exec(fmt.Sprintf("INSERT INTO app.%s (%s) VALUES ($1)", table, col), name); err != nil {
			t.Fatalf("a user's row in app.%s: %v", table, err)
		}
		return col
	}
	return ""
}

// importOrder is the order the commit's own tools/db-import.sh imports
// in (the files of it that exist), as the manifest of that release would
// list it; without one, orderFor with main's list.
func importOrder(t testing.TB, root string, mainOrder []string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "tools/db-import.sh"))
	var names []string
	for _, n := range testenv.ImportScriptOrder(data) {
		if _, err := os.Stat(filepath.Join(root, n)); err == nil {
			names = append(names, n)
		}
	}
	if err != nil || len(names) == 0 {
		return orderFor(t, root, mainOrder)
	}
	return names
}

// orderFor is the import order at root: the listed files it has, then
// the other .ddl and .sql files under db/ in path order.
func orderFor(t testing.TB, root string, listed []string) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for _, n := range listed {
		if _, err := os.Stat(filepath.Join(root, n)); err == nil {
			out = append(out, n)
			seen[n] = true
		}
	}
	var rest []string
	filepath.WalkDir(filepath.Join(root, "db"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if (strings.HasSuffix(rel, ".ddl") || strings.HasSuffix(rel, ".sql")) && !seen[rel] {
			rest = append(rest, rel)
		}
		return nil
	})
	slices.Sort(rest)
	return append(out, rest...)
}
