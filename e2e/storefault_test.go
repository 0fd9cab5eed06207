package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/reliability"
	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/internal/testenv/faultproxy"
	"github.com/cohuron/deploy/pkg/release"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/store/s3store"
)

// faultHost is a benchHost whose agent daemon reads a MinIO store through
// a fault-injecting proxy, while the publisher writes to MinIO directly.
type faultHost struct {
	*benchHost
	proxy   *faultproxy.Proxy
	s3      *s3store.Store
	store   string
	minio   string
	logFile string
	change  int
}

func newFaultHost(t *testing.T) *faultHost {
	h := newBenchHost(t)
	m := testenv.StartMinIO(t)
	m.SetEnv(t)
	s3, err := s3store.Open(context.Background(), "faults", "demo", s3store.Options{Endpoint: m.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := &faultHost{benchHost: h, proxy: faultproxy.Start(t, m.Endpoint), s3: s3, store: "s3://faults/demo", minio: m.Endpoint,
		logFile: filepath.Join(h.dir, "agent-run.log")}
	h.env = append(m.Env(), "AWS_CONFIG_FILE="+filepath.Join(h.dir, "none"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(h.dir, "none"))
	cfg, _ := os.ReadFile(filepath.Join(h.dir, "agent.yaml"))
	s := strings.Replace(string(cfg), "store: file://"+h.dir+"/store", "store: "+f.store+"\ns3Endpoint: "+f.proxy.URL()+"\nstoreTimeout: 2s", 1)
	s = strings.Replace(s, "interval: 2s", "interval: 1s", 1)
	os.WriteFile(filepath.Join(h.dir, "agent-s3.yaml"), []byte(s), 0o644)
	return f
}

func (f *faultHost) publish() {
	f.run("publisher", "publish", "--env", "demo", "--store", f.store, "--s3-endpoint", f.minio,
		"--key", f.dir+"/keys/cosign.key", "--manifest", f.dir+"/demo.yaml", "--repo", f.dir+"/app")
}

// startAgent runs `agent run` until the test ends.
func (f *faultHost) startAgent(t *testing.T) {
	logf, err := os.Create(f.logFile)
	if err != nil {
		t.Fatal(err)
	}
	c := f.cmd("agent", "run", "--config", "agent-s3.yaml")
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			c.Process.Kill()
		}
		logf.Close()
	})
}

