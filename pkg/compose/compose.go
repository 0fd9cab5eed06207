package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cohuron/deploy/pkg/clock"
	"github.com/cohuron/deploy/pkg/proc"
)

// Defaults of Client and WaitHealthy.
const (
	defaultTimeout = 10 * time.Minute
	detectTimeout  = 30 * time.Second
	defaultEvery   = time.Second
	// maxCapture bounds the output parsed from one command (config, ps).
	maxCapture = 32 << 20
)

// Client runs Docker Compose (v2 or v1) and the docker CLI.
type Client struct {
	// argv is how compose is invoked: ["docker", "compose"] or
	// ["docker-compose"].
	argv []string
	// Env is the complete environment of every command (PATH, DOCKER_HOST,
	// HOME, …); nothing is inherited.
	Env []string
	// Log gets one debug line per command; nil discards.
	Log *slog.Logger
	// Timeout bounds one command; 0 means 10 minutes.
	Timeout time.Duration
	// Flavor names what Detect found, e.g. "docker compose 2.29.1" or
	// "docker-compose 1.29.2".
	Flavor string
	// Sleep waits between WaitHealthy polls; nil waits on a timer (or
	// until ctx is done). Tests inject one that does not wait.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Project names one compose project.
type Project struct {
	Name    string // -p; lower-case letters, digits, '-' and '_'
	File    string // -f: absolute path of the compose file
	Dir     string // --project-directory, absolute; empty: the file's directory
	EnvFile string // --env-file, absolute; optional
}

// Service is the state of one service's container.
type Service struct {
	Name      string // the compose service
	Container string // the container ID (full); it changes when compose recreates the container
	State     string // running, exited, restarting, created, paused, dead
	// Health is healthy, unhealthy or starting, or "" when the container
	// has no healthcheck.
	Health     string
	ConfigHash string // the com.docker.compose.config-hash label
	Image      string // the image reference the container was created from
}

// OK reports whether the container runs and is healthy or has no
// healthcheck.
func (s Service) OK() bool {
	return s.State == "running" && (s.Health == "" || s.Health == "healthy")
}

// describe is the state for an error message, e.g. "running (unhealthy)".
func (s Service) describe() string {
	if s.Health == "" {
		return s.State
	}
	return s.State + " (" + s.Health + ")"
}

// versionRE finds the version in `docker compose version` ("Docker Compose
// version v2.29.1") and `docker-compose version` ("docker-compose version
// 1.29.2, build unknown").
var versionRE = regexp.MustCompile(`(?i)compose version v?([0-9]+\.[0-9]+\.[0-9]+[^\s,]*)`)

// Detect finds Docker Compose: `docker compose version` (v2, the docker
// CLI plugin) first, then `docker-compose version` (v1 or the standalone
// v2), both looked up in the PATH of env. env becomes Client.Env.
func Detect(ctx context.Context, env []string, log *slog.Logger) (*Client, error) {
	c := &Client{Env: env, Log: log}
	var errs []string
	for _, cand := range []struct {
		argv   []string
		flavor string
	}{
		{[]string{"docker", "compose"}, "docker compose"},
		{[]string{"docker-compose"}, "docker-compose"},
	} {
		var out bytes.Buffer
		_, err := proc.Run(ctx, proc.Cmd{
			Name: cand.argv[0], Args: append(cand.argv[1:len(cand.argv):len(cand.argv)], "version"),
			Env: env, Timeout: detectTimeout, Output: &out,
		})
		what := strings.Join(cand.argv, " ") + " version"
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", what, err))
			continue
		}
		m := versionRE.FindStringSubmatch(out.String())
		if m == nil {
			errs = append(errs, fmt.Sprintf("%s: no \"compose version X.Y.Z\" in its output %q", what, firstLine(out.String())))
			continue
		}
		c.argv, c.Flavor = cand.argv, cand.flavor+" "+m[1]
		c.log().Debug("found docker compose", "flavor", c.Flavor)
		return c, nil
	}
	return nil, fmt.Errorf("docker compose not found: %s", strings.Join(errs, "; "))
}

// Up runs `up -d --remove-orphans`: compose creates what is missing,
// recreates the containers whose configuration or image changed, removes
// containers of services no longer in the file and leaves the rest alone.
// Compose's progress goes to out (may be nil).
func (c *Client) Up(ctx context.Context, p Project, out io.Writer) error {
	args, err := c.projectArgs(p)
	if err != nil {
		return err
	}
	c.log().Info("compose up", "project", p.Name, "file", p.File)
	if _, err := c.run(ctx, c.compose(args, "up", "-d", "--remove-orphans"), out); err != nil {
		return fmt.Errorf("compose up of project %s: %w", p.Name, err)
	}
	return nil
}

