package pm2

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/proc"
)

// The old deploy script's daemon, with the real PM2: a process it started
// and never saved (as the script's `pm2 start "pnpm dev"`) comes back
// after Stop and Restore; with no daemon, both do nothing.
func TestLegacyStopRestore(t *testing.T) {
	bin := testenv.Bin(t, "pm2")
	home := filepath.Join(t.TempDir(), "old-pm2")
	env := []string{"PATH=" + filepath.Dir(bin) + ":/usr/local/bin:/usr/bin:/bin", "HOME=" + filepath.Dir(home), "PM2_DISABLE_VERSION_CHECK=true"}
	m := &Manager{Bin: bin, Home: home, Env: env, Run: proc.Run}
	ctx := context.Background()
	t.Cleanup(func() { m.pm2(context.Background(), "kill") })

	l := &Legacy{M: m}
	if err := l.Stop(ctx); err != nil {
		t.Fatalf("Stop with no old daemon: %v", err)
	}
	if err := l.Restore(ctx); err != nil {
		t.Fatalf("Restore with no old daemon: %v", err)
	}
	if _, err := m.pm2(ctx, "start", "--name", "old-api", "node", "--", "-e", "setInterval(() => {}, 1000)"); err != nil {
		t.Fatal(err)
	}
	running := func() bool {
		st, err := m.Status(ctx)
		return err == nil && st["old-api"].Running
	}
	if !running() {
		t.Fatal("the old process does not run")
	}
	if err := l.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if daemonAlive(home) {
		t.Fatal("the old daemon still runs after Stop")
	}
	dump, err := os.ReadFile(filepath.Join(home, "dump.pm2"))
	if err != nil || !strings.Contains(string(dump), "old-api") {
		t.Fatalf("Stop saved no process list naming old-api (%v)", err)
	}
	if err := l.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !running() {
		if time.Now().After(deadline) {
			t.Fatal("old-api did not come back after Restore")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
