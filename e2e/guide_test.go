package e2e

import (
	"bufio"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/agent"
	"github.com/cohuron/deploy/pkg/fault"
)

const guideFile = "../docs/operators-guide.md"

// guideCommand is one command of the guide's sh blocks.
type guideCommand struct {
	line     int
	section  int // the "## N." heading it is under
	text     string
	operator bool // in a `sh operator` block: needs AWS, providers, systemd or the old host
}

// guideCommands reads the guide's shell blocks. A block is ```sh (run by
// the test) or ```sh operator (listed, not run); any other sh-like info
// string fails, so nothing slips past unclassified.
func guideCommands(t *testing.T) []guideCommand {
	f, err := os.Open(guideFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []guideCommand
	section, n := 0, 0
	inBlock, operator, skipBlock := false, false, false
	var pending strings.Builder
	pendingLine := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case !inBlock && strings.HasPrefix(line, "## "):
			if num, _, ok := strings.Cut(strings.TrimPrefix(line, "## "), "."); ok {
				section, _ = strconv.Atoi(num)
			}
		case !inBlock && strings.HasPrefix(line, "```"):
			inBlock = true
			info := strings.TrimSpace(strings.TrimPrefix(line, "```"))
			switch info {
			case "sh":
				operator, skipBlock = false, false
			case "sh operator":
				operator, skipBlock = true, false
			case "", "yaml", "json", "text":
				skipBlock = true
			default:
				t.Fatalf("%s:%d: code block %q: use sh (run by this test) or sh operator (not runnable here)", guideFile, n, info)
			}
		case inBlock && strings.HasPrefix(line, "```"):
			inBlock = false
		case inBlock && !skipBlock:
			s := strings.TrimSpace(line)
			if pending.Len() == 0 && (s == "" || strings.HasPrefix(s, "#")) {
				continue
			}
			if pending.Len() == 0 {
				pendingLine = n
			}
			// A line ending in \ or | continues on the next.
			if strings.HasSuffix(s, `\`) || strings.HasSuffix(s, "|") {
				pending.WriteString(strings.TrimSuffix(s, `\`) + " ")
				continue
			}
			pending.WriteString(s)
			out = append(out, guideCommand{line: pendingLine, section: section, text: pending.String(), operator: operator})
			pending.Reset()
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// guideHost is a host the guide's agent commands run on, under ws.
type guideHost struct {
	name, dir, config, pm2Home string
}

func newGuideHost(t *testing.T, ws, name, store, policy string) *guideHost {
	dir := filepath.Join(ws, "hosts", name)
	h := &guideHost{name: name, dir: dir, config: filepath.Join(dir, "agent.yaml"), pm2Home: filepath.Join(dir, "pm2")}
	// Root and backups are the defaults, /opt/cohuron and
	// /opt/cohuron-backups, as the manifest says: each host's agent runs
	// in a mount namespace of its own where its directory is /opt.
	cfg := fmt.Sprintf(`store: %s
env: demo
policy: %s
stateDir: %s/var/lib/cohuron-agent
pm2Home: %s
legacyPM2Home: %[3]s/root/.pm2
secretsDir: %[5]s/secrets
hostId: %[6]s
`, store, policy, dir, h.pm2Home, ws, name)
	testenv.WriteFiles(t, dir, map[string]string{"agent.yaml": cfg})
	if err := os.MkdirAll(filepath.Join(dir, "opt"), 0o755); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestOperatorGuide runs every runnable command of docs/operators-guide.md,
// in order and as written (see the guide's "How this guide is tested").
func TestOperatorGuide(t *testing.T) {
	pm2 := testenv.Bin(t, "pm2")
	node := testenv.Bin(t, "node")
	tf := testenv.Bin(t, "terraform")
	testenv.Bin(t, "git")
	cmds := guideCommands(t)

	ws := t.TempDir()
	ops := filepath.Join(ws, "ops")
	opsTree(t, ops)
	store := "file://" + filepath.Join(ws, "store")
	port := testenv.FreePort(t)

	// The application: the sample app, next to the operations repository.
	app := filepath.Join(ws, "cohuron-app")
	if err := os.CopyFS(app, os.DirFS("../testdata/sampleapp")); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, app, "init", "-q", "-b", "main")
	testenv.Git(t, app, "add", "-A")
	testenv.Git(t, app, "commit", "-q", "-m", "sample app v1")

	// Its environment manifest, on a free port; the secret it references.
	demo, err := os.ReadFile("../testdata/demo/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFiles(t, ops, map[string]string{"manifests/demo.yaml": strings.ReplaceAll(string(demo), "4000", strconv.Itoa(port))})
	testenv.WriteFiles(t, ws, map[string]string{"secrets/etc/cohuron/demo/jwt-secret": "guide-jwt-secret\n"})

	// Two signing keys: the current one stands for the KMS key, the new one
	// for the key rotated in (section 4).
	pw := "COSIGN_PASSWORD=guide-test"
	for _, k := range []string{"old", "new"} {
		cmd := exec.Command(filepath.Join(binDir, "publisher"), "keygen", "--out", filepath.Join(ws, "keys", k))
		cmd.Env = append(os.Environ(), pw)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("keygen: %v\n%s", err, out)
		}
	}
	oldKey, newKey := filepath.Join(ws, "keys/old/cosign.key"), filepath.Join(ws, "keys/new/cosign.key")

	// The hosts' policy trusts both keys, as after step 2 of a rotation.
	policy := filepath.Join(ws, "policy.yaml")
	testenv.WriteFiles(t, ws, map[string]string{"policy.yaml": fmt.Sprintf(`apiVersion: deploy.cohuron.dev/v1
kind: TrustPolicy
metadata:
  name: demo
spec:
  signers:
    - name: ci-kms
      publicKeyFile: %s/keys/old/cosign.pub
    - name: ci-kms-next
      publicKeyFile: %s/keys/new/cosign.pub
  threshold: 1
  environments: [demo]
  branches: [main]
`, ws, ws)})

	// infra-tf as an applied root with local state: the outputs the guide
	// reads (the KMS key is the current cosign key file). terraform_version
	// is the oldest terraform the tests may run (install-test-deps' fallback):
	// terraform refuses state written by a newer one.
	testenv.WriteFiles(t, ops, map[string]string{"infra-tf/terraform.tfstate": fmt.Sprintf(`{
  "version": 4, "terraform_version": "1.5.7", "serial": 1, "lineage": "guide-test",
  "outputs": {
    "env": {"value": "demo", "type": "string"},
    "region": {"value": "eu-west-1", "type": "string"},
    "store_url": {"value": %q, "type": "string"},
    "kms_key_uri": {"value": %q, "type": "string"},
    "github_variables": {"value": {"COHURON_ENV": "demo", "COHURON_STORE": %q, "COHURON_KMS_KEY": %q, "AWS_REGION": "eu-west-1"}, "type": ["map", "string"]}
  },
  "resources": [], "check_results": null
}`, store, oldKey, store, oldKey)})

	// Hosts: a new one (sections 1, 3, 4, 5) and one laid out by the old
	// deploy script, a plain /opt/cohuron (section 2).
	fresh := newGuideHost(t, ws, "web-1", store, policy)
	old := newGuideHost(t, ws, "legacy-1", store, policy)
	if err := os.CopyFS(filepath.Join(old.dir, "opt", "cohuron"), os.DirFS("../testdata/sampleapp")); err != nil {
		t.Fatal(err)
	}
	hostOf := func(section int) *guideHost {
		if section == 2 {
			return old
		}
		return fresh
	}
	// Both run the API on the same port, as two hosts would: only one
	// host's PM2 runs at a time.
	stopPM2 := func(h *guideHost) {
		cmd := exec.Command(pm2, "kill")
		cmd.Env = []string{"PM2_HOME=" + h.pm2Home, "PATH=" + filepath.Dir(node) + ":/usr/bin:/bin", "HOME=" + ws}
		cmd.Run()
	}
	t.Cleanup(func() { stopPM2(fresh); stopPM2(old) })

	// sudo runs the command as is; cohuron-agent is the agent with the
	// current host's configuration, in a mount namespace where that host's
	// directory is /opt (the PM2 daemon it starts stays in it).
	testenv.MountNamespace(t)
	shims := filepath.Join(ws, "shims")
	testenv.WriteFiles(t, shims, map[string]string{
		"sudo": "#!/bin/sh\nexec \"$@\"\n",
		"cohuron-agent": "#!/bin/sh\nexec unshare --mount --propagation private sh -c " +
			"'mount --bind \"$GUIDE_HOST_OPT\" /opt && exec agent \"$@\" --config \"$GUIDE_AGENT_CONFIG\"' cohuron-agent \"$@\"\n",
	})
	for _, s := range []string{"sudo", "cohuron-agent"} {
		os.Chmod(filepath.Join(shims, s), 0o755)
	}
	path := strings.Join([]string{shims, binDir, filepath.Dir(tf), filepath.Dir(pm2), filepath.Dir(node), os.Getenv("PATH")}, ":")

	// What some commands must print, beyond exiting 0.
	expect := map[string][]string{
		"1 publisher publish --repo ../cohuron-app --ref main --terraform-dir infra-tf": {"published demo release seq 1"},
		"1 sudo cohuron-agent once":                                                          {"converged seq 1"},
		"1 terraform -chdir=infra-tf output -json github_variables":                          {`"COHURON_STORE"`},
		"2 sudo cohuron-agent plan":                                                          {"adopt the plain directory left by the old deploy script"},
		"2 sudo cohuron-agent once":                                                          {"converged seq 1"},
		"3 publisher status --terraform-dir infra-tf":                                        {"web-1", "legacy-1"},
		"3 publisher preview --terraform-dir infra-tf":                                       {"The manifest does not change the environment", "host web-1: seq 1"},
		"3 publisher rollback --terraform-dir infra-tf --to 1":                               {"seq 2"},
		"3 sudo cohuron-agent once":                                                          {"converged seq 2"},
		"5 publisher publish --terraform-dir infra-tf --key \"$OLD_KEY\" --key \"$NEW_KEY\"": {"seq 3"},
		"5 publisher publish --terraform-dir infra-tf --key \"$NEW_KEY\"":                    {"seq 4"},
	}
	seen := map[string]bool{}

	var notRun []string
	ran, section := 0, -1
	for _, c := range cmds {
		if c.operator {
			notRun = append(notRun, fmt.Sprintf("%s:%d: %s", filepath.Base(guideFile), c.line, c.text))
			continue
		}
		h := hostOf(c.section)
		if c.section != section {
			if section >= 0 && hostOf(section) != h {
				stopPM2(hostOf(section))
			}
			section = c.section
		}
		cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", c.text)
		cmd.Dir = ops
		cmd.Env = append(os.Environ(), append(testenv.GitEnv(""), pw, "PATH="+path, "HOME="+ws,
			"OLD_KEY="+oldKey, "NEW_KEY="+newKey, "GUIDE_AGENT_CONFIG="+h.config, "GUIDE_HOST_OPT="+filepath.Join(h.dir, "opt"))...)
		out, err := cmd.CombinedOutput()
		t.Logf("%s:%d [%s] $ %s\n%s", filepath.Base(guideFile), c.line, h.name, c.text, out)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", guideFile, c.line, c.text, err)
		}
		ran++
		key := fmt.Sprintf("%d %s", c.section, c.text)
		for _, want := range expect[key] {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s:%d: %s: output lacks %q", guideFile, c.line, c.text, want)
			}
		}
		if _, ok := expect[key]; ok {
			seen[key] = true
		}
	}
	for key := range expect {
		if !seen[key] {
			t.Errorf("the guide no longer has the command %q (section %s): update the test", key[2:], key[:1])
		}
	}
	if ran < 20 {
		t.Errorf("ran only %d commands of the guide", ran)
	}
	t.Logf("ran %d commands of the guide; not run here (operator only), %d:\n  %s", ran, len(notRun), strings.Join(notRun, "\n  "))
}

// TestGuideTables compares the guide's exit codes and metrics with the code.
func TestGuideTables(t *testing.T) {
	doc, err := os.ReadFile(guideFile)
	if err != nil {
		t.Fatal(err)
	}
	var codes []int
	for _, m := range regexp.MustCompile(`(?m)^\| (\d) \| `).FindAllStringSubmatch(string(doc), -1) {
		n, _ := strconv.Atoi(m[1])
		codes = append(codes, n)
	}
	want := []int{fault.ExitOK, fault.ExitError, fault.ExitUsage, fault.ExitRejected, fault.ExitConvergeFailed, fault.ExitRollbackFailed}
	if !slices.Equal(codes, want) {
		t.Errorf("exit codes in the guide %v, the programs use %v", codes, want)
	}

	rec := httptest.NewRecorder()
	agent.NewMetrics().ServeHTTP(rec, nil)
	served := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`).FindAllStringSubmatch(rec.Body.String(), -1) {
		served[m[1]] = m[2]
	}
	documented := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(cohuron_agent_[a-z_]+)` \\| (\\w+) \\|").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = m[2]
	}
	for name, kind := range served {
		if documented[name] != kind {
			t.Errorf("metric %s (%s) is served but the guide says %q", name, kind, documented[name])
		}
	}
	for name := range documented {
		if _, ok := served[name]; !ok {
			t.Errorf("the guide documents metric %s, which the agent does not serve", name)
		}
	}
}
