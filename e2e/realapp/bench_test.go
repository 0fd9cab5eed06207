package realapp

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// change is a real commit of the app and its parent: what a release
// changes for one kind of change.
type change struct {
	name, from, to string
	// target is the ratio to the old deployer the issue sets.
	target float64
}

// changes are in the order of the app's history: the agent's host walks
// them forward (back across the schema change between them, the files
// would drop an index, which the agent refuses without a declaration).
var changes = []change{
	{"web-only", commitBeforeWeb, commitWeb, 0.5},
	{"dependency", commitBeforeDeps, commitDeps, 0.6},
	{"API-only", commitBeforeAPI, commitAPI, 0.1},
}

// BenchmarkRealApp measures publish -> the new code answering for an
// API-only, a web-only and a dependency change of the real app (real
// commits), against the Lambda deployer's host steps for the same commits
// in the same run, and counts failed requests under ~200 requests/s
// during the API change. Run it with -benchtime 1x (make bench).
//
// The old deployer's figure is its script (fixed sleeps left out) from
// start until the API answers with the new code; the agent's is from the
// start of `publisher publish` until `agent once` returns, its health
// checks passed (the daemon's poll interval, which a push to S3 also
// waits out for the Lambda trigger, is not counted for either). For the
// API change the agent's figure is also given to the first response from
// a new worker.
func BenchmarkRealApp(b *testing.B) {
	old := map[string]time.Duration{}
	agent := map[string]time.Duration{}
	var firstNew time.Duration
	var oldLoad, agentLoad loadResult
	for i := 0; i < b.N; i++ {
		// The old deployer: each change redeployed over the previous one,
		// as it does every deploy.
		b.Run("old-deployer", func(b *testing.B) {
			h := newRealHost(b)
			h.oldDeploy(commitOld)
			for _, c := range changes {
				h.oldDeploy(c.from)
				if c.name == "API-only" {
					stop := load(b, 200)
					old[c.name] = h.oldDeploy(c.to)
					oldLoad = stop()
				} else {
					old[c.name] = h.oldDeploy(c.to)
				}
				b.Logf("old deployer, %s change: %s", c.name, old[c.name].Round(100*time.Millisecond))
			}
		})
		// The agent, on a host migrated from the old deployer.
		b.Run("agent", func(b *testing.B) {
			h := newRealHost(b)
			h.oldDeploy(commitOld)
			h.mustPublish(commitAdopt)
			h.once(0)
			for _, c := range changes {
				h.mustPublish(c.from)
				h.once(0)
				var stop func() loadResult
				var first func() time.Duration
				if c.name == "API-only" {
					stop = load(b, 200)
					first = h.watchNewWorker("cohuron-api")
				}
				start := time.Now()
				h.mustPublish(c.to)
				out := h.once(0)
				agent[c.name] = time.Since(start)
				if c.name == "API-only" {
					// Its log lines only (the plan is long, and go test
					// truncates a benchmark's log past a limit, the
					// figures' table at the end included).
					var lines []string
					for _, l := range strings.Split(out, "\n") {
						if strings.HasPrefix(l, "time=") {
							lines = append(lines, l)
						}
					}
					b.Logf("agent once, API-only change (publish started %s):\n%s", start.Format("15:04:05.000"), strings.Join(lines, "\n"))
				}
				if stop != nil {
					agentLoad = stop()
					if firstNew = first(); firstNew == 0 {
						b.Fatal("API-only change: no new API worker served a request during the change")
					}
				}
				b.Logf("agent, %s change: %s", c.name, agent[c.name].Round(100*time.Millisecond))
			}
		})
	}
	if len(old) != len(changes) || len(agent) != len(changes) {
		b.Fatal("a part of the benchmark failed")
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n| change (real commits) | agent: publish -> new code answering | old deployer's host steps | ratio | target |\n|---|---|---|---|---|\n")
	for _, c := range changes {
		ratio := agent[c.name].Seconds() / old[c.name].Seconds()
		b.ReportMetric(agent[c.name].Seconds(), c.name+"-agent-s")
		b.ReportMetric(old[c.name].Seconds(), c.name+"-old-s")
		b.ReportMetric(ratio, c.name+"-x-old")
		fmt.Fprintf(&table, "| %s (%s -> %s) | %.1f s | %.1f s | %.2f× | ≤ %.1f× |\n", c.name, c.from, c.to, agent[c.name].Seconds(), old[c.name].Seconds(), ratio, c.target)
	}
	b.ReportMetric(firstNew.Seconds(), "API-first-new-worker-s")
	b.ReportMetric(float64(agentLoad.failed), "failed-req-agent")
	b.ReportMetric(float64(oldLoad.failed), "failed-req-old")
	fmt.Fprintf(&table, "\nAPI-only change: the first response from a new API worker %.1f s after the publish started (%.2f× the old deployer).\n",
		firstNew.Seconds(), firstNew.Seconds()/old["API-only"].Seconds())
	fmt.Fprintf(&table, "Requests during the API change (%.0f/s from many loopback clients): agent %d ok / %d failed; old deployer %d ok / %d failed.\n",
		agentLoad.rate, agentLoad.ok, agentLoad.failed, oldLoad.ok, oldLoad.failed)
	for _, f := range agentLoad.failures {
		fmt.Fprintf(&table, "agent, failed request: %s\n", f)
	}
	for _, f := range oldLoad.failures {
		fmt.Fprintf(&table, "old deployer, failed request: %s\n", f)
	}
	// Printed, not logged: a benchmark that runs sub-benchmarks shows
	// its own log only under -v.
	fmt.Print(table.String())
}

// loadResult counts the requests a load generator sent.
type loadResult struct {
	ok, failed int64
	rate       float64
	failures   []string // the first few failed requests: when, and what came back
}

// load sends about rps GET /api/health a second, each on its own
// connection from another loopback address (as from many clients: the
// API rate-limits each address), until the returned stop is called.
func load(t testing.TB, rps int) (stop func() loadResult) {
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(rps))
	url := fmt.Sprintf("http://127.0.0.1:%d/api/health", apiPort)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent := time.Now()
				code, body := get(url)
				if code == http.StatusOK {
					ok.Add(1)
					return
				}
				failed.Add(1)
				mu.Lock()
				defer mu.Unlock()
				if len(failures) < 5 {
					failures = append(failures, fmt.Sprintf("%s (+%s): %d %s", sent.Format("15:04:05.000"), time.Since(sent).Round(time.Millisecond), code, tail(body, 200)))
				}
			}()
		}
	}()
	return func() loadResult {
		cancel()
		wg.Wait()
		n := ok.Load() + failed.Load()
		return loadResult{ok: ok.Load(), failed: failed.Load(), rate: float64(n) / time.Since(start).Seconds(), failures: failures}
	}
}

