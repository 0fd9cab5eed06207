package manifest_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/manifest/manifesttest"
	"github.com/cohuron/deploy/pkg/strictyaml"
)

const (
	prodFile = "../../manifests/prod.yaml"
	demoFile = "../../testdata/demo/demo.yaml"
	// A copy of the real app's import order, kept in the repo; when the
	// team's shared/ briefing sits beside the checkout the copy must match it.
	schemaOrderTxt       = "../../testdata/cohuron-schema-order.txt"
	sharedSchemaOrderTxt = "../../../shared/cohuron-schema-order.txt"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// asStrictError fails the test unless err is a *strictyaml.Error.
func asStrictError(t testing.TB, err error) *strictyaml.Error {
	t.Helper()
	var se *strictyaml.Error
	if !errors.As(err, &se) {
		t.Fatalf("error is %T (%v), want *strictyaml.Error", err, err)
	}
	if len(se.Problems) == 0 {
		t.Fatalf("*strictyaml.Error without problems")
	}
	return se
}

func TestMinimalEnvironmentLines(t *testing.T) {
	lines := strings.Split(manifesttest.MinimalEnvironment, "\n")
	for _, tt := range []struct {
		line int
		text string
	}{
		{manifesttest.LineAPIVersion, "apiVersion:"},
		{manifesttest.LineKind, "kind:"},
		{manifesttest.LineMetadata, "metadata:"},
		{manifesttest.LineName, "name: staging"},
		{manifesttest.LineSpec, "spec:"},
		{manifesttest.LineRoot, "root:"},
		{manifesttest.LineEnvPath, "- path: apps/api/.env"},
		{manifesttest.LinePort, "PORT:"},
		{manifesttest.LineJWTSecret, "JWT_SECRET:"},
		{manifesttest.LineRedisURL, "REDIS_URL:"},
		{manifesttest.LineSchemaURL, "databaseURL:"},
		{manifesttest.LineSchemaFile2, "- db/02_task.ddl"},
		{manifesttest.LineProcesses, "processes:"},
		{manifesttest.LineAPI, "- name: api"},
		{manifesttest.LineAPICwd, "cwd: apps/api"},
		{manifesttest.LineAPIEnvFile, "envFile: apps/api/.env"},
		{manifesttest.LineAPIPort, "port: 4000"},
		{manifesttest.LineAPIHTTP, "- http:"},
		{manifesttest.LineAPITimeout, "timeout: 5s"},
		{manifesttest.LineAPIWithin, "within: 60s"},
		{manifesttest.LineWeb, "- name: web"},
		{manifesttest.LineWebPort, "port: 5173"},
		{manifesttest.LineWebHealth, "health:"},
		{manifesttest.LineWebTCP, "- tcp:"},
	} {
		if got := lines[tt.line-1]; !strings.Contains(got, tt.text) {
			t.Errorf("line %d of MinimalEnvironment is %q, want it to contain %q", tt.line, got, tt.text)
		}
	}
}

func TestParseMinimalEnvironment(t *testing.T) {
	env, err := manifest.ParseEnvironment("min.yaml", []byte(manifesttest.MinimalEnvironment))
	if err != nil {
		t.Fatal(err)
	}
	if env.Metadata.Name != "staging" || len(env.Spec.Processes) != 2 {
		t.Errorf("parsed %+v", env)
	}
	want := manifest.Value{RefKind: manifest.RefSSM, Ref: "/cohuron/staging/jwt"}
	if got := env.Spec.EnvFiles[0].Vars["JWT_SECRET"]; got != want {
		t.Errorf("JWT_SECRET = %+v, want %+v", got, want)
	}
	if got := env.Spec.Processes[0].Health[0].Timeout.Duration; got != 5*time.Second {
		t.Errorf("timeout = %s, want 5s", got)
	}
}

func TestParseProd(t *testing.T) {
	env, err := manifest.ParseEnvironment(prodFile, readFile(t, prodFile))
	if err != nil {
		t.Fatal(err)
	}
	if env.Metadata.Name != "prod" {
		t.Errorf("metadata.name = %q, want prod", env.Metadata.Name)
	}

	procs := map[string]manifest.Process{}
	for _, p := range env.Spec.Processes {
		procs[p.Name] = p
	}
	for name, port := range map[string]int{"cohuron-api": 4000, "cohuron-web": 5173} {
		p, ok := procs[name]
		if !ok {
			t.Errorf("process %s missing", name)
			continue
		}
		if p.Port != port {
			t.Errorf("process %s port = %d, want %d", name, p.Port, port)
		}
	}
	var urls []string
	for _, h := range procs["cohuron-api"].Health {
		if h.HTTP != nil {
			urls = append(urls, h.HTTP.URL)
		}
	}
	if !reflect.DeepEqual(urls, []string{"http://127.0.0.1:4000/api/health"}) {
		t.Errorf("cohuron-api health URLs = %v, want [http://127.0.0.1:4000/api/health]", urls)
	}

	// The file-history schema import refuses the real app's DDL (applied
	// strictly, 23 of its files fail) and the old deployer's re-import
	// wiped data: prod's schema is declarative, never strict, its first
	// file the one that creates schema app (cmd/publisher's
	// TestProdSchemaFilesAreTheAppsOrder compares the list with the app's
	// tools/db-import.sh).
	if sc := env.Spec.Schema; !sc.Declarative() || sc.Strict || !reflect.DeepEqual(sc.Schemas, []string{"app"}) ||
		len(sc.Files) < 50 || sc.Files[0] != "db/01_schema_create.ddl" || sc.AllowDestructive {
		t.Errorf("prod schema = %+v, want declarative over schema app, not strict, starting with db/01_schema_create.ddl", sc)
	}
	// The compose services are the app's own, under their real names.
	if c := env.Spec.Compose; c == nil || !reflect.DeepEqual(c.Services, []string{"db", "redis", "minio", "mailhog", "rabbitmq"}) || c.Project != "cohuron" {
		t.Errorf("prod compose = %+v, want project cohuron with the app's services db, redis, minio, mailhog, rabbitmq", c)
	}

	// No variable whose name says it holds a secret is a literal, and the
	// ones we know hold secrets are references.
	secretName := regexp.MustCompile(`(?i)SECRET|PASSWORD|TOKEN|PRIVATE|CREDENTIAL|_KEY$|DATABASE_URL`)
	known := map[string]bool{"JWT_SECRET": false, "S3_SECRET_KEY": false, "S3_ACCESS_KEY": false, "DATABASE_URL": false, "RABBITMQ_URL": false}
	for _, f := range env.Spec.EnvFiles {
		for name, v := range f.Vars {
			if _, ok := known[name]; ok {
				known[name] = true
			}
			if secretName.MatchString(name) && !v.IsRef() {
				t.Errorf("%s: %s is a literal %q; secrets must be references", f.Path, name, v.Literal)
			}
		}
	}
	for name, seen := range known {
		if !seen {
			t.Errorf("prod declares no %s", name)
		}
	}
}

func TestSchemaOrderCopyMatchesShared(t *testing.T) {
	shared, err := os.ReadFile(sharedSchemaOrderTxt)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s not beside this checkout; the repo copy is checked by TestProdSchemaOrder", sharedSchemaOrderTxt)
	}
	if err != nil {
		t.Fatal(err)
	}
	if copyData := readFile(t, schemaOrderTxt); !bytes.Equal(copyData, shared) {
		t.Fatalf("%s differs from %s: update the copy", schemaOrderTxt, sharedSchemaOrderTxt)
	}
}

