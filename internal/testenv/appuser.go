package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// AppUserName is the unprivileged system account tests run install
// scripts and hooks as.
const AppUserName = "cohuron-app"

// AppUser returns the name of an unprivileged system user for tests that
// switch users, creating it when missing (idempotent, and safe when
// several test binaries race to create it). It needs root; otherwise it
// skips t (fails under CI).
func AppUser(t testing.TB) string {
	t.Helper()
	return SystemUser(t, AppUserName)
}

// SystemUser makes sure the unprivileged system account name exists
// (home /var/lib/NAME, no login shell), as an operator would create it
// with useradd, and returns name. It needs root; otherwise it skips t
// (fails under CI).
func SystemUser(t testing.TB, name string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "an unprivileged app user", "tests must run as root to switch users")
	}
	if exec.Command("id", "-u", name).Run() == nil {
		return name
	}
	useradd, err := exec.LookPath("useradd")
	if err != nil {
		Missing(t, "useradd (passwd package)", err.Error())
	}
	// Parallel test binaries may run useradd at once: one wins, the others
	// fail with "already exists" or on the /etc/passwd lock. Whoever
	// fails re-checks and retries for a while.
	var last string
	for attempt := 0; attempt < 50; attempt++ {
		out, err := exec.Command(useradd, "--system", "--create-home", "--home-dir", "/var/lib/"+name,
			"--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if exec.Command("id", "-u", name).Run() == nil {
			return name
		}
		last = fmt.Sprintf("%v: %s", err, strings.TrimSpace(string(out)))
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("creating user %s: %s", name, last)
	return ""
}

// PnpmForUser returns a directory holding a pnpm executable that other
// users (the app user) can run: every directory on the way to it, and to
// the file it finally links to, is world-executable. When the only pnpm
// is under /root (0700) it skips t (fails under CI): run
// scripts/install-test-deps.sh as root, which installs the npm tools under
// /var/cache/cohuron-test/npm.
func PnpmForUser(t testing.TB) (pnpmDir string) {
	t.Helper()
	bin := Bin(t, "pnpm")
	final, err := filepath.EvalSymlinks(bin)
	if err != nil {
		Missing(t, "pnpm", fmt.Sprintf("resolving %s: %v", bin, err))
	}
	if err := worldReachable(final, 0o005); err != nil {
		Missing(t, "pnpm runnable by the app user", fmt.Sprintf("%s (from %s): %v; run scripts/install-test-deps.sh as root so it installs the npm tools under /var/cache/cohuron-test/npm", final, bin, err))
	}
	// Follow the chain of links one step at a time and take the first
	// "pnpm" whose directory others can enter: the npm prefix's bin/pnpm,
	// not pnpm.cjs inside the package.
	p := bin
	for range 40 {
		if filepath.Base(p) == "pnpm" && worldReachable(filepath.Dir(p), 0o001) == nil {
			return filepath.Dir(p)
		}
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	Missing(t, "pnpm runnable by the app user", fmt.Sprintf("no directory on the link chain from %s that others can enter holds a file named pnpm; run scripts/install-test-deps.sh as root so it installs the npm tools under /var/cache/cohuron-test/npm", bin))
	return ""
}

// worldReachable checks that every directory from / down to p's parent is
// world-executable and that p itself has the other-permission bits in
// want.
func worldReachable(p string, want os.FileMode) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&want != want {
		return fmt.Errorf("%s has mode %v, others need %v", p, st.Mode().Perm(), want)
	}
	for d := filepath.Dir(p); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("directory %s has mode %v: others cannot enter it", d, st.Mode().Perm())
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}
