package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv/standin"
	"github.com/cohuron/deploy/pkg/proc"
)

// AppService is a service of the app's docker-compose.yml, which
// BuildAppStandins builds a stand-in image for.
type AppService struct {
	Name      string // service name in the compose file
	Container string // its container_name
	Image     string
	HostPorts []int // ports it publishes on the host
}

// AppServices are the services of the app's docker-compose.yml, identical
// at every commit since 7a06895c (before it there is no rabbitmq). Their
// container names and host ports are fixed: one such project per machine
// at a time (LockAppPorts).
var AppServices = []AppService{
	{Name: "db", Container: "pmo_db", Image: "postgis/postgis:16-3.4", HostPorts: []int{5434}},
	{Name: "redis", Container: "pmo_redis", Image: "redis:7.2-alpine", HostPorts: []int{6379}},
	{Name: "minio", Container: "pmo_minio", Image: "minio/minio:latest", HostPorts: []int{9000, 9001}},
	{Name: "mailhog", Container: "pmo_mailhog", Image: "mailhog/mailhog:v1.0.1", HostPorts: []int{1025, 8025}},
	{Name: "rabbitmq", Container: "pmo_rabbitmq", Image: "rabbitmq:3.13-management-alpine", HostPorts: []int{5672, 15672}},
}

// appNetwork is the network the app's compose file names (networks.default.name).
const appNetwork = "pmo_network"

// standinImage is how one stand-in image is laid out: which paths are the
// stand-in binary (the tools its healthcheck runs, where the real image
// has them) and the rest of its Dockerfile.
type standinImage struct {
	links    []string // paths that are the standin binary
	minio    bool     // /usr/bin/minio is the real MinIO
	upstream bool     // ENV with the port of the host's PostgreSQL
	tail     string   // follows FROM, COPY, ENV and LABEL
}

const standinPath = "/usr/local/bin/standin"

// standinImages are the Dockerfiles by service name. ENTRYPOINT carries
// the applet, so a compose `command:` only adds arguments (which the
// applets name and ignore).
var standinImages = map[string]standinImage{
	"db": {
		links:    []string{"/bin/sh", "/usr/bin/pg_isready", standinPath},
		upstream: true,
		tail:     "EXPOSE 5432\n" + `ENTRYPOINT ["` + standinPath + `", "db"]` + "\n",
	},
	"redis": {
		links: []string{"/bin/sh", "/usr/local/bin/redis-cli", standinPath},
		tail:  "WORKDIR /data\nEXPOSE 6379\n" + `ENTRYPOINT ["` + standinPath + `", "redis"]` + "\n",
	},
	"minio": {
		// The compose file's `command: server /data ...` follows the
		// entrypoint, as with the real image's entrypoint script.
		links: []string{"/bin/sh", "/usr/bin/curl"},
		minio: true,
		tail:  "ENV MINIO_UPDATE=off\nEXPOSE 9000\n" + `ENTRYPOINT ["/usr/bin/minio"]` + "\n" + `CMD ["server", "/data"]` + "\n",
	},
	"mailhog": {
		links: []string{"/bin/sh", "/usr/bin/wget", standinPath},
		tail:  "EXPOSE 1025 8025\n" + `ENTRYPOINT ["` + standinPath + `", "mailhog"]` + "\n",
	},
	"rabbitmq": {
		links: []string{"/bin/sh", "/usr/local/bin/rabbitmq-diagnostics", standinPath},
		tail:  "EXPOSE 5672 15672\n" + `ENTRYPOINT ["` + standinPath + `", "rabbitmq"]` + "\n",
	},
}

