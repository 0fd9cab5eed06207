package tree

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// mkTree builds: a/ (0750), a/b/ (0700, setgid), files, a relative and an
// absolute symlink, a dangling one, a symlink to a directory outside, and
// a read-only directory with a file in it.
func mkTree(t *testing.T) (src, outside string) {
	t.Helper()
	base := t.TempDir()
	src = filepath.Join(base, "src")
	outside = filepath.Join(base, "outside")
	must(t, os.MkdirAll(filepath.Join(src, "a", "b"), 0o755))
	must(t, os.MkdirAll(filepath.Join(src, "ro"), 0o755))
	must(t, os.MkdirAll(outside, 0o755))
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600))
	must(t, os.WriteFile(filepath.Join(src, "top.txt"), []byte("top"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "a", "x.js"), []byte("x"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "a", "b", "y.js"), []byte("y"), 0o600))
	must(t, os.WriteFile(filepath.Join(src, "ro", "z"), []byte("z"), 0o444))
	must(t, os.Symlink("../top.txt", filepath.Join(src, "a", "rel")))
	must(t, os.Symlink(filepath.Join(src, "top.txt"), filepath.Join(src, "a", "abs")))
	must(t, os.Symlink("nowhere", filepath.Join(src, "dangling")))
	must(t, os.Symlink(outside, filepath.Join(src, "out")))
	must(t, os.Chmod(filepath.Join(src, "a"), 0o750))
	must(t, os.Chmod(filepath.Join(src, "a", "b"), 0o700|os.ModeSetgid))
	must(t, os.Chmod(filepath.Join(src, "ro"), 0o555))
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "ro"), 0o755) })
	return src, outside
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ino(t *testing.T, p string) (uint64, uint64) {
	t.Helper()
	st, err := os.Lstat(p)
	must(t, err)
	s := st.Sys().(*syscall.Stat_t)
	return s.Ino, uint64(s.Nlink)
}

func TestLinkClone(t *testing.T) {
	src, _ := mkTree(t)
	dst := filepath.Join(filepath.Dir(src), "dst")
	if os.Geteuid() == 0 {
		must(t, os.Lchown(filepath.Join(src, "a"), 1234, 2345))
		must(t, os.Lchown(filepath.Join(src, "a", "rel"), 1235, 2346))
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dst, "ro"), 0o755) })
	n, err := LinkClone(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("files = %d, want 4", n)
	}
	for _, f := range []string{"top.txt", "a/x.js", "a/b/y.js", "ro/z"} {
		si, nlink := ino(t, filepath.Join(src, f))
		di, _ := ino(t, filepath.Join(dst, f))
		if si != di || nlink != 2 {
			t.Errorf("%s: inode %d vs %d, nlink %d: want the same inode, 2 links", f, si, di, nlink)
		}
	}
	for f, target := range map[string]string{
		"a/rel": "../top.txt", "a/abs": filepath.Join(src, "top.txt"),
		"dangling": "nowhere", "out": filepath.Join(filepath.Dir(src), "outside"),
	} {
		st, err := os.Lstat(filepath.Join(dst, f))
		must(t, err)
		if st.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: mode %v, want a symlink", f, st.Mode())
			continue
		}
		got, _ := os.Readlink(filepath.Join(dst, f))
		if got != target {
			t.Errorf("%s -> %q, want %q", f, got, target)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dst, "a", "rel")); err != nil || string(b) != "top" {
		t.Errorf("relative symlink in the clone: %q, %v", b, err)
	}
	for d, want := range map[string]os.FileMode{
		".": 0o755 | os.ModeDir, "a": 0o750 | os.ModeDir,
		"a/b": 0o700 | os.ModeDir | os.ModeSetgid, "ro": 0o555 | os.ModeDir,
	} {
		st, err := os.Lstat(filepath.Join(dst, d))
		must(t, err)
		if st.Mode() != want {
			t.Errorf("%s: mode %v, want %v", d, st.Mode(), want)
		}
	}
	if os.Geteuid() == 0 {
		for f, want := range map[string][2]uint32{"a": {1234, 2345}, "a/rel": {1235, 2346}, "a/b": {0, 0}} {
			st, _ := os.Lstat(filepath.Join(dst, f))
			s := st.Sys().(*syscall.Stat_t)
			if s.Uid != want[0] || s.Gid != want[1] {
				t.Errorf("%s: owner %d:%d, want %d:%d", f, s.Uid, s.Gid, want[0], want[1])
			}
		}
	}
	// The symlinked directory was not entered.
	if _, err := os.Lstat(filepath.Join(dst, "out", "secret")); err == nil {
		if st, _ := os.Lstat(filepath.Join(dst, "out")); st.Mode()&os.ModeSymlink == 0 {
			t.Error("the directory behind symlink out was cloned")
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(src))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".clone-") {
			t.Errorf("temporary %s left behind", e.Name())
		}
	}
}

