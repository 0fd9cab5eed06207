package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cohuron/deploy/pkg/extract"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/plan"
	"github.com/cohuron/deploy/pkg/preflight"
	"github.com/cohuron/deploy/pkg/proc"
	"github.com/cohuron/deploy/pkg/release"
	"github.com/cohuron/deploy/pkg/secrets"
	"github.com/cohuron/deploy/pkg/state"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/tree"
	"github.com/cohuron/deploy/pkg/trust"
)

// Outcome is what one reconcile did.
type Outcome struct {
	Result  string    `json:"result"` // up-to-date, converged, rolled-back, rejected, blocked, failed
	Seq     uint64    `json:"seq"`
	Plan    plan.Plan `json:"plan"`
	Blocked string    `json:"blocked,omitempty"`
	// Preflight lists what this host lacks to run the release (agent plan).
	Preflight []string `json:"preflight,omitempty"`
	// Schema is what a declarative schema step would run (agent plan).
	Schema *SchemaDiff `json:"schema,omitempty"`
}

// Results of a reconcile.
const (
	ResultUpToDate   = "up-to-date"
	ResultConverged  = "converged"
	ResultRolledBack = "rolled-back"
	ResultRejected   = "rejected"
	ResultBlocked    = "blocked"
	ResultFailed     = "failed"
)

// desired is a verified release and what the host shows.
type desired struct {
	v   *release.Verified
	obs plan.Observed
	// envs are the release's env files with their secrets resolved, when
	// observing resolved them (nil: stage resolves them).
	envs map[string]map[string]string
}

// looking says how to observe the host.
type looking struct {
	// dryRun: agent plan; what cannot be observed is reported, not an error.
	dryRun bool
	// secrets: resolve the env files' secrets and compare them with what
	// the running release was given (every new release; on the running
	// one every secretsRefresh).
	secrets bool
	// refresh: the running release's periodic look at its secrets. A
	// secrets store that does not answer then leaves the running env files
	// as they are (said in Unobserved and the log) instead of stopping
	// the repair of a crashed process, which needs no secret.
	refresh bool
}

// Once runs one reconcile: it returns without any store request beyond
// the conditional GET, and without writing anything, when nothing changed.
func (a *Agent) Once(ctx context.Context) (*Outcome, error) {
	lock, st, err := a.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	d, out, err := a.poll(ctx, st, false)
	if err != nil || out != nil {
		return out, err
	}
	return a.converge(ctx, st, d)
}

// begin starts anything that changes the host: it takes the reconcile
// lock, loads the state and finishes a converge a crash interrupted.
func (a *Agent) begin(ctx context.Context) (*state.Lock, *state.State, error) {
	lock, err := a.states.Acquire()
	if err != nil {
		return nil, nil, err
	}
	st, err := a.states.Load()
	if err == nil {
		err = a.recover(ctx, st)
	}
	if err != nil {
		lock.Release()
		return nil, nil, err
	}
	return lock, st, nil
}

// Plan computes what Once would do, changing nothing on the host or in
// the state (it does read the store).
func (a *Agent) Plan(ctx context.Context) (*Outcome, error) {
	st, err := a.states.Load()
	if err != nil {
		return nil, err
	}
	d, out, err := a.poll(ctx, st, true)
	if err != nil || out != nil {
		if err == nil && st.Current != nil && st.Current.Spec != nil {
			err = planPreflight(out, a.preflight(st.Current.Spec))
		}
		return out, err
	}
	p := plan.Make(plan.Desired{Release: d.v.Release, Digest: d.v.Digest}, st.Current, d.obs)
	res := ResultConverged
	if p.UpToDate() {
		res = ResultUpToDate
	}
	out = &Outcome{Result: res, Seq: d.v.Release.Seq, Plan: p}
	if sc := d.v.Release.Spec.Schema; sc.Declarative() && p.Has(plan.Schema, "") && d.obs.Schema != nil && d.obs.Schema.Deferred == "" {
		// What the declarative step would run, statement by statement.
		if out.Schema, err = a.planSchema(ctx, d.v.Release); err != nil {
			out.Plan.Unobserved = append(out.Plan.Unobserved, "schema statements: "+firstLine(fault.Scrub(err.Error())))
			out.Schema = nil
		}
	}
	err = a.preflight(&d.v.Release.Spec)
	if err == nil {
		err = schemaPreflight(p, d.obs)
	}
	return out, planPreflight(out, err)
}

// planPreflight adds what this host lacks (err, from preflight) to a
// plan's outcome.
func planPreflight(out *Outcome, err error) error {
	var pe *preflight.Error
	if errors.As(err, &pe) {
		for _, pr := range pe.Problems {
			out.Preflight = append(out.Preflight, pr.String())
		}
	}
	return err
}

// preflight checks that this host can run spec: its user exists and every
// tool a step needs is executable by whoever runs it. Each problem says
// the fix.
func (a *Agent) preflight(spec *manifest.Spec) error {
	if a.Preflight != nil {
		return a.Preflight(spec)
	}
	return preflight.Check(spec, a.ToolEnv).Err()
}

// schemaPreflight is, when the plan imports a declarative schema, the
// observation that the database role may not create the shadow database
// as a host problem (like a missing tool): it blocks the release until
// fixed, found before anything is touched (observed with the digest's
// query: an unchanged schema costs no round trip).
func schemaPreflight(p plan.Plan, obs plan.Observed) error {
	if !p.Has(plan.Schema, "") || obs.Schema == nil || obs.Schema.NoShadow == "" {
		return nil
	}
	role := obs.Schema.NoShadow
	return &preflight.Error{Problems: []preflight.Problem{{
		Check:    "the database role of schema.databaseURL (schema.mode declarative)",
		Expected: "CREATEDB (or a superuser): the release's schema files are imported into a shadow database on the same server and compared with the live one",
		Found:    fmt.Sprintf("role %s has neither CREATEDB nor SUPERUSER", role),
		Fix:      fmt.Sprintf("as a superuser: psql -c 'ALTER ROLE %s CREATEDB;'", role),
	}}}
}

