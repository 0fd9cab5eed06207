package manifesttest

import (
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/pkg/manifest"
)

// MinimalEnvironment is a small valid environment manifest. Tests mutate
// it with Mutate and expect problems at the Line* constants below; a test
// in package manifest checks that they still point at the right lines.
const MinimalEnvironment = `apiVersion: deploy.cohuron.dev/v1
kind: Environment
metadata:
  name: staging
spec:
  paths:
    root: /opt/cohuron
    backups: /opt/cohuron-backups
  envFiles:
    - path: apps/api/.env
      vars:
        PORT: "4000"
        JWT_SECRET: {ssm: /cohuron/staging/jwt}
        REDIS_URL: redis://127.0.0.1:6379
  schema:
    dir: db
    databaseURL: {ssm: /cohuron/staging/database-url}
    files:
      - db/01_schema.ddl
      - db/02_task.ddl
  processes:
    - name: api
      cwd: apps/api
      command: [node, server.js]
      envFile: apps/api/.env
      port: 4000
      health:
        - http: {url: "http://127.0.0.1:4000/api/health"}
          timeout: 5s
          within: 60s
    - name: web
      command: [node, web.js]
      port: 5173
      health:
        - tcp: {address: "127.0.0.1:5173"}
`

// Lines of MinimalEnvironment that tests point at.
const (
	LineAPIVersion  = 1
	LineKind        = 2
	LineMetadata    = 3
	LineName        = 4
	LineSpec        = 5
	LineRoot        = 7
	LineEnvPath     = 10
	LinePort        = 12 // the PORT variable
	LineJWTSecret   = 13
	LineRedisURL    = 14
	LineSchemaURL   = 17
	LineSchemaFile2 = 20
	LineProcesses   = 21
	LineAPI         = 22 // - name: api
	LineAPICwd      = 23
	LineAPIEnvFile  = 25
	LineAPIPort     = 26
	LineAPIHTTP     = 28
	LineAPITimeout  = 29
	LineAPIWithin   = 30
	LineWeb         = 31 // - name: web
	LineWebPort     = 33
	LineWebHealth   = 34
	LineWebTCP      = 35
)

// Mutate returns MinimalEnvironment with old replaced by new. old must
// occur exactly once, so a table of mutations cannot silently test the
// valid document.
func Mutate(t testing.TB, old, new string) []byte {
	t.Helper()
	if n := strings.Count(MinimalEnvironment, old); n != 1 {
		t.Fatalf("manifesttest.Mutate: %q occurs %d times in MinimalEnvironment, want 1", old, n)
	}
	return []byte(strings.Replace(MinimalEnvironment, old, new, 1))
}

// Now is the fixed clock of tests that build releases.
var Now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// Release returns a valid release for env prod, seq 7, issued an hour
// before Now and expiring 30 days after it, from branch main.
func Release() *manifest.Release {
	return &manifest.Release{
		APIVersion: manifest.APIVersion,
		Kind:       manifest.KindRelease,
		Env:        "prod",
		Seq:        7,
		IssuedAt:   Now.Add(-time.Hour),
		ExpiresAt:  Now.Add(30 * 24 * time.Hour),
		Bundle: manifest.BundleRef{
			Key:      "bundles/cohuron-main-0123abc-20250601-110000.tar.gz",
			SHA256:   strings.Repeat("ab", 32),
			Size:     12_345,
			Files:    42,
			Unpacked: 98_765,
		},
		Source: manifest.Source{
			Repo:    "https://github.com/cohuron/app",
			Branch:  "main",
			Commit:  strings.Repeat("0123456789", 4),
			Author:  "Dev Eloper <dev@example.com>",
			Message: "feat: ship it\n\nwith a body",
			Time:    Now.Add(-2 * time.Hour),
		},
		Inputs: manifest.Inputs{
			Dependencies: manifest.Input{Digest: manifest.Digest("dependencies"), Files: map[string]string{
				"pnpm-lock.yaml": manifest.Digest("lock"),
				"package.json":   manifest.Digest("package"),
			}},
			Compose: manifest.Input{Digest: manifest.Digest("compose")},
			Schema:  manifest.Input{Digest: manifest.Digest("schema")},
			Config:  manifest.Input{Digest: manifest.Digest("config")},
			Code:    manifest.Input{Digest: manifest.Digest("code")},
		},
		Spec: manifest.Spec{
			Paths: manifest.Paths{Root: "/opt/cohuron", Backups: "/opt/cohuron-backups"},
			User:  "cohuron",
			EnvFiles: []manifest.EnvFile{{
				Path: "apps/api/.env",
				Vars: map[string]manifest.Value{
					"PORT":       {Literal: "4000"},
					"EMPTY":      {Literal: ""},
					"FLAG":       {Literal: "true"},
					"JWT_SECRET": {RefKind: manifest.RefSSM, Ref: "/cohuron/prod/jwt-secret"},
					"API_TOKEN":  {RefKind: manifest.RefSecretsManager, Ref: "cohuron/prod/api-token"},
				},
			}},
			Install: &manifest.Install{
				Command: []string{"pnpm", "install", "--frozen-lockfile"},
				Timeout: manifest.Duration{Duration: 10 * time.Minute},
			},
			Build: []manifest.Hook{{Name: "api", Command: []string{"pnpm", "--filter", "api", "build"}}},
			Compose: &manifest.Compose{
				File: "docker-compose.yml", Project: "cohuron", EnvFile: "apps/api/.env",
				Services: []string{"postgres", "redis"}, HealthTimeout: manifest.Duration{Duration: 2 * time.Minute},
			},
			Schema: &manifest.Schema{
				Dir:         "db",
				DatabaseURL: manifest.Value{RefKind: manifest.RefFile, Ref: "/etc/cohuron/database-url"},
				Files:       []string{"db/01_schema.ddl", "db/02_task.ddl"},
				Seed:        []string{"db/seed.sql"},
			},
			Processes: []manifest.Process{{
				Name: "cohuron-api", Cwd: "apps/api", Command: []string{"node", "server.js"},
				EnvFile: "apps/api/.env", Port: 4000, Mode: "cluster", Instances: 2,
				Health: []manifest.HealthCheck{{
					HTTP:    &manifest.HTTPCheck{URL: "http://127.0.0.1:4000/api/health", ExpectStatus: 200},
					Timeout: manifest.Duration{Duration: 5 * time.Second},
					Within:  manifest.Duration{Duration: time.Minute},
				}},
			}},
		},
	}
}
