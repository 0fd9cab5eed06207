package realapp

import (
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRealApp migrates hosts the Lambda deployer laid out to the agent
// with manifests/prod.yaml as shipped (paths and secret sources aside),
// then walks real commits of the app's history through them: an
// API-only, a web-only, a schema and a dependency change, a rotated
// secret, and a commit whose web build fails. Each plan runs only what
// the change needs; the app answers with the new code after each; not a
// database row is lost, and a user's delete stays deleted.
func TestRealApp(t *testing.T) {
	// The host the migration section of the operator's guide is about.
	t.Run("migration", func(t *testing.T) {
		h := newRealHost(t)
		rows := h.oldHost(commitOld)

		// docs/operators-guide.md, "Migrating from the Lambda deployer":
		// look, then converge. Compose keeps the containers the old
		// script started; the database the old script imported is
		// adopted as it is, with no baseline: its diff with the release's
		// files is additive only: the triggers whose statements the old
		// script's order failed (their tables came later), which the
		// agent's import runs again after the rest. The comments at the
		// end of db/27_interaction.ddl are not among them: psql reads
		// them inside a dollar quote the file never closes, so neither
		// import runs them.
		oldContainers := h.containers()
		if len(oldContainers) != 5 {
			t.Fatalf("the old deployer's compose services: %v, want db, redis, minio, mailhog, rabbitmq", oldContainers)
		}
		out := h.adopt(commitAdopt, rows)
		contains(t, "plan of the first release", out, "schema, declarative:", "statement(s) would bring the live database to the files' schema",
			"CREATE TRIGGER log_project_changes",
			// Before 2025-12-04 the files give app.entity no primary key.
			"note schema.referenceData: app.entity gets no rows")
		lacks(t, "plan of the first release", out, "refused", "DROP TABLE", "DROP COLUMN", `COMMENT ON TABLE "app"."customer_interaction"`)
		if got := h.containers(); !maps.Equal(got, oldContainers) {
			t.Errorf("the migration recreated containers: %v -> %v", oldContainers, got)
		}

		// The web-only change: built at publish time once, extracted by
		// the host, served by a restarted web; the API keeps running.
		// (commitBeforeWeb is the release just adopted.)
		apiRelease := h.liveRelease()
		assetsBefore := h.assets()
		out = h.timed("publish the web-only change", func() string { return h.mustPublish(commitWeb) })
		contains(t, "publish of the web-only change", out, "build hook web, built now")
		out = h.plan()
		contains(t, "plan of the web-only change", out, "build    web", "inputs changed: apps/web/",
			"restart  cohuron-web", "skip restart  cohuron-api", "skip install", "skip compose", "skip schema")
		lacks(t, "plan of the web-only change", out, "restart  cohuron-api", "install ", "compose ")
		h.timed("converge the web-only change", func() string { return h.once(0) })
		live := h.liveRelease()
		h.processesRunFrom("cohuron-web", live)
		h.processesRunFrom("cohuron-api", apiRelease) // not restarted: it runs from where it ran
		if a := h.assets(); a == assetsBefore {
			t.Fatalf("the web serves the same build after a web-only change: %q", a)
		}
		if !fileExists(filepath.Join(h.root, "apps/web/dist/index.html")) {
			t.Fatal("the artifact's apps/web/dist is not in the live release")
		}
		h.loggedIn("after the web-only change")

		// The schema change: the files are imported into a shadow
		// database and compared with the live one; the one index they add
		// is applied (after a dump), rows untouched, while users have
		// written and deleted rows.
		contains(t, "agent schema diff after the adoption", h.mustAgent("schema", "diff"), "the live database has the files' schema")
		h.converge(commitBeforeSchema)
		h.sql(`INSERT INTO app.project (name) VALUES ('a user''s project')`)
		deleted := h.sql(`DELETE FROM app.task WHERE id = (SELECT id FROM app.task ORDER BY id LIMIT 1) RETURNING id`)
		// (The adopted triggers log these writes: the counts are taken
		// after them.)
		before := rows
		rows = h.rowCounts()
		if rows["project"] != before["project"]+1 || rows["task"] != before["task"]-1 {
			t.Fatalf("a user's writes: project %d -> %d, task %d -> %d", before["project"], rows["project"], before["task"], rows["task"])
		}
		h.timed("publish the schema change", func() string { return h.mustPublish(commitSchema) })
		out = h.plan()
		contains(t, "plan of the schema change", out, "schema ", "db/entity_configuration_settings/06_entity_rbac.ddl",
			"schema, declarative:", "1 statement(s) would bring the live database to the files' schema",
			`CREATE UNIQUE INDEX "idx_entity_rbac_unique_permission" ON "app"."entity_rbac"`, "restart  cohuron-api")
		h.timed("converge the schema change", func() string { return h.once(0) })
		if got := h.sql(`SELECT count(*) FROM pg_indexes WHERE schemaname = 'app' AND indexname = 'idx_entity_rbac_unique_permission'`); got != "1" {
			t.Fatalf("the index the schema change adds: %s, want 1", got)
		}
		if got := h.sql("SELECT count(*) FROM app.task WHERE id = '" + deleted + "'"); got != "0" {
			t.Fatalf("the task a user deleted (%s) is back", deleted)
		}
		if got := h.sql(`SELECT count(*) FROM pg_database WHERE datname LIKE 'cohuron_shadow_%'`); got != "0" {
			t.Fatalf("%s shadow databases left", got)
		}
		h.processesRunFrom("cohuron-api", h.liveRelease())
		h.loggedIn("after the schema change")
		h.sameRows(rows, "after the schema change")
		contains(t, "agent schema diff after the schema change", h.mustAgent("schema", "diff"), "the live database has the files' schema")

		// The API-only change: the API reloads, nothing is built, the web
		// keeps running from the release it ran from.
		h.converge(commitBeforeAPI)
		webRelease, assets := h.liveRelease(), h.assets()
		h.timed("publish the API-only change", func() string { return h.mustPublish(commitAPI) })
		out = h.plan()
		contains(t, "plan of the API-only change", out,
			"restart  cohuron-api    inputs changed: apps/api/src/lib/universal-crud-factory.ts added, apps/api/src/modules/business/routes.ts",
			"skip install", "skip build    web", "skip restart  cohuron-web", "skip compose", "skip schema")
		lacks(t, "plan of the API-only change", out, "build    web", "restart  cohuron-web", "install ", "compose ", "schema, declarative")
		h.timed("converge the API-only change", func() string { return h.once(0) })
		h.processesRunFrom("cohuron-api", h.liveRelease())
		h.processesRunFrom("cohuron-web", webRelease)
		if a := h.assets(); a != assets {
			t.Fatalf("the web after an API-only change serves %q, was %q", a, assets)
		}
		h.loggedIn("after the API-only change")

		// A secret rotated behind its unchanged reference: the API's env
		// file is rewritten, the API (only) reloads with the new value.
		apiPIDs := h.pm2Procs(h.pm2Home)["cohuron-api"]
		h.writeSecrets(map[string]string{"jwt-secret": "realapp-jwt-secret-2"})
		out = h.plan()
		contains(t, "plan after a rotated secret", out, "JWT_SECRET (file:/cohuron/prod/jwt-secret)", "restart  cohuron-api")
		lacks(t, "plan after a rotated secret", out, "realapp-jwt-secret", "restart  cohuron-web")
		h.once(0)
		if env, _ := os.ReadFile(filepath.Join(h.root, "apps/api/.env")); !strings.Contains(string(env), "JWT_SECRET=realapp-jwt-secret-2") {
			t.Fatalf("the API's env file after the rotation:\n%s", env)
		}
		if now := h.pm2Procs(h.pm2Home)["cohuron-api"]; len(now) == 0 || slices.Equal(now, apiPIDs) {
			t.Fatalf("the API was not reloaded for the rotated secret: pids %v -> %v", apiPIDs, now)
		}
		h.loggedIn("after the secret rotation")
		h.sameRows(rows, "after the walk")
	})

	// A second host, which the old deployer last deployed just before a
	// dependency change (with its database imported for that commit).
	t.Run("dependencies", func(t *testing.T) {
		h := newRealHost(t)
		rows := h.oldHost(commitBeforeDeps)
		h.adopt(commitBeforeDeps, rows)
		containers := h.containers()
		h.timed("publish the dependency change", func() string { return h.mustPublish(commitDeps) })
		out := h.plan()
		contains(t, "plan of the dependency change", out, "install ", "apps/web/package.json changed", "pnpm-lock.yaml changed",
			"build    web", "restart  cohuron-api", "restart  cohuron-web", "skip compose")
		h.timed("converge the dependency change", func() string { return h.once(0) })
		live := h.liveRelease()
		h.processesRunFrom("cohuron-api", live)
		h.processesRunFrom("cohuron-web", live)
		if got := h.containers(); !maps.Equal(got, containers) {
			t.Fatalf("a dependency change recreated containers: %v -> %v", containers, got)
		}
		if !fileExists(filepath.Join(h.root, "apps/web/node_modules/date-fns/package.json")) {
			t.Error("the dependency the commit adds (date-fns) is not installed")
		}
		h.loggedIn("after the dependency change")

		// main's web build fails: the publisher says why and publishes
		// nothing; the host never sees it.
		before := h.run("publisher", "status", "--store", h.store, "--env", "prod")
		out, code := h.publish(commitBroken)
		if code == 0 {
			t.Fatalf("publishing %s, whose web build fails, succeeded:\n%s", commitBroken, out)
		}
		contains(t, "publish of a broken web build", out, `build hook "web"`, "ScopeFilters")
		if after := h.run("publisher", "status", "--store", h.store, "--env", "prod"); after != before {
			t.Fatalf("a refused publish changed the store:\n%s\n%s", before, after)
		}
		contains(t, "agent after a refused publish", h.once(0), "up-to-date")
		h.sameRows(rows, "after the walk")
	})
}

// oldHost lays the host out as the Lambda deployer leaves it: its script,
// run for commit (root's PM2 runs `pnpm dev` for the API, the compose
// services run, tools/db-import.sh imported the schema and seed data).
// It returns the rows of every table.
func (h *realHost) oldHost(commit string) map[string]int {
	h.t.Helper()
	start := time.Now()
	h.oldDeploy(commit)
	h.t.Logf("the old deployer's deploy of %s: %s", commit, time.Since(start).Round(100*time.Millisecond))
	h.loggedIn("on the old deployer's host")
	// Its script starts the API only: it looks for apps/web/package.json
	// from inside apps/api.
	if old := h.pm2Procs(h.legacyPM2); len(old["cohuron-api"]) == 0 || len(old) != 1 {
		h.t.Fatalf("the old deployer's PM2 runs %v, want cohuron-api", old)
	}
	rows := h.rowCounts()
	if len(rows) < 20 {
		h.t.Fatalf("the old deployer's database has %d tables: %v", len(rows), rows)
	}
	return rows
}

// adopt is the guide's migration: the first release, published and
// looked at, then converged; the old processes are gone, the agent's run
// as the app user, every row is where it was. It returns the plan.
func (h *realHost) adopt(commit string, rows map[string]int) string {
	h.t.Helper()
	out := h.timed("publish "+commit, func() string { return h.mustPublish(commit) })
	contains(h.t, "publish", out, "build hook web")
	out = h.plan()
	plan := out
	contains(h.t, "plan of the first release", out, "adopt the plain directory left by the old deploy script",
		"compose ", "build    web", "extract its artifact built at publish time", "restart  cohuron-api", "restart  cohuron-web")
	h.timed("first converge (adoption)", func() string { return h.once(0) })
	if pm2Alive(h.legacyPM2) {
		h.t.Fatalf("the old deployer's PM2 still runs: %v", h.pm2Procs(h.legacyPM2))
	}
	live := h.liveRelease()
	h.processesRunFrom("cohuron-api", live)
	h.processesRunFrom("cohuron-web", live)
	h.loggedIn("after the migration")
	h.assets()
	h.sameRows(rows, "after the migration")
	if adopted, _ := filepath.Glob(filepath.Join(h.backups, "releases/adopted-*")); len(adopted) != 1 {
		h.t.Fatalf("adopted trees: %v", adopted)
	}
	return plan
}

// converge publishes commit and converges the host to it.
func (h *realHost) converge(commit string) {
	h.t.Helper()
	h.mustPublish(commit)
	h.once(0)
}

// timed runs f and logs how long it took.
func (h *realHost) timed(what string, f func() string) string {
	h.t.Helper()
	start := time.Now()
	out := f()
	h.t.Logf("%s: %s", what, time.Since(start).Round(100*time.Millisecond))
	return out
}

// loggedIn checks that a user of the seed data logs in.
func (h *realHost) loggedIn(when string) {
	h.t.Helper()
	if code, body := login(); code != http.StatusOK || !strings.Contains(body, `"token"`) {
		h.t.Fatalf("login %s: %d %s", when, code, firstLine(body))
	}
}

// assets is what the web serves: the script assets of its index.html.
func (h *realHost) assets() string {
	h.t.Helper()
	a, err := webAssets()
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// sameRows checks that every table of schema app has the rows it had,
// except app.system_logging, the audit log the files' triggers write
// while the app serves (a login, say), which may only grow.
func (h *realHost) sameRows(rows map[string]int, when string) {
	h.t.Helper()
	after := h.rowCounts()
	const log = "system_logging"
	if after[log] < rows[log] {
		h.t.Fatalf("app.%s lost rows %s: %d -> %d", log, when, rows[log], after[log])
	}
	want := maps.Clone(rows)
	want[log] = after[log]
	if !maps.Equal(after, want) {
		h.t.Fatalf("rows of the old deployer's database %v, %s %v", rows, when, after)
	}
}
