package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cohuron/deploy/pkg/agent"
	"github.com/cohuron/deploy/pkg/envvars"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/fetch"
	"github.com/cohuron/deploy/pkg/health"
	"github.com/cohuron/deploy/pkg/plan"
	"github.com/cohuron/deploy/pkg/pm2"
	"github.com/cohuron/deploy/pkg/proc"
	"github.com/cohuron/deploy/pkg/secrets"
	"github.com/cohuron/deploy/pkg/state"
	"github.com/cohuron/deploy/pkg/store/openstore"
	"github.com/cohuron/deploy/pkg/store/retrystore"
	"github.com/cohuron/deploy/pkg/systemd"
	"github.com/cohuron/deploy/pkg/trust"
)

// CLI is the agent's command line.
type CLI struct {
	out, err io.Writer
	now      func() time.Time
}

// NewCLI returns a CLI writing to out and errw.
func NewCLI(out, errw io.Writer, now func() time.Time) *CLI {
	return &CLI{out: out, err: errw, now: now}
}

var commands = []struct{ name, summary string }{
	{"run", "converge continuously (the systemd daemon)"},
	{"once", "one reconcile, then exit (0 converged or up to date, 3 rejected, 4 rolled back, 5 rollback failed)"},
	{"plan", "what `once` would do and why, changing nothing"},
	{"status", "what is running and why it is not updating (--json)"},
	{"rollback", "return to a previous release by hand (--to ID or SEQ; default the newest kept)"},
	{"schema", "schema diff: the live database against the running release's declarative schema files (read-only: a shadow database)"},
}

func (c *CLI) usage() {
	fmt.Fprintf(c.err, "Usage: agent COMMAND [flags]\n\nCommands:\n")
	for _, cmd := range commands {
		fmt.Fprintf(c.err, "  %-9s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintf(c.err, "\nConfiguration: %s; every field can be set by flag (agent COMMAND --help).\nExit codes: 0 ok, 1 error, 2 usage, 3 input rejected, 4 converge failed and rolled back, 5 rollback failed.\n", DefaultConfigFile)
}

// Run runs one command and returns the exit code.
func (c *CLI) Run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		c.usage()
		if len(args) == 0 {
			return fault.ExitUsage
		}
		return fault.ExitOK
	}
	name := args[0]
	if name == "schema" {
		if len(args) < 2 || args[1] != "diff" {
			fmt.Fprintf(c.err, "agent schema: expected `agent schema diff [flags]`\n")
			return fault.ExitUsage
		}
		args = append([]string{"schema"}, args[2:]...)
	}
	known := false
	for _, cmd := range commands {
		known = known || cmd.name == name
	}
	if !known {
		fmt.Fprintf(c.err, "agent: unknown command %q\n\n", name)
		c.usage()
		return fault.ExitUsage
	}
	fs := flag.NewFlagSet("agent "+name, flag.ContinueOnError)
	fs.SetOutput(c.err)
	cf := addConfigFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON (status, plan, once)")
	to := fs.String("to", "", "rollback: release id or seq to return to")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return fault.ExitOK
		}
		return fault.ExitUsage
	}
	cf.statusOnly = name == "status"
	cfg, err := cf.load()
	if err != nil {
		fmt.Fprintf(c.err, "agent %s: %v\n", name, err)
		return fault.ExitUsage
	}
	log := c.logger(cfg)
	if name == "status" {
		// Status reads only the state directory: it must work when the
		// store or the policy is what is broken.
		a := &agent.Agent{Cfg: agent.Config{Env: cfg.Env, HostID: cfg.HostID, Root: cfg.Root, Backups: cfg.Backups, StateDir: cfg.StateDir}, Now: c.now, Log: log}
		if err := a.Init(); err != nil {
			fmt.Fprintf(c.err, "agent status: %v\n", err)
			return fault.ExitUsage
		}
		if err := c.status(a, *asJSON); err != nil {
			fmt.Fprintf(c.err, "agent status: %s\n", fault.Scrub(err.Error()))
			return fault.ExitCode(err)
		}
		return fault.ExitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := c.build(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(c.err, "agent %s: %s\n", name, fault.Scrub(err.Error()))
		return fault.ExitCode(err)
	}
	switch name {
	case "once":
		err = c.once(ctx, a, *asJSON)
	case "plan":
		err = c.plan(ctx, a, *asJSON)
	case "rollback":
		err = c.rollback(ctx, a, *to)
	case "run":
		err = c.run(ctx, a, cfg, log)
	case "schema":
		err = c.schemaDiff(ctx, a, *asJSON)
	}
	if err != nil {
		fmt.Fprintf(c.err, "agent %s: %s\n", name, fault.Scrub(err.Error()))
	}
	return fault.ExitCode(err)
}

