package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cohuron/deploy/internal/scriptcmd"
	"github.com/cohuron/deploy/internal/testenv"
)

// binDir holds the freshly built publisher and agent.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cohuron-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := exec.Command("go", "build", "-o", dir+"/", "../cmd/publisher", "../cmd/agent").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestAgent runs the agent scenarios against real MinIO and real PM2.
func TestAgent(t *testing.T) {
	pm2 := testenv.Bin(t, "pm2")
	node := testenv.Bin(t, "node")
	m := testenv.StartMinIO(t)
	sample, _ := filepath.Abs("../testdata/sampleapp")
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			path := strings.Join([]string{binDir, filepath.Dir(pm2), filepath.Dir(node), "/usr/local/bin", "/usr/bin", "/bin"}, ":")
			e.Setenv("PATH", path)
			e.Setenv("HOME", e.WorkDir)
			e.Setenv("SAMPLEAPP", sample)
			e.Setenv("COSIGN_PASSWORD", "e2e")
			for _, kv := range append(m.Env(), testenv.GitEnv("2026-01-02T03:04:05Z")...) {
				k, v, _ := strings.Cut(kv, "=")
				e.Setenv(k, v)
			}
			e.Setenv("AWS_CONFIG_FILE", filepath.Join(e.WorkDir, ".aws-config"))
			e.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(e.WorkDir, ".aws-credentials"))
			pm2Home := filepath.Join(e.WorkDir, "pm2")
			e.Setenv("PM2_HOME", pm2Home)
			for _, name := range []string{"API_PORT", "API_PORT2"} {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					return err
				}
				e.Setenv(name, fmt.Sprint(l.Addr().(*net.TCPAddr).Port))
				l.Close()
			}
			e.Defer(func() {
				cmd := exec.Command(pm2, "kill")
				cmd.Env = []string{"PM2_HOME=" + pm2Home, "PATH=" + path, "HOME=" + e.WorkDir}
				cmd.Run()
			})
			return nil
		},
		Cmds: scriptcmd.All(),
	})
}