func TestSchemaOrderCopy(t *testing.T) {
	// The real app's import order (from tools/db-import.sh), kept for the
	// declarative schema step: every line a .ddl or .sql file under db/.
	f, err := os.Open(schemaOrderTxt)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasPrefix(line, "db/") || (!strings.HasSuffix(line, ".ddl") && !strings.HasSuffix(line, ".sql")) {
			t.Errorf("%s: %q is not a schema file under db/", schemaOrderTxt, line)
		}
		n++
	}
	if err := sc.Err(); err != nil || n < 50 {
		t.Fatalf("%s: %d files (%v), want the app's 53 or more", schemaOrderTxt, n, err)
	}
}

func TestParseDemo(t *testing.T) {
	env, err := manifest.ParseEnvironment(demoFile, readFile(t, demoFile))
	if err != nil {
		t.Fatal(err)
	}
	if env.Metadata.Name != "demo" || len(env.Spec.Processes) == 0 || env.Spec.Processes[0].Name != "cohuron-api" {
		t.Errorf("parsed %+v", env)
	}
}

// badEnvironment is a mutation of manifesttest.MinimalEnvironment that
// ParseEnvironment must reject with a problem at line containing msg.
type badEnvironment struct {
	name     string
	old, new string
	line     int
	msg      string
	// schema marks the cases the JSON Schema must reject as well.
	schema bool
}

