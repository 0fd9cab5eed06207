package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/agent"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/plan"
	"github.com/cohuron/deploy/pkg/release"
)

// publishEnv publishes env with the fixture's bundle.
func (f *fixture) publishEnv(env *manifest.Environment) {
	f.t.Helper()
	f.store.take()
	if _, err := f.pub.Publish(context.Background(), release.Request{Env: env, Bundle: f.bundle}); err != nil {
		f.t.Fatalf("publishing: %v", err)
	}
}

// A release whose spec.paths are not this agent's is refused (exit 3),
// never remembered as bad (the host's configuration may be what is
// wrong), and the next release with the right paths converges.
func TestPathsOtherThanTheAgentsAreRefused(t *testing.T) {
	f := newFixture(t, 0)
	env := f.env("hello", "ok")
	env.Spec.Paths = manifest.Paths{Root: "/opt/cohuron", Backups: "/opt/cohuron-backups"}
	f.publishEnv(env)
	out, err := f.once()
	if fault.ExitCode(err) != fault.ExitRejected || out == nil || out.Result != agent.ResultRejected {
		t.Fatalf("Once = %+v, %v (exit %d); want rejected, exit 3", out, err, fault.ExitCode(err))
	}
	for _, want := range []string{"spec.paths.root is /opt/cohuron, but this agent manages " + f.root, "backups is /opt/cohuron-backups", "set root and backups in the agent's configuration"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if st := f.state(); len(st.KnownBad) != 0 || st.Current != nil {
		t.Fatalf("state after a paths mismatch: bad %v, current %+v; want nothing", st.KnownBad, st.Current)
	}
	if _, err := os.Lstat(f.root); err == nil {
		t.Fatal("the root was created for a refused release")
	}
	// Looked at again each poll, not cached by ETag.
	if _, err := f.once(); fault.ExitCode(err) != fault.ExitRejected {
		t.Fatalf("second Once: %v, want the same refusal", err)
	}
	f.publish("hello", "ok")
	f.mustConverge(2)
}

// A host that cannot run the release (its spec.user does not exist) is
// refused before anything changes, with the fix; nothing is known bad,
// and agent plan says the same.
func TestPreflightBeforeAnything(t *testing.T) {
	f := newFixture(t, 0)
	env := f.env("hello", "ok")
	env.Spec.User = "cohuron-nosuchuser"
	f.publishEnv(env)
	p, err := f.a.Plan(context.Background())
	if err == nil || p == nil || len(p.Preflight) == 0 || !strings.Contains(p.Preflight[0], "useradd") {
		t.Fatalf("Plan = %+v, %v; want the missing user with the command that makes it", p, err)
	}
	out, err := f.once()
	if err == nil || fault.ExitCode(err) != fault.ExitError {
		t.Fatalf("Once = %+v, %v (exit %d); want an error (exit 1)", out, err, fault.ExitCode(err))
	}
	if !strings.Contains(err.Error(), "spec.user: expected an account cohuron-nosuchuser") || !strings.Contains(err.Error(), "useradd --system") {
		t.Errorf("error %q does not name the check and its fix", err)
	}
	if st := f.state(); len(st.KnownBad) != 0 || st.Current != nil {
		t.Fatalf("state after a preflight refusal: bad %v, current %+v", st.KnownBad, st.Current)
	}
	if entries, _ := os.ReadDir(filepath.Join(f.backups, "releases")); len(entries) != 0 {
		t.Fatalf("a release was staged on a host that cannot run it: %v", entries)
	}
}

// A secret rotated at its source behind the same reference: the env file
// of the running release is rewritten and only the process reading it
// restarts; the plan names the variable and its reference, not a value.
func TestRotatedSecretRestartsItsProcess(t *testing.T) {
	f := newFixture(t, 0)
	f.a.Cfg.SecretsRefresh = time.Minute
	f.publish("hello", "ok")
	f.mustConverge(1)
	if out, _ := f.once(); out.Result != agent.ResultUpToDate {
		t.Fatalf("Once with nothing rotated = %+v", out)
	}
	secretFile := filepath.Join(filepath.Dir(f.root), "..", "secrets", "etc/cohuron/demo/jwt-secret")
	if err := os.WriteFile(secretFile, []byte("rotated-jwt-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The agent looks again every secretsRefresh: the next poll is an
	// hour later.
	f.a.Now = func() time.Time { return now.Add(time.Hour) }
	p, err := f.a.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, s := range p.Plan.Steps {
		text.WriteString(s.String() + "\n")
	}
	for _, want := range []string{"envfiles " + apiEnv, "JWT_SECRET (file:/etc/cohuron/demo/jwt-secret)", "restart  " + apiName} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, text.String())
		}
	}
	if strings.Contains(text.String(), "rotated-jwt-value") || strings.Contains(text.String(), jwtValue) || strings.Contains(text.String(), webName) {
		t.Errorf("plan shows a secret value or touches the web:\n%s", text.String())
	}
	out, err := f.once()
	if err != nil || out.Result != agent.ResultConverged {
		t.Fatalf("Once after the rotation = %+v, %v", out, err)
	}
	if got := f.procs.env(apiName)["JWT_SECRET"]; got != "rotated-jwt-value" {
		t.Fatalf("the API runs with JWT_SECRET %q, want the rotated value", got)
	}
	if applied := f.procs.takeApplied(); len(applied) != 1 || strings.Join(applied[0], ",") != apiName {
		t.Fatalf("restarted %v, want only %s", applied, apiName)
	}
	if env := readFile(t, filepath.Join(f.root, apiEnv)); !strings.Contains(env, "JWT_SECRET=rotated-jwt-value") {
		t.Fatalf("env file not rewritten:\n%s", env)
	}
	if out, _ := f.once(); out.Result != agent.ResultUpToDate {
		t.Fatalf("Once after the rotation converged = %+v, want up to date", out)
	}
}

