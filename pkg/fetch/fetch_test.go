package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/fetch"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/store/dirstore"
	"github.com/cohuron/deploy/pkg/trust"
)

func setup(t *testing.T, sources []string) (*fetch.Fetcher, string) {
	dir := t.TempDir()
	st, err := dirstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	data := bytes.Repeat([]byte("b"), 100)
	st.Put(context.Background(), "bundles/app.tar.gz", bytes.NewReader(data), 100)
	pol := &trust.Policy{Spec: trust.Spec{BundleSources: sources}}
	return &fetch.Fetcher{Store: st, StoreURL: "file://" + dir, Policy: pol}, t.TempDir()
}

func rel(key string, size int64) *manifest.Release {
	return &manifest.Release{Bundle: manifest.BundleRef{Key: key, Size: size}}
}

func TestFetch(t *testing.T) {
	f, out := setup(t, []string{"file"})
	dst := filepath.Join(out, "b.tar.gz")
	if err := f.Fetch(context.Background(), rel("bundles/app.tar.gz", 100), dst); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(dst); len(data) != 100 {
		t.Fatalf("fetched %d bytes, want 100", len(data))
	}
}

func TestFetchRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources []string
		rel     *manifest.Release
		check   string
	}{
		{"scheme not allowed", []string{"s3"}, rel("bundles/app.tar.gz", 100), "bundle source"},
		{"key outside bundles/", []string{"file"}, rel("releases/prod/1.yaml", 100), "bundle location"},
		{"key escaping", []string{"file"}, rel("bundles/../../etc/passwd", 100), "bundle location"},
		{"over the signed size", []string{"file"}, rel("bundles/app.tar.gz", 99), "bundle size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, out := setup(t, tc.sources)
			err := f.Fetch(context.Background(), tc.rel, filepath.Join(out, "b"))
			var ve *trust.VerificationError
			if !errors.As(err, &ve) || ve.Check != tc.check || fault.ExitCode(err) != fault.ExitRejected {
				t.Fatalf("got %v, want a rejection by %q", err, tc.check)
			}
		})
	}
}