var badEnvironments = []badEnvironment{
	{name: "publish-time hook without inputs", old: "  processes:\n",
		new:  "  user: app\n  build:\n    - name: web\n      command: [vite, build]\n      at: publish\n      outputs: [dist]\n  processes:\n",
		line: 23, msg: "a hook that runs at publish time is rebuilt only when its inputs change: declare them"},
	{name: "literal secret", old: "JWT_SECRET: {ssm: /cohuron/staging/jwt}", new: "JWT_SECRET: abc",
		line: manifesttest.LineJWTSecret, msg: "literal secret (variable name JWT_SECRET holds a secret)"},
	{name: "literal secret of another type", old: "JWT_SECRET: {ssm: /cohuron/staging/jwt}", new: "JWT_SECRET: 12345",
		line: manifesttest.LineJWTSecret, msg: "literal secret"},
	{name: "password variable", old: `PORT: "4000"`, new: "POSTGRES_PASSWORD: hunter2",
		line: manifesttest.LinePort, msg: "literal secret"},
	{name: "URL with password", old: "REDIS_URL: redis://127.0.0.1:6379", new: "REDIS_URL: redis://app:hunter2@127.0.0.1:6379",
		line: manifesttest.LineRedisURL, msg: "URL contains a password"},
	{name: "database URL with password", old: "databaseURL: {ssm: /cohuron/staging/database-url}", new: "databaseURL: postgres://app:hunter2@127.0.0.1/app",
		line: manifesttest.LineSchemaURL, msg: "URL contains a password"},
	{name: "AWS key in any variable", old: `PORT: "4000"`, new: "SOMETHING: AKIAIOSFODNN7EXAMPLE",
		line: manifesttest.LinePort, msg: "value looks like a credential"},
	{name: "reference with spaces", old: "JWT_SECRET: {ssm: /cohuron/staging/jwt}", new: `JWT_SECRET: {ssm: "a b"}`,
		line: manifesttest.LineJWTSecret, msg: "non-empty name without spaces"},
	{name: "null variable", old: `PORT: "4000"`, new: "PORT:",
		line: manifesttest.LinePort, msg: "value is empty"},
	{name: "invalid variable name", old: `PORT: "4000"`, new: `1PORT: "4000"`,
		line: manifesttest.LinePort, msg: "invalid variable name"},
	{name: "process without health", old: "      health:\n        - tcp: {address: \"127.0.0.1:5173\"}\n", new: "",
		line: manifesttest.LineWeb, msg: "process web has no health check"},
	{name: "process with empty health", old: "      health:\n        - tcp: {address: \"127.0.0.1:5173\"}\n", new: "      health: []\n",
		line: manifesttest.LineWebHealth, msg: "no health check"},
	{name: "duplicate process names", old: "- name: web", new: "- name: api",
		line: manifesttest.LineWeb, msg: `expected a unique lowercase name, found "api"`},
	{name: "bad process name", old: "- name: web", new: "- name: Web Server",
		line: manifesttest.LineWeb, msg: "unique lowercase name"},
	{name: "duplicate ports", old: "port: 5173", new: "port: 4000",
		line: manifesttest.LineWebPort, msg: "port 4000 is also used by api"},
	{name: "port out of range", old: "port: 4000", new: "port: 70000",
		line: manifesttest.LineAPIPort, msg: "expected 1-65535, found 70000"},
	{name: "negative port", old: "port: 4000", new: "port: -1",
		line: manifesttest.LineAPIPort, msg: "expected 1-65535"},
	{name: "bad duration", old: "timeout: 5s", new: "timeout: 5 minutes",
		line: manifesttest.LineAPITimeout, msg: `invalid duration "5 minutes"`, schema: true},
	{name: "bare number duration", old: "within: 60s", new: "within: 60",
		line: manifesttest.LineAPIWithin, msg: "duration must be a string", schema: true},
	{name: "timeout over an hour", old: "timeout: 5s", new: "timeout: 2h",
		line: manifesttest.LineAPITimeout, msg: "between 0 and 1h0m0s"},
	{name: "negative timeout", old: "timeout: 5s", new: "timeout: -5s",
		line: manifesttest.LineAPITimeout, msg: "between 0 and"},
	{name: "relative paths.root", old: "root: /opt/cohuron", new: "root: opt/cohuron",
		line: manifesttest.LineRoot, msg: "clean absolute directory"},
	{name: "unclean paths.root", old: "root: /opt/cohuron", new: "root: /opt/../cohuron",
		line: manifesttest.LineRoot, msg: "clean absolute directory"},
	{name: "root is /", old: "root: /opt/cohuron", new: "root: /",
		line: manifesttest.LineRoot, msg: "other than /"},
	{name: "backups inside root", old: "backups: /opt/cohuron-backups", new: "backups: /opt/cohuron/backups",
		line: manifesttest.LineRoot + 1, msg: "nested with paths.root"},
	{name: "env file path with ..", old: "- path: apps/api/.env", new: "- path: ../etc/cohuron.env",
		line: manifesttest.LineEnvPath, msg: "no . or .. parts"},
	{name: "env file path with inner ..", old: "- path: apps/api/.env", new: "- path: apps/../../x.env",
		line: manifesttest.LineEnvPath, msg: "no . or .. parts"},
	{name: "absolute env file path", old: "- path: apps/api/.env", new: "- path: /etc/passwd",
		line: manifesttest.LineEnvPath, msg: "relative to the release root"},
	{name: "env file path with backslash", old: "- path: apps/api/.env", new: `- path: 'apps\api\.env'`,
		line: manifesttest.LineEnvPath, msg: "backslash"},
	{name: "schema file outside schema.dir", old: "- db/02_task.ddl", new: "- sql/02_task.ddl",
		line: manifesttest.LineSchemaFile2, msg: `"sql/02_task.ddl" is outside schema.dir "db"`},
	{name: "schema file escaping", old: "- db/02_task.ddl", new: "- db/../../etc/x.sql",
		line: manifesttest.LineSchemaFile2, msg: "no . or .. parts"},
	{name: "schema file twice", old: "- db/02_task.ddl", new: "- db/01_schema.ddl",
		line: manifesttest.LineSchemaFile2, msg: "listed twice"},
	{name: "schema file not SQL", old: "- db/02_task.ddl", new: "- db/02_task.sh",
		line: manifesttest.LineSchemaFile2, msg: "expected a .sql or .ddl file"},
	{name: "schema glob invalid", old: "- db/02_task.ddl", new: "- db/[*.ddl",
		line: manifesttest.LineSchemaFile2, msg: `invalid glob "db/[*.ddl"`},
	{name: "schema glob outside schema.dir", old: "- db/02_task.ddl", new: "- sql/**/*.ddl",
		line: manifesttest.LineSchemaFile2, msg: `"sql/**/*.ddl" is outside schema.dir "db"`},
	{name: "process envFile not declared", old: "envFile: apps/api/.env", new: "envFile: apps/api/.env.prod",
		line: manifesttest.LineAPIEnvFile, msg: `"apps/api/.env.prod" is not declared in envFiles`},
	{name: "process cwd escaping", old: "cwd: apps/api", new: "cwd: ../api",
		line: manifesttest.LineAPICwd, msg: "no . or .. parts"},
	{name: "health check with http and tcp", old: "- tcp: {address: \"127.0.0.1:5173\"}", new: "- tcp: {address: \"127.0.0.1:5173\"}\n          http: {url: \"http://127.0.0.1:5173/\"}",
		line: manifesttest.LineWebTCP, msg: "set exactly one of http, tcp and exec, found 2", schema: true},
	{name: "health URL with credentials", old: `"http://127.0.0.1:4000/api/health"`, new: `"http://admin:hunter2@127.0.0.1:4000/api/health"`,
		line: manifesttest.LineAPIHTTP, msg: "health check URLs must not carry credentials"},
	{name: "health check without a probe", old: "- tcp: {address: \"127.0.0.1:5173\"}", new: "- timeout: 5s",
		line: manifesttest.LineWebTCP, msg: "found 0"},
	{name: "tcp address without port", old: `{address: "127.0.0.1:5173"}`, new: `{address: "127.0.0.1"}`,
		line: manifesttest.LineWebTCP, msg: "expected host:port"},
	{name: "health URL not http", old: `"http://127.0.0.1:4000/api/health"`, new: `"ftp://127.0.0.1/health"`,
		line: manifesttest.LineAPIHTTP, msg: "http:// or https:// URL"},
	{name: "unknown reference kind", old: "JWT_SECRET: {ssm: /cohuron/staging/jwt}", new: "JWT_SECRET: {vault: x}",
		line: manifesttest.LineJWTSecret, msg: `unknown reference kind "vault"`, schema: true},
	{name: "reference with two keys", old: "JWT_SECRET: {ssm: /cohuron/staging/jwt}", new: "JWT_SECRET: {ssm: a, file: b}",
		line: manifesttest.LineJWTSecret, msg: "exactly one key", schema: true},
	{name: "reference to a mapping", old: "JWT_SECRET: {ssm: /cohuron/staging/jwt}", new: "JWT_SECRET: {ssm: {name: a}}",
		line: manifesttest.LineJWTSecret, msg: "must be a string", schema: true},
	{name: "wrong apiVersion", old: "apiVersion: deploy.cohuron.dev/v1", new: "apiVersion: deploy.cohuron.dev/v2",
		line: manifesttest.LineAPIVersion, msg: `expected "deploy.cohuron.dev/v1", found "deploy.cohuron.dev/v2"`, schema: true},
	{name: "wrong kind", old: "kind: Environment", new: "kind: Release",
		line: manifesttest.LineKind, msg: `expected "Environment", found "Release"`, schema: true},
	{name: "bad metadata.name", old: "name: staging", new: "name: Staging_1",
		line: manifesttest.LineName, msg: "lowercase DNS label"},
	{name: "missing metadata.name", old: "  name: staging\n", new: "  labels: {team: core}\n",
		line: manifesttest.LineMetadata, msg: "lowercase DNS label", schema: true},
	{name: "unknown field", old: "cwd: apps/api", new: "workdir: apps/api",
		line: manifesttest.LineAPICwd, msg: "field workdir not found", schema: true},
	{name: "unknown top-level field", old: "kind: Environment", new: "kind: Environment\nstatus: {}",
		line: manifesttest.LineKind + 1, msg: "field status not found", schema: true},
	{name: "wrong type", old: "port: 4000", new: "port: four",
		line: manifesttest.LineAPIPort, msg: "cannot unmarshal !!str `four` into int", schema: true},
	{name: "wrong type command", old: "command: [node, server.js]", new: "command: node server.js",
		line: manifesttest.LineAPICwd + 1, msg: "cannot unmarshal !!str", schema: true},
	{name: "duplicate key", old: "port: 4000", new: "port: 4000\n      port: 4001",
		line: manifesttest.LineAPIPort + 1, msg: "already defined"},
	{name: "instances without cluster mode", old: "port: 4000", new: "port: 4000\n      instances: 2",
		line: manifesttest.LineAPIPort + 1, msg: "more than 1 only in cluster mode"},
	{name: "bad mode", old: "port: 4000", new: "port: 4000\n      mode: swarm",
		line: manifesttest.LineAPIPort + 1, msg: "expected fork or cluster", schema: true},
	{name: "root user", old: "spec:\n", new: "spec:\n  user: root\n",
		line: manifesttest.LineSpec + 1, msg: "unprivileged user"},
	{name: "no processes", old: "  processes:\n", new: "  nothing:\n",
		line: manifesttest.LineProcesses, msg: "field nothing not found", schema: true},
	{name: "install without user", old: "  schema:\n", new: "  install:\n    command: [pnpm, install]\n  schema:\n",
		line: manifesttest.LineSpec, msg: "required with install or build: install scripts and build hooks never run as root"},
	{name: "build output escaping", old: "  schema:\n", new: "  user: app\n  build:\n    - name: api\n      command: [pnpm, build]\n      outputs: [../dist]\n  schema:\n",
		line: 19, msg: "no . or .. parts"}, // the outputs line of the inserted hook
	{name: "bad schema name", old: "      - db/02_task.ddl\n", new: "      - db/02_task.ddl\n    schemas: [App]\n",
		line: manifesttest.LineSchemaFile2 + 1, msg: "expected a schema name"},
	{name: "reversible without schemas", old: "      - db/02_task.ddl\n", new: "      - db/02_task.ddl\n    reversible: true\n",
		line: manifesttest.LineSchemaFile2 + 1, msg: "a reversible import needs schema.schemas"},
	{name: "alias", old: "name: staging", new: "name: &n staging",
		line: manifesttest.LineName, msg: "anchors and aliases"},
}

