package plan

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/state"
)

// Kind is what a step does. Steps run in the order of this list.
type Kind string

// Kinds of step, in converge order.
const (
	Fetch    Kind = "fetch"    // download and verify the bundle
	Extract  Kind = "extract"  // unpack it into a new release directory
	EnvFiles Kind = "envfiles" // write env files with secrets resolved
	Install  Kind = "install"  // pnpm install --frozen-lockfile in the new release directory
	Build    Kind = "build"    // run a build hook in the new release directory
	Compose  Kind = "compose"  // docker compose up -d --remove-orphans
	Schema   Kind = "schema"   // import schema files in one transaction
	Switch   Kind = "switch"   // point the root at the new release, atomically
	Stop     Kind = "stop"     // stop a process the release no longer declares
	Restart  Kind = "restart"  // start or reload a process
	Health   Kind = "health"   // wait for a process's health checks
)

var order = []Kind{Fetch, Extract, EnvFiles, Install, Build, Compose, Schema, Switch, Stop, Restart, Health}

// Step is one thing to do and why.
type Step struct {
	Kind   Kind   `json:"kind"`
	Target string `json:"target,omitempty"` // process name or file, when the step has one
	Reason string `json:"reason"`
}

func (s Step) String() string {
	if s.Target != "" {
		return fmt.Sprintf("%-8s %-14s %s", s.Kind, s.Target, s.Reason)
	}
	return fmt.Sprintf("%-8s %-14s %s", s.Kind, "", s.Reason)
}

// Service is what the host shows of one compose service.
type Service struct {
	Running bool
	State   string // running, exited, … ("" when there is no container)
	Health  string // healthy, unhealthy, starting, or "" without a healthcheck
}

// Deps is what the host shows of the dependency install.
type Deps struct {
	// Key of the desired release: its dependency inputs and the tool
	// versions on this host.
	Key   string
	Tools string
	// Reuse is "" when the current release's node_modules is intact for
	// Key and can be cloned; otherwise why not.
	Reuse string
}

// SchemaChange is one schema file that the database lacks.
type SchemaChange struct {
	File string
	Why  string // added, changed
}

// SchemaPending is what the database lacks of the desired schema.
type SchemaPending struct {
	Changes []SchemaChange
	Seeds   []string
	// Deferred, when set, says why the database could not be asked
	// before compose (it may be a compose service): the step runs and
	// reads what is pending then.
	Deferred string
	// NoShadow, when set, is the database role that may not create the
	// shadow database a pending declarative change needs (no CREATEDB).
	NoShadow string
}

// Process is what the host shows of one managed process.
type Process struct {
	Running  bool
	Restarts int
	// Dir is the release directory the process runs from ("" when unknown).
	Dir string
}

// SecretChange is a variable whose resolved value changed while its
// reference stayed the same (a rotated secret).
type SecretChange struct {
	Var string // variable name
	Ref string // the reference, kind:name
}

// Observed is the host as it really is, not as the state says.
type Observed struct {
	// RootTarget is the release directory the root points at ("" when the
	// root is missing).
	RootTarget string
	// RootIsPlainDir: the root is a directory left by the old deploy script.
	RootIsPlainDir bool
	// CurrentDirOK: the recorded current release directory exists.
	CurrentDirOK bool
	// BundleCached: the desired bundle is already on disk, verified.
	BundleCached bool
	Processes    map[string]Process

	// Deps is set when the release declares an install.
	Deps *Deps
	// Services are the compose services found (by service name).
	Services map[string]Service
	// Images maps the image references recorded at the last compose up
	// to the IDs they have now ("" when the image is gone).
	Images map[string]string
	// Schema is what the database lacks; nil when it was not checked
	// because the schema inputs did not change.
	Schema *SchemaPending
	// Secrets lists, per env file, the variables whose resolved value
	// differs from what the running release was given.
	Secrets map[string][]SecretChange
	// Unobserved says what could not be looked at (a Docker daemon that
	// does not answer, say), so the plan assumes nothing about it.
	Unobserved []string
}

// Desired is the release the host should run.
type Desired struct {
	Release *manifest.Release
	Digest  string // sha256 of its signed bytes
}

