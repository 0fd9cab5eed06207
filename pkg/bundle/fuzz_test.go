package bundle_test

import (
	"archive/tar"
	"bytes"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/cohuron/deploy/pkg/bundle"
)

func FuzzReadIndex(f *testing.F) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "a/b.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
	tw.Write([]byte("abc"))
	tw.WriteHeader(&tar.Header{Name: "a/link", Typeflag: tar.TypeSymlink, Linkname: "b.txt"})
	tw.Close()
	zw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Add([]byte("\x1f\x8b\x08\x00garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := bundle.ReadIndex(bytes.NewReader(data), bundle.ReadLimits{Files: 1000, UnpackedBytes: 1 << 20})
		if err != nil {
			return
		}
		prev := ""
		for _, e := range ix.Entries {
			if !bundle.IsCleanPath(e.Path) || e.Path <= prev {
				t.Fatalf("index holds %q after %q", e.Path, prev)
			}
			prev = e.Path
		}
	})
}
