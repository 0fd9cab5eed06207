package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/agent"
)

// TestCrashAtEveryPoint kills the agent (SIGKILL) at every journal point
// of a code-change converge, then starts it again: the host must end
// wholly on one release (the new one here, since the release is good):
// the root, the answering version, no journal left, status not "in
// progress". For rolling-back, the release is bad: the host must end on
// the old release with the bad one known.
func TestCrashAtEveryPoint(t *testing.T) {
	for _, point := range agent.CrashPoints {
		if point == "composing" || point == "importing" {
			continue // the sample has no compose or schema: TestFullCrash
		}
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			h := newBenchHost(t)
			h.publish(true)
			h.run("agent", "once", "--config", "agent.yaml")
			if !strings.Contains(h.health(), `"version":"1.0.0"`) {
				t.Fatalf("v1 not serving: %q", h.health())
			}
			want := `"version":"2.0.0"`
			wantExit := 0
			if point == "rolling-back" {
				// A release that fails its health check, to reach the rollback.
				os.WriteFile(filepath.Join(h.dir, "app/apps/api/server.js"), []byte("process.exit(1)\n"), 0o644)
				h.git("commit", "-qam", "broken")
				want, wantExit = `"version":"1.0.0"`, 4
			} else {
				p := filepath.Join(h.dir, "app/apps/api/package.json")
				data, _ := os.ReadFile(p)
				os.WriteFile(p, []byte(strings.Replace(string(data), `"1.0.0"`, `"2.0.0"`, 1)), 0o644)
				h.git("commit", "-qam", "v2")
			}
			h.publish(true)

			crash := h.cmd("agent", "once", "--config", "agent.yaml")
			crash.Env = append(crash.Env, "COHURON_AGENT_CRASH_AT="+point)
			out, err := crash.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != -1 {
				t.Fatalf("agent was not killed at %s: %v\n%s", point, err, out)
			}
			if _, err := os.Stat(filepath.Join(h.dir, "state/journal.json")); err != nil && point != "committed" {
				t.Fatalf("no journal after a crash at %s", point)
			}

			again := h.cmd("agent", "once", "--config", "agent.yaml")
			out, err = again.CombinedOutput()
			code := 0
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != wantExit {
				t.Fatalf("restart after a crash at %s exited %d, want %d\n%s", point, code, wantExit, out)
			}
			if got := h.health(); !strings.Contains(got, want) {
				t.Fatalf("after a crash at %s the app answers %q, want %s", point, got, want)
			}
			if _, err := os.Stat(filepath.Join(h.dir, "state/journal.json")); err == nil {
				t.Fatalf("journal left after recovering from %s", point)
			}
			status := h.run("agent", "status", "--config", "agent.yaml")
			if strings.Contains(status, "in progress") {
				t.Fatalf("status after recovering from %s:\n%s", point, status)
			}
			target, _ := os.Readlink(filepath.Join(h.dir, "opt/cohuron"))
			running := strings.Fields(strings.SplitN(strings.SplitN(status, "running:  seq ", 2)[1], "\n", 2)[0])
			if len(running) < 2 || !strings.Contains(target, strings.Trim(running[1], "(),")) {
				t.Fatalf("root points at %s but status says %q", target, running)
			}
			releases, _ := os.ReadDir(filepath.Join(h.dir, "opt/cohuron-backups/releases"))
			for _, r := range releases {
				if strings.HasSuffix(r.Name(), ".tmp") {
					t.Fatalf("half-staged %s left after recovering from %s", r.Name(), point)
				}
			}
		})
	}
}