func TestParseEnvironmentRejects(t *testing.T) {
	for _, tt := range badEnvironments {
		t.Run(tt.name, func(t *testing.T) {
			data := manifesttest.Mutate(t, tt.old, tt.new)
			env, err := manifest.ParseEnvironment("env.yaml", data)
			if err == nil {
				t.Fatalf("ParseEnvironment accepted it: %+v", env)
			}
			se := asStrictError(t, err)
			for _, p := range se.Problems {
				if p.File != "env.yaml" {
					t.Errorf("problem %q has File %q", p, p.File)
				}
				if p.Line == tt.line && strings.Contains(p.Msg, tt.msg) {
					if !strings.HasPrefix(p.String(), "env.yaml:"+strconv.Itoa(tt.line)+": ") {
						t.Errorf("String() = %q, want it to start with env.yaml:%d: ", p, tt.line)
					}
					return
				}
			}
			t.Errorf("no problem at line %d containing %q; got:\n%v", tt.line, tt.msg, err)
		})
	}
}

// TestSecretsNotEchoed makes sure a rejected literal secret does not end up
// in the error, which CI prints in the clear.
func TestSecretsNotEchoed(t *testing.T) {
	for _, in := range []struct{ old, new string }{
		{"JWT_SECRET: {ssm: /cohuron/staging/jwt}", "JWT_SECRET: hunter2-very-secret"},
		{"REDIS_URL: redis://127.0.0.1:6379", "REDIS_URL: redis://app:hunter2-very-secret@127.0.0.1:6379"},
		{"databaseURL: {ssm: /cohuron/staging/database-url}", "databaseURL: postgres://app:hunter2-very-secret@db/app"},
	} {
		_, err := manifest.ParseEnvironment("env.yaml", manifesttest.Mutate(t, in.old, in.new))
		if err == nil {
			t.Fatalf("%s accepted", in.new)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error echoes the secret: %v", err)
		}
	}
}

