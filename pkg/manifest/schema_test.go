package manifest_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/manifest/manifesttest"
)

var update = flag.Bool("update", false, "rewrite golden files (the committed JSON Schema)")

const schemaFile = "../../manifests/schema/environment.schema.json"

func generatedSchema(t *testing.T) []byte {
	t.Helper()
	got, err := manifest.EnvironmentSchema()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestSchemaGolden keeps the committed schema, which editors load through
// the yaml-language-server comment in manifests, in step with the types.
func TestSchemaGolden(t *testing.T) {
	got := generatedSchema(t)
	if *update {
		if err := os.MkdirAll("../../manifests/schema", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(schemaFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/manifest -run Schema -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date with the Go types; run go test ./pkg/manifest -run Schema -update", schemaFile)
	}
	if !json.Valid(want) {
		t.Errorf("%s is not valid JSON", schemaFile)
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(generatedSchema(t)))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(manifest.SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(manifest.SchemaID)
	if err != nil {
		t.Fatalf("compiling the schema: %v", err)
	}
	return s
}

// yamlToJSON converts YAML into the value a JSON-based editor would see.
func yamlToJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func TestSchemaAcceptsManifests(t *testing.T) {
	s := compileSchema(t)
	for _, f := range []string{prodFile, demoFile} {
		if err := s.Validate(yamlToJSON(t, readFile(t, f))); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if err := s.Validate(yamlToJSON(t, []byte(manifesttest.MinimalEnvironment))); err != nil {
		t.Errorf("minimal environment: %v", err)
	}
	// The parser reads unquoted scalars as text; editors must not flag them.
	unquoted := manifesttest.Mutate(t, `PORT: "4000"`, "PORT: 4000\n        DEBUG: false")
	if _, err := manifest.ParseEnvironment("env.yaml", unquoted); err != nil {
		t.Fatalf("parser rejects unquoted scalars: %v", err)
	}
	if err := s.Validate(yamlToJSON(t, unquoted)); err != nil {
		t.Errorf("schema rejects unquoted number and boolean values the parser accepts: %v", err)
	}
}

// TestSchemaRejectsBadManifests: what the parser rejects for its shape
// (unknown fields, wrong types, reference kinds), editors flag too.
func TestSchemaRejectsBadManifests(t *testing.T) {
	s := compileSchema(t)
	n := 0
	for _, tt := range badEnvironments {
		if !tt.schema {
			continue
		}
		n++
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Validate(yamlToJSON(t, manifesttest.Mutate(t, tt.old, tt.new))); err == nil {
				t.Errorf("the JSON Schema accepts it")
			}
		})
	}
	if n < 5 {
		t.Errorf("only %d bad manifests are checked against the schema", n)
	}
}

// TestSchemaCoversEveryField walks Environment's fields through their yaml
// tags and checks each is a property of its definition in the schema, that
// the json tag (which the schema is generated from) says the same, and
// that "required" matches omitempty. A field added to the types without
// regenerating the schema, or with mismatched tags, fails here.
func TestSchemaCoversEveryField(t *testing.T) {
	var schema struct {
		Ref  string `json:"$ref"`
		Defs map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
			Required   []string                   `json:"required"`
		} `json:"$defs"`
	}
	want, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &schema); err != nil {
		t.Fatal(err)
	}
	if schema.Ref != "#/$defs/Environment" {
		t.Fatalf("schema $ref = %q", schema.Ref)
	}

	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, at string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		def, ok := schema.Defs[typ.Name()]
		// Types with a JSONSchema method (Duration, Value) describe themselves.
		if _, self := reflect.PointerTo(typ).MethodByName("JSONSchema"); self {
			if !ok {
				t.Errorf("%s (%s): no $defs/%s in the schema", at, typ, typ.Name())
			}
			return // described by hand, not by its fields
		}
		if !ok {
			t.Errorf("%s (%s): no $defs/%s in the schema", at, typ, typ.Name())
			return
		}
		var required, names []string
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if !f.IsExported() {
				continue
			}
			ytag, ok := f.Tag.Lookup("yaml")
			if !ok {
				t.Errorf("%s.%s has no yaml tag", typ.Name(), f.Name)
				continue
			}
			yname, yopts, _ := strings.Cut(ytag, ",")
			jname, jopts, _ := strings.Cut(f.Tag.Get("json"), ",")
			path := at + "." + yname
			if jname != yname || strings.Contains(yopts, "omitempty") != strings.Contains(jopts, "omitempty") {
				t.Errorf("%s: yaml tag %q and json tag %q disagree", path, ytag, f.Tag.Get("json"))
			}
			names = append(names, yname)
			if _, ok := def.Properties[yname]; !ok {
				t.Errorf("%s: not a property of $defs/%s; run go test ./pkg/manifest -run Schema -update", path, typ.Name())
			}
			if !strings.Contains(yopts, "omitempty") {
				required = append(required, yname)
			}
			walk(f.Type, path)
		}
		for p := range def.Properties {
			if !contains(names, p) {
				t.Errorf("$defs/%s has property %q that %s does not decode", typ.Name(), p, typ)
			}
		}
		sort.Strings(required)
		got := append([]string(nil), def.Required...)
		sort.Strings(got)
		if (len(got) != 0 || len(required) != 0) && !reflect.DeepEqual(got, required) {
			t.Errorf("$defs/%s requires %v, want the fields without omitempty: %v", typ.Name(), got, required)
		}
	}
	walk(reflect.TypeFor[manifest.Environment](), "")
	for _, name := range []string{"Environment", "Metadata", "Spec", "Paths", "EnvFile", "Process", "HealthCheck", "HTTPCheck", "TCPCheck", "ExecCheck", "Duration", "Value"} {
		if !seenName(seen, name) {
			t.Errorf("the walk never reached %s", name)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func seenName(seen map[reflect.Type]bool, name string) bool {
	for typ := range seen {
		if typ.Name() == name {
			return true
		}
	}
	return false
}
