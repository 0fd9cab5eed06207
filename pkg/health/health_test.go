package health_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cohuron/deploy/pkg/health"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/proc"
)

func dur(d time.Duration) manifest.Duration { return manifest.Duration{Duration: d} }

func httpCheck(url string) manifest.HealthCheck {
	return manifest.HealthCheck{HTTP: &manifest.HTTPCheck{URL: url}}
}

func statusServer(t *testing.T, status int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestProbeHTTP(t *testing.T) {
	ok := statusServer(t, http.StatusOK)
	unavailable := statusServer(t, http.StatusServiceUnavailable)
	noContent := statusServer(t, http.StatusNoContent)
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for range 64 { // 4 MiB, more than a probe reads
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(big.Close)
	var loop *httptest.Server
	loop = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, loop.URL+"/again", http.StatusFound)
	}))
	t.Cleanup(loop.Close)
	refused := "http://" + closedAddr(t) + "/health"

	for _, tc := range []struct {
		name    string
		check   manifest.HealthCheck
		wantErr string // empty: pass
	}{
		{"pass", httpCheck(ok.URL + "/api/health"), ""},
		{"wrong status", httpCheck(unavailable.URL + "/api/health"),
			"http " + unavailable.URL + "/api/health: expected status 200, found 503"},
		{"expected status", manifest.HealthCheck{HTTP: &manifest.HTTPCheck{URL: noContent.URL, ExpectStatus: 204}}, ""},
		{"expected status missed", manifest.HealthCheck{HTTP: &manifest.HTTPCheck{URL: ok.URL, ExpectStatus: 204}},
			"http " + ok.URL + ": expected status 204, found 200"},
		{"large body", httpCheck(big.URL), ""},
		{"redirects stop after 3", httpCheck(loop.URL), "expected status 200, found 302"},
		{"connection refused", httpCheck(refused), "http " + refused + ": connection refused"},
		{"bad url", httpCheck("::nope"), "http ::nope: invalid request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c health.Checker
			err := c.Probe(context.Background(), tc.check)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Probe = %v, want pass", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Probe = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestProbeHTTPConnectionRefusedIsErrno(t *testing.T) {
	var c health.Checker
	err := c.Probe(context.Background(), httpCheck("http://"+closedAddr(t)+"/"))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("errors.Is(%v, ECONNREFUSED) = false", err)
	}
}

func TestProbeHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })

	check := httpCheck(slow.URL + "/health")
	check.Timeout = dur(100 * time.Millisecond)
	var c health.Checker
	done := make(chan error, 1)
	go func() { done <- c.Probe(context.Background(), check) }()
	select {
	case err := <-done:
		want := "http " + slow.URL + "/health: timed out after 100ms"
		if err == nil || err.Error() != want {
			t.Errorf("Probe = %v, want %q", err, want)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("errors.Is(%v, DeadlineExceeded) = false", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Probe ignored its timeout")
	}
}

func TestProbeTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	var c health.Checker
	if err := c.Probe(context.Background(), manifest.HealthCheck{TCP: &manifest.TCPCheck{Address: l.Addr().String()}}); err != nil {
		t.Errorf("Probe listening address = %v, want pass", err)
	}

	addr := closedAddr(t)
	err = c.Probe(context.Background(), manifest.HealthCheck{TCP: &manifest.TCPCheck{Address: addr}})
	if want := "tcp " + addr + ": connection refused"; err == nil || err.Error() != want {
		t.Errorf("Probe closed address = %v, want %q", err, want)
	}
}