// watchNewWorker polls the API, noting which process served each
// request, and returns a function giving how long after the call a worker
// of process name first served one that was not among its workers when
// watchNewWorker was called and is among them when the function is called
// (0: never). It fails t if name has no workers to begin with: every
// process would then look new.
func (h *realHost) watchNewWorker(name string) func() time.Duration {
	h.t.Helper()
	before := map[int]bool{}
	for _, pid := range h.pm2Procs(h.pm2Home)[name] {
		before[pid] = true
	}
	if len(before) == 0 {
		h.t.Fatalf("watchNewWorker: PM2 (%s) lists no online worker of %s", h.pm2Home, name)
	}
	type sample struct {
		at  time.Duration
		pid int
	}
	var samples []sample
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if pid := servedBy(); pid > 0 && !before[pid] {
				samples = append(samples, sample{time.Since(start), pid})
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() time.Duration {
		cancel()
		<-done
		after := map[int]bool{}
		for _, pid := range h.pm2Procs(h.pm2Home)[name] {
			after[pid] = true
		}
		for _, s := range samples {
			if after[s.pid] {
				return s.at
			}
		}
		return 0
	}
}

// servedBy sends one request on a connection it keeps open and returns
// the pid of the process holding the server side of that connection (a
// cluster worker: the master hands connections over), or 0.
func servedBy() int {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(1+time.Now().UnixNano()%250))}
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: src}
	conn, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", apiPort))
	if err != nil {
		return 0
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(conn, "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0
	}
	local := conn.LocalAddr().(*net.TCPAddr)
	inode := socketInode(apiPort, local)
	if inode == "" {
		return 0
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); l == "socket:["+inode+"]" {
				return pid
			}
		}
	}
	return 0
}

// socketInode finds, in /proc/net/tcp, the inode of the server side of
// the connection from peer to 127.0.0.1:port.
func socketInode(port int, peer *net.TCPAddr) string {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return ""
	}
	hexAddr := func(ip net.IP, port int) string {
		ip4 := ip.To4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip4[3], ip4[2], ip4[1], ip4[0], port)
	}
	want := hexAddr(net.IPv4(127, 0, 0, 1), port) + " " + hexAddr(peer.IP, peer.Port)
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 9 && f[1]+" "+f[2] == want {
			return f[9]
		}
	}
	return ""
}
