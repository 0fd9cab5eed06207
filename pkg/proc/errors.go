package proc

import (
	"bytes"
	"fmt"
	"io/fs"
	"strconv"
	"syscall"
	"unicode/utf8"

	"github.com/cohuron/deploy/pkg/fault"
)

// ExitError reports a command that ran and exited non-zero, or was killed
// by a signal (ExitCode -1 and Signal set, e.g. "SIGKILL").
type ExitError struct {
	Cmd      string
	ExitCode int
	Signal   string
	Output   []byte // tail of the combined output
}

// Error names the command, the exit code or signal and the last lines of
// output (at most 20 lines or 2 KiB), with credentials scrubbed.
func (e *ExitError) Error() string {
	status := "exit " + strconv.Itoa(e.ExitCode)
	if e.Signal != "" {
		status = "killed by " + e.Signal
	}
	return fault.Scrub(fmt.Sprintf("%s: %s%s", e.Cmd, status, outputSuffix(e.Output)))
}

// Limits of the output quoted in error messages.
const (
	tailMaxLines = 20
	tailMaxBytes = 2 << 10
)

// tailLines returns the last lines of out for an error message: at most
// tailMaxLines lines and tailMaxBytes bytes, "..." marking a cut.
func tailLines(out []byte) string {
	out = bytes.TrimRight(out, " \t\r\n")
	cut := false
	if len(out) > tailMaxBytes {
		i := len(out) - tailMaxBytes
		for i < len(out) && !utf8.RuneStart(out[i]) {
			i++
		}
		out, cut = out[i:], true
	}
	n := 0
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] == '\n' {
			n++
			if n == tailMaxLines {
				out, cut = out[i+1:], true
				break
			}
		}
	}
	if cut {
		return "...\n" + string(out)
	}
	return string(out)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) {
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max { // compact now and then, not on every write
		t.buf = t.buf[:copy(t.buf, t.buf[len(t.buf)-t.max:])]
	}
}

// Bytes returns a copy of the tail.
func (t *tailBuffer) Bytes() []byte {
	b := t.buf
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	return bytes.Clone(b)
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGABRT: "SIGABRT",
	syscall.SIGALRM: "SIGALRM",
	syscall.SIGBUS:  "SIGBUS",
	syscall.SIGFPE:  "SIGFPE",
	syscall.SIGHUP:  "SIGHUP",
	syscall.SIGILL:  "SIGILL",
	syscall.SIGINT:  "SIGINT",
	syscall.SIGKILL: "SIGKILL",
	syscall.SIGPIPE: "SIGPIPE",
	syscall.SIGQUIT: "SIGQUIT",
	syscall.SIGSEGV: "SIGSEGV",
	syscall.SIGTERM: "SIGTERM",
	syscall.SIGUSR1: "SIGUSR1",
	syscall.SIGUSR2: "SIGUSR2",
}

func signalName(s syscall.Signal) string {
	if n, ok := signalNames[s]; ok {
		return n
	}
	return "signal " + strconv.Itoa(int(s))
}

// notFoundError is a program missing from PATH. It matches fs.ErrNotExist,
// as a missing absolute path does.
type notFoundError struct {
	name, path string
}

func (e *notFoundError) Error() string {
	return fmt.Sprintf("command %q not found in PATH %s", e.name, e.path)
}

func (e *notFoundError) Is(target error) bool {
	return target == fs.ErrNotExist
}
