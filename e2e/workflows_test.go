package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/manifest"
)

// workflow is the part of a GitHub Actions workflow file the test runs.
type workflow struct {
	Jobs map[string]struct {
		Env   map[string]string `yaml:"env"`
		Steps []struct {
			Name string `yaml:"name"`
			Uses string `yaml:"uses"`
			Run  string `yaml:"run"`
			If   string `yaml:"if"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
	Defaults struct {
		Run struct {
			Shell string `yaml:"shell"`
		} `yaml:"run"`
	} `yaml:"defaults"`
}

// sameRepoPR is the only `if:` the workflows use: steps that need an OIDC
// token run for pull requests from the repository itself, not from forks.
const sameRepoPR = "github.event.pull_request.head.repo.full_name == github.repository"

// runner runs a workflow's `run:` steps as written, in order, in bash
// with GitHub's flags for `shell: bash`, the way a runner would. The
// `uses:` steps (checkout, setup-go, AWS credentials) are what a runner
// provides; the test provides the same: the checked-out trees, Go, and
// for KMS and S3 a cosign key file and a directory store in the job's
// environment variables.
type runner struct {
	t         *testing.T
	workspace string
	vars      map[string]string // a value for each job env variable
	extraEnv  []string
}

// run executes job of file (relative to the ops tree) in dir, and returns
// the job summary and whether every step succeeded; the output of each
// step is logged.
func (r *runner) run(file, job, dir string) (summary string, ok bool) {
	t := r.t
	t.Helper()
	data, err := os.ReadFile(filepath.Join(r.workspace, "ops", file))
	if err != nil {
		t.Fatal(err)
	}
	var wf workflow
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if wf.Defaults.Run.Shell != "bash" {
		t.Fatalf("%s: defaults.run.shell is %q, want bash (pipefail)", file, wf.Defaults.Run.Shell)
	}
	j, found := wf.Jobs[job]
	if !found {
		t.Fatalf("%s has no job %s", file, job)
	}
	temp := t.TempDir()
	summaryFile := filepath.Join(temp, "summary.md")
	env := append(os.Environ(), r.extraEnv...)
	env = append(env, "CI=true", "GITHUB_ACTIONS=true", "RUNNER_TEMP="+temp, "GITHUB_STEP_SUMMARY="+summaryFile, "GITHUB_WORKSPACE="+r.workspace)
	for k, expr := range j.Env {
		v, known := r.vars[k]
		if !known {
			t.Fatalf("%s: job %s sets %s=%s, which this test gives no value: add it to the test", file, job, k, expr)
		}
		env = append(env, k+"="+v)
	}
	ok = true
	for i, st := range j.Steps {
		if st.Run == "" {
			continue
		}
		name := st.Name
		if name == "" {
			name = fmt.Sprintf("step %d", i+1)
		}
		if strings.Contains(st.Run, "${{") {
			t.Errorf("%s: step %q expands ${{ }} inside run: pass it through env (script injection)", file, name)
		}
		if st.If != "" && st.If != sameRepoPR {
			t.Fatalf("%s: step %q has if: %s, which this test does not know how to decide", file, name, st.If)
		}
		// GitHub runs `shell: bash` as bash --noprofile --norc -eo pipefail {0}.
		cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", st.Run)
		cmd.Dir = dir
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		t.Logf("%s / %s:\n%s", filepath.Base(file), name, out)
		if err != nil {
			t.Logf("%s / %s: %v", filepath.Base(file), name, err)
			ok = false
			break
		}
	}
	b, _ := os.ReadFile(summaryFile)
	return string(b), ok
}

// opsTree copies what a checkout of this repository holds that the
// workflows use (no .git: go build must not need it).
func opsTree(t *testing.T, dst string) {
	t.Helper()
	for _, name := range []string{"go.mod", "go.sum", "cmd", "pkg", "internal", "manifests", "policies", ".github", "docs"} {
		src := filepath.Join("..", name)
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel("..", p)
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o755)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// appRepo is the application repository: a clone of the real app
// (../shared/cohuron-pmo.bundle) whose main is at commit, one its web
// builds at (the publish-time build hook of manifests/prod.yaml runs).
func appRepo(t *testing.T, dir, commit string) {
	t.Helper()
	testenv.Run(t, "", testenv.GitEnv(""), "git", "clone", "-q", testenv.AppBundle(t), dir)
	testenv.Git(t, dir, "reset", "-q", "--hard", commit)
}

// TestWorkflows runs the three workflows' commands as written against a
// directory store: the application repository's publish (a new bundle), a
// pull request to manifests/ (check and preview, as the job summary), its
// merge (a config-only publish), and a pull request with a broken manifest.
func TestWorkflows(t *testing.T) {
	testenv.Bin(t, "git")
	ws := t.TempDir()
	ops := filepath.Join(ws, "ops")
	opsTree(t, ops)
	prodFile := filepath.Join(ops, "manifests", "prod.yaml")
	raw, err := os.ReadFile(prodFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.ParseEnvironment(prodFile, raw); err != nil {
		t.Fatal(err)
	}
	// A commit whose web builds and that has the schema files
	// manifests/prod.yaml lists (tools/db-import.sh's since 2025-11-29).
	const appCommit = "9828b435b147978472c0842437ab9ab2a209eb04"
	appRepo(t, filepath.Join(ws, "app"), appCommit)
	// The publish-time web build runs pnpm and node as an unprivileged
	// user, as on GitHub's runners (the test is root: COHURON_BUILD_USER).
	buildUser := testenv.AppUser(t)
	pnpmDir := testenv.PnpmForUser(t)
	node := testenv.Bin(t, "node")

	keys := filepath.Join(ws, "keys")
	pw := "COSIGN_PASSWORD=workflow-test"
	keygen := exec.Command(filepath.Join(binDir, "publisher"), "keygen", "--out", keys)
	keygen.Env = append(os.Environ(), pw)
	if out, err := keygen.CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	store := "file://" + filepath.Join(ws, "store")
	r := &runner{t: t, workspace: ws,
		vars: map[string]string{
			"COHURON_ENV": "prod", "COHURON_STORE": store, "AWS_REGION": "eu-west-1",
			// KMS stand-ins: the cosign key signs; its public half verifies.
			"COHURON_KEY": filepath.Join(keys, "cosign.key"), "COHURON_TRUST_KEY": filepath.Join(keys, "cosign.pub"),
			"APP_REF": appCommit,
		},
		extraEnv: append(testenv.GitEnv(""), pw, "COHURON_BUILD_USER="+buildUser,
			"PATH="+pnpmDir+":"+filepath.Dir(node)+":"+os.Getenv("PATH")),
	}

	// The application repository's workflow: a new bundle and release 1.
	sum, ok := r.run("docs/examples/app-publish.yml", "publish", ws)
	if !ok {
		t.Fatal("app-publish workflow failed")
	}
	for _, want := range []string{"### Published to prod", `"seq": 1`, `"bundleUploaded": true`, `"hook": "web"`, `"built": [`} {
		if !strings.Contains(sum, want) {
			t.Errorf("app-publish summary lacks %q:\n%s", want, sum)
		}
	}

	// A pull request changes one variable of the API's env file.
	edited := strings.Replace(string(raw), "WEB_ORIGIN: http://app.cohuron.com:5173", "WEB_ORIGIN: https://pmo.cohuron.com", 1)
	if edited == string(raw) {
		t.Fatal("manifests/prod.yaml has no WEB_ORIGIN line to change: update the test")
	}
	if err := os.WriteFile(prodFile, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, ok = r.run(".github/workflows/pr-check.yml", "check", ops)
	if !ok {
		t.Fatal("pr-check workflow failed on a good change")
	}
	for _, want := range []string{
		"ok    manifests/prod.yaml (Environment)",
		"### prod: what this change does to the hosts",
		"makes release 2 of prod, a config-only release",
		"Changed inputs: config.",
		"| envfiles | apps/api/.env | env file apps/api/.env changed: WEB_ORIGIN |",
		"| restart | cohuron-api | env file apps/api/.env changed: WEB_ORIGIN |",
		"| health | cohuron-api |",
		"| install |  | dependencies unchanged",
		"| build | web | inputs unchanged: artifact apps/web/dist carried over from seq 1 |",
		"| restart | cohuron-web | inputs unchanged: keeps running |",
		"| compose |  | compose file, env and images unchanged",
		"No host has reported for prod yet.",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("pr-check summary lacks %q:\n%s", want, sum)
		}
	}
	if steps, _, _ := strings.Cut(sum, "Not run:"); strings.Contains(steps, "| restart | cohuron-web |") || strings.Contains(steps, "| build | web |") {
		t.Errorf("preview rebuilds or restarts the web, whose inputs did not change:\n%s", sum)
	}
	if _, err := os.Stat(filepath.Join(ws, "store", "releases", "prod", "2.yaml")); err == nil {
		t.Fatal("the pull request check wrote a release")
	}

	// Merged: the config-only publish.
	sum, ok = r.run(".github/workflows/publish-config.yml", "publish", ops)
	if !ok {
		t.Fatal("publish-config workflow failed")
	}
	if !strings.Contains(sum, "### Published prod release 2 (config-only)") {
		t.Errorf("publish-config summary:\n%s", sum)
	}
	rel2, err := os.ReadFile(filepath.Join(ws, "store", "releases", "prod", "2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rel2), "WEB_ORIGIN: https://pmo.cohuron.com") {
		t.Errorf("release 2 does not carry the merged change:\n%s", rel2)
	}

	// A pull request with a literal secret: the check fails, with the
	// file and line in the job summary, and no preview runs.
	bad := strings.Replace(edited, "JWT_SECRET: {ssm: /cohuron/prod/jwt-secret}", "JWT_SECRET: hunter2hunter2hunter2", 1)
	if err := os.WriteFile(prodFile, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, ok = r.run(".github/workflows/pr-check.yml", "check", ops)
	if ok {
		t.Fatal("pr-check passed a manifest with a literal secret")
	}
	if !strings.Contains(sum, "manifests/prod.yaml:") || !strings.Contains(sum, "JWT_SECRET: literal secret") || strings.Contains(sum, "what this change does") {
		t.Errorf("pr-check summary for a literal secret:\n%s", sum)
	}
}
