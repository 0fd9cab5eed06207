package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/fault"
)

// TestNoLinksOnPath: an app repository can symlink a directory into a
// served one; env files (secrets) must never be written through it.
func TestNoLinksOnPath(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "apps/web/public"), 0o755)
	os.MkdirAll(filepath.Join(root, "apps/api"), 0o755)
	os.Symlink("web/public", filepath.Join(root, "apps/leak"))
	if err := noLinksOnPath(root, "apps/api/.env"); err != nil {
		t.Fatalf("plain path refused: %v", err)
	}
	if err := noLinksOnPath(root, "apps/new/dir/.env"); err != nil {
		t.Fatalf("path to be created refused: %v", err)
	}
	err := noLinksOnPath(root, "apps/leak/.env")
	if fault.ExitCode(err) != fault.ExitRejected || !strings.Contains(err.Error(), "apps/leak in the bundle is a symlink") {
		t.Fatalf("env file through a symlink: %v", err)
	}
}
