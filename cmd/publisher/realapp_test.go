package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
)

// TestCheckRealApp checks manifests/prod.yaml as shipped against the real
// app's repository (its main), as a pull request's check --repo would:
// it fits; and naming the database service postgres, as the issue's
// manifest did, is refused with the services the app's compose file
// really defines.
func TestCheckRealApp(t *testing.T) {
	app := filepath.Join(t.TempDir(), "cohuron-pmo")
	testenv.Run(t, "", testenv.GitEnv(""), "git", "clone", "-q", "--branch", "main", testenv.AppBundle(t), app)
	shipped := readShipped(t)
	run := func(manifest []byte) (int, string) {
		t.Helper()
		dir := t.TempDir()
		testenv.WriteFiles(t, dir, map[string]string{"manifests/prod.yaml": string(manifest)})
		var out, errb bytes.Buffer
		code := NewCLI(nil, &out, &errb, time.Now).Run([]string{"check", "--repo", app, filepath.Join(dir, "manifests/prod.yaml")})
		return code, strings.ReplaceAll(out.String()+errb.String(), dir+"/", "")
	}

	code, out := run(shipped)
	if code != fault.ExitOK || !regexp.MustCompile(`(?m)^ok    manifests/prod.yaml \(Environment, fits \S+ main@[0-9a-f]{12}\)$`).MatchString(out) {
		t.Fatalf("check --repo of the shipped manifests/prod.yaml against the app's main: exit %d\n%s", code, out)
	}

	const services = "services: [db, redis, minio, mailhog, rabbitmq]"
	line := 0
	for i, l := range strings.Split(string(shipped), "\n") {
		if strings.TrimSpace(l) == services {
			line = i + 1
		}
	}
	if line == 0 {
		t.Fatalf("manifests/prod.yaml no longer declares %q: update this test", services)
	}
	code, out = run(bytes.Replace(shipped, []byte(services), []byte("services: [postgres, redis, minio, mailhog, rabbitmq]"), 1))
	want := fmt.Sprintf(`manifests/prod.yaml:%d: spec.compose.services[0]: expected a service that docker-compose.yml defines (db, redis, minio, mailhog, rabbitmq), found "postgres"`, line)
	if code != fault.ExitRejected || !strings.Contains(out, want+"\n") || strings.Count(out, "spec.compose.services") != 1 {
		t.Fatalf("check --repo with services: [postgres, …]: exit %d, want %d and\n%s\ngot:\n%s", code, fault.ExitRejected, want, out)
	}
}

// TestProdSchemaFilesAreTheAppsOrder: manifests/prod.yaml lists the schema
// files in the order the app's own tools/db-import.sh (on main) imports
// them, and each is in main's tree.
func TestProdSchemaFilesAreTheAppsOrder(t *testing.T) {
	clone := testenv.AppClone(t)
	tree := testenv.AppTree(t, clone, "main", "db", "tools")
	script, err := os.ReadFile(filepath.Join(tree, "tools/db-import.sh"))
	if err != nil {
		t.Fatal(err)
	}
	want := testenv.ImportScriptOrder(script)
	env, err := manifest.ParseEnvironment("manifests/prod.yaml", readShipped(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := env.Spec.Schema.Files; !slices.Equal(got, want) {
		t.Fatalf("manifests/prod.yaml schema.files (%d) differ from main's tools/db-import.sh order (%d):\n got %q\nwant %q", len(got), len(want), got, want)
	}
	for _, f := range want {
		if _, err := os.Stat(filepath.Join(tree, f)); err != nil {
			t.Errorf("main's tools/db-import.sh imports %s: %v", f, err)
		}
	}
}

func readShipped(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("../../manifests/prod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return data
}
