package realapp

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRealApp migrates a host the Lambda deployer laid out to the agent
// with manifests/prod.yaml as shipped (paths and secret sources aside),
// then walks real commits of the app's history through it: an API-only,
// a web-only and a dependency change, and a commit whose web build fails.
// Each plan runs only what the change needs; the app answers with the new
// code after each; not a database row is lost.
func TestRealApp(t *testing.T) {
	h := newRealHost(t)
	step := func(what string) func() {
		start := time.Now()
		return func() { t.Logf("%s: %s", what, time.Since(start).Round(100*time.Millisecond)) }
	}

	// The host as the Lambda deployer leaves it: its script, run for the
	// commit it last deployed (root's PM2 runs `pnpm dev`, the compose
	// services run, tools/db-import.sh imported the schema and seed).
	done := step("the old deployer's deploy")
	h.oldDeploy(commitOld)
	done()
	if code, body := login(); code != http.StatusOK || !strings.Contains(body, `"token"`) {
		t.Fatalf("login on the old deployer's host: %d %s", code, firstLine(body))
	}
	// Its script starts the API only: it looks for apps/web/package.json
	// from inside apps/api.
	old := h.pm2Procs(h.legacyPM2)
	if len(old["cohuron-api"]) == 0 || len(old) != 1 {
		t.Fatalf("the old deployer's PM2 runs %v, want cohuron-api", old)
	}
	oldContainers := h.containers()
	if len(oldContainers) != 4 || oldContainers["rabbitmq"] != "" {
		t.Fatalf("the old deployer's compose services: %v, want db, redis, minio, mailhog", oldContainers)
	}
	rows := h.rowCounts()
	if rows["d_employee"] == 0 || len(rows) < 20 {
		t.Fatalf("the old deployer's database: %v", rows)
	}

	// Migration (docs/operators-guide.md, "Migrating from the Lambda
	// deployer"): look, then converge. The first release is the commit
	// that adds rabbitmq to the compose file.
	done = step("publish " + commitCompose)
	out := h.mustPublish(commitCompose)
	done()
	contains(t, "publish", out, "built now")
	out = h.plan()
	contains(t, "plan of the first release", out, "adopt the plain directory left by the old deploy script",
		"compose ", "build    web", "extract its artifact built at publish time", "restart  cohuron-api", "restart  cohuron-web")
	done = step("first converge (adoption)")
	h.once(0)
	done()
	if pm2Alive(h.legacyPM2) {
		t.Fatalf("the old deployer's PM2 still runs: %v", h.pm2Procs(h.legacyPM2))
	}
	live := h.liveRelease()
	h.processesRunFrom("cohuron-api", live)
	h.processesRunFrom("cohuron-web", live)
	if code, body := login(); code != http.StatusOK || !strings.Contains(body, `"token"`) {
		t.Fatalf("login after the migration: %d %s", code, firstLine(body))
	}
	got := h.containers()
	for _, svc := range []string{"db", "redis", "minio", "mailhog"} {
		if got[svc] != oldContainers[svc] {
			t.Errorf("the migration recreated %s: %s -> %s", svc, oldContainers[svc], got[svc])
		}
	}
	if got["rabbitmq"] == "" {
		t.Errorf("the compose change did not bring rabbitmq up: %v", got)
	}
	if after := h.rowCounts(); !maps.Equal(after, rows) {
		t.Fatalf("rows before the migration %v, after %v", rows, after)
	}
	adopted, _ := filepath.Glob(filepath.Join(h.backups, "releases/adopted-*"))
	if len(adopted) != 1 {
		t.Fatalf("adopted trees: %v", adopted)
	}

	// A catch-up release, then the API-only change.
	h.mustPublish(commitBeforeAPI)
	h.once(0)
	webRelease := h.liveRelease()
	assetsBefore, err := webAssets()
	if err != nil {
		t.Fatal(err)
	}
	done = step("publish the API-only change")
	h.mustPublish(commitAPI)
	done()
	out = h.plan()
	contains(t, "plan of the API-only change", out,
		"restart  cohuron-api     inputs changed: apps/api/src/services/view-type-mapping.yaml",
		"skip install", "skip build    web", "skip restart  cohuron-web", "skip compose")
	lacks(t, "plan of the API-only change", out, "build    web", "restart  cohuron-web", "install ")
	done = step("converge the API-only change")
	h.once(0)
	done()
	live = h.liveRelease()
	h.processesRunFrom("cohuron-api", live)
	h.processesRunFrom("cohuron-web", webRelease) // not restarted: it runs from where it ran
	if a, err := webAssets(); err != nil || a != assetsBefore {
		t.Fatalf("the web after an API-only change: %v %q (was %q)", err, a, assetsBefore)
	}
	if code, _ := login(); code != http.StatusOK {
		t.Fatalf("login after the API-only change: %d", code)
	}

	// The web-only change: built at publish time once, extracted by the
	// host, served by a restarted web; the API keeps running.
	apiRelease := live
	done = step("publish the web-only change")
	out = h.mustPublish(commitWeb)
	done()
	contains(t, "publish of the web-only change", out, "build hook web, built now")
	out = h.plan()
	contains(t, "plan of the web-only change", out, "build    web", "inputs changed: apps/web/", "restart  cohuron-web",
		"skip restart  cohuron-api", "skip install")
	lacks(t, "plan of the web-only change", out, "restart  cohuron-api")
	done = step("converge the web-only change")
	h.once(0)
	done()
	live = h.liveRelease()
	h.processesRunFrom("cohuron-web", live)
	h.processesRunFrom("cohuron-api", apiRelease)
	if a, err := webAssets(); err != nil || a == assetsBefore {
		t.Fatalf("the web after a web-only change: %v, assets %q (unchanged)", err, a)
	}
	if !fileExists(filepath.Join(h.root, "apps/web/dist/index.html")) {
		t.Fatal("the artifact's apps/web/dist is not in the live release")
	}

	// The dependency change: pnpm install runs, the web is rebuilt (its
	// dependencies changed), both processes restart; compose is left alone.
	h.mustPublish(commitBeforeDeps)
	h.once(0)
	containersBefore := h.containers()
	done = step("publish the dependency change")
	h.mustPublish(commitDeps)
	done()
	out = h.plan()
	contains(t, "plan of the dependency change", out, "install ", "apps/web/package.json changed", "pnpm-lock.yaml changed",
		"build    web", "restart  cohuron-api", "restart  cohuron-web", "skip compose")
	done = step("converge the dependency change")
	h.once(0)
	done()
	live = h.liveRelease()
	h.processesRunFrom("cohuron-api", live)
	h.processesRunFrom("cohuron-web", live)
	if got := h.containers(); !maps.Equal(got, containersBefore) {
		t.Fatalf("a dependency change recreated containers: %v -> %v", containersBefore, got)
	}
	if !fileExists(filepath.Join(h.root, "apps/web/node_modules/dexie/package.json")) {
		t.Error("the dependency the commit adds (dexie) is not installed")
	}

	// main's web build fails: the publisher says so and publishes nothing;
	// the hosts never see it.
	seqs := h.run("publisher", "status", "--store", h.store, "--env", "prod")
	out, code := h.publish(commitBroken)
	if code == 0 {
		t.Fatalf("publishing %s, whose web build fails, succeeded:\n%s", commitBroken, out)
	}
	contains(t, "publish of a broken web build", out, `build hook "web"`, "ScopeFilters")
	if again := h.run("publisher", "status", "--store", h.store, "--env", "prod"); again != seqs {
		t.Fatalf("a refused publish changed what the hosts report:\n%s\n%s", seqs, again)
	}
	out = h.once(0)
	contains(t, "agent after a refused publish", out, "up-to-date")

	if after := h.rowCounts(); !maps.Equal(after, rows) {
		t.Fatalf("rows before the walk %v, after %v", rows, after)
	}
	if code, _ := login(); code != http.StatusOK {
		t.Fatalf("login at the end: %d", code)
	}
	logs, _ := os.ReadDir(filepath.Join(h.dir, "var/lib/cohuron-agent/logs"))
	t.Logf("releases converged: %d; %s", len(logs), fmt.Sprint(h.pm2Procs(h.pm2Home)))
}
