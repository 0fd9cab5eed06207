package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
)

// seedHost replays the old deploy script on the same machine as a
// fullHost, with its own directory, PM2, ports, compose project and
// database: stop everything, back up, extract the bundle fresh, install
// every dependency, build, compose down and up, re-import every schema
// file and the seed (wiping the data), start, wait for health.
type seedHost struct {
	h       *fullHost
	dir     string
	db      string
	project string
	ports   struct{ api, web, cache, queue int }
}

func newSeedHost(h *fullHost) *seedHost {
	s := &seedHost{h: h, dir: filepath.Join(h.dir, "seed"), project: h.project + "seed"}
	s.db = h.pg.CreateDB(h.t, "seed")
	s.ports.api, s.ports.web, s.ports.cache, s.ports.queue = testenv.FreePort(h.t), testenv.FreePort(h.t), testenv.FreePort(h.t), testenv.FreePort(h.t)
	os.MkdirAll(s.dir, 0o755)
	h.t.Cleanup(func() { s.run(s.dir, "pm2", "kill") })
	return s
}

func (s *seedHost) run(dir, name string, args ...string) string {
	c := s.h.cmd(name, args...)
	c.Dir = dir
	c.Env = append(c.Env, "PM2_HOME="+filepath.Join(s.dir, "pm2"))
	out, err := c.CombinedOutput()
	if err != nil && name != "pm2" {
		s.h.t.Fatalf("seed redeploy: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (s *seedHost) redeploy(bundle string) time.Duration {
	t0 := time.Now()
	live := filepath.Join(s.dir, "opt/cohuron")
	s.run(s.dir, "pm2", "delete", "all")
	if _, err := os.Stat(live); err == nil {
		os.RemoveAll(live + "-backup")
		s.run(s.dir, "cp", "-a", live, live+"-backup")
		os.RemoveAll(live)
	}
	os.MkdirAll(live, 0o755)
	s.run(s.dir, "tar", "-xzf", bundle, "-C", live)
	files := map[string]string{
		".env":          fmt.Sprintf("CACHE_PORT=%d\nQUEUE_PORT=%d\n", s.ports.cache, s.ports.queue),
		"apps/api/.env": fmt.Sprintf("PORT=%d\nDATABASE_URL=%s\n", s.ports.api, s.db),
		"apps/web/.env": fmt.Sprintf("PORT=%d\n", s.ports.web),
	}
	for p, data := range files {
		os.WriteFile(filepath.Join(live, p), []byte(data), 0o600)
	}
	s.run(live, "pnpm", "install", "--frozen-lockfile")
	s.run(live, "pnpm", "-r", "build")
	compose := []string{"-p", s.project, "-f", "docker-compose.yml", "--env-file", ".env"}
	s.run(live, "docker-compose", append(compose, "down")...)
	s.run(live, "docker-compose", append(compose, "up", "-d")...)
	for strings.Count(s.run(live, "docker", "ps", "-q", "--filter", "label=com.docker.compose.project="+s.project, "--filter", "health=healthy"), "\n") < 2 {
		if time.Since(t0) > 5*time.Minute {
			s.h.t.Fatal("seed redeploy: the compose services never became healthy")
		}
		time.Sleep(100 * time.Millisecond)
	}
	order, _ := os.ReadFile(filepath.Join(live, "db/ORDER.txt"))
	for _, f := range strings.Fields(string(order)) {
		s.run(live, "psql", "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", s.db, "-f", f)
	}
	eco := fmt.Sprintf(`{"apps":[
 {"name":"seed-api","cwd":"%[1]s/apps/api","script":"server.js","exec_mode":"cluster","instances":2,"env":{"PORT":"%[2]d","DATABASE_URL":"%[3]s"}},
 {"name":"seed-web","cwd":"%[1]s/apps/web","script":"server.js","env":{"PORT":"%[4]d"}}]}`, live, s.ports.api, s.db, s.ports.web)
	os.WriteFile(filepath.Join(s.dir, "eco.json"), []byte(eco), 0o600)
	s.run(s.dir, "pm2", "start", filepath.Join(s.dir, "eco.json"))
	for !s.healthy() {
		if time.Since(t0) > 5*time.Minute {
			s.h.t.Fatal("seed redeploy: the API never became healthy")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(t0)
}

func (s *seedHost) healthy() bool {
	saved := s.h.ports.api
	s.h.ports.api = s.ports.api
	defer func() { s.h.ports.api = saved }()
	_, code := s.h.health()
	return code == 200
}

// BenchmarkConverge measures the agent's converge for each kind of change
// of the Cohuron-shaped sample against the seed-style full redeploy of the
// same bundle, in the same run. Run with -benchtime 1x; each figure
// averages `rounds` changes.
func BenchmarkConverge(b *testing.B) {
	const rounds = 2
	h := newFullHost(b)
	h.publish()
	h.once(0)
	seed := newSeedHost(h)
	bundle := func() string {
		bundles, _ := filepath.Glob(filepath.Join(h.dir, "state/bundles/*.tar.gz"))
		newest, newestT := "", time.Time{}
		for _, p := range bundles {
			if fi, err := os.Stat(p); err == nil && fi.ModTime().After(newestT) {
				newest, newestT = p, fi.ModTime()
			}
		}
		return newest
	}
	seed.redeploy(bundle()) // the first start of the seed app is not counted

	origLock, _ := os.ReadFile(filepath.Join(h.app, "pnpm-lock.yaml"))
	origPkg, _ := os.ReadFile(filepath.Join(h.app, "apps/api/package.json"))
	depsLock, _ := os.ReadFile("../testdata/cohuronapp-changes/deps/pnpm-lock.yaml")
	depsPkg, _ := os.ReadFile("../testdata/cohuronapp-changes/deps/apps/api/package.json")
	change := 0
	kinds := []struct {
		name  string
		apply func() // makes the change and publishes it
	}{
		{"code", func() {
			h.edit("apps/api/server.js", func(s string) string { return s + "// change " + strconv.Itoa(change) + "\n" })
			h.commit("code")
			h.publish()
		}},
		{"config-only", func() {
			h.reversible = !h.reversible
			h.writeManifest()
			h.run("publisher", "publish", "--env", "full", "--store", h.store, "--key", filepath.Join(h.dir, "keys/cosign.key"), "--manifest", filepath.Join(h.dir, "full.yaml"))
		}},
		{"dependencies", func() {
			lock, pkg := depsLock, depsPkg
			if change%2 == 0 {
				lock, pkg = origLock, origPkg
			}
			h.edit("pnpm-lock.yaml", func(string) string { return string(lock) })
			h.edit("apps/api/package.json", func(string) string { return string(pkg) })
			h.commit("deps")
			h.publish()
		}},
		{"compose", func() {
			h.edit("docker-compose.yml", func(s string) string {
				return regexp.MustCompile(`NAME: queue\w*`).ReplaceAllString(s, "NAME: queue"+strconv.Itoa(change))
			})
			h.commit("compose")
			h.publish()
		}},
		{"schema", func() {
			file := fmt.Sprintf("db/2%d_bench.ddl", change)
			h.addSchemaFile(file, fmt.Sprintf("CREATE TABLE app.bench_%d (id int);\n", change))
			h.commit("schema")
			h.publish()
		}},
	}
	took := map[string]time.Duration{}
	var seedTotal time.Duration
	var okAgent, failedAgent, okSeed, failedSeed int64
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			for _, k := range kinds {
				change++
				k.apply()
				t0 := time.Now()
				h.once(0)
				took[k.name] += time.Since(t0)
			}
			seedTotal += seed.redeploy(bundle())
		}
		// Under load: a code change through the agent, then the seed redeploy.
		change++
		kinds[0].apply()
		stop := load(strconv.Itoa(h.ports.api))
		h.once(0)
		ok, failed := stop()
		okAgent, failedAgent = okAgent+ok, failedAgent+failed
		stop = load(strconv.Itoa(seed.ports.api))
		seed.redeploy(bundle())
		ok, failed = stop()
		okSeed, failedSeed = okSeed+ok, failedSeed+failed
	}
	n := float64(b.N * rounds)
	seedMS := float64(seedTotal.Milliseconds()) / n
	b.ReportMetric(seedMS, "seed-redeploy-ms")
	var table strings.Builder
	fmt.Fprintf(&table, "\n| change | agent | seed-style full redeploy | ratio |\n|---|---|---|---|\n")
	for _, k := range kinds {
		ms := float64(took[k.name].Milliseconds()) / n
		b.ReportMetric(ms, k.name+"-ms")
		b.ReportMetric(ms/seedMS, k.name+"-x-seed")
		fmt.Fprintf(&table, "| %s | %.0f ms | %.0f ms | %.2f× |\n", k.name, ms, seedMS, ms/seedMS)
	}
	b.ReportMetric(float64(failedAgent), "failed-req-agent")
	b.ReportMetric(float64(okAgent), "ok-req-agent")
	b.ReportMetric(float64(failedSeed), "failed-req-seed")
	fmt.Fprintf(&table, "\nrequests during a code change: agent %d ok / %d failed; seed-style redeploy %d ok / %d failed\n", okAgent, failedAgent, okSeed, failedSeed)
	b.Log(table.String())
}
