package pm2

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/proc"
)

// base is what every app gets unless the spec says otherwise.
func base(name, cwd string) app {
	return app{
		Name: name, Cwd: cwd, Env: map[string]string{}, ExecMode: "fork", Instances: 1,
		Autorestart: true, MaxRestarts: 10, MinUptime: 5000, KillTimeout: 5000, ListenTimeout: 30000, MergeLogs: true, Time: true,
	}
}

func TestApps(t *testing.T) {
	const root = "/opt/cohuron"
	envs := map[string]map[string]string{
		"apps/api/.env": {"PORT": "4000", "JWT_SECRET": "hunter2"},
		"apps/web/.env": {"PORT": "5173"},
	}
	tests := []struct {
		name string
		proc manifest.Process
		want func() app
	}{
		{"node script with args", manifest.Process{Name: "api", Cwd: "apps/api", Command: []string{"node", "server.js", "--x"}, EnvFile: "apps/api/.env"},
			func() app {
				a := base("api", "/opt/cohuron/apps/api")
				a.Script, a.Args, a.Interpreter = "server.js", []string{"--x"}, "node"
				a.Env = map[string]string{"PORT": "4000", "JWT_SECRET": "hunter2"}
				return a
			}},
		{"node script without args", manifest.Process{Name: "api", Command: []string{"node", "dist/main.js"}},
			func() app {
				a := base("api", root)
				a.Script, a.Args, a.Interpreter = "dist/main.js", []string{}, "node"
				return a
			}},
		{"other program runs without an interpreter", manifest.Process{Name: "web", Cwd: "apps/web", Command: []string{"pnpm", "run", "preview"}, EnvFile: "apps/web/.env"},
			func() app {
				a := base("web", "/opt/cohuron/apps/web")
				a.Script, a.Args, a.Interpreter = "pnpm", []string{"run", "preview"}, "none"
				a.Env = map[string]string{"PORT": "5173"}
				return a
			}},
		{"node options before the script", manifest.Process{Name: "api", Cwd: "apps/api", Command: []string{"node", "--import", "tsx", "--enable-source-maps", "src/server.ts", "--port=4000"}, Mode: "cluster", Instances: 2},
			func() app {
				// Cluster workers start in PM2's directory: the agent's entry
				// loads tsx from the app's cwd, then the script.
				a := base("api", "/opt/cohuron/apps/api")
				a.Script, a.Args, a.Interpreter = "/opt/cohuron/"+EntryFile, []string{"--port=4000"}, "node"
				a.NodeArgs = []string{"--enable-source-maps"}
				a.Env = map[string]string{"COHURON_NODE_PRELOAD": `[["import","tsx"]]`, "COHURON_NODE_SCRIPT": "src/server.ts"}
				a.ExecMode, a.Instances = "cluster", 2
				return a
			}},
		{"fork mode keeps node options", manifest.Process{Name: "api", Cwd: "apps/api", Command: []string{"node", "--import", "tsx", "src/server.ts"}},
			func() app {
				a := base("api", "/opt/cohuron/apps/api")
				a.Script, a.Args, a.Interpreter = "src/server.ts", []string{}, "node"
				a.NodeArgs = []string{"--import", "tsx"}
				return a
			}},
		{"node alone is a program", manifest.Process{Name: "repl", Command: []string{"node"}},
			func() app {
				a := base("repl", root)
				a.Script, a.Args, a.Interpreter = "node", []string{}, "none"
				return a
			}},
		{"cluster with instances", manifest.Process{Name: "api", Cwd: "apps/api", Command: []string{"node", "server.js"}, Mode: "cluster", Instances: 4},
			func() app {
				a := base("api", "/opt/cohuron/apps/api")
				a.Script, a.Args, a.Interpreter = "server.js", []string{}, "node"
				a.ExecMode, a.Instances = "cluster", 4
				return a
			}},
		{"cluster without instances runs one", manifest.Process{Name: "api", Command: []string{"node", "server.js"}, Mode: "cluster"},
			func() app {
				a := base("api", root)
				a.Script, a.Args, a.Interpreter = "server.js", []string{}, "node"
				a.ExecMode = "cluster"
				return a
			}},
		{"env file not resolved gives an empty env", manifest.Process{Name: "x", Command: []string{"node", "x.js"}, EnvFile: "apps/x/.env"},
			func() app {
				a := base("x", root)
				a.Script, a.Args, a.Interpreter = "x.js", []string{}, "node"
				return a
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apps, err := Apps(root, &manifest.Spec{Processes: []manifest.Process{tt.proc}}, envs)
			if err != nil {
				t.Fatal(err)
			}
			if want := []app{tt.want()}; !reflect.DeepEqual(apps, want) {
				t.Fatalf("Apps:\n got %+v\nwant %+v", apps, want)
			}
		})
	}
}

