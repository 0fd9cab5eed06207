package plan_test

import (
	"slices"
	"testing"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/plan"
	"github.com/cohuron/deploy/pkg/state"
)

const (
	depsOld = "sha256:d1"
	depsNew = "sha256:d2"
	keyOld  = "sha256:k1"
	keyNew  = "sha256:k2"
	tools   = "node v20.20.2, pnpm 9.15.9"
	imgID   = "sha256:aaaaaaaaaaaaaaaa"
)

// fullSpec declares every step the old deploy script ran on each deploy.
func fullSpec() manifest.Spec {
	s := baseSpec()
	s.User = "cohuron"
	s.Install = &manifest.Install{Command: []string{"pnpm", "install", "--frozen-lockfile"}}
	s.Build = []manifest.Hook{
		{Name: "api", Command: []string{"pnpm", "--filter", "api", "build"}, Outputs: []string{"apps/api/dist"}},
		{Name: "web", Command: []string{"pnpm", "--filter", "web", "build"}},
	}
	s.Compose = &manifest.Compose{File: "docker-compose.yml", Project: "cohuron", EnvFile: apiEnv, Services: []string{"cache", "queue"}}
	s.Schema = &manifest.Schema{Dir: "db", DatabaseURL: ssm("/db"), Files: []string{"db/01.ddl", "db/03.ddl", "db/02.ddl"}, Seed: []string{"db/seed.sql"}}
	return s
}

func fullRelease(seq uint64, code, deps, composeFile string, spec manifest.Spec) *manifest.Release {
	r := release(seq, code, spec)
	r.Inputs.Dependencies = manifest.Input{Digest: deps, Files: map[string]string{"pnpm-lock.yaml": deps, "apps/api/package.json": "p1"}}
	r.Inputs.Compose = manifest.Input{Digest: composeFile, Files: map[string]string{"docker-compose.yml": composeFile}}
	r.Inputs.Schema = manifest.Input{Digest: "sha256:s1"}
	return r
}

// converged is the state after rel converged with every step.
func converged(rel *manifest.Release) *state.Release {
	cur := current(rel, curDig)
	cur.Deps = &state.Deps{Key: keyOld, Tools: tools}
	cur.Compose = &state.Compose{Key: plan.ComposeKey(rel), Images: map[string]string{"stub:test": imgID}}
	cur.Schema = &state.Schema{Digest: rel.Inputs.Schema.Digest}
	return cur
}

// quiet is a host where everything of cur runs and nothing drifted.
func quiet(key string) plan.Observed {
	obs := healthy("api", "web")
	obs.BundleCached = true
	obs.Deps = &plan.Deps{Key: key, Tools: tools}
	obs.Services = map[string]plan.Service{"cache": {Running: true, State: "running", Health: "healthy"}, "queue": {Running: true, State: "running"}}
	obs.Images = map[string]string{"stub:test": imgID}
	return obs
}