// agent plan on a host whose Docker daemon does not answer: a plan from
// the inputs, saying what it could not observe; a converge is a transient
// failure, retried.
func TestPlanWithoutDocker(t *testing.T) {
	f := newFixture(t, 0)
	f.a.ToolEnv = []string{"PATH=" + os.Getenv("PATH"), "DOCKER_HOST=unix://" + filepath.Join(t.TempDir(), "no-daemon.sock")}
	env := f.env("hello", "ok")
	env.Spec.Compose = &manifest.Compose{File: "package.json", Project: "demo", Services: []string{"db"}}
	f.publishEnv(env)
	out, err := f.a.Plan(context.Background())
	if err != nil {
		t.Fatalf("Plan without a Docker daemon: %v", err)
	}
	if len(out.Plan.Unobserved) == 0 || !strings.Contains(out.Plan.Unobserved[0], "compose services") {
		t.Fatalf("plan.Unobserved = %q, want the compose services", out.Plan.Unobserved)
	}
	if !out.Plan.Has(plan.Compose, "") {
		t.Errorf("no compose step in a first install:\n%+v", out.Plan.Steps)
	}
	_, err = f.once()
	if fault.KindOf(err) != fault.KindTransient {
		t.Fatalf("Once without a Docker daemon: %v (%v), want a transient error", err, fault.KindOf(err))
	}
}

// A release whose build hook fails is not activated (exit 4), is known
// bad and not retried; the running release keeps running; a newer seq is
// tried.
func TestFailingBuildHookIsKnownBad(t *testing.T) {
	f := newFixture(t, 0)
	user := testenv.AppUser(t)
	// t.TempDir's directories are 0700: the app user must reach the tree.
	for d := filepath.Dir(f.root); d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	withHook := func(cmd string) *manifest.Environment {
		env := f.env("hello", "ok")
		env.Spec.User = user
		env.Spec.Build = []manifest.Hook{{Name: "web", Cwd: "apps/web", Command: []string{"sh", "-c", cmd}, Outputs: []string{"apps/web/dist"}}}
		return env
	}
	f.publishEnv(withHook("mkdir -p dist && echo built > dist/index.html"))
	f.mustConverge(1)
	live := f.rootTarget()

	f.publishEnv(withHook("echo 'vite: Could not resolve ./search/ScopeFilters' >&2; exit 1"))
	out, err := f.once()
	if fault.ExitCode(err) != fault.ExitConvergeFailed || out == nil || out.Result != agent.ResultFailed {
		t.Fatalf("Once with a failing build hook = %+v, %v (exit %d); want failed, exit 4", out, err, fault.ExitCode(err))
	}
	if !strings.Contains(err.Error(), `build hook "web"`) || !strings.Contains(err.Error(), "ScopeFilters") || !strings.Contains(err.Error(), "not activated") {
		t.Errorf("error %q does not say which hook failed and why", err)
	}
	if f.rootTarget() != live {
		t.Fatal("a failed build switched the root")
	}
	if _, bad := f.state().IsBad(2, f.state().Last.Digest); !bad {
		t.Fatal("the release whose build failed is not known bad")
	}
	out, err = f.once()
	if err != nil || out.Result != agent.ResultBlocked || !strings.Contains(out.Blocked, "known-bad") {
		t.Fatalf("the next poll = %+v, %v; want blocked known-bad, not retried", out, err)
	}
	f.publishEnv(withHook("mkdir -p dist && echo fixed > dist/index.html"))
	f.mustConverge(3)
}

// A release that restarts nothing still has its directory prepared for
// the process manager before it goes live (PM2's cluster entry): a worker
// PM2 restarts later starts from there.
func TestReleaseDirPreparedWhenNothingRestarts(t *testing.T) {
	f := newFixture(t, 0)
	f.publish("hello", "ok")
	f.mustConverge(1)
	env := f.env("hello", "ok")
	env.Spec.EnvFiles = append(env.Spec.EnvFiles, manifest.EnvFile{Path: "tools/.env", Vars: map[string]manifest.Value{"UNUSED": {Literal: "1"}}})
	f.publishEnv(env)
	f.procs.mu.Lock()
	f.procs.prepared = nil
	f.procs.mu.Unlock()
	f.mustConverge(2)
	if applied := f.procs.takeApplied(); len(applied) != 0 {
		t.Fatalf("restarted %v for an env file no process reads", applied)
	}
	target := f.rootTarget()
	f.procs.mu.Lock()
	defer f.procs.mu.Unlock()
	if len(f.procs.prepared) != 1 || f.procs.prepared[0] != target {
		t.Fatalf("prepared %v, want the new release directory %s", f.procs.prepared, target)
	}
}

