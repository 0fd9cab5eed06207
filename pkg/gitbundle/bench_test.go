package gitbundle_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/gitbundle"
)

// realisticRepo makes a repository shaped like a pnpm monorepo: thousands
// of source files (compressible text), some binary assets, tens of MB,
// cloned so objects are packed as after a CI checkout.
func realisticRepo(b *testing.B) string {
	b.Helper()
	src := b.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("const let function return import export from async await if else for while true false null undefined this new class extends interface type string number boolean Promise resolve reject request response fastify schema project task business")
	files := map[string]string{}
	for i := range 3000 {
		var sb strings.Builder
		lines := 50 + rng.IntN(300)
		for range lines {
			for w := 0; w < 4+rng.IntN(8); w++ {
				sb.WriteString(words[rng.IntN(len(words))])
				sb.WriteByte(' ')
			}
			fmt.Fprintf(&sb, "%d;\n", rng.IntN(100000))
		}
		files[fmt.Sprintf("apps/%s/src/mod%02d/file%04d.ts", []string{"api", "web", "worker"}[i%3], i%40, i)] = sb.String()
	}
	for i := range 24 {
		buf := make([]byte, 400<<10)
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		files[fmt.Sprintf("apps/web/public/assets/img%02d.png", i)] = string(buf)
	}
	files["package.json"] = `{"name":"bench"}`
	files["pnpm-lock.yaml"] = "lockfileVersion: '9.0'\n"
	testenv.WriteFiles(b, src, files)
	testenv.Run(b, src, testenv.GitEnv(""), "git", "init", "-q", "-b", "main")
	testenv.Run(b, src, testenv.GitEnv(""), "git", "add", "-A")
	testenv.Run(b, src, testenv.GitEnv(""), "git", "commit", "-q", "-m", "bench")
	clone := filepath.Join(b.TempDir(), "clone")
	testenv.Run(b, "", testenv.GitEnv(""), "git", "clone", "-q", "--no-local", src, clone)
	return clone
}

// BenchmarkBundleVsBaselines builds the same commit three ways per
// iteration, interleaved so machine noise hits all three alike, and
// reports each time and our ratio to each baseline:
//   - publisher: bundle.Build (reproducible)
//   - git-archive: git archive --format=tar.gz (not reproducible across git versions' gzip)
//   - tar-czf: the old deploy script's tar -czf of the working tree
func BenchmarkBundleVsBaselines(b *testing.B) {
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Missing(b, "git", err.Error())
	}
	repo := realisticRepo(b)
	out := filepath.Join(b.TempDir(), "out.tar.gz")
	var ours, gitArchive, tarCzf time.Duration
	var size int64
	timeCmd := func(name string, args ...string) time.Duration {
		cmd := exec.Command(name, args...)
		cmd.Dir = repo
		start := time.Now()
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%s", name, err, o)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		f, err := os.Create(out)
		if err != nil {
			b.Fatal(err)
		}
		res, err := gitbundle.Build(context.Background(), gitbundle.Options{Repo: repo, Ref: "HEAD"}, f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
		size = res.Size
		gitArchive += timeCmd("git", "archive", "--format=tar.gz", "-o", out+".git.tar.gz", "HEAD")
		tarCzf += timeCmd("tar", "-czf", out+".tar.tar.gz", "--exclude=.git", "--exclude=node_modules", ".")
	}
	n := float64(b.N)
	b.ReportMetric(ours.Seconds()/n*1000, "publisher-ms")
	b.ReportMetric(gitArchive.Seconds()/n*1000, "git-archive-ms")
	b.ReportMetric(tarCzf.Seconds()/n*1000, "tar-czf-ms")
	b.ReportMetric(ours.Seconds()/gitArchive.Seconds(), "x-git-archive")
	b.ReportMetric(ours.Seconds()/tarCzf.Seconds(), "x-tar-czf")
	b.ReportMetric(float64(size)/(1<<20), "bundle-MiB")
}