// PreflightCurrent checks the running release's spec on this host (at start).
func (a *Agent) PreflightCurrent() error {
	st, err := a.states.Load()
	if err != nil || st.Current == nil || st.Current.Spec == nil {
		return err
	}
	return a.preflight(st.Current.Spec)
}

// poll finds the desired release. It returns an Outcome when the reconcile
// ends here (nothing new, rejected, known bad).
func (a *Agent) poll(ctx context.Context, st *state.State, dryRun bool) (*desired, *Outcome, error) {
	etag := st.LatestETag
	if dryRun {
		etag = ""
	}
	rc, info, err := a.Store.Get(ctx, store.LatestKey(a.Cfg.Env), etag)
	a.Metrics.Polls.Add(1)
	switch {
	case errors.Is(err, store.ErrNotModified):
		// Nothing published: converge only if the host drifted.
		if st.Current == nil || st.Current.Spec == nil {
			if st.Last != nil && st.Last.Blocked != "" {
				return nil, &Outcome{Result: ResultBlocked, Seq: st.Last.Seq, Blocked: st.Last.Blocked}, nil
			}
			return nil, &Outcome{Result: ResultUpToDate}, nil
		}
		d, p, derr := a.drift(ctx, st, dryRun)
		if d != nil || derr != nil {
			return d, nil, derr
		}
		if st.Last != nil && st.Last.Blocked != "" && st.Desired > st.Current.Seq {
			// Running fine, but not the latest: say why.
			return nil, &Outcome{Result: ResultBlocked, Seq: st.Desired, Blocked: st.Last.Blocked}, nil
		}
		return nil, &Outcome{Result: ResultUpToDate, Seq: st.Current.Seq, Plan: p}, nil
	case errors.Is(err, store.ErrNotFound):
		return nil, &Outcome{Result: ResultBlocked, Blocked: "no release published for " + a.Cfg.Env}, nil
	case err != nil:
		a.Metrics.StoreErrors.Add(1)
		return nil, nil, fault.Transient(fmt.Errorf("polling %s: %w", store.LatestKey(a.Cfg.Env), err))
	}
	hint, err := readHint(rc)
	if err != nil {
		return nil, nil, fault.Transient(err)
	}
	if hint < st.LastSeq {
		// The hint is unsigned and racing publishers can move it back:
		// take the newest release in the store. Only when nothing there is
		// as new as what this host applied is it a replay.
		if seqs, lerr := release.Seqs(ctx, a.Store, a.Cfg.Env); lerr == nil && len(seqs) > 0 && seqs[len(seqs)-1] >= st.LastSeq {
			a.Log.Warn("latest hint is behind the newest release; using the newest", "hint", hint, "newest", seqs[len(seqs)-1])
			hint = seqs[len(seqs)-1]
		}
	}
	exp := trust.Expect{Env: a.Cfg.Env, Now: a.Now(), Last: trust.Applied{Seq: st.LastSeq, Digest: st.LastDigest}}
	v, err := release.FetchVerified(ctx, a.Store, a.Cfg.Env, hint, a.Policy, exp)
	if err != nil {
		if fault.KindOf(err) != fault.KindRejected {
			return nil, nil, err
		}
		if errors.Is(err, trust.ErrBelowThreshold) {
			// Good signatures, too few yet: co-signers may still add theirs
			// without the hint changing, so look again next poll.
			var ve *trust.VerificationError
			errors.As(err, &ve)
			why := "awaiting co-signers: " + ve.Expected + ", found " + ve.Found
			if last := st.Last; !dryRun && (last == nil || last.Seq != hint || last.Blocked != why) {
				// Recorded (and reported) once, not at every poll.
				a.record(ctx, st, &state.Attempt{Seq: hint, Started: a.Now(), Result: ResultBlocked, Error: err.Error(), Blocked: why})
			}
			if d, err := a.keepRunning(ctx, st, dryRun); d != nil || err != nil {
				return d, nil, err
			}
			return nil, &Outcome{Result: ResultBlocked, Seq: hint, Blocked: why}, nil
		}
		a.Metrics.Rejected.Add(1)
		if !dryRun {
			a.record(ctx, st, &state.Attempt{Seq: hint, Started: a.Now(), Result: ResultRejected, Error: err.Error(), Blocked: "verification: " + blockedBy(err)})
			// Do not re-verify the same bad bytes every poll, unless the
			// verdict hangs on the host clock, which may be put right.
			if ve := (*trust.VerificationError)(nil); !errors.As(err, &ve) || !ve.Clock {
				st.LatestETag = info.ETag
			}
			a.save(st)
		}
		return nil, &Outcome{Result: ResultRejected, Seq: hint, Blocked: blockedBy(err)}, err
	}
	if err := a.checkPaths(&v.Release.Spec); err != nil {
		// This host's configuration, not the release, may be what is
		// wrong: refused at every poll until one of them changes, never
		// remembered as bad, and reported once.
		a.Metrics.Rejected.Add(1)
		why := "spec.paths: " + err.Error()
		if last := st.Last; !dryRun && (last == nil || last.Seq != v.Release.Seq || last.Blocked != why) {
			a.record(ctx, st, &state.Attempt{Seq: v.Release.Seq, Digest: v.Digest, Started: a.Now(), Finished: a.Now(), Result: ResultRejected, Error: err.Error(), Blocked: why})
			a.save(st)
		}
		if d, err := a.keepRunning(ctx, st, dryRun); d != nil || err != nil {
			return d, nil, err
		}
		return nil, &Outcome{Result: ResultRejected, Seq: v.Release.Seq, Blocked: why}, fault.Rejected(fmt.Errorf("release %d: %w", v.Release.Seq, err))
	}
	if bad, ok := st.IsBad(v.Release.Seq, v.Digest); ok {
		if !dryRun {
			st.LatestETag = info.ETag
			a.save(st)
		}
		if d, err := a.keepRunning(ctx, st, dryRun); d != nil || err != nil {
			return d, nil, err
		}
		return nil, &Outcome{Result: ResultBlocked, Seq: v.Release.Seq, Blocked: "known-bad: " + bad.Reason}, nil
	}
	obs, envs, err := a.observe(ctx, st, v.Release, looking{dryRun: dryRun, secrets: true})
	if err != nil {
		return nil, nil, err
	}
	if !dryRun && st.Current != nil && st.Current.Digest == v.Digest {
		if p := plan.Make(plan.Desired{Release: v.Release, Digest: v.Digest}, st.Current, obs); p.UpToDate() {
			st.LatestETag = info.ETag
			a.save(st)
			return nil, &Outcome{Result: ResultUpToDate, Seq: v.Release.Seq, Plan: p}, nil
		}
	}
	if !dryRun {
		st.LatestETag = info.ETag
	}
	return &desired{v: v, obs: obs, envs: envs}, nil, nil
}

