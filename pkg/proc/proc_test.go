package proc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cohuron/deploy/pkg/proc"
)

// hangLimit is the generous upper bound that turns a hang into a failure.
const hangLimit = 20 * time.Second

// run calls proc.Run, failing the test instead of hanging.
func run(t *testing.T, ctx context.Context, c proc.Cmd) (proc.Result, error) {
	t.Helper()
	type ret struct {
		res proc.Result
		err error
	}
	ch := make(chan ret, 1)
	go func() {
		res, err := proc.Run(ctx, c)
		ch <- ret{res, err}
	}()
	select {
	case r := <-ch:
		return r.res, r.err
	case <-time.After(hangLimit):
		t.Fatalf("Run(%s %q) did not return within %s", c.Name, c.Args, hangLimit)
		return proc.Result{}, nil
	}
}

func sh(script string) proc.Cmd {
	return proc.Cmd{Name: "sh", Args: []string{"-c", script}}
}

// watcher is an Output writer that reports when a line has been written.
type watcher struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func newWatcher() *watcher { return &watcher{lines: make(chan string, 100)} }

func (w *watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.Reset()
			w.buf.WriteString(line)
			return len(p), nil
		}
		select {
		case w.lines <- strings.TrimSpace(line):
		default:
		}
	}
}

func (w *watcher) next(t *testing.T) string {
	t.Helper()
	select {
	case l := <-w.lines:
		return l
	case <-time.After(hangLimit):
		t.Fatalf("no output line within %s", hangLimit)
		return ""
	}
}

// liveGroupMembers lists the processes of group pgid that are not zombies.
func liveGroupMembers(t *testing.T, pgid int) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 3 {
			continue
		}
		if fields[2] == strconv.Itoa(pgid) && fields[0] != "Z" && fields[0] != "X" {
			live = append(live, strings.TrimSpace(s[:i+1]))
		}
	}
	return live
}

// waitGroupGone fails unless every process of group pgid dies; SIGKILL is
// delivered asynchronously, hence the polling.
func waitGroupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(hangLimit)
	for {
		live := liveGroupMembers(t, pgid)
		if len(live) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still has live processes: %v", pgid, live)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunOutput(t *testing.T) {
	res, err := run(t, context.Background(), sh("echo hello; echo oops >&2"))
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Errorf("ExitCode = %d, want 0", res.ExitCode)
	}
	if got, want := string(res.Output), "hello\noops\n"; got != want {
		t.Errorf("Output = %q, want %q", got, want)
	}
	if res.Duration <= 0 {
		t.Errorf("Duration = %v, want > 0", res.Duration)
	}
}

func TestRunExitCode(t *testing.T) {
	res, err := run(t, context.Background(), sh(`i=1; while [ $i -le 100 ]; do echo line$i; i=$((i+1)); done; exit 3`))
	var ee *proc.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("error = %v (%T), want *proc.ExitError", err, err)
	}
	if ee.ExitCode != 3 || res.ExitCode != 3 || ee.Signal != "" {
		t.Errorf("ExitError code %d signal %q, Result code %d; want 3, none, 3", ee.ExitCode, ee.Signal, res.ExitCode)
	}
	if !bytes.HasSuffix(ee.Output, []byte("line100\n")) {
		t.Errorf("ExitError.Output does not end with the last line: %q", ee.Output)
	}
	msg := err.Error()
	for _, want := range []string{`sh -c "i=1;`, "exit 3", "line81\nline82", "line100"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "line80\n") {
		t.Errorf("error quotes more than 20 lines: %q", msg)
	}
}

func TestExitErrorBoundsOutput(t *testing.T) {
	_, err := run(t, context.Background(), sh(`i=0; while [ $i -lt 50 ]; do printf '%0500d\n' $i; i=$((i+1)); done; exit 1`))
	if err == nil {
		t.Fatal("want an error")
	}
	if n := len(err.Error()); n > 2300 {
		t.Errorf("error message is %d bytes, want about 2 KiB at most", n)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("%0500d", 49)) {
		t.Errorf("error does not end with the last line")
	}
}