func TestLinkCloneRefuses(t *testing.T) {
	src, outside := mkTree(t)
	base := filepath.Dir(src)

	t.Run("existing destination", func(t *testing.T) {
		dst := filepath.Join(base, "exists")
		must(t, os.Mkdir(dst, 0o755))
		if _, err := LinkClone(src, dst); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("err = %v, want destination already exists", err)
		}
	})
	t.Run("source is a symlink", func(t *testing.T) {
		link := filepath.Join(base, "srclink")
		must(t, os.Symlink(src, link))
		_, err := LinkClone(link, filepath.Join(base, "d1"))
		if err == nil || !strings.Contains(err.Error(), "found symlink") {
			t.Fatalf("err = %v, want expected a directory, found symlink", err)
		}
	})
	t.Run("fifo", func(t *testing.T) {
		fifo := filepath.Join(src, "a", "b", "pipe")
		must(t, syscall.Mkfifo(fifo, 0o644))
		defer os.Remove(fifo)
		dst := filepath.Join(base, "d2")
		_, err := LinkClone(src, dst)
		if err == nil || !strings.Contains(err.Error(), fifo+" is a fifo") {
			t.Fatalf("err = %v, want it to name %s as a fifo", err, fifo)
		}
		if _, err := os.Lstat(dst); err == nil {
			t.Error("a failed clone left the destination")
		}
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if strings.Contains(e.Name(), ".clone-") {
				t.Errorf("temporary %s left behind", e.Name())
			}
		}
	})
	t.Run("socket", func(t *testing.T) {
		sock := filepath.Join(outside, "s.sock")
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		must(t, err)
		defer syscall.Close(fd)
		must(t, syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock}))
		_, err = LinkClone(outside, filepath.Join(base, "d3"))
		if err == nil || !strings.Contains(err.Error(), sock+" is a socket") {
			t.Fatalf("err = %v, want it to name %s as a socket", err, sock)
		}
	})
	t.Run("missing parent", func(t *testing.T) {
		if _, err := LinkClone(src, filepath.Join(base, "no", "such")); err == nil {
			t.Fatal("cloning into a missing parent succeeded")
		}
	})
}

func TestChown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	src, outside := mkTree(t)
	must(t, Chown(src, 4321, 5432))
	err := filepath.Walk(src, func(p string, st os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		s := st.Sys().(*syscall.Stat_t)
		if s.Uid != 4321 || s.Gid != 5432 {
			t.Errorf("%s: owner %d:%d, want 4321:5432", p, s.Uid, s.Gid)
		}
		return nil
	})
	must(t, err)
	for _, p := range []string{outside, filepath.Join(outside, "secret")} {
		st, _ := os.Lstat(p)
		if s := st.Sys().(*syscall.Stat_t); s.Uid != 0 {
			t.Errorf("%s behind a symlink was re-owned to %d", p, s.Uid)
		}
	}
	// A single file or symlink as root.
	must(t, Chown(filepath.Join(src, "a", "abs"), 7, 8))
	st, _ := os.Lstat(filepath.Join(src, "a", "abs"))
	if s := st.Sys().(*syscall.Stat_t); s.Uid != 7 || s.Gid != 8 {
		t.Errorf("symlink owner %d:%d, want 7:8", s.Uid, s.Gid)
	}
	st, _ = os.Lstat(filepath.Join(src, "top.txt"))
	if s := st.Sys().(*syscall.Stat_t); s.Uid != 4321 {
		t.Errorf("the symlink's target was re-owned to %d", s.Uid)
	}
	if err := Chown(filepath.Join(src, "missing"), 1, 1); err == nil {
		t.Error("chown of a missing path succeeded")
	}
}
