package strictyaml_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cohuron/deploy/pkg/strictyaml"
)

type testProc struct {
	Name string `yaml:"name"`
	Port int    `yaml:"port,omitempty"`
}

type testSpec struct {
	Name      string            `yaml:"name"`
	Processes []testProc        `yaml:"processes,omitempty"`
	Labels    map[string]string `yaml:"labels,omitempty"`
	Tags      []string          `yaml:"tags,omitempty"`
}

type testDoc struct {
	Kind string   `yaml:"kind"`
	Spec testSpec `yaml:"spec"`
}

// billionLaughs is the classic alias bomb: nine levels of ten aliases
// expand to 10^9 strings if a decoder follows them.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("lol0: &lol0 \"lol\"\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "lol%d: &lol%d [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*lol%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

func manyKeys(n int) string {
	var b strings.Builder
	b.WriteString("kind: x\nspec:\n  labels:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "    k%d: v\n", i)
	}
	return b.String()
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		maxBytes int
		line     int    // line of the first problem; 0 for none
		msg      string // substring of its message
		// yaml.v3 reports parser (not scanner) syntax errors at the 0-based
		// line of the enclosing construct, one less than the real line.
		syntax bool
	}{
		{name: "unknown top-level field", in: "kind: x\nbogus: 1\n", line: 2, msg: "field bogus not found"},
		{name: "unknown nested field", in: "kind: x\nspec:\n  name: a\n  processes:\n    - name: api\n      prot: 80\n", line: 6, msg: "field prot not found"},
		{name: "duplicate top-level key", in: "kind: a\nspec: {name: x}\nkind: b\n", line: 3, msg: `"kind" already defined at line 1`},
		{name: "duplicate nested key", in: "kind: a\nspec:\n  name: x\n  name: y\n", line: 4, msg: `"name" already defined at line 3`},
		{name: "duplicate map key", in: "kind: a\nspec:\n  labels:\n    team: a\n    team: b\n", line: 5, msg: `"team" already defined`},
		{name: "duplicate key in flow mapping", in: "kind: a\nspec: {name: x, name: y}\n", line: 2, msg: "already defined"},
		{name: "second document", in: "kind: a\n---\nkind: b\n", line: 2, msg: "second YAML document"},
		{name: "second empty document", in: "kind: a\n---\n", line: 2, msg: "second YAML document"},
		{name: "second document with syntax error", in: "kind: a\n---\nkind: [b\n", line: 3, msg: "did not find expected", syntax: true},
		{name: "anchor", in: "kind: &k a\nspec: {name: x}\n", line: 1, msg: "anchors and aliases are not allowed"},
		{name: "anchor and alias", in: "kind: x\nspec:\n  name: &n api\n  tags: [*n]\n", line: 3, msg: "anchors and aliases"},
		{name: "alias bomb", in: billionLaughs(), line: 1, msg: "anchors and aliases are not allowed"},
		{name: "merge key", in: "kind: x\nspec:\n  name: a\n  <<: {name: b}\n", line: 4, msg: "merge keys"},
		{name: "merge key first", in: "kind: x\nspec:\n  <<: {name: b}\n  name: a\n", line: 3, msg: "merge keys"},
		{name: "local tag", in: "kind: x\nspec:\n  name: !vault prod/db\n", line: 3, msg: "tag !vault is not allowed"},
		{name: "binary tag", in: "kind: !!binary aGVsbG8=\n", line: 1, msg: "tag !!binary is not allowed"},
		{name: "set tag", in: "kind: x\nspec: !!set {a, b}\n", line: 2, msg: "tag !!set"},
		{name: "empty value", in: "kind:\nspec: {name: a}\n", line: 1, msg: "value is empty"},
		{name: "null value", in: "kind: x\nspec:\n  name: ~\n", line: 3, msg: "value is empty"},
		{name: "explicit null tag", in: "kind: x\nspec:\n  name: !!null x\n", line: 3, msg: "value is empty"},
		{name: "null in flow mapping", in: "kind: x\nspec: {name: null}\n", line: 2, msg: "value is empty"},
		{name: "empty sequence item", in: "kind: x\nspec:\n  tags:\n    - a\n    -\n", line: 5, msg: "value is empty"},
		{name: "wrong type scalar for int", in: "kind: x\nspec:\n  processes:\n    - name: a\n      port: eighty\n", line: 5, msg: "cannot unmarshal !!str `eighty` into int"},
		{name: "wrong type sequence for string", in: "kind: x\nspec:\n  name: [a, b]\n", line: 3, msg: "cannot unmarshal !!seq into string"},
		{name: "wrong type mapping for sequence", in: "kind: x\nspec:\n  tags: {a: b}\n", line: 3, msg: "cannot unmarshal !!map into []string"},
		{name: "wrong type scalar for struct", in: "kind: x\nspec: prod\n", line: 2, msg: "cannot unmarshal !!str `prod`"},
		{name: "oversized", in: "kind: " + strings.Repeat("x", 100) + "\n", maxBytes: 64, line: 0, msg: "over the limit of 64 bytes"},
		{name: "empty", in: "", line: 0, msg: "document is empty"},
		{name: "whitespace only", in: " \n\t\n", line: 0, msg: "document is empty"},
		{name: "comments only", in: "# nothing here\n# at all\n", line: 0, msg: "document is empty"},
		{name: "explicit empty document", in: "---\n", line: 2, msg: "top level must be a mapping"},
		{name: "top level sequence", in: "- kind\n- spec\n", line: 1, msg: "top level must be a mapping"},
		{name: "top level scalar", in: "\n\njust a string\n", line: 3, msg: "top level must be a mapping"},
		{name: "top level null", in: "~\n", line: 1, msg: "top level must be a mapping"},
		{name: "syntax error", in: "kind: x\nspec:\n  name: [a\n", line: 3, msg: "did not find expected ',' or ']'", syntax: true},
		{name: "missing colon", in: "kind: x\nspec:\n  name a\n  tags: []\n", line: 4, msg: "mapping values are not allowed"},
		{name: "tab indentation", in: "kind: x\nspec:\n\tname: a\n", line: 3, msg: "cannot start any token"},
		{name: "too many keys in one mapping", in: manyKeys(strictyaml.MaxMappingKeys + 1), line: 4, msg: "over the limit of 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out testDoc
			start := time.Now()
			doc, err := strictyaml.Decode("f.yaml", []byte(tt.in), tt.maxBytes, &out)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Decode took %s", took)
			}
			if err == nil {
				t.Fatalf("Decode succeeded (%+v), want an error", out)
			}
			if doc != nil {
				t.Errorf("Decode returned a document with an error")
			}
			var se *strictyaml.Error
			if !errors.As(err, &se) {
				t.Fatalf("error is %T (%v), want *strictyaml.Error", err, err)
			}
			if len(se.Problems) == 0 {
				t.Fatalf("*strictyaml.Error without problems")
			}
			p := se.Problems[0]
			if p.File != "f.yaml" {
				t.Errorf("File = %q, want f.yaml", p.File)
			}
			wantLine := tt.line
			if tt.syntax {
				wantLine--
			}
			if p.Line != wantLine {
				t.Errorf("Line = %d, want %d (%v)", p.Line, wantLine, err)
			}
			prefix := "f.yaml: "
			if wantLine > 0 {
				prefix = fmt.Sprintf("f.yaml:%d: ", wantLine)
			}
			if s := p.String(); !strings.HasPrefix(s, prefix) {
				t.Errorf("String() = %q, want prefix %q", s, prefix)
			}
			if !strings.Contains(p.Msg, tt.msg) {
				t.Errorf("Msg = %q, want it to contain %q", p.Msg, tt.msg)
			}
			if strings.HasPrefix(p.Msg, "yaml: ") || strings.HasPrefix(p.Msg, "line ") {
				t.Errorf("Msg = %q still carries yaml.v3's prefix", p.Msg)
			}
		})
	}
}