// ImageIDs returns ref -> image ID (sha256:…) of the local images, by
// `docker image inspect`; a ref with no local image maps to "".
func (c *Client) ImageIDs(ctx context.Context, refs []string) (map[string]string, error) {
	ids := map[string]string{}
	e := engineOf(c.Env)
	for _, ref := range refs {
		if _, done := ids[ref]; done {
			continue
		}
		if e != nil {
			id, err := e.imageID(ctx, ref)
			switch {
			case errors.Is(err, errNoImage):
				ids[ref] = ""
				continue
			case err != nil:
				return nil, fmt.Errorf("image ID of %s: %w", ref, err)
			}
			ids[ref] = id
			continue
		}
		out, err := c.capture(ctx, []string{"docker", "image", "inspect", "--format", "{{.Id}}", "--", ref})
		if err != nil {
			var ee *proc.ExitError
			if errors.As(err, &ee) && bytes.Contains(bytes.ToLower(ee.Output), []byte("no such image")) {
				ids[ref] = ""
				continue
			}
			return nil, fmt.Errorf("image ID of %s: %w", ref, err)
		}
		id := strings.TrimSpace(string(dropWarnings(out)))
		if strings.ContainsAny(id, " \n") || id == "" {
			return nil, fmt.Errorf("image ID of %s: expected one ID, found %q", ref, firstLine(id))
		}
		ids[ref] = id
	}
	return ids, nil
}

// psFormat is one container per line: service, ID, state, status,
// config hash, one-off ("True" for `compose run` containers).
const psFormat = `{{.Label "com.docker.compose.service"}}\t{{.ID}}\t{{.State}}\t{{.Status}}\t{{.Label "com.docker.compose.config-hash"}}\t{{.Label "com.docker.compose.oneoff"}}\t{{.Image}}`

// Status lists the project's containers (running or not, by the
// com.docker.compose.project label, which v1 and v2 both set), keyed by
// service. One-off containers (`compose run`) are left out. When a service
// has several containers (scaled), the one reported is a not-OK one if
// there is any.
func (c *Client) Status(ctx context.Context, project string) (map[string]Service, error) {
	if err := checkName(project); err != nil {
		return nil, err
	}
	if e := engineOf(c.Env); e != nil {
		rows, err := e.containers(ctx, project)
		if err != nil {
			return nil, fmt.Errorf("containers of project %s: %w", project, err)
		}
		return statusOf(rows), nil
	}
	return c.statusCLI(ctx, project)
}

// statusCLI is Status through the docker CLI.
func (c *Client) statusCLI(ctx context.Context, project string) (map[string]Service, error) {
	out, err := c.capture(ctx, []string{"docker", "ps", "-a", "--no-trunc",
		"--filter", "label=com.docker.compose.project=" + project, "--format", psFormat})
	if err != nil {
		return nil, fmt.Errorf("containers of project %s: %w", project, err)
	}
	st, err := parseStatus(dropWarnings(out))
	if err != nil {
		return nil, fmt.Errorf("containers of project %s: %w", project, err)
	}
	return st, nil
}

// psRow is one container, as docker ps (psFormat) or the Engine API list it.
type psRow struct{ service, id, state, status, hash, oneoff, image string }

// statusOf is rows by service (see Status), in the order of their lines.
func statusOf(rows []psRow) map[string]Service {
	line := func(r psRow) string {
		return strings.Join([]string{r.service, r.id, r.state, r.status, r.hash, r.oneoff, r.image}, "\t")
	}
	slices.SortFunc(rows, func(a, b psRow) int { return strings.Compare(line(a), line(b)) })
	st := map[string]Service{}
	for _, r := range rows {
		if r.service == "" || strings.EqualFold(r.oneoff, "true") {
			continue // not a service container, or a one-off
		}
		s := Service{Name: r.service, Container: r.id, State: r.state, ConfigHash: r.hash, Image: r.image}
		if m := healthRE.FindStringSubmatch(r.status); m != nil {
			s.Health = strings.TrimPrefix(m[1], "health: ")
		}
		if prev, ok := st[s.Name]; ok && (!prev.OK() || s.OK()) {
			continue
		}
		st[s.Name] = s
	}
	return st
}

// dropWarnings removes the docker CLI's "WARNING: …" lines (it writes them
// to stderr, which proc combines with stdout), e.g. about its config file.
func dropWarnings(out []byte) []byte {
	if !bytes.Contains(out, []byte("WARNING:")) {
		return out
	}
	var kept bytes.Buffer
	for line := range strings.Lines(string(out)) {
		if !strings.HasPrefix(line, "WARNING:") {
			kept.WriteString(line)
		}
	}
	return kept.Bytes()
}

// healthRE finds the health in a container's status ("Up 3 seconds
// (healthy)", "(unhealthy)", "(health: starting)").
var healthRE = regexp.MustCompile(`\((healthy|unhealthy|health: starting)\)`)