func TestRunNotFound(t *testing.T) {
	_, err := run(t, context.Background(), proc.Cmd{Name: "no-such-command-cohuron"})
	if err == nil || !strings.Contains(err.Error(), `"no-such-command-cohuron" not found`) {
		t.Errorf("error = %v, want a command-not-found error", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}

	// The PATH searched is the one in Env, not ours.
	_, err = run(t, context.Background(), proc.Cmd{Name: "sh", Env: []string{"PATH=/nonexistent"}})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/nonexistent") {
		t.Errorf("with PATH=/nonexistent: error = %v, want not found in /nonexistent", err)
	}

	_, err = run(t, context.Background(), proc.Cmd{Name: "/nonexistent/prog"})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absolute path: error = %v, want fs.ErrNotExist", err)
	}

	if _, err := run(t, context.Background(), proc.Cmd{}); err == nil {
		t.Error("empty Name: want an error")
	}
}

func TestRunTimeoutKillsGroup(t *testing.T) {
	// The timeout leaves the shell ample time to print its pid even on a
	// loaded machine, so the group check below always runs.
	c := sh(`sleep 100 & echo $$; sleep 100`)
	c.Timeout = 2 * time.Second
	c.Grace = time.Second
	res, err := run(t, context.Background(), c)
	if !errors.Is(err, proc.ErrTimeout) {
		t.Fatalf("error = %v, want ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "timed out after 2s") {
		t.Errorf("error = %q, want it to say how long", err)
	}
	if res.ExitCode != -1 {
		t.Errorf("ExitCode = %d, want -1 (killed)", res.ExitCode)
	}
	pgid, perr := strconv.Atoi(strings.TrimSpace(string(res.Output)))
	if perr != nil {
		t.Fatalf("shell printed no pid within the 2s timeout (%q); cannot check its group", res.Output)
	}
	waitGroupGone(t, pgid)
}

func TestRunCancelKillsGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newWatcher()
	c := sh(`sleep 100 & echo $$; sleep 100`)
	c.Output = w
	c.Grace = time.Second
	go func() {
		select {
		case <-w.lines:
		case <-time.After(hangLimit):
		}
		cancel()
	}()
	res, err := run(t, ctx, c)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	pgid, perr := strconv.Atoi(strings.TrimSpace(string(res.Output)))
	if perr != nil {
		t.Fatalf("output %q: %v", res.Output, perr)
	}
	waitGroupGone(t, pgid)
}

func TestCanceledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := run(t, ctx, sh("echo should not run"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
}

func TestSigtermIgnoredGetsSigkillAfterGrace(t *testing.T) {
	w := newWatcher()
	c := sh(`trap "" TERM; echo ready; sleep 100`) // sleep inherits the ignored TERM
	c.Output = w
	p, err := proc.Start(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if l := w.next(t); l != "ready" {
		t.Fatalf("first line %q, want ready", l)
	}
	const grace = 300 * time.Millisecond
	begin := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(grace) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Stop = %v, want nil", err)
		}
	case <-time.After(hangLimit):
		t.Fatal("Stop hung")
	}
	if waited := time.Since(begin); waited < grace {
		t.Errorf("Stop returned after %v, before the grace period %v", waited, grace)
	}
	var ee *proc.ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.Signal != "SIGKILL" || ee.ExitCode != -1 {
		t.Errorf("Wait = %v, want killed by SIGKILL", err)
	}
	waitGroupGone(t, p.Pid())
}

