package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mkrepo":   cmdMkrepo,
			"commit":   cmdCommit,
			"subst":    cmdSubst,
			"exits":    cmdExits,
			"httpget":  cmdHTTPGet,
			"mkbucket": cmdMkbucket,
			"putobj":   cmdPutobj,
			"waitfor":  cmdWaitfor,
			"rmobj":    cmdRmobj,
			"sleep": func(ts *testscript.TestScript, neg bool, args []string) {
				d, err := time.ParseDuration(args[0])
				ts.Check(err)
				time.Sleep(d)
			},
		},
	})
}

// mkrepo DIR: a git repository on main holding the sample app.
func cmdMkrepo(ts *testscript.TestScript, neg bool, args []string) {
	dir := ts.MkAbs(args[0])
	ts.Check(os.CopyFS(dir, os.DirFS(ts.Getenv("SAMPLEAPP"))))
	git(ts, dir, "init", "-q", "-b", "main")
	git(ts, dir, "add", "-A")
	git(ts, dir, "commit", "-q", "-m", "sample app v1")
}

// commit DIR MESSAGE
func cmdCommit(ts *testscript.TestScript, neg bool, args []string) {
	dir := ts.MkAbs(args[0])
	git(ts, dir, "add", "-A")
	git(ts, dir, "commit", "-q", "-m", args[1])
}

// subst SRC DST: copy SRC to DST expanding $VARS from the script's env.
func cmdSubst(ts *testscript.TestScript, neg bool, args []string) {
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	out := os.Expand(string(data), ts.Getenv)
	ts.Check(os.MkdirAll(filepath.Dir(ts.MkAbs(args[1])), 0o755))
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(out), 0o644))
}

// exits CODE CMD ARGS...: run a command and require its exit code.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
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

// waitfor URL SUBSTRING TIMEOUT: poll a loopback URL until its body holds SUBSTRING.
func cmdWaitfor(ts *testscript.TestScript, neg bool, args []string) {
	limit, err := time.ParseDuration(args[2])
	ts.Check(err)
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		if resp, err := http.Get(args[0]); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(body)
			if strings.Contains(last, args[1]) {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("%s did not show %q within %s; last: %s", args[0], args[1], limit, last)
}

// httpget URL: GET on loopback; the body goes to stdout.
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	resp, err := http.Get(args[0])
	if neg {
		if err == nil {
			resp.Body.Close()
			ts.Fatalf("GET %s answered %s; expected no answer", args[0], resp.Status)
		}
		return
	}
	ts.Check(err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Fprintf(ts.Stdout(), "%s\n%s\n", resp.Status, body)
}

func s3(ts *testscript.TestScript, bucket string) *s3store.Store {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
		os.Setenv(k, ts.Getenv(k))
	}
	s, err := s3store.Open(context.Background(), bucket, "e2e", s3store.Options{Endpoint: ts.Getenv("AWS_ENDPOINT_URL_S3")})
	ts.Check(err)
	return s
}

// rmobj BUCKET KEY...: delete objects under the e2e prefix (to fake a store rolled back by an attacker).
func cmdRmobj(ts *testscript.TestScript, neg bool, args []string) {
	s := s3(ts, args[0])
	for _, k := range args[1:] {
		ts.Check(s.Delete(context.Background(), k))
	}
}

// mkbucket NAME
func cmdMkbucket(ts *testscript.TestScript, neg bool, args []string) {
	ts.Check(s3(ts, args[0]).EnsureBucket(context.Background()))
}

// putobj BUCKET KEY CONTENT: overwrite an object under the e2e prefix (to fake a replay).
func cmdPutobj(ts *testscript.TestScript, neg bool, args []string) {
	body := args[2] + "\n"
	ts.Check(s3(ts, args[0]).Put(context.Background(), args[1], strings.NewReader(body), int64(len(body))))
}

func git(ts *testscript.TestScript, dir string, args ...string) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(testenv.GitEnv("2026-01-02T03:04:05Z"), "PATH="+ts.Getenv("PATH"), "HOME="+ts.Getenv("HOME"))
	if out, err := cmd.CombinedOutput(); err != nil {
		ts.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
