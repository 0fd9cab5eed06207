package compose

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeCase is one answer of a fake program: when "$*" matches the shell
// pattern, print out and exit with code.
type fakeCase struct {
	pattern string
	out     string
	code    int
}

// fakeBin is a temp dir on PATH holding recording fake docker and
// docker-compose scripts. They use shell builtins only, so PATH can hold
// just this directory.
type fakeBin struct {
	t   testing.TB
	dir string
	log string
}

func newFakeBin(t testing.TB) *fakeBin {
	dir := t.TempDir()
	return &fakeBin{t: t, dir: dir, log: filepath.Join(dir, "argv.log")}
}

// env is a complete environment for the client: PATH is only the fakes.
func (f *fakeBin) env() []string {
	return []string{"PATH=" + f.dir, "DOCKER_HOST=unix:///fake.sock"}
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// write (re)writes the fake program name; each run appends its name,
// $DOCKER_HOST and one line per argument to the log, then "---".
func (f *fakeBin) write(name string, cases ...fakeCase) {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	b.WriteString("{ printf '%s\\n' \"" + name + " DOCKER_HOST=$DOCKER_HOST\"; for a in \"$@\"; do printf '%s\\n' \"$a\"; done; printf -- '---\\n'; } >> " + shq(f.log) + "\n")
	b.WriteString("case \"$*\" in\n")
	for _, c := range cases {
		b.WriteString("  " + c.pattern + ") printf '%s' " + shq(c.out) + "; exit " + strconv.Itoa(c.code) + ";;\n")
	}
	b.WriteString("esac\nprintf 'fake " + name + ": unexpected arguments: %s\\n' \"$*\" >&2\nexit 99\n")
	tmp := filepath.Join(f.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(f.dir, name)); err != nil {
		f.t.Fatal(err)
	}
}

// calls returns the recorded invocations: program name, then arguments.
func (f *fakeBin) calls() [][]string {
	data, err := os.ReadFile(f.log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	var calls [][]string
	var cur []string
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "---" {
			calls = append(calls, cur)
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	return calls
}

const (
	hashCache = "d1cdea1d5ae9ed23ff6abf4025c6725c7460ddc37fd4d89607e19a7453ab74ad"
	hashQueue = "4872029e962f2813f16ba87f15c3d018fcc3dc308924840938ab09c1b4ab1d19"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name       string
		docker     []fakeCase
		compose    []fakeCase // nil: no docker-compose on PATH
		wantFlavor string
		wantArgv   []string
		wantErr    []string
	}{
		{"v2 plugin",
			[]fakeCase{{`compose\ version`, "Docker Compose version v2.29.1\n", 0}}, nil,
			"docker compose 2.29.1", []string{"docker", "compose"}, nil},
		{"v2 plugin preferred over docker-compose",
			[]fakeCase{{`compose\ version`, "Docker Compose version 2.26.1-4\n", 0}},
			[]fakeCase{{`version`, "docker-compose version 1.29.2, build unknown\n", 0}},
			"docker compose 2.26.1-4", []string{"docker", "compose"}, nil},
		{"v1 when docker has no compose",
			[]fakeCase{{`compose\ version`, "docker: unknown command: docker compose\n", 1}},
			[]fakeCase{{`version`, "docker-compose version 1.29.2, build unknown\ndocker-py version: 5.0.3\nCPython version: 3.11.2\n", 0}},
			"docker-compose 1.29.2", []string{"docker-compose"}, nil},
		{"standalone v2 as docker-compose",
			[]fakeCase{{`compose\ version`, "docker: 'compose' is not a docker command.\n", 1}},
			[]fakeCase{{`version`, "Docker Compose version v2.29.1\n", 0}},
			"docker-compose 2.29.1", []string{"docker-compose"}, nil},
		{"help text instead of a version falls through",
			[]fakeCase{{`compose\ version`, "Usage: docker [OPTIONS] COMMAND\n", 0}},
			[]fakeCase{{`version`, "docker-compose version 1.29.2, build unknown\n", 0}},
			"docker-compose 1.29.2", []string{"docker-compose"}, nil},
		{"neither",
			[]fakeCase{{`compose\ version`, "docker: unknown command: docker compose\n", 1}}, nil,
			"", nil, []string{"docker compose version", "unknown command", "docker-compose version", "not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeBin(t)
			f.write("docker", tt.docker...)
			if tt.compose != nil {
				f.write("docker-compose", tt.compose...)
			}
			c, err := Detect(context.Background(), f.env(), nil)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Detect: found %q, want an error", c.Flavor)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Flavor != tt.wantFlavor || !reflect.DeepEqual(c.argv, tt.wantArgv) {
				t.Errorf("found %q %q, want %q %q", c.Flavor, c.argv, tt.wantFlavor, tt.wantArgv)
			}
			if !reflect.DeepEqual(c.Env, f.env()) {
				t.Errorf("Env = %q, want %q", c.Env, f.env())
			}
		})
	}
}

func TestUpArgv(t *testing.T) {
	p := Project{Name: "shop", File: "/srv/app/compose.yaml", Dir: "/srv/app", EnvFile: "/etc/cohuron/app.env"}
	global := []string{"-p", "shop", "-f", "/srv/app/compose.yaml", "--project-directory", "/srv/app", "--env-file", "/etc/cohuron/app.env"}
	for _, tt := range []struct {
		name string
		argv []string
		want []string
	}{
		{"v2", []string{"docker", "compose"}, append(append([]string{"docker DOCKER_HOST=unix:///fake.sock", "compose"}, global...), "up", "-d", "--remove-orphans")},
		{"v1", []string{"docker-compose"}, append(append([]string{"docker-compose DOCKER_HOST=unix:///fake.sock"}, global...), "up", "-d", "--remove-orphans")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeBin(t)
			f.write("docker", fakeCase{`*up\ -d*`, "Creating shop_web_1 ... done\n", 0})
			f.write("docker-compose", fakeCase{`*up\ -d*`, "Creating shop_web_1 ... done\n", 0})
			c := &Client{argv: tt.argv, Env: f.env()}
			var out bytes.Buffer
			if err := c.Up(context.Background(), p, &out); err != nil {
				t.Fatal(err)
			}
			if got := f.calls(); len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
				t.Errorf("ran %q\nwant %q", got, tt.want)
			}
			if !strings.Contains(out.String(), "Creating shop_web_1 ... done") {
				t.Errorf("out = %q, want compose's output", out.String())
			}
		})
	}
}