// checkPaths refuses a release whose spec.paths are not the paths this
// agent manages: the agent never moves a host's root on its own.
func (a *Agent) checkPaths(spec *manifest.Spec) error {
	var diffs []string
	if spec.Paths.Root != a.Cfg.Root {
		diffs = append(diffs, fmt.Sprintf("root is %s, but this agent manages %s", spec.Paths.Root, a.Cfg.Root))
	}
	if spec.Paths.Backups != a.Cfg.Backups {
		diffs = append(diffs, fmt.Sprintf("backups is %s, but this agent keeps releases in %s", spec.Paths.Backups, a.Cfg.Backups))
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("the release's spec.paths.%s: publish a manifest whose paths match the hosts, or set root and backups in the agent's configuration to them", strings.Join(diffs, "; spec.paths."))
}

// keepRunning repairs the running release while the latest cannot be
// applied (known bad, awaiting co-signers): a stopped service or process
// is still brought back. It returns nil when nothing drifted.
func (a *Agent) keepRunning(ctx context.Context, st *state.State, dryRun bool) (*desired, error) {
	if st.Current == nil || st.Current.Spec == nil {
		return nil, nil
	}
	d, _, err := a.drift(ctx, st, dryRun)
	return d, err
}

// drift plans the running release against the host: it returns what to
// converge when something drifted, else nil and the (empty) plan.
func (a *Agent) drift(ctx context.Context, st *state.State, dryRun bool) (*desired, plan.Plan, error) {
	v := &release.Verified{Release: currentAsRelease(st.Current), Digest: st.Current.Digest}
	secretsDue := dryRun || a.secretsDue()
	obs, envs, err := a.observe(ctx, st, v.Release, looking{dryRun: dryRun, secrets: secretsDue, refresh: true})
	if err != nil {
		return nil, plan.Plan{}, err
	}
	if secretsDue && !dryRun && envs != nil {
		a.secretsChecked = a.Now()
	}
	p := plan.Make(plan.Desired{Release: v.Release, Digest: v.Digest}, st.Current, obs)
	if p.UpToDate() {
		return nil, p, nil
	}
	return &desired{v: v, obs: obs, envs: envs}, p, nil
}

// secretsDue reports whether the running release's secrets are due to
// be resolved again, to notice one rotated behind an unchanged reference.
func (a *Agent) secretsDue() bool {
	return a.Cfg.SecretsRefresh > 0 && (a.secretsChecked.IsZero() || a.Now().Sub(a.secretsChecked) >= a.Cfg.SecretsRefresh)
}

func readHint(rc io.ReadCloser) (uint64, error) {
	defer rc.Close()
	buf, err := io.ReadAll(io.LimitReader(rc, 64))
	if err != nil {
		return 0, fmt.Errorf("reading the latest hint: %w", err)
	}
	return release.ParseHint(buf)
}

func blockedBy(err error) string {
	var ve *trust.VerificationError
	if errors.As(err, &ve) {
		return ve.Check
	}
	return "invalid release"
}

// currentAsRelease rebuilds the desired release from the state, for drift
// repair when nothing new was published.
func currentAsRelease(cur *state.Release) *manifest.Release {
	// Without the recorded reference (older state files) the bundle can
	// still be found in the cache by digest, but not fetched or verified:
	// a reinstall then fails with a clear error rather than a rejection.
	b := manifest.BundleRef{SHA256: cur.Bundle}
	if cur.BundleRef != nil {
		b = *cur.BundleRef
	}
	return &manifest.Release{Seq: cur.Seq, Inputs: cur.Inputs, Spec: *cur.Spec, Bundle: b}
}

// observe looks at the host as it really is. It returns the release's
// env files resolved when how.secrets asked for them.
func (a *Agent) observe(ctx context.Context, st *state.State, rel *manifest.Release, how looking) (plan.Observed, map[string]map[string]string, error) {
	obs, err := a.observeHost(ctx, st, rel, how)
	if err != nil || !how.secrets {
		return obs, nil, err
	}
	changes, envs, err := a.rotatedSecrets(ctx, rel, st.Current)
	if err != nil {
		if !how.dryRun && !how.refresh {
			return obs, nil, err
		}
		if how.refresh && !how.dryRun {
			a.Log.Warn("could not resolve the running release's secrets to look for rotated ones; its env files stay as they are, tried again next poll", "err", err)
		}
		obs.Unobserved = append(obs.Unobserved, "secrets: "+firstLine(err.Error()))
		return obs, nil, nil
	}
	obs.Secrets = changes
	return obs, envs, nil
}

func (a *Agent) observeHost(ctx context.Context, st *state.State, rel *manifest.Release, how looking) (plan.Observed, error) {
	bundleSHA := rel.Bundle.SHA256
	var obs plan.Observed
	target, plain, err := a.rootTarget()
	if err != nil {
		return obs, err
	}
	obs.RootTarget, obs.RootIsPlainDir = target, plain
	if st.Current != nil {
		if fi, err := os.Stat(st.Current.Dir); err == nil && fi.IsDir() {
			obs.CurrentDirOK = true
		}
	}
	if bundleSHA != "" && !strings.Contains(bundleSHA, "/") {
		if _, err := os.Stat(filepath.Join(a.cacheDir(), bundleSHA+".tar.gz")); err == nil {
			obs.BundleCached = true
		}
	}
	ps, err := a.Procs.Status(ctx)
	if err != nil {
		return obs, fmt.Errorf("reading process status: %w", err)
	}
	obs.Processes = map[string]plan.Process{}
	for name, s := range ps {
		obs.Processes[name] = plan.Process{Running: s.Running, Restarts: s.Restarts, Dir: a.processDir(s.PIDs)}
	}
	return obs, a.observeSteps(ctx, &obs, rel, st.Current, how.dryRun)
}

// rotatedSecrets resolves rel's env files and names, per file, the
// variables whose reference is the same as the running release's but
// whose value is not: a secret rotated at its source. It returns the
// resolved files too, so staging does not resolve them again.
func (a *Agent) rotatedSecrets(ctx context.Context, rel *manifest.Release, cur *state.Release) (map[string][]plan.SecretChange, map[string]map[string]string, error) {
	resolved := map[string]map[string]string{}
	for _, ef := range rel.Spec.EnvFiles {
		_, vals, err := secrets.Render(ctx, a.Secrets, ef)
		if err != nil {
			return nil, nil, err
		}
		resolved[ef.Path] = vals
	}
	if cur == nil || cur.Spec == nil {
		return nil, resolved, nil
	}
	given, err := a.readEnvs(cur.Dir)
	if err != nil {
		return nil, resolved, nil // nothing recorded to compare with: the files are written anyway
	}
	declared := map[string]map[string]manifest.Value{}
	for _, ef := range cur.Spec.EnvFiles {
		declared[ef.Path] = ef.Vars
	}
	changes := map[string][]plan.SecretChange{}
	for _, ef := range rel.Spec.EnvFiles {
		for _, name := range slices.Sorted(maps.Keys(ef.Vars)) {
			v := ef.Vars[name]
			old, had := given[ef.Path][name]
			if v.IsRef() && declared[ef.Path][name] == v && had && old != resolved[ef.Path][name] {
				changes[ef.Path] = append(changes[ef.Path], plan.SecretChange{Var: name, Ref: v.String()})
			}
		}
	}
	return changes, resolved, nil
}

// processDir is the release directory the processes with these pids run
// from (their working directory, under the releases directory), or ""
// when it cannot be told. A process that is not restarted keeps running
// from an older release's directory, which pruning must then spare.
func (a *Agent) processDir(pids []int) string {
	for _, pid := range pids {
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil {
			continue
		}
		rel, err := filepath.Rel(a.releasesDir(), cwd)
		if err != nil || !filepath.IsLocal(rel) {
			continue
		}
		first, _, _ := strings.Cut(rel, string(filepath.Separator))
		return filepath.Join(a.releasesDir(), first)
	}
	return ""
}

// converge executes the plan for d, rolling back on failure after the switch.
func (a *Agent) converge(ctx context.Context, st *state.State, d *desired) (*Outcome, error) {
	rel, start := d.v.Release, a.Now()
	p := plan.Make(plan.Desired{Release: rel, Digest: d.v.Digest}, st.Current, d.obs)
	out := &Outcome{Seq: rel.Seq, Plan: p}
	attempt := &state.Attempt{Seq: rel.Seq, Digest: d.v.Digest, Started: start}
	sameRelease := st.Current != nil && st.Current.Digest == d.v.Digest
	if !sameRelease || runsTools(p) {
		err := a.preflight(&rel.Spec)
		if err == nil {
			err = schemaPreflight(p, d.obs)
		}
		if err != nil {
			// The host, not the release, lacks something: nothing is
			// touched (not even an adoption), and the next poll looks again.
			attempt.Blocked = "host preflight: fix the host (see the error)"
			out, err = a.fail(ctx, st, attempt, out, err)
			if !sameRelease {
				// Meanwhile the running release is still kept running.
				if d2, derr := a.keepRunning(ctx, st, false); derr == nil && d2 != nil {
					if _, rerr := a.converge(ctx, st, d2); rerr != nil {
						a.Log.Error("repairing the running release while the new one waits for the host", "err", rerr)
					}
				}
			}
			return out, err
		}
	}
	if d.obs.RootIsPlainDir && st.Current == nil {
		adopted, err := a.adopt()
		if err != nil {
			return nil, err
		}
		st.Current = adopted
		a.save(st)
		d.obs.RootIsPlainDir, d.obs.RootTarget = false, adopted.Dir
		p = plan.Make(plan.Desired{Release: rel, Digest: d.v.Digest}, st.Current, d.obs)
		out.Plan = p
	}
	if sameRelease && st.Last != nil && st.Desired > rel.Seq {
		// A repair of the running release: the newer seq stays blocked.
		attempt.Blocked = st.Last.Blocked
	}
	for _, s := range p.Steps {
		attempt.Steps = append(attempt.Steps, s.String())
	}
	a.Log.Info("converging", "seq", rel.Seq, "steps", len(p.Steps))

	newDir := filepath.Join(a.releasesDir(), releaseID(rel.Seq, d.v.Digest))
	prev := st.Current
	if sameRelease && p.Has(plan.Extract, "") {
		prev = nil // the current directory is gone: reinstall it in place
	}

	kind := state.KindUpgrade
	switch {
	case sameRelease:
		kind = state.KindRepair
	case prev == nil:
		kind = state.KindInstall
	}
	var procNames []string
	for _, pr := range rel.Spec.Processes {
		procNames = append(procNames, pr.Name)
	}

	// Stage the new release directory next to the live one.
	var envs map[string]map[string]string
	var depsRec *state.Deps
	if p.Has(plan.Extract, "") {
		j := &state.Journal{Phase: state.PhaseStaging, Kind: kind, Procs: procNames, Seq: rel.Seq, Digest: d.v.Digest, NewDir: newDir, Started: start}
		if prev != nil {
			j.PrevDir = prev.Dir
		}
		if err := a.states.WriteJournal(j); err != nil {
			return nil, err
		}
		a.crashPoint("staging")
		var err error
		envs, err = a.stage(ctx, rel, newDir, d.envs)
		if err == nil {
			depsRec, err = a.prepare(ctx, p, rel, prev, newDir)
		}
		if err != nil {
			// Dropped also when reinstalling the running release: its
			// directory was missing, and a half-prepared one must not
			// look intact to the next poll.
			a.dropStaged(newDir, sameRelease)
			a.clearJournal()
			return a.fail(ctx, st, attempt, out, err)
		}
	} else if st.Current != nil {
		newDir = st.Current.Dir
		depsRec = st.Current.Deps
		var err error
		if envs, err = a.readEnvs(newDir); err != nil {
			return a.fail(ctx, st, attempt, out, err)
		}
		if p.Has(plan.EnvFiles, "") {
			// Secrets rotated behind unchanged references: the running
			// release's env files are rewritten in place, and the plan
			// restarts what reads them.
			if err := a.rewriteEnvs(&rel.Spec, rel.Inputs, p, newDir, envs, d.envs); err != nil {
				return a.fail(ctx, st, attempt, out, fmt.Errorf("rewriting env files with rotated secrets: %w", err))
			}
		}
		if p.Has(plan.Install, "") {
			// Damaged node_modules of the running release: installed again
			// in place. A failure is not the release's fault: it ran.
			if depsRec, err = a.prepare(ctx, p, rel, st.Current, newDir); err != nil {
				return a.fail(ctx, st, attempt, out, fmt.Errorf("repairing node_modules of the running release: %w", err))
			}
		}
	}

	a.Log.Info("staged", "seq", rel.Seq, "dir", newDir, "took", a.Now().Sub(start).Round(time.Millisecond).String())

	// Services and schema, before the switch: the new code starts against
	// them. A failure here leaves the running release as it was.
	sj := &state.Journal{Phase: state.PhaseStaging, Kind: kind, Procs: procNames, Seq: rel.Seq, Digest: d.v.Digest, NewDir: newDir, Started: start}
	if prev != nil && prev.Dir != newDir {
		sj.PrevDir = prev.Dir
	}
	composeRec, schemaRec, composed, err := a.services(ctx, sj, p, rel, st.Current, newDir)
	if err != nil {
		what, uerr := a.undoServices(ctx, prev, rel, composed, nil)
		if uerr != nil {
			err = fmt.Errorf("%w; undoing: %w", err, uerr)
		}
		attempt.Schema = what
		if st.Current == nil || newDir != st.Current.Dir {
			a.dropStaged(newDir, false)
		}
		a.clearJournal()
		return a.fail(ctx, st, attempt, out, err)
	}

	// Switch, restart, check; any failure from here rolls back.
	j := sj
	j.Phase = state.PhaseSwitching
	a.crashPoint("staged")
	if err := a.states.WriteJournal(j); err != nil {
		return nil, err
	}
	a.crashPoint("switching")
	err = a.activate(ctx, j, p, &rel.Spec, newDir, envs, restartCounts(d.obs))
	if err != nil {
		if sameRelease {
			a.clearJournal()
			return a.fail(ctx, st, attempt, out, fmt.Errorf("repairing drift of seq %d: %w", rel.Seq, err))
		}
		if j.PrevDir == "" {
			a.abandonFirstInstall(ctx, &rel.Spec, newDir)
			st.MarkBad(rel.Seq, d.v.Digest, err.Error(), a.Now())
			return a.fail(ctx, st, attempt, out, fmt.Errorf("first install of seq %d failed, nothing older to roll back to: %w", rel.Seq, err))
		}
		undo := func(ctx context.Context) (string, error) {
			return a.undoServices(ctx, prev, rel, composed, schemaRec)
		}
		return a.rollbackAfterFailure(ctx, st, attempt, out, prev, &rel.Spec, undo, err)
	}

	// Converged.
	bundleRef := rel.Bundle
	newRel := state.Release{ID: filepath.Base(newDir), Seq: rel.Seq, Digest: d.v.Digest, Dir: newDir,
		Bundle: rel.Bundle.SHA256, BundleRef: &bundleRef, Inputs: rel.Inputs, Spec: &rel.Spec, Applied: a.Now(),
		Deps: depsRec, Compose: composeRec, Schema: schemaRec}
	if sameRelease && prev != nil {
		newRel.Applied = prev.Applied
	}
	if prev != nil && prev.Dir != newDir {
		st.Previous = append([]state.Release{*prev}, st.Previous...)
	}
	st.Current = &newRel
	st.LastSeq, st.LastDigest = rel.Seq, d.v.Digest
	delete(st.CrashCount, strconv.FormatUint(rel.Seq, 10))
	attempt.Result, attempt.Finished = ResultConverged, a.Now()
	a.prune(st, runningFrom(p, d.obs))
	// Commit: the state says "converged" first, then the journal goes; a
	// crash in between is rolled forward by recover (state and journal
	// name the same release). The report to the store comes last.
	st.Last = attempt
	if err := a.states.Save(st); err != nil {
		return nil, err
	}
	a.crashPoint("committed")
	if err := a.states.ClearJournal(); err != nil {
		return nil, err
	}
	a.record(ctx, st, attempt)
	a.Metrics.Converges.Add(1)
	a.Metrics.LastConvergeMillis.Store(int64(a.Now().Sub(start) / time.Millisecond))
	out.Result = ResultConverged
	a.Log.Info("converged", "seq", rel.Seq, "dir", newDir, "took", a.Now().Sub(start).String())
	return out, nil
}

// stage fetches (or reuses) the bundle, verifies it, extracts it into
// newDir and writes the env files (resolved, or resolved here when nil).
// It returns the resolved env files.
func (a *Agent) stage(ctx context.Context, rel *manifest.Release, newDir string, resolved map[string]map[string]string) (map[string]map[string]string, error) {
	bundle, err := a.bundleFile(ctx, rel)
	if err != nil {
		return nil, err
	}
	os.RemoveAll(newDir)
	tmp := newDir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Open(bundle)
	if err != nil {
		return nil, err
	}
	lim := a.Policy.Spec.Limits
	// The policy counts files; Extract counts every entry. Git tracks no
	// empty directories, so a bundle has at most as many directories as files.
	// Bytes: the signed size when known, so a bundle that understates it
	// stops there instead of at the policy's cap.
	maxBytes := int64(lim.UnpackedBytes)
	if u := rel.Bundle.Unpacked; u > 0 && (maxBytes <= 0 || u < maxBytes) {
		maxBytes = u
	}
	_, err = extract.Extract(f, tmp, extract.Limits{Files: 2 * lim.Files, Bytes: maxBytes, NonDirs: rel.Bundle.Files})
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("extracting %s: %w", rel.Bundle.Key, err)
	}
	envs := map[string]map[string]string{}
	var composeEnv []byte
	for _, ef := range rel.Spec.EnvFiles {
		data, vals, err := renderEnv(ctx, a.Secrets, ef, resolved)
		if err != nil {
			return nil, err
		}
		// The tree comes from the app repository: a symlinked directory
		// could send secrets somewhere served. Refuse links on the way.
		if err := noLinksOnPath(tmp, ef.Path); err != nil {
			return nil, err
		}
		if err := a.writeEnvFile(&rel.Spec, tmp, ef.Path, data); err != nil {
			return nil, fmt.Errorf("writing env file %s: %w", ef.Path, err)
		}
		envs[ef.Path] = vals
		if c := rel.Spec.Compose; c != nil && c.EnvFile == ef.Path {
			composeEnv = data
		}
	}
	if rel.Spec.Compose != nil {
		if err := a.saveComposeInputs(&rel.Spec, rel.Inputs, tmp, filepath.Base(newDir), composeEnv); err != nil {
			return nil, err
		}
	}
	if err := a.writeEnvs(filepath.Base(newDir), envs); err != nil {
		return nil, err
	}
	// The tree must be on disk before the journal moves past staging.
	if err := syncFS(tmp); err != nil {
		return nil, fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, newDir); err != nil {
		return nil, err
	}
	return envs, state.SyncDir(filepath.Dir(newDir))
}