// The running release's secrets cannot be resolved when they are due to be
// looked at again (the secrets store is down): a crashed process is still
// brought back, from the env files as they are.
func TestSecretsOutageStillRepairs(t *testing.T) {
	f := newFixture(t, 0)
	f.a.Cfg.SecretsRefresh = time.Minute
	f.publish("hello", "ok")
	f.mustConverge(1)
	secretFile := filepath.Join(filepath.Dir(f.root), "..", "secrets", "etc/cohuron/demo/jwt-secret")
	if err := os.Remove(secretFile); err != nil {
		t.Fatal(err)
	}
	f.procs.Stop(context.Background(), []string{apiName})
	f.a.Now = func() time.Time { return now.Add(time.Hour) }
	p, err := f.a.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Plan.Unobserved) == 0 || !strings.Contains(strings.Join(p.Plan.Unobserved, "\n"), "secrets") {
		t.Errorf("plan does not say the secrets could not be looked at: %v", p.Plan.Unobserved)
	}
	out, err := f.once()
	if err != nil || out.Result != agent.ResultConverged {
		t.Fatalf("Once with the secrets store down and the API stopped = %+v, %v; want the API repaired", out, err)
	}
	if got := f.procs.env(apiName)["JWT_SECRET"]; got != jwtValue {
		t.Fatalf("the API runs with JWT_SECRET %q, want the value it had (%q)", got, jwtValue)
	}
}

// A host laid out by the old deployer that cannot run the release is left
// exactly as it is: the preflight refuses before the plain root is adopted.
func TestPreflightBeforeAdoption(t *testing.T) {
	f := newFixture(t, 0)
	testenv.WriteFiles(t, f.root, map[string]string{"old-deploy.txt": "from the old script\n"})
	env := f.env("hello", "ok")
	env.Spec.User = "cohuron-nosuchuser"
	f.publishEnv(env)
	if _, err := f.once(); err == nil || !strings.Contains(err.Error(), "cohuron-nosuchuser") {
		t.Fatalf("Once = %v, want the preflight refusal", err)
	}
	fi, err := os.Lstat(f.root)
	if err != nil || !fi.IsDir() {
		t.Fatalf("root after a preflight refusal: %v, %v; want the old plain directory", fi, err)
	}
	if got := readFile(t, filepath.Join(f.root, "old-deploy.txt")); got != "from the old script\n" {
		t.Fatalf("old tree changed: %q", got)
	}
	if adopted, _ := filepath.Glob(filepath.Join(f.backups, "releases", "adopted-*")); len(adopted) != 0 {
		t.Fatalf("adopted %v on a host that cannot run the release", adopted)
	}
	if st := f.state(); st.Current != nil {
		t.Fatalf("state current = %+v, want none", st.Current)
	}
}

// A crashed process of the running release is restarted even when a tool
// only other steps need has gone missing from the host since (the
// preflight checks a release's tools, not a restart's).
func TestRestartNotHeldUpByPreflight(t *testing.T) {
	f := newFixture(t, 0)
	f.publish("hello", "ok")
	f.mustConverge(1)
	f.a.Preflight = func(*manifest.Spec) error { return errors.New("pg_dump: not found") }
	f.procs.Stop(context.Background(), []string{apiName})
	out, err := f.once()
	if err != nil || out.Result != agent.ResultConverged {
		t.Fatalf("Once = %+v, %v; want the API restarted", out, err)
	}
	if f.procs.env(apiName) == nil {
		t.Fatal("the API was not restarted")
	}
}

// While a new release waits for the host (its preflight fails), a crashed
// process of the running release is still brought back.
func TestRunningReleaseRepairedWhileNewOneWaitsForHost(t *testing.T) {
	f := newFixture(t, 0)
	f.publish("hello", "ok")
	f.mustConverge(1)
	env := f.env("hello", "ok")
	env.Spec.User = "cohuron-nosuchuser"
	f.publishEnv(env)
	f.procs.Stop(context.Background(), []string{apiName})
	if _, err := f.once(); err == nil || !strings.Contains(err.Error(), "cohuron-nosuchuser") {
		t.Fatalf("Once = %v, want the new release's preflight refusal", err)
	}
	if f.procs.env(apiName) == nil {
		t.Fatal("the running release's API was not restarted while the new release waits")
	}
	if st := f.state(); st.Current == nil || st.Current.Seq != 1 {
		t.Fatalf("running release %+v, want seq 1", st.Current)
	}
}
