package testenv

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/pkg/envvars"
	"github.com/cohuron/deploy/pkg/proc"
)

// InCI reports whether missing components must fail tests.
func InCI() bool {
	v := strings.ToLower(envvars.CI.Get())
	return v == "true" || v == "1"
}

// Missing skips t, or fails it under CI, because component is unavailable.
func Missing(t testing.TB, component, why string) {
	t.Helper()
	unavailable(t, fmt.Sprintf("%s is not available (%s); run `make test` (scripts/install-test-deps.sh) to install it", component, why))
}

// unavailable skips t with msg, or fails it under CI, for what a test
// needs but cannot have here.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	if InCI() {
		t.Fatal("CI=true: " + msg)
	}
	t.Skip(msg)
}

// CacheBin is where scripts/install-test-deps.sh puts minio and cosign.
func CacheBin() string {
	if d := envvars.TestBin.Get(); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "cohuron-test", "bin")
}

// LookBin finds a binary in the test cache or on PATH.
func LookBin(name string) (string, error) {
	p := filepath.Join(CacheBin(), name)
	if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
		return p, nil
	}
	return exec.LookPath(name)
}

// Bin finds a binary or skips/fails t.
func Bin(t testing.TB, name string) string {
	t.Helper()
	p, err := LookBin(name)
	if err != nil {
		Missing(t, name, err.Error())
	}
	return p
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// MinIO is a running MinIO server.
type MinIO struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
}

// Env returns the AWS variables that point the SDK and CLIs at this server.
func (m *MinIO) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + m.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + m.SecretKey,
		"AWS_REGION=us-east-1",
		"AWS_ENDPOINT_URL_S3=" + m.Endpoint,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// SetEnv sets Env() for the duration of t (not for parallel tests).
func (m *MinIO) SetEnv(t testing.TB) {
	for _, kv := range m.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
}

// StartMinIO starts a fresh MinIO in a temp dir, stopped when t ends.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin := Bin(t, "minio")
	dir := t.TempDir()
	port := FreePort(t)
	m := &MinIO{
		Endpoint:  fmt.Sprintf("http://127.0.0.1:%d", port),
		AccessKey: "test" + rand.Text()[:8],
		SecretKey: rand.Text(),
	}
	logf, err := os.Create(filepath.Join(dir, "minio.log"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := proc.Start(context.Background(), proc.Cmd{
		Name: bin,
		Args: []string{"server", filepath.Join(dir, "data"),
			"--address", fmt.Sprintf("127.0.0.1:%d", port),
			"--console-address", fmt.Sprintf("127.0.0.1:%d", FreePort(t)), "--quiet"},
		Env: append(os.Environ(),
			"MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "HOME="+dir),
		Output: logf,
	})
	if err != nil {
		t.Fatalf("starting minio: %v", err)
	}
	t.Cleanup(func() {
		p.Stop(10 * time.Second)
		logf.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.Endpoint+"/minio/health/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m
			}
		}
		select {
		case <-p.Done():
			log, _ := os.ReadFile(filepath.Join(dir, "minio.log"))
			t.Fatalf("minio exited early: %v\n%s", p.Wait(), log)
		case <-ctx.Done():
			log, _ := os.ReadFile(filepath.Join(dir, "minio.log"))
			t.Fatalf("minio not ready after 60s\n%s", log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Run runs a command for a test and returns its combined output; a
// non-zero exit fails t.
func Run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := RunErr(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// RunErr is Run without failing.
func RunErr(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// MountNamespace checks that commands can run in a mount namespace of
// their own (unshare --mount, which needs root), for tests that give
// each simulated host its own /opt; otherwise it skips t (fails under CI).
func MountNamespace(t testing.TB) {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		Missing(t, "unshare (util-linux)", err.Error())
	}
	if out, err := exec.Command(unshare, "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
		Missing(t, "a mount namespace (unshare --mount needs root)", fmt.Sprintf("%v: %s", err, out))
	}
}

// Cosign returns argv that runs the cosign CLI in a fresh network
// namespace: cosign looks up its TUF root online even with
// --insecure-ignore-tlog, and tests must send nothing off this machine.
func Cosign(t testing.TB) []string {
	t.Helper()
	bin := Bin(t, "cosign")
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		Missing(t, "unshare (util-linux)", err.Error())
	}
	if out, err := exec.Command(unshare, "--net", "true").CombinedOutput(); err != nil {
		Missing(t, "a network namespace for cosign (unshare --net needs root)", fmt.Sprintf("%v: %s", err, out))
	}
	return []string{unshare, "--net", bin}
}