func TestMakeSteps(t *testing.T) {
	rel1 := fullRelease(1, codeOld, depsOld, "c1", fullSpec())
	type check struct {
		kind   plan.Kind
		target string
		reason string // "" = must not run; otherwise the exact reason
	}
	tests := []struct {
		name    string
		desired *manifest.Release
		obs     func() plan.Observed
		checks  []check
		skipped []plan.Kind
	}{
		{
			name:    "code change with the same lockfile: no install, compose or schema",
			desired: fullRelease(2, codeNew, depsOld, "c1", fullSpec()),
			obs:     func() plan.Observed { return quiet(keyOld) },
			checks: []check{
				{plan.Install, "", ""},
				{plan.Build, "api", "code digest changed"},
				{plan.Build, "web", "code digest changed"},
				{plan.Compose, "", ""},
				{plan.Schema, "", ""},
			},
			skipped: []plan.Kind{plan.Install, plan.Compose, plan.Schema},
		},
		{
			name:    "dependency change",
			desired: fullRelease(2, codeNew, depsNew, "c1", fullSpec()),
			obs:     func() plan.Observed { return quiet(keyNew) },
			checks: []check{
				{plan.Install, "", "pnpm-lock.yaml changed"},
				{plan.Build, "api", "code digest changed"},
				{plan.Compose, "", ""},
			},
			skipped: []plan.Kind{plan.Compose, plan.Schema},
		},
		{
			name:    "tools upgraded on the host",
			desired: fullRelease(2, codeOld, depsOld, "c1", fullSpec()),
			obs: func() plan.Observed {
				o := quiet(keyNew)
				o.Deps.Tools = "node v22.1.0, pnpm 9.15.9"
				return o
			},
			checks: []check{
				{plan.Install, "", "tools node v20.20.2, pnpm 9.15.9 -> node v22.1.0, pnpm 9.15.9"},
				{plan.Build, "api", "dependencies changed"},
			},
		},
		{
			name:    "damaged node_modules of the running release",
			desired: fullRelease(2, codeNew, depsOld, "c1", fullSpec()),
			obs: func() plan.Observed {
				o := quiet(keyOld)
				o.Deps.Reuse = "apps/api/node_modules missing"
				return o
			},
			checks: []check{{plan.Install, "", "node_modules of seq 1 cannot be reused: apps/api/node_modules missing"}},
		},
		{
			name:    "config only: hooks with outputs are carried over, hooks without run",
			desired: fullRelease(2, codeOld, depsOld, "c1", func() manifest.Spec { s := fullSpec(); s.EnvFiles[1].Vars["X"] = lit("1"); return s }()),
			obs:     func() plan.Observed { return quiet(keyOld) },
			checks: []check{
				{plan.Install, "", ""},
				{plan.Build, "api", ""},
				{plan.Build, "web", "declares no outputs to carry over"},
				{plan.Compose, "", ""},
			},
			skipped: []plan.Kind{plan.Install, plan.Build, plan.Compose, plan.Schema},
		},
		{
			name:    "compose file change",
			desired: fullRelease(2, codeNew, depsOld, "c2", fullSpec()),
			obs:     func() plan.Observed { return quiet(keyOld) },
			checks:  []check{{plan.Compose, "", "docker-compose.yml changed"}, {plan.Install, "", ""}},
		},
		{
			name:    "compose env file change",
			desired: fullRelease(2, codeOld, depsOld, "c1", func() manifest.Spec { s := fullSpec(); s.EnvFiles[0].Vars["CACHE_PORT"] = lit("1"); return s }()),
			obs:     func() plan.Observed { return quiet(keyOld) },
			checks:  []check{{plan.Compose, "", "env file apps/api/.env changed"}},
		},
		{
			name:    "service killed by hand, image rebuilt, service unhealthy",
			desired: fullRelease(2, codeNew, depsOld, "c1", fullSpec()),
			obs: func() plan.Observed {
				o := quiet(keyOld)
				o.Services["cache"] = plan.Service{State: "exited"}
				o.Services["queue"] = plan.Service{Running: true, State: "running", Health: "unhealthy"}
				o.Images["stub:test"] = "sha256:bbbbbbbbbbbbbbbb"
				return o
			},
			checks: []check{{plan.Compose, "", "image stub:test changed (aaaaaaaaaaaa -> bbbbbbbbbbbb); service cache not running (exited); service queue unhealthy"}},
		},
		{
			name:    "schema change",
			desired: fullRelease(2, codeNew, depsOld, "c1", fullSpec()),
			obs: func() plan.Observed {
				o := quiet(keyOld)
				o.Schema = &plan.SchemaPending{Changes: []plan.SchemaChange{{File: "db/03.ddl", Why: "changed"}, {File: "db/04.ddl", Why: "added"}}}
				return o
			},
			checks: []check{{plan.Schema, "db/03.ddl", "changed"}, {plan.Schema, "db/04.ddl", "added"}},
		},
		{
			name:    "schema inputs changed but another host imported them",
			desired: fullRelease(2, codeNew, depsOld, "c1", fullSpec()),
			obs: func() plan.Observed {
				o := quiet(keyOld)
				o.Schema = &plan.SchemaPending{}
				return o
			},
			checks:  []check{{plan.Schema, "", ""}},
			skipped: []plan.Kind{plan.Schema},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plan.Make(plan.Desired{Release: tt.desired, Digest: newDig}, converged(rel1), tt.obs())
			for _, c := range tt.checks {
				var got *plan.Step
				for i, s := range p.Steps {
					if s.Kind == c.kind && (c.target == "" || s.Target == c.target) {
						got = &p.Steps[i]
						break
					}
				}
				switch {
				case c.reason == "" && got != nil:
					t.Errorf("%s %s runs (%s), want it skipped:\n%s", c.kind, c.target, got.Reason, show(p.Steps))
				case c.reason != "" && got == nil:
					t.Errorf("%s %s does not run, want %q:\n%s", c.kind, c.target, c.reason, show(p.Steps))
				case c.reason != "" && got.Reason != c.reason:
					t.Errorf("%s %s reason %q, want %q", c.kind, c.target, got.Reason, c.reason)
				}
			}
			for _, k := range tt.skipped {
				if !slices.ContainsFunc(p.Skipped, func(s plan.Step) bool { return s.Kind == k }) {
					t.Errorf("no skip line for %s:\n%s", k, show(p.Skipped))
				}
			}
		})
	}
}