func TestProbeExec(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := health.Checker{Dir: dir, Env: []string{"PATH=/usr/bin:/bin", "WANT=yes"}}
	exec := func(argv ...string) manifest.HealthCheck {
		return manifest.HealthCheck{Exec: &manifest.ExecCheck{Command: argv}}
	}
	for _, tc := range []struct {
		name    string
		check   manifest.HealthCheck
		wantErr string
	}{
		{"pass in Dir", exec("test", "-f", "x"), ""},
		{"env", exec("sh", "-c", `test "$WANT" = yes`), ""},
		{"fail", exec("test", "-f", "y"), "exec [test -f y]: exit 1"},
		{"fail with output", exec("sh", "-c", "echo starting; echo database down >&2; exit 2"),
			"exec [sh -c echo starting; echo database down >&2; exit 2]: exit 2: starting\ndatabase down"},
		{"not found", exec("no-such-check-cohuron"), `exec [no-such-check-cohuron]: command "no-such-check-cohuron" not found`},
		{"empty", exec(), "exec []: empty command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Probe(context.Background(), tc.check)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Probe = %v, want pass", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("Probe = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestProbeExecTimeout(t *testing.T) {
	check := manifest.HealthCheck{Exec: &manifest.ExecCheck{Command: []string{"sleep", "100"}}, Timeout: dur(100 * time.Millisecond)}
	var c health.Checker
	done := make(chan error, 1)
	go func() { done <- c.Probe(context.Background(), check) }()
	select {
	case err := <-done:
		if want := "exec [sleep 100]: timed out after 100ms"; err == nil || err.Error() != want {
			t.Errorf("Probe = %v, want %q", err, want)
		}
		if !errors.Is(err, proc.ErrTimeout) {
			t.Errorf("errors.Is(%v, proc.ErrTimeout) = false", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("exec check ignored its timeout")
	}
}

func TestProbeExecUsesRun(t *testing.T) {
	var got proc.Cmd
	c := health.Checker{
		Dir: "/srv/app/current",
		Env: []string{"PATH=/bin"},
		Run: func(ctx context.Context, cmd proc.Cmd) (proc.Result, error) {
			got = cmd
			return proc.Result{}, nil
		},
	}
	check := manifest.HealthCheck{Exec: &manifest.ExecCheck{Command: []string{"bin/check", "--quick"}}, Timeout: dur(7 * time.Second)}
	if err := c.Probe(context.Background(), check); err != nil {
		t.Fatal(err)
	}
	if got.Name != "bin/check" || len(got.Args) != 1 || got.Args[0] != "--quick" || got.Dir != "/srv/app/current" ||
		len(got.Env) != 1 || got.Env[0] != "PATH=/bin" || got.Timeout != 7*time.Second {
		t.Errorf("Run got %+v", got)
	}
}

func TestProbeInvalidCheck(t *testing.T) {
	var c health.Checker
	if err := c.Probe(context.Background(), manifest.HealthCheck{}); err == nil {
		t.Error("empty check: want an error")
	}
	both := manifest.HealthCheck{HTTP: &manifest.HTTPCheck{URL: "http://127.0.0.1:1/"}, TCP: &manifest.TCPCheck{Address: "127.0.0.1:1"}}
	if err := c.Probe(context.Background(), both); err == nil || !strings.Contains(err.Error(), "more than one") {
		t.Errorf("two kinds: Probe = %v, want an error", err)
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		check manifest.HealthCheck
		want  string
	}{
		{httpCheck("http://127.0.0.1:4000/api/health"), "http http://127.0.0.1:4000/api/health"},
		{httpCheck("http://user:secret@127.0.0.1:4000/"), "http http://REDACTED@127.0.0.1:4000/"},
		{manifest.HealthCheck{TCP: &manifest.TCPCheck{Address: "127.0.0.1:5173"}}, "tcp 127.0.0.1:5173"},
		{manifest.HealthCheck{Exec: &manifest.ExecCheck{Command: []string{"test", "-f", "x"}}}, "exec [test -f x]"},
		{manifest.HealthCheck{}, "empty health check"},
	} {
		if got := health.Describe(tc.check); got != tc.want {
			t.Errorf("Describe = %q, want %q", got, tc.want)
		}
	}
}

// fakeClock is a clock that only Sleep moves.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	f.sleeps = append(f.sleeps, d)
	return nil
}

func (f *fakeClock) checker() *health.Checker { return &health.Checker{Now: f.Now, Sleep: f.Sleep} }

// countingServer answers 503 until request number healthyAt (never if 0).
func countingServer(t *testing.T, healthyAt int64) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := n.Add(1); healthyAt == 0 || i < healthyAt {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestWaitHealthyPassesOnThirdProbe(t *testing.T) {
	srv, requests := countingServer(t, 3)
	clock := newFakeClock()
	check := httpCheck(srv.URL)
	check.Within = dur(time.Minute)
	if err := clock.checker().WaitHealthy(context.Background(), check, 0, nil); err != nil {
		t.Fatalf("WaitHealthy = %v, want pass", err)
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	if want := []time.Duration{500 * time.Millisecond, 500 * time.Millisecond}; !equal(clock.sleeps, want) {
		t.Errorf("slept %v, want %v", clock.sleeps, want)
	}
}

func TestWaitHealthyTimesOut(t *testing.T) {
	srv, requests := countingServer(t, 0)
	clock := newFakeClock()
	check := httpCheck(srv.URL + "/api/health")
	check.Within = dur(2 * time.Second)
	err := clock.checker().WaitHealthy(context.Background(), check, 500*time.Millisecond, nil)
	want := "http " + srv.URL + "/api/health: not healthy after 2s (5 probes); last probe: expected status 200, found 503"
	if err == nil || err.Error() != want {
		t.Fatalf("WaitHealthy = %v, want %q", err, want)
	}
	if n := requests.Load(); n != 5 {
		t.Errorf("%d requests, want 5 (at 0, 0.5, 1, 1.5 and 2s)", n)
	}
	if got := clock.Now().Sub(newFakeClock().Now()); got != 2*time.Second {
		t.Errorf("waited %v on the clock, want 2s", got)
	}
}

func TestWaitHealthyLastSleepIsCappedAtWithin(t *testing.T) {
	srv, _ := countingServer(t, 0)
	clock := newFakeClock()
	check := httpCheck(srv.URL)
	check.Within = dur(1200 * time.Millisecond)
	if err := clock.checker().WaitHealthy(context.Background(), check, 500*time.Millisecond, nil); err == nil {
		t.Fatal("want an error")
	}
	want := []time.Duration{500 * time.Millisecond, 500 * time.Millisecond, 200 * time.Millisecond}
	if !equal(clock.sleeps, want) {
		t.Errorf("slept %v, want %v", clock.sleeps, want)
	}
}

func TestWaitHealthyStopsWhenNotAlive(t *testing.T) {
	srv, requests := countingServer(t, 0)
	clock := newFakeClock()
	check := httpCheck(srv.URL)
	check.Within = dur(time.Hour)
	crashed := errors.New("process cohuron-api restarted 5 times")
	calls := 0
	alive := func() error {
		calls++
		if calls == 2 {
			return crashed
		}
		return nil
	}
	err := clock.checker().WaitHealthy(context.Background(), check, 0, alive)
	if !errors.Is(err, crashed) {
		t.Fatalf("WaitHealthy = %v, want the alive error", err)
	}
	if !strings.Contains(err.Error(), "http "+srv.URL) {
		t.Errorf("error %q does not name the check", err)
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if len(clock.sleeps) != 1 {
		t.Errorf("slept %v, want once", clock.sleeps)
	}
}

func TestWaitHealthyContextCanceled(t *testing.T) {
	srv, _ := countingServer(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := newFakeClock().checker().WaitHealthy(ctx, httpCheck(srv.URL), 0, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("WaitHealthy = %v, want context.Canceled", err)
	}
}

func equal(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