func parseStatus(out []byte) (map[string]Service, error) {
	var rows []psRow
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		line = strings.TrimRight(line, "\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 7 {
			return nil, fmt.Errorf("docker ps: expected 7 tab-separated fields, found %d in %q", len(f), line)
		}
		rows = append(rows, psRow{service: f[0], id: f[1], state: f[2], status: f[3], hash: f[4], oneoff: f[5], image: f[6]})
	}
	return statusOf(rows), nil
}

// WaitHealthy polls Status every `every` (0: 1s) until each named service
// (all the project's services when none are named) is OK. After timeout
// (0: only ctx bounds the wait) the error names each service that is not
// OK and its state and health. It returns the last status read.
func (c *Client) WaitHealthy(ctx context.Context, project string, services []string, timeout, every time.Duration) (map[string]Service, error) {
	if every <= 0 {
		every = defaultEvery
	}
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		wctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	sleep := c.Sleep
	if sleep == nil {
		sleep = clock.Sleep
	}
	var bad []string // nil until Status answered once
	for {
		st, err := c.Status(wctx, project)
		switch {
		case err == nil:
			bad = notOK(st, services)
			if len(bad) == 0 {
				return st, nil
			}
			c.log().Debug("waiting for services", "project", project, "notOK", bad)
			err = sleep(wctx, every)
		case wctx.Err() == nil:
			return nil, err // docker ps failed on its own
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			if bad == nil {
				return nil, fmt.Errorf("waiting for project %s to be healthy: %w", project, ctx.Err())
			}
			return nil, fmt.Errorf("waiting for project %s to be healthy: %w (not OK: %s)", project, ctx.Err(), strings.Join(bad, "; "))
		}
		if bad == nil {
			return nil, err
		}
		return nil, fmt.Errorf("project %s not healthy after %s: %s", project, timeout, strings.Join(bad, "; "))
	}
}

// notOK describes each named service that is not OK, e.g.
// "cache: running (unhealthy)" or "queue: no container".
func notOK(st map[string]Service, services []string) []string {
	if len(services) == 0 {
		if len(st) == 0 {
			return []string{"no containers"}
		}
		for name := range st {
			services = append(services, name)
		}
		sort.Strings(services)
	}
	bad := []string{}
	for _, name := range services {
		s, ok := st[name]
		switch {
		case !ok:
			bad = append(bad, name+": no container")
		case !s.OK():
			bad = append(bad, name+": "+s.describe())
		}
	}
	return bad
}

// nameRE is a project name that v1 and v2 both use as given (v1 strips
// other characters, v2 rejects them), so the label matches it.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("compose project name %q: expected lower-case letters, digits, '-' and '_', starting with a letter or digit", name)
	}
	return nil
}

// projectArgs are the global options naming the project.
func (c *Client) projectArgs(p Project) ([]string, error) {
	if err := checkName(p.Name); err != nil {
		return nil, err
	}
	for _, f := range []struct{ what, path string }{{"compose file", p.File}, {"project directory", p.Dir}, {"env file", p.EnvFile}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return nil, fmt.Errorf("project %s: %s %q is not an absolute path", p.Name, f.what, f.path)
		}
	}
	if p.File == "" {
		return nil, fmt.Errorf("project %s: no compose file", p.Name)
	}
	args := []string{"-p", p.Name, "-f", p.File}
	if p.Dir != "" {
		args = append(args, "--project-directory", p.Dir)
	}
	if p.EnvFile != "" {
		args = append(args, "--env-file", p.EnvFile)
	}
	return args, nil
}

// compose is the argv of a compose command: the compose program, the
// global options, then the command.
func (c *Client) compose(global []string, cmd ...string) []string {
	argv := append([]string{}, c.argv...)
	if len(argv) == 0 {
		argv = []string{"docker", "compose"}
	}
	argv = append(argv, global...)
	return append(argv, cmd...)
}

// capture runs argv and returns its whole output (stdout and stderr
// combined, at most maxCapture bytes).
func (c *Client) capture(ctx context.Context, argv []string) ([]byte, error) {
	var buf limitedBuffer
	if _, err := c.run(ctx, argv, &buf); err != nil {
		return nil, err
	}
	if buf.over {
		return nil, fmt.Errorf("%s: output is over %d bytes", strings.Join(argv[:min(len(argv), 3)], " "), maxCapture)
	}
	return buf.Bytes(), nil
}

// run runs argv with the client's environment, in the agent's working
// directory (every path given to compose is absolute).
func (c *Client) run(ctx context.Context, argv []string, out io.Writer) (proc.Result, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	c.log().Debug("running", "argv", argv)
	res, err := proc.Run(ctx, proc.Cmd{Name: argv[0], Args: argv[1:], Env: c.Env, Timeout: timeout, Output: out})
	c.log().Debug("finished", "argv0", argv[0], "exit", res.ExitCode, "duration", res.Duration)
	return res, err
}

func (c *Client) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	return s
}

// limitedBuffer keeps the first maxCapture bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := maxCapture - b.Len(); n > room {
		b.over = true
		p = p[:max(room, 0)]
	}
	b.Buffer.Write(p)
	return n, nil
}
