package scriptcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cohuron/deploy/pkg/store/s3store"
)

// Cmd is a testscript command.
type Cmd = func(ts *testscript.TestScript, neg bool, args []string)

// All returns every shared command.
func All() map[string]Cmd {
	return map[string]Cmd{
		"mkrepo": Mkrepo, "commit": Commit, "exits": Exits, "flipbyte": Flipbyte, "subst": Subst,
		"cosign": Cosign, "httpget": HTTPGet, "waitfor": Waitfor, "sleep": Sleep,
		"mkbucket": Mkbucket, "putobj": Putobj, "rmobj": Rmobj,
	}
}

// Mkrepo DIR: a git repository on main holding $SAMPLEAPP.
func Mkrepo(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: mkrepo DIR")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.CopyFS(dir, os.DirFS(ts.Getenv("SAMPLEAPP"))))
	git(ts, dir, "init", "-q", "-b", "main")
	git(ts, dir, "add", "-A")
	git(ts, dir, "commit", "-q", "-m", "sample app v1")
}

// Commit DIR MESSAGE: commit everything in DIR.
func Commit(ts *testscript.TestScript, neg bool, args []string) {
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

// Exits CODE CMD ARGS...: run a command and require its exit code.
func Exits(ts *testscript.TestScript, neg bool, args []string) {
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

// Flipbyte FILE OFFSET: flip the low bit of one byte (negative: from the end).
func Flipbyte(ts *testscript.TestScript, neg bool, args []string) {
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

// Subst SRC DST: copy SRC to DST expanding $VARS from the script's env.
func Subst(ts *testscript.TestScript, neg bool, args []string) {
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	ts.Check(os.MkdirAll(filepath.Dir(ts.MkAbs(args[1])), 0o755))
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(os.Expand(string(data), ts.Getenv)), 0o644))
}

// Cosign ARGS...: the real cosign CLI, in a network namespace of its own
// ($COSIGN_ARGV, set by the test from testenv.Cosign).
func Cosign(ts *testscript.TestScript, neg bool, args []string) {
	argv := strings.Split(ts.Getenv("COSIGN_ARGV"), "\x1f")
	if len(argv) < 2 {
		ts.Fatalf("cosign is only available in interop scripts")
	}
	err := ts.Exec(argv[0], append(argv[1:], args...)...)
	if neg != (err != nil) {
		ts.Fatalf("cosign %s: error %v, expected failure: %v", strings.Join(args, " "), err, neg)
	}
}

// HTTPGet URL: GET on loopback; status and body go to stdout.
func HTTPGet(ts *testscript.TestScript, neg bool, args []string) {
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

// Waitfor URL SUBSTRING TIMEOUT: poll a loopback URL until its body holds SUBSTRING.
func Waitfor(ts *testscript.TestScript, neg bool, args []string) {
	limit, err := time.ParseDuration(args[2])
	ts.Check(err)
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		if resp, err := http.Get(args[0]); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if last = string(body); strings.Contains(last, args[1]) {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("%s did not show %q within %s; last: %s", args[0], args[1], limit, last)
}

// Sleep DURATION
func Sleep(ts *testscript.TestScript, neg bool, args []string) {
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	time.Sleep(d)
}

func s3(ts *testscript.TestScript, bucket, prefix string) *s3store.Store {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
		os.Setenv(k, ts.Getenv(k))
	}
	s, err := s3store.Open(context.Background(), bucket, prefix, s3store.Options{Endpoint: ts.Getenv("AWS_ENDPOINT_URL_S3")})
	ts.Check(err)
	return s
}

// Mkbucket NAME: create a bucket on the MinIO of this run.
func Mkbucket(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: mkbucket NAME")
	}
	ts.Check(s3(ts, args[0], "").EnsureBucket(context.Background()))
}

// Putobj BUCKET KEY CONTENT: overwrite an object under the e2e prefix (a forged latest hint).
func Putobj(ts *testscript.TestScript, neg bool, args []string) {
	body := args[2] + "\n"
	ts.Check(s3(ts, args[0], "e2e").Put(context.Background(), args[1], strings.NewReader(body), int64(len(body))))
}

// Rmobj BUCKET KEY...: delete objects under the e2e prefix (a store rolled back by an attacker).
func Rmobj(ts *testscript.TestScript, neg bool, args []string) {
	s := s3(ts, args[0], "e2e")
	for _, k := range args[1:] {
		ts.Check(s.Delete(context.Background(), k))
	}
}