func TestAppsDoNotShareEnv(t *testing.T) {
	envs := map[string]map[string]string{"apps/api/.env": {"PORT": "4000"}}
	spec := &manifest.Spec{Processes: []manifest.Process{
		{Name: "a", Command: []string{"node", "a.js"}, EnvFile: "apps/api/.env"},
		{Name: "b", Command: []string{"node", "b.js"}, EnvFile: "apps/api/.env"},
	}}
	apps, err := Apps("/r", spec, envs)
	if err != nil {
		t.Fatal(err)
	}
	apps[0].Env["EXTRA"] = "1"
	if _, ok := apps[1].Env["EXTRA"]; ok {
		t.Fatal("two apps share one env map")
	}
	if _, ok := envs["apps/api/.env"]["EXTRA"]; ok {
		t.Fatal("Apps aliases the caller's env map")
	}
}

func TestAppsClusterNeedsNode(t *testing.T) {
	spec := &manifest.Spec{Processes: []manifest.Process{
		{Name: "ok", Command: []string{"node", "a.js"}},
		{Name: "cohuron-web", Command: []string{"pnpm", "start"}, Mode: "cluster", Instances: 2},
	}}
	apps, err := Apps("/r", spec, nil)
	if err == nil {
		t.Fatalf("Apps = %+v, want an error", apps)
	}
	if !strings.Contains(err.Error(), "process cohuron-web") || !strings.Contains(err.Error(), "cluster") {
		t.Fatalf("error %q does not name the process and the mode", err)
	}
}

// fakePM2 is a pm2 stand-in: it records its arguments and PM2_HOME into
// $FAKE_PM2_LOG, prints $FAKE_PM2_OUT, and exits with $FAKE_PM2_EXIT.
const fakePM2 = `#!/bin/sh
{
	echo "PM2_HOME=$PM2_HOME"
	echo "PWD=$(pwd)"
	for a in "$@"; do echo "arg=$a"; done
} >> "$FAKE_PM2_LOG"
if [ -n "$FAKE_PM2_OUT" ]; then cat "$FAKE_PM2_OUT"; fi
exit "${FAKE_PM2_EXIT:-0}"
`

type fake struct {
	dir, log, out string
	m             *Manager
}

func newFake(t *testing.T, output string, exit string) *fake {
	t.Helper()
	dir := t.TempDir()
	f := &fake{dir: dir, log: filepath.Join(dir, "calls.log"), out: filepath.Join(dir, "out")}
	bin := filepath.Join(dir, "pm2")
	if err := os.WriteFile(bin, []byte(fakePM2), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.out, []byte(output), 0o644); err != nil {
		t.Fatal(err)
	}
	f.m = &Manager{
		Bin:  bin,
		Home: filepath.Join(dir, "pm2-home"),
		Env:  []string{"PATH=/usr/bin:/bin", "FAKE_PM2_LOG=" + f.log, "FAKE_PM2_OUT=" + f.out, "FAKE_PM2_EXIT=" + exit},
		Run:  proc.Run,
	}
	return f
}

