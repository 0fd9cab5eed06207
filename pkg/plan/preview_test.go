package plan_test

import (
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/plan"
)

// steps renders a plan's steps and skips, one per line, for comparison.
func steps(p plan.Plan) string {
	var b strings.Builder
	for _, s := range p.Steps {
		b.WriteString(string(s.Kind) + " " + s.Target + ": " + s.Reason + "\n")
	}
	for _, s := range p.Skipped {
		b.WriteString("skip " + string(s.Kind) + " " + s.Target + ": " + s.Reason + "\n")
	}
	return b.String()
}

func withSchemaAndCompose(rel *manifest.Release, schemaFiles map[string]string, services ...string) *manifest.Release {
	rel.Spec.Schema = &manifest.Schema{Dir: "db"}
	for _, f := range []string{"db/01.ddl", "db/02.ddl", "db/03.ddl"} {
		if _, ok := schemaFiles[f]; ok {
			rel.Spec.Schema.Files = append(rel.Spec.Schema.Files, f)
		}
	}
	rel.Inputs.Schema = manifest.Input{Digest: manifest.Digest(schemaFiles), Files: schemaFiles}
	rel.Spec.Compose = &manifest.Compose{File: "docker-compose.yml", Project: "p", Services: services}
	rel.Inputs.Compose = manifest.Input{Digest: "compose-file"}
	return rel
}

// TestPreview: the plan of a steady host, from two releases alone.
func TestPreview(t *testing.T) {
	schema1 := map[string]string{"db/01.ddl": "a", "db/02.ddl": "b"}
	cur := withSchemaAndCompose(release(1, codeOld, baseSpec()), schema1, "postgres")
	for _, tc := range []struct {
		name string
		next func() *manifest.Release
		want []string // lines the plan must have
		not  []string // lines it must not have
	}{
		{
			name: "same spec",
			next: func() *manifest.Release {
				return withSchemaAndCompose(release(2, codeOld, baseSpec()), schema1, "postgres")
			},
			want: []string{"extract : code unchanged: new release directory from the cached bundle", "switch : seq 1 -> 2",
				"skip compose : compose file, env and images unchanged; 1 service(s) running",
				"skip schema : schema files unchanged since seq 1: no database connection"},
			not: []string{"restart", "fetch", "envfiles apps"},
		},
		{
			name: "one env var",
			next: func() *manifest.Release {
				spec := baseSpec()
				spec.EnvFiles[1].Vars["PORT"] = lit("5174")
				return withSchemaAndCompose(release(2, codeOld, spec), schema1, "postgres")
			},
			want: []string{"envfiles apps/web/.env: env file apps/web/.env changed: PORT", "restart web: env file apps/web/.env changed: PORT", "health web: 1 health check(s) after restart"},
			not:  []string{"restart api"},
		},
		{
			name: "schema file changed and added, new compose service",
			next: func() *manifest.Release {
				return withSchemaAndCompose(release(2, codeOld, baseSpec()), map[string]string{"db/01.ddl": "a", "db/02.ddl": "B", "db/03.ddl": "c"}, "postgres", "redis")
			},
			want: []string{"schema db/02.ddl: changed", "schema db/03.ddl: added", "compose : compose settings changed; service redis has no container"},
			not:  []string{"schema db/01.ddl", "seed"},
		},
		{
			name: "new code",
			next: func() *manifest.Release {
				r := withSchemaAndCompose(release(2, codeNew, baseSpec()), schema1, "postgres")
				r.Bundle.SHA256 = "def"
				return r
			},
			want: []string{"fetch : code digest changed (222222222222)", "restart api: code digest changed", "restart web: code digest changed"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := plan.Preview(plan.Desired{Release: cur, Digest: curDig}, plan.Desired{Release: tc.next(), Digest: newDig})
			got := steps(p)
			for _, w := range tc.want {
				if !strings.Contains(got, w+"\n") {
					t.Errorf("plan lacks %q:\n%s", w, got)
				}
			}
			// Steps that run must not mention n; a skip line may ("skip
			// restart api: inputs unchanged").
			for _, n := range tc.not {
				for _, line := range strings.Split(got, "\n") {
					if !strings.HasPrefix(line, "skip ") && strings.Contains(line, n) {
						t.Errorf("plan has %q:\n%s", n, got)
					}
				}
			}
		})
	}
}
