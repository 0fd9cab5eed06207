package declare_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/schema"
	"github.com/cohuron/deploy/pkg/schema/declare"
)

// BenchmarkColumnAdd adds one column to one real DDL file of the real app
// (db/11_project.ddl at main) and brings a database to it two ways, in
// the same run, on the same server: the agent (declare.Converge: the
// shadow import, the diff, one transaction) on a database users wrote to,
// and the old deployer's way, the app's own tools/db-import.sh (drop
// schema app, import everything). Reported as a ratio; the agent's
// database keeps its rows, the old way's keeps none of them.
func BenchmarkColumnAdd(b *testing.B) {
	root := testenv.AppTree(b, testenv.AppClone(b), "main", "db", "tools")
	order := importOrder(b, root, nil)
	projectFile := filepath.Join(root, "db/11_project.ddl")
	base, err := os.ReadFile(projectFile)
	if err != nil {
		b.Fatal(err)
	}
	const anchor = "    code varchar(50),\n"
	if !strings.Contains(string(base), anchor) {
		b.Fatalf("db/11_project.ddl at main has no line %q to add a column after", anchor)
	}

	// PostgreSQL's default durability, as the app's db container runs:
	// each commit waits for the disk, for both ways alike.
	pg := testenv.StartPostgresOpts(b, testenv.PostgresOptions{Durable: true})
	oldURL := pg.CreateAppDB(b) // database app, role app: what db-import.sh expects
	admin := openDB(b, pg.URL)
	if _, err := admin.Exec(`CREATE DATABASE agentdb OWNER app`); err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(oldURL)
	u.Path = "/agentdb"
	agentURL := u.String()
	imp := &schema.Importer{URL: agentURL, Env: []string{"PATH=" + pg.Bin + ":/usr/bin:/bin"}, Bin: pg.Bin}
	ctx := context.Background()
	converge := func(seq uint64) *declare.Result {
		files, err := schema.Load(root, order)
		if err != nil {
			b.Fatal(err)
		}
		res, err := declare.Converge(ctx, declare.Request{Importer: imp, Files: files, Options: declare.Options{Schemas: []string{"app"}},
			Host: "bench", Digest: fmt.Sprintf("bench-%d", seq), Seq: seq, Now: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		return res
	}
	oldImport := func() {
		c := exec.Command("bash", filepath.Join(root, "tools/db-import.sh"))
		c.Dir = root
		c.Env = []string{"PATH=" + pg.Bin + ":/usr/bin:/bin", "HOME=" + b.TempDir(), "DB_HOST=127.0.0.1", fmt.Sprint("DB_PORT=", pg.Port),
			"DB_USER=app", "DB_PASSWORD=app", "DB_NAME=app"}
		if out, err := c.CombinedOutput(); err != nil {
			b.Fatalf("tools/db-import.sh: %v\n%s", err, out)
		}
	}
	converge(0) // first install
	oldImport() // the old deployer's database, as it last left it
	live := openDB(b, agentURL)
	if _, err := live.Exec(`INSERT INTO app.project (code, name) VALUES ('USER-1', 'a user''s project')`); err != nil {
		b.Fatal(err)
	}
	projects := count(b, live, "SELECT count(*) FROM app.project")

	var agent, old time.Duration
	b.ResetTimer()
	for i := range b.N {
		var cols strings.Builder
		for j := 0; j <= i; j++ {
			fmt.Fprintf(&cols, "    bench_note_%d text,\n", j)
		}
		if err := os.WriteFile(projectFile, []byte(strings.Replace(string(base), anchor, anchor+cols.String(), 1)), 0o644); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res := converge(uint64(i + 1))
		agent += time.Since(start)
		if len(res.Statements) != 1 || !strings.Contains(res.Statements[0].SQL, fmt.Sprintf(`ADD COLUMN "bench_note_%d"`, i)) {
			b.Fatalf("the agent ran %v, want the one column added", res.Statements)
		}
		start = time.Now()
		oldImport()
		old += time.Since(start)
	}
	b.StopTimer()
	if got := count(b, live, "SELECT count(*) FROM app.project"); got != projects {
		b.Fatalf("the agent's database has %d projects, had %d", got, projects)
	}
	b.ReportMetric(agent.Seconds()/float64(b.N), "agent-s")
	b.ReportMetric(old.Seconds()/float64(b.N), "db-import.sh-s")
	b.ReportMetric(agent.Seconds()/old.Seconds(), "x-old")
	b.Logf("one column added to db/11_project.ddl: agent %.2f s (shadow import, diff, apply; %d rows kept), tools/db-import.sh %.2f s (every row replaced): %.2f×",
		agent.Seconds()/float64(b.N), projects, old.Seconds()/float64(b.N), agent.Seconds()/old.Seconds())
}