func TestDecodeReportsEveryTypeError(t *testing.T) {
	in := "kind: x\nspec:\n  name: [a]\n  processes:\n    - name: a\n      port: x\n    - name: b\n      port: y\n"
	var out testDoc
	_, err := strictyaml.Decode("f.yaml", []byte(in), 0, &out)
	var se *strictyaml.Error
	if !errors.As(err, &se) {
		t.Fatalf("error is %T (%v), want *strictyaml.Error", err, err)
	}
	var lines []int
	for _, p := range se.Problems {
		lines = append(lines, p.Line)
	}
	if fmt.Sprint(lines) != "[3 6 8]" {
		t.Errorf("problem lines = %v, want [3 6 8]\n%v", lines, err)
	}
	if got := strings.Count(err.Error(), "\n"); got != 2 {
		t.Errorf("Error() has %d newlines, want one line per problem:\n%s", got, err)
	}
}

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want testDoc
	}{
		{
			name: "block style",
			in:   "# leading comment\nkind: x\nspec:\n  name: api\n  processes:\n    - name: a\n      port: 80\n",
			want: testDoc{Kind: "x", Spec: testSpec{Name: "api", Processes: []testProc{{Name: "a", Port: 80}}}},
		},
		{
			name: "flow style",
			in:   "{kind: x, spec: {name: api, tags: [a, b]}}",
			want: testDoc{Kind: "x", Spec: testSpec{Name: "api", Tags: []string{"a", "b"}}},
		},
		{
			name: "document markers",
			in:   "---\nkind: x\nspec: {name: a}\n...\n",
			want: testDoc{Kind: "x", Spec: testSpec{Name: "a"}},
		},
		{
			name: "core tags",
			in:   "kind: !!str 3\nspec:\n  name: \"<<\"\n",
			want: testDoc{Kind: "3", Spec: testSpec{Name: "<<"}},
		},
		{
			name: "exactly the key limit",
			in:   manyKeys(strictyaml.MaxMappingKeys),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out testDoc
			doc, err := strictyaml.Decode("f.yaml", []byte(tt.in), len(tt.in), &out)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if doc == nil || doc.Root == nil || doc.Root.Kind != yaml.MappingNode {
				t.Fatalf("Decode returned document %+v, want one with a mapping root", doc)
			}
			if doc.File != "f.yaml" {
				t.Errorf("doc.File = %q", doc.File)
			}
			if tt.want.Kind == "" {
				return
			}
			if fmt.Sprintf("%+v", out) != fmt.Sprintf("%+v", tt.want) {
				t.Errorf("decoded %+v, want %+v", out, tt.want)
			}
		})
	}
}

