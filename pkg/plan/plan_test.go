package plan_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/plan"
	"github.com/cohuron/deploy/pkg/state"
)

const (
	apiEnv  = "apps/api/.env"
	webEnv  = "apps/web/.env"
	curDir  = "/b/releases/000001-aaaaaaaaaaaa"
	curDig  = "sha256-of-release-1"
	newDig  = "sha256-of-release-2"
	codeOld = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	codeNew = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func lit(s string) manifest.Value { return manifest.Value{Literal: s} }
func ssm(s string) manifest.Value { return manifest.Value{RefKind: manifest.RefSSM, Ref: s} }

func process(name, envFile string, port int) manifest.Process {
	return manifest.Process{
		Name: name, Cwd: "apps/" + name, Command: []string{"node", "server.js"}, EnvFile: envFile, Port: port,
		Health: []manifest.HealthCheck{{TCP: &manifest.TCPCheck{Address: "127.0.0.1:1"}}},
	}
}

// baseSpec has two processes with one env file each.
func baseSpec() manifest.Spec {
	return manifest.Spec{
		Paths: manifest.Paths{Root: "/opt/cohuron", Backups: "/b"},
		EnvFiles: []manifest.EnvFile{
			{Path: apiEnv, Vars: map[string]manifest.Value{"PORT": lit("4000"), "APP_GREETING": lit("hello"), "JWT_SECRET": ssm("/demo/jwt")}},
			{Path: webEnv, Vars: map[string]manifest.Value{"PORT": lit("5173")}},
		},
		Processes: []manifest.Process{process("api", apiEnv, 4000), process("web", webEnv, 5173)},
	}
}

// release builds a release; the config digests of its env files are
// derived from their contents, as the publisher does.
func release(seq uint64, code string, spec manifest.Spec) *manifest.Release {
	files := map[string]string{}
	for _, f := range spec.EnvFiles {
		files[f.Path] = manifest.Digest(f)
	}
	return &manifest.Release{
		Seq:    seq,
		Bundle: manifest.BundleRef{Key: "bundles/b.tar.gz", SHA256: "abc"},
		Inputs: manifest.Inputs{Code: manifest.Input{Digest: code}, Config: manifest.Input{Digest: manifest.Digest(spec), Files: files}},
		Spec:   spec,
	}
}

// current is what the state records after rel was applied.
func current(rel *manifest.Release, digest string) *state.Release {
	spec := rel.Spec
	return &state.Release{ID: "000001-aaaaaaaaaaaa", Seq: rel.Seq, Digest: digest, Dir: curDir, Inputs: rel.Inputs, Spec: &spec}
}

// healthy is a host where the current release runs as recorded.
func healthy(names ...string) plan.Observed {
	obs := plan.Observed{RootTarget: curDir, CurrentDirOK: true, Processes: map[string]plan.Process{}}
	for _, n := range names {
		obs.Processes[n] = plan.Process{Running: true}
	}
	return obs
}

// cached marks the desired bundle as already on the host.
func cached(o plan.Observed) plan.Observed {
	o.BundleCached = true
	return o
}

// edited is a release of baseSpec changed by edit.
func edited(seq uint64, code string, edit func(*manifest.Spec)) *manifest.Release {
	s := baseSpec()
	edit(&s)
	return release(seq, code, s)
}

func step(k plan.Kind, target, reason string) plan.Step {
	return plan.Step{Kind: k, Target: target, Reason: reason}
}

func TestMake(t *testing.T) {
	const first = "first install"
	const adopt = "first install; adopt the plain directory left by the old deploy script as the first backup"
	const health1 = "1 health check(s) after restart"
	rel1 := release(1, codeOld, baseSpec())

	type tc struct {
		name    string
		desired *manifest.Release
		digest  string
		cur     *state.Release
		obs     plan.Observed
		want    []plan.Step
		from    uint64
	}
	tests := []tc{
		{
			name: "first install", desired: rel1, digest: curDig, obs: plan.Observed{},
			want: []plan.Step{
				step(plan.Fetch, "", first), step(plan.Extract, "", first),
				step(plan.EnvFiles, apiEnv, first), step(plan.EnvFiles, webEnv, first),
				step(plan.Switch, "", first),
				step(plan.Restart, "api", "new process"), step(plan.Restart, "web", "new process"),
				step(plan.Health, "api", health1), step(plan.Health, "web", health1),
			},
		},
		{
			name: "first install over a plain directory", desired: rel1, digest: curDig, obs: plan.Observed{RootIsPlainDir: true},
			want: []plan.Step{
				step(plan.Fetch, "", adopt), step(plan.Extract, "", adopt),
				step(plan.EnvFiles, apiEnv, adopt), step(plan.EnvFiles, webEnv, adopt),
				step(plan.Switch, "", adopt),
				step(plan.Restart, "api", "new process"), step(plan.Restart, "web", "new process"),
				step(plan.Health, "api", health1), step(plan.Health, "web", health1),
			},
		},
		{
			name: "first install with the bundle cached", desired: rel1, digest: curDig, obs: plan.Observed{BundleCached: true},
			want: []plan.Step{
				step(plan.Extract, "", first),
				step(plan.EnvFiles, apiEnv, first), step(plan.EnvFiles, webEnv, first),
				step(plan.Switch, "", first),
				step(plan.Restart, "api", "new process"), step(plan.Restart, "web", "new process"),
				step(plan.Health, "api", health1), step(plan.Health, "web", health1),
			},
		},
		{
			name: "same release, no drift", desired: rel1, digest: curDig, cur: current(rel1, curDig),
			obs: healthy("api", "web"), from: 1, want: nil,
		},
		{
			name: "same release, root points elsewhere", desired: rel1, digest: curDig, cur: current(rel1, curDig),
			obs: func() plan.Observed { o := healthy("api", "web"); o.RootTarget = "/somewhere/else"; return o }(), from: 1,
			want: []plan.Step{step(plan.Switch, "", "root points at /somewhere/else, expected "+curDir)},
		},
		{
			name: "same release, root missing", desired: rel1, digest: curDig, cur: current(rel1, curDig),
			obs: func() plan.Observed { o := healthy("api", "web"); o.RootTarget = ""; return o }(), from: 1,
			want: []plan.Step{step(plan.Switch, "", "root points at nothing, expected "+curDir)},
		},
		{
			name: "same release, root is a plain directory", desired: rel1, digest: curDig, cur: current(rel1, curDig),
			obs: func() plan.Observed {
				o := healthy("api", "web")
				o.RootTarget, o.RootIsPlainDir = "", true
				return o
			}(), from: 1,
			want: []plan.Step{step(plan.Switch, "", "root points at a plain directory, expected "+curDir)},
		},
		{
			name: "same release, one process not running", desired: rel1, digest: curDig, cur: current(rel1, curDig),
			obs: healthy("api"), from: 1,
			want: []plan.Step{step(plan.Restart, "web", "process web not running"), step(plan.Health, "web", health1)},
		},
		{
			name: "same release, current directory missing", desired: rel1, digest: curDig, cur: current(rel1, curDig),
			obs: func() plan.Observed { o := healthy("api", "web"); o.CurrentDirOK = false; return o }(), from: 1,
			want: func() []plan.Step {
				why := "release directory " + curDir + " is missing"
				return []plan.Step{
					step(plan.Fetch, "", why), step(plan.Extract, "", why),
					step(plan.EnvFiles, apiEnv, why), step(plan.EnvFiles, webEnv, why),
					step(plan.Switch, "", why),
					step(plan.Restart, "api", "release directory was reinstalled"), step(plan.Restart, "web", "release directory was reinstalled"),
					step(plan.Health, "api", health1), step(plan.Health, "web", health1),
				}
			}(),
		},
		{
			name: "new release, code changed, bundle not cached", desired: release(2, codeNew, baseSpec()), digest: newDig,
			cur: current(rel1, curDig), obs: healthy("api", "web"), from: 1,
			want: []plan.Step{
				step(plan.Fetch, "", "code digest changed (222222222222)"),
				step(plan.Extract, "", "code digest changed: new release directory"),
				step(plan.EnvFiles, "", "env files unchanged: rewritten into the new release directory"),
				step(plan.Switch, "", "seq 1 -> 2"),
				step(plan.Restart, "api", "code digest changed"), step(plan.Restart, "web", "code digest changed"),
				step(plan.Health, "api", health1), step(plan.Health, "web", health1),
			},
		},
		{
			name: "new release, code changed, bundle cached", desired: release(2, codeNew, baseSpec()), digest: newDig,
			cur: current(rel1, curDig), obs: cached(healthy("api", "web")), from: 1,
			want: []plan.Step{
				step(plan.Extract, "", "code digest changed: new release directory"),
				step(plan.EnvFiles, "", "env files unchanged: rewritten into the new release directory"),
				step(plan.Switch, "", "seq 1 -> 2"),
				step(plan.Restart, "api", "code digest changed"), step(plan.Restart, "web", "code digest changed"),
				step(plan.Health, "api", health1), step(plan.Health, "web", health1),
			},
		},
		{
			name: "config-only change of one literal", desired: edited(2, codeOld, func(s *manifest.Spec) {
				s.EnvFiles[0].Vars["APP_GREETING"] = lit("bonjour")
			}), digest: newDig, cur: current(rel1, curDig),
			obs: cached(healthy("api", "web")), from: 1,
			want: []plan.Step{
				step(plan.Extract, "", "code unchanged: new release directory from the cached bundle"),
				step(plan.EnvFiles, apiEnv, "env file apps/api/.env changed: APP_GREETING"),
				step(plan.Switch, "", "seq 1 -> 2"),
				step(plan.Restart, "api", "env file apps/api/.env changed: APP_GREETING"),
				step(plan.Health, "api", health1),
			},
		},
		{
			name: "config-only change, bundle not cached", desired: edited(2, codeOld, func(s *manifest.Spec) {
				s.EnvFiles[0].Vars["APP_GREETING"] = lit("bonjour")
			}), digest: newDig, cur: current(rel1, curDig), obs: healthy("api", "web"), from: 1,
			want: []plan.Step{
				step(plan.Fetch, "", "bundle bundles/b.tar.gz is not cached on this host"),
				step(plan.Extract, "", "code unchanged: new release directory from the cached bundle"),
				step(plan.EnvFiles, apiEnv, "env file apps/api/.env changed: APP_GREETING"),
				step(plan.Switch, "", "seq 1 -> 2"),
				step(plan.Restart, "api", "env file apps/api/.env changed: APP_GREETING"),
				step(plan.Health, "api", health1),
			},
		},
		{
			name: "secret reference changed", desired: edited(2, codeOld, func(s *manifest.Spec) {
				s.EnvFiles[0].Vars["JWT_SECRET"] = ssm("/demo/jwt-rotated")
			}), digest: newDig, cur: current(rel1, curDig),
			obs: cached(healthy("api", "web")), from: 1,
			want: []plan.Step{
				step(plan.Extract, "", "code unchanged: new release directory from the cached bundle"),
				step(plan.EnvFiles, apiEnv, "env file apps/api/.env changed: JWT_SECRET ref"),
				step(plan.Switch, "", "seq 1 -> 2"),
				step(plan.Restart, "api", "env file apps/api/.env changed: JWT_SECRET ref"),
				step(plan.Health, "api", health1),
			},
		},
		{
			name: "literal replaced by a reference", desired: edited(2, codeOld, func(s *manifest.Spec) {
				s.EnvFiles[1].Vars["PORT"] = ssm("/demo/web-port")
			}), digest: newDig, cur: current(rel1, curDig),
			obs: cached(healthy("api", "web")), from: 1,
			want: []plan.Step{
				step(plan.Extract, "", "code unchanged: new release directory from the cached bundle"),
				step(plan.EnvFiles, webEnv, "env file apps/web/.env changed: PORT ref"),
				step(plan.Switch, "", "seq 1 -> 2"),
				step(plan.Restart, "web", "env file apps/web/.env changed: PORT ref"),
				step(plan.Health, "web", health1),
			},
		},
		{
			name: "variables added and removed", desired: edited(2, codeOld, func(s *manifest.Spec) {
				delete(s.EnvFiles[0].Vars, "APP_GREETING")
				s.EnvFiles[0].Vars["LOG_LEVEL"] = lit("debug")
				s.EnvFiles[0].Vars["A_FLAG"] = lit("1")
			}), digest: newDig, cur: current(rel1, curDig),
			obs: cached(healthy("api", "web")), from: 1,
			want: []plan.Step{
				step(plan.Extract, "", "code unchanged: new release directory from the cached bundle"),
				step(plan.EnvFiles, apiEnv, "env file apps/api/.env changed: +A_FLAG, +LOG_LEVEL, -APP_GREETING"),
				step(plan.Switch, "", "seq 1 -> 2"),
				step(plan.Restart, "api", "env file apps/api/.env changed: +A_FLAG, +LOG_LEVEL, -APP_GREETING"),
				step(plan.Health, "api", health1),
			},
		},
		{
			name: "new env file and new process", desired: edited(2, codeOld, func(s *manifest.Spec) {
				s.EnvFiles = append(s.EnvFiles, manifest.EnvFile{Path: "apps/worker/.env", Vars: map[string]manifest.Value{"QUEUE": lit("q")}})
				s.Processes = append(s.Processes, process("worker", "apps/worker/.env", 0))
			}), digest: newDig, cur: current(rel1, curDig),
			obs: cached(healthy("api", "web")), from: 1,
			want: []plan.Step{
				step(plan.Extract, "", "code unchanged: new release directory from the cached bundle"),
				step(plan.EnvFiles, "apps/worker/.env", "env file apps/worker/.env is new"),
				step(plan.Switch, "", "seq 1 -> 2"),
				step(plan.Restart, "worker", "new process"),
				step(plan.Health, "worker", health1),
			},
		},
		{
			name: "process removed", desired: edited(2, codeOld, func(s *manifest.Spec) {
				s.EnvFiles = s.EnvFiles[:1]
				s.Processes = s.Processes[:1]
			}), digest: newDig, cur: current(rel1, curDig),
			obs: cached(healthy("api", "web")), from: 1,
			want: []plan.Step{
				step(plan.Extract, "", "code unchanged: new release directory from the cached bundle"),
				step(plan.EnvFiles, "", "env files unchanged: rewritten into the new release directory"),
				step(plan.Switch, "", "seq 1 -> 2"),
				step(plan.Stop, "web", "process web is no longer declared"),
			},
		},
		{
			name: "process definition changed", desired: edited(2, codeOld, func(s *manifest.Spec) {
				s.Processes[1].Port = 5174
			}), digest: newDig, cur: current(rel1, curDig),
			obs: cached(healthy("api", "web")), from: 1,
			want: []plan.Step{
				step(plan.Extract, "", "code unchanged: new release directory from the cached bundle"),
				step(plan.EnvFiles, "", "env files unchanged: rewritten into the new release directory"),
				step(plan.Switch, "", "seq 1 -> 2"),
				step(plan.Restart, "web", "process definition changed: port"),
				step(plan.Health, "web", health1),
			},
		},
		{
			name: "new release, a process not running", desired: edited(2, codeOld, func(s *manifest.Spec) {
				s.EnvFiles[0].Vars["APP_GREETING"] = lit("bonjour")
			}), digest: newDig, cur: current(rel1, curDig),
			obs: func() plan.Observed {
				o := healthy("api")
				o.BundleCached = true
				return o
			}(), from: 1,
			want: []plan.Step{
				step(plan.Extract, "", "code unchanged: new release directory from the cached bundle"),
				step(plan.EnvFiles, apiEnv, "env file apps/api/.env changed: APP_GREETING"),
				step(plan.Switch, "", "seq 1 -> 2"),
				step(plan.Restart, "api", "env file apps/api/.env changed: APP_GREETING"),
				step(plan.Restart, "web", "process web not running"),
				step(plan.Health, "api", health1), step(plan.Health, "web", health1),
			},
		},
		{
			name: "everything at once, in converge order", desired: edited(2, codeNew, func(s *manifest.Spec) {
				s.EnvFiles[0].Vars["APP_GREETING"] = lit("bonjour")
				s.EnvFiles = s.EnvFiles[:1]
				s.Processes = []manifest.Process{process("api", apiEnv, 4000), process("worker", "", 0)}
			}), digest: newDig, cur: current(rel1, curDig), obs: healthy("api", "web"), from: 1,
			want: []plan.Step{
				step(plan.Fetch, "", "code digest changed (222222222222)"),
				step(plan.Extract, "", "code digest changed: new release directory"),
				step(plan.EnvFiles, apiEnv, "env file apps/api/.env changed: APP_GREETING"),
				step(plan.Switch, "", "seq 1 -> 2"),
				step(plan.Stop, "web", "process web is no longer declared"),
				step(plan.Restart, "api", "code digest changed"), step(plan.Restart, "worker", "new process"),
				step(plan.Health, "api", health1), step(plan.Health, "worker", health1),
			},
		},
	}

	order := []plan.Kind{plan.Fetch, plan.Extract, plan.EnvFiles, plan.Switch, plan.Stop, plan.Restart, plan.Health}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plan.Make(plan.Desired{Release: tt.desired, Digest: tt.digest}, tt.cur, tt.obs)
			if !reflect.DeepEqual(p.Steps, tt.want) {
				t.Errorf("steps:\n%s\nwant:\n%s", show(p.Steps), show(tt.want))
			}
			if p.Seq != tt.desired.Seq || p.FromSeq != tt.from {
				t.Errorf("seq %d from %d, want %d from %d", p.Seq, p.FromSeq, tt.desired.Seq, tt.from)
			}
			if p.UpToDate() != (len(tt.want) == 0) {
				t.Errorf("UpToDate() = %v with %d steps", p.UpToDate(), len(p.Steps))
			}
			if !slices.IsSortedFunc(p.Steps, func(a, b plan.Step) int {
				return slices.Index(order, a.Kind) - slices.Index(order, b.Kind)
			}) {
				t.Errorf("steps not in converge order:\n%s", show(p.Steps))
			}
			// No literal value of either release ever shows up in a reason.
			for _, s := range p.Steps {
				for _, v := range []string{"bonjour", "hello", "/demo/jwt", "debug"} {
					if strings.Contains(s.Reason, v) {
						t.Errorf("step %q shows the value %q", s, v)
					}
				}
			}
		})
	}
}

