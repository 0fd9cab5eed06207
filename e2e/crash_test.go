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

	"github.com/cohuron/deploy/internal/reliability"
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
			kind := "code (minimal sample)"
			if point == "rolling-back" {
				kind = "failing release (minimal sample)"
			}
			reliability.Record(t, reliability.Case{Area: reliability.AreaCrash, Name: "minimal@" + point,
				Attack:  "SIGKILL at journal point " + point + " of a " + kind,
				Defense: "the journal lets the restarted agent undo or finish: the host ends wholly on one release"})
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

// TestFullCrash kills the agent (SIGKILL) at every journal point of a
// converge, for each kind of change, on one host with the real services
// (pnpm, PostgreSQL, the Docker engine, PM2, MinIO). After the restart the
// host must be wholly on the new release: what the change changed (files,
// env files, node_modules, the compose definition, each new schema file
// imported exactly once), every row kept, health, the state agreeing with
// the root, no journal, no half-staged tree. A point a kind of change
// never reaches (a code change does not compose) is not counted.
func TestFullCrash(t *testing.T) {
	h := newFullHost(t)
	h.publish()
	h.once(0)
	tasks := h.sql("SELECT count(*) FROM app.tasks")
	depsOriginal := map[string]string{}
	for _, f := range []string{"apps/api/package.json", "pnpm-lock.yaml"} {
		data, err := os.ReadFile(filepath.Join(h.app, f))
		if err != nil {
			t.Fatal(err)
		}
		depsOriginal[f] = string(data)
	}
	depsAdded := false
	n := 0
	kinds := []struct {
		name   string
		change func() (check func() string) // makes and publishes the change; check says what is wrong after recovery
	}{
		{"code", func() func() string {
			marker := fmt.Sprintf("// crash test change %d\n", n)
			h.edit("apps/api/server.js", func(s string) string { return s + marker })
			h.commit("code change")
			h.publish()
			return func() string {
				if data, _ := os.ReadFile(filepath.Join(h.dir, "opt/cohuron/apps/api/server.js")); !strings.Contains(string(data), marker) {
					return "the live server.js lacks the change"
				}
				return ""
			}
		}},
		{"config", func() func() string {
			h.mark = fmt.Sprintf("mark-%d", n)
			h.writeManifest()
			h.publishConfig()
			return func() string {
				if data, _ := os.ReadFile(filepath.Join(h.dir, "opt/cohuron/apps/web/.env")); !strings.Contains(string(data), "CRASH_MARK="+h.mark) {
					return "the live apps/web/.env lacks CRASH_MARK=" + h.mark + ":\n" + string(data)
				}
				return ""
			}
		}},
		{"dependencies", func() func() string {
			depsAdded = !depsAdded
			for _, f := range []string{"apps/api/package.json", "pnpm-lock.yaml"} {
				content := depsOriginal[f]
				if depsAdded {
					data, err := os.ReadFile(filepath.Join("../testdata/cohuronapp-changes/deps", f))
					if err != nil {
						t.Fatal(err)
					}
					content = string(data)
				}
				h.edit(f, func(string) string { return content })
			}
			h.commit("dependency change")
			h.publish()
			return func() string {
				if has := fileExists(filepath.Join(h.dir, "opt/cohuron/apps/api/node_modules/ms/package.json")); has != depsAdded {
					return fmt.Sprintf("node_modules/ms present: %v, want %v", has, depsAdded)
				}
				return ""
			}
		}},
		{"compose", func() func() string {
			name := fmt.Sprintf("queue%d", n)
			h.edit("docker-compose.yml", func(s string) string {
				return regexp.MustCompile(`NAME: queue\w*`).ReplaceAllString(s, "NAME: "+name)
			})
			h.commit("compose change")
			h.publish()
			return func() string {
				id := h.run("docker", "ps", "--filter", "label=com.docker.compose.project="+h.project, "--filter", "label=com.docker.compose.service=queue", "--format", "{{.ID}}")
				env := h.run("docker", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", strings.TrimSpace(id))
				if !strings.Contains(env, "NAME="+name+"\n") {
					return "queue runs with:\n" + env
				}
				return ""
			}
		}},
		{"schema", func() func() string {
			table := fmt.Sprintf("crash_%d", n)
			file := fmt.Sprintf("db/2%02d_%s.ddl", n, table)
			h.addSchemaFile(file, "CREATE TABLE app."+table+" (id int);\n")
			h.commit("schema change")
			h.publish()
			return func() string {
				if c := h.sql("SELECT count(*) FROM cohuron_agent.schema_history WHERE file = '" + file + "'"); c != "1" {
					return file + " is in the history " + c + " times"
				}
				if c := h.sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'app' AND table_name = '" + table + "'"); c != "1" {
					return "app." + table + " exists " + c + " times"
				}
				return ""
			}
		}},
	}
	for _, kind := range kinds {
		for _, point := range agent.CrashPoints {
			if point == "rolling-back" {
				continue // a good release does not roll back: below
			}
			n++
			check := kind.change()
			crash := h.cmd("agent", "once", "--config", filepath.Join(h.dir, "agent.yaml"))
			crash.Env = append(crash.Env, "COHURON_AGENT_CRASH_AT="+point)
			out, err := crash.CombinedOutput()
			var ee *exec.ExitError
			switch {
			case err == nil:
				// The converge never reached this point: nothing to test.
				t.Logf("%s change: never reaches %s", kind.name, point)
				continue
			case !errors.As(err, &ee) || ee.ExitCode() != -1:
				t.Fatalf("%s change: agent was not killed at %s: %v\n%s", kind.name, point, err, out)
			}
			t.Run(kind.name+"@"+point, func(t *testing.T) {
				reliability.Record(t, reliability.Case{Area: reliability.AreaCrash, Name: kind.name + "@" + point,
					Attack:  "SIGKILL at journal point " + point + " of a " + kind.name + " change",
					Defense: "the journal (atomic, fsynced) lets the restarted agent undo or finish: the host ends wholly on one release"})
				out := h.once(0)
				if why := check(); why != "" {
					t.Fatalf("after a crash at %s: %s\n%s", point, why, out)
				}
				h.checkWhole(t, point, tasks)
			})
		}
	}

	// Rolling back itself: a release that changes compose and renames a
	// table the app needs fails its health check; the agent dies while
	// rolling back. After the restart the host is wholly on the old
	// release: old compose definition, the table back with every row.
	t.Run("rollback@rolling-back", func(t *testing.T) {
		reliability.Record(t, reliability.Case{Area: reliability.AreaCrash, Name: "rollback@rolling-back",
			Attack:  "SIGKILL while rolling back a release that changed compose and the schema and failed its health check",
			Defense: "recovery restores the previous root, compose definition and schema dump; the host ends wholly on the old release"})
		h.crashWhileRollingBack(t, tasks)
	})
}

