package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
)

// benchHost is one scratch "host": a directory store, keys, the sample
// app repository, an agent config, a PM2 daemon of its own.
type benchHost struct {
	b                  testing.TB
	dir, port, pm2Home string
	path               string
	env                []string // more environment for every command (a store's credentials)
}

func newBenchHost(b testing.TB) *benchHost {
	pm2 := testenv.Bin(b, "pm2")
	node := testenv.Bin(b, "node")
	testenv.Bin(b, "pnpm")
	dir := b.TempDir()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	h := &benchHost{b: b, dir: dir, port: port, pm2Home: filepath.Join(dir, "pm2"),
		path: strings.Join([]string{binDir, filepath.Dir(pm2), filepath.Dir(node), "/usr/bin", "/bin"}, ":")}
	b.Cleanup(func() { h.run("pm2", "kill") })
	sample, _ := filepath.Abs("../testdata/sampleapp")
	if err := os.CopyFS(filepath.Join(dir, "app"), os.DirFS(sample)); err != nil {
		b.Fatal(err)
	}
	h.git("init", "-q", "-b", "main")
	h.git("add", "-A")
	h.git("commit", "-q", "-m", "v1")
	h.run("publisher", "keygen", "--out", filepath.Join(dir, "keys"))
	os.MkdirAll(filepath.Join(dir, "secrets/etc/cohuron/demo"), 0o755)
	os.WriteFile(filepath.Join(dir, "secrets/etc/cohuron/demo/jwt-secret"), []byte("x"), 0o600)
	h.manifest("hello")
	os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte(fmt.Sprintf(`store: file://%[1]s/store
env: demo
key: %[1]s/keys/cosign.pub
root: %[1]s/opt/cohuron
backups: %[1]s/opt/cohuron-backups
stateDir: %[1]s/state
pm2Home: %[1]s/pm2
secretsDir: %[1]s/secrets
metricsAddr: "off"
interval: 2s
jitter: 0s
`, dir)), 0o644)
	return h
}

// manifest writes the demo environment with this host's port, the API in
// cluster mode (2 workers) so a reload keeps serving.
func (h *benchHost) manifest(greeting string) {
	data, err := os.ReadFile("../testdata/demo/demo.yaml")
	if err != nil {
		h.b.Fatal(err)
	}
	s := strings.ReplaceAll(string(data), "4000", h.port)
	s = strings.ReplaceAll(s, "/opt/cohuron", filepath.Join(h.dir, "opt/cohuron"))
	s = strings.Replace(s, "APP_GREETING: hello", "APP_GREETING: "+greeting, 1)
	s = strings.Replace(s, "      port: "+h.port+"\n", "      port: "+h.port+"\n      mode: cluster\n      instances: 2\n", 1)
	os.WriteFile(filepath.Join(h.dir, "demo.yaml"), []byte(s), 0o644)
}

func (h *benchHost) cmd(name string, args ...string) *exec.Cmd {
	for _, d := range strings.Split(h.path, ":") {
		if p := filepath.Join(d, name); fileExists(p) {
			name = p
			break
		}
	}
	c := exec.Command(name, args...)
	c.Dir = h.dir
	c.Env = append(testenv.GitEnv(""), "PATH="+h.path, "HOME="+h.dir, "COSIGN_PASSWORD=bench", "PM2_HOME="+h.pm2Home)
	c.Env = append(c.Env, h.env...)
	return c
}

func (h *benchHost) run(name string, args ...string) string {
	out, err := h.cmd(name, args...).CombinedOutput()
	if err != nil && name != "pm2" {
		h.b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (h *benchHost) git(args ...string) {
	c := h.cmd("git", args...)
	c.Dir = filepath.Join(h.dir, "app")
	if out, err := c.CombinedOutput(); err != nil {
		h.b.Fatalf("git: %v\n%s", err, out)
	}
}

func (h *benchHost) publish(withRepo bool) {
	args := []string{"publish", "--env", "demo", "--store", "file://" + h.dir + "/store", "--key", h.dir + "/keys/cosign.key", "--manifest", h.dir + "/demo.yaml"}
	if withRepo {
		args = append(args, "--repo", h.dir+"/app")
	}
	h.run("publisher", args...)
}

func (h *benchHost) codeChange(i int) {
	p := filepath.Join(h.dir, "app/apps/api/package.json")
	data, _ := os.ReadFile(p)
	s := strings.Replace(string(data), `"version": "`, `"version": "`+strconv.Itoa(i)+`.`, 1)
	os.WriteFile(p, []byte(s), 0o644)
	h.git("commit", "-qam", "change "+strconv.Itoa(i))
}

func (h *benchHost) health() string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + h.port + "/api/health")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	if resp.StatusCode != 200 {
		return ""
	}
	return string(buf[:n])
}