// Plan is the ordered list of steps, empty when the host is up to date.
type Plan struct {
	Seq     uint64 `json:"seq"`
	FromSeq uint64 `json:"fromSeq"`
	Steps   []Step `json:"steps"`
	// Skipped are steps that do not run, with why: what the old deploy
	// script redid each time.
	Skipped []Step `json:"skipped,omitempty"`
	// Unobserved says what the plan could not look at on the host, so it
	// decided from the release's inputs alone.
	Unobserved []string `json:"unobserved,omitempty"`
}

// UpToDate reports whether there is nothing to do.
func (p *Plan) UpToDate() bool { return len(p.Steps) == 0 }

// Has reports whether the plan has a step of kind k (for target, if given).
func (p *Plan) Has(k Kind, target string) bool {
	for _, s := range p.Steps {
		if s.Kind == k && (target == "" || s.Target == target) {
			return true
		}
	}
	return false
}

// Make computes the plan.
func Make(d Desired, cur *state.Release, obs Observed) Plan {
	rel := d.Release
	p := Plan{Seq: rel.Seq, Unobserved: obs.Unobserved}
	add := func(k Kind, target, format string, args ...any) {
		p.Steps = append(p.Steps, Step{Kind: k, Target: target, Reason: fmt.Sprintf(format, args...)})
	}
	skip := func(k Kind, target, format string, args ...any) {
		p.Skipped = append(p.Skipped, Step{Kind: k, Target: target, Reason: fmt.Sprintf(format, args...)})
	}
	procs := rel.Spec.Processes

	switch {
	case cur == nil:
		why := "first install"
		if obs.RootIsPlainDir {
			why = "first install; adopt the plain directory left by the old deploy script as the first backup"
		}
		fullInstall(add, rel, why, obs)
		if rel.Spec.Install != nil {
			add(Install, "", "%s", why)
		}
		for _, h := range rel.Spec.Build {
			add(Build, h.Name, "%s", buildWhy(h, why))
		}
		services(add, skip, rel, nil, obs)
		schema(add, skip, rel, nil, obs)
		for _, pr := range procs {
			add(Restart, pr.Name, "new process")
			add(Health, pr.Name, "%s", healthReason(pr))
		}
		return sorted(p)

	case cur.Digest == d.Digest:
		// Same release: only drift needs work.
		p.FromSeq = cur.Seq
		reinstall, repairDeps := "", ""
		switch {
		case !obs.CurrentDirOK:
			reinstall = "release directory " + cur.Dir + " is missing"
		case obs.Deps != nil && obs.Deps.Reuse != "":
			// Installed again in place: the running processes keep the
			// modules they loaded until they are restarted on the result.
			repairDeps = "node_modules of the running release is damaged: " + obs.Deps.Reuse
			add(Install, "", "%s", repairDeps)
		}
		if reinstall != "" {
			fullInstall(add, rel, reinstall, obs)
			if rel.Spec.Install != nil {
				add(Install, "", "%s", reinstall)
			}
			for _, h := range rel.Spec.Build {
				add(Build, h.Name, "%s", buildWhy(h, reinstall))
			}
		}
		rotated := map[string]string{}
		if reinstall == "" {
			for _, f := range rel.Spec.EnvFiles {
				if sc := obs.Secrets[f.Path]; len(sc) > 0 {
					rotated[f.Path] = secretsChange(f.Path, sc)
					add(EnvFiles, f.Path, "%s: rewritten in place", rotated[f.Path])
				}
			}
		}
		if reinstall == "" && obs.RootTarget != cur.Dir {
			found := obs.RootTarget
			if obs.RootIsPlainDir {
				found = "a plain directory"
			} else if found == "" {
				found = "nothing"
			}
			add(Switch, "", "root points at %s, expected %s", found, cur.Dir)
		}
		services(add, skip, rel, cur, obs)
		for _, pr := range procs {
			o := obs.Processes[pr.Name]
			switch {
			case reinstall != "":
				add(Restart, pr.Name, "release directory was reinstalled")
			case repairDeps != "":
				add(Restart, pr.Name, "node_modules was installed again")
			case rotated[pr.EnvFile] != "":
				add(Restart, pr.Name, "%s", rotated[pr.EnvFile])
			case !o.Running:
				add(Restart, pr.Name, "process %s not running", pr.Name)
			default:
				continue
			}
			add(Health, pr.Name, "%s", healthReason(pr))
		}
		return sorted(p)
	}

	// A new release.
	p.FromSeq = cur.Seq
	codeChanged := cur.Inputs.Code.Digest != rel.Inputs.Code.Digest
	switch {
	case codeChanged && !obs.BundleCached:
		add(Fetch, "", "code digest changed (%s)", shortDigest(rel.Inputs.Code.Digest))
	case !obs.BundleCached:
		add(Fetch, "", "bundle %s is not cached on this host", rel.Bundle.Key)
	}
	if codeChanged {
		add(Extract, "", "code digest changed: new release directory")
	} else {
		add(Extract, "", "code unchanged: new release directory from the cached bundle")
	}
	envChanged := map[string]string{}
	for _, f := range rel.Spec.EnvFiles {
		old := cur.Inputs.Config.Files[f.Path]
		if old == rel.Inputs.Config.Files[f.Path] && old != "" {
			continue
		}
		why := envFileChange(f, cur.Spec)
		envChanged[f.Path] = why
		add(EnvFiles, f.Path, "%s", why)
	}
	for _, f := range rel.Spec.EnvFiles {
		if sc := obs.Secrets[f.Path]; len(sc) > 0 && envChanged[f.Path] == "" {
			envChanged[f.Path] = secretsChange(f.Path, sc)
			add(EnvFiles, f.Path, "%s", envChanged[f.Path])
		}
	}
	if len(rel.Spec.EnvFiles) > 0 && len(envChanged) == 0 {
		add(EnvFiles, "", "env files unchanged: rewritten into the new release directory")
	}
	installing := dependencies(add, skip, rel, cur, obs)
	built := hooks(add, skip, rel, cur, codeChanged, installing)
	services(add, skip, rel, cur, obs)
	schema(add, skip, rel, cur, obs)
	add(Switch, "", "seq %d -> %d", cur.Seq, rel.Seq)

	oldProcs := map[string]manifest.Process{}
	if cur.Spec != nil {
		for _, pr := range cur.Spec.Processes {
			oldProcs[pr.Name] = pr
		}
	}
	for _, pr := range procs {
		old, existed := oldProcs[pr.Name]
		delete(oldProcs, pr.Name)
		o := obs.Processes[pr.Name]
		newIn, haveNew := rel.Inputs.Processes[pr.Name]
		oldIn, haveOld := cur.Inputs.Processes[pr.Name]
		declared := haveNew && haveOld && len(pr.Inputs) > 0
		var why string
		switch {
		case !existed:
			why = "new process"
		case !o.Running:
			why = fmt.Sprintf("process %s not running", pr.Name)
		case installing:
			why = "dependencies changed"
		case declared && newIn.Digest != oldIn.Digest:
			why = "inputs changed: " + inputsChange(cur, rel, oldIn, newIn, !reflect.DeepEqual(old, pr), pr.Inputs)
			if e := envChanged[pr.EnvFile]; e != "" {
				why = e
			}
		case declared:
		case codeChanged:
			why = "code digest changed"
		case envChanged[pr.EnvFile] != "":
			why = envChanged[pr.EnvFile]
		case !reflect.DeepEqual(old, pr):
			why = "process definition changed: " + procDiff(old, pr)
		}
		if why == "" {
			why = builtUnder(rel, built, pr.Cwd)
		}
		if why == "" && len(obs.Secrets[pr.EnvFile]) > 0 {
			why = secretsChange(pr.EnvFile, obs.Secrets[pr.EnvFile])
		}
		if why == "" {
			from := ""
			if o.Dir != "" {
				from = " from " + o.Dir
			}
			skip(Restart, pr.Name, "inputs unchanged: keeps running%s", from)
			continue
		}
		add(Restart, pr.Name, "%s", why)
		add(Health, pr.Name, "%s", healthReason(pr))
	}
	for _, name := range slices.Sorted(maps.Keys(oldProcs)) {
		add(Stop, name, "process %s is no longer declared", name)
	}
	return sorted(p)
}