// crashWhileRollingBack: a release that changes compose and renames a
// table the app needs fails its health check; the agent dies while
// rolling back. After the restart the host is wholly on the old release:
// old compose definition, the table back with every row.
func (h *fullHost) crashWhileRollingBack(t *testing.T, tasks string) {
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
	h.checkWhole(t, "rolling-back", tasks)
}

// checkWhole checks what every recovery must leave: no journal, health,
// every row, the state's running release where the root points, no
// half-staged tree.
func (h *fullHost) checkWhole(t *testing.T, point, tasks string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(h.dir, "state/journal.json")); err == nil {
		t.Fatalf("journal left after recovering from %s", point)
	}
	if c := h.sql("SELECT count(*) FROM app.tasks"); c != tasks {
		t.Fatalf("after a crash at %s: %s tasks, want %s", point, c, tasks)
	}
	if hl, code := h.health(); code != 200 {
		t.Fatalf("after a crash at %s: health %d %+v", point, code, hl)
	}
	status, _ := h.agent("status", "--json")
	if !strings.Contains(status, h.liveRelease()) || strings.Contains(status, "in progress") {
		t.Fatalf("after a crash at %s the state does not name the live release %s:\n%s", point, h.liveRelease(), status)
	}
	releases, _ := os.ReadDir(filepath.Join(h.dir, "opt/cohuron-backups/releases"))
	for _, r := range releases {
		if strings.HasSuffix(r.Name(), ".tmp") || strings.Contains(r.Name(), "staging") {
			t.Fatalf("half-staged %s left after recovering from %s", r.Name(), point)
		}
	}
}
