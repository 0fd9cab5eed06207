package bundle_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/manifest"
)

// A declarative schema's digest covers its declarations: a rename, a
// drop or a reference table declared with the same files must reach the
// database. A history schema's does not (it stays what it was).
func TestSchemaDigestDeclarations(t *testing.T) {
	var buf bytes.Buffer
	w, err := bundle.NewWriter(&buf, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(bundle.Entry{Path: "db/01.ddl", Mode: bundle.ModeFile}, []byte("CREATE TABLE app.t (id int);\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	digest := func(sc manifest.Schema) string {
		t.Helper()
		sc.Dir, sc.Files, sc.Schemas = "db", []string{"db/01.ddl"}, []string{"app"}
		in, err := w.Index.Inputs(&manifest.Spec{Schema: &sc})
		if err != nil {
			t.Fatal(err)
		}
		return in.Schema.Digest
	}
	hist := digest(manifest.Schema{})
	if digest(manifest.Schema{Mode: manifest.SchemaHistory}) != hist {
		t.Error("mode history changed the digest of a history schema")
	}
	decl := digest(manifest.Schema{Mode: manifest.SchemaDeclarative})
	for name, sc := range map[string]manifest.Schema{
		"drops":         {Mode: manifest.SchemaDeclarative, Drops: []string{"app.old"}},
		"renames":       {Mode: manifest.SchemaDeclarative, Renames: map[string]string{"app.a": "b"}},
		"referenceData": {Mode: manifest.SchemaDeclarative, ReferenceData: []string{"app.t"}},
		"strict":        {Mode: manifest.SchemaDeclarative, Strict: true},
	} {
		if d := digest(sc); d == decl || d == hist {
			t.Errorf("declaring %s left the schema digest as it was", name)
		}
	}
}

// Globs in schema.files add the files they match after the list, in path
// order; a listed file the bundle lacks is named, and nothing publishes.
func TestSchemaGlobs(t *testing.T) {
	var buf bytes.Buffer
	w, err := bundle.NewWriter(&buf, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"db/01_schema.ddl", "db/a/03.ddl", "db/b/02.ddl", "db/notes.md"} {
		if err := w.Add(bundle.Entry{Path: p, Mode: bundle.ModeFile}, []byte("-- "+p+"\n")); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	inputs := func(files ...string) (manifest.Inputs, error) {
		return w.Index.Inputs(&manifest.Spec{Schema: &manifest.Schema{Dir: "db", Files: files}})
	}
	in, err := inputs("db/01_schema.ddl", "db/**")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Schema.Files) != 3 || in.Schema.Files["db/notes.md"] != "" {
		t.Errorf("schema files = %v, want the three .ddl files", in.Schema.Files)
	}
	listed, err := inputs("db/01_schema.ddl", "db/a/03.ddl", "db/b/02.ddl")
	if err != nil {
		t.Fatal(err)
	}
	if listed.Schema.Digest != in.Schema.Digest {
		t.Error("a glob gave another digest than listing what it matches in path order")
	}
	if other, _ := inputs("db/01_schema.ddl", "db/b/02.ddl", "db/a/03.ddl"); other.Schema.Digest == in.Schema.Digest {
		t.Error("another order gave the same digest")
	}
	if _, err := inputs("db/01_schema.ddl", "db/gone.ddl", "db/**"); err == nil || !strings.Contains(err.Error(), "schema file db/gone.ddl") {
		t.Errorf("a listed file the bundle lacks: %v, want it named", err)
	}
}