// rewriteEnvs writes the env files the plan names into dir, the running
// release's directory, from resolved values, and records them (and the
// compose env copy) as that release's.
func (a *Agent) rewriteEnvs(spec *manifest.Spec, inputs manifest.Inputs, p plan.Plan, dir string, envs, resolved map[string]map[string]string) error {
	var composeEnv []byte
	for _, ef := range spec.EnvFiles {
		if !p.Has(plan.EnvFiles, ef.Path) {
			continue
		}
		vals, ok := resolved[ef.Path]
		if !ok {
			return fmt.Errorf("env file %s: no resolved values", ef.Path)
		}
		data, err := secrets.Format(vals)
		if err != nil {
			return fmt.Errorf("env file %s, %w", ef.Path, err)
		}
		// The running tree is the app user's: a symlink there is theirs,
		// not the release's, and writeEnvFile never follows one out.
		if err := a.writeEnvFile(spec, dir, ef.Path, data); err != nil {
			return fmt.Errorf("writing env file %s: %w", ef.Path, err)
		}
		envs[ef.Path] = vals
		if c := spec.Compose; c != nil && c.EnvFile == ef.Path {
			composeEnv = data
		}
	}
	if composeEnv != nil {
		if err := a.saveComposeInputs(spec, inputs, dir, filepath.Base(dir), composeEnv); err != nil {
			return err
		}
	}
	return a.writeEnvs(filepath.Base(dir), envs)
}

