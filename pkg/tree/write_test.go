package tree_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cohuron/deploy/pkg/tree"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	if err := tree.WriteFile(dir, "apps/api/.env", []byte("A=1\n"), 0o640, -1, -1); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "apps/api/.env"))
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("written file: %v, %v; want mode 0640", st, err)
	}
	if err := tree.WriteFile(dir, "apps/api/.env", []byte("A=2\n"), 0o640, -1, -1); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "apps/api/.env")); string(b) != "A=2\n" {
		t.Fatalf("rewritten file holds %q", b)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "apps/api")); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}

	// A directory swapped for a symlink out of the tree.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "apps/web")); err != nil {
		t.Fatal(err)
	}
	if err := tree.WriteFile(dir, "apps/web/.env", []byte("X=1\n"), 0o640, -1, -1); err == nil {
		t.Fatal("wrote through a symlink out of the tree")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("files written outside the tree: %v", entries)
	}
	if err := tree.WriteFile(dir, "../x", nil, 0o640, -1, -1); err == nil {
		t.Fatal("wrote ../x")
	}
}

// As root (the agent), the file is handed to the app user.
func TestWriteFileOwner(t *testing.T) {
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 12345, 12346
	}
	dir := t.TempDir()
	if err := tree.WriteFile(dir, "a/.env", []byte("A=1\n"), 0o640, uid, gid); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "a/.env"))
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Sys().(*syscall.Stat_t); int(s.Uid) != uid || int(s.Gid) != gid {
		t.Fatalf("owner %d:%d, want %d:%d", s.Uid, s.Gid, uid, gid)
	}
}
