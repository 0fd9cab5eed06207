package hooks

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/proc"
	"github.com/cohuron/deploy/pkg/tree"
)

// release makes a release directory with apps/api owned by the app user
// and returns it with a runner for that user.
func release(t *testing.T) (string, *Runner, proc.UserInfo) {
	t.Helper()
	user := testenv.AppUser(t)
	u, err := proc.LookupUser(user)
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} { // t.TempDir's are 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "release")
	if err := os.MkdirAll(filepath.Join(dir, "apps", "api"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := tree.Chown(dir, int(u.Uid), int(u.Gid)); err != nil {
		t.Fatal(err)
	}
	r := &Runner{
		Env:  []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		User: user, Log: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
	}
	return dir, r, u
}

func TestRunAsUser(t *testing.T) {
	dir, r, u := release(t)
	r.Env = append(r.Env, "HOME=/root", "USER=root")
	logPath := filepath.Join(dir, "..", "logs", "build.log")
	err := r.Run(context.Background(), dir, "api", "apps/api",
		[]string{"sh", "-c", `mkdir -p dist && id -u > dist/uid && echo "home=$HOME user=$USER ci=$CI" && pwd`}, 0, logPath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "apps/api/dist/uid"))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(int(u.Uid)) {
		t.Errorf("hook ran as uid %q (%v), want the app user's %d", b, err, u.Uid)
	}
	log, _ := os.ReadFile(logPath)
	for _, want := range []string{
		"home=" + u.Home + " user=" + u.Name + " ci=true",
		filepath.Join(dir, "apps/api") + "\n",
		"2026-01-02T03:04:05Z build hook api as " + u.Name,
		"build hook api done",
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if st, err := os.Stat(logPath); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("log mode: %v, %v; want 0640", st, err)
	}
}

func TestRunExitCode(t *testing.T) {
	dir, r, _ := release(t)
	logPath := filepath.Join(dir, "..", "build.log")
	err := r.Run(context.Background(), dir, "api", "", []string{"sh", "-c", "echo compiling; echo 'error TS2304: oops' >&2; exit 3"}, time.Minute, logPath)
	var ee *proc.ExitError
	if !errors.As(err, &ee) || ee.ExitCode != 3 {
		t.Fatalf("err = %v, want an *proc.ExitError with exit code 3", err)
	}
	if want := `build hook "api": sh -c "echo compiling; echo 'error TS2304: oops' >&2; exit 3": exit 3`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %q, want it to start with %q", err, want)
	}
	if !strings.Contains(err.Error(), "error TS2304: oops") {
		t.Errorf("err lacks the output tail: %v", err)
	}
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), "compiling\nerror TS2304: oops\n") || !strings.Contains(string(log), "build hook api failed after") {
		t.Errorf("log lacks the output or the failure:\n%s", log)
	}
}