// calls returns the recorded invocations, one line per fact.
func (f *fake) calls(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(f.log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func TestStatus(t *testing.T) {
	jlist := `[
 {"name":"cohuron-api","pid":4242,"pm2_env":{"status":"online","restart_time":3,"unstable_restarts":0}},
 {"name":"cohuron-web","pid":0,"pm2_env":{"status":"errored","restart_time":15,"unstable_restarts":2}},
 {"name":"cluster","pid":300,"pm2_env":{"status":"online","restart_time":1}},
 {"name":"cluster","pid":200,"pm2_env":{"status":"online","restart_time":4}},
 {"name":"halted","pid":0,"pm2_env":{"status":"stopped","restart_time":0}},
 {"name":"ghost","pid":0,"pm2_env":{"status":"online","restart_time":0}}
]`
	want := map[string]Status{
		"cohuron-api": {Name: "cohuron-api", Running: true, Restarts: 3, PIDs: []int{4242}, State: "online"},
		"cohuron-web": {Name: "cohuron-web", Running: false, Restarts: 17, State: "errored"},
		"cluster":     {Name: "cluster", Running: true, Restarts: 4, PIDs: []int{200, 300}, State: "online"},
		"halted":      {Name: "halted", State: "stopped"},
		"ghost":       {Name: "ghost", State: "online"}, // online without a pid is not running
	}
	tests := []struct {
		name, output string
		want         map[string]Status
	}{
		{"bare", jlist, want},
		{"daemon noise around the list", "[PM2] Spawning PM2 daemon with pm2_home=/x\n[PM2] PM2 Successfully daemonized\n" +
			jlist + "\n[PM2][WARN] Current process list is not synchronized with saved list.\n", want},
		{"noise with brackets and a broken array first", "[1, 2\n[PM2] x\n" + jlist, want},
		{"empty list", "[PM2] Spawning PM2 daemon\n[]\n", map[string]Status{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, tt.output, "0")
			got, err := f.m.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Status:\n got %+v\nwant %+v", got, tt.want)
			}
			calls := f.calls(t)
			if want := []string{"PM2_HOME=" + f.m.Home, "PWD=" + f.m.Home, "arg=jlist"}; !reflect.DeepEqual(calls, want) {
				t.Fatalf("pm2 called with %q, want %q", calls, want)
			}
		})
	}
}

