package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cohuron/deploy/pkg/compose"
	"github.com/cohuron/deploy/pkg/deps"
	"github.com/cohuron/deploy/pkg/extract"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/hooks"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/plan"
	"github.com/cohuron/deploy/pkg/proc"
	"github.com/cohuron/deploy/pkg/schema"
	"github.com/cohuron/deploy/pkg/schema/declare"
	"github.com/cohuron/deploy/pkg/secrets"
	"github.com/cohuron/deploy/pkg/state"
	"github.com/cohuron/deploy/pkg/tree"
)

// This file runs the steps between staging and the switch: dependencies,
// build hooks, compose and schema. Each runs only when the plan says so;
// otherwise its result is carried over from the running release.

// stepError marks a failure caused by the release itself (a lockfile that
// does not match, a failing hook or DDL file): the release is not retried.
type stepError struct{ err error }

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

func releaseFault(err error) error {
	if err == nil || fault.KindOf(err) == fault.KindTransient || fault.KindOf(err) == fault.KindRejected {
		return err
	}
	return &stepError{err}
}

// networkTrouble reports whether an install failed for want of the
// registry rather than because of the release (npm's and pnpm's codes).
func networkTrouble(err error) bool {
	msg := err.Error()
	for _, code := range []string{"ERR_PNPM_META_FETCH_FAIL", "ERR_PNPM_FETCH_", "ETIMEDOUT", "ECONNRESET", "ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ENETUNREACH"} {
		if strings.Contains(msg, code) {
			return true
		}
	}
	return false
}

