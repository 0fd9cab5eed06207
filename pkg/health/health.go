package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/cohuron/deploy/pkg/clock"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/proc"
)

// Defaults of a check and of WaitHealthy.
const (
	defaultTimeout = 5 * time.Second
	defaultWithin  = 60 * time.Second
	defaultEvery   = 500 * time.Millisecond
	defaultStatus  = http.StatusOK
	maxBody        = 64 << 10
	maxRedirects   = 3
	// execGrace is how long an exec check that timed out gets between
	// SIGTERM and SIGKILL: probes must stay short.
	execGrace = time.Second
)

// defaultClient uses no proxy (a health URL is the process's own address),
// opens a fresh connection per probe and stops after three redirects.
var defaultClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{}).DialContext,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: maxBody,
	},
	CheckRedirect: func(_ *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return http.ErrUseLastResponse
		}
		return nil
	},
}

// Checker runs health checks. The zero value is ready to use; the fields
// replace its defaults.
type Checker struct {
	// HTTP is the client for HTTP checks; default: no proxy, at most 3
	// redirects followed.
	HTTP *http.Client
	// Run runs exec checks; default proc.Run.
	Run func(ctx context.Context, c proc.Cmd) (proc.Result, error)
	// Env is the complete environment of exec checks.
	Env []string
	// Dir is the working directory of exec checks (the live release root).
	Dir string
	// Sleep waits between probes; default a timer that ends early when ctx
	// is done, returning ctx.Err().
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock WaitHealthy measures Within with; default time.Now.
	Now func() time.Time
}

// Probe runs one check once, bounded by the check's Timeout (default 5s;
// an exec check that times out gets up to 1s more to be killed).
//
// HTTP: GET the URL; it passes iff the status is ExpectStatus (default
// 200); at most 64 KiB of body are read and discarded. TCP: the address
// accepts a connection. Exec: the command exits 0.
//
// The error says what was checked, what was expected and what was found,
// such as "http http://127.0.0.1:4000/api/health: expected status 200,
// found 503" or "tcp 127.0.0.1:5173: connection refused".
func (c *Checker) Probe(ctx context.Context, h manifest.HealthCheck) error {
	if c == nil {
		c = &Checker{}
	}
	timeout := h.Timeout.Or(defaultTimeout)
	switch kinds(h) {
	case 0:
		return errors.New("empty health check: none of http, tcp and exec is set")
	case 1:
	default:
		return fmt.Errorf("invalid health check: more than one of http, tcp and exec is set (%s)", Describe(h))
	}
	switch {
	case h.HTTP != nil:
		return c.probeHTTP(ctx, h, timeout)
	case h.TCP != nil:
		return c.probeTCP(ctx, h, timeout)
	default:
		return c.probeExec(ctx, h, timeout)
	}
}

func (c *Checker) probeHTTP(ctx context.Context, h manifest.HealthCheck, timeout time.Duration) error {
	want := h.HTTP.ExpectStatus
	if want == 0 {
		want = defaultStatus
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, h.HTTP.URL, nil)
	if err != nil {
		return fail(h, "invalid request: "+errText(err), err)
	}
	client := c.HTTP
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fail(h, netReason(ctx, err, timeout), err)
	}
	// Drained so that the server sees a complete exchange; the status
	// alone decides.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if resp.StatusCode != want {
		return fail(h, fmt.Sprintf("expected status %d, found %d", want, resp.StatusCode), nil)
	}
	return nil
}

func (c *Checker) probeTCP(ctx context.Context, h manifest.HealthCheck, timeout time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(pctx, "tcp", h.TCP.Address)
	if err != nil {
		return fail(h, netReason(ctx, err, timeout), err)
	}
	_ = conn.Close()
	return nil
}

func (c *Checker) probeExec(ctx context.Context, h manifest.HealthCheck, timeout time.Duration) error {
	argv := h.Exec.Command
	if len(argv) == 0 || argv[0] == "" {
		return fail(h, "empty command", nil)
	}
	run := c.Run
	if run == nil {
		run = proc.Run
	}
	res, err := run(ctx, proc.Cmd{
		Name:      argv[0],
		Args:      argv[1:],
		Dir:       c.Dir,
		Env:       c.Env,
		Timeout:   timeout,
		Grace:     execGrace,
		MaxOutput: 4 << 10,
	})
	if err == nil {
		return nil
	}
	var ee *proc.ExitError
	switch {
	case errors.As(err, &ee):
		status := "exit " + strconv.Itoa(ee.ExitCode)
		if ee.Signal != "" {
			status = "killed by " + ee.Signal
		}
		if t := tail(ee.Output); t != "" {
			status += ": " + t
		}
		return fail(h, status, err)
	case errors.Is(err, proc.ErrTimeout):
		return fail(h, "timed out after "+timeout.String()+outputSuffix(res.Output), err)
	case ctx.Err() != nil:
		return fail(h, ctx.Err().Error(), err)
	}
	return fail(h, errText(err), err)
}