// TestMakeStepOrder pins the converge order of a plan that runs everything.
func TestMakeStepOrder(t *testing.T) {
	obs := quiet(keyNew)
	obs.BundleCached = false
	obs.Schema = &plan.SchemaPending{Changes: []plan.SchemaChange{{File: "db/01.ddl", Why: "added"}}, Seeds: []string{"db/seed.sql"}}
	p := plan.Make(plan.Desired{Release: fullRelease(1, codeNew, depsNew, "c1", fullSpec()), Digest: newDig}, nil, obs)
	var kinds []plan.Kind
	for _, s := range p.Steps {
		if len(kinds) == 0 || kinds[len(kinds)-1] != s.Kind {
			kinds = append(kinds, s.Kind)
		}
	}
	want := []plan.Kind{plan.Fetch, plan.Extract, plan.EnvFiles, plan.Install, plan.Build, plan.Compose, plan.Schema, plan.Switch, plan.Restart, plan.Health}
	if !slices.Equal(kinds, want) {
		t.Errorf("order %v, want %v:\n%s", kinds, want, show(p.Steps))
	}
	if !p.Has(plan.Schema, "db/seed.sql") {
		t.Errorf("first install does not seed:\n%s", show(p.Steps))
	}
}

// TestMakeDriftRunsOnlyCompose: the same release with a stopped service
// brings the services up and touches nothing else.
func TestMakeDriftRunsOnlyCompose(t *testing.T) {
	rel1 := fullRelease(1, codeOld, depsOld, "c1", fullSpec())
	obs := quiet(keyOld)
	obs.Services["queue"] = plan.Service{State: "exited"}
	p := plan.Make(plan.Desired{Release: rel1, Digest: curDig}, converged(rel1), obs)
	if len(p.Steps) != 1 || p.Steps[0].Kind != plan.Compose || p.Steps[0].Reason != "service queue not running (exited)" {
		t.Errorf("drift plan:\n%s", show(p.Steps))
	}
	obs = quiet(keyOld)
	if p := plan.Make(plan.Desired{Release: rel1, Digest: curDig}, converged(rel1), obs); !p.UpToDate() {
		t.Errorf("nothing drifted, plan:\n%s", show(p.Steps))
	}
}

// TestMakeDamagedNodeModules: the running release's node_modules is
// installed again in place and every process restarts on it; nothing is
// extracted or switched.
func TestMakeDamagedNodeModules(t *testing.T) {
	rel1 := fullRelease(1, codeOld, depsOld, "c1", fullSpec())
	obs := quiet(keyOld)
	obs.Deps.Reuse = "apps/api/node_modules missing"
	p := plan.Make(plan.Desired{Release: rel1, Digest: curDig}, converged(rel1), obs)
	want := []plan.Step{
		step(plan.Install, "", "node_modules of the running release is damaged: apps/api/node_modules missing"),
		step(plan.Restart, "api", "node_modules was installed again"),
		step(plan.Restart, "web", "node_modules was installed again"),
		step(plan.Health, "api", "1 health check(s) after restart"),
		step(plan.Health, "web", "1 health check(s) after restart"),
	}
	if !slices.Equal(p.Steps, want) {
		t.Errorf("plan:\n%s\nwant:\n%s", show(p.Steps), show(want))
	}
}

// TestMakeSchemaDeferred: the database was not reachable before compose
// (it may be a compose service): the schema step runs and says why.
func TestMakeSchemaDeferred(t *testing.T) {
	obs := quiet(keyNew)
	obs.Schema = &plan.SchemaPending{Deferred: "the database is not reachable before compose up"}
	p := plan.Make(plan.Desired{Release: fullRelease(1, codeNew, depsNew, "c1", fullSpec()), Digest: newDig}, nil, obs)
	if !slices.Contains(p.Steps, step(plan.Schema, "", "the database is not reachable before compose up")) {
		t.Errorf("plan:\n%s", show(p.Steps))
	}
}