func TestParseEnvironmentLimits(t *testing.T) {
	big := manifesttest.MinimalEnvironment + "# " + strings.Repeat("x", manifest.MaxManifestBytes) + "\n"
	_, err := manifest.ParseEnvironment("env.yaml", []byte(big))
	se := asStrictError(t, err)
	if !strings.Contains(se.Problems[0].Msg, "over the limit") {
		t.Errorf("error = %v, want a size problem", err)
	}
	_, err = manifest.ParseEnvironment("env.yaml", nil)
	if se := asStrictError(t, err); !strings.Contains(se.Problems[0].Msg, "empty") {
		t.Errorf("error = %v, want empty", err)
	}
}

func TestReleaseRoundTrip(t *testing.T) {
	rel := manifesttest.Release()
	if ps := rel.Validate(); len(ps) > 0 {
		t.Fatalf("manifesttest.Release is invalid: %v", ps)
	}
	data, err := yaml.Marshal(rel)
	if err != nil {
		t.Fatal(err)
	}
	got, err := manifest.ParseRelease("rel.yaml", data, 0)
	if err != nil {
		t.Fatalf("ParseRelease of a marshaled release: %v\n%s", err, data)
	}
	if !reflect.DeepEqual(got, rel) {
		t.Errorf("round trip differs:\ngot  %+v\nwant %+v\n%s", got, rel, data)
	}
	if manifest.Digest(got) != manifest.Digest(rel) {
		t.Errorf("digest changed over a round trip")
	}
	again, err := yaml.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Errorf("marshal is not stable:\n%s\n---\n%s", data, again)
	}
}

func TestParseReleaseRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*manifest.Release)
		path   string
		msg    string
	}{
		{"wrong kind", func(r *manifest.Release) { r.Kind = manifest.KindEnvironment }, "kind", `expected "Release"`},
		{"wrong apiVersion", func(r *manifest.Release) { r.APIVersion = "v0" }, "apiVersion", "expected"},
		{"bad env", func(r *manifest.Release) { r.Env = "Prod!" }, "env", "lowercase DNS label"},
		{"seq zero", func(r *manifest.Release) { r.Seq = 0 }, "seq", "1 or more"},
		{"expires before issued", func(r *manifest.Release) { r.ExpiresAt = r.IssuedAt.Add(-time.Second) }, "expiresAt", "after issuedAt"},
		{"no issuedAt", func(r *manifest.Release) { r.IssuedAt = time.Time{} }, "expiresAt", "after issuedAt"},
		{"bundle key outside bundles/", func(r *manifest.Release) { r.Bundle.Key = "../etc/passwd.tar.gz" }, "bundle.key", "bundles/<name>.tar.gz"},
		{"bundle sha256 uppercase", func(r *manifest.Release) { r.Bundle.SHA256 = strings.Repeat("AB", 32) }, "bundle.sha256", "lowercase hex"},
		{"bundle size zero", func(r *manifest.Release) { r.Bundle.Size = 0 }, "bundle", "must be positive"},
		{"bundle unpacked negative", func(r *manifest.Release) { r.Bundle.Unpacked = -1 }, "bundle", "must be positive"},
		{"short commit", func(r *manifest.Release) { r.Source.Commit = "0123abc" }, "source.commit", "full hex commit"},
		{"bad input digest", func(r *manifest.Release) { r.Inputs.Code.Digest = "md5:abc" }, "inputs.code.digest", "sha256:<64 hex>"},
		{"invalid spec", func(r *manifest.Release) { r.Spec.Processes = nil }, "spec.processes", "at least one process"},
		{"literal secret in spec", func(r *manifest.Release) {
			r.Spec.EnvFiles[0].Vars["JWT_SECRET"] = manifest.Value{Literal: "abc"}
		}, "spec.envFiles[0].vars.JWT_SECRET", "literal secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rel := manifesttest.Release()
			tt.mutate(rel)
			data, err := yaml.Marshal(rel)
			if err != nil {
				t.Fatal(err)
			}
			_, err = manifest.ParseRelease("rel.yaml", data, 0)
			if err == nil {
				t.Fatal("ParseRelease accepted it")
			}
			se := asStrictError(t, err)
			lines := strings.Split(string(data), "\n")
			for _, p := range se.Problems {
				if p.Path == tt.path && strings.Contains(p.Msg, tt.msg) {
					if p.Line < 1 || p.Line > len(lines) {
						t.Errorf("problem %q has line %d outside the document", p, p.Line)
					}
					return
				}
			}
			t.Errorf("no problem at %s containing %q; got:\n%v", tt.path, tt.msg, err)
		})
	}
}

func TestParseReleaseMaxBytes(t *testing.T) {
	data, err := yaml.Marshal(manifesttest.Release())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.ParseRelease("rel.yaml", data, len(data)); err != nil {
		t.Errorf("at exactly the limit: %v", err)
	}
	_, err = manifest.ParseRelease("rel.yaml", data, len(data)-1)
	if se := asStrictError(t, err); !strings.Contains(se.Problems[0].Msg, "over the limit") {
		t.Errorf("one byte over: %v", err)
	}
	// A limit above the package cap is clamped to it.
	big := append(append([]byte(nil), data...), []byte("# "+strings.Repeat("x", manifest.MaxManifestBytes))...)
	if _, err := manifest.ParseRelease("rel.yaml", big, 10*manifest.MaxManifestBytes); err == nil {
		t.Errorf("a release over MaxManifestBytes was accepted with a larger limit")
	}
}

