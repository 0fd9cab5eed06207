package preflight

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cohuron/deploy/pkg/manifest"
)

// composeTool stands for "docker compose, v2 plugin or docker-compose".
const composeTool = "docker compose"

// need is one program some steps start, and who runs it.
type need struct {
	tool  string // a name looked up on the PATH, an absolute path, or composeTool
	asApp bool   // run as the app account (spec.user), not as the agent
	steps []string
}

// needs lists what spec's steps start, in order of first use: those run
// as the app account first, then the agent's. A tool several steps need
// is one need naming every step.
func needs(spec *manifest.Spec) []need {
	var app, agent []need
	add := func(list *[]need, asApp bool, step string, tools ...string) {
		for _, t := range tools {
			found := false
			for i := range *list {
				if n := &(*list)[i]; n.tool == t {
					if n.steps[len(n.steps)-1] != step {
						n.steps = append(n.steps, step)
					}
					found = true
				}
			}
			if !found {
				*list = append(*list, need{tool: t, asApp: asApp, steps: []string{step}})
			}
		}
	}
	if spec.Install != nil {
		add(&app, true, "spec.install", commandTools(spec.Install.Command, true)...)
	}
	for i, h := range spec.Build {
		add(&app, true, "spec.build["+label(h.Name, i)+"]", commandTools(h.Command, true)...)
	}
	for i, p := range spec.Processes {
		step := "spec.processes[" + label(p.Name, i) + "]"
		// PM2 resolves other names itself, possibly in the process's cwd.
		add(&app, true, step, commandTools(p.Command, false)...)
		for j, h := range p.Health {
			if h.Exec != nil {
				// pkg/health runs them as the agent, in the live root.
				add(&agent, false, fmt.Sprintf("%s.health[%d]", step, j), commandTools(h.Exec.Command, true)...)
			}
		}
	}
	if spec.Compose != nil {
		// docker-compose v1 still needs the docker CLI: pkg/compose reads
		// container state with docker ps and docker image inspect.
		add(&agent, false, "spec.compose", "docker", composeTool)
	}
	if spec.Schema != nil {
		add(&agent, false, "spec.schema", "pg_dump", "psql")
	}
	return append(app, agent...)
}

// label names a hook or process in a step: its name, or its index when
// it has none.
func label(name string, i int) string {
	if name == "" {
		return fmt.Sprint(i)
	}
	return name
}

// commandTools are the programs argv[0] needs checked: node; pnpm and
// node; an absolute path as it is; with anyName, any other name without
// a slash (pkg/proc looks it up on the PATH). A relative path with a
// slash is in the release.
func commandTools(argv []string, anyName bool) []string {
	if len(argv) == 0 || argv[0] == "" {
		return nil
	}
	switch c := argv[0]; {
	case filepath.IsAbs(c):
		return []string{filepath.Clean(c)}
	case strings.Contains(c, "/"):
		return nil
	case c == "pnpm":
		return []string{"pnpm", "node"}
	case c == "node" || anyName:
		return []string{c}
	}
	return nil
}