// BuildAppStandins builds, FROM scratch, an image for every service in
// AppServices under the real image's name, so that the app's
// docker-compose.yml runs unmodified on this engine: the db stand-in
// forwards to the host's PostgreSQL on pgPort (start it with
// PostgresOptions{ListenBridges: true}), MinIO is the real one (from the
// test cache), the others are testdata/standin (see package
// internal/testenv/standin). Each image has the tools its compose
// healthcheck runs. It fails t when a build fails and skips t (fails under
// CI) when minio or go is missing.
//
// The compose file publishes its ports on every host address (docker-proxy;
// compose v1 refuses a pre-made network that would bind them to
// loopback), so while it runs, whoever reaches this machine reaches the
// stand-ins, and through the db one the host's PostgreSQL as app/app:
// CreateAppDB's role is no superuser for that reason.
func (d *Docker) BuildAppStandins(t testing.TB, pgPort int) {
	t.Helper()
	bin := standinBinary(t)
	minio := Bin(t, "minio")
	var dirs []string
	for _, svc := range AppServices {
		img, ok := standinImages[svc.Name]
		if !ok {
			t.Fatalf("no stand-in image for service %s", svc.Name)
		}
		dir := t.TempDir()
		rootfs := filepath.Join(dir, "rootfs")
		// os.TempDir is /tmp, which scratch lacks.
		if err := os.MkdirAll(filepath.Join(rootfs, "tmp"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777); err != nil {
			t.Fatal(err)
		}
		for _, p := range img.links {
			if err := linkOrCopy(bin, filepath.Join(rootfs, p)); err != nil {
				t.Fatalf("laying out the %s image: %v", svc.Image, err)
			}
		}
		if img.minio {
			if err := linkOrCopy(minio, filepath.Join(rootfs, "usr/bin/minio")); err != nil {
				t.Fatalf("laying out the %s image: %v", svc.Image, err)
			}
		}
		dockerfile := "FROM scratch\nCOPY rootfs/ /\n" +
			"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
		if img.upstream {
			dockerfile += fmt.Sprintf("ENV %s=%d\n", standin.UpstreamPortVar, pgPort)
		}
		dockerfile += "LABEL com.cohuron.standin=" + svc.Name + "\n" + img.tail
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	// In parallel: the builds are independent, and MinIO's (a 150 MB
	// context) alone takes seconds.
	errs := make([]error, len(AppServices))
	var wg sync.WaitGroup
	for i, svc := range AppServices {
		wg.Go(func() {
			_, err := proc.Run(context.Background(), proc.Cmd{Name: "docker", Args: []string{"build", "-q", "-t", svc.Image, dirs[i]},
				Env: append(append([]string{}, d.Env...), "DOCKER_BUILDKIT=0"), Timeout: 5 * time.Minute, MaxOutput: 64 << 10})
			if err != nil {
				errs[i] = fmt.Errorf("building the stand-in for %s: %w", svc.Image, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// linkOrCopy makes dst (and its directories) the file src: a hard link
// when both are on one file system, else a copy.
func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	// A link to a symlink would be a symlink in the image, dangling there.
	src, err := filepath.EvalSymlinks(src)
	if err != nil {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

// standinBuild caches the standin binary for the test process: it takes
// seconds to build and never changes within one run. Not a sync.Once: a
// build that failed one test is tried again by the next.
var standinBuild struct {
	sync.Mutex
	path string
}

// standinPrefix names the temp dirs of the binary; the process id follows,
// so later processes can remove what finished ones left.
const standinPrefix = "cohuron-standin-"

// standinBinary builds testdata/standin statically, once per test process,
// into a temp dir that outlives the test (a later process removes it).
func standinBinary(t testing.TB) string {
	t.Helper()
	standinBuild.Lock()
	defer standinBuild.Unlock()
	if standinBuild.path != "" {
		if _, err := os.Stat(standinBuild.path); err == nil {
			return standinBuild.path
		}
	}
	removeStaleStandins()
	root := RepoRoot(t)
	goBin := Bin(t, "go")
	dir, err := os.MkdirTemp("", standinPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "standin")
	if out, err := RunErr(root, []string{"CGO_ENABLED=0"}, goBin, "build", "-buildvcs=false", "-trimpath",
		"-o", path, "./testdata/standin"); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("building testdata/standin: %v\n%s", err, out)
	}
	standinBuild.path = path
	return path
}

// removeStaleStandins removes the binaries of test processes that have
// exited.
func removeStaleStandins() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), standinPrefix+"*"))
	for _, d := range dirs {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), standinPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// LockAppPorts makes t, until it ends, the only test on this machine (in
// any test process) that runs the app's compose file, whose container
// names and host ports are fixed; then it checks that every port of
// AppServices is free and skips t (fails under CI) naming the first that
// is not. Call it before starting anything that uses them,
// so that its unlock, a cleanup, runs last.
func LockAppPorts(t testing.TB) {
	t.Helper()
	path := filepath.Join(os.TempDir(), "cohuron-app-ports.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("opening the lock of the app's host ports: %v", err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			t.Fatalf("locking %s: %v", path, err)
		}
		t.Logf("waiting for %s: another test runs the app's compose file", path)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatalf("locking %s: %v", path, err)
		}
	}
	for _, svc := range AppServices {
		for _, port := range svc.HostPorts {
			// Every address, as docker-proxy will bind it.
			l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
			if err != nil {
				unavailable(t, fmt.Sprintf("host port %d, which the app's compose file publishes for %s, is taken: %v", port, svc.Name, err))
			}
			l.Close()
		}
	}
}

// AppBundle returns the path of the app's repository bundle,
// ../shared/cohuron-pmo.bundle next to this repository, or skips t (fails
// under CI) when it is not there.
func AppBundle(t testing.TB) string {
	t.Helper()
	p := filepath.Join(filepath.Dir(RepoRoot(t)), "shared", "cohuron-pmo.bundle")
	if _, err := os.Stat(p); err != nil {
		unavailable(t, fmt.Sprintf("the app's repository bundle is not where this repository expects it (%v); tests that use the real app need ../shared/cohuron-pmo.bundle", err))
	}
	return p
}

// AppClone is a bare clone of AppBundle in a temp dir.
func AppClone(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pmo.git")
	Run(t, "", GitEnv(""), "git", "clone", "-q", "--bare", AppBundle(t), dir)
	return dir
}

// AppTree writes paths (e.g. db tools) of the app at rev, from clone
// (AppClone), into a new temp dir, and returns that dir.
func AppTree(t testing.TB, clone, rev string, paths ...string) string {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"-c", `git archive -o "$DEST/.app.tar" "$0" "$@" && tar -x -C "$DEST" -f "$DEST/.app.tar" && rm "$DEST/.app.tar"`, rev}, paths...)
	Run(t, clone, append(GitEnv(""), "DEST="+dir), "sh", args...)
	return dir
}

// AppFile returns a file of the app's repository at rev (a commit or
// branch of AppBundle), read from a bare clone in a temp dir.
func AppFile(t testing.TB, rev, name string) []byte {
	t.Helper()
	bundle := AppBundle(t)
	dir := AppClone(t)
	cmd := exec.Command("git", "show", rev+":"+name)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), GitEnv("")...)
	out, err := cmd.Output() // stdout only: the file, without git's warnings
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("git show %s:%s in a clone of %s: %v\n%s", rev, name, bundle, err, stderr)
	}
	return out
}

// AppSchemaOrder is the real app's schema import order as
// ../shared/cohuron-schema-order.txt (next to the bundle) lists it, one
// file a line, # comments skipped; missing, t is skipped (fails under CI).
func AppSchemaOrder(t testing.TB) []string {
	t.Helper()
	p := filepath.Join(filepath.Dir(AppBundle(t)), "cohuron-schema-order.txt")
	data, err := os.ReadFile(p)
	if err != nil {
		Missing(t, "the real app's schema order ("+p+")", err.Error())
	}
	var names []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			names = append(names, l)
		}
	}
	return names
}

var executeSQL = regexp.MustCompile(`execute_sql "\$DB_PATH/([^"]+)"`)

// ImportScriptOrder is the order the real app's tools/db-import.sh (its
// content, script) imports the schema files in: its execute_sql lines,
// as paths from the repository root (db/...), each once.
func ImportScriptOrder(script []byte) []string {
	var names []string
	seen := map[string]bool{}
	for _, m := range executeSQL.FindAllSubmatch(script, -1) {
		if n := "db/" + string(m[1]); !seen[n] {
			names = append(names, n)
			seen[n] = true
		}
	}
	return names
}
