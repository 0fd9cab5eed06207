package fit_test

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/fit"
	"github.com/cohuron/deploy/pkg/manifest"
)

// index makes a synthetic bundle index: path → "file", "exec" or
// "link"; directories are implied.
func index(entries map[string]string) *bundle.Index {
	ix := &bundle.Index{}
	for p, k := range entries {
		e := bundle.Entry{Path: p, Mode: bundle.ModeFile, SHA256: "00"}
		switch k {
		case "exec":
			e.Mode = bundle.ModeExec
		case "link":
			e.Mode, e.Link = bundle.ModeSymlink, true
		}
		ix.Entries = append(ix.Entries, e)
	}
	sort.Slice(ix.Entries, func(i, j int) bool { return ix.Entries[i].Path < ix.Entries[j].Path })
	return ix
}

const compose = `version: '3.9'
services:
  db:
    image: postgis/postgis:16-3.4
  redis:
    image: redis:7
volumes:
  db_data:
`

// app is a bundle shaped like the real app: compose services db and redis.
func app() map[string]string {
	return map[string]string{
		"docker-compose.yml":        "file",
		"package.json":              "file",
		"pnpm-lock.yaml":            "file",
		"apps/api/package.json":     "file",
		"apps/api/src/server.ts":    "file",
		"apps/api/bin/serve":        "exec",
		"apps/api/bin/plain":        "file",
		"apps/web/package.json":     "file",
		"apps/web/src/main.tsx":     "file",
		"apps/web/index.html":       "file",
		"db/01_schema.ddl":          "file",
		"shared":                    "link",
		"apps/worker":               "link",
		"apps/api/src/server.ts.gz": "file",
	}
}

func spec() *manifest.Spec {
	return &manifest.Spec{
		User: "cohuron",
		EnvFiles: []manifest.EnvFile{
			{Path: "apps/api/.env", Vars: map[string]manifest.Value{"PORT": {Literal: "4000"}}},
			{Path: "apps/web/.env", Vars: map[string]manifest.Value{"VITE_API": {Literal: "x"}}},
		},
		Install: &manifest.Install{Command: []string{"pnpm", "install", "--frozen-lockfile"}},
		Build: []manifest.Hook{{Name: "web", Cwd: "apps/web", Command: []string{"pnpm", "exec", "vite", "build"},
			Inputs: []string{"apps/web/**"}, Outputs: []string{"apps/web/dist"}, At: manifest.AtPublish}},
		Compose: &manifest.Compose{File: "docker-compose.yml", Project: "cohuron", Services: []string{"db", "redis"}},
		Schema:  &manifest.Schema{Dir: "db", Files: []string{"db/01_schema.ddl"}},
		Processes: []manifest.Process{
			{Name: "api", Cwd: "apps/api", Command: []string{"node", "--import", "tsx", "src/server.ts"}, Inputs: []string{"apps/api/**"}},
			{Name: "web", Cwd: "apps/web", Command: []string{"node", "node_modules/vite/bin/vite.js", "preview"}, Inputs: []string{"apps/web/**"}},
		},
	}
}