func TestUpOptionalPaths(t *testing.T) {
	f := newFakeBin(t)
	f.write("docker-compose", fakeCase{`*`, "", 0})
	c := &Client{argv: []string{"docker-compose"}, Env: f.env()}
	if err := c.Up(context.Background(), Project{Name: "shop", File: "/srv/app/compose.yaml"}, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"docker-compose DOCKER_HOST=unix:///fake.sock", "-p", "shop", "-f", "/srv/app/compose.yaml", "up", "-d", "--remove-orphans"}
	if got := f.calls(); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("ran %q\nwant %q", got, want)
	}
}

func TestUpFails(t *testing.T) {
	f := newFakeBin(t)
	f.write("docker", fakeCase{`*up*`, "Error response from daemon: pull access denied for nope\n", 1})
	c := &Client{argv: []string{"docker", "compose"}, Env: f.env()}
	err := c.Up(context.Background(), Project{Name: "shop", File: "/srv/compose.yaml"}, nil)
	if err == nil || !strings.Contains(err.Error(), "project shop") || !strings.Contains(err.Error(), "pull access denied") {
		t.Fatalf("err = %v, want one naming the project and quoting compose", err)
	}
}

func TestProjectChecked(t *testing.T) {
	for _, tt := range []struct {
		p    Project
		want string
	}{
		{Project{Name: "Shop", File: "/a/compose.yaml"}, `project name "Shop"`},
		{Project{Name: "my.app", File: "/a/compose.yaml"}, `project name "my.app"`},
		{Project{Name: "", File: "/a/compose.yaml"}, `project name ""`},
		{Project{Name: "shop", File: "compose.yaml"}, `compose file "compose.yaml" is not an absolute path`},
		{Project{Name: "shop", File: "/a/compose.yaml", Dir: "a"}, `project directory "a" is not an absolute path`},
		{Project{Name: "shop", File: "/a/compose.yaml", EnvFile: ".env"}, `env file ".env" is not an absolute path`},
		{Project{Name: "shop"}, `no compose file`},
	} {
		f := newFakeBin(t)
		f.write("docker", fakeCase{`*`, "", 0})
		c := &Client{argv: []string{"docker", "compose"}, Env: f.env()}
		err := c.Up(context.Background(), tt.p, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Up(%+v) = %v, want an error with %q", tt.p, err, tt.want)
		}
		if calls := f.calls(); len(calls) != 0 {
			t.Errorf("ran %q for an invalid project", calls)
		}
	}
}

