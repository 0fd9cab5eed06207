package manifest_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/manifest/manifesttest"
	"github.com/cohuron/deploy/pkg/strictyaml"
)

// checkParseError: a refusal is a *strictyaml.Error whose problems name
// the file and a line inside the document (or none).
func checkParseError(t *testing.T, data []byte, err error) {
	t.Helper()
	var se *strictyaml.Error
	if !errors.As(err, &se) {
		t.Fatalf("error is %T (%v), want *strictyaml.Error", err, err)
	}
	if len(se.Problems) == 0 {
		t.Fatalf("*strictyaml.Error without problems")
	}
	// yaml.v3 places a value missing at the end of the input (`?`) at the
	// end of the stream, the line after the last when there is no final
	// newline.
	lines := yamlLineBreaks(data) + 2
	for _, p := range se.Problems {
		if p.File != "fuzz.yaml" || p.Line < 0 || p.Line > lines {
			t.Fatalf("problem %q: file %q, line %d of %d", p, p.File, p.Line, lines-1)
		}
	}
}

// yamlLineBreaks counts line breaks as yaml.v3 (libyaml) does: LF, CR,
// CR LF, NEL, LS and PS.
func yamlLineBreaks(data []byte) int {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	return strings.Count(s, "\n") + strings.Count(s, "\r") + strings.Count(s, "\u0085") +
		strings.Count(s, "\u2028") + strings.Count(s, "\u2029")
}

// remarshal checks a parsed manifest survives marshal and parse unchanged.
func remarshal[T any](t *testing.T, v *T, parse func([]byte) (*T, error)) {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatalf("marshaling a parsed manifest: %v", err)
	}
	back, err := parse(out)
	if err != nil {
		t.Fatalf("parsing a marshaled manifest: %v\n%s", err, out)
	}
	again, err := yaml.Marshal(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, again) {
		t.Fatalf("marshal, parse, marshal changed the manifest:\n%s\n---\n%s", out, again)
	}
}

func FuzzParseEnvironment(f *testing.F) {
	for _, name := range []string{prodFile, demoFile} {
		f.Add(readFile(f, name))
	}
	f.Add([]byte(manifesttest.MinimalEnvironment))
	for _, b := range badEnvironments {
		f.Add(manifesttest.Mutate(f, b.old, b.new))
	}
	f.Add([]byte("apiVersion: deploy.cohuron.dev/v1\nkind: Environment\nmetadata: {name: x}\nspec: {paths: {root: /a, backups: /b}, processes: [{name: p, command: [x], health: [{exec: {command: [true]}}]}]}\n"))

	parse := func(data []byte) (*manifest.Environment, error) { return manifest.ParseEnvironment("fuzz.yaml", data) }
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := parse(data)
		if err != nil {
			checkParseError(t, data, err)
			return
		}
		if ps := env.Validate(); len(ps) > 0 {
			t.Fatalf("parsed manifest does not validate: %v", ps)
		}
		remarshal(t, env, parse)
	})
}

func FuzzParseRelease(f *testing.F) {
	good, err := yaml.Marshal(manifesttest.Release())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("seq: 7"), []byte("seq: 0"), 1))
	f.Add(bytes.Replace(good, []byte("seq: 7"), []byte("seq: -7"), 1))
	f.Add(bytes.Replace(good, []byte("env: prod"), []byte("env: PROD"), 1))
	f.Add(bytes.Replace(good, []byte("issuedAt: 2025-06-01T11:00:00Z"), []byte("issuedAt: 2025-06-01T11:00:00+02:00"), 1))
	f.Add(bytes.Replace(good, []byte("issuedAt: 2025-06-01T11:00:00Z"), []byte("issuedAt: yesterday"), 1))
	f.Add(bytes.Replace(good, []byte("kind: Release"), []byte("kind: Environment"), 1))
	f.Add(append(bytes.Clone(good), "---\nenv: prod\n"...))
	f.Add(append(bytes.Clone(good), "extra: 1\n"...))

	parse := func(data []byte) (*manifest.Release, error) { return manifest.ParseRelease("fuzz.yaml", data, 0) }
	f.Fuzz(func(t *testing.T, data []byte) {
		rel, err := parse(data)
		if err != nil {
			checkParseError(t, data, err)
			return
		}
		if ps := rel.Validate(); len(ps) > 0 {
			t.Fatalf("parsed release does not validate: %v", ps)
		}
		remarshal(t, rel, parse)
	})
}
