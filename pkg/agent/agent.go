package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cohuron/deploy/pkg/compose"
	"github.com/cohuron/deploy/pkg/health"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/pm2"
	"github.com/cohuron/deploy/pkg/secrets"
	"github.com/cohuron/deploy/pkg/state"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/trust"
)

// Config is what an agent needs to know about its host.
type Config struct {
	StoreURL string
	Env      string
	HostID   string
	Root     string // the live release: a symlink (/opt/cohuron)
	Backups  string // releases kept for rollback (/opt/cohuron-backups)
	StateDir string // state, journal, lock, bundle cache (/var/lib/cohuron-agent)
	Keep     int    // previous good releases kept (default 5)
	// HealthEvery is the probe interval while waiting for health (default 500ms).
	HealthEvery time.Duration
	// MaxRestarts during a health wait before failing early (default 3).
	MaxRestarts int
	// SecretsRefresh is how often the running release's secrets are
	// resolved again to notice one rotated behind an unchanged reference
	// (0: only when a new release arrives).
	SecretsRefresh time.Duration
}

// Processes is the process manager the agent drives (PM2, or systemd).
type Processes interface {
	Apply(ctx context.Context, root string, spec *manifest.Spec, envs map[string]map[string]string, names []string) error
	Stop(ctx context.Context, names []string) error
	Status(ctx context.Context) (map[string]pm2.Status, error)
}

// releasePreparer is a process manager that writes what its processes
// need into a release directory before it goes live (pm2: the cluster
// entry), whether or not anything restarts.
type releasePreparer interface {
	Prepare(dir string, spec *manifest.Spec) error
}

// LegacyProcesses are the processes the old deploy script left running
// on an adopted host (its own PM2 daemon).
type LegacyProcesses interface {
	// Stop stops them; nothing running is not an error.
	Stop(ctx context.Context) error
	// Restore starts them again as the old script left them (best it can).
	Restore(ctx context.Context) error
}

// Agent converges one host.
type Agent struct {
	Cfg     Config
	Store   store.Store
	Policy  *trust.Policy
	Fetch   func(ctx context.Context, rel *manifest.Release, dst string) error
	Secrets secrets.Resolver
	Procs   Processes
	// Legacy, when set, is stopped when the first release activates on an
	// adopted host and restored if that host rolls back to the adopted tree.
	Legacy  LegacyProcesses
	Health  *health.Checker
	Now     func() time.Time
	Log     *slog.Logger
	Metrics *Metrics
	// ToolEnv is the environment of the tools the converge steps run
	// (pnpm, node, docker, pg_dump, psql): PATH, DOCKER_HOST and the
	// like. Processes get their own env files instead.
	ToolEnv []string
	// Compose is the compose client; nil finds one on first use.
	Compose *compose.Client
	// Preflight checks the host can run a spec before anything changes;
	// nil is pkg/preflight against this host with ToolEnv.
	Preflight func(spec *manifest.Spec) error
	// CrashAt is for crash-injection tests only: the agent kills itself
	// with SIGKILL when it reaches this journal point (see crashPoint).
	CrashAt string

	states state.Store
	// secretsChecked is when the running release's secrets were last
	// resolved (in memory: a restarted agent checks at its first poll).
	secretsChecked time.Time
}

// Journal points where a crash can be injected, in converge order.
var CrashPoints = []string{"staging", "staged", "composing", "importing", "switching", "switched", "restarted", "committed", "rolling-back"}

func (a *Agent) crashPoint(name string) {
	if a.CrashAt == name {
		a.Log.Warn("crash injection: killing the agent", "point", name)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never returns
	}
}

// Init checks the configuration and fills defaults.
func (a *Agent) Init() error {
	c := &a.Cfg
	for name, p := range map[string]string{"root": c.Root, "backups": c.Backups, "state dir": c.StateDir} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%s %q must be an absolute path", name, p)
		}
	}
	if c.Keep <= 0 {
		c.Keep = 5
	}
	if c.HealthEvery <= 0 {
		c.HealthEvery = 500 * time.Millisecond
	}
	if c.MaxRestarts <= 0 {
		c.MaxRestarts = 3
	}
	if a.Metrics == nil {
		a.Metrics = NewMetrics()
	}
	a.states = state.Store{Dir: c.StateDir}
	return nil
}

// HoldDaemonLock is taken by `agent run` for its lifetime.
func (a *Agent) HoldDaemonLock() (*state.Lock, error) { return a.states.AcquireDaemon() }

func (a *Agent) releasesDir() string { return filepath.Join(a.Cfg.Backups, "releases") }
func (a *Agent) cacheDir() string    { return filepath.Join(a.Cfg.StateDir, "bundles") }

// releaseID names the directory of a release: seq and the start of its digest.
func releaseID(seq uint64, digest string) string {
	if len(digest) > 12 {
		digest = digest[:12]
	}
	return fmt.Sprintf("%06d-%s", seq, digest)
}
