package pm2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/proc"
	"github.com/cohuron/deploy/pkg/state"
)

// Manager drives one PM2 daemon.
type Manager struct {
	Bin  string   // pm2 executable (default "pm2" on PATH)
	Home string   // PM2_HOME: the daemon's state; also holds the ecosystem file
	User string   // run pm2 (and so the apps) as this user; empty: the agent's user
	Env  []string // base environment (PATH, HOME, …) for pm2 and the apps
	Run  func(ctx context.Context, c proc.Cmd) (proc.Result, error)
	// Timeout of one pm2 command (default 2m: a cluster reload waits for workers).
	Timeout time.Duration
	// LogDir holds the apps' output when they run as spec.user (default
	// /var/log/cohuron): cluster workers open their log files after
	// dropping to the user, so they write under LogDir/<user>; fork-mode
	// logs are opened by the root daemon and stay in root's LogDir.
	LogDir string

	mu   sync.Mutex
	seen *observation // the last read from PM2's CLI, while it stands
}

// Status is one process as PM2 reports it.
type Status struct {
	Name     string
	Running  bool
	Restarts int
	PIDs     []int
	State    string
}

type app struct {
	Name        string   `json:"name"`
	Cwd         string   `json:"cwd"`
	Script      string   `json:"script"`
	Args        []string `json:"args,omitempty"`
	Interpreter string   `json:"interpreter"`
	// NodeArgs are node's own options ([node, --import, tsx, src/server.ts]).
	NodeArgs    []string          `json:"node_args,omitempty"`
	ExecMode    string            `json:"exec_mode"`
	Instances   int               `json:"instances"`
	Env         map[string]string `json:"env"`
	Autorestart bool              `json:"autorestart"`
	MaxRestarts int               `json:"max_restarts"`
	MinUptime   int               `json:"min_uptime"`
	KillTimeout int               `json:"kill_timeout"`
	// Cluster reloads wait for the new worker to listen before stopping the old.
	ListenTimeout int `json:"listen_timeout"`
	// UID and GID drop the process to the app user (PM2 runs as root).
	UID       string `json:"uid,omitempty"`
	GID       string `json:"gid,omitempty"`
	OutFile   string `json:"out_file,omitempty"`
	ErrorFile string `json:"error_file,omitempty"`
	MergeLogs bool   `json:"merge_logs"`
	Time      bool   `json:"time"`
}

// Apps turns the spec's processes into PM2 apps running from root (the
// live path, so a reload picks up the release the root points at).
// envs maps env file paths to their resolved variables.
func Apps(root string, spec *manifest.Spec, envs map[string]map[string]string) ([]app, error) {
	var apps []app
	for _, p := range spec.Processes {
		a := app{
			Name: p.Name, Cwd: filepath.Join(root, p.Cwd), Env: map[string]string{},
			ExecMode: "fork", Instances: 1, Autorestart: true, MaxRestarts: 10,
			MinUptime: 5000, KillTimeout: 5000, ListenTimeout: 30000, MergeLogs: true, Time: true,
		}
		if p.Mode == "cluster" {
			a.ExecMode = "cluster"
			if p.Instances > 0 {
				a.Instances = p.Instances
			}
		}
		nodeArgs, script, args, isNode := manifest.NodeScript(p.Command)
		mods, rest := preload(nodeArgs)
		switch {
		case isNode && p.Mode == "cluster" && len(mods) > 0:
			// Cluster workers start in PM2's directory and environment:
			// the entry loads the modules once they are the app's.
			a.Script, a.Args, a.Interpreter = filepath.Join(root, EntryFile), args, "node"
			a.Env["COHURON_NODE_PRELOAD"] = preloadEnv(mods)
			a.Env["COHURON_NODE_SCRIPT"] = script
			if len(rest) > 0 {
				a.NodeArgs = rest
			}
		case isNode:
			a.Script, a.Args, a.Interpreter = script, args, "node"
			if len(nodeArgs) > 0 {
				a.NodeArgs = nodeArgs
			}
		case p.Mode == "cluster":
			return nil, fmt.Errorf("process %s: cluster mode needs a node script (command [node, script.js, …]), found %q", p.Name, p.Command)
		default:
			a.Script, a.Args, a.Interpreter = p.Command[0], p.Command[1:], "none"
		}
		if p.EnvFile != "" {
			for k, v := range envs[p.EnvFile] {
				if _, ours := a.Env[k]; !ours {
					a.Env[k] = v
				}
			}
		}
		apps = append(apps, a)
	}
	return apps, nil
}

// Prepare writes into release directory dir what PM2 will need there
// (the cluster entry, when a cluster process loads modules), so the
// release can go live with nothing restarted: PM2 restarting a crashed
// worker later, or resurrecting after a reboot, finds it.
func (m *Manager) Prepare(dir string, spec *manifest.Spec) error {
	for _, p := range spec.Processes {
		nodeArgs, _, _, isNode := manifest.NodeScript(p.Command)
		if mods, _ := preload(nodeArgs); isNode && p.Mode == "cluster" && len(mods) > 0 {
			return writeEntry(dir)
		}
	}
	return nil
}