// writeEnvFile writes env file rel of the tree at dir 0640, owned by
// spec.user when the agent is root (the app, dotenv, and its build tools,
// vite, read their own), never through a symlink out of the tree.
func (a *Agent) writeEnvFile(spec *manifest.Spec, dir, rel string, data []byte) error {
	uid, gid := -1, -1
	if spec.User != "" && os.Geteuid() == 0 {
		u, err := proc.LookupUser(spec.User)
		if err != nil {
			return fmt.Errorf("spec.user: %w", err)
		}
		uid, gid = int(u.Uid), int(u.Gid)
	}
	return tree.WriteFile(dir, rel, data, 0o640, uid, gid)
}

// renderEnv formats an env file from values already resolved, or
// resolves them.
func renderEnv(ctx context.Context, r secrets.Resolver, ef manifest.EnvFile, resolved map[string]map[string]string) ([]byte, map[string]string, error) {
	if vals, ok := resolved[ef.Path]; ok {
		data, err := secrets.Format(vals)
		if err != nil {
			return nil, nil, fmt.Errorf("env file %s, %w", ef.Path, err)
		}
		return data, vals, nil
	}
	return secrets.Render(ctx, r, ef)
}

// envsPath keeps the resolved env files of a release in the agent's own
// state directory (owner-only), so a rollback restores them without
// reaching SSM, and they never sit in the release tree the app serves.
func (a *Agent) envsPath(id string) string {
	return filepath.Join(a.Cfg.StateDir, "envs", id+".json")
}

