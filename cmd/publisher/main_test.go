package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cohuron/deploy/internal/scriptcmd"
	"github.com/cohuron/deploy/internal/testenv"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"publisher": func() { os.Exit(NewCLI(os.Stdin, os.Stdout, os.Stderr, time.Now).Run(os.Args[1:])) },
	})
}

// TestScripts runs the end-to-end scripts that need only git and the
// publisher binary itself.
func TestScripts(t *testing.T) {
	testscript.Run(t, params(t, "testdata/script", nil))
}

// TestInterop runs the scripts against a real MinIO and the real cosign CLI.
func TestInterop(t *testing.T) {
	cosign := testenv.Cosign(t)
	m := testenv.StartMinIO(t)
	env := append(m.Env(), "COSIGN_ARGV="+strings.Join(cosign, "\x1f"))
	testscript.Run(t, params(t, "testdata/interop", env))
}

// TestTerraform runs the scripts that read an applied infra-tf root
// through the real terraform binary (--terraform-dir).
func TestTerraform(t *testing.T) {
	tf := testenv.Bin(t, "terraform")
	testscript.Run(t, params(t, "testdata/terraform", []string{"PATH=" + filepath.Dir(tf) + string(filepath.ListSeparator) + os.Getenv("PATH")}))
}

func params(t *testing.T, dir string, extraEnv []string) testscript.Params {
	sample, err := filepath.Abs("../../testdata/sampleapp")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("../..")
	return testscript.Params{
		Dir:                 dir,
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("SAMPLEAPP", sample)
			e.Setenv("REPO_ROOT", root)
			e.Setenv("HOME", e.WorkDir)
			for _, kv := range testenv.GitEnv("2026-01-02T03:04:05Z") {
				k, v, _ := strings.Cut(kv, "=")
				e.Setenv(k, v)
			}
			for _, kv := range extraEnv {
				k, v, _ := strings.Cut(kv, "=")
				e.Setenv(k, v)
			}
			e.Setenv("AWS_CONFIG_FILE", filepath.Join(e.WorkDir, ".aws-config"))
			e.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(e.WorkDir, ".aws-credentials"))
			return nil
		},
		Cmds: scriptcmd.All(),
	}
}
