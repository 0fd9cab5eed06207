package plan

import (
	"fmt"
	"reflect"
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
	Switch   Kind = "switch"   // point the root at the new release, atomically
	Stop     Kind = "stop"     // stop a process the release no longer declares
	Restart  Kind = "restart"  // start or reload a process
	Health   Kind = "health"   // wait for a process's health checks
)

var order = []Kind{Fetch, Extract, EnvFiles, Switch, Stop, Restart, Health}

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

// Process is what the host shows of one managed process.
type Process struct {
	Running  bool
	Restarts int
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
	p := Plan{Seq: rel.Seq}
	add := func(k Kind, target, format string, args ...any) {
		p.Steps = append(p.Steps, Step{Kind: k, Target: target, Reason: fmt.Sprintf(format, args...)})
	}
	procs := rel.Spec.Processes

	switch {
	case cur == nil:
		why := "first install"
		if obs.RootIsPlainDir {
			why = "first install; adopt the plain directory left by the old deploy script as the first backup"
		}
		fullInstall(add, rel, why, obs)
		for _, pr := range procs {
			add(Restart, pr.Name, "new process")
			add(Health, pr.Name, "%s", healthReason(pr))
		}
		return sorted(p)

	case cur.Digest == d.Digest:
		// Same release: only drift needs work.
		p.FromSeq = cur.Seq
		if !obs.CurrentDirOK {
			fullInstall(add, rel, "release directory "+cur.Dir+" is missing", obs)
		} else if obs.RootTarget != cur.Dir {
			found := obs.RootTarget
			if obs.RootIsPlainDir {
				found = "a plain directory"
			} else if found == "" {
				found = "nothing"
			}
			add(Switch, "", "root points at %s, expected %s", found, cur.Dir)
		}
		restartAll := !obs.CurrentDirOK
		for _, pr := range procs {
			o := obs.Processes[pr.Name]
			switch {
			case restartAll:
				add(Restart, pr.Name, "release directory was reinstalled")
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
	if len(rel.Spec.EnvFiles) > 0 && len(envChanged) == 0 {
		add(EnvFiles, "", "env files unchanged: rewritten into the new release directory")
	}
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
		var why string
		switch {
		case !existed:
			why = "new process"
		case codeChanged:
			why = "code digest changed"
		case !o.Running:
			why = fmt.Sprintf("process %s not running", pr.Name)
		case envChanged[pr.EnvFile] != "":
			why = envChanged[pr.EnvFile]
		case !reflect.DeepEqual(old, pr):
			why = "process definition changed: " + procDiff(old, pr)
		default:
			continue
		}
		add(Restart, pr.Name, "%s", why)
		add(Health, pr.Name, "%s", healthReason(pr))
	}
	for _, name := range sortedKeys(oldProcs) {
		add(Stop, name, "process %s is no longer declared", name)
	}
	return sorted(p)
}

func fullInstall(add func(Kind, string, string, ...any), rel *manifest.Release, why string, obs Observed) {
	if !obs.BundleCached {
		add(Fetch, "", "%s", why)
	}
	add(Extract, "", "%s", why)
	for _, f := range rel.Spec.EnvFiles {
		add(EnvFiles, f.Path, "%s", why)
	}
	add(Switch, "", "%s", why)
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
	for _, name := range sortedKeys(f.Vars) {
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
	for _, name := range sortedKeys(prev) {
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
	sort.SliceStable(p.Steps, func(i, j int) bool { return rank[p.Steps[i].Kind] < rank[p.Steps[j].Kind] })
	return p
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