func TestImageIDs(t *testing.T) {
	f := newFakeBin(t)
	f.write("docker",
		fakeCase{`image\ inspect\ --format\ {{.Id}}\ --\ stub:test`, "WARNING: Error loading config file: x\nsha256:9fb6ddce81e0\n", 0},
		fakeCase{`image\ inspect\ --format\ {{.Id}}\ --\ nope:1`, "Error response from daemon: no such image: nope:1: No such image: nope:1\n", 1},
		fakeCase{`image\ inspect\ --format\ {{.Id}}\ --\ broken:1`, "Cannot connect to the Docker daemon at unix:///fake.sock. Is the docker daemon running?\n", 1},
	)
	c := &Client{argv: []string{"docker-compose"}, Env: f.env()}
	got, err := c.ImageIDs(context.Background(), []string{"stub:test", "nope:1", "stub:test"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"stub:test": "sha256:9fb6ddce81e0", "nope:1": ""}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ImageIDs = %v, want %v", got, want)
	}
	if n := len(f.calls()); n != 2 {
		t.Errorf("ran docker %d times, want 2 (each ref once)", n)
	}
	if calls := f.calls(); calls[0][0] != "docker DOCKER_HOST=unix:///fake.sock" {
		t.Errorf("ran %q, want docker with the client's env", calls[0][0])
	}
	_, err = c.ImageIDs(context.Background(), []string{"broken:1"})
	if err == nil || !strings.Contains(err.Error(), "broken:1") || !strings.Contains(err.Error(), "Cannot connect") {
		t.Errorf("err = %v, want one naming the ref and quoting docker", err)
	}
}

// psLine is one line of docker ps in psFormat.
func psLine(service, id, state, status, hash, oneoff string) string {
	return strings.Join([]string{service, id, state, status, hash, oneoff, "stub:1"}, "\t") + "\n"
}

func TestStatus(t *testing.T) {
	f := newFakeBin(t)
	f.write("docker", fakeCase{`ps\ *`,
		"WARNING: Error loading config file: /root/.docker/config.json: permission denied\n" +
			psLine("cache", "c1", "running", "Up 3 seconds (healthy)", hashCache, "False") +
			psLine("queue", "q1", "running", "Up 2 seconds (health: starting)", hashQueue, "False") +
			psLine("web", "w1", "running", "Up 2 minutes", "h", "False") +
			psLine("job", "j1", "exited", "Exited (1) 5 seconds ago", "h", "False") +
			psLine("api", "a1", "running", "Up 1 second (unhealthy)", "h", "False") +
			psLine("api", "a2", "running", "Up 1 second (healthy)", "h", "False") +
			psLine("web", "w9", "exited", "Exited (0) 1 second ago", "h", "True"), 0})
	c := &Client{argv: []string{"docker-compose"}, Env: f.env()}
	got, err := c.Status(context.Background(), "ck")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Service{
		"cache": {Name: "cache", Container: "c1", State: "running", Health: "healthy", ConfigHash: hashCache, Image: "stub:1"},
		"queue": {Name: "queue", Container: "q1", State: "running", Health: "starting", ConfigHash: hashQueue, Image: "stub:1"},
		"web":   {Name: "web", Container: "w1", State: "running", ConfigHash: "h", Image: "stub:1"},
		"job":   {Name: "job", Container: "j1", State: "exited", ConfigHash: "h", Image: "stub:1"},
		"api":   {Name: "api", Container: "a1", State: "running", Health: "unhealthy", ConfigHash: "h", Image: "stub:1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Status =\n%v\nwant\n%v", got, want)
	}
	wantArgv := []string{"docker DOCKER_HOST=unix:///fake.sock", "ps", "-a", "--no-trunc",
		"--filter", "label=com.docker.compose.project=ck", "--format", psFormat}
	if calls := f.calls(); len(calls) != 1 || !reflect.DeepEqual(calls[0], wantArgv) {
		t.Errorf("ran %q\nwant %q", calls, wantArgv)
	}
	for name, ok := range map[string]bool{"cache": true, "queue": false, "web": true, "job": false, "api": false} {
		if got[name].OK() != ok {
			t.Errorf("%s: OK() = %v, want %v", name, got[name].OK(), ok)
		}
	}
	if _, err := c.Status(context.Background(), "C K"); err == nil {
		t.Error("Status accepted an invalid project name")
	}
}

