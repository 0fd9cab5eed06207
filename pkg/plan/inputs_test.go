package plan_test

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/plan"
	"github.com/cohuron/deploy/pkg/state"
)

// appSpec is shaped like manifests/prod.yaml: the API runs from source
// with no build, the web is built and served from its dist.
func appSpec() manifest.Spec {
	s := baseSpec()
	s.User = "cohuron"
	s.Install = &manifest.Install{Command: []string{"pnpm", "install", "--frozen-lockfile"}}
	s.Build = []manifest.Hook{{Name: "web", Cwd: "apps/web", Command: []string{"pnpm", "exec", "vite", "build"},
		Outputs: []string{"apps/web/dist"}, Inputs: []string{"apps/web/**"}}}
	s.Processes[0].Inputs = []string{"apps/api/**"}
	s.Processes[1].Inputs = []string{"apps/web/**"}
	return s
}

// indexed is a release whose inputs the publisher's code computed from
// files (path -> content).
func indexed(t *testing.T, seq uint64, spec manifest.Spec, files map[string]string) *manifest.Release {
	t.Helper()
	var ix bundle.Index
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range files {
			if !yield(p) {
				return
			}
		}
	}) {
		sum := sha256.Sum256([]byte(files[p]))
		ix.Entries = append(ix.Entries, bundle.Entry{Path: p, Mode: bundle.ModeFile, Size: int64(len(files[p])), SHA256: hex.EncodeToString(sum[:])})
	}
	in, err := ix.Inputs(&spec)
	if err != nil {
		t.Fatal(err)
	}
	r := release(seq, in.Code.Digest, spec)
	r.Inputs = in
	return r
}

func appFiles() map[string]string {
	return map[string]string{
		"package.json": "{}", "pnpm-lock.yaml": "lock 1", "pnpm-workspace.yaml": "packages: [apps/*]",
		"apps/api/package.json": "{}", "apps/api/src/server.ts": "server 1", "apps/api/src/routes.ts": "routes 1",
		"apps/web/package.json": "{}", "apps/web/src/App.tsx": "app 1", "apps/web/index.html": "<html>",
		"docs/README.md": "docs 1",
	}
}

func edit(files map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range files {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func TestInputsDecideWhatRuns(t *testing.T) {
	obs := func() plan.Observed {
		o := cached(healthy("api", "web"))
		o.Deps = &plan.Deps{Key: keyOld, Tools: tools}
		return o
	}
	tests := []struct {
		name      string
		files     map[string]string
		spec      func(*manifest.Spec) // the spec of both releases
		next      func(*manifest.Spec) // the spec of the second only
		obs       func(*plan.Observed)
		want, not []string
	}{
		{
			name:  "API-only change: no web build, no web restart",
			files: edit(appFiles(), "apps/api/src/routes.ts", "routes 2"),
			want: []string{
				"restart api: inputs changed: apps/api/src/routes.ts",
				"skip build web: inputs unchanged: outputs apps/web/dist carried over from seq 1",
				"skip restart web: inputs unchanged: keeps running",
			},
			not: []string{"build web", "restart web", "install"},
		},
		{
			name:  "web-only change: web built and restarted, API keeps running",
			files: edit(appFiles(), "apps/web/src/App.tsx", "app 2", "apps/web/src/New.tsx", "new"),
			want: []string{
				"build web: inputs changed: apps/web/src/App.tsx, apps/web/src/New.tsx added",
				"restart web: inputs changed: apps/web/src/App.tsx, apps/web/src/New.tsx added",
				"skip restart api: inputs unchanged: keeps running",
			},
			not: []string{"restart api"},
		},
		{
			name:  "a file no input matches: nothing rebuilt or restarted",
			files: edit(appFiles(), "docs/README.md", "docs 2"),
			want:  []string{"skip build web", "skip restart api", "skip restart web", "switch"},
			not:   []string{"build web", "restart"},
		},
		{
			name:  "lockfile change is implied in every input",
			files: edit(appFiles(), "pnpm-lock.yaml", "lock 2"),
			obs:   func(o *plan.Observed) { o.Deps.Key = keyNew },
			want:  []string{"install : pnpm-lock.yaml changed", "build web: inputs changed: dependency files", "restart api: dependencies changed", "restart web: dependencies changed"},
		},
		{
			name:  "web build reads its env file: a literal changed there rebuilds it",
			files: appFiles(),
			next: func(s *manifest.Spec) {
				s.EnvFiles = slices.Clone(s.EnvFiles)
				s.EnvFiles[1].Vars = map[string]manifest.Value{"PORT": lit("5173"), "VITE_API_BASE_URL": lit("https://new.example")}
			},
			want: []string{"build web: inputs changed: env file " + webEnv, "restart web: env file " + webEnv + " changed: +VITE_API_BASE_URL"},
			not:  []string{"restart api"},
		},
		{
			name:  "a process whose hook ran restarts even with its own inputs unchanged",
			files: edit(appFiles(), "apps/web/src/App.tsx", "app 2"),
			spec:  func(s *manifest.Spec) { s.Processes[1].Inputs = []string{"apps/web/server.js"} },
			want:  []string{"build web: inputs changed: apps/web/src/App.tsx", "restart web: build hook web ran: apps/web/dist is new"},
		},
		{
			name:  "a rotated secret restarts what reads its env file, naming it and never its value",
			files: appFiles(),
			obs: func(o *plan.Observed) {
				o.Secrets = map[string][]plan.SecretChange{apiEnv: {{Var: "JWT_SECRET", Ref: "ssm:/demo/jwt"}}}
			},
			want: []string{
				"envfiles " + apiEnv + ": secret(s) of " + apiEnv + " changed value behind the same reference: JWT_SECRET (ssm:/demo/jwt)",
				"restart api: secret(s) of " + apiEnv + " changed value behind the same reference: JWT_SECRET (ssm:/demo/jwt)",
			},
			not: []string{"restart web"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := appSpec()
			if tc.spec != nil {
				tc.spec(&spec)
			}
			rel1 := indexed(t, 1, spec, appFiles())
			cur := current(rel1, curDig)
			cur.Deps = &state.Deps{Key: keyOld, Tools: tools}
			if tc.next != nil {
				tc.next(&spec)
			}
			rel2 := indexed(t, 2, spec, tc.files)
			o := obs()
			if tc.obs != nil {
				tc.obs(&o)
			}
			p := plan.Make(plan.Desired{Release: rel2, Digest: newDig}, cur, o)
			got := steps(p)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("plan lacks %q:\n%s", w, got)
				}
			}
			for _, n := range tc.not {
				for _, line := range strings.Split(got, "\n") {
					if !strings.HasPrefix(line, "skip ") && strings.HasPrefix(line, n) {
						t.Errorf("plan has %q:\n%s", n, got)
					}
				}
			}
		})
	}
}