func (a *Agent) writeEnvs(id string, envs map[string]map[string]string) error {
	data, err := json.Marshal(envs)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(a.envsPath(id)), 0o700); err != nil {
		return err
	}
	return state.WriteFile(a.envsPath(id), data, 0o600)
}

func (a *Agent) readEnvs(dir string) (map[string]map[string]string, error) {
	envs := map[string]map[string]string{}
	data, err := os.ReadFile(a.envsPath(filepath.Base(dir)))
	if errors.Is(err, fs.ErrNotExist) {
		return envs, nil // an adopted tree: its env files are already in place
	}
	if err != nil {
		return nil, err
	}
	return envs, json.Unmarshal(data, &envs)
}

// noLinksOnPath refuses a relative path under root whose directories
// include a symlink.
func noLinksOnPath(root, rel string) error {
	dir := root
	parts := strings.Split(filepath.Dir(rel), "/")
	for _, part := range parts {
		if part == "." || part == "" {
			continue
		}
		dir = filepath.Join(dir, part)
		fi, err := os.Lstat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // created fresh below
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fault.Rejected(fmt.Errorf("env file %s: %s in the bundle is a symlink; env files are never written through links", rel, strings.TrimPrefix(dir, root+"/")))
		}
	}
	return nil
}

// bundleFile returns a verified local copy of the release's bundle,
// downloading it into the cache when needed.
func (a *Agent) bundleFile(ctx context.Context, rel *manifest.Release) (string, error) {
	if err := os.MkdirAll(a.cacheDir(), 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(a.cacheDir(), rel.Bundle.SHA256+".tar.gz")
	sigs, err := release.ReadSigs(ctx, a.Store, rel.Bundle.Key)
	if err != nil {
		if fault.KindOf(err) == fault.KindRejected {
			return "", err
		}
		return "", fault.Transient(err)
	}
	verify := func(p string) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return release.VerifyBundleDigest(f, rel, a.Policy, sigs, a.Now())
	}
	if _, err := os.Stat(path); err == nil {
		if err := verify(path); err == nil {
			return path, nil
		}
		os.Remove(path) // damaged cache: fetch again
	}
	// A name of its own: agent plan may fetch while a converge does.
	tf, err := os.CreateTemp(a.cacheDir(), rel.Bundle.SHA256+".part-*")
	if err != nil {
		return "", err
	}
	tmp := tf.Name()
	tf.Close()
	if err := a.Fetch(ctx, rel, tmp); err != nil {
		os.Remove(tmp) // never a partial download left to apply
		if fault.KindOf(err) == fault.KindRejected {
			return "", err
		}
		// A reset, a stall, a full disk: the release is not to blame.
		return "", fault.Transient(fmt.Errorf("downloading bundle %s: %w", rel.Bundle.Key, err))
	}
	if err := verify(tmp); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	a.pruneCache(rel.Bundle.SHA256)
	return path, nil
}