func TestParseStatusRejects(t *testing.T) {
	if _, err := parseStatus([]byte("cache running\n")); err == nil || !strings.Contains(err.Error(), "7 tab-separated fields") {
		t.Errorf("err = %v, want one about the fields", err)
	}
	if got, err := parseStatus([]byte("\n")); err != nil || len(got) != 0 {
		t.Errorf("no containers: %v, %v", got, err)
	}
}

// psSequence makes the fake docker answer ps with each output in turn:
// the injected Sleep rewrites it between polls.
func psSequence(t *testing.T, f *fakeBin, outs ...string) (sleeps *int, sleep func(context.Context, time.Duration) error) {
	f.write("docker", fakeCase{`ps\ *`, outs[0], 0})
	n := 0
	return &n, func(ctx context.Context, d time.Duration) error {
		if d != 5*time.Second {
			t.Errorf("slept %s, want the interval 5s", d)
		}
		n++
		if n >= len(outs) {
			return context.DeadlineExceeded // as the timer would at the deadline
		}
		f.write("docker", fakeCase{`ps\ *`, outs[n], 0})
		return nil
	}
}

func TestWaitHealthy(t *testing.T) {
	starting := psLine("cache", "c1", "running", "Up 1 second (health: starting)", "h", "False")
	healthy := psLine("cache", "c1", "running", "Up 3 seconds (healthy)", "h", "False")
	queue := psLine("queue", "q1", "running", "Up 3 seconds", "h", "False")
	f := newFakeBin(t)
	c := &Client{argv: []string{"docker-compose"}, Env: f.env()}
	ctx := context.Background()

	t.Run("becomes healthy", func(t *testing.T) {
		sleeps, sleep := psSequence(t, f, "", starting, healthy+queue)
		c.Sleep = sleep
		st, err := c.WaitHealthy(ctx, "ck", []string{"cache", "queue"}, time.Minute, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if st["cache"].Health != "healthy" || st["queue"].Container != "q1" {
			t.Errorf("returned status %+v, want the last one read", st)
		}
		if *sleeps != 2 {
			t.Errorf("slept %d times, want 2", *sleeps)
		}
	})
	t.Run("all services when none named", func(t *testing.T) {
		_, sleep := psSequence(t, f, "", starting+queue, healthy+queue)
		c.Sleep = sleep
		if _, err := c.WaitHealthy(ctx, "ck", nil, time.Minute, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("times out naming each service", func(t *testing.T) {
		unhealthy := psLine("cache", "c1", "running", "Up 9 seconds (unhealthy)", "h", "False")
		exited := psLine("web", "w1", "exited", "Exited (2) 1 second ago", "h", "False")
		_, sleep := psSequence(t, f, starting, unhealthy+queue+exited)
		c.Sleep = sleep
		_, err := c.WaitHealthy(ctx, "ck", []string{"cache", "queue", "web", "db"}, time.Minute, 5*time.Second)
		if err == nil {
			t.Fatal("WaitHealthy passed")
		}
		for _, w := range []string{"project ck not healthy after 1m0s", "cache: running (unhealthy)", "web: exited", "db: no container"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
		if strings.Contains(err.Error(), "queue") {
			t.Errorf("error %q names queue, which is OK", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		f.write("docker", fakeCase{`ps\ *`, starting, 0})
		cctx, cancel := context.WithCancel(ctx)
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}
		_, err := c.WaitHealthy(cctx, "ck", []string{"cache"}, time.Minute, 5*time.Second)
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cache: running (starting)") {
			t.Errorf("err = %v, want context.Canceled naming cache", err)
		}
	})
	t.Run("docker ps fails", func(t *testing.T) {
		f.write("docker", fakeCase{`ps\ *`, "Cannot connect to the Docker daemon\n", 1})
		c.Sleep = func(context.Context, time.Duration) error {
			t.Error("slept after docker ps failed")
			return nil
		}
		_, err := c.WaitHealthy(ctx, "ck", []string{"cache"}, time.Minute, 5*time.Second)
		if err == nil || !strings.Contains(err.Error(), "Cannot connect") {
			t.Errorf("err = %v, want docker's error", err)
		}
	})
	t.Run("real timer", func(t *testing.T) {
		f.write("docker", fakeCase{`ps\ *`, starting, 0})
		c.Sleep = nil
		_, err := c.WaitHealthy(ctx, "ck", []string{"cache"}, 300*time.Millisecond, 10*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "cache: running (starting)") {
			t.Errorf("err = %v, want a timeout naming cache", err)
		}
	})
}