// Apply starts or reloads the named processes (all when names is empty)
// from the spec, writing the ecosystem file first.
func (m *Manager) Apply(ctx context.Context, root string, spec *manifest.Spec, envs map[string]map[string]string, names []string) error {
	apps, err := Apps(root, spec, envs)
	if err != nil {
		return err
	}
	if err := m.Prepare(root, spec); err != nil {
		return err
	}
	if spec.User != "" && os.Geteuid() == 0 {
		// Never run the app as root: PM2 switches to the app user and its
		// primary group before starting each process.
		u, err := user.Lookup(spec.User)
		if err != nil {
			return fmt.Errorf("spec.user: %w", err)
		}
		if u.Uid == "0" {
			return fmt.Errorf("spec.user %s has uid 0: processes never run as root", spec.User)
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			return fmt.Errorf("spec.user %s: primary group: %w", spec.User, err)
		}
		rootDir, userDir, err := m.logDirs(u)
		if err != nil {
			return err
		}
		for i := range apps {
			apps[i].UID, apps[i].GID = u.Username, g.Name
			dir := rootDir
			if apps[i].ExecMode == "cluster" {
				dir = userDir
			}
			apps[i].OutFile = filepath.Join(dir, apps[i].Name+"-out.log")
			apps[i].ErrorFile = filepath.Join(dir, apps[i].Name+"-error.log")
		}
	}
	data, err := json.MarshalIndent(map[string]any{"apps": apps}, "", "  ")
	if err != nil {
		return err
	}
	eco := filepath.Join(m.Home, "ecosystem.json")
	// PM2_HOME is owner-only (as pm2() makes it); create it here first, or
	// WriteFile would make it 0755.
	if err := os.MkdirAll(m.Home, 0o700); err != nil {
		return fmt.Errorf("creating PM2_HOME: %w", err)
	}
	// It holds resolved secrets: owner-only.
	if err := state.WriteFile(eco, data, 0o600); err != nil {
		return err
	}
	args := []string{"startOrReload", eco, "--update-env"}
	if len(names) > 0 {
		args = append(args, "--only", strings.Join(names, ","))
	}
	if _, err := m.pm2(ctx, args...); err != nil {
		what := strings.Join(names, ", ")
		if what == "" {
			what = "all processes"
		}
		return fmt.Errorf("starting %s: %w", what, err)
	}
	return nil
}

// Stop deletes processes from PM2; a process PM2 does not know is
// already stopped.
func (m *Manager) Stop(ctx context.Context, names []string) error {
	running, err := m.Status(ctx)
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, known := running[n]; !known {
			continue
		}
		if _, err := m.pm2(ctx, "delete", n); err != nil {
			return fmt.Errorf("stopping %s: %w", n, err)
		}
	}
	return nil
}

// Status reads every process of this PM2_HOME: from PM2's CLI (`pm2
// jlist`), or, while nothing PM2 keeps on disk changed since that read,
// from that read (observe.go): an idle poll starts no Node process.
func (m *Manager) Status(ctx context.Context) (map[string]Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen != nil {
		if now, ok := m.marks(); ok && now.equal(m.seen.marks) {
			return cloneStatus(m.seen.status), nil
		}
		m.seen = nil
	}
	before, ok := m.marks()
	list, err := m.jlist(ctx)
	if err != nil {
		return nil, err
	}
	res := statusOf(list)
	if after, okAfter := m.marks(); ok && okAfter && before.equal(after) && settled(list, after) {
		m.seen = &observation{status: cloneStatus(res), marks: after}
	}
	return res, nil
}

// listed is one process (one cluster worker) of `pm2 jlist`.
type listed struct {
	Name   string `json:"name"`
	PID    int    `json:"pid"`
	PM2Env struct {
		Status      string `json:"status"`
		RestartTime int    `json:"restart_time"`
		Unstable    int    `json:"unstable_restarts"`
	} `json:"pm2_env"`
}

func (m *Manager) jlist(ctx context.Context) ([]listed, error) {
	// jlist prints every process's whole environment (resolved secrets
	// included, ~5 KB per instance): keep all of it, and never quote it.
	out, err := m.run(ctx, 64<<20, "jlist")
	if err != nil {
		return nil, err
	}
	var list []listed
	// pm2 prints daemon start-up lines around the JSON: take the first
	// '[' that starts a whole JSON array.
	decoded := false
	for rest := out; !decoded; {
		i := bytes.IndexByte(rest, '[')
		if i < 0 {
			return nil, fmt.Errorf("reading pm2 jlist: no JSON list in its %d bytes of output", len(out))
		}
		decoded = json.NewDecoder(bytes.NewReader(rest[i:])).Decode(&list) == nil
		rest = rest[i+1:]
	}
	return list, nil
}