// load sends requests back to back until stopped, counting failures.
func load(port string) (stop func() (ok, failed int64)) {
	var okN, failN atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, err := c.Get("http://127.0.0.1:" + port + "/api/health")
				if err == nil && resp.StatusCode == 200 {
					okN.Add(1)
				} else if ctx.Err() == nil {
					failN.Add(1)
				}
				if err == nil {
					resp.Body.Close()
				}
				time.Sleep(10 * time.Millisecond) // about 200 requests/s over two clients
			}
		}()
	}
	return func() (int64, int64) { cancel(); wg.Wait(); return okN.Load(), failN.Load() }
}

// seedRedeploy is what the old deploy script did on every deploy, on its
// own directory, port and PM2: stop everything, back up, extract the
// bundle fresh, install dependencies, write the env file, start, wait for
// health. (The old script also ran docker compose down/up and the whole
// schema import; the sample has neither, so this baseline is generous.)
func (h *benchHost) seedRedeploy(bundle string) (total, start time.Duration) {
	t0 := time.Now()
	live := filepath.Join(h.dir, "seed/opt/cohuron")
	h.run("pm2", "delete", "all")
	if _, err := os.Stat(live); err == nil {
		os.RemoveAll(live + "-backup")
		h.run("cp", "-a", live, live+"-backup")
		os.RemoveAll(live)
	}
	os.MkdirAll(live, 0o755)
	h.run("tar", "-xzf", bundle, "-C", live)
	install := h.cmd("pnpm", "install", "--frozen-lockfile")
	install.Dir = live
	if out, err := install.CombinedOutput(); err != nil {
		h.b.Fatalf("pnpm install: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(live, "apps/api/.env"), []byte("PORT="+h.port+"\nAPP_GREETING=hello\n"), 0o644)
	t1 := time.Now()
	c := h.cmd("pm2", "start", "server.js", "--name", "seed-api", "-i", "2", "--update-env")
	c.Dir = filepath.Join(live, "apps/api")
	c.Env = append(c.Env, "PORT="+h.port, "APP_GREETING=hello")
	if out, err := c.CombinedOutput(); err != nil {
		h.b.Fatalf("pm2 start: %v\n%s", err, out)
	}
	for h.health() == "" {
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(t0), time.Since(t1)
}

func rssKB(pid int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// cpuMS is the CPU time pid and its reaped children used, in ms
// (/proc/pid/stat utime, stime, cutime, cstime; USER_HZ 100).
func cpuMS(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // f[0] is field 3
	var ticks int64
	for _, v := range f[11:15] { // fields 14-17
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return float64(ticks) * 10
}

// BenchmarkAgent measures the agent against a seed-style full redeploy in
// the same run. Run with -benchtime 1x; each figure averages 3 rounds.
// Timings are taken without load; failed requests are counted in separate
// rounds under a steady load, so the load does not skew the timings.
func BenchmarkAgent(b *testing.B) {
	const rounds = 3
	h := newBenchHost(b)
	h.publish(true)
	h.run("agent", "once", "--config", "agent.yaml")
	if h.health() == "" {
		b.Fatal("v1 not healthy")
	}
	seed := &benchHost{b: b, dir: h.dir, pm2Home: filepath.Join(h.dir, "pm2-seed"), path: h.path}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	seed.port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	b.Cleanup(func() { seed.run("pm2", "kill") })

	var codeChange, seedTotal, seedStart, rollback time.Duration
	var failedAgent, okAgent, failedSeed, okSeed int64
	change := 0
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds+1; r++ {
			underLoad := r == rounds // the last round counts failed requests
			change++
			h.codeChange(change)
			h.publish(true)
			bundles, _ := filepath.Glob(filepath.Join(h.dir, "state/bundles/*.tar.gz"))

			var stop func() (int64, int64)
			if underLoad {
				stop = load(h.port)
			}
			t0 := time.Now()
			h.run("agent", "once", "--config", "agent.yaml")
			if underLoad {
				ok, failed := stop()
				okAgent, failedAgent = okAgent+ok, failedAgent+failed
			} else {
				codeChange += time.Since(t0)
			}

			if underLoad {
				stop = load(seed.port)
			}
			tot, st := seed.seedRedeploy(bundles[0])
			if underLoad {
				ok, failed := stop()
				okSeed, failedSeed = okSeed+ok, failedSeed+failed
			} else if r > 0 { // round 0 starts the seed app for the first time
				seedTotal += tot
				seedStart += st
			}

			if !underLoad {
				// Rollback by hand to the previous release, then forward again.
				t0 = time.Now()
				h.run("agent", "rollback", "--config", "agent.yaml")
				rollback += time.Since(t0)
				h.publish(false)
				h.run("agent", "once", "--config", "agent.yaml")
			}
		}
	}
	n := float64(b.N * rounds)
	nSeed := float64(b.N * (rounds - 1))
	ms := func(d time.Duration, n float64) float64 { return float64(d.Milliseconds()) / n }
	b.ReportMetric(ms(codeChange, n), "code-change-ms")
	b.ReportMetric(ms(seedTotal, nSeed), "seed-redeploy-ms")
	b.ReportMetric((codeChange.Seconds()/n)/(seedTotal.Seconds()/nSeed), "x-seed-redeploy")
	b.ReportMetric(ms(rollback, n), "rollback-ms")
	b.ReportMetric(ms(seedStart, nSeed), "app-start-ms")
	b.ReportMetric(float64(failedAgent), "failed-req-agent")
	b.ReportMetric(float64(okAgent), "ok-req-agent")
	b.ReportMetric(float64(failedSeed), "failed-req-seed")

	// Config-only publish -> converged, with `agent run` polling every 2s.
	run := h.cmd("agent", "run", "--config", "agent.yaml")
	if err := run.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { run.Process.Signal(os.Interrupt); run.Wait() }()
	time.Sleep(5 * time.Second) // a few idle polls
	b.ReportMetric(float64(rssKB(run.Process.Pid))/1024, "idle-rss-MB")
	// Idle CPU: the agent's and its children's over 10 idle polls (the
	// store answers 304), against what one `pm2 jlist` (the observation
	// an idle poll made before it read PM2's pid files) costs, same run.
	const idlePolls = 10
	cpu0 := cpuMS(b, run.Process.Pid)
	time.Sleep(idlePolls * 2 * time.Second)
	idle := (cpuMS(b, run.Process.Pid) - cpu0) / idlePolls
	jl := h.cmd("pm2", "jlist")
	if out, err := jl.CombinedOutput(); err != nil {
		b.Fatalf("pm2 jlist: %v\n%s", err, out)
	}
	jlistMS := float64((jl.ProcessState.UserTime() + jl.ProcessState.SystemTime()).Microseconds()) / 1000
	b.ReportMetric(idle, "idle-poll-cpu-ms")
	b.ReportMetric(jlistMS, "pm2-jlist-cpu-ms")
	b.ReportMetric(idle/jlistMS, "x-jlist")
	b.Logf("idle poll: %.1f ms of CPU (agent and children, mean of %d polls at 2 s); one pm2 jlist: %.1f ms: %.2f×", idle, idlePolls, jlistMS, idle/jlistMS)

	// Drift: every process deleted by hand (PM2 does not bring those
	// back; a killed one it restarts itself). The agent must see it from
	// PM2's pid files and start them again within about one interval.
	var repair time.Duration
	for r := 0; r < rounds; r++ {
		// Apart: the agent's repair goes on checking health a while after
		// the app first answers; a delete then fails that check instead.
		time.Sleep(5 * time.Second)
		t0 := time.Now()
		h.run("pm2", "delete", "all")
		if h.health() != "" {
			b.Fatal("the app still answers after pm2 delete all")
		}
		for h.health() == "" {
			if time.Since(t0) > 60*time.Second {
				b.Fatal("the agent did not bring the deleted processes back within 60 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		repair += time.Since(t0)
	}
	repairMS := float64(repair.Milliseconds()) / rounds
	b.ReportMetric(repairMS, "drift-repair-ms")
	b.ReportMetric(repairMS/2000, "x-interval")
	b.Logf("processes deleted by hand: healthy again after %.0f ms (poll interval 2 s: %.2f×; app start alone %.0f ms)", repairMS, repairMS/2000, ms(seedStart, nSeed))
	var latency, publish time.Duration
	for r := 1; r <= rounds; r++ {
		greeting := "greeting" + strconv.Itoa(r)
		h.manifest(greeting)
		t0 := time.Now()
		h.publish(false)
		publish += time.Since(t0)
		for !strings.Contains(h.health(), greeting) {
			if time.Since(t0) > 60*time.Second {
				b.Fatalf("config-only change not live after 60s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		latency += time.Since(t0)
	}
	b.ReportMetric(float64(latency.Milliseconds())/rounds, "config-only-latency-ms")
	b.ReportMetric(float64(publish.Milliseconds())/rounds, "publish-ms")
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