// TestMakeOnlyAffectedProcessRestarts pins the property the config-only
// cases above rely on: a change to the env file of one process never
// restarts a process that uses another env file.
func TestMakeOnlyAffectedProcessRestarts(t *testing.T) {
	rel1 := release(1, codeOld, baseSpec())
	for _, envIdx := range []int{0, 1} {
		s := baseSpec()
		s.EnvFiles[envIdx].Vars["EXTRA"] = lit("x")
		obs := healthy("api", "web")
		obs.BundleCached = true
		p := plan.Make(plan.Desired{Release: release(2, codeOld, s), Digest: newDig}, current(rel1, curDig), obs)
		affected, other := "api", "web"
		if envIdx == 1 {
			affected, other = other, affected
		}
		if !p.Has(plan.Restart, affected) || !p.Has(plan.Health, affected) {
			t.Errorf("change of %s: %s not restarted:\n%s", s.EnvFiles[envIdx].Path, affected, show(p.Steps))
		}
		if p.Has(plan.Restart, other) || p.Has(plan.Health, other) {
			t.Errorf("change of %s: %s restarted too:\n%s", s.EnvFiles[envIdx].Path, other, show(p.Steps))
		}
		if p.Has(plan.Fetch, "") {
			t.Errorf("bundle cached but the plan fetches:\n%s", show(p.Steps))
		}
	}
}

func TestStepString(t *testing.T) {
	for _, tt := range []struct {
		s    plan.Step
		want string
	}{
		{step(plan.Restart, "api", "new process"), "restart  api            new process"},
		{step(plan.Switch, "", "seq 1 -> 2"), "switch                  seq 1 -> 2"},
	} {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func show(steps []plan.Step) string {
	var b strings.Builder
	for _, s := range steps {
		b.WriteString("  " + s.String() + "\n")
	}
	return b.String()
}