func TestStatusErrors(t *testing.T) {
	tests := []struct {
		name, output, exit, want string
	}{
		{"no JSON", "[PM2] Spawning PM2 daemon\nsomething broke\n", "0", "no JSON list"},
		{"pm2 fails", "[PM2][ERROR] Daemon not launched\n", "1", "pm2 jlist"},
		{"an object, not a list", `{"name":"x"}`, "0", "no JSON list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, tt.output, tt.exit)
			got, err := f.m.Status(context.Background())
			if err == nil {
				t.Fatalf("Status = %+v, want an error", got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestApply(t *testing.T) {
	spec := &manifest.Spec{Processes: []manifest.Process{
		{Name: "a", Cwd: "apps/api", Command: []string{"node", "server.js"}, EnvFile: "apps/api/.env", Mode: "cluster", Instances: 2},
		{Name: "b", Command: []string{"node", "worker.js"}},
		{Name: "c", Command: []string{"node", "other.js"}},
	}}
	envs := map[string]map[string]string{"apps/api/.env": {"JWT_SECRET": "hunter2"}}
	for _, tt := range []struct {
		name  string
		names []string
		only  []string
	}{
		{"some", []string{"a", "b"}, []string{"arg=--only", "arg=a,b"}},
		{"all", nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, "[PM2] Applying action reloadProcessId on app [a](ids: [ 0, 1 ])\n", "0")
			if err := f.m.Apply(context.Background(), "/opt/cohuron", spec, envs, tt.names); err != nil {
				t.Fatal(err)
			}
			eco := filepath.Join(f.m.Home, "ecosystem.json")
			want := append([]string{"PM2_HOME=" + f.m.Home, "PWD=" + f.m.Home, "arg=startOrReload", "arg=" + eco, "arg=--update-env"}, tt.only...)
			if calls := f.calls(t); !reflect.DeepEqual(calls, want) {
				t.Fatalf("pm2 called with\n%q\nwant\n%q", calls, want)
			}

			// The ecosystem file holds resolved secrets: owner only, in
			// an owner-only PM2_HOME.
			fi, err := os.Stat(eco)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("ecosystem.json mode %v, want 0600", fi.Mode().Perm())
			}
			if hi, err := os.Stat(f.m.Home); err != nil || hi.Mode().Perm() != 0o700 {
				t.Errorf("PM2_HOME mode %v (%v), want 0700", hi.Mode().Perm(), err)
			}
			data, err := os.ReadFile(eco)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Apps []map[string]any `json:"apps"`
			}
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatalf("ecosystem.json: %v\n%s", err, data)
			}
			if len(doc.Apps) != 3 {
				t.Fatalf("ecosystem.json has %d apps, want every declared process (3)", len(doc.Apps))
			}
			a := doc.Apps[0]
			for k, v := range map[string]any{
				"name": "a", "cwd": "/opt/cohuron/apps/api", "script": "server.js", "interpreter": "node",
				"exec_mode": "cluster", "instances": 2.0, "env": map[string]any{"JWT_SECRET": "hunter2"},
			} {
				if !reflect.DeepEqual(a[k], v) {
					t.Errorf("ecosystem app a: %s = %v, want %v", k, a[k], v)
				}
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	f := newFake(t, "[PM2][ERROR] Script not found\n", "1")
	spec := &manifest.Spec{Processes: []manifest.Process{{Name: "a", Command: []string{"node", "a.js"}}}}
	err := f.m.Apply(context.Background(), "/r", spec, nil, []string{"a"})
	if err == nil || !strings.Contains(err.Error(), "starting a") || !strings.Contains(err.Error(), "startOrReload") {
		t.Fatalf("Apply with pm2 failing: %v, want an error naming the process and the command", err)
	}

	// An invalid spec is refused before pm2 runs.
	f = newFake(t, "", "0")
	bad := &manifest.Spec{Processes: []manifest.Process{{Name: "w", Command: []string{"pnpm", "start"}, Mode: "cluster"}}}
	if err := f.m.Apply(context.Background(), "/r", bad, nil, nil); err == nil || !strings.Contains(err.Error(), "process w") {
		t.Fatalf("Apply of a cluster process without node: %v", err)
	}
	if _, err := os.Stat(f.log); !os.IsNotExist(err) {
		t.Fatal("pm2 ran for an invalid spec")
	}
}

func TestStop(t *testing.T) {
	// PM2 knows a and b, not c: stopping c is a no-op, not an error.
	f := newFake(t, `[{"name":"a","pid":1,"pm2_env":{"status":"online"}},{"name":"b","pid":2,"pm2_env":{"status":"online"}}]`, "0")
	if err := f.m.Stop(context.Background(), []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	home := "PM2_HOME=" + f.m.Home
	pwd := "PWD=" + f.m.Home
	want := []string{home, pwd, "arg=jlist", home, pwd, "arg=delete", "arg=a", home, pwd, "arg=delete", "arg=b"}
	if calls := f.calls(t); !reflect.DeepEqual(calls, want) {
		t.Fatalf("pm2 called with %q, want %q", calls, want)
	}

	f = newFake(t, "[PM2][ERROR] Process or Namespace x not found\n", "1")
	// A pm2 that fails every command: Stop cannot tell what runs, and says so.
	if err := f.m.Stop(context.Background(), []string{"x"}); err == nil || !strings.Contains(err.Error(), "pm2 jlist") {
		t.Fatalf("Stop with pm2 failing: %v", err)
	}
}

func TestPreload(t *testing.T) {
	mods, rest := preload([]string{"--import", "tsx", "--max-old-space-size=512", "-r", "dotenv/config", "--require=./a.cjs", "--import=x"})
	want := [][2]string{{"import", "tsx"}, {"require", "dotenv/config"}, {"require", "./a.cjs"}, {"import", "x"}}
	if !reflect.DeepEqual(mods, want) || !reflect.DeepEqual(rest, []string{"--max-old-space-size=512"}) {
		t.Fatalf("preload: %q, %q", mods, rest)
	}
}

func TestWriteEntryStaysInTheRelease(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := writeEntry(dir); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, EntryFile)); err != nil || !strings.Contains(string(data), "COHURON_NODE_SCRIPT") {
		t.Fatalf("entry: %v %q", err, data)
	}
	// The release's owner points the agent's directory elsewhere: refused.
	evil := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(evil, ".cohuron-agent")); err != nil {
		t.Fatal(err)
	}
	if err := writeEntry(evil); err == nil {
		t.Fatal("wrote through a symlink out of the release")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("wrote outside the release: %v", entries)
	}
}

// Prepare writes the cluster entry into a release directory only when a
// cluster process loads modules before its script.
func TestPrepare(t *testing.T) {
	m := &Manager{}
	fork := &manifest.Spec{Processes: []manifest.Process{{Name: "api", Command: []string{"node", "--import", "tsx", "src/server.ts"}}}}
	dir := t.TempDir()
	if err := m.Prepare(dir, fork); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, EntryFile)); err == nil {
		t.Error("entry written for a fork-mode process")
	}
	cluster := &manifest.Spec{Processes: []manifest.Process{{Name: "api", Mode: "cluster", Command: []string{"node", "--import", "tsx", "src/server.ts"}}}}
	if err := m.Prepare(dir, cluster); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, EntryFile)); err != nil || string(b) != entry {
		t.Errorf("entry after Prepare: %v (%d bytes)", err, len(b))
	}
}
