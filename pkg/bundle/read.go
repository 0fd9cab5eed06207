package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

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
