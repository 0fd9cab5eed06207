package bundle_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cohuron/deploy/pkg/bundle"
)

func TestFileReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := bundle.NewWriter(f, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct {
		entry bundle.Entry
		data  string
	}{
		{bundle.Entry{Path: "apps/api/server.js", Mode: bundle.ModeFile}, "v1\n"},
		{bundle.Entry{Path: "apps/current", Mode: bundle.ModeSymlink, Link: true}, "api"},
		{bundle.Entry{Path: "docker-compose.yml", Mode: bundle.ModeFile}, "services: {db: {}}\n"},
	} {
		if err := w.Add(e.entry, []byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	read := bundle.FileReader(path, 64)
	if data, err := read("docker-compose.yml"); err != nil || string(data) != "services: {db: {}}\n" {
		t.Fatalf("docker-compose.yml = %q, %v", data, err)
	}
	for _, name := range []string{"nope.yml", "apps/current", "apps/api"} {
		if _, err := read(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want fs.ErrNotExist (no such regular file)", name, err)
		}
	}
	if _, err := bundle.FileReader(path, 2)("apps/api/server.js"); err == nil || !strings.Contains(err.Error(), "over the limit of 2 bytes") {
		t.Errorf("a file over the cap: %v", err)
	}
}