// WaitHealthy probes every `every` (default 500ms) until a probe passes or
// h.Within (default 60s), measured with c.Now, has elapsed. alive, when
// not nil, is called before each probe; its error (say, "process
// cohuron-api restarted 5 times") stops the wait at once and is returned
// wrapped. On timeout the error names the check, how long it waited and
// the last probe's error, which it wraps.
func (c *Checker) WaitHealthy(ctx context.Context, h manifest.HealthCheck, every time.Duration, alive func() error) error {
	if c == nil {
		c = &Checker{}
	}
	if every <= 0 {
		every = defaultEvery
	}
	now, sleep := c.Now, c.Sleep
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = clock.Sleep
	}
	within := h.Within.Or(defaultWithin)
	desc := Describe(h)
	start := now()
	var last error
	for probes := 1; ; probes++ {
		if alive != nil {
			if err := alive(); err != nil {
				return fmt.Errorf("waiting for %s: %w", desc, err)
			}
		}
		err := c.Probe(ctx, h)
		if err == nil {
			return nil
		}
		last = err
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for %s: %w (last probe: %w)", desc, ctx.Err(), last)
		}
		waited := now().Sub(start)
		if waited >= within {
			return &notHealthyError{Check: desc, Waited: waited, Probes: probes, Last: last}
		}
		if err := sleep(ctx, min(every, within-waited)); err != nil {
			return fmt.Errorf("waiting for %s: %w (last probe: %w)", desc, err, last)
		}
	}
}

// notHealthyError is WaitHealthy giving up after the check's Within.
type notHealthyError struct {
	Check  string        // Describe of the check
	Waited time.Duration // on the Checker's clock
	Probes int
	Last   error // the last probe's error
}

func (e *notHealthyError) Error() string {
	last := e.Last.Error()
	var pe *probeError
	if errors.As(e.Last, &pe) && pe.check == e.Check {
		last = pe.reason // the check is already named
	}
	return fmt.Sprintf("%s: not healthy after %s (%d probes); last probe: %s", e.Check, e.Waited, e.Probes, last)
}

func (e *notHealthyError) Unwrap() error { return e.Last }

// Describe returns a one-line description of a check for plans and status,
// such as "http http://127.0.0.1:4000/api/health"; credentials in URLs are
// scrubbed.
func Describe(h manifest.HealthCheck) string {
	var s string
	add := func(part string) {
		if s != "" {
			s += " + "
		}
		s += part
	}
	if h.HTTP != nil {
		add("http " + fault.Scrub(h.HTTP.URL))
	}
	if h.TCP != nil {
		add("tcp " + h.TCP.Address)
	}
	if h.Exec != nil {
		add(fmt.Sprintf("exec %v", h.Exec.Command))
	}
	if s == "" {
		return "empty health check"
	}
	return s
}

func kinds(h manifest.HealthCheck) int {
	n := 0
	for _, set := range []bool{h.HTTP != nil, h.TCP != nil, h.Exec != nil} {
		if set {
			n++
		}
	}
	return n
}

// probeError is a failed probe: which check, and what was found instead.
type probeError struct {
	check  string
	reason string
	err    error
}

func (e *probeError) Error() string { return e.check + ": " + e.reason }
func (e *probeError) Unwrap() error { return e.err }

func fail(h manifest.HealthCheck, reason string, err error) error {
	return &probeError{check: Describe(h), reason: fault.Scrub(reason), err: err}
}

// netReason turns a dial or HTTP error into what was found: "connection
// refused", "timed out after 5s", ...
func netReason(parent context.Context, err error, timeout time.Duration) string {
	if perr := parent.Err(); perr != nil {
		return perr.Error()
	}
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		return "timed out after " + timeout.String()
	}
	return errText(err)
}

// errText strips the wrappers that repeat the URL or address.
func errText(err error) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var oerr *net.OpError
	if errors.As(err, &oerr) {
		err = oerr.Err
		var serr *os.SyscallError
		if errors.As(err, &serr) {
			err = serr.Err
		}
	}
	return err.Error()
}

// tail returns the last lines of an exec check's output for its error.
func tail(out []byte) string {
	const maxLines, maxBytes = 10, 1 << 10
	out = bytes.TrimSpace(out)
	cut := false
	if len(out) > maxBytes {
		out, cut = out[len(out)-maxBytes:], true
	}
	if lines := bytes.Split(out, []byte("\n")); len(lines) > maxLines {
		out, cut = bytes.Join(lines[len(lines)-maxLines:], []byte("\n")), true
	}
	if cut {
		return "..." + string(bytes.ToValidUTF8(out, nil))
	}
	return string(out)
}

func outputSuffix(out []byte) string {
	if t := tail(out); t != "" {
		return ": " + t
	}
	return ""
}