// schemaDiff prints what the running release's declarative schema files
// would change in the live database: each statement with its hazard, what
// is refused and the declaration that allows it, the import's warnings.
func (c *CLI) schemaDiff(ctx context.Context, a *agent.Agent, asJSON bool) error {
	d, err := a.SchemaDiff(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(d)
	}
	c.printSchemaDiff(d)
	return nil
}

func (c *CLI) printSchemaDiff(d *agent.SchemaDiff) {
	switch {
	case d.FirstInstall:
		fmt.Fprintf(c.out, "seq %d: the live database is empty; the next converge imports the files into it, rows and all\n", d.Seq)
	case len(d.Statements) == 0 && len(d.Refused) == 0:
		fmt.Fprintf(c.out, "seq %d: the live database has the files' schema\n", d.Seq)
	default:
		fmt.Fprintf(c.out, "seq %d: %d statement(s) would bring the live database to the files' schema\n", d.Seq, len(d.Statements))
	}
	for _, s := range d.Statements {
		fmt.Fprintf(c.out, "  %s\n", strings.ReplaceAll(s.String(), "\n", "\n    "))
	}
	for _, r := range d.Refused {
		fmt.Fprintf(c.out, "  refused %s\n", r)
	}
	for _, n := range d.Notes {
		fmt.Fprintf(c.out, "  note %s\n", n)
	}
	for _, l := range d.Order.Lines() {
		fmt.Fprintf(c.out, "  %s\n", l)
	}
	for _, w := range d.Warnings {
		fmt.Fprintf(c.out, "  warning %s\n", firstLine(w.String()))
	}
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

func (c *CLI) logger(cfg Config) *slog.Logger {
	json := cfg.LogFormat == "json" || (cfg.LogFormat == "" && envvars.JournalStream.Get() != "")
	if json {
		return slog.New(slog.NewJSONHandler(c.err, nil))
	}
	return slog.New(slog.NewTextHandler(c.err, nil))
}

// build wires the agent from its configuration.
func (c *CLI) build(ctx context.Context, cfg Config, log *slog.Logger) (*agent.Agent, error) {
	inner, err := openstore.Open(ctx, cfg.Store, openstore.Options{S3Endpoint: cfg.S3Endpoint, S3Region: cfg.AWSRegion,
		S3Timeout: cfg.StoreTimeout.Duration, S3MaxAttempts: 1})
	if err != nil {
		return nil, err
	}
	metrics := agent.NewMetrics()
	// Retries live in one place, logged and counted: the SDK's own are off.
	st := retrystore.New(inner, retrystore.Options{Log: log, OnRetry: func(string, string, int, error) { metrics.StoreRetries.Add(1) }})
	var pol *trust.Policy
	if cfg.Policy != "" {
		if pol, err = trust.Load(cfg.Policy); err != nil {
			return nil, fault.Usage(fmt.Errorf("loading trust policy: %w", err))
		}
	} else {
		pem, err := os.ReadFile(cfg.Key)
		if err != nil {
			return nil, fault.Usage(fmt.Errorf("reading public key: %w", err))
		}
		if pol, err = trust.ForKey(pem); err != nil {
			return nil, fault.Usage(err)
		}
	}
	baseEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LANG=C.UTF-8"}
	f := &fetch.Fetcher{Store: st, StoreURL: cfg.Store, Policy: pol}
	var procs agent.Processes = &pm2.Manager{Bin: cfg.PM2, Home: cfg.PM2Home, LogDir: cfg.AppLogDir, Env: baseEnv, Run: proc.Run}
	if cfg.ProcessManager == "systemd" {
		procs = &systemd.Manager{UnitDir: cfg.UnitDir, Env: baseEnv, Run: proc.Run}
	}
	var legacy agent.LegacyProcesses
	if h := cfg.LegacyPM2Home; h != "" && h != "off" && h != cfg.PM2Home {
		legacy = &pm2.Legacy{M: &pm2.Manager{Bin: cfg.PM2, Home: h, Env: baseEnv, Run: proc.Run}}
	}
	a := &agent.Agent{
		Cfg: agent.Config{StoreURL: cfg.Store, Env: cfg.Env, HostID: cfg.HostID, Root: cfg.Root,
			Backups: cfg.Backups, StateDir: cfg.StateDir, Keep: cfg.Keep, SecretsRefresh: cfg.SecretsRefresh.Duration},
		Store: st, Policy: pol, Fetch: f.Fetch,
		Secrets: secretChain(cfg),
		Procs:   procs,
		Legacy:  legacy,
		Health:  &health.Checker{Env: baseEnv, Dir: cfg.Root, Now: c.now},
		ToolEnv: toolEnv(),
		Now:     c.now, Log: log,
		Metrics: metrics,
		CrashAt: envvars.CrashAt.Get(),
	}
	if err := a.Init(); err != nil {
		return nil, fault.Usage(err)
	}
	return a, nil
}

func (c *CLI) once(ctx context.Context, a *agent.Agent, asJSON bool) error {
	out, err := a.Once(ctx)
	if out != nil {
		if asJSON {
			if perr := c.printJSON(out); err == nil {
				err = perr
			}
		} else {
			c.printOutcome(out)
		}
	}
	return err
}

func (c *CLI) printOutcome(out *agent.Outcome) {
	fmt.Fprintf(c.out, "%s", out.Result)
	if out.Seq > 0 {
		fmt.Fprintf(c.out, " seq %d", out.Seq)
	}
	if out.Blocked != "" {
		fmt.Fprintf(c.out, " (blocked: %s)", out.Blocked)
	}
	fmt.Fprintln(c.out)
	c.printSteps(out.Plan)
}

// printSteps lists what runs and, marked "skip", what the old deploy
// script would have redone and this plan does not.
func (c *CLI) printSteps(p plan.Plan) {
	for _, s := range p.Steps {
		fmt.Fprintf(c.out, "  %s\n", s)
	}
	if len(p.Steps) == 0 {
		return
	}
	for _, s := range p.Skipped {
		fmt.Fprintf(c.out, "  skip %s\n", s)
	}
}

func (c *CLI) plan(ctx context.Context, a *agent.Agent, asJSON bool) error {
	out, err := a.Plan(ctx)
	if out == nil {
		return err
	}
	if asJSON {
		if perr := c.printJSON(out); err == nil {
			err = perr
		}
		return err
	}
	for _, u := range out.Plan.Unobserved {
		fmt.Fprintf(c.out, "not observed: %s\n", u)
	}
	for _, p := range out.Preflight {
		fmt.Fprintf(c.out, "preflight: %s\n", p)
	}
	switch {
	case out.Result == agent.ResultUpToDate:
		fmt.Fprintf(c.out, "up to date at seq %d: nothing to do\n", out.Seq)
	case out.Blocked != "":
		fmt.Fprintf(c.out, "seq %d: %s (blocked: %s)\n", out.Seq, out.Result, out.Blocked)
	default:
		fmt.Fprintf(c.out, "seq %d -> %d: %d step(s)\n", out.Plan.FromSeq, out.Seq, len(out.Plan.Steps))
		c.printSteps(out.Plan)
		if out.Schema != nil {
			fmt.Fprintf(c.out, "schema, declarative:\n")
			c.printSchemaDiff(out.Schema)
		}
	}
	return err
}

func (c *CLI) status(a *agent.Agent, asJSON bool) error {
	hs, err := a.Status()
	if err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(hs)
	}
	fmt.Fprintf(c.out, "host %s, environment %s\n", hs.Host, hs.Env)
	if hs.CurrentID == "" {
		fmt.Fprintln(c.out, "running:  nothing yet")
	} else {
		fmt.Fprintf(c.out, "running:  seq %d (%s), health %s\n", hs.CurrentSeq, hs.CurrentID, hs.Health)
	}
	if hs.DesiredSeq > 0 {
		fmt.Fprintf(c.out, "desired:  seq %d\n", hs.DesiredSeq)
	}
	if at := hs.LastAttempt; at != nil {
		fmt.Fprintf(c.out, "last:     seq %d %s at %s\n", at.Seq, at.Result, at.Finished.Format(time.RFC3339))
		if at.Error != "" {
			fmt.Fprintf(c.out, "error:    %s\n", at.Error)
		}
		if at.Schema != "" {
			fmt.Fprintf(c.out, "schema:   %s\n", at.Schema)
		}
	}
	if hs.Blocked != "" {
		fmt.Fprintf(c.out, "blocked:  %s\n", hs.Blocked)
	}
	if hs.Rollback != nil {
		fmt.Fprintf(c.out, "rollback: %s -> %s: %s\n", hs.Rollback.From, hs.Rollback.To, hs.Rollback.Reason)
	}
	if hs.Converging != "" {
		fmt.Fprintf(c.out, "in progress: %s\n", hs.Converging)
	}
	if len(hs.Kept) > 0 {
		fmt.Fprintf(c.out, "kept:     %s\n", strings.Join(hs.Kept, ", "))
	}
	if !hs.NextPoll.IsZero() {
		fmt.Fprintf(c.out, "next poll: %s\n", hs.NextPoll.Format(time.RFC3339))
	}
	return nil
}

