package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/cohuron/deploy/pkg/fault"
)

// Writer writes a reproducible archive in the bundle format: entries in
// the order added (callers add them sorted), directories implied and
// written once before their first entry, one timestamp, normalized modes,
// no owner names or ids, and a gzip header without name or time. The
// same entries give the same bytes.
type Writer struct {
	zw    *gzip.Writer
	tw    *tar.Writer
	mtime time.Time
	dirs  map[string]bool
	// Index lists what was written, with sizes and digests.
	Index *Index
}

// NewWriter starts an archive on w; every entry gets mtime.
func NewWriter(w io.Writer, mtime time.Time) (*Writer, error) {
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	return &Writer{zw: zw, tw: tar.NewWriter(zw), mtime: mtime, dirs: map[string]bool{}, Index: &Index{}}, nil
}

// Add writes e (its Path, Mode and Link) with data: the content of a
// file, or the target of a symlink, which must stay inside the archive.
// It fills in Size and SHA256 and appends e to the index.
func (w *Writer) Add(e Entry, data []byte) error {
	sum := sha256.Sum256(data)
	e.SHA256 = hex.EncodeToString(sum[:])
	e.Size = 0
	if e.Link {
		if err := CheckLink(e.Path, string(data)); err != nil {
			return err
		}
	} else {
		e.Size = int64(len(data))
	}
	if err := w.writeDirs(e.Path); err != nil {
		return err
	}
	hdr := &tar.Header{Name: e.Path, Mode: e.Mode, ModTime: w.mtime, Format: tar.FormatPAX}
	if e.Link {
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, string(data)
	} else {
		hdr.Typeflag, hdr.Size = tar.TypeReg, e.Size
	}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing %s: %w", e.Path, err)
	}
	if !e.Link {
		if _, err := w.tw.Write(data); err != nil {
			return fmt.Errorf("writing %s: %w", e.Path, err)
		}
	}
	w.Index.Entries = append(w.Index.Entries, e)
	return nil
}

// Close ends the tar stream and the gzip member.
func (w *Writer) Close() error {
	if err := w.tw.Close(); err != nil {
		return err
	}
	return w.zw.Close()
}

func (w *Writer) writeDirs(p string) error {
	dir := path.Dir(p)
	if dir == "." || w.dirs[dir] {
		return nil
	}
	if err := w.writeDirs(dir); err != nil {
		return err
	}
	w.dirs[dir] = true
	return w.tw.WriteHeader(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: ModeDir, ModTime: w.mtime, Format: tar.FormatPAX})
}

// CheckLink refuses a symlink that leaves the archive: hosts would refuse
// it too, so it fails when the archive is written, with the file named.
func CheckLink(p, target string) error {
	if target == "" || path.IsAbs(target) || strings.ContainsRune(target, 0) {
		return fault.Rejected(fmt.Errorf("symlink %s -> %q: expected a relative target inside the bundle", p, target))
	}
	joined := path.Join(path.Dir(p), target)
	if joined == ".." || strings.HasPrefix(joined, "../") {
		return fault.Rejected(fmt.Errorf("symlink %s -> %q points outside the bundle", p, target))
	}
	return nil
}

// DigestWriter passes writes on to W and keeps the SHA-256 and size of
// what W accepted: the digest and size a release records for an archive
// as it is written.
type DigestWriter struct {
	W io.Writer
	h hash.Hash
	n int64
}

func (d *DigestWriter) Write(p []byte) (int, error) {
	if d.h == nil {
		d.h = sha256.New()
	}
	n, err := d.W.Write(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	return n, err
}

// Sum is the hex SHA-256 of what was written.
func (d *DigestWriter) Sum() string {
	if d.h == nil {
		d.h = sha256.New()
	}
	return hex.EncodeToString(d.h.Sum(nil))
}

// Size is how many bytes were written.
func (d *DigestWriter) Size() int64 { return d.n }
