package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// Defaults of Cmd.
const (
	defaultGrace     = 5 * time.Second
	defaultMaxOutput = 64 << 10
	// defaultPath is searched for Cmd.Name when Cmd.Env has no PATH.
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// drainDelay is how long output is still read after the process exited
// (or was killed): a grandchild that keeps the pipe open must not hang Run.
const drainDelay = time.Second

// Cmd describes one command. The zero values of Timeout, Grace and
// MaxOutput mean no timeout, 5s and 64 KiB.
type Cmd struct {
	// Name is the program. A name without a slash is looked up in the PATH
	// of Env (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	// when Env has none); relative PATH entries are
	// ignored. A relative name with a slash is relative to Dir.
	Name string
	Args []string
	Dir  string
	// Env is the complete environment; nothing is inherited implicitly.
	Env []string
	// Timeout bounds the run; 0 means no timeout beyond ctx.
	Timeout time.Duration
	// Grace is the time between SIGTERM to the process group and SIGKILL.
	Grace time.Duration
	// User, when set and we are root, is the user (name or numeric uid)
	// to run as: it sets uid, gid and supplementary groups. HOME, USER and
	// LOGNAME in Env are the caller's job (see LookupUser). When we are
	// not root, User is ignored and the command runs as we do.
	User string
	// Stdin is optional; without it the command reads from /dev/null.
	Stdin io.Reader
	// Output, when set, also receives the combined output as it is
	// produced (for a log). It is written from one goroutine and must not
	// block for long; after its first error it is no longer written.
	Output io.Writer
	// MaxOutput is how many bytes of combined output Result keeps (the
	// tail).
	MaxOutput int
}

// Result is what a finished command left.
type Result struct {
	// ExitCode is the exit status, or -1 when the process was killed by a
	// signal or did not start.
	ExitCode int
	// Output is the tail of the combined stdout and stderr.
	Output []byte
	// Duration is from start to the leader's exit.
	Duration time.Duration
}

// ErrTimeout is returned wrapped (test with errors.Is) when Cmd.Timeout
// elapsed; the process group was killed.
var ErrTimeout = errors.New("timed out")

// Run runs the command to completion in its own process group.
//
// On ctx cancel or Timeout the whole group gets SIGTERM, then SIGKILL after
// Grace; the error wraps ctx.Err() or ErrTimeout. A non-zero exit gives an
// *ExitError. Run returns only after the process was reaped and its output
// read; output still held open by a grandchild after the leader exited is
// read for at most a second more. Result is filled as far as known, also
// with an error.
func Run(ctx context.Context, c Cmd) (Result, error) {
	p, err := start(ctx, c)
	if err != nil {
		return Result{ExitCode: -1}, err
	}
	<-p.done
	return p.result, p.err
}

// Start starts a long-running command in its own process group (for tests
// and daemons). Cancelling ctx or reaching Timeout stops it as in Run.
func Start(ctx context.Context, c Cmd) (*Process, error) {
	return start(ctx, c)
}

// Process is a started command.
type Process struct {
	cmd   *exec.Cmd
	desc  string
	grace time.Duration
	began time.Time
	out   *os.File // read end of the combined output pipe
	tail  tailBuffer

	exited  chan struct{} // the leader was reaped
	outDone chan struct{} // the output reader returned
	done    chan struct{} // exited, output drained, result set

	mu       sync.Mutex
	stop     stopCause
	stopErr  error         // ctx.Err() for stopContext
	timeout  time.Duration // for stopTimeout
	killDone chan struct{} // non-nil once a kill sequence started

	// Set before done is closed.
	result Result
	err    error
}

type stopCause int

const (
	stopNone stopCause = iota
	stopTimeout
	stopContext
	stopRequested
)

// Pid returns the process id of the leader, which is also the process
// group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and its output was read.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns what Run would: nil, an
// *ExitError, or an error wrapping ErrTimeout or the context's error.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Stop sends SIGTERM to the process group, SIGKILL after grace (grace <= 0
// means the Cmd's Grace), and waits until the process is reaped. It
// returns nil when the process ended because it was stopped (whatever its
// exit status); when the process had already exited on its own, Stop
// signals nothing and returns what Wait returns.
func (p *Process) Stop(grace time.Duration) error {
	if grace <= 0 {
		grace = p.grace
	}
	p.terminate(stopRequested, nil, grace)
	<-p.done
	p.mu.Lock()
	stopped := p.stop != stopNone
	p.mu.Unlock()
	if stopped {
		return nil
	}
	return p.err
}

func start(ctx context.Context, c Cmd) (*Process, error) {
	desc := describe(c)
	if c.Name == "" {
		return nil, errors.New("proc: empty command name")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: not started: %w", desc, err)
	}
	path, err := lookPath(c.Name, c.Env)
	if err != nil {
		return nil, err
	}
	env := c.Env
	if env == nil {
		env = []string{} // nil would make os/exec inherit our environment
	}
	// Pdeathsig: a child never outlives an agent killed by SIGKILL, so
	// recovery does not race an orphaned compose, pnpm or psql.
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if c.User != "" && os.Geteuid() == 0 {
		u, err := LookupUser(c.User)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", desc, err)
		}
		attr.Credential = &syscall.Credential{Uid: u.Uid, Gid: u.Gid, Groups: u.Groups}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%s: output pipe: %w", desc, err)
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        append([]string{c.Name}, c.Args...),
		Dir:         c.Dir,
		Env:         env,
		Stdin:       c.Stdin,
		Stdout:      w,
		Stderr:      w,
		SysProcAttr: attr,
		// Bounds Wait when a Stdin reader is still being copied after exit.
		WaitDelay: drainDelay,
	}
	grace := c.Grace
	if grace <= 0 {
		grace = defaultGrace
	}
	max := c.MaxOutput
	if max <= 0 {
		max = defaultMaxOutput
	}
	p := &Process{
		cmd:     cmd,
		desc:    desc,
		grace:   grace,
		out:     r,
		tail:    tailBuffer{max: max},
		exited:  make(chan struct{}),
		outDone: make(chan struct{}),
		done:    make(chan struct{}),
	}
	p.began = time.Now()
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("starting %s: %w", desc, err)
	}
	w.Close() // the child holds its own copy; EOF comes when all writers exit
	go p.readOutput(c.Output)
	go p.wait()
	go p.supervise(ctx, c.Timeout)
	return p, nil
}