func TestEnvIsExplicit(t *testing.T) {
	t.Setenv("PROC_TEST_LEAK", "leaked")
	res, err := run(t, context.Background(), proc.Cmd{Name: "env", Env: []string{"FOO=bar"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Output); got != "FOO=bar\n" {
		t.Errorf("child environment = %q, want only FOO=bar", got)
	}

	res, err = run(t, context.Background(), proc.Cmd{Name: "env"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Output) != 0 {
		t.Errorf("nil Env: child environment = %q, want empty", res.Output)
	}
}

func TestOutputCapKeepsTail(t *testing.T) {
	c := sh(`i=1; while [ $i -le 1000 ]; do echo line$i; i=$((i+1)); done`)
	c.MaxOutput = 100
	res, err := run(t, context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Output) != 100 {
		t.Errorf("len(Output) = %d, want 100", len(res.Output))
	}
	if !bytes.HasSuffix(res.Output, []byte("line999\nline1000\n")) {
		t.Errorf("Output = %q, want the tail", res.Output)
	}
}

func TestOutputWriterGetsStream(t *testing.T) {
	var want strings.Builder
	for i := 1; i <= 1000; i++ {
		fmt.Fprintf(&want, "line%d\n", i)
	}
	var log bytes.Buffer
	c := sh(`i=1; while [ $i -le 1000 ]; do echo line$i; i=$((i+1)); done`)
	c.MaxOutput = 10
	c.Output = &log
	if _, err := run(t, context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if log.String() != want.String() {
		t.Errorf("Output writer got %d bytes, want all %d", log.Len(), want.Len())
	}
}

func TestStdinAndDir(t *testing.T) {
	dir := t.TempDir()
	c := sh(`pwd; cat`)
	c.Dir = dir
	c.Stdin = strings.NewReader("from stdin\n")
	res, err := run(t, context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(res.Output), real+"\nfrom stdin\n"; got != want {
		t.Errorf("Output = %q, want %q", got, want)
	}
}

// A background grandchild that keeps the output pipe open must not keep Run
// waiting once the command itself has exited.
func TestGrandchildHoldingPipeDoesNotHang(t *testing.T) {
	res, err := run(t, context.Background(), sh(`sleep 100 & echo $!`))
	if err != nil {
		t.Fatal(err)
	}
	pid, perr := strconv.Atoi(strings.TrimSpace(string(res.Output)))
	if perr != nil {
		t.Fatalf("output %q: %v", res.Output, perr)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func TestUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	nobody, err := proc.LookupUser("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	byID, err := proc.LookupUser(strconv.Itoa(int(nobody.Uid)))
	if err != nil || byID.Uid != nobody.Uid || byID.Name != "nobody" {
		t.Errorf("LookupUser(%d) = %+v, %v; want nobody", nobody.Uid, byID, err)
	}
	res, err := run(t, context.Background(), proc.Cmd{Name: "id", Args: []string{"-u"}, User: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(res.Output)), strconv.Itoa(int(nobody.Uid)); got != want {
		t.Errorf("id -u as nobody = %q, want %q", got, want)
	}
	res, err = run(t, context.Background(), proc.Cmd{Name: "id", Args: []string{"-g"}, User: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(res.Output)), strconv.Itoa(int(nobody.Gid)); got != want {
		t.Errorf("id -g as nobody = %q, want %q", got, want)
	}

	if _, err := run(t, context.Background(), proc.Cmd{Name: "id", User: "no-such-user-cohuron"}); err == nil {
		t.Error("unknown user: want an error")
	}
}

func TestLookupUserUnknown(t *testing.T) {
	if _, err := proc.LookupUser("no-such-user-cohuron"); err == nil {
		t.Error("want an error")
	}
	if _, err := proc.LookupUser(""); err == nil {
		t.Error("empty name: want an error")
	}
}

func TestStartStopDone(t *testing.T) {
	p, err := proc.Start(context.Background(), proc.Cmd{Name: "sleep", Args: []string{"100"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid() <= 0 {
		t.Errorf("Pid = %d", p.Pid())
	}
	select {
	case <-p.Done():
		t.Fatal("Done closed while the process runs")
	default:
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("Stop = %v, want nil", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	var ee *proc.ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.Signal != "SIGTERM" {
		t.Errorf("Wait = %v, want killed by SIGTERM", err)
	}
	if err := p.Stop(0); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
}

func TestStartExitsOnItsOwn(t *testing.T) {
	p, err := proc.Start(context.Background(), sh("echo bye; exit 4"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(hangLimit):
		t.Fatal("Done not closed")
	}
	var ee *proc.ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.ExitCode != 4 || string(ee.Output) != "bye\n" {
		t.Errorf("Wait = %v, want exit 4 with output", err)
	}
	if err := p.Stop(time.Second); !errors.As(err, &ee) {
		t.Errorf("Stop after exit = %v, want the exit error", err)
	}
}

func TestStartContextCancelStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := proc.Start(ctx, proc.Cmd{Name: "sleep", Args: []string{"100"}})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-p.Done():
	case <-time.After(hangLimit):
		t.Fatal("cancel did not stop the process")
	}
	if err := p.Wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait = %v, want context.Canceled", err)
	}
}

func TestPathDirs(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"no PATH: the default", nil, []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}},
		{"relative and empty entries dropped", []string{"PATH=bin::/usr/bin:./x:/opt/bin"}, []string{"/usr/bin", "/opt/bin"}},
		{"the last PATH wins", []string{"PATH=/a", "HOME=/root", "PATH=/b"}, []string{"/b"}},
		{"empty PATH searches nothing", []string{"PATH="}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := proc.PathDirs(tc.env); !slices.Equal(got, tc.want) {
				t.Errorf("PathDirs(%q) = %q, want %q", tc.env, got, tc.want)
			}
		})
	}
}