// TestFullCrash kills the agent at every journal point of a converge that
// changes code, a compose service and the schema at once, on one host
// with the real services; after the restart the host must be wholly on
// the new release: the new compose definition, each new schema file
// imported exactly once, every row kept, no journal, no half-staged tree.
func TestFullCrash(t *testing.T) {
	h := newFullHost(t)
	h.publish()
	h.once(0)
	tasks := h.sql("SELECT count(*) FROM app.tasks")
	for i, point := range agent.CrashPoints {
		if point == "rolling-back" {
			continue // needs a failing release: TestCrashAtEveryPoint
		}
		name := fmt.Sprintf("queue%d", i)
		table := fmt.Sprintf("crash_%d", i)
		file := fmt.Sprintf("db/1%d_%s.ddl", i, table)
		h.edit("docker-compose.yml", func(s string) string {
			return regexp.MustCompile(`NAME: queue\w*`).ReplaceAllString(s, "NAME: "+name)
		})
		h.addSchemaFile(file, "CREATE TABLE app."+table+" (id int);\n")
		h.commit("crash at " + point)
		h.publish()

		crash := h.cmd("agent", "once", "--config", filepath.Join(h.dir, "agent.yaml"))
		crash.Env = append(crash.Env, "COHURON_AGENT_CRASH_AT="+point)
		out, err := crash.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != -1 {
			t.Fatalf("agent was not killed at %s: %v\n%s", point, err, out)
		}
		out = []byte(h.once(0))
		if _, err := os.Stat(filepath.Join(h.dir, "state/journal.json")); err == nil {
			t.Fatalf("journal left after recovering from %s", point)
		}
		env := h.run("docker", "ps", "--filter", "label=com.docker.compose.project="+h.project, "--filter", "label=com.docker.compose.service=queue",
			"--format", "{{.ID}}")
		inspect := h.run("docker", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", strings.TrimSpace(env))
		if !strings.Contains(inspect, "NAME="+name+"\n") {
			t.Fatalf("after a crash at %s queue runs with:\n%s", point, inspect)
		}
		if n := h.sql("SELECT count(*) FROM cohuron_agent.schema_history WHERE file = '" + file + "'"); n != "1" {
			t.Fatalf("after a crash at %s, %s is in the history %s times\n%s", point, file, n, out)
		}
		if n := h.sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'app' AND table_name = '" + table + "'"); n != "1" {
			t.Fatalf("after a crash at %s, app.%s exists %s times", point, table, n)
		}
		if n := h.sql("SELECT count(*) FROM app.tasks"); n != tasks {
			t.Fatalf("after a crash at %s: %s tasks, want %s", point, n, tasks)
		}
		if hl, code := h.health(); code != 200 {
			t.Fatalf("after a crash at %s: health %d %+v", point, code, hl)
		}
		releases, _ := os.ReadDir(filepath.Join(h.dir, "opt/cohuron-backups/releases"))
		for _, r := range releases {
			if strings.HasSuffix(r.Name(), ".tmp") {
				t.Fatalf("half-staged %s left after recovering from %s", r.Name(), point)
			}
		}
		t.Logf("crash at %s: recovered and converged", point)
	}

	// Rolling back itself: a release that changes compose and renames a
	// table the app needs fails its health check; the agent dies while
	// rolling back. After the restart the host is wholly on the old
	// release: old compose definition, the table back with every row.
	ctr := h.containers()
	live := h.liveRelease()
	h.edit("docker-compose.yml", func(s string) string {
		return regexp.MustCompile(`NAME: queue\w*`).ReplaceAllString(s, "NAME: queue-broken")
	})
	h.addSchemaFile("db/30_rename.ddl", "ALTER TABLE app.tasks RENAME TO tasks_x;\n")
	h.commit("breaks health")
	h.publish()
	crash := h.cmd("agent", "once", "--config", filepath.Join(h.dir, "agent.yaml"))
	crash.Env = append(crash.Env, "COHURON_AGENT_CRASH_AT=rolling-back")
	out, err := crash.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("agent was not killed at rolling-back: %v\n%s", err, out)
	}
	h.once(4) // recovers, retries the release, rolls back again
	if h.liveRelease() != live {
		t.Fatalf("after a crash while rolling back the root is %s, want %s", h.liveRelease(), live)
	}
	if n := h.sql("SELECT count(*) FROM app.tasks"); n != tasks {
		t.Fatalf("after a crash while rolling back: %s tasks, want %s", n, tasks)
	}
	got := h.containers()
	inspect := h.run("docker", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", got["queue"])
	if strings.Contains(inspect, "queue-broken") || got["cache"] != ctr["cache"] {
		t.Fatalf("after a crash while rolling back, compose is not the old definition: %v -> %v\n%s", ctr, got, inspect)
	}
	if _, code := h.health(); code != 200 {
		t.Fatalf("after a crash while rolling back: health %d", code)
	}
}
