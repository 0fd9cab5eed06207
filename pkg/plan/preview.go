package plan

import (
	"slices"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/state"
)

// PreviewDir stands for the running release's directory in a preview.
const PreviewDir = "/opt/cohuron-backups/releases/current"

// Preview is the plan a steady host would make: one that converged cur
// and has not drifted (its processes and services up, its node_modules
// intact, its bundle cached, its database holding cur's schema), when
// next is published. It is what a pull request's change would do to the
// hosts, computed without one: a host that drifted or runs an older
// release does more.
func Preview(cur, next Desired) Plan {
	c := cur.Release
	rec := &state.Release{
		ID: "current", Seq: c.Seq, Digest: cur.Digest, Dir: PreviewDir,
		Bundle: c.Bundle.Key, Inputs: c.Inputs, Spec: &c.Spec,
	}
	if c.Spec.Install != nil {
		rec.Deps = &state.Deps{Key: previewDepsKey(c), Tools: previewTools}
	}
	if c.Spec.Compose != nil {
		rec.Compose = &state.Compose{Key: ComposeKey(c)}
	}
	if c.Spec.Schema != nil {
		rec.Schema = &state.Schema{Digest: c.Inputs.Schema.Digest}
	}

	n := next.Release
	obs := Observed{
		RootTarget:   PreviewDir,
		CurrentDirOK: true,
		BundleCached: n.Bundle.SHA256 == c.Bundle.SHA256,
		Processes:    map[string]Process{},
		Services:     map[string]Service{},
	}
	for _, p := range c.Spec.Processes {
		obs.Processes[p.Name] = Process{Running: true}
	}
	if n.Spec.Install != nil {
		obs.Deps = &Deps{Key: previewDepsKey(n), Tools: previewTools}
	}
	if n.Spec.Compose != nil {
		for _, s := range n.Spec.Compose.Services {
			// Only services cur ran are up; a new one has no container yet.
			if c.Spec.Compose != nil && slices.Contains(c.Spec.Compose.Services, s) {
				obs.Services[s] = Service{Running: true, State: "running", Health: "healthy"}
			}
		}
	}
	if n.Spec.Schema != nil && (c.Spec.Schema == nil || c.Inputs.Schema.Digest != n.Inputs.Schema.Digest) {
		obs.Schema = previewSchema(c, n)
	}
	return Make(next, rec, obs)
}

// previewDepsKey stands for the agent's dependency key: the same tools on
// both sides, so only the dependency inputs decide.
func previewDepsKey(r *manifest.Release) string {
	return "preview " + r.Inputs.Dependencies.Digest
}

// previewTools: a preview assumes the host's node and pnpm stay as they are.
const previewTools = "the host's node and pnpm"

// previewSchema is what a database holding cur's schema files lacks of
// next's, by the signed per-file digests (the agent asks the database's
// history instead).
func previewSchema(c, n *manifest.Release) *SchemaPending {
	had := map[string]string{}
	if c.Spec.Schema != nil {
		had = c.Inputs.Schema.Files
	}
	sp := &SchemaPending{}
	for _, c := range n.SchemaChangesFrom(had) {
		if c.Why != "removed" { // a removed file is not undone: nothing runs for it
			sp.Changes = append(sp.Changes, SchemaChange{File: c.File, Why: c.Why})
		}
	}
	if c.Spec.Schema == nil {
		// The database never saw this release's schema: seeds run once.
		sp.Seeds = slices.Clone(n.Spec.Schema.Seed)
	}
	return sp
}