// builtUnder names a build hook that ran with outputs under dir, whose
// process must restart to serve them, or "".
func builtUnder(rel *manifest.Release, built map[string]bool, dir string) string {
	for _, h := range rel.Spec.Build {
		if !built[h.Name] {
			continue
		}
		for _, o := range h.Outputs {
			if under(o, dir) {
				return fmt.Sprintf("build hook %s ran: %s is new", h.Name, o)
			}
		}
	}
	return ""
}

// secretsChange says which secrets of an env file changed value behind
// the same reference, by name and reference only: never a value.
func secretsChange(file string, changed []SecretChange) string {
	var names []string
	for _, c := range changed {
		names = append(names, fmt.Sprintf("%s (%s)", c.Var, c.Ref))
	}
	return fmt.Sprintf("secret(s) of %s changed value behind the same reference: %s", file, strings.Join(names, ", "))
}

func fullInstall(add adder, rel *manifest.Release, why string, obs Observed) {
	if !obs.BundleCached {
		add(Fetch, "", "%s", why)
	}
	add(Extract, "", "%s", why)
	for _, f := range rel.Spec.EnvFiles {
		add(EnvFiles, f.Path, "%s", why)
	}
	add(Switch, "", "%s", why)
}

// dependencies plans the install step; it reports whether it runs.
func dependencies(add, skip adder, rel *manifest.Release, cur *state.Release, obs Observed) bool {
	if rel.Spec.Install == nil {
		return false
	}
	var d Deps
	if obs.Deps != nil {
		d = *obs.Deps
	}
	switch {
	case cur.Deps == nil:
		add(Install, "", "no dependency install recorded for seq %d", cur.Seq)
	case d.Key != cur.Deps.Key:
		add(Install, "", "%s", depsChange(cur, rel, d))
	case d.Reuse != "":
		add(Install, "", "node_modules of seq %d cannot be reused: %s", cur.Seq, d.Reuse)
	default:
		skip(Install, "", "dependencies unchanged: node_modules of seq %d reused without network", cur.Seq)
		return false
	}
	return true
}