func (c *CLI) rollback(ctx context.Context, a *agent.Agent, to string) error {
	rel, err := a.Rollback(ctx, to)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "rolled back to %s (seq %d)\n", rel.ID, rel.Seq)
	return nil
}

// toolEnv is what pnpm, node, docker and the PostgreSQL tools run with:
// the agent's PATH and the variables that point them at their daemons.
func toolEnv() []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8"}
	for _, v := range []envvars.Variable{envvars.DockerHost} {
		if val, ok := v.Lookup(); ok {
			env = append(env, v.Name+"="+val)
		}
	}
	return env
}

// maxReconcile bounds one reconcile for the watchdog: install and build
// steps may take minutes, never this long.
const maxReconcile = 30 * time.Minute

// run converges every interval (plus jitter) until stopped. Transient
// errors back off; nothing but a lock conflict stops the loop.
func (c *CLI) run(ctx context.Context, a *agent.Agent, cfg Config, log *slog.Logger) error {
	lock, err := a.HoldDaemonLock()
	if err != nil {
		return err
	}
	defer lock.Release()
	if cfg.MetricsAddr != "" && cfg.MetricsAddr != "off" {
		srv := &http.Server{Addr: cfg.MetricsAddr, Handler: a.Metrics, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "addr", cfg.MetricsAddr, "err", err)
			}
		}()
		defer srv.Close()
	}
	// The watchdog is fed only while the loop makes progress: a reconcile
	// stuck longer than maxReconcile stops the pings and systemd restarts
	// the agent (the journal then recovers the host).
	var beat atomic.Int64
	beat.Store(c.now().UnixNano())
	if wd := watchdogInterval(); wd > 0 {
		go func() {
			t := time.NewTicker(wd)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if c.now().Sub(time.Unix(0, beat.Load())) < maxReconcile {
						sdNotify("WATCHDOG=1")
					}
				}
			}
		}()
	}
	if err := a.PreflightCurrent(); err != nil {
		// Logged, not fatal: the running release keeps running, and each
		// converge checks again before it changes anything.
		log.Error("this host cannot run the current release as it is", "err", err)
	}
	backoff := time.Duration(0)
	ready := false
	for {
		// A stop request ends the loop between reconciles, never in the
		// middle of one: a converge cut short would roll back for nothing.
		// systemd's TimeoutStopSec (then SIGKILL and the journal) bounds it.
		beat.Store(c.now().UnixNano())
		out, err := a.Once(context.WithoutCancel(ctx))
		beat.Store(c.now().UnixNano())
		switch {
		case errors.Is(err, state.ErrLocked):
			// `agent once` or `agent rollback` by hand: let it finish.
			log.Info("another reconcile is running; waiting for the next poll", "err", err)
		case err != nil && fault.KindOf(err) == fault.KindTransient:
			backoff = min(max(2*backoff, cfg.Interval.Duration), 5*time.Minute)
			log.Warn("reconcile failed; will retry", "err", err, "in", backoff.String())
		case err != nil:
			backoff = 0
			log.Error("reconcile", "err", err)
		default:
			backoff = 0
			if out.Result != agent.ResultUpToDate {
				log.Info("reconcile", "result", out.Result, "seq", out.Seq)
			}
		}
		if !ready {
			sdNotify("READY=1")
			ready = true
		}
		if out != nil {
			sdNotify("STATUS=" + out.Result + " seq " + fmt.Sprint(out.Seq))
		}
		wait := max(backoff, cfg.Interval.Duration)
		if j := cfg.Jitter.Duration; j > 0 {
			wait += rand.N(j)
		}
		if err != nil || (out != nil && out.Result != agent.ResultUpToDate) {
			// Say when the next try is (agent status: "next poll").
			a.NoteNextPoll(c.now().Add(wait))
		}
		select {
		case <-ctx.Done():
			sdNotify("STOPPING=1")
			return nil
		case <-time.After(wait):
		}
	}
}

func (c *CLI) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// secretChain resolves {file: …} only when secretsDir names where such
// files live, so a release cannot read arbitrary host files into an env.
func secretChain(cfg Config) *secrets.Chain {
	ch := &secrets.Chain{AWS: &secrets.AWSResolver{Region: cfg.AWSRegion}}
	if cfg.SecretsDir != "" {
		ch.File = &secrets.FileResolver{Root: cfg.SecretsDir}
	}
	return ch
}
