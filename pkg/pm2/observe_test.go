package pm2

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/proc"
)

// With the real PM2: Status asks PM2's CLI once, then answers from PM2's
// pid files while they stand, and asks again as soon as PM2 restarted a
// killed process, an operator stopped one by hand, or the agent itself
// ran a command.
func TestStatusFromPidFiles(t *testing.T) {
	bin := testenv.Bin(t, "pm2")
	home := filepath.Join(t.TempDir(), "pm2")
	env := []string{"PATH=" + filepath.Dir(bin) + ":/usr/local/bin:/usr/bin:/bin", "HOME=" + filepath.Dir(home), "PM2_DISABLE_VERSION_CHECK=true"}
	jlists := 0
	m := &Manager{Bin: bin, Home: home, Env: env, Run: func(ctx context.Context, c proc.Cmd) (proc.Result, error) {
		if len(c.Args) > 0 && c.Args[0] == "jlist" {
			jlists++
		}
		return proc.Run(ctx, c)
	}}
	ctx := context.Background()
	t.Cleanup(func() { m.pm2(context.Background(), "kill") })
	script := filepath.Join(t.TempDir(), "app.js")
	if err := os.WriteFile(script, []byte("require('http').createServer((q, s) => s.end('ok')).listen(0)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"start", script, "--name", "fork"}, {"start", script, "--name", "cluster", "-i", "2"}} {
		if _, err := m.pm2(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	// status waits until PM2 reports what cond wants (it settles after a start).
	status := func(what string, cond func(map[string]Status) bool) map[string]Status {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			st, err := m.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("PM2 never reported %s: %+v", what, st)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	up := func(st map[string]Status) bool {
		return st["fork"].Running && len(st["cluster"].PIDs) == 2
	}
	status("both running", up)
	// The read that saw them up may have seen a worker still launching
	// (not kept): this one sees them settled.
	first := status("both running", up)

	n := jlists
	for range 3 {
		again, err := m.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(again, first) {
			t.Fatalf("Status from the pid files %+v, want the CLI's %+v", again, first)
		}
	}
	if jlists != n {
		t.Fatalf("three polls with nothing changed ran pm2 jlist %d times, want 0", jlists-n)
	}

	// A killed process: PM2 starts it again under a new pid.
	if err := syscall.Kill(first["fork"].PIDs[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	n = jlists
	restarted := status("the killed process restarted", func(st map[string]Status) bool {
		return st["fork"].Running && st["fork"].PIDs[0] != first["fork"].PIDs[0]
	})
	if jlists == n || restarted["fork"].Restarts <= first["fork"].Restarts {
		t.Fatalf("after kill -9: %+v from %d jlist, want a restart counted, read from PM2", restarted["fork"], jlists-n)
	}

	// An operator's `pm2 stop` (not through the Manager).
	c := exec.Command(bin, "stop", "cluster")
	c.Env = append(env, "PM2_HOME="+home)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("pm2 stop: %v\n%s", err, out)
	}
	stopped := status("cluster stopped", func(st map[string]Status) bool { return !st["cluster"].Running })
	if stopped["cluster"].State != "stopped" || !stopped["fork"].Running {
		t.Fatalf("after pm2 stop cluster: %+v", stopped)
	}

	// The Manager's own command: the next Status asks PM2 whatever the files say.
	n = jlists
	if _, err := m.pm2(ctx, "delete", "cluster"); err != nil {
		t.Fatal(err)
	}
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st["cluster"]; ok || jlists != n+1 {
		t.Fatalf("after pm2 delete cluster: %+v (%d jlist), want it gone, read from PM2", st, jlists-n)
	}
}