// depsChange names what changed in the dependency inputs.
func depsChange(cur *state.Release, rel *manifest.Release, d Deps) string {
	var parts []string
	oldFiles, newFiles := cur.Inputs.Dependencies.Files, rel.Inputs.Dependencies.Files
	for _, f := range slices.Sorted(maps.Keys(newFiles)) {
		switch old, ok := oldFiles[f]; {
		case !ok:
			parts = append(parts, f+" added")
		case old != newFiles[f]:
			parts = append(parts, f+" changed")
		}
	}
	for _, f := range slices.Sorted(maps.Keys(oldFiles)) {
		if _, ok := newFiles[f]; !ok {
			parts = append(parts, f+" removed")
		}
	}
	if cur.Deps.Tools != d.Tools {
		parts = append(parts, fmt.Sprintf("tools %s -> %s", cur.Deps.Tools, d.Tools))
	}
	if len(parts) == 0 {
		return "dependency key changed"
	}
	return strings.Join(parts, ", ")
}

// hooks plans the build hooks: each runs when what it builds from
// changed, otherwise its outputs are carried over from the running
// release. It returns the hooks that run.
func hooks(add, skip adder, rel *manifest.Release, cur *state.Release, codeChanged, installing bool) map[string]bool {
	old := map[string]manifest.Hook{}
	if cur.Spec != nil {
		for _, h := range cur.Spec.Build {
			old[h.Name] = h
		}
	}
	ran := map[string]bool{}
	for _, h := range rel.Spec.Build {
		prev, existed := old[h.Name]
		newIn, haveNew := rel.Inputs.Hooks[h.Name]
		oldIn, haveOld := cur.Inputs.Hooks[h.Name]
		what := "outputs"
		if h.AtPublish() {
			what = "artifact"
		}
		// Inputs decide only for a hook that declares them; one that does
		// not runs when code or dependencies changed, as before inputs.
		sameKind := haveNew && haveOld && len(h.Inputs) > 0
		var why string
		switch {
		case !existed:
			why = "new build hook"
		case sameKind && newIn.Digest != oldIn.Digest:
			why = "inputs changed: " + inputsChange(cur, rel, oldIn, newIn, !reflect.DeepEqual(prev, h), h.Inputs)
		case !sameKind && codeChanged:
			why = "code digest changed"
		case installing && !h.AtPublish():
			why = "dependencies changed"
		case !sameKind && !reflect.DeepEqual(prev, h):
			why = "build hook changed"
		case len(h.Outputs) == 0:
			why = "declares no outputs to carry over"
		}
		if why == "" {
			skip(Build, h.Name, "inputs unchanged: %s %s carried over from seq %d", what, strings.Join(h.Outputs, ", "), cur.Seq)
			continue
		}
		ran[h.Name] = true
		add(Build, h.Name, "%s", buildWhy(h, why))
	}
	return ran
}

