package preflight

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/proc"
)

// Tests on the real file system: real modes, owners and links under
// t.TempDir, and, as root, the real app user, with the kernel's verdict
// (running the program as that user) compared to Check's.

// openTempDir is a t.TempDir that others may search (t.TempDir's
// directories are 0700).
func openTempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// put writes a file with exactly perm (no umask) and owner.
func put(t *testing.T, p string, data []byte, perm os.FileMode, uid, gid int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
}

// mkdir makes a directory with exactly perm and owner.
func mkdir(t *testing.T, p string, perm os.FileMode, uid, gid int) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// trueBinary is the bytes of the host's true(1), an ELF binary.
func trueBinary(t *testing.T) []byte {
	t.Helper()
	p, err := proc.LookPath("true", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHostFS(t *testing.T) {
	d := t.TempDir()
	put(t, filepath.Join(d, "a/b/tool"), []byte("#!/bin/sh\nexit 0\n"), 0o750, os.Getuid(), os.Getgid())
	symlink(t, "b/tool", filepath.Join(d, "a/rel"))
	symlink(t, filepath.Join(d, "a"), filepath.Join(d, "dirlink"))
	symlink(t, "../rel", filepath.Join(d, "a/b/up"))
	for _, name := range []string{"a/b/tool", "a/rel", "dirlink/rel", "dirlink/b/up", "a/b/../rel"} {
		p := filepath.Join(d, name)
		if strings.Contains(name, "..") {
			p = d + "/" + name // keep the .. for resolve
		}
		w, err := resolve(HostFS{}, p)
		if err != nil {
			t.Fatalf("resolve(%s): %v", p, err)
		}
		want, err := filepath.EvalSymlinks(p)
		if err != nil {
			t.Fatal(err)
		}
		if w.final != want {
			t.Errorf("resolve(%s) = %s, EvalSymlinks = %s", p, w.final, want)
		}
		if w.info.Mode.Perm() != 0o750 || !w.info.Mode.IsRegular() || w.info.Uid != uint32(os.Getuid()) {
			t.Errorf("resolve(%s): info %v uid %d, want a regular 0750 file of uid %d", p, w.info.Mode, w.info.Uid, os.Getuid())
		}
		for _, dir := range w.dirs {
			if !w.infos[dir].Mode.IsDir() {
				t.Errorf("resolve(%s): searched %s, not a directory: %v", p, dir, w.infos[dir].Mode)
			}
		}
	}
	head, err := HostFS{}.ReadHead(filepath.Join(d, "a/b/tool"), 4)
	if err != nil || string(head) != "#!/b" {
		t.Errorf("ReadHead = %q, %v; want the first 4 bytes", head, err)
	}
	if _, err := (HostFS{}).ReadHead(filepath.Join(d, "a/rel"), 4); err == nil {
		t.Error("ReadHead of a symlink: want an error (it must not follow it)")
	}
	if _, err := resolve(HostFS{}, filepath.Join(d, "a/missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("resolve of a missing file: %v, want fs.ErrNotExist", err)
	}
}

// TestHostMissingUser uses the real account database: the agent is
// said to be root, so spec.user is looked up.
func TestHostMissingUser(t *testing.T) {
	const name = "cohuron-preflight-nosuch"
	c := &Checker{Agent: &proc.UserInfo{Uid: 0, Gid: 0, Groups: []uint32{0}, Name: "root", Home: "/root"}}
	res := c.Check(&manifest.Spec{User: name}, nil)
	want := "spec.user: expected an account " + name + " on this host; found no such user; fix: useradd --system --create-home --shell /usr/sbin/nologin " + name
	if len(res.Problems) != 1 || res.Problems[0].String() != want {
		t.Errorf("problems = %q\nwant [%s]", res.Problems, want)
	}
}

// TestHostRootHome is the operators' report on a real host: pnpm in a
// 0700 directory owned by root, first on the agent's PATH; the app user
// is refused with that directory named, and the kernel agrees.
func TestHostRootHome(t *testing.T) {
	app := testenv.AppUser(t)
	base := openTempDir(t)
	home := filepath.Join(base, "root")
	mkdir(t, home, 0o700, 0, 0)
	pnpmDir := filepath.Join(home, ".local/share/pnpm")
	mkdir(t, pnpmDir, 0o755, 0, 0)
	put(t, filepath.Join(pnpmDir, "pnpm"), trueBinary(t), 0o755, 0, 0)
	nodeDir := filepath.Join(base, "pub/bin")
	put(t, filepath.Join(nodeDir, "node"), trueBinary(t), 0o755, 0, 0)

	env := []string{"PATH=" + pnpmDir + ":" + nodeDir}
	spec := &manifest.Spec{User: app, Install: &manifest.Install{Command: []string{"pnpm", "install", "--frozen-lockfile"}}}
	res := Check(spec, env) // this host, as root: nothing injected
	want := "tool pnpm (for spec.install, run as " + app + "): expected pnpm on the agent's PATH, executable by " + app + "; " +
		"found " + pnpmDir + "/pnpm is not executable by " + app + ": " + home + " is mode 0700 owned by root; " +
		"fix: install pnpm where " + app + " can reach it (npm install -g pnpm@9 puts it in /usr/local/bin) or put such a pnpm first on the agent's PATH"
	if len(res.Problems) != 1 || res.Problems[0].String() != want {
		t.Fatalf("problems:\n%s\nwant:\n%s", lines(res.Problems), want)
	}
	if len(res.Passed) != 2 || res.Passed[1].String() != "tool node (for spec.install, run as "+app+"): ok: "+nodeDir+"/node" {
		t.Errorf("passed = %q, want spec.user and node", res.Passed)
	}
	if err := runAs(app, "pnpm", env); err == nil {
		t.Error("the kernel let the app user run the pnpm preflight refused")
	}
	if err := runAs(app, "node", env); err != nil {
		t.Errorf("the kernel refused the node preflight passed: %v", err)
	}

	// A usable pnpm later on the PATH: the fix says to reorder.
	put(t, filepath.Join(nodeDir, "pnpm"), trueBinary(t), 0o755, 0, 0)
	res = Check(spec, env)
	if len(res.Problems) != 1 || !strings.HasPrefix(res.Problems[0].Fix, "put "+nodeDir+" before "+pnpmDir+" on the agent's PATH") {
		t.Errorf("problems:\n%s\nwant a fix that puts %s first", lines(res.Problems), nodeDir)
	}
}

// TestHostModes compares Check's verdict with the kernel's for the app
// user, file by file.
func TestHostModes(t *testing.T) {
	app := testenv.AppUser(t)
	u, err := proc.LookupUser(app)
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := int(u.Uid), int(u.Gid)
	base := openTempDir(t)
	elf := trueBinary(t)
	script := []byte("#!/bin/sh\nexit 0\n")
	at := func(rel string) string { return filepath.Join(base, rel) }

	mkdir(t, at("closed"), 0o700, 0, 0)
	mkdir(t, at("grp"), 0o750, 0, gid)
	mkdir(t, at("nogrp"), 0o750, 0, 0)
	put(t, at("pub/true"), elf, 0o755, 0, 0)
	put(t, at("pub/script"), script, 0o755, 0, 0)
	put(t, at("closed/true"), elf, 0o755, 0, 0)
	put(t, at("grp/true"), elf, 0o755, 0, 0)
	put(t, at("nogrp/true"), elf, 0o755, 0, 0)
	put(t, at("pub/noexec"), elf, 0o744, 0, 0)
	put(t, at("pub/owner-noexec"), elf, 0o605, uid, gid)
	put(t, at("pub/group-exec"), elf, 0o750, 0, gid)
	put(t, at("pub/exec-only"), elf, 0o711, 0, 0)
	put(t, at("pub/exec-only-script"), script, 0o711, 0, 0)
	symlink(t, "../closed/true", at("pub/into-closed"))
	mkdir(t, at("closed2"), 0o700, 0, 0)
	symlink(t, at("pub/true"), at("closed2/to-pub"))
	put(t, at("closed/sh"), elf, 0o755, 0, 0)
	put(t, at("pub/closed-interp"), []byte("#!"+at("closed/sh")+"\n"), 0o755, 0, 0)

	for _, tc := range []struct {
		rel    string
		denial string // "" when the app user may run it
	}{
		{rel: "pub/true"},
		{rel: "pub/script"},
		{rel: "closed/true", denial: at("closed/true") + " is not executable by " + app + ": " + at("closed") + " is mode 0700 owned by root"},
		{rel: "grp/true"},
		{rel: "nogrp/true", denial: at("nogrp") + " is mode 0750 owned by root"},
		{rel: "pub/noexec", denial: at("pub/noexec") + " is mode 0744 owned by root"},
		{rel: "pub/owner-noexec", denial: at("pub/owner-noexec") + " is mode 0605 owned by " + app},
		{rel: "pub/group-exec"},
		{rel: "pub/exec-only"},
		{rel: "pub/exec-only-script", denial: at("pub/exec-only-script") + " is a script (#!/bin/sh) that " + app + " cannot read"},
		{rel: "pub/into-closed", denial: at("pub/into-closed") + " → " + at("closed/true") + " is not executable by " + app + ": " + at("closed") + " is mode 0700"},
		{rel: "closed2/to-pub", denial: at("closed2/to-pub") + " → " + at("pub/true") + " is not executable by " + app + ": " + at("closed2") + " is mode 0700"},
		{rel: "pub/closed-interp", denial: "interpreter " + at("closed/sh") + " is not executable by " + app + ": " + at("closed") + " is mode 0700"},
	} {
		t.Run(tc.rel, func(t *testing.T) {
			p := at(tc.rel)
			spec := &manifest.Spec{User: app, Processes: []manifest.Process{{Name: "p", Command: []string{p}}}}
			res := Check(spec, []string{"PATH=/usr/bin:/bin"})
			found := ""
			if len(res.Problems) == 1 {
				found = res.Problems[0].Found
			}
			switch {
			case tc.denial == "" && !res.OK():
				t.Errorf("problems:\n%s\nwant none", lines(res.Problems))
			case tc.denial != "" && !strings.Contains(found, tc.denial):
				t.Errorf("problems:\n%s\nwant one whose found has %q", lines(res.Problems), tc.denial)
			}
			kerr := runAs(app, p, nil)
			if (kerr == nil) != (tc.denial == "") {
				t.Errorf("the kernel disagrees: running %s as %s: %v", p, app, kerr)
			}
		})
	}
}

// runAs runs name (no arguments) as user through pkg/proc, as the agent
// would.
func runAs(user, name string, env []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := proc.Run(ctx, proc.Cmd{Name: name, Dir: "/", Env: env, User: user, Timeout: 10 * time.Second})
	return err
}

func lines(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.String() + "\n")
	}
	return b.String()
}

// The real names, as the messages print them.
func TestOwnerNames(t *testing.T) {
	if got := lookupUserName(0); got != "root" {
		t.Errorf("lookupUserName(0) = %q, want root", got)
	}
	if got := lookupGroupName(0); got != "root" {
		t.Errorf("lookupGroupName(0) = %q, want root", got)
	}
	const unused = 3999999999
	if _, err := user.LookupId(strconv.Itoa(unused)); err == nil {
		t.Skip("uid 3999999999 exists")
	}
	if got := lookupUserName(unused); got != "uid 3999999999" {
		t.Errorf("lookupUserName(unused) = %q", got)
	}
}
