package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/store/s3store"
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
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mkrepo":   cmdMkrepo,
			"commit":   cmdCommit,
			"cosign":   cmdCosign,
			"exits":    cmdExits,
			"flipbyte": cmdFlipbyte,
			"mkbucket": cmdMkbucket,
		},
	}
}

// mkrepo DIR: a git repository on main holding the sample app.
func cmdMkrepo(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: mkrepo DIR")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.CopyFS(dir, os.DirFS(ts.Getenv("SAMPLEAPP"))))
	git(ts, dir, "init", "-q", "-b", "main")
	git(ts, dir, "add", "-A")
	git(ts, dir, "commit", "-q", "-m", "sample app v1")
}

// commit DIR MESSAGE: commit everything in DIR.
func cmdCommit(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: commit DIR MESSAGE")
	}
	dir := ts.MkAbs(args[0])
	git(ts, dir, "add", "-A")
	git(ts, dir, "commit", "-q", "-m", args[1])
}

func git(ts *testscript.TestScript, dir string, args ...string) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	for _, k := range []string{"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "PATH", "HOME"} {
		cmd.Env = append(cmd.Env, k+"="+ts.Getenv(k))
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		ts.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// cosign ARGS...: the real cosign CLI, in a network namespace of its own.
func cmdCosign(ts *testscript.TestScript, neg bool, args []string) {
	argv := strings.Split(ts.Getenv("COSIGN_ARGV"), "\x1f")
	if len(argv) < 2 {
		ts.Fatalf("cosign is only available in interop scripts")
	}
	err := ts.Exec(argv[0], append(argv[1:], args...)...)
	if neg != (err != nil) {
		ts.Fatalf("cosign %s: error %v, expected failure: %v", strings.Join(args, " "), err, neg)
	}
}

// exits CODE CMD ARGS...: run a command and require its exit code.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: exits CODE CMD ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", strings.Join(args[1:], " "), got, want)
	}
}

// flipbyte FILE OFFSET: flip the low bit of one byte (negative: from the end).
func cmdFlipbyte(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: flipbyte FILE OFFSET")
	}
	p := ts.MkAbs(args[0])
	data, err := os.ReadFile(p)
	ts.Check(err)
	off, err := strconv.Atoi(args[1])
	ts.Check(err)
	if off < 0 {
		off += len(data)
	}
	data[off] ^= 1
	ts.Check(os.WriteFile(p, data, 0o644))
}

// mkbucket NAME: create a bucket on the MinIO of this run.
func cmdMkbucket(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: mkbucket NAME")
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
		os.Setenv(k, ts.Getenv(k))
	}
	s, err := s3store.Open(context.Background(), args[0], "", s3store.Options{Endpoint: ts.Getenv("AWS_ENDPOINT_URL_S3")})
	ts.Check(err)
	if err := s.EnsureBucket(context.Background()); err != nil {
		ts.Fatalf("%v", fmt.Errorf("mkbucket: %w", err))
	}
}