func TestParseReleaseUnknownField(t *testing.T) {
	data, err := yaml.Marshal(manifesttest.Release())
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, "extra: true\n"...)
	_, err = manifest.ParseRelease("rel.yaml", data, 0)
	se := asStrictError(t, err)
	if p := se.Problems[0]; !strings.Contains(p.Msg, "field extra not found") || p.Line != bytes.Count(data, []byte("\n")) {
		t.Errorf("problem = %q, want field extra not found at the last line", p)
	}
}

func TestDuration(t *testing.T) {
	type doc struct {
		D manifest.Duration `yaml:"d"`
	}
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{`d: 90s`, 90 * time.Second, ""},
		{`d: "1h30m"`, 90 * time.Minute, ""},
		{`d: 250ms`, 250 * time.Millisecond, ""},
		{`d: 90`, 0, "must be a string"},
		{`d: 1.5`, 0, "must be a string"},
		{`d: [1s]`, 0, "must be a string"},
		{`d: five`, 0, "invalid duration"},
		{`d: ""`, 0, "invalid duration"},
	}
	for _, tt := range tests {
		var d doc
		err := yaml.Unmarshal([]byte(tt.in), &d)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || d.D.Duration != tt.want {
			t.Errorf("%s: got %s, %v; want %s", tt.in, d.D.Duration, err, tt.want)
		}
	}
	if got := (manifest.Duration{}).Or(time.Minute); got != time.Minute {
		t.Errorf("zero.Or = %s", got)
	}
	if got := (manifest.Duration{Duration: time.Second}).Or(time.Minute); got != time.Second {
		t.Errorf("1s.Or = %s", got)
	}
}

func TestValue(t *testing.T) {
	tests := []struct {
		in   string
		want manifest.Value
		err  string
	}{
		{`v: plain`, manifest.Value{Literal: "plain"}, ""},
		{`v: 4000`, manifest.Value{Literal: "4000"}, ""},
		{`v: ""`, manifest.Value{}, ""},
		{`v: {ssm: /a/b}`, manifest.Value{RefKind: manifest.RefSSM, Ref: "/a/b"}, ""},
		{`v: {secretsManager: prod/db}`, manifest.Value{RefKind: manifest.RefSecretsManager, Ref: "prod/db"}, ""},
		{`v: {file: /etc/x}`, manifest.Value{RefKind: manifest.RefFile, Ref: "/etc/x"}, ""},
		{`v: {}`, manifest.Value{}, "exactly one key"},
		{`v: {vault: x}`, manifest.Value{}, "unknown reference kind"},
		{`v: {ssm: }`, manifest.Value{}, "must be a string"},
		{`v: [a]`, manifest.Value{}, "expected a string or a reference"},
	}
	for _, tt := range tests {
		var d struct {
			V manifest.Value `yaml:"v"`
		}
		err := yaml.Unmarshal([]byte(tt.in), &d)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || d.V != tt.want {
			t.Errorf("%s: got %+v, %v; want %+v", tt.in, d.V, err, tt.want)
			continue
		}
		// Both encodings give back what was read.
		out, err := yaml.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			V manifest.Value `yaml:"v"`
		}
		if err := yaml.Unmarshal(out, &back); err != nil || back.V != tt.want {
			t.Errorf("%s: YAML round trip gave %+v, %v", tt.in, back.V, err)
		}
	}
	if s := (manifest.Value{RefKind: manifest.RefSSM, Ref: "/x"}).String(); s != "ssm:/x" {
		t.Errorf("String() = %q", s)
	}
}

func TestDigest(t *testing.T) {
	a := manifest.Input{Digest: "x", Files: map[string]string{"a": "1", "b": "2", "c": "3"}}
	b := manifest.Input{Digest: "x", Files: map[string]string{"c": "3", "b": "2", "a": "1"}}
	if manifest.Digest(a) != manifest.Digest(b) {
		t.Errorf("equal values give different digests")
	}
	if manifest.Digest(a) == manifest.Digest(manifest.Input{Digest: "y"}) {
		t.Errorf("different values give the same digest")
	}
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(manifest.Digest(a)) {
		t.Errorf("Digest = %q", manifest.Digest(a))
	}
}

// TestSpecJSONRoundTrip: the agent keeps the spec in its JSON state file.
func TestSpecJSONRoundTrip(t *testing.T) {
	env, err := manifest.ParseEnvironment(prodFile, readFile(t, prodFile))
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(env.Spec)
	if err != nil {
		t.Fatal(err)
	}
	var back manifest.Spec
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, env.Spec) {
		t.Fatalf("spec changed through JSON:\n%+v\n%+v", back, env.Spec)
	}
}