func TestRunTimeoutKillsGroup(t *testing.T) {
	dir, r, _ := release(t)
	start := time.Now()
	err := r.Run(context.Background(), dir, "web", "apps/api",
		[]string{"sh", "-c", "sleep 300 & echo $! > bg.pid; wait"}, 500*time.Millisecond, filepath.Join(dir, "..", "build.log"))
	if !errors.Is(err, proc.ErrTimeout) || !strings.HasPrefix(err.Error(), `build hook "web": `) {
		t.Fatalf("err = %v, want build hook \"web\": ... timed out", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %s after a 500ms timeout", d)
	}
	b, err := os.ReadFile(filepath.Join(dir, "apps/api/bg.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the hook's background process %d survived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting for a non-reaping init
// counts as dead).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestRunRefuses(t *testing.T) {
	dir, r, _ := release(t)
	logPath := filepath.Join(dir, "..", "build.log")
	for _, tc := range []struct {
		name, cwd string
		cmd       []string
		want      string
	}{
		{"api", "../x", []string{"true"}, `build hook "api": cwd: expected a clean path inside the release, found "../x"`},
		{"api", "apps/./api", []string{"true"}, "expected a clean path"},
		{"api", "", nil, `build hook "api": empty command`},
		{"", "", []string{"true"}, "empty name"},
		{"api", "apps/none", []string{"true"}, "working directory"},
	} {
		if err := r.Run(context.Background(), dir, tc.name, tc.cwd, tc.cmd, time.Minute, logPath); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%q, %q, %q) = %v, want %q", tc.name, tc.cwd, tc.cmd, err, tc.want)
		}
	}
	for _, user := range []string{"", "root", "0"} {
		root := &Runner{User: user, Env: r.Env}
		err := root.Run(context.Background(), dir, "api", "", []string{"true"}, time.Minute, logPath)
		if err == nil || !strings.Contains(err.Error(), "build hooks never run as root; set spec.user") {
			t.Errorf("User %q: err = %v, want a refusal", user, err)
		}
	}
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func ino(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func TestCarryOver(t *testing.T) {
	base := t.TempDir()
	prev, dir := filepath.Join(base, "prev"), filepath.Join(base, "next")
	write(t, filepath.Join(prev, "apps/api/dist/main.js"), "main")
	write(t, filepath.Join(prev, "apps/api/dist/sub/util.js"), "util")
	write(t, filepath.Join(prev, "apps/web/build.txt"), "built")
	write(t, filepath.Join(prev, "gen/web/out/index.html"), "html")
	if err := os.Symlink("main.js", filepath.Join(prev, "apps/api/dist/latest.js")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(prev, "gen"), 0o750); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "apps/api/src/main.ts"), "ts")
	write(t, filepath.Join(dir, "apps/web/package.json"), "{}")

	if err := CarryOver(prev, dir, []string{"apps/api/dist", "apps/web/build.txt", "gen/web/out"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"apps/api/dist/main.js", "apps/api/dist/sub/util.js", "apps/web/build.txt", "gen/web/out/index.html"} {
		if ino(t, filepath.Join(prev, f)) != ino(t, filepath.Join(dir, f)) {
			t.Errorf("%s is not a hard link to the previous release's", f)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "apps/api/dist/latest.js")); err != nil || target != "main.js" {
		t.Errorf("symlink in the output: %q, %v", target, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "gen")); err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("created parent gen: %v, %v; want mode 0750 like the previous release's", st, err)
	}
}

func TestCarryOverErrors(t *testing.T) {
	base := t.TempDir()
	prev, dir := filepath.Join(base, "prev"), filepath.Join(base, "next")
	write(t, filepath.Join(prev, "apps/api/dist/main.js"), "main")
	write(t, filepath.Join(base, "elsewhere/dist/x.js"), "x")
	write(t, filepath.Join(dir, "apps/api/src/main.ts"), "ts")
	if err := os.MkdirAll(filepath.Join(prev, "apps/web"), 0o755); err != nil {
		t.Fatal(err)
	}

	err := CarryOver(prev, dir, []string{"apps/api/dist", "apps/web/dist"})
	want := "apps/web/dist not in previous release " + prev + ": run the hook instead"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if _, err := os.Lstat(filepath.Join(dir, "apps/api/dist")); err == nil {
		t.Error("a failed CarryOver left apps/api/dist behind")
	}

	if err := os.Symlink(filepath.Join(base, "elsewhere"), filepath.Join(prev, "link")); err != nil {
		t.Fatal(err)
	}
	if err := CarryOver(prev, dir, []string{"link/dist"}); err == nil || !strings.Contains(err.Error(), "link: expected a directory") {
		t.Errorf("output through a symlink in prev: err = %v", err)
	}
	if err := os.Symlink(filepath.Join(base, "elsewhere"), filepath.Join(dir, "apps/web")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(prev, "apps/web/dist/a.js"), "a")
	if err := CarryOver(prev, dir, []string{"apps/web/dist"}); err == nil || !strings.Contains(err.Error(), "expected a directory") {
		t.Errorf("output through a symlink in dir: err = %v", err)
	}
	for _, o := range []string{"../x", "/etc", "apps/api/../api/dist", ""} {
		if err := CarryOver(prev, dir, []string{o}); err == nil || !strings.Contains(err.Error(), "expected a clean path inside the release") {
			t.Errorf("output %q: err = %v", o, err)
		}
	}
	write(t, filepath.Join(dir, "apps/api/dist/old.js"), "old")
	if err := CarryOver(prev, dir, []string{"apps/api/dist"}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("existing output in dir: err = %v", err)
	}
}

func TestOnlyOutputs(t *testing.T) {
	mk := func(t *testing.T, files ...string) string {
		root := t.TempDir()
		for _, f := range files {
			p := filepath.Join(root, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	outputs := []string{"apps/web/dist", "apps/web/stats.json"}
	if err := OnlyOutputs(mk(t, "apps/web/dist/index.html", "apps/web/dist/assets/a.js", "apps/web/stats.json"), outputs); err != nil {
		t.Fatalf("an artifact of exactly the outputs: %v", err)
	}
	for name, files := range map[string][]string{
		"a file beside the outputs":         {"apps/web/dist/index.html", "apps/web/stats.json", "apps/web/src/evil.ts"},
		"a file next to a file output":      {"apps/web/dist/index.html", "apps/web/stats.json", "apps/web/zz.js"},
		"a file at the root":                {"apps/web/dist/index.html", "apps/web/stats.json", "package.json"},
		"an output missing":                 {"apps/web/dist/index.html"},
		"a name that only starts like dist": {"apps/web/dist/index.html", "apps/web/stats.json", "apps/web/distx/a.js"},
	} {
		if err := OnlyOutputs(mk(t, files...), outputs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