func TestRotatedSecretOnTheRunningRelease(t *testing.T) {
	rel := indexed(t, 1, appSpec(), appFiles())
	cur := current(rel, curDig)
	cur.Deps = &state.Deps{Key: keyOld, Tools: tools}
	o := cached(healthy("api", "web"))
	o.Deps = &plan.Deps{Key: keyOld, Tools: tools}
	o.Secrets = map[string][]plan.SecretChange{apiEnv: {{Var: "JWT_SECRET", Ref: "ssm:/demo/jwt"}}}
	p := plan.Make(plan.Desired{Release: rel, Digest: curDig}, cur, o)
	got := steps(p)
	for _, w := range []string{"envfiles " + apiEnv + ": secret(s) of " + apiEnv + " changed value behind the same reference: JWT_SECRET (ssm:/demo/jwt): rewritten in place", "restart api: secret(s)", "health api"} {
		if !strings.Contains(got, w) {
			t.Errorf("plan lacks %q:\n%s", w, got)
		}
	}
	if strings.Contains(got, "restart web") || strings.Contains(got, "extract") {
		t.Errorf("a rotated secret of the API touched more than the API:\n%s", got)
	}
}

func TestComposeUnobserved(t *testing.T) {
	rel1 := fullRelease(1, codeOld, depsOld, "c1", fullSpec())
	cur := converged(rel1)
	o := quiet(keyOld)
	o.Services, o.Images = nil, nil
	o.Unobserved = []string{"compose services: Cannot connect to the Docker daemon"}
	p := plan.Make(plan.Desired{Release: fullRelease(2, codeNew, depsOld, "c1", fullSpec()), Digest: newDig}, cur, o)
	if got := steps(p); !strings.Contains(got, "skip compose : compose file and env unchanged; services not observed") {
		t.Errorf("unchanged compose without a daemon:\n%s", got)
	}
	if len(p.Unobserved) != 1 {
		t.Errorf("plan.Unobserved = %q, want what could not be observed", p.Unobserved)
	}
	p = plan.Make(plan.Desired{Release: fullRelease(2, codeNew, depsOld, "c2", fullSpec()), Digest: newDig}, cur, o)
	if got := steps(p); !strings.Contains(got, "compose : docker-compose.yml changed (services not observed)") {
		t.Errorf("changed compose without a daemon:\n%s", got)
	}
}
