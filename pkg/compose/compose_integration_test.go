package compose

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
)

const stubImage = "cohuron-stub:test"

// composeFile is a project of two stub services on the host network.
func composeFile(cachePort, queuePort int, queueName string) string {
	svc := func(port int, name string) string {
		return fmt.Sprintf(`    image: %s
    network_mode: host
    environment:
      PORT: "%d"
      NAME: %s
    healthcheck:
      test: ["CMD", "/stub", "check"]
      interval: 1s
      timeout: 2s
      retries: 3
`, stubImage, port, name)
	}
	return "version: \"2.4\"\nservices:\n  cache:\n" + svc(cachePort, "cache") + "  queue:\n" + svc(queuePort, queueName)
}

// pong reads the stub's greeting on port.
func pong(t *testing.T, port int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("dialing the stub on port %d: %v", port, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading from the stub on port %d: %v", port, err)
	}
	return line
}

func TestComposeIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Docker engine")
	}
	d := testenv.StartDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	c, err := Detect(ctx, d.Env, log)
	if err != nil {
		testenv.Missing(t, "docker compose or docker-compose", err.Error())
	}
	t.Logf("using %s", c.Flavor)
	d.BuildStubImage(t, stubImage)

	dir := t.TempDir()
	p := Project{Name: "ck", File: filepath.Join(dir, "compose.yaml"), Dir: dir}
	cachePort, queuePort := testenv.FreePort(t), testenv.FreePort(t)
	write := func(queueName string) {
		t.Helper()
		if err := os.WriteFile(p.File, []byte(composeFile(cachePort, queuePort, queueName)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	up := func() {
		t.Helper()
		var out bytes.Buffer
		if err := c.Up(ctx, p, &out); err != nil {
			t.Fatal(err)
		}
		t.Logf("compose up:\n%s", out.String())
	}
	waitHealthy := func() {
		t.Helper()
		if _, err := c.WaitHealthy(ctx, p.Name, []string{"cache", "queue"}, 60*time.Second, 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	status := func() map[string]Service {
		t.Helper()
		st, err := c.Status(ctx, p.Name)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	// First up: both services come up healthy and answer.
	write("queue")
	up()
	waitHealthy()
	if got := pong(t, cachePort); got != "+PONG cache\r\n" {
		t.Errorf("cache answered %q", got)
	}
	if got := pong(t, queuePort); got != "+PONG queue\r\n" {
		t.Errorf("queue answered %q", got)
	}
	st1 := status()
	for _, svc := range []string{"cache", "queue"} {
		if len(st1[svc].ConfigHash) != 64 || st1[svc].Image != stubImage {
			t.Errorf("%s: config hash %q, image %q; want a compose config hash and %s", svc, st1[svc].ConfigHash, st1[svc].Image, stubImage)
		}
	}

	// Up again with nothing changed: the same containers.
	up()
	st2 := status()
	for _, svc := range []string{"cache", "queue"} {
		if st2[svc].Container != st1[svc].Container {
			t.Errorf("%s: container %s replaced by %s although nothing changed", svc, st1[svc].Container, st2[svc].Container)
		}
	}

	// Change only queue's environment: only queue is recreated.
	write("queue2")
	up()
	waitHealthy()
	st3 := status()
	if st3["cache"].Container != st1["cache"].Container {
		t.Errorf("cache was recreated (%s -> %s) though only queue changed", st1["cache"].Container, st3["cache"].Container)
	}
	if st3["queue"].Container == st1["queue"].Container {
		t.Errorf("queue's container %s was kept though its environment changed", st1["queue"].Container)
	}
	if st3["cache"].ConfigHash != st1["cache"].ConfigHash {
		t.Errorf("cache's config hash changed from %s to %s, though only queue changed", st1["cache"].ConfigHash, st3["cache"].ConfigHash)
	}
	if st3["queue"].ConfigHash == st1["queue"].ConfigHash {
		t.Errorf("queue's config hash is still %s after its environment changed", st1["queue"].ConfigHash)
	}
	if got := pong(t, queuePort); got != "+PONG queue2\r\n" {
		t.Errorf("queue answered %q after the change", got)
	}

	// Status and image IDs come from the Engine API on the daemon's
	// socket, the same as the docker CLI says.
	if engineOf(c.Env) == nil {
		t.Fatalf("no Engine API for the client's env %q: Status asked the docker CLI", c.Env)
	}
	if viaCLI, err := c.statusCLI(ctx, p.Name); err != nil || !maps.Equal(viaCLI, st3) {
		t.Errorf("Status from the Engine API:\n%v\nfrom docker ps (%v):\n%v", st3, err, viaCLI)
	}
	ids, err := c.ImageIDs(ctx, []string{stubImage, "cohuron-missing:none"})
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(d.CLI(t, "image", "inspect", "--format", "{{.Id}}", stubImage)); ids[stubImage] != want || ids["cohuron-missing:none"] != "" {
		t.Errorf("ImageIDs = %v, want %s for %s (docker image inspect) and \"\" for the missing image", ids, want, stubImage)
	}

	// Kill cache: Status shows it, up restores it.
	d.CLI(t, "kill", st3["cache"].Container)
	st4 := status()
	if st4["cache"].State == "running" || st4["cache"].OK() {
		t.Errorf("cache after docker kill: %+v, want not running", st4["cache"])
	}
	if !st4["queue"].OK() {
		t.Errorf("queue after killing cache: %+v, want OK", st4["queue"])
	}
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	_, err = c.WaitHealthy(short, p.Name, []string{"cache", "queue"}, 2*time.Second, 200*time.Millisecond)
	cancelShort()
	if err == nil || !strings.Contains(err.Error(), "cache: exited") || strings.Contains(err.Error(), "queue:") {
		t.Errorf("WaitHealthy with cache killed: %v, want an error naming only cache as exited", err)
	}
	up()
	waitHealthy()
	if got := pong(t, cachePort); got != "+PONG cache\r\n" {
		t.Errorf("cache answered %q after up restored it", got)
	}
	if st5 := status(); st5["queue"].Container != st3["queue"].Container {
		t.Errorf("queue was recreated (%s -> %s) when up restored cache", st3["queue"].Container, st5["queue"].Container)
	}
}