// buildWhy is the reason of a build step: a publish-time hook's outputs
// come from its artifact.
func buildWhy(h manifest.Hook, why string) string {
	if h.AtPublish() {
		return why + "; extract its artifact built at publish time"
	}
	return why
}

// inputsChange names what changed between two inputs of a hook or a
// process: files (a few by name), dependencies, env files, the definition.
func inputsChange(cur *state.Release, rel *manifest.Release, oldIn, newIn manifest.Input, defChanged bool, globs []string) string {
	var parts []string
	if oldIn.Files != nil && newIn.Files != nil {
		var changed []string
		for _, f := range slices.Sorted(maps.Keys(newIn.Files)) {
			switch old, ok := oldIn.Files[f]; {
			case !ok:
				changed = append(changed, f+" added")
			case old != newIn.Files[f]:
				changed = append(changed, f)
			}
		}
		for _, f := range slices.Sorted(maps.Keys(oldIn.Files)) {
			if _, ok := newIn.Files[f]; !ok {
				changed = append(changed, f+" removed")
			}
		}
		if n := len(changed); n > 3 {
			changed = append(changed[:3], fmt.Sprintf("%d more file(s)", n-3))
		}
		parts = append(parts, changed...)
	}
	if cur.Inputs.Dependencies.Digest != rel.Inputs.Dependencies.Digest {
		parts = append(parts, "dependency files")
	}
	for _, f := range slices.Sorted(maps.Keys(rel.Inputs.Config.Files)) {
		if old, ok := cur.Inputs.Config.Files[f]; ok && old != rel.Inputs.Config.Files[f] && len(globs) > 0 && manifest.MatchesInputs(globs, f) {
			parts = append(parts, "env file "+f)
		}
	}
	if defChanged {
		parts = append(parts, "definition")
	}
	if len(parts) == 0 {
		if len(globs) == 0 {
			return "code digest changed"
		}
		return "files matching " + strings.Join(globs, ", ")
	}
	return strings.Join(parts, ", ")
}