// statusOf is each process of list by name (a cluster's workers in one).
func statusOf(list []listed) map[string]Status {
	res := map[string]Status{}
	for _, p := range list {
		s := res[p.Name]
		s.Name = p.Name
		s.State = p.PM2Env.Status
		if p.PM2Env.Status == "online" && p.PID > 0 {
			s.Running = true
			s.PIDs = append(s.PIDs, p.PID)
		}
		if p.PM2Env.RestartTime+p.PM2Env.Unstable > s.Restarts {
			s.Restarts = p.PM2Env.RestartTime + p.PM2Env.Unstable
		}
		res[p.Name] = s
	}
	for _, s := range res {
		sort.Ints(s.PIDs)
	}
	return res
}

func (m *Manager) pm2(ctx context.Context, args ...string) ([]byte, error) {
	return m.run(ctx, 0, args...)
}

func (m *Manager) run(ctx context.Context, maxOutput int, args ...string) ([]byte, error) {
	bin := m.Bin
	if bin == "" {
		bin = "pm2"
	}
	timeout := m.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	if err := os.MkdirAll(m.Home, 0o700); err != nil {
		return nil, fmt.Errorf("creating PM2_HOME: %w", err)
	}
	if args[0] != "jlist" {
		// This command may change what PM2 runs in ways its pid files do
		// not show (deleting a stopped process): the next Status asks PM2.
		m.forget()
	}
	env := append(append([]string(nil), m.Env...), "PM2_HOME="+m.Home, "PM2_DISABLE_VERSION_CHECK=true")
	res, err := m.Run(ctx, proc.Cmd{Name: bin, Args: args, Env: env, User: m.User, Timeout: timeout, Dir: m.Home, MaxOutput: maxOutput})
	if err != nil {
		return nil, fmt.Errorf("pm2 %s: %w", args[0], err)
	}
	return res.Output, nil
}

// logDirs makes LogDir (root's) and LogDir/<user> (the user's, 0750).
// The user's directory is never reached through a symlink, so root never
// writes where the app user points it.
func (m *Manager) logDirs(u *user.User) (rootDir, userDir string, err error) {
	rootDir = m.LogDir
	if rootDir == "" {
		rootDir = "/var/log/cohuron"
	}
	if err := os.MkdirAll(rootDir, 0o755); err != nil {
		return "", "", fmt.Errorf("creating the app log directory: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	userDir = filepath.Join(rootDir, u.Username)
	if err := os.Mkdir(userDir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", "", fmt.Errorf("creating %s: %w", userDir, err)
	}
	fi, err := os.Lstat(userDir)
	if err != nil {
		return "", "", err
	}
	if !fi.IsDir() {
		return "", "", fmt.Errorf("app log directory %s is not a directory (found %s)", userDir, fi.Mode().Type())
	}
	if err := os.Lchown(userDir, uid, gid); err != nil {
		return "", "", fmt.Errorf("handing %s to %s: %w", userDir, u.Username, err)
	}
	return rootDir, userDir, nil
}

// Legacy is the PM2 daemon the old deploy script left (as root, in
// PM2_HOME /root/.pm2 by default), whose processes hold the ports the
// agent's need: stopped when the agent first activates a release on an
// adopted host, brought back (from the list the old script saved) if the
// agent rolls back to the adopted tree.
type Legacy struct {
	M *Manager // Home is the old daemon's PM2_HOME
}

// present reports whether the old daemon's home holds anything to act on.
func (l *Legacy) present() bool {
	if l == nil || l.M == nil || l.M.Home == "" {
		return false
	}
	_, err := os.Stat(l.M.Home)
	return err == nil
}

// Stop saves the old daemon's process list (pm2 save: the old script
// never did) and kills it with its processes (pm2 kill); the list stays
// for Restore. Nothing running is nothing to do; a list it cannot save
// stops nothing.
func (l *Legacy) Stop(ctx context.Context) error {
	if !l.present() {
		return nil
	}
	if !daemonAlive(l.M.Home) {
		return nil
	}
	if _, err := l.M.pm2(ctx, "save", "--force"); err != nil {
		return fmt.Errorf("saving the old deploy script's PM2 process list before stopping it (PM2_HOME %s), so a rollback can bring it back; nothing was stopped: %w", l.M.Home, err)
	}
	if _, err := l.M.pm2(ctx, "kill"); err != nil {
		return fmt.Errorf("stopping the old deploy script's PM2 (PM2_HOME %s): %w", l.M.Home, err)
	}
	return nil
}

// Restore starts the old daemon again with the processes Stop saved (pm2
// resurrect). No saved list means Stop found nothing running.
func (l *Legacy) Restore(ctx context.Context) error {
	if !l.present() {
		return nil
	}
	if _, err := os.Stat(filepath.Join(l.M.Home, "dump.pm2")); err != nil {
		return nil
	}
	if daemonAlive(l.M.Home) {
		return nil // never stopped: resurrecting would start its processes twice
	}
	if _, err := l.M.pm2(ctx, "resurrect"); err != nil {
		return fmt.Errorf("bringing back the old deploy script's PM2 processes (PM2_HOME %s): %w", l.M.Home, err)
	}
	return nil
}

// daemonAlive reports whether the PM2 daemon of home runs (its pid file
// names a live process).
func daemonAlive(home string) bool {
	data, err := os.ReadFile(filepath.Join(home, "pm2.pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	return err == nil && pid > 0 && syscall.Kill(pid, 0) == nil
}
