package systemd_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/proc"
	"github.com/cohuron/deploy/pkg/systemd"
)

var spec = &manifest.Spec{
	User: "cohuron",
	Processes: []manifest.Process{
		{Name: "cohuron-api", Cwd: "apps/api", Command: []string{"node", "dist/server.js"}, EnvFile: "apps/api/.env"},
		{Name: "cohuron-web", Cwd: "apps/web", Command: []string{"pnpm", "preview", "--port", "5173"}},
	},
}

func TestUnit(t *testing.T) {
	text, err := systemd.Unit("/opt/cohuron", spec, spec.Processes[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"WorkingDirectory=/opt/cohuron/apps/api\n",
		"EnvironmentFile=/opt/cohuron/apps/api/.env\n",
		`ExecStart="node" "dist/server.js"` + "\n",
		"User=cohuron\n",
		"Restart=always\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("unit lacks %q:\n%s", want, text)
		}
	}
	_, err = systemd.Unit("/opt/cohuron", spec, manifest.Process{Name: "x", Mode: "cluster", Command: []string{"node", "a.js"}})
	if err == nil || !strings.Contains(err.Error(), "cluster mode needs PM2") {
		t.Fatalf("cluster mode: %v", err)
	}
}

// TestApplyStatusStop drives the manager against a recording fake of
// systemctl (systemd does not run in this sandbox).
func TestApplyStatusStop(t *testing.T) {
	dir := t.TempDir()
	var calls []string
	m := &systemd.Manager{UnitDir: dir, Run: func(_ context.Context, c proc.Cmd) (proc.Result, error) {
		calls = append(calls, strings.Join(append([]string{c.Name}, c.Args...), " "))
		if len(c.Args) > 0 && c.Args[0] == "show" {
			out := "ActiveState=active\nSubState=running\nNRestarts=2\nMainPID=4242\n"
			if strings.Contains(c.Args[len(c.Args)-1], "web") {
				out = "ActiveState=failed\nSubState=failed\nNRestarts=7\nMainPID=0\n"
			}
			return proc.Result{Output: []byte(out)}, nil
		}
		return proc.Result{}, nil
	}}
	ctx := context.Background()
	if err := m.Apply(ctx, "/opt/cohuron", spec, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cohuron-app-cohuron-api.service")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(calls, "; "); got != "systemctl daemon-reload; systemctl restart cohuron-app-cohuron-api.service cohuron-app-cohuron-web.service" {
		t.Fatalf("calls = %s", got)
	}
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if api := st["cohuron-api"]; !api.Running || api.Restarts != 2 || len(api.PIDs) != 1 {
		t.Errorf("api status %+v", api)
	}
	if web := st["cohuron-web"]; web.Running || web.State != "errored" || web.Restarts != 7 {
		t.Errorf("web status %+v", web)
	}
	calls = nil
	if err := m.Stop(ctx, []string{"cohuron-web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cohuron-app-cohuron-web.service")); !os.IsNotExist(err) {
		t.Fatal("unit file of a stopped process remains")
	}
}