// pruneCache keeps the newest few bundles.
func (a *Agent) pruneCache(keep string) {
	entries, _ := os.ReadDir(a.cacheDir())
	type item struct {
		name string
		mod  time.Time
	}
	var items []item
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".tar.gz") {
			items = append(items, item{e.Name(), info.ModTime()})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].mod.After(items[j].mod) })
	for i, it := range items {
		if i >= a.Cfg.Keep+1 && it.name != keep+".tar.gz" {
			os.Remove(filepath.Join(a.cacheDir(), it.name))
		}
	}
}

// activate switches the root to dir and restarts and checks what the plan says.
func (a *Agent) activate(ctx context.Context, j *state.Journal, p plan.Plan, spec *manifest.Spec, dir string, envs map[string]map[string]string, restarts map[string]int) error {
	if pr, ok := a.Procs.(releasePreparer); ok {
		if err := pr.Prepare(dir, spec); err != nil {
			return err
		}
	}
	if target, _, _ := a.rootTarget(); target != dir {
		if err := a.switchRoot(dir); err != nil {
			return err
		}
	}
	j.Phase = state.PhaseSwitched
	if err := a.states.WriteJournal(j); err != nil {
		return err
	}
	a.crashPoint("switched")
	var stop, restart []string
	for _, s := range p.Steps {
		switch s.Kind {
		case plan.Stop:
			stop = append(stop, s.Target)
		case plan.Restart:
			restart = append(restart, s.Target)
		}
	}
	if len(stop) > 0 {
		if err := a.Procs.Stop(ctx, stop); err != nil {
			return err
		}
	}
	if len(restart) == 0 {
		return nil
	}
	if a.Legacy != nil && strings.HasPrefix(filepath.Base(j.PrevDir), adoptedPrefix) {
		// The old deploy script's processes hold the ports: they go just
		// before ours start (the only downtime of a migration).
		if err := a.Legacy.Stop(ctx); err != nil {
			return err
		}
	}
	a.Log.Info("restarting", "processes", strings.Join(restart, ","))
	if err := a.Procs.Apply(ctx, a.Cfg.Root, spec, envs, restart); err != nil {
		return err
	}
	a.crashPoint("restarted")
	return a.waitHealthy(ctx, spec, restart, restarts)
}

