package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cohuron/deploy/pkg/proc"
)

// Docker is a private Docker engine started for a test.
type Docker struct {
	Host string // unix:///tmp/ck-…/d.sock
	// Env is a complete environment for the docker CLI and compose
	// (DOCKER_HOST, PATH, HOME), suitable for compose.Client.Env.
	Env []string
}

// StartDocker starts a private dockerd (no iptables, no default bridge:
// containers use the host network or a user-defined bridge network, whose
// published ports docker-proxy serves on every host address) with its data
// in a temp dir, and waits until it answers (at most 60s). When t ends,
// every container is removed, the daemon stopped and its directories
// removed. It needs root and the docker.io package (dockerd and the docker
// CLI); otherwise, or when dockerd cannot start, it skips t (fails under
// CI).
func StartDocker(t testing.TB) *Docker {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "a Docker engine", "dockerd needs root")
	}
	dockerd := Bin(t, "dockerd")
	Bin(t, "docker")
	dataRoot := filepath.Join(t.TempDir(), "data")
	home := t.TempDir()
	// The exec root holds unix sockets (containerd's, the shims'), whose
	// paths must stay under 108 bytes: keep it short.
	execRoot, err := os.MkdirTemp("/tmp", "ck-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(execRoot, "d.sock")
	d := &Docker{Host: "unix://" + sock}
	d.Env = []string{"DOCKER_HOST=" + d.Host, "PATH=" + os.Getenv("PATH"), "HOME=" + home}
	logPath := filepath.Join(home, "dockerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proc.Start(context.Background(), proc.Cmd{
		Name: dockerd,
		Args: []string{"--iptables=false", "--ip-forward=false", "--bridge=none",
			"--data-root", dataRoot, "--exec-root", filepath.Join(execRoot, "e"),
			"-H", d.Host, "--pidfile", filepath.Join(execRoot, "dockerd.pid")},
		Env:    os.Environ(),
		Output: logf,
		Grace:  30 * time.Second,
	})
	if err != nil {
		os.RemoveAll(execRoot)
		Missing(t, "a Docker engine", "starting dockerd: "+err.Error())
	}
	t.Cleanup(func() {
		d.removeContainers(t)
		p.Stop(30 * time.Second)
		logf.Close()
		unmountUnder(t, execRoot, dataRoot)
		os.RemoveAll(execRoot)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		_, err := proc.Run(ctx, proc.Cmd{Name: "docker", Args: []string{"version"}, Env: d.Env, Timeout: 10 * time.Second})
		if err == nil {
			return d
		}
		select {
		case <-p.Done():
			Missing(t, "a Docker engine", fmt.Sprintf("dockerd exited early: %v\n%s", p.Wait(), tailFile(logPath)))
		case <-ctx.Done():
			Missing(t, "a Docker engine", fmt.Sprintf("dockerd not answering after 60s: %v\n%s", err, tailFile(logPath)))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// CLI runs the docker CLI against this engine and returns its output;
// a non-zero exit fails t.
func (d *Docker) CLI(t testing.TB, args ...string) string {
	t.Helper()
	res, err := proc.Run(context.Background(), proc.Cmd{Name: "docker", Args: args, Env: d.Env, Timeout: 5 * time.Minute, MaxOutput: 1 << 20})
	if err != nil {
		t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return string(res.Output)
}

// WaitHealthy waits until every container (name or id) reports the health
// status healthy, at most timeout, and returns how long that took. It fails
// t at once when one has exited or has no healthcheck, and after timeout
// naming each one not healthy with its status, its last healthcheck output
// and the tail of its log.
func (d *Docker) WaitHealthy(t testing.TB, timeout time.Duration, containers ...string) time.Duration {
	t.Helper()
	began := time.Now()
	deadline := began.Add(timeout)
	for {
		res, err := proc.Run(context.Background(), proc.Cmd{Name: "docker", Env: d.Env, Timeout: time.Minute, MaxOutput: 1 << 20,
			Args: append([]string{"inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}"}, containers...)})
		if err != nil {
			t.Fatalf("inspecting containers %s: %v", strings.Join(containers, ", "), err)
		}
		lines := strings.Split(strings.TrimSpace(string(res.Output)), "\n")
		if len(lines) != len(containers) {
			t.Fatalf("docker inspect of %d containers printed %d lines: %s", len(containers), len(lines), res.Output)
		}
		var waiting []string
		for i, line := range lines {
			status, health, _ := strings.Cut(line, " ")
			switch {
			case health == "healthy":
				continue
			case health == "none":
				t.Fatalf("container %s has no healthcheck (status %s)", containers[i], status)
			case status == "exited" || status == "dead":
				t.Fatalf("container %s %s before it was healthy:\n%s", containers[i], status, d.describe(containers[i]))
			}
			waiting = append(waiting, containers[i]+" ("+status+", "+health+")")
		}
		if len(waiting) == 0 {
			return time.Since(began)
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for i, c := range containers {
				if strings.HasSuffix(lines[i], " healthy") {
					continue
				}
				fmt.Fprintf(&b, "\n%s:\n%s", c, d.describe(c))
			}
			t.Fatalf("after %v, not healthy: %s%s", timeout, strings.Join(waiting, ", "), b.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// describe returns a container's health record and the tail of its log,
// for a failure message.
func (d *Docker) describe(container string) string {
	var b strings.Builder
	for _, args := range [][]string{
		{"inspect", "-f", "state {{json .State.Status}} exit {{.State.ExitCode}} health {{json .State.Health}}", container},
		{"logs", "--tail", "30", container},
	} {
		res, err := proc.Run(context.Background(), proc.Cmd{Name: "docker", Args: args, Env: d.Env, Timeout: time.Minute, MaxOutput: 16 << 10})
		if err != nil {
			fmt.Fprintf(&b, "(%v)\n", err) // names the command and quotes its output
			continue
		}
		b.Write(res.Output)
	}
	return b.String()
}

// removeContainers force-removes every container of the engine, so that
// nothing keeps running after the daemon is gone, and then its networks.
func (d *Docker) removeContainers(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := proc.Run(ctx, proc.Cmd{Name: "docker", Args: []string{"ps", "-aq"}, Env: d.Env, MaxOutput: 1 << 20})
	if err != nil {
		t.Logf("listing containers to remove: %v", err)
		return
	}
	if ids := strings.Fields(string(res.Output)); len(ids) > 0 {
		if _, err := proc.Run(ctx, proc.Cmd{Name: "docker", Args: append([]string{"rm", "-f", "-v"}, ids...), Env: d.Env}); err != nil {
			t.Logf("removing containers: %v", err)
		}
	}
	// A network's bridge outlives the daemon, in the host's namespace:
	// left behind, each takes one of the address pools every engine on
	// this machine picks from, and after about 30 no compose project
	// can create its network ("could not find an available,
	// non-overlapping IPv4 address pool").
	if _, err := proc.Run(ctx, proc.Cmd{Name: "docker", Args: []string{"network", "prune", "-f"}, Env: d.Env}); err != nil {
		t.Logf("removing networks: %v", err)
	}
}

// unmountUnder detaches what dockerd left mounted under the roots (the
// default network namespace under the exec root stays mounted after it
// exits), deepest first, so the directories can be removed.
func unmountUnder(t testing.TB, roots ...string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Logf("reading mounts: %v", err)
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		for _, r := range roots {
			if mp == r || strings.HasPrefix(mp, r+"/") {
				points = append(points, mp)
			}
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			t.Logf("unmounting %s: %v", mp, err)
		}
	}
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func tailFile(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 4<<10 {
		data = data[len(data)-4<<10:]
	}
	return string(data)
}

// RepoRoot returns the directory of the module's go.mod, found by walking
// up from the test's working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's working directory")
		}
		dir = parent
	}
}

// BuildStubImage builds testdata/stubsvc statically into a FROM-scratch
// image tagged tag, with /stub as its entrypoint (`/stub check` is its
// healthcheck; see the package comment of testdata/stubsvc).
func (d *Docker) BuildStubImage(t testing.TB, tag string) {
	t.Helper()
	root := RepoRoot(t)
	goBin := Bin(t, "go")
	dir := t.TempDir()
	Run(t, root, []string{"CGO_ENABLED=0"}, goBin, "build", "-buildvcs=false", "-trimpath",
		"-o", filepath.Join(dir, "stub"), "./testdata/stubsvc")
	dockerfile := "FROM scratch\nCOPY stub /stub\nENTRYPOINT [\"/stub\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	Run(t, dir, append(append([]string{}, d.Env...), "DOCKER_BUILDKIT=0"), "docker", "build", "-q", "-t", tag, ".")
}