// dockerTrouble reports whether compose failed for want of the engine
// rather than because of the release's services.
func dockerTrouble(err error) bool {
	msg := err.Error()
	for _, s := range []string{"Cannot connect to the Docker daemon", "Is the docker daemon running", "docker compose not found", "error during connect", "connection refused"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// composeClient finds docker compose (v2) or docker-compose (v1) once.
func (a *Agent) composeClient(ctx context.Context) (*compose.Client, error) {
	if a.Compose != nil {
		return a.Compose, nil
	}
	c, err := compose.Detect(ctx, a.ToolEnv, a.Log)
	if err != nil {
		return nil, err
	}
	a.Compose = c
	return c, nil
}

func (a *Agent) logDir(id string) string { return filepath.Join(a.Cfg.StateDir, "logs", id) }

func (a *Agent) composeDir() string { return filepath.Join(a.Cfg.StateDir, "compose") }

// depsKey is the dependency key of rel on this host.
func (a *Agent) depsKey(ctx context.Context, rel *manifest.Release) (*plan.Deps, error) {
	t, err := a.toolVersions(ctx, rel.Spec.User)
	if err != nil {
		return nil, err
	}
	return &plan.Deps{Key: deps.Key(rel.Inputs.Dependencies.Digest, t), Tools: fmt.Sprintf("node %s, pnpm %s", t.Node, t.Pnpm)}, nil
}

// toolCache is <stateDir>/tools.json: node's and pnpm's versions by the
// fingerprint of their files, so a poll does not start pnpm (a third of
// a second) to learn what it already knows.
type toolCache struct {
	Fingerprint string     `json:"fingerprint"`
	Tools       deps.Tools `json:"tools"`
}

func (a *Agent) toolVersions(ctx context.Context, user string) (deps.Tools, error) {
	path := filepath.Join(a.Cfg.StateDir, "tools.json")
	fp, err := deps.Fingerprint(a.ToolEnv)
	if err != nil {
		return deps.Tools{}, fmt.Errorf("tool versions: %w", err)
	}
	var c toolCache
	if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &c) == nil && c.Fingerprint == fp && c.Tools.Node != "" {
		return c.Tools, nil
	}
	t, err := deps.Versions(ctx, a.ToolEnv, user)
	if err != nil {
		return deps.Tools{}, err
	}
	if err := state.WriteJSON(path, toolCache{Fingerprint: fp, Tools: t}); err != nil {
		a.Log.Warn("caching tool versions", "err", err)
	}
	return t, nil
}

// observeSteps fills what the plan needs to decide on install, compose
// and schema. The database is consulted only when the schema inputs
// differ from what the running release recorded.
func (a *Agent) observeSteps(ctx context.Context, obs *plan.Observed, rel *manifest.Release, cur *state.Release, dryRun bool) error {
	spec := &rel.Spec
	if in := spec.Install; in != nil {
		d, err := a.depsKey(ctx, rel)
		if err != nil {
			return err
		}
		switch {
		case cur == nil || cur.Deps == nil:
			d.Reuse = "nothing installed"
		case cur.Seq == rel.Seq:
			// The running release itself: only damage counts, not newer
			// tools on the host (the next release installs with those).
			d.Key, d.Tools = cur.Deps.Key, cur.Deps.Tools
			if err := deps.Check(filepath.Join(cur.Dir, in.Cwd), cur.Deps.Key); err != nil {
				d.Reuse = err.Error()
			}
		default:
			if err := deps.Check(filepath.Join(cur.Dir, in.Cwd), d.Key); err != nil {
				d.Reuse = err.Error()
			}
		}
		obs.Deps = d
	}
	if c := spec.Compose; c != nil {
		// Status and image IDs come from the docker CLI: no need to find
		// (and start) compose itself on every poll.
		cl := &compose.Client{Env: a.ToolEnv, Log: a.Log}
		svcs, err := cl.Status(ctx, c.Project)
		if err == nil && cur != nil && cur.Compose != nil && len(cur.Compose.Images) > 0 {
			obs.Images, err = cl.ImageIDs(ctx, slices.Sorted(maps.Keys(cur.Compose.Images)))
		}
		switch {
		case err != nil && dryRun:
			// agent plan on a host whose Docker daemon does not answer:
			// decide from the inputs, and say what was not looked at.
			obs.Images = nil
			obs.Unobserved = append(obs.Unobserved, "compose services and images: "+firstLine(err.Error()))
		case err != nil:
			// The engine, not the release: looked at again next poll.
			return fault.Transient(fmt.Errorf("observing the compose services: %w", err))
		default:
			obs.Services = map[string]plan.Service{}
			for name, s := range svcs {
				obs.Services[name] = plan.Service{Running: s.State == "running", State: s.State, Health: s.Health}
			}
		}
	}
	if sc := spec.Schema; sc != nil && (cur == nil || cur.Schema == nil || cur.Schema.Digest != rel.Inputs.Schema.Digest) {
		im, err := a.importer(ctx, sc)
		if err != nil {
			return err
		}
		files, seeds := schemaFiles(rel)
		var p schema.Pending
		noShadow := ""
		if sc.Declarative() {
			var done, canShadow bool
			var role string
			if done, role, canShadow, err = im.DeclaredState(ctx, rel.Inputs.Schema.Digest); err == nil && !done {
				p.Changes = []schema.Change{{File: sc.Dir, Why: "declarative: " + schemaChanges(cur, rel) + "; imported into a shadow database and compared with the live one at converge"}}
				if !canShadow {
					noShadow = role
				}
			}
		} else {
			p, err = im.Pending(ctx, files, seeds)
		}
		if err != nil {
			if spec.Compose != nil && !servicesUp(obs.Services, spec.Compose.Services) {
				// The database may be one of the compose services, not
				// up yet: the import decides what it lacks after compose.
				obs.Schema = &plan.SchemaPending{Deferred: "the database is not reachable before compose up (" + firstLine(err.Error()) + "); what it lacks is read after compose"}
				return nil
			}
			return fault.Transient(fmt.Errorf("reading the schema history: %w", err))
		}
		sp := &plan.SchemaPending{Seeds: p.Seeds, NoShadow: noShadow}
		for _, c := range p.Changes {
			sp.Changes = append(sp.Changes, plan.SchemaChange{File: c.File, Why: c.Why})
		}
		obs.Schema = sp
	}
	return nil
}

// servicesUp reports whether every named service runs and is not unhealthy.
func servicesUp(svcs map[string]plan.Service, names []string) bool {
	for _, n := range names {
		if s, ok := svcs[n]; !ok || !s.Running || s.Health == "unhealthy" {
			return false
		}
	}
	return true
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// schemaChanges says what differs in rel's declarative schema from the
// running release's, by the signed digests: the files added, changed and
// removed (the first few), or the declarations.
func schemaChanges(cur *state.Release, rel *manifest.Release) string {
	if cur == nil || cur.Spec == nil || cur.Spec.Schema == nil {
		return "the files of a first release"
	}
	var changed []string
	for _, c := range rel.SchemaChangesFrom(cur.Inputs.Schema.Files) {
		changed = append(changed, c.File+" "+c.Why)
	}
	switch n := len(changed); {
	case n == 0:
		return "the files as before, the order or the declarations changed"
	case n > 3:
		return strings.Join(changed[:3], ", ") + fmt.Sprintf(" and %d more", n-3)
	default:
		return strings.Join(changed, ", ")
	}
}

// schemaFiles lists the release's schema files with their signed digests.
func schemaFiles(rel *manifest.Release) (files, seeds []schema.File) {
	sc := rel.Spec.Schema
	for _, n := range rel.SchemaOrder() {
		files = append(files, schema.File{Name: n, SHA256: rel.Inputs.Schema.Files[n]})
	}
	for _, n := range sc.Seed {
		seeds = append(seeds, schema.File{Name: n, SHA256: rel.Inputs.Schema.Files[n]})
	}
	return files, seeds
}

func (a *Agent) importer(ctx context.Context, sc *manifest.Schema) (*schema.Importer, error) {
	url, err := a.Secrets.Resolve(ctx, sc.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("schema.databaseURL: %w", err)
	}
	return &schema.Importer{URL: url, Log: a.Log, Now: a.Now, Env: a.ToolEnv}, nil
}

// prepare installs dependencies and runs build hooks in dir, or carries
// their results over from the running release, as the plan says.
//
// Root works in the tree while it is still root's: cloning node_modules
// and carrying build outputs over happen first; only then the tree goes
// to spec.user (always: the app owns its release), for pnpm and the hooks
// when they run (pnpm links files from the user's store).
func (a *Agent) prepare(ctx context.Context, p plan.Plan, rel *manifest.Release, cur *state.Release, dir string) (*state.Deps, error) {
	spec := &rel.Spec
	if spec.Install == nil && len(spec.Build) == 0 {
		return nil, handOver(spec, dir)
	}
	logs := a.logDir(filepath.Base(dir))
	var rec *state.Deps
	var d *plan.Deps
	install := spec.Install != nil && p.Has(plan.Install, "")
	if in := spec.Install; in != nil {
		var err error
		if d, err = a.depsKey(ctx, rel); err != nil {
			return nil, err
		}
		rec = &state.Deps{Key: d.Key, Tools: d.Tools}
		if !install {
			if cur == nil {
				return nil, errors.New("install: nothing to reuse node_modules from")
			}
			if err := deps.Reuse(filepath.Join(cur.Dir, in.Cwd), filepath.Join(dir, in.Cwd), d.Key); err != nil {
				return nil, fmt.Errorf("reusing node_modules of %s: %w", cur.ID, err)
			}
		}
	}
	var run []manifest.Hook
	for _, h := range spec.Build {
		switch {
		case p.Has(plan.Build, h.Name) && h.AtPublish():
			if err := a.extractArtifact(ctx, rel, h, dir); err != nil {
				return nil, err
			}
		case p.Has(plan.Build, h.Name):
			run = append(run, h)
		case cur == nil:
			return nil, fmt.Errorf("build hook %q: no running release to carry outputs over from", h.Name)
		case cur.Dir == dir:
			// a repair in place: the outputs are there
		default:
			if err := hooks.CarryOver(cur.Dir, dir, h.Outputs); err != nil {
				return nil, fmt.Errorf("build hook %q: %w", h.Name, err)
			}
		}
	}
	// The tree goes to spec.user only now that root is done working in
	// it, and always: the app writes into its own tree (logs, caches).
	if err := handOver(spec, dir); err != nil {
		return nil, err
	}
	if !install && len(run) == 0 {
		return rec, nil
	}
	if err := a.runAsUser(ctx, rel, dir, logs, d, install, run); err != nil {
		return nil, err
	}
	return rec, nil
}

// handOver gives the release tree to spec.user when the agent is root
// (what is the user's already is left alone).
func handOver(spec *manifest.Spec, dir string) error {
	if spec.User == "" || os.Geteuid() != 0 {
		return nil
	}
	u, err := proc.LookupUser(spec.User)
	if err != nil {
		return fmt.Errorf("spec.user: %w", err)
	}
	return tree.Chown(dir, int(u.Uid), int(u.Gid))
}

// extractArtifact puts the outputs of a publish-time hook into dir from
// the release's signed artifact: fetched (or taken from the cache) and
// verified like the bundle, unpacked aside, and only the hook's declared
// outputs moved into the tree.
func (a *Agent) extractArtifact(ctx context.Context, rel *manifest.Release, h manifest.Hook, dir string) error {
	art, ok := rel.Artifact(h.Name)
	if !ok {
		return fault.Rejected(fmt.Errorf("build hook %q runs at publish time, but release %d has no artifact for it", h.Name, rel.Seq))
	}
	as := *rel
	as.Bundle = art.BundleRef
	file, err := a.bundleFile(ctx, &as)
	if err != nil {
		return fmt.Errorf("artifact of build hook %q: %w", h.Name, err)
	}
	tmp := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".artifact-"+h.Name)
	os.RemoveAll(tmp)
	defer os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	lim := a.Policy.Spec.Limits
	maxBytes := int64(lim.UnpackedBytes)
	if art.Unpacked > 0 && (maxBytes <= 0 || art.Unpacked < maxBytes) {
		maxBytes = art.Unpacked
	}
	_, err = extract.Extract(f, tmp, extract.Limits{Files: 2 * lim.Files, Bytes: maxBytes, NonDirs: art.Files})
	f.Close()
	if err != nil {
		return fmt.Errorf("extracting the artifact %s of build hook %q: %w", art.Key, h.Name, err)
	}
	if err := hooks.OnlyOutputs(tmp, h.Outputs); err != nil {
		return fault.Rejected(fmt.Errorf("artifact %s of build hook %q: %w", art.Key, h.Name, err))
	}
	if err := hooks.CarryOver(tmp, dir, h.Outputs); err != nil {
		return fmt.Errorf("artifact %s of build hook %q: %w", art.Key, h.Name, err)
	}
	return nil
}

// runAsUser runs pnpm install and the build hooks that must run, as the
// app user, in a tree that user owns for the time being.
func (a *Agent) runAsUser(ctx context.Context, rel *manifest.Release, dir, logs string, d *plan.Deps, install bool, run []manifest.Hook) error {
	spec := &rel.Spec
	if install {
		in := spec.Install
		inst := &deps.Installer{Env: a.ToolEnv, User: spec.User, Log: a.Log, Now: a.Now}
		if err := inst.Install(ctx, filepath.Join(dir, in.Cwd), in.Command, in.Timeout.Duration, filepath.Join(logs, "install.log"), d.Key); err != nil {
			err = fmt.Errorf("install: %w", err)
			if networkTrouble(err) {
				return fault.Transient(err) // retried on the next poll
			}
			return releaseFault(err)
		}
	}
	r := &hooks.Runner{Env: a.ToolEnv, User: spec.User, Log: a.Log, Now: a.Now}
	for _, h := range run {
		if err := r.Run(ctx, dir, h.Name, h.Cwd, h.Command, h.Timeout.Duration, filepath.Join(logs, "build-"+h.Name+".log")); err != nil {
			return releaseFault(err)
		}
	}
	return nil
}

// saveComposeInputs keeps a verified copy of the compose file and its env
// file in the agent's own directory: the release tree belongs to the app
// user, and compose runs as root.
func (a *Agent) saveComposeInputs(spec *manifest.Spec, inputs manifest.Inputs, dir, id string, envData []byte) error {
	c := spec.Compose
	data, err := os.ReadFile(filepath.Join(dir, c.File))
	if err != nil {
		return fmt.Errorf("compose file: %w", err)
	}
	sum := sha256.Sum256(data)
	if want := inputs.Compose.Files[c.File]; hex.EncodeToString(sum[:]) != want {
		return fault.Rejected(fmt.Errorf("compose file %s: sha256 %s does not match the signed release's %s", c.File, hex.EncodeToString(sum[:]), want))
	}
	if err := os.MkdirAll(a.composeDir(), 0o700); err != nil {
		return err
	}
	if err := state.WriteFile(filepath.Join(a.composeDir(), id+".yml"), data, 0o600); err != nil {
		return err
	}
	return state.WriteFile(filepath.Join(a.composeDir(), id+".env"), envData, 0o600)
}

// composeProject is the compose project of a release: its verified file,
// the live root as project directory (so definitions do not change with
// the release directory's name) and its env file.
func (a *Agent) composeProject(spec *manifest.Spec, id string) compose.Project {
	p := compose.Project{Name: spec.Compose.Project, File: filepath.Join(a.composeDir(), id+".yml"), Dir: a.Cfg.Root}
	if spec.Compose.EnvFile != "" {
		p.EnvFile = filepath.Join(a.composeDir(), id+".env")
	}
	return p
}

// composeUp brings the services of the release in dir up and waits for
// the declared ones to be healthy; compose leaves unchanged containers alone.
func (a *Agent) composeUp(ctx context.Context, spec *manifest.Spec, inputs manifest.Inputs, key, dir string) (*state.Compose, error) {
	cl, err := a.composeClient(ctx)
	if err != nil {
		return nil, err
	}
	proj := a.composeProject(spec, filepath.Base(dir))
	if _, err := os.Stat(proj.File); err != nil {
		// Staged by an older agent: verify and copy from the tree now.
		envs, rerr := a.readEnvs(dir)
		if rerr != nil {
			return nil, rerr
		}
		envData, ferr := secrets.Format(envs[spec.Compose.EnvFile])
		if ferr != nil {
			return nil, ferr
		}
		if err := a.saveComposeInputs(spec, inputs, dir, filepath.Base(dir), envData); err != nil {
			return nil, err
		}
	}
	logf, err := proc.OpenLog(filepath.Join(a.logDir(filepath.Base(dir)), "compose.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	if err := cl.Up(ctx, proj, logf); err != nil {
		return nil, fmt.Errorf("compose up: %w", err)
	}
	timeout := spec.Compose.HealthTimeout.Duration
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	svcs, err := cl.WaitHealthy(ctx, spec.Compose.Project, spec.Compose.Services, timeout, 250*time.Millisecond)
	if err != nil {
		return nil, err
	}
	// The images the containers run, to notice a rebuilt or re-pulled tag.
	var refs []string
	for _, s := range svcs {
		if s.Image != "" {
			refs = append(refs, s.Image)
		}
	}
	slices.Sort(refs)
	ids, err := cl.ImageIDs(ctx, slices.Compact(refs))
	if err != nil {
		return nil, err
	}
	return &state.Compose{Key: key, Images: ids}, nil
}

// importSchema dumps the schemas, then applies what the database lacks.
func (a *Agent) importSchema(ctx context.Context, j *state.Journal, rel *manifest.Release, dir string) (*state.Schema, error) {
	sc := rel.Spec.Schema
	rec := &state.Schema{Digest: rel.Inputs.Schema.Digest}
	files, err := schema.Load(dir, rel.SchemaOrder())
	if err != nil {
		return nil, err
	}
	seeds, err := schema.Load(dir, sc.Seed)
	if err != nil {
		return nil, err
	}
	for _, f := range append(slices.Clone(files), seeds...) {
		if want := rel.Inputs.Schema.Files[f.Name]; f.SHA256 != want {
			return nil, fault.Rejected(fmt.Errorf("schema file %s: sha256 %s does not match the signed release's %s", f.Name, f.SHA256, want))
		}
	}
	im, err := a.importer(ctx, sc)
	if err != nil {
		return nil, err
	}
	dump := filepath.Join(a.Cfg.Backups, "schema", fmt.Sprintf("%s-%s.sql", filepath.Base(dir), a.Now().UTC().Format("20060102T150405Z")))
	if err := os.MkdirAll(filepath.Dir(dump), 0o700); err != nil {
		return nil, err
	}
	if err := im.Dump(ctx, sc.Schemas, dump); err != nil {
		return nil, fmt.Errorf("dumping the database before the schema import: %w", err)
	}
	j.Schema = &state.SchemaUndo{Dump: dump, Schemas: sc.Schemas, Reversible: sc.Reversible, DatabaseURL: sc.DatabaseURL}
	if err := a.states.WriteJournal(j); err != nil {
		return nil, err
	}
	a.crashPoint("importing")
	if sc.Declarative() {
		applied, err := a.declareSchema(ctx, im, rel, files)
		if err != nil {
			return nil, err
		}
		rec.Applied, rec.Dump = applied, dump
		return rec, nil
	}
	res, err := im.Apply(ctx, files, seeds, schema.ApplyOptions{Seq: rel.Seq, Host: a.Cfg.HostID, AllowDestructive: sc.AllowDestructive})
	if err != nil {
		err = fmt.Errorf("schema import (nothing applied; the database is as before): %w", err)
		var fe *schema.FileError
		var de *schema.DestructiveError
		if (errors.As(err, &fe) && !fe.Transient()) || errors.As(err, &de) {
			return nil, releaseFault(err) // the release's own files: not retried
		}
		return nil, fault.Transient(err) // the database: retried on the next poll
	}
	rec.Applied, rec.Seeded = res.Applied, res.Seeded
	if len(res.Applied)+len(res.Seeded) > 0 {
		rec.Dump = dump
	} else {
		os.Remove(dump) // another host imported first
	}
	return rec, nil
}

// declareSchema brings the database to the schema files' (declarative
// mode, see declare.Converge). It returns what it ran, for the status.
func (a *Agent) declareSchema(ctx context.Context, im *schema.Importer, rel *manifest.Release, files []schema.File) ([]string, error) {
	sc := rel.Spec.Schema
	r := a.declareRequest(im, files, sc)
	r.Digest, r.Seq, r.Now, r.Crash = rel.Inputs.Schema.Digest, rel.Seq, a.Now(), a.crashPoint
	res, err := declare.Converge(ctx, r)
	if res != nil {
		a.logWarnings(res.Warnings)
		for _, n := range res.Notes {
			a.Log.Warn("schema: " + n)
		}
	}
	var re *declare.RefusedError
	var se *declare.StatementError
	var fe *declare.FilesError
	switch {
	case errors.As(err, &re), errors.As(err, &fe), errors.As(err, &se) && !se.Transient():
		return nil, releaseFault(fmt.Errorf("schema (nothing applied; the database is as before): %w", err))
	case err != nil:
		return nil, schemaFault(err)
	case res.AlreadyDone:
		return []string{"another host sharing the database applied these files first"}, nil
	case res.FirstInstall:
		return []string{fmt.Sprintf("first install: %d files imported into the empty database (%d statements skipped, as psql skips them)", len(files), len(res.Warnings))}, nil
	}
	var ran []string
	for _, s := range res.Statements {
		ran = append(ran, firstLine(s.String()))
	}
	a.Log.Info("schema brought to the files'", "statements", len(ran), "warnings", len(res.Warnings))
	return ran, nil
}

// declareRequest is the declarative step's request for the files of
// schema section sc.
func (a *Agent) declareRequest(im *schema.Importer, files []schema.File, sc *manifest.Schema) declare.Request {
	return declare.Request{Importer: im, Files: files, Strict: sc.Strict, Host: a.Cfg.HostID,
		Options: declare.Options{Schemas: sc.Schemas, Renames: sc.Renames, Drops: sc.Drops, ReferenceData: sc.ReferenceData}}
}

// schemaFault classifies a shadow or first-install import error: what the
// release's files say is its fault (not retried), the rest the database's.
func schemaFault(err error) error {
	var fe *schema.FileError
	if errors.As(err, &fe) && !fe.Transient() {
		return releaseFault(fmt.Errorf("schema (nothing applied to the live database): %w", err))
	}
	return fault.Transient(fmt.Errorf("schema: %w", err))
}

func (a *Agent) logWarnings(ws []schema.Warning) {
	for i, w := range ws {
		if i == 20 {
			a.Log.Warn("schema import: more statements failed", "more", len(ws)-i)
			break
		}
		a.Log.Warn("schema import: statement skipped, as psql skips it", "at", fmt.Sprintf("%s:%d", w.File, w.Line), "error", firstLine(w.Message), "order", w.Order)
	}
}

// undoServices brings the previous release's compose definition back and,
// when the failed release imported a schema change and declared it
// reversible, restores the dump. It returns what it did about the schema,
// for the status.
func (a *Agent) undoServices(ctx context.Context, prev *state.Release, failed *manifest.Release, composed bool, imported *state.Schema) (string, error) {
	var errs []error
	if composed && prev != nil && prev.Spec != nil && prev.Spec.Compose != nil && prev.Compose != nil {
		if _, err := a.composeUp(ctx, prev.Spec, prev.Inputs, prev.Compose.Key, prev.Dir); err != nil {
			errs = append(errs, fmt.Errorf("bringing back the compose services of %s: %w", prev.ID, err))
		}
	}
	var what string
	if imported != nil && imported.Dump != "" {
		changed := strings.Join(append(slices.Clone(imported.Applied), imported.Seeded...), ", ")
		sc := failed.Spec.Schema
		if sc.Reversible {
			im, err := a.importer(ctx, sc)
			if err == nil {
				err = im.Restore(ctx, sc.Schemas, imported.Dump, failed.Seq)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("restoring the schema dump %s: %w", imported.Dump, err))
				what = fmt.Sprintf("restoring the dump %s failed; seq %d's schema changes (%s) are still in the database", imported.Dump, failed.Seq, changed)
			} else {
				what = fmt.Sprintf("restored the dump taken before seq %d's import (%s): undid %s", failed.Seq, imported.Dump, changed)
			}
		} else {
			what = fmt.Sprintf("kept seq %d's schema changes (%s): the release does not declare its import reversible; the dump taken before is %s", failed.Seq, changed, imported.Dump)
		}
	}
	return what, errors.Join(errs...)
}

// dropStaged removes a staged release directory that will not be
// activated, with its compose inputs unless it is the running release's
// (reinstalled because its directory was missing).
func (a *Agent) dropStaged(dir string, sameRelease bool) {
	os.RemoveAll(dir + ".tmp")
	os.RemoveAll(dir)
	if !sameRelease {
		os.Remove(filepath.Join(a.composeDir(), filepath.Base(dir)+".yml"))
		os.Remove(filepath.Join(a.composeDir(), filepath.Base(dir)+".env"))
	}
}

// services runs the compose and schema steps of the plan, journaled, and
// returns what the release converges with. composed reports whether
// compose up ran (also when it failed), so a failure can undo it.
func (a *Agent) services(ctx context.Context, j *state.Journal, p plan.Plan, rel *manifest.Release, cur *state.Release, dir string) (c *state.Compose, s *state.Schema, composed bool, err error) {
	if spec := rel.Spec.Compose; spec != nil {
		key := plan.ComposeKey(rel)
		if p.Has(plan.Compose, "") {
			j.Compose = true
			if err := a.states.WriteJournal(j); err != nil {
				return nil, nil, false, err
			}
			a.crashPoint("composing")
			if c, err = a.composeUp(ctx, &rel.Spec, rel.Inputs, key, dir); err != nil {
				if !dockerTrouble(err) {
					err = releaseFault(err) // the release's services do not come up: not retried
				}
				return nil, nil, true, err
			}
			composed = true
		} else {
			c = &state.Compose{Key: key}
			if cur != nil && cur.Compose != nil {
				c.Images = cur.Compose.Images
			}
		}
	}
	if rel.Spec.Schema != nil {
		if p.Has(plan.Schema, "") {
			if s, err = a.importSchema(ctx, j, rel, dir); err != nil {
				return c, nil, composed, err
			}
		} else if cur != nil && cur.Schema != nil && cur.Schema.Digest == rel.Inputs.Schema.Digest {
			cp := *cur.Schema
			s = &cp
		} else {
			s = &state.Schema{Digest: rel.Inputs.Schema.Digest}
		}
	}
	return c, s, composed, nil
}

// undoInterrupted undoes the compose and schema steps of a converge a
// crash interrupted, before the host returns to prev: the import is
// looked up in the schema history, as the crash may have come before or
// after its commit.
func (a *Agent) undoInterrupted(ctx context.Context, j *state.Journal, prev *state.Release) string {
	var imported *state.Schema
	failed := &manifest.Release{Seq: j.Seq}
	if u := j.Schema; u != nil {
		failed.Spec.Schema = &manifest.Schema{DatabaseURL: u.DatabaseURL, Schemas: u.Schemas, Reversible: u.Reversible}
		im, err := a.importer(ctx, failed.Spec.Schema)
		var rows []schema.HistoryRow
		if err == nil {
			rows, err = im.Applied(ctx)
		}
		if err != nil {
			a.Log.Error("recovery: reading the schema history", "err", err)
			if _, uerr := a.undoServices(ctx, prev, failed, j.Compose, nil); uerr != nil {
				a.Log.Error("recovery: undoing the compose step", "err", uerr)
			}
			return fmt.Sprintf("could not check whether seq %d's schema import committed: %v; the dump taken before it is %s", j.Seq, err, u.Dump)
		}
		imported = &state.Schema{Dump: u.Dump}
		for _, r := range rows {
			if r.Seq == j.Seq && r.Host == a.Cfg.HostID {
				if r.Kind == schema.KindSeed {
					imported.Seeded = append(imported.Seeded, r.File)
				} else {
					imported.Applied = append(imported.Applied, r.File)
				}
			}
		}
		if len(imported.Applied)+len(imported.Seeded) == 0 {
			imported = nil // the crash came before the commit (or after a restore): nothing to undo
		}
	}
	what, err := a.undoServices(ctx, prev, failed, j.Compose, imported)
	if err != nil {
		a.Log.Error("recovery: undoing compose and schema steps", "err", err)
	}
	return what
}