// runsTools reports whether plan p starts more than the process manager
// and health checks: a repair of the running release that only restarts
// a crashed process is not held up by a tool another step would need.
func runsTools(p plan.Plan) bool {
	for _, k := range []plan.Kind{plan.Extract, plan.Install, plan.Build, plan.Compose, plan.Schema} {
		if p.Has(k, "") {
			return true
		}
	}
	return false
}

// runningFrom lists the release directories of processes the plan did not
// restart: they still run from there.
func runningFrom(p plan.Plan, obs plan.Observed) []string {
	var dirs []string
	for name, o := range obs.Processes {
		if o.Dir != "" && !p.Has(plan.Restart, name) {
			dirs = append(dirs, o.Dir)
		}
	}
	return dirs
}

// restartCounts is how often each process had restarted when observed.
func restartCounts(obs plan.Observed) map[string]int {
	m := map[string]int{}
	for name, p := range obs.Processes {
		m[name] = p.Restarts
	}
	return m
}

// aliveEvery spaces the process-manager checks made while waiting for
// health: each costs a pm2 CLI start (about half a second).
const aliveEvery = 2 * time.Second

// waitHealthy runs every health check of the named processes, failing
// early when a process keeps restarting. restarts holds the restart counts
// seen before the restart; nil takes them at the first check.
func (a *Agent) waitHealthy(ctx context.Context, spec *manifest.Spec, names []string, restarts map[string]int) error {
	for _, name := range names {
		var pr *manifest.Process
		for i := range spec.Processes {
			if spec.Processes[i].Name == name {
				pr = &spec.Processes[i]
			}
		}
		if pr == nil {
			continue
		}
		base, known := restarts[name]
		last := a.Now() // the first probe goes ahead without a status call
		alive := func() error {
			if a.Now().Sub(last) < aliveEvery {
				return nil
			}
			last = a.Now()
			ps, err := a.Procs.Status(ctx)
			if err != nil {
				return nil // a status hiccup is not a verdict on the app
			}
			s := ps[name]
			if s.State == "errored" || s.State == "stopped" {
				return fmt.Errorf("process %s is %s", name, s.State)
			}
			if !known {
				base, known = s.Restarts, true
			}
			if s.Restarts-base >= a.Cfg.MaxRestarts {
				return fmt.Errorf("process %s restarted %d times since it was started", name, s.Restarts-base)
			}
			return nil
		}
		for _, h := range pr.Health {
			if err := a.Health.WaitHealthy(ctx, h, a.Cfg.HealthEvery, alive); err != nil {
				a.Metrics.HealthFailures.Add(1)
				return fmt.Errorf("health of %s: %w", name, err)
			}
		}
	}
	return nil
}

// abandonFirstInstall undoes a first install that failed after its switch:
// there is no older release, so the host goes back to having none.
func (a *Agent) abandonFirstInstall(ctx context.Context, spec *manifest.Spec, dir string) {
	var names []string
	for _, p := range spec.Processes {
		names = append(names, p.Name)
	}
	if err := a.Procs.Stop(ctx, names); err != nil {
		a.Log.Warn("stopping the processes of a failed first install", "err", err)
	}
	if target, _, _ := a.rootTarget(); target == dir {
		os.Remove(a.Cfg.Root)
	}
	os.RemoveAll(dir)
	a.clearJournal()
}

// fail records a converge that failed; the running release (if any) is untouched.
func (a *Agent) fail(ctx context.Context, st *state.State, at *state.Attempt, out *Outcome, err error) (*Outcome, error) {
	at.Finished, at.Error = a.Now(), err.Error()
	at.Result = ResultFailed
	out.Result = ResultFailed
	var se *stepError
	running := st.Current != nil && st.Current.Digest == at.Digest
	if fault.KindOf(err) == fault.KindRejected {
		at.Result, out.Result = ResultRejected, ResultRejected
		at.Blocked = "verification: " + blockedBy(err)
		st.MarkBad(at.Seq, at.Digest, err.Error(), a.Now())
		a.Metrics.Rejected.Add(1)
	} else if errors.As(err, &se) && !running {
		// The release itself is broken (its lockfile, a hook, a DDL file):
		// it was never activated, and it is not retried. (A repair of the
		// running release that fails is retried: the release did run.)
		st.MarkBad(at.Seq, at.Digest, err.Error(), a.Now())
		at.Blocked = fmt.Sprintf("known-bad: seq %d failed before activation: %v", at.Seq, err)
		err = fault.ConvergeFailed(fmt.Errorf("seq %d was not activated; the running release stays: %w", at.Seq, err))
	} else if _, bad := st.IsBad(at.Seq, at.Digest); bad {
		at.Blocked = fmt.Sprintf("known-bad: seq %d failed: %v", at.Seq, err)
	}
	if _, bad := st.IsBad(at.Seq, at.Digest); !bad {
		// Neither applied nor known bad: the next poll must read the
		// release again, not take "not modified" for "up to date".
		st.LatestETag = ""
	}
	a.record(ctx, st, at)
	a.Log.Error("converge failed; the running release is untouched", "seq", at.Seq, "err", err)
	return out, err
}

// clearJournal ends a converge on a failure path: an error is logged, as
// the failure being reported matters more; a stale journal only makes the
// next start run recovery, which is safe.
func (a *Agent) clearJournal() {
	if err := a.states.ClearJournal(); err != nil {
		a.Log.Error("clearing the journal", "err", err)
	}
}