func TestNodeScript(t *testing.T) {
	for _, tc := range []struct {
		cmd      []string
		nodeArgs []string
		script   string
		args     []string
		ok       bool
	}{
		{[]string{"node", "server.js", "--x"}, []string{}, "server.js", []string{"--x"}, true},
		{[]string{"node", "--import", "tsx", "src/server.ts"}, []string{"--import", "tsx"}, "src/server.ts", []string{}, true},
		{[]string{"node", "--max-old-space-size=512", "-r", "dotenv/config", "a.js", "b"}, []string{"--max-old-space-size=512", "-r", "dotenv/config"}, "a.js", []string{"b"}, true},
		{[]string{"node", "--enable-source-maps", "--", "--odd-name.js"}, []string{"--enable-source-maps"}, "--odd-name.js", []string{}, true},
		{[]string{"node", "--import", "tsx"}, nil, "", nil, false},
		{[]string{"node"}, nil, "", nil, false},
		{[]string{"pnpm", "start"}, nil, "", nil, false},
	} {
		nodeArgs, script, args, ok := manifest.NodeScript(tc.cmd)
		if ok != tc.ok || script != tc.script || (ok && (!slices.Equal(nodeArgs, tc.nodeArgs) || !slices.Equal(args, tc.args))) {
			t.Errorf("NodeScript(%q) = %q, %q, %q, %v; want %q, %q, %q, %v", tc.cmd, nodeArgs, script, args, ok, tc.nodeArgs, tc.script, tc.args, tc.ok)
		}
	}
}
func TestMatchesInputs(t *testing.T) {
	for _, c := range []struct {
		globs []string
		path  string
		want  bool
	}{
		{nil, "anything/at/all.ts", true},
		{[]string{"apps/web/**"}, "apps/web/src/main.tsx", true},
		{[]string{"apps/web/**"}, "apps/api/src/server.ts", false},
		{[]string{"apps/api/*.json", "db/*.ddl"}, "db/01_schema.ddl", true},
		{[]string{"apps/api/*.json"}, "apps/api/src/x.json", false},
	} {
		if got := manifest.MatchesInputs(c.globs, c.path); got != c.want {
			t.Errorf("MatchesInputs(%q, %q) = %v, want %v", c.globs, c.path, got, c.want)
		}
	}
}

// Order: the list first, in its order; then what globs match that is
// listed nowhere, in path order, only .sql and .ddl files, each once.
func TestSchemaFilesOrder(t *testing.T) {
	sc := &manifest.Schema{
		Dir:   "db",
		Files: []string{"db/01_schema.ddl", "db/**/*.ddl", "db/setup/02_entity.ddl", "db/*.sql", "db/gone.ddl", "db/**"},
		Seed:  []string{"db/seed.sql"},
	}
	bundle := []string{"db/z_last.ddl", "db/seed.sql", "db/README.md", "db/setup/02_entity.ddl", "db/01_schema.ddl",
		"db/a/03_more.ddl", "db/big.sql", "apps/api/x.ddl"}
	order, missing := sc.Order(bundle)
	if want := []string{"db/01_schema.ddl", "db/setup/02_entity.ddl", "db/a/03_more.ddl", "db/big.sql", "db/z_last.ddl"}; !slices.Equal(order, want) {
		t.Errorf("order = %q\nwant    %q", order, want)
	}
	if want := []string{"db/gone.ddl"}; !slices.Equal(missing, want) {
		t.Errorf("missing = %q, want %q", missing, want)
	}
	// A release orders its signed files the same way.
	rel := &manifest.Release{Spec: manifest.Spec{Schema: sc}, Inputs: manifest.Inputs{Schema: manifest.Input{Files: map[string]string{}}}}
	for _, f := range append(order, "db/seed.sql") {
		rel.Inputs.Schema.Files[f] = "sum"
	}
	if got := rel.SchemaOrder(); !slices.Equal(got, order) {
		t.Errorf("the release's order = %q, want %q", got, order)
	}
}

// Schema files added or changed in import order, then the removed ones.
func TestSchemaChangesFrom(t *testing.T) {
	rel := &manifest.Release{Spec: manifest.Spec{Schema: &manifest.Schema{Dir: "db", Files: []string{"db/b.ddl", "db/a.ddl", "db/c.ddl"}}},
		Inputs: manifest.Inputs{Schema: manifest.Input{Files: map[string]string{"db/a.ddl": "1", "db/b.ddl": "2", "db/c.ddl": "3"}}}}
	got := rel.SchemaChangesFrom(map[string]string{"db/a.ddl": "1", "db/c.ddl": "old", "db/z.ddl": "9", "db/y.ddl": "8"})
	want := []manifest.SchemaFileChange{{"db/b.ddl", "added"}, {"db/c.ddl", "changed"}, {"db/y.ddl", "removed"}, {"db/z.ddl", "removed"}}
	if !slices.Equal(got, want) {
		t.Errorf("changes = %v, want %v", got, want)
	}
}
