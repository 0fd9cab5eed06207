package realapp

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// oldDeployerScript is the host script of the Lambda deployer this system
// replaces, taken from the app's own infra-tf/modules/lambda-deployer/
// lambda_function.py (the f-string it sends over SSM), rendered for this
// host. What differs from running it on EC2, and nothing else:
//   - `aws s3 cp s3://BUCKET/KEY code-deployment.tar.gz` is a copy of the
//     uploaded tarball (no AWS here);
//   - /tmp is this host's scratch directory, /opt/cohuron and
//     /opt/cohuron-backups are this host's;
//   - no sudo (the test is root, as SSM's RunShellScript is), and the tree
//     is chowned to root:root (there is no ubuntu user);
//   - `docker compose` is `docker-compose` when the engine has no compose
//     v2 plugin;
//   - its fixed sleeps are left out (`sleep 5`, `sleep 15`): they only
//     wait, and would count against the old deployer.
//
// pm2 is root's PM2 of this host (PM2_HOME), as the script's pm2 is root's.
func (h *realHost) oldDeployerScript(tarball string) string {
	h.t.Helper()
	src, err := os.ReadFile(filepath.Join(h.app, "infra-tf/modules/lambda-deployer/lambda_function.py"))
	if err != nil {
		h.t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)deployment_script = f"""(.*?)"""`).FindSubmatch(src)
	if m == nil {
		h.t.Fatal("lambda_function.py: no deployment_script f-string")
	}
	script := renderFString(string(m[1]), map[string]string{
		"bucket_name": "cohuron-code", "object_key": "code/cohuron.tar.gz",
		"EC2_INSTANCE_ID": "i-realapp", "DEPLOY_PATH": "/opt/cohuron", "PROJECT_NAME": "cohuron",
	})
	tmp := filepath.Join(h.dir, "tmp")
	os.MkdirAll(tmp, 0o755)
	replace := func(old, new string) {
		if !strings.Contains(script, old) {
			h.t.Fatalf("the old deployer's script no longer has %q", old)
		}
		script = strings.ReplaceAll(script, old, new)
	}
	replace("aws s3 cp s3://cohuron-code/code/cohuron.tar.gz code-deployment.tar.gz", "cp @TARBALL@ code-deployment.tar.gz")
	replace("/tmp", tmp)
	replace("@TARBALL@", tarball)
	replace("/opt/cohuron", h.root) // /opt/cohuron-backups too
	replace("sudo ", "")
	replace("ubuntu:ubuntu", "root:root")
	script = regexp.MustCompile(`(?m)^(\s*)sleep [0-9]+$`).ReplaceAllString(script, "$1: # sleep left out")
	if _, err := os.Stat("/usr/libexec/docker/cli-plugins/docker-compose"); err != nil {
		replace("docker compose", "docker-compose")
	}
	return script
}

// renderFString renders a Python f-string body: {name} from vals, {{ and
// }} as braces.
func renderFString(s string, vals map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "{{"):
			b.WriteByte('{')
			i++
		case strings.HasPrefix(s[i:], "}}"):
			b.WriteByte('}')
			i++
		case s[i] == '{':
			end := strings.IndexByte(s[i:], '}')
			name := s[i+1 : i+end]
			v, ok := vals[name]
			if !ok {
				panic("f-string field " + name + " has no value")
			}
			b.WriteString(v)
			i += end
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// appTarball is the tarball the old flow uploaded: the app's tree at
// commit (git archive, as `tar` of a clean checkout).
func (h *realHost) appTarball(commit string) string {
	h.t.Helper()
	p := filepath.Join(h.dir, "upload", strings.NewReplacer("^", "p", "~", "t").Replace(commit)+".tar.gz")
	os.MkdirAll(filepath.Dir(p), 0o755)
	c := h.cmd("git", "archive", "--format=tar.gz", "-o", p, commit)
	c.Dir = h.app
	if out, err := c.CombinedOutput(); err != nil {
		h.t.Fatalf("git archive %s: %v\n%s", commit, err, out)
	}
	return p
}

// oldDeploy runs the old deployer's host steps for commit and returns how
// long until the new code answers: the script ended and the API's
// /api/health answers 200. (The script never starts the web: it tests
// for apps/web/package.json from inside apps/api, where it just started
// the API, so the web's block is skipped.)
func (h *realHost) oldDeploy(commit string) time.Duration {
	h.t.Helper()
	tarball := h.appTarball(commit)
	script := h.oldDeployerScript(tarball)
	path := filepath.Join(h.dir, "tmp", "deploy.sh")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		h.t.Fatal(err)
	}
	start := time.Now()
	c := h.cmd("bash", path)
	c.Env = append(c.Env, "PM2_HOME="+h.legacyPM2, "PM2_DISABLE_VERSION_CHECK=true")
	logPath := filepath.Join(h.dir, "tmp", "deploy-"+filepath.Base(tarball)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		h.t.Fatal(err)
	}
	c.Stdout, c.Stderr = logf, logf
	err = c.Run()
	logf.Close()
	if err != nil {
		log, _ := os.ReadFile(logPath)
		h.t.Fatalf("the old deployer's script for %s: %v\n%s", commit, err, tail(string(log), 6000))
	}
	h.waitFor("the old deployer's API answering", 3*time.Minute, func() (bool, string) {
		if code, body := get(fmt.Sprintf("http://127.0.0.1:%d/api/health", apiPort)); code != 200 {
			return false, fmt.Sprintf("API: %d %s", code, firstLine(body))
		}
		return true, ""
	})
	return time.Since(start)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