func (p *Process) readOutput(w io.Writer) {
	defer close(p.outDone)
	buf := make([]byte, 32<<10)
	for {
		n, err := p.out.Read(buf)
		if n > 0 {
			p.tail.Write(buf[:n])
			if w != nil {
				if _, werr := w.Write(buf[:n]); werr != nil {
					w = nil
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// supervise stops the process on ctx cancel or timeout.
func (p *Process) supervise(ctx context.Context, timeout time.Duration) {
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		p.terminate(stopContext, ctx.Err(), p.grace)
	case <-expired:
		p.mu.Lock()
		p.timeout = timeout
		p.mu.Unlock()
		p.terminate(stopTimeout, nil, p.grace)
	}
}

// terminate starts the kill sequence unless one is running or the leader
// has already been reaped: after that the group id may belong to someone
// else.
func (p *Process) terminate(cause stopCause, err error, grace time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killDone != nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	p.stop, p.stopErr = cause, err
	p.killDone = make(chan struct{})
	go p.kill(grace, p.killDone)
}

// kill sends SIGTERM to the group, then SIGKILL after grace unless the
// whole group is gone before.
func (p *Process) kill(grace time.Duration, done chan struct{}) {
	defer close(done)
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	select {
	case <-deadline.C:
	case <-p.exited:
		// The leader is gone; give the rest of the group the same grace.
		// Orphaned zombies count as members until init reaps them, so with
		// a slow or non-reaping init this waits out the grace period.
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for syscall.Kill(-pgid, 0) == nil {
			select {
			case <-deadline.C:
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				return
			case <-tick.C:
			}
		}
		return
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func (p *Process) wait() {
	waitErr := p.cmd.Wait()
	dur := time.Since(p.began)
	close(p.exited)

	// After close(exited) no kill sequence can start; wait for a running
	// one so that nothing of the group outlives Run.
	p.mu.Lock()
	killDone := p.killDone
	p.mu.Unlock()
	if killDone != nil {
		<-killDone
	}

	t := time.NewTimer(drainDelay)
	select {
	case <-p.outDone:
	case <-t.C:
		_ = p.out.SetReadDeadline(time.Now())
		<-p.outDone
	}
	t.Stop()
	p.out.Close()

	p.finish(waitErr, dur)
	close(p.done)
}

func (p *Process) finish(waitErr error, dur time.Duration) {
	out := p.tail.Bytes()
	res := Result{ExitCode: -1, Output: out, Duration: dur}
	state := p.cmd.ProcessState
	if state != nil {
		res.ExitCode = state.ExitCode()
	}
	p.result = res

	p.mu.Lock()
	cause, causeErr, timeout := p.stop, p.stopErr, p.timeout
	p.mu.Unlock()

	switch {
	case cause == stopTimeout:
		p.err = fmt.Errorf("%s: %w after %s; process group killed%s", p.desc, ErrTimeout, timeout, outputSuffix(out))
	case cause == stopContext:
		p.err = fmt.Errorf("%s: stopped: %w; process group killed%s", p.desc, causeErr, outputSuffix(out))
	case state == nil:
		p.err = fmt.Errorf("waiting for %s: %w", p.desc, waitErr)
	case !state.Success():
		ee := &ExitError{Cmd: p.desc, ExitCode: state.ExitCode(), Output: out}
		if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			ee.ExitCode = -1
			ee.Signal = signalName(ws.Signal())
		}
		p.err = ee
	}
}

// describe renders the command for error messages, quoting arguments that
// need it and bounding the length.
func describe(c Cmd) string {
	var b strings.Builder
	for i, a := range append([]string{c.Name}, c.Args...) {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`|&;<>()*?[]#~") {
			a = strconv.Quote(a)
		}
		b.WriteString(a)
	}
	s := b.String()
	if len(s) > 200 {
		cut := 197
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

func outputSuffix(out []byte) string {
	if t := tailLines(out); t != "" {
		return ": " + t
	}
	return ""
}

// OpenLog opens (appending, 0640) a log for a child's output (Cmd.Output),
// creating its directory (0750).
func OpenLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening log: %w", err)
	}
	return f, nil
}