func TestCheck(t *testing.T) {
	type want struct{ path, msg string }
	for _, tc := range []struct {
		name    string
		edit    func(s *manifest.Spec)
		compose string // the compose file's content (default compose)
		want    []want
	}{
		{name: "the real app's shape fits"},
		{
			name: "compose service the file does not define",
			edit: func(s *manifest.Spec) { s.Compose.Services = []string{"postgres", "redis"} },
			want: []want{{"spec.compose.services[0]", `expected a service that docker-compose.yml defines (db, redis), found "postgres"`}},
		},
		{
			name: "compose file not in the bundle",
			edit: func(s *manifest.Spec) { s.Compose.File = "compose.yaml" },
			want: []want{{"spec.compose.file", "expected compose file compose.yaml to be a file of the bundle, found no compose.yaml in the bundle"}},
		},
		{
			name: "compose file is a symlink",
			edit: func(s *manifest.Spec) { s.Compose.File = "shared" },
			want: []want{{"spec.compose.file", "found symlink shared"}},
		},
		{
			name:    "compose file that does not parse names its line",
			compose: "services:\n  db:\n    image: x\n  redis: [\n",
			want:    []want{{"spec.compose.file", "expected compose file docker-compose.yml to be YAML, found a syntax error at docker-compose.yml:"}},
		},
		{
			name:    "compose file without services",
			compose: "version: '3'\nvolumes: {}\n",
			want:    []want{{"spec.compose.file", "to have a top-level services: mapping, found none"}},
		},
		{
			name:    "compose services as a list",
			compose: "services: [db, redis]\n",
			want:    []want{{"spec.compose.file", "to be a mapping of service names, found a list at docker-compose.yml:1"}},
		},
		{
			name:    "compose services through an anchor and a merge key",
			compose: "x-base: &base {image: x}\nservices:\n  db: {<<: *base}\n  redis: *base\n",
		},
		{
			name: "process cwd not in the bundle",
			edit: func(s *manifest.Spec) { s.Processes[0].Cwd = "apps/apii" },
			want: []want{{"spec.processes[0].cwd", "expected a directory of the bundle reached through no symlink, found no apps/apii in the bundle"}},
		},
		{
			name: "process cwd through a symlink",
			edit: func(s *manifest.Spec) { s.Processes[0].Cwd = "shared/api" },
			want: []want{{"spec.processes[0].cwd", "found shared/api reached through symlink shared"}},
		},
		{
			name: "process cwd is a symlink",
			edit: func(s *manifest.Spec) { s.Processes[0].Cwd = "apps/worker" },
			want: []want{{"spec.processes[0].cwd", "found symlink apps/worker"}},
		},
		{
			name: "process cwd is a file",
			edit: func(s *manifest.Spec) { s.Processes[0].Cwd = "apps/api/package.json" },
			want: []want{{"spec.processes[0].cwd", "found file apps/api/package.json"}},
		},
		{
			name: "node script not in the bundle",
			edit: func(s *manifest.Spec) { s.Processes[0].Command = []string{"node", "--import", "tsx", "src/srver.ts"} },
			want: []want{{"spec.processes[0].command[3]", "expected script apps/api/src/srver.ts (src/srver.ts in cwd apps/api) to be a file of the bundle or under a build hook's outputs, found no apps/api/src/srver.ts in the bundle"}},
		},
		{
			name: "node script after --",
			edit: func(s *manifest.Spec) { s.Processes[0].Command = []string{"node", "--", "nope.js"} },
			want: []want{{"spec.processes[0].command[2]", "script apps/api/nope.js"}},
		},
		{
			name: "node script under a build hook's outputs",
			edit: func(s *manifest.Spec) {
				s.Processes[1].Command = []string{"node", "dist/server.js"}
			},
		},
		{
			name: "node script under node_modules without an install step",
			edit: func(s *manifest.Spec) { s.Install = nil; s.User = "" },
			want: []want{{"spec.processes[1].command[1]", "node_modules is never bundled, and without spec.install nothing installs it"}},
		},
		{
			name: "node script that leaves the release",
			edit: func(s *manifest.Spec) { s.Processes[0].Command = []string{"node", "../../../etc/x.js"} },
			want: []want{{"spec.processes[0].command[1]", "to be inside the release, found a path outside it"}},
		},
		{
			name: "node -e, an absolute script and bare commands are not checked",
			edit: func(s *manifest.Spec) {
				s.Processes[0].Command = []string{"node", "-e", "require('x')"}
				s.Processes[1].Command = []string{"pnpm", "start"}
				s.Processes = append(s.Processes, manifest.Process{Name: "abs", Command: []string{"node", "/usr/lib/x.js"}})
			},
		},
		{
			name: "relative command with a slash",
			edit: func(s *manifest.Spec) {
				s.Processes[0].Command = []string{"./bin/serve", "--port", "4000"}
				s.Processes[1].Command = []string{"./bin/missing"}
			},
			want: []want{{"spec.processes[1].command[0]", "expected command apps/web/bin/missing (./bin/missing in cwd apps/web) to be a file of the bundle"}},
		},
		{
			name: "relative command not executable",
			edit: func(s *manifest.Spec) { s.Processes[0].Command = []string{"bin/plain"} },
			want: []want{{"spec.processes[0].command[0]", "expected command apps/api/bin/plain (bin/plain in cwd apps/api) to be an executable file, found mode 644"}},
		},
		{
			name: "relative command under node_modules with an install step",
			edit: func(s *manifest.Spec) {
				s.Processes[1].Command = []string{"node_modules/.bin/vite", "preview"}
			},
		},
		{
			name: "build hook cwd not in the bundle",
			edit: func(s *manifest.Spec) { s.Build[0].Cwd = "apps/webb" },
			want: []want{{"spec.build[0].cwd", "found no apps/webb in the bundle"}},
		},
		{
			name: "install cwd not in the bundle",
			edit: func(s *manifest.Spec) { s.Install.Cwd = "frontend" },
			want: []want{{"spec.install.cwd", "found no frontend in the bundle"}},
		},
		{
			name: "build output through a symlink",
			edit: func(s *manifest.Spec) { s.Build[0].Outputs = []string{"shared/dist"} },
			want: []want{{"spec.build[0].outputs[0]", "expected output shared/dist to be reached through no symlink of the bundle, found shared/dist reached through symlink shared: the hook would write outside the release"}},
		},
		{
			name: "build output is a symlink",
			edit: func(s *manifest.Spec) { s.Build[0].Outputs = []string{"apps/worker"} },
			want: []want{{"spec.build[0].outputs[0]", "found symlink apps/worker"}},
		},
		{
			name: "build output is a tracked directory",
			edit: func(s *manifest.Spec) { s.Build[0].Outputs = []string{"apps/web/src"} },
			want: []want{{"spec.build[0].outputs[0]", "expected an output the bundle does not track, found 1 tracked file(s) under apps/web/src (apps/web/src/main.tsx…): the agent would replace them"}},
		},
		{
			name: "build output is a tracked file",
			edit: func(s *manifest.Spec) { s.Build[0].Outputs = []string{"apps/web/index.html"} },
			want: []want{{"spec.build[0].outputs[0]", "found tracked file apps/web/index.html"}},
		},
		{
			name: "build output under a file",
			edit: func(s *manifest.Spec) { s.Build[0].Outputs = []string{"apps/web/index.html/dist"} },
			want: []want{{"spec.build[0].outputs[0]", "found apps/web/index.html/dist under apps/web/index.html, which is a file"}},
		},
		{
			name: "env file through a symlink",
			edit: func(s *manifest.Spec) { s.EnvFiles[1].Path = "apps/worker/.env" },
			want: []want{{"spec.envFiles[1].path", "expected env file apps/worker/.env to be reached through no symlink of the bundle, found apps/worker/.env reached through symlink apps/worker"}},
		},
		{
			name: "env file is a directory",
			edit: func(s *manifest.Spec) { s.EnvFiles[1].Path = "apps/web/src" },
			want: []want{{"spec.envFiles[1].path", "to be a file path, found directory apps/web/src"}},
		},
		{
			name: "input globs matching nothing",
			edit: func(s *manifest.Spec) {
				s.Build[0].Inputs = []string{"apps/wbe/**", "apps/web/**"}
				s.Processes[0].Inputs = []string{"apps/api"}
			},
			want: []want{
				{"spec.build[0].inputs[0]", `expected a glob matching at least one file of the bundle, found none matching "apps/wbe/**": the hook would never rebuild for a change there`},
				{"spec.processes[0].inputs[0]", `found none matching "apps/api" (apps/api is a directory: apps/api/** matches what is in it): the process would never restart`},
			},
		},
		{
			name: "an input glob matching only an env file",
			edit: func(s *manifest.Spec) { s.Processes[0].Inputs = []string{"apps/api/src/**", "apps/api/.env"} },
		},
		{
			name: "schema glob matching no schema file",
			edit: func(s *manifest.Spec) { s.Schema.Files = append(s.Schema.Files, "db/**/*.ddl", "db/views/*.sql") },
			want: []want{{"spec.schema.files[2]", `expected a glob matching at least one .sql or .ddl file of the bundle, found none matching "db/views/*.sql"`}},
		},
		{
			name: "schema file not in the bundle",
			edit: func(s *manifest.Spec) { s.Schema.Seed = []string{"db/seed.sql"} },
			want: []want{{"spec.schema.seed[0]", "expected schema file db/seed.sql to be a file of the bundle, found no db/seed.sql in the bundle"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, files := spec(), app()
			if tc.edit != nil {
				tc.edit(s)
			}
			content := compose
			if tc.compose != "" {
				content = tc.compose
			}
			read := func(name string) ([]byte, error) {
				if name == "docker-compose.yml" {
					return []byte(content), nil
				}
				return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
			}
			got := fit.Check(s, index(files), read)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problem(s), want %d: %v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				if got[i].Path != w.path || !strings.Contains(got[i].Msg, w.msg) {
					t.Errorf("problem %d = %s: %s\nwant     %s: …%s…", i, got[i].Path, got[i].Msg, w.path, w.msg)
				}
			}
		})
	}
}

// TestCheckReadError: a compose file the reader cannot return is a
// problem, not a panic or a pass.
func TestCheckReadError(t *testing.T) {
	read := func(string) ([]byte, error) { return nil, fmt.Errorf("disk on fire") }
	got := fit.Check(spec(), index(app()), read)
	if len(got) != 1 || got[0].Path != "spec.compose.file" || !strings.Contains(got[0].Msg, "disk on fire") {
		t.Fatalf("got %v", got)
	}
}
