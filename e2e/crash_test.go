package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
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
