package manifest

import (
	"path"
	"slices"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// IsGlob reports whether an entry of schema.files is a glob (doublestar
// syntax) rather than a file.
func IsGlob(entry string) bool { return strings.ContainsAny(entry, "*?[{") }

// isSchemaFile reports whether p has the extension of a schema file.
func isSchemaFile(p string) bool {
	ext := path.Ext(p)
	return ext == ".sql" || ext == ".ddl"
}

// Order is the import order of the schema files among paths (a bundle's
// files, in any order): the files Files lists, in its order, then the
// .sql and .ddl files its globs match that are listed nowhere (neither in
// Files nor in Seed), in path order. Missing are the listed files paths
// lacks.
func (s *Schema) Order(paths []string) (order, missing []string) {
	have := make(map[string]bool, len(paths))
	for _, p := range paths {
		have[p] = true
	}
	listed := map[string]bool{}
	var globs []string
	for _, f := range s.Files {
		if IsGlob(f) {
			globs = append(globs, f)
			continue
		}
		listed[f] = true
		if have[f] {
			order = append(order, f)
		} else {
			missing = append(missing, f)
		}
	}
	for _, f := range s.Seed {
		listed[f] = true
	}
	var rest []string
	for _, p := range paths {
		if listed[p] || !isSchemaFile(p) {
			continue
		}
		for _, g := range globs {
			if ok, _ := doublestar.Match(g, p); ok {
				rest = append(rest, p)
				break
			}
		}
	}
	slices.Sort(rest)
	return append(order, slices.Compact(rest)...), missing
}

// SchemaOrder is the import order of the release's schema files: Order
// among the files its signed inputs name (exactly the ones the publisher
// found in the bundle), so publisher and agent agree.
func (r *Release) SchemaOrder() []string {
	sc := r.Spec.Schema
	if sc == nil {
		return nil
	}
	paths := make([]string, 0, len(r.Inputs.Schema.Files))
	for p := range r.Inputs.Schema.Files {
		paths = append(paths, p)
	}
	order, _ := sc.Order(paths)
	return order
}

// SchemaFileChange is a schema file whose signed digest differs between
// two releases.
type SchemaFileChange struct {
	File string
	Why  string // added, changed, removed
}

// SchemaChangesFrom lists, by the signed per-file digests, the schema
// files of r added or changed against had (another release's
// Inputs.Schema.Files), in import order, then those had has and r not,
// in path order.
func (r *Release) SchemaChangesFrom(had map[string]string) []SchemaFileChange {
	var out []SchemaFileChange
	for _, f := range r.SchemaOrder() {
		switch sum, ok := had[f]; {
		case !ok:
			out = append(out, SchemaFileChange{f, "added"})
		case sum != r.Inputs.Schema.Files[f]:
			out = append(out, SchemaFileChange{f, "changed"})
		}
	}
	var removed []string
	for f := range had {
		if _, ok := r.Inputs.Schema.Files[f]; !ok {
			removed = append(removed, f)
		}
	}
	slices.Sort(removed)
	for _, f := range removed {
		out = append(out, SchemaFileChange{f, "removed"})
	}
	return out
}