const lineDoc = `kind: Test
spec:
  name: demo
  processes:
    - name: api
      port: 4000
    - name: web
      port: 5173
  labels: {team: core}
  tags:
    - a

    - b
`

func TestDocumentLine(t *testing.T) {
	var out testDoc
	doc, err := strictyaml.Decode("f.yaml", []byte(lineDoc), 0, &out)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		line int
	}{
		{"", 1},
		{"kind", 1},
		{"spec", 2}, // the key, not the first line of its mapping
		{"spec.name", 3},
		{"spec.processes", 4},
		{"spec.processes[0]", 5},
		{"spec.processes[0].name", 5},
		{"spec.processes[0].port", 6},
		{"spec.processes[1]", 7},
		{"spec.processes[1].name", 7},
		{"spec.processes[1].port", 8},
		{"spec.labels", 9},
		{"spec.labels.team", 9},
		{"spec.tags", 10},
		{"spec.tags[1]", 13},
		// Missing fields point at the deepest ancestor that exists.
		{"spec.user", 2},
		{"spec.processes[1].health", 7},
		{"spec.processes[1].health[0].http.url", 7},
		{"spec.processes[9].port", 4},
		{"spec.labels.owner", 9},
		{"metadata.name", 1},
		// Paths of the wrong shape stop where the shape stops matching.
		{"spec.processes.name", 4},
		{"spec.name[0]", 3},
		{"spec[0]", 2},
		{"spec..name", 3},
	}
	for _, tt := range tests {
		if got := doc.Line(tt.path); got != tt.line {
			t.Errorf("Line(%q) = %d, want %d", tt.path, got, tt.line)
		}
	}
	var nilDoc *strictyaml.Document
	if got := nilDoc.Line("spec"); got != 0 {
		t.Errorf("nil Document Line = %d, want 0", got)
	}
	if got := (&strictyaml.Document{}).Line("spec"); got != 0 {
		t.Errorf("empty Document Line = %d, want 0", got)
	}
}

func TestDocumentProblems(t *testing.T) {
	var out testDoc
	doc, err := strictyaml.Decode("f.yaml", []byte(lineDoc), 0, &out)
	if err != nil {
		t.Fatal(err)
	}
	if got := doc.Problems("f.yaml", nil); got != nil {
		t.Errorf("Problems(nil) = %v, want nil", got)
	}
	perr := doc.Problems("other.yaml", []strictyaml.Problem{
		{Path: "spec.processes[1].port", Msg: "port taken"},
		{Path: "kind", Msg: "bad kind"},
		{Path: "spec.processes[0].health", Msg: "no health check"},
		{Path: "spec.processes[1].name", Msg: "bad name"},
	})
	if perr == nil {
		t.Fatal("Problems returned nil for problems")
	}
	want := strings.Join([]string{
		"other.yaml:1: kind: bad kind",
		"other.yaml:5: spec.processes[0].health: no health check",
		"other.yaml:7: spec.processes[1].name: bad name",
		"other.yaml:8: spec.processes[1].port: port taken",
	}, "\n")
	if got := perr.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    strictyaml.Problem
		want string
	}{
		{strictyaml.Problem{File: "a.yaml", Line: 3, Path: "spec.x", Msg: "bad"}, "a.yaml:3: spec.x: bad"},
		{strictyaml.Problem{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{strictyaml.Problem{File: "a.yaml", Path: "spec.x", Msg: "bad"}, "a.yaml: spec.x: bad"},
		{strictyaml.Problem{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
