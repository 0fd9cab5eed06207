package e2e

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/reliability"
	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/fault"
)

// mountTmpfs mounts a small filesystem at dir until the test ends: a
// full disk on demand.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root", "mounting a small filesystem for the disk-full tests")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Missing(t, "tmpfs mounts", string(out))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

// fill leaves about free bytes on the filesystem holding dir, and
// returns a function that frees the space again.
func fill(t *testing.T, dir string, free int64) func() {
	t.Helper()
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	avail := int64(fs.Bavail) * fs.Bsize
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	if n := avail - free; n > 0 {
		if _, err := f.Write(make([]byte, n)); err != nil {
			t.Fatalf("filling %s: %v", dir, err)
		}
	}
	f.Close()
	return func() { os.Remove(filler) }
}

// bigChange commits a code change with 2 MiB that do not compress, so the
// bundle and its release directory need that much room.
func (h *benchHost) bigChange(t *testing.T, i int) {
	t.Helper()
	blob := make([]byte, 2<<20)
	rand.Read(blob)
	if err := os.WriteFile(filepath.Join(h.dir, "app/apps/api/blob.bin"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	h.git("add", "-A")
	h.codeChange(i)
}

// TestResourceFaults: the disk fills up during the download and during
// extraction, a release directory is removed by hand, a second agent is
// started. Each time the running release keeps serving, nothing is marked
// bad, and the agent converges once the fault is gone.
func TestResourceFaults(t *testing.T) {
	h := newBenchHost(t)
	mountTmpfs(t, filepath.Join(h.dir, "opt"), "96m")
	mountTmpfs(t, filepath.Join(h.dir, "state/bundles"), "16m")
	h.publish(true)
	h.run("agent", "once", "--config", "agent.yaml")
	if h.health() == "" {
		t.Fatal("first release not healthy")
	}
	change := 0

	// refusedThenConverges publishes a big change with the disk full at
	// dir, checks that the agent fails transiently and leaves the host
	// alone, then frees the disk and checks it converges.
	refusedThenConverges := func(t *testing.T, dir string) {
		change++
		h.bigChange(t, change)
		h.publish(true)
		free := fill(t, dir, 256<<10)
		before := h.snapshot(t)
		code, out := h.agentOnce(t, "agent.yaml")
		if code != fault.ExitError {
			t.Errorf("agent once with a full disk exited %d, want %d (a transient error)\n%s", code, fault.ExitError, out)
		}
		if !strings.Contains(out, "no space left on device") {
			t.Errorf("the error does not say the disk is full:\n%s", out)
		}
		free()
		if d := before.diff(h.snapshot(t)); len(d) > 0 {
			t.Errorf("a full disk changed the host:\n  %s", strings.Join(d, "\n  "))
		}
		if parts, _ := filepath.Glob(filepath.Join(h.dir, "state/bundles/*.part")); len(parts) > 0 {
			t.Errorf("partial downloads left behind: %v", parts)
		}
		if staged, _ := filepath.Glob(filepath.Join(h.dir, "opt/cohuron-backups/releases/*staging*")); len(staged) > 0 {
			t.Errorf("half-extracted release left behind: %v", staged)
		}
		if code, out := h.agentOnce(t, "agent.yaml"); code != 0 {
			t.Fatalf("agent once after freeing the disk exited %d:\n%s", code, out)
		}
		if status := h.run("agent", "status", "--config", "agent.yaml"); strings.Contains(status, "known-bad") {
			t.Errorf("a full disk marked the release bad:\n%s", status)
		}
	}

	t.Run("disk-full-during-download", func(t *testing.T) {
		reliability.Record(t, reliability.Case{Area: reliability.AreaResource, Name: "disk-full-during-download",
			Attack:  "the bundle cache's filesystem is full while a 2 MiB bundle downloads",
			Defense: "the partial download is removed, the error is transient (retried, not marked bad), the running release is untouched"})
		refusedThenConverges(t, filepath.Join(h.dir, "state/bundles"))
	})
	t.Run("disk-full-during-extraction", func(t *testing.T) {
		reliability.Record(t, reliability.Case{Area: reliability.AreaResource, Name: "disk-full-during-extraction",
			Attack:  "the release filesystem is full while a release with 2 MiB of new files is extracted",
			Defense: "the staging directory is removed, the error is transient (retried, not marked bad), the running release is untouched"})
		refusedThenConverges(t, filepath.Join(h.dir, "opt"))
	})
	t.Run("release-dir-removed", func(t *testing.T) {
		reliability.Record(t, reliability.Case{Area: reliability.AreaResource, Name: "release-dir-removed",
			Attack:  "an operator removes the running release's directory by hand",
			Defense: "the plan sees the recorded directory missing and reinstalls it from the verified cached bundle"})
		cur, err := filepath.EvalSymlinks(filepath.Join(h.dir, "opt/cohuron"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(cur); err != nil {
			t.Fatal(err)
		}
		plan := h.run("agent", "plan", "--config", "agent.yaml")
		if !strings.Contains(plan, "is missing") {
			t.Errorf("agent plan does not say the release directory is missing:\n%s", plan)
		}
		if code, out := h.agentOnce(t, "agent.yaml"); code != 0 {
			t.Fatalf("agent once exited %d:\n%s", code, out)
		}
		if _, err := os.Stat(filepath.Join(h.dir, "opt/cohuron/apps/api/server.js")); err != nil {
			t.Errorf("the release directory was not restored: %v", err)
		}
		if h.health() == "" {
			t.Error("not healthy after the repair")
		}
	})
	t.Run("second-agent", func(t *testing.T) {
		reliability.Record(t, reliability.Case{Area: reliability.AreaResource, Name: "second-agent",
			Attack:  "a second `agent run` is started on the same host",
			Defense: "a daemon file lock: the second exits at once naming the first; `agent once` meanwhile waits its turn through the reconcile lock"})
		first := h.cmd("agent", "run", "--config", "agent.yaml")
		logf, _ := os.Create(filepath.Join(h.dir, "first-agent.log"))
		first.Stdout, first.Stderr = logf, logf
		if err := first.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			first.Process.Signal(syscall.SIGTERM)
			first.Wait()
			logf.Close()
		}()
		deadline := time.Now().Add(30 * time.Second)
		for !fileExists(filepath.Join(h.dir, "state/daemon.lock")) {
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(h.dir, "first-agent.log"))
				t.Fatalf("the first agent never took its lock:\n%s", log)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Second) // the lock file exists before it is locked
		before := h.snapshot(t)
		second := h.cmd("agent", "run", "--config", "agent.yaml")
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = second.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			second.Process.Kill()
			t.Fatal("the second agent did not exit: two daemons on one host")
		}
		if err == nil || !strings.Contains(string(out), "another agent is running") {
			t.Errorf("second agent: err %v, output:\n%s", err, out)
		}
		if d := before.diff(h.snapshot(t)); len(d) > 0 {
			t.Errorf("the second agent changed the host:\n  %s", strings.Join(d, "\n  "))
		}
	})
}