// nextVersion commits a code change and returns how the API reports the
// new version once it runs.
func (f *faultHost) nextVersion(t *testing.T) string {
	f.change++
	f.codeChange(f.change)
	data, err := os.ReadFile(filepath.Join(f.dir, "app/apps/api/package.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, v, _ := strings.Cut(string(data), `"version": "`)
	v, _, _ = strings.Cut(v, `"`)
	return `"version":"` + v + `"`
}

// waitFor waits until the API reports want, or fails with the agent's log.
func (f *faultHost) waitFor(t *testing.T, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if strings.Contains(f.health(), want) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	log, _ := os.ReadFile(f.logFile)
	t.Fatalf("the API never reported %s within %s (now %q)\nagent log (tail):\n%s", want, within, f.health(), tail(string(log), 40))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestStoreFaults publishes a code change under each store fault and
// checks that the agent daemon retries (with backoff and jitter) until it
// converges, never applies a partial download, never takes a fault for an
// attack, and keeps the running release serving throughout.
func TestStoreFaults(t *testing.T) {
	f := newFaultHost(t)
	f.publish()
	f.startAgent(t)
	f.waitFor(t, `"status":"ok"`, 2*time.Minute)

	bundleGet := func(k faultproxy.Kind, times int, mut func(*faultproxy.Fault)) []faultproxy.Fault {
		fl := faultproxy.Fault{Kind: k, Method: "GET", Path: ".tar.gz$", Times: times}
		if mut != nil {
			mut(&fl)
		}
		return []faultproxy.Fault{fl}
	}
	cases := []struct {
		name, attack, defense string
		area                  string
		faults                []faultproxy.Fault
		before                func(t *testing.T) // after the faults are added, before publishing
		hold                  time.Duration      // keep the faults this long after publishing, then clear them
		want                  faultproxy.Kind    // the fault that must have fired
	}{
		{name: "5xx-burst-on-latest", want: faultproxy.Status,
			attack:  "the store answers 503 to four polls of the latest hint in a row",
			defense: "retrystore: up to 5 tries with exponential backoff and full jitter, then the daemon's own backoff",
			faults:  []faultproxy.Fault{{Kind: faultproxy.Status, Status: 503, Method: "GET", Path: "releases/demo/latest$", Times: 4}}},
		{name: "5xx-burst-on-bundle", want: faultproxy.Status,
			attack:  "the store answers 500 to the bundle download three times",
			defense: "retrystore retries opening the download; nothing is written before a 200",
			faults:  bundleGet(faultproxy.Status, 3, func(fl *faultproxy.Fault) { fl.Status = 500 })},
		{name: "timeout-on-manifest", want: faultproxy.Hang,
			attack:  "the store accepts the request for the release manifest and never answers",
			defense: "storeTimeout (response-header and read timeouts) fails the request, which is retried",
			faults:  []faultproxy.Fault{{Kind: faultproxy.Hang, Method: "GET", Path: ".yaml$", Times: 1, Delay: time.Minute}}},
		{name: "reset-mid-body", want: faultproxy.Reset,
			attack:  "the connection is reset (RST) after 1 KiB of the bundle, twice",
			defense: "the partial .part file is removed; the converge is retried as transient; size and sha256 are checked before use",
			faults:  bundleGet(faultproxy.Reset, 2, func(fl *faultproxy.Fault) { fl.After = 1024 })},
		{name: "truncated-body", want: faultproxy.Truncate,
			attack:  "the bundle body ends early (clean close before Content-Length), twice",
			defense: "unexpected EOF is a transient download failure, not a verification failure; retried",
			faults:  bundleGet(faultproxy.Truncate, 2, func(fl *faultproxy.Fault) { fl.After = 1024 })},
		{name: "slow-drip", want: faultproxy.Drip,
			attack:  "the store sends the bundle at 80 bytes/s",
			defense: "a download below 4 KiB per storeTimeout window is cancelled and retried",
			faults:  bundleGet(faultproxy.Drip, 1, func(fl *faultproxy.Fault) { fl.Chunk = 8; fl.Delay = 100 * time.Millisecond })},
		{name: "status-upload-fails", want: faultproxy.Status,
			attack:  "every status upload gets 503 during a converge",
			defense: "status reporting is best effort: the converge completes, the report follows later",
			faults:  []faultproxy.Fault{{Kind: faultproxy.Status, Status: 503, Method: "PUT", Path: "status/"}}, hold: 5 * time.Second},
		{name: "latest-names-missing-release", want: "",
			attack:  "the latest hint names a release that does not exist (yet)",
			defense: "a missing release is transient, not a rejection: nothing is marked bad and the hint is read again each poll",
			before: func(t *testing.T) {
				seqs, err := release.Seqs(context.Background(), f.s3, "demo")
				if err != nil || len(seqs) == 0 {
					t.Fatalf("releases in the store: %v, %v", seqs, err)
				}
				next := fmt.Sprintf("%d\n", seqs[len(seqs)-1]+1)
				if err := f.s3.Put(context.Background(), store.LatestKey("demo"), strings.NewReader(next), int64(len(next))); err != nil {
					t.Fatal(err)
				}
				running := f.health()
				time.Sleep(5 * time.Second) // several polls meet the missing release
				if now := f.health(); now != running {
					t.Errorf("the running release changed while latest named a missing release: %q, then %q", running, now)
				}
			}},
		{name: "store-unreachable-for-long", area: reliability.AreaResource, want: faultproxy.Refuse, hold: 40 * time.Second,
			attack:  "every store connection is dropped for 40 s while a release is published",
			defense: "the daemon backs off (doubling, capped at 5 min, plus jitter) and keeps the running release; it converges once the store is back",
			faults:  []faultproxy.Fault{{Kind: faultproxy.Refuse}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			area := tc.area
			if area == "" {
				area = reliability.AreaStore
			}
			reliability.Record(t, reliability.Case{Area: area, Name: tc.name, Attack: tc.attack, Defense: tc.defense})
			before := f.proxy.Stats()
			stop := load(f.port)
			for _, fl := range tc.faults {
				f.proxy.Add(fl)
			}
			want := f.nextVersion(t)
			if tc.before != nil {
				tc.before(t)
			}
			f.publish()
			if tc.hold > 0 {
				time.Sleep(tc.hold)
				if strings.Contains(f.health(), want) && tc.want == faultproxy.Refuse {
					t.Error("the agent converged although the store was unreachable")
				}
				f.proxy.Clear()
			}
			f.waitFor(t, want, 3*time.Minute)
			f.proxy.Clear()
			ok, failed := stop()
			after := f.proxy.Stats()
			if tc.want != "" && after.Injected[tc.want] <= before.Injected[tc.want] {
				t.Errorf("the %s fault never fired: the test proved nothing", tc.want)
			}
			if failed > 0 {
				t.Errorf("%d of %d requests to the app failed while the store misbehaved", failed, ok+failed)
			}
			t.Logf("converged; %d faults injected, app answered %d requests, %d failed", sum(after.Injected)-sum(before.Injected), ok, failed)
		})
	}

	// Nothing partial was kept, and no fault was taken for an attack.
	parts, _ := filepath.Glob(filepath.Join(f.dir, "state/bundles/*.part"))
	if len(parts) > 0 {
		t.Errorf("partial downloads left behind: %v", parts)
	}
	out := f.run("agent", "status", "--json", "--config", "agent-s3.yaml")
	if strings.Contains(out, `"rejected"`) || strings.Contains(out, "known-bad") {
		t.Errorf("a store fault was taken for a bad release:\n%s", out)
	}
	log, _ := os.ReadFile(f.logFile)
	if !strings.Contains(string(log), "retrying") && !strings.Contains(string(log), "will retry") {
		t.Errorf("the agent log shows no retry:\n%s", tail(string(log), 40))
	}
}

func sum(m map[faultproxy.Kind]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
