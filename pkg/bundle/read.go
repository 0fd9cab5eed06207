package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/klauspost/compress/gzip"

	"github.com/cohuron/deploy/pkg/fault"
)

// ReadLimits cap what ReadIndex accepts; zero means no cap.
type ReadLimits struct {
	Files         int
	UnpackedBytes int64
}

// ReadIndex indexes a bundle from its tar.gz bytes, the way Build indexes
// it while writing. It is for bundles already verified against a signed
// digest (config-only releases reuse the current bundle); extraction with
// every safety check is the agent's job.
func ReadIndex(r io.Reader, lim ReadLimits) (*Index, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fault.Rejected(fmt.Errorf("reading bundle: not gzip data: %w", err))
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	ix := &Index{}
	var total int64
	h := sha256.New()
	prev := ""
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fault.Rejected(fmt.Errorf("reading bundle: %w", err))
		}
		var e Entry
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
			e.Mode = hdr.Mode & 0o777
			h.Reset()
			n, err := io.Copy(h, tr)
			if err != nil {
				return nil, fault.Rejected(fmt.Errorf("reading bundle entry %s: %w", hdr.Name, err))
			}
			e.Size = n
			total += n
		case tar.TypeSymlink:
			e.Mode, e.Link = ModeSymlink, true
			h.Reset()
			h.Write([]byte(hdr.Linkname))
		default:
			return nil, fault.Rejected(fmt.Errorf("bundle entry %s has type %q: expected a file, directory or symlink", hdr.Name, hdr.Typeflag))
		}
		if !IsCleanPath(hdr.Name) || hdr.Name <= prev {
			return nil, fault.Rejected(fmt.Errorf("bundle entry %q: expected clean relative paths in sorted order without duplicates", hdr.Name))
		}
		prev = hdr.Name
		e.Path = hdr.Name
		e.SHA256 = hex.EncodeToString(h.Sum(nil))
		ix.Entries = append(ix.Entries, e)
		if lim.Files > 0 && len(ix.Entries) > lim.Files {
			return nil, fault.Rejected(fmt.Errorf("bundle has more than %d files", lim.Files))
		}
		if lim.UnpackedBytes > 0 && total > lim.UnpackedBytes {
			return nil, fault.Rejected(fmt.Errorf("bundle unpacks to more than %d bytes", lim.UnpackedBytes))
		}
	}
	return ix, nil
}

// ReadFile returns the content of the regular file name in the tar.gz
// bundle read from r, refusing one over max bytes (0: no cap). Like
// ReadIndex, it is for a bundle built here or verified against a signed
// digest. A name the bundle does not hold as a regular file is an error
// that matches fs.ErrNotExist.
func ReadFile(r io.Reader, name string, max int64) ([]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("reading bundle: not gzip data: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no such file in the bundle: %w", name, fs.ErrNotExist)
		}
		if err != nil {
			return nil, fmt.Errorf("reading bundle: %w", err)
		}
		if hdr.Name != name {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%s: not a regular file of the bundle: %w", name, fs.ErrNotExist)
		}
		if max > 0 && hdr.Size > max {
			return nil, fmt.Errorf("%s: %d bytes, over the limit of %d bytes", name, hdr.Size, max)
		}
		return io.ReadAll(tr)
	}
}

// FileReader reads files of the bundle at path, a tar.gz on disk, one
// ReadFile each (compose files and the like, not the whole tree).
func FileReader(path string, max int64) func(name string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return ReadFile(f, name, max)
	}
}

// ReadFiles reads the named files of the bundle read from r in one pass,
// each at most max bytes (0: no cap). A name the bundle does not hold as
// a regular file is an error that matches fs.ErrNotExist.
func ReadFiles(r io.Reader, names []string, max int64) (map[string][]byte, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("reading bundle: not gzip data: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for len(out) < len(want) {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading bundle: %w", err)
		}
		if !want[hdr.Name] || hdr.Typeflag != tar.TypeReg {
			continue
		}
		if max > 0 && hdr.Size > max {
			return nil, fmt.Errorf("%s: %d bytes, over the limit of %d bytes", hdr.Name, hdr.Size, max)
		}
		if out[hdr.Name], err = io.ReadAll(tr); err != nil {
			return nil, fmt.Errorf("reading bundle: %s: %w", hdr.Name, err)
		}
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("%s: no such regular file in the bundle: %w", n, fs.ErrNotExist)
		}
	}
	return out, nil
}