// under reports whether p is dir or inside it ("" is the release root).
func under(p, dir string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

// ComposeKey is the digest of what a compose up depends on: the compose
// file, the env file it reads (as declared: references, not values) and
// the compose settings.
func ComposeKey(rel *manifest.Release) string {
	c := rel.Spec.Compose
	if c == nil {
		return ""
	}
	return manifest.Digest(struct {
		Settings manifest.Compose
		File     string
		Env      string
	}{*c, rel.Inputs.Compose.Digest, rel.Inputs.Config.Files[c.EnvFile]})
}

// services plans the compose step: up when the definition changed or a
// declared service is not running or unhealthy.
func services(add, skip adder, rel *manifest.Release, cur *state.Release, obs Observed) {
	c := rel.Spec.Compose
	if c == nil {
		return
	}
	var why []string
	var rec *state.Compose
	if cur != nil {
		rec = cur.Compose
	}
	switch {
	case rec == nil:
		why = append(why, "first compose up")
	case rec.Key != ComposeKey(rel):
		why = append(why, composeChange(cur, rel))
	}
	if sc := obs.Secrets[c.EnvFile]; c.EnvFile != "" && len(sc) > 0 {
		why = append(why, secretsChange(c.EnvFile, sc))
	}
	if obs.Services == nil {
		// Not observed (agent plan without a Docker daemon): decide from
		// the inputs alone and say so.
		if len(why) == 0 {
			skip(Compose, "", "compose file and env unchanged; services not observed")
			return
		}
		add(Compose, "", "%s (services not observed)", strings.Join(why, "; "))
		return
	}
	if rec != nil {
		for _, ref := range slices.Sorted(maps.Keys(rec.Images)) {
			if now := obs.Images[ref]; now != rec.Images[ref] {
				why = append(why, fmt.Sprintf("image %s changed (%s -> %s)", ref, shortDigest(rec.Images[ref]), orNone(shortDigest(now))))
			}
		}
	}
	for _, name := range c.Services {
		s, ok := obs.Services[name]
		switch {
		case !ok:
			why = append(why, fmt.Sprintf("service %s has no container", name))
		case !s.Running:
			why = append(why, fmt.Sprintf("service %s not running (%s)", name, s.State))
		case s.Health == "unhealthy":
			why = append(why, fmt.Sprintf("service %s unhealthy", name))
		}
	}
	if len(why) == 0 {
		skip(Compose, "", "compose file, env and images unchanged; %d service(s) running", len(c.Services))
		return
	}
	add(Compose, "", "%s", strings.Join(why, "; "))
}

func composeChange(cur *state.Release, rel *manifest.Release) string {
	c := rel.Spec.Compose
	var parts []string
	if cur.Inputs.Compose.Digest != rel.Inputs.Compose.Digest {
		parts = append(parts, c.File+" changed")
	}
	if c.EnvFile != "" && cur.Spec != nil && cur.Spec.Compose != nil && cur.Inputs.Config.Files[c.EnvFile] != rel.Inputs.Config.Files[c.EnvFile] {
		parts = append(parts, "env file "+c.EnvFile+" changed")
	}
	if cur.Spec == nil || cur.Spec.Compose == nil || !reflect.DeepEqual(*cur.Spec.Compose, *c) {
		parts = append(parts, "compose settings changed")
	}
	if len(parts) == 0 {
		return "compose definition changed"
	}
	return strings.Join(parts, ", ")
}

// schema plans the schema import from what the database lacks.
func schema(add, skip adder, rel *manifest.Release, cur *state.Release, obs Observed) {
	if rel.Spec.Schema == nil {
		return
	}
	switch {
	case obs.Schema != nil && obs.Schema.Deferred != "":
		add(Schema, "", "%s", obs.Schema.Deferred)
	case obs.Schema == nil:
		from := "the running release"
		if cur != nil {
			from = fmt.Sprintf("seq %d", cur.Seq)
		}
		skip(Schema, "", "schema files unchanged since %s: no database connection", from)
	case len(obs.Schema.Changes) == 0 && len(obs.Schema.Seeds) == 0 && rel.Spec.Schema.Declarative():
		skip(Schema, "", "the database already has these files' schema (declarative; their digest is recorded)")
	case len(obs.Schema.Changes) == 0 && len(obs.Schema.Seeds) == 0:
		skip(Schema, "", "the database's schema history already has every file")
	default:
		for _, c := range obs.Schema.Changes {
			add(Schema, c.File, "%s", c.Why)
		}
		for _, f := range obs.Schema.Seeds {
			add(Schema, f, "seed: first install, runs once")
		}
	}
}

type adder func(k Kind, target, format string, args ...any)

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// envFileChange names the variables that changed, showing references as
// "ref" so no secret value is ever printed.
func envFileChange(f manifest.EnvFile, old *manifest.Spec) string {
	var prev map[string]manifest.Value
	found := false
	if old != nil {
		for _, of := range old.EnvFiles {
			if of.Path == f.Path {
				prev, found = of.Vars, true
			}
		}
	}
	if !found {
		return fmt.Sprintf("env file %s is new", f.Path)
	}
	var changes []string
	for _, name := range slices.Sorted(maps.Keys(f.Vars)) {
		ov, had := prev[name]
		nv := f.Vars[name]
		switch {
		case !had:
			changes = append(changes, "+"+name)
		case ov != nv && nv.IsRef():
			changes = append(changes, name+" ref")
		case ov != nv:
			changes = append(changes, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(prev)) {
		if _, ok := f.Vars[name]; !ok {
			changes = append(changes, "-"+name)
		}
	}
	if len(changes) == 0 {
		return fmt.Sprintf("env file %s changed", f.Path)
	}
	return fmt.Sprintf("env file %s changed: %s", f.Path, strings.Join(changes, ", "))
}

func procDiff(a, b manifest.Process) string {
	var fields []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := 0; i < va.NumField(); i++ {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			fields = append(fields, strings.ToLower(va.Type().Field(i).Name))
		}
	}
	return strings.Join(fields, ", ")
}

func healthReason(pr manifest.Process) string {
	return fmt.Sprintf("%d health check(s) after restart", len(pr.Health))
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func sorted(p Plan) Plan {
	rank := map[Kind]int{}
	for i, k := range order {
		rank[k] = i
	}
	for _, steps := range [][]Step{p.Steps, p.Skipped} {
		sort.SliceStable(steps, func(i, j int) bool { return rank[steps[i].Kind] < rank[steps[j].Kind] })
	}
	return p
}
