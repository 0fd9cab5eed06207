package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/pkg/proc"
)

// appComposeRev is where the test takes the app's docker-compose.yml
// from: the app's main branch, as deployed.
const appComposeRev = "main"

// TestAppStandins runs the app's own docker-compose.yml, unmodified, on a
// private engine with the stand-in images, and checks each service through
// the host port the file publishes. Not parallel: the file's container
// names and host ports are fixed (LockAppPorts).
func TestAppStandins(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, a Docker engine and the app's Compose services")
	}
	composeBin := Bin(t, "docker-compose")
	LockAppPorts(t)
	file := AppFile(t, appComposeRev, "docker-compose.yml")
	for _, svc := range AppServices {
		if !strings.Contains(string(file), "image: "+svc.Image) || !strings.Contains(string(file), "container_name: "+svc.Container) {
			t.Fatalf("the app's docker-compose.yml at %s has no service with image %s and container %s: AppServices is out of date\n%s", appComposeRev, svc.Image, svc.Container, file)
		}
	}
	pg := StartPostgresOpts(t, PostgresOptions{ListenBridges: true})
	appURL := pg.CreateAppDB(t)
	if want := fmt.Sprintf("postgres://app:app@127.0.0.1:%d/app?sslmode=disable", pg.Port); appURL != want {
		t.Errorf("CreateAppDB returned %s, want %s", appURL, want)
	}
	d := StartDocker(t)
	began := time.Now()
	d.BuildAppStandins(t, pg.Port)
	t.Logf("built %d stand-in images in %v", len(AppServices), time.Since(began).Round(100*time.Millisecond))

	dir := t.TempDir()
	path := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	const project = "cohuron"
	compose := func(args ...string) (string, error) {
		res, err := proc.Run(context.Background(), proc.Cmd{Name: composeBin, Dir: dir, Env: d.Env, Timeout: 5 * time.Minute, MaxOutput: 1 << 20,
			Args: append([]string{"-p", project, "-f", path}, args...)})
		return string(res.Output), err
	}
	t.Cleanup(func() {
		if out, err := compose("down", "-v", "--remove-orphans", "-t", "10"); err != nil {
			t.Errorf("docker-compose down in cleanup: %v\n%s", err, out)
		}
	})
	began = time.Now()
	if out, err := compose("up", "-d"); err != nil {
		t.Fatalf("docker-compose up -d: %v\n%s", err, out)
	}
	t.Logf("docker-compose up -d took %v", time.Since(began).Round(100*time.Millisecond))
	var containers []string
	for _, svc := range AppServices {
		containers = append(containers, svc.Container)
	}
	waited := d.WaitHealthy(t, 3*time.Minute, containers...)
	t.Logf("all %d services healthy %v after up", len(containers), waited.Round(100*time.Millisecond))

	t.Run("db", func(t *testing.T) {
		// Through docker-proxy, the stand-in and the bridge to the host's
		// PostgreSQL, which sees the container's address, not loopback.
		out := Run(t, "", []string{"PGCONNECT_TIMEOUT=10"}, filepath.Join(pg.Bin, "psql"), "-X", "-At", "-F", " ",
			"postgresql://app:app@127.0.0.1:5434/app", "-c", "select 1",
			"-c", "select current_user, host(inet_client_addr()), (select count(*) from pg_extension where extname in ('uuid-ossp', 'pgcrypto'))")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || lines[0] != "1" {
			t.Fatalf("psql printed %q, want 1 and then user, client address, extensions", out)
		}
		f := strings.Fields(lines[1])
		if len(f) != 3 || f[0] != "app" || f[2] != "2" {
			t.Errorf("psql: user, client address, extensions = %q, want app, a bridge address, 2", lines[1])
		}
		if ip := net.ParseIP(f[1]); ip == nil || ip.IsLoopback() || !ip.IsPrivate() {
			t.Errorf("the host's PostgreSQL saw the client at %s, want the db container's address on a private bridge", f[1])
		}
		// A wrong password is refused: the bridge ranges need one.
		if out, err := RunErr("", []string{"PGCONNECT_TIMEOUT=10"}, filepath.Join(pg.Bin, "psql"), "-X", "-At",
			"postgresql://app:wrong@127.0.0.1:5434/app", "-c", "select 1"); err == nil || !strings.Contains(out, "password authentication failed") {
			t.Errorf("psql with a wrong password through the stand-in: %v\n%s", err, out)
		}
	})
	t.Run("redis", func(t *testing.T) {
		c := dialHost(t, 6379)
		io.WriteString(c, "*1\r\n$4\r\nPING\r\n")
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "+PONG\r\n" {
			t.Errorf("PING on 127.0.0.1:6379 answered %q, %v; want +PONG", line, err)
		}
	})
	t.Run("minio", func(t *testing.T) {
		for _, u := range []string{"http://127.0.0.1:9000/minio/health/live", "http://127.0.0.1:9000/minio/health/ready"} {
			if code := httpStatus(t, u); code != http.StatusOK {
				t.Errorf("GET %s: %d, want 200", u, code)
			}
		}
	})
	t.Run("mailhog", func(t *testing.T) {
		c := dialHost(t, 1025)
		r := bufio.NewReader(c)
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
			t.Errorf("SMTP banner on 127.0.0.1:1025: %q, %v; want 220", line, err)
		}
		io.WriteString(c, "QUIT\r\n")
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "221 ") {
			t.Errorf("QUIT on 127.0.0.1:1025 answered %q, %v; want 221", line, err)
		}
		if code := httpStatus(t, "http://127.0.0.1:8025/"); code != http.StatusOK {
			t.Errorf("GET http://127.0.0.1:8025/: %d, want 200", code)
		}
	})
	t.Run("rabbitmq", func(t *testing.T) {
		c := dialHost(t, 5672)
		// The stand-in closes AMQP connections at once, so a client
		// reconnects later instead of hanging.
		c.Write([]byte("AMQP\x00\x00\x09\x01"))
		if n, err := c.Read(make([]byte, 16)); err == nil {
			t.Errorf("127.0.0.1:5672 answered %d bytes to an AMQP header, want the connection closed", n)
		}
		if code := httpStatus(t, "http://127.0.0.1:15672/"); code != http.StatusOK {
			t.Errorf("GET http://127.0.0.1:15672/: %d, want 200", code)
		}
	})

	// Down leaves nothing of the project behind.
	if out, err := compose("down", "-v", "--remove-orphans", "-t", "10"); err != nil {
		t.Fatalf("docker-compose down -v: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"ps", "-aq"},
		{"network", "ls", "-q", "--filter", "name=^" + appNetwork + "$"},
		{"volume", "ls", "-q"},
	} {
		if out := strings.TrimSpace(d.CLI(t, args...)); out != "" {
			t.Errorf("docker %s after docker-compose down -v: %s, want nothing", strings.Join(args, " "), out)
		}
	}
}

// dialHost connects to 127.0.0.1:port with a deadline for the whole test
// step; the connection is closed when t ends.
func dialHost(t *testing.T, port int) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("connecting to the published port %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// httpStatus GETs u and returns the status code.
func httpStatus(t *testing.T, u string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
