package extract

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/cohuron/deploy/pkg/fault"
)

// Defaults for a zero Limits field.
const (
	defaultFiles       = 200000
	defaultBytes int64 = 4 << 30
)

const (
	maxName      = 4095     // PATH_MAX-1: longest name or symlink target accepted
	maxComponent = 255      // NAME_MAX
	maxTrailer   = 1 << 20  // zero padding accepted after the end-of-archive marker (tar blocking)
	maxLinkHops  = 40       // Linux MAXSYMLINKS: deeper chains are refused
	linkBudget   = 1 << 28  // bytes of path work spent resolving symlinks, per archive
	entryBudget  = 16 << 10 // tar bytes allowed per entry beyond file content: headers, PAX records, padding
	dirMode      = 0o755
	fileMode     = 0o644
	execMode     = 0o755
)

// Limits cap what one archive may unpack; zero means the default (Files 200000, Bytes 4 GiB).
//
// Files counts every archive entry (files, directories, symlinks, PAX
// global headers) plus each directory created implicitly because an
// entry's parent was missing. Bytes counts file content actually written;
// the decompressed tar stream as a whole (headers, PAX records, padding)
// may not exceed Bytes plus 16 KiB per entry. A negative value also means
// the default.
type Limits struct {
	Files int
	Bytes int64
	// NonDirs, when above zero, caps the entries that are not directories
	// (files, symlinks, and anything refused anyway): a signed release
	// states its file count, and an archive holding more stops there.
	NonDirs int
}

// Stats says what was written.
//
// Dirs counts directories created, whether named by an entry or implied
// by one; Bytes is the file content written. After an error, Stats says
// what had been written when extraction stopped.
type Stats struct {
	Files int
	Dirs  int
	Links int
	Bytes int64
}

// UnsafeError is an archive refused for safety; FaultKind() returns fault.KindRejected.
type UnsafeError struct {
	Entry  string // the entry's name as it appears in the archive
	Reason string
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("unsafe archive entry %q: %s", e.Entry, e.Reason)
}

// FaultKind classifies the error as rejected input (exit code 3).
func (e *UnsafeError) FaultKind() fault.Kind { return fault.KindRejected }

func refuse(entry, format string, args ...any) error {
	return &UnsafeError{Entry: entry, Reason: fmt.Sprintf(format, args...)}
}

// Extract reads gzip-compressed tar from r and writes it under dir, which must exist and be empty.
// All writes go through os.Root(dir). On any error, dir may hold a partial tree: the caller removes it.
//
// Entry names must be clean relative paths ("a/b", or "a/b/" for a
// directory): names such as "./a", "a//b" or "." are refused, not
// normalized. Parents missing from the archive are created 0755. Files get
// 0755 when the header has any execute bit, else 0644; directories 0755.
// Owners, times and extended attributes in the archive are ignored.
// Symlinks are created last, once the whole archive has been read and each
// one has been shown to stay inside dir.
//
// A missing or non-empty dir is a fault.Usage error; an error from r
// itself is returned wrapped but unclassified, so its own kind survives;
// anything wrong with the archive is an *UnsafeError or a fault.Rejected
// error.
func Extract(r io.Reader, dir string, lim Limits) (Stats, error) {
	if lim.Files <= 0 {
		lim.Files = defaultFiles
	}
	if lim.Bytes <= 0 {
		lim.Bytes = defaultBytes
	}
	root, err := openEmpty(dir)
	if err != nil {
		return Stats{}, err
	}
	defer root.Close()
	x := &extractor{
		root:    root,
		lim:     lim,
		seen:    map[string]kind{},
		targets: map[string]string{},
		buf:     make([]byte, 256<<10),
		budget:  linkBudget,
	}
	err = x.run(r)
	return x.stats, err
}

func openEmpty(dir string) (*os.Root, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fault.Usage(fmt.Errorf("extracting into %s: %w", dir, err))
	}
	d, err := root.Open(".")
	if err == nil {
		var names []string
		names, err = d.Readdirnames(1)
		d.Close()
		switch {
		case len(names) > 0:
			err = fault.Usage(errors.New("directory is not empty"))
		case errors.Is(err, io.EOF):
			err = nil
		}
	}
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("extracting into %s: %w", dir, err)
	}
	return root, nil
}

type kind uint8

const (
	kindImplicitDir kind = iota + 1 // created because an entry needed it as a parent
	kindDir
	kindFile
	kindLink
)

func (k kind) String() string {
	switch k {
	case kindImplicitDir, kindDir:
		return "directory"
	case kindFile:
		return "file"
	case kindLink:
		return "symlink"
	}
	return "nothing"
}

type link struct{ name, target, entry string }

type extractor struct {
	root    *os.Root
	lim     Limits
	src     *sourceReader
	seen    map[string]kind   // every path created (or, for links, reserved), without trailing slash
	targets map[string]string // symlink path → target
	links   []link            // symlinks in archive order, created at the end
	count   int               // entries plus implicit directories, against lim.Files
	nonDirs int               // entries other than directories, against lim.NonDirs
	stats   Stats
	buf     []byte
	budget  int // left for resolving symlinks
}

func (x *extractor) run(r io.Reader) error {
	x.src = &sourceReader{r: r}
	// gzip reads a bufio.Reader byte by byte, so after the gzip stream
	// ends br holds exactly what follows it.
	br := bufio.NewReaderSize(x.src, 64<<10)
	zr, err := gzip.NewReader(br)
	if err != nil {
		if x.src.err != nil {
			return fmt.Errorf("reading archive: %w", x.src.err)
		}
		return fault.Rejected(fmt.Errorf("reading archive: not gzip data: %w", err))
	}
	defer zr.Close()
	zr.Multistream(false)

	// Headers are not file content, so the byte cap does not see them:
	// cap the whole tar stream too, so huge PAX headers cannot make
	// the host decompress without bound.
	er := &tarStream{r: zr, max: func() int64 {
		return x.lim.Bytes + int64(x.count+1)*entryBudget
	}}
	tr := tar.NewReader(er)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if er.emptyEOF {
				// Go's tar reader takes a clean end of data at a header
				// boundary for the end of the archive; a real archive
				// ends with two zero blocks.
				return fault.Rejected(errors.New("reading archive: tar data is truncated: no end-of-archive marker"))
			}
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) && hdr != nil {
			// Only with GODEBUG=tarinsecurepath=0; cleanName refuses
			// every such name too, with a better reason.
			_, reason := cleanName(hdr.Name, hdr.Typeflag == tar.TypeDir)
			if reason == "" {
				reason = "insecure path"
			}
			return refuse(hdr.Name, "%s", reason)
		}
		if err != nil {
			return x.readError(err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return err
		}
	}
	if err := x.trailer(zr, br); err != nil {
		return err
	}
	return x.makeLinks()
}

// readError classifies an error met while reading: the source's own
// errors keep their kind (a dropped connection is not bad input); the rest
// means the archive is damaged.
func (x *extractor) readError(err error) error {
	if x.src.err != nil {
		return fmt.Errorf("reading archive: %w", x.src.err)
	}
	if errors.Is(err, errStreamCap) {
		return fault.Rejected(fmt.Errorf("reading archive: tar headers too large: over %d bytes per entry", entryBudget))
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fault.Rejected(fmt.Errorf("reading archive: %w", err))
}

// trailer accepts zero padding after the end-of-archive marker, reads the
// gzip stream to its end (which checks its CRC and length) and refuses
// anything after it.
func (x *extractor) trailer(zr io.Reader, br *bufio.Reader) error {
	lr := io.LimitReader(zr, maxTrailer+1)
	var total int64
	for {
		n, err := lr.Read(x.buf)
		total += int64(n)
		for _, b := range x.buf[:n] {
			if b != 0 {
				return fault.Rejected(errors.New("reading archive: data after the tar end-of-archive marker"))
			}
		}
		if total > maxTrailer {
			return fault.Rejected(fmt.Errorf("reading archive: more than %d bytes of padding after the tar end-of-archive marker", maxTrailer))
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return x.readError(err)
		}
	}
	switch _, err := br.ReadByte(); {
	case err == nil:
		return fault.Rejected(errors.New("reading archive: data after the end of the gzip stream"))
	case !errors.Is(err, io.EOF):
		return x.readError(err)
	}
	return nil
}

func (x *extractor) entry(hdr *tar.Header, tr *tar.Reader) error {
	x.count++
	if x.count > x.lim.Files {
		return refuse(hdr.Name, "archive has more than %d entries", x.lim.Files)
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX global header: metadata only, nothing to write
	}
	if hdr.Typeflag != tar.TypeDir {
		x.nonDirs++
		if x.lim.NonDirs > 0 && x.nonDirs > x.lim.NonDirs {
			return refuse(hdr.Name, "archive has more than %d files and links (the release's signed count)", x.lim.NonDirs)
		}
	}
	name, reason := cleanName(hdr.Name, hdr.Typeflag == tar.TypeDir)
	if reason != "" {
		return refuse(hdr.Name, "%s", reason)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
	case tar.TypeLink:
		return refuse(hdr.Name, "hard link to %q: bundles never contain hard links", hdr.Linkname)
	case tar.TypeChar:
		return refuse(hdr.Name, "character device")
	case tar.TypeBlock:
		return refuse(hdr.Name, "block device")
	case tar.TypeFifo:
		return refuse(hdr.Name, "FIFO")
	default:
		return refuse(hdr.Name, "entry type %q: expected a file, directory or symlink", hdr.Typeflag)
	}
	if m := hdr.Mode & 0o7000; m != 0 {
		return refuse(hdr.Name, "mode %#o has setuid, setgid or sticky bits", hdr.Mode&0o7777)
	}
	if k := x.seen[name]; k != 0 && (k != kindImplicitDir || hdr.Typeflag != tar.TypeDir) {
		return refuse(hdr.Name, "duplicate entry: %s is already a %s", name, k)
	}
	if hdr.Typeflag == tar.TypeSymlink {
		if reason := checkTarget(name, hdr.Linkname); reason != "" {
			return refuse(hdr.Name, "%s", reason)
		}
	}
	if err := x.parents(name, hdr.Name); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if x.seen[name] == kindImplicitDir {
			x.seen[name] = kindDir
			return nil
		}
		return x.mkdir(name, kindDir)
	case tar.TypeSymlink:
		x.seen[name] = kindLink
		x.targets[name] = hdr.Linkname
		x.links = append(x.links, link{name: name, target: hdr.Linkname, entry: hdr.Name})
		return nil
	}
	return x.file(name, hdr, tr)
}

// parents creates the missing parents of name, refusing to go through
// anything but a directory this extraction made.
func (x *extractor) parents(name, entry string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	switch k := x.seen[dir]; k {
	case kindDir, kindImplicitDir:
		return nil
	case kindLink:
		return refuse(entry, "path goes through symlink %s", dir)
	case kindFile:
		return refuse(entry, "parent %s is a file", dir)
	}
	if err := x.parents(dir, entry); err != nil {
		return err
	}
	x.count++
	if x.count > x.lim.Files {
		return refuse(entry, "archive has more than %d entries (counting implied directories)", x.lim.Files)
	}
	return x.mkdir(dir, kindImplicitDir)
}

func (x *extractor) mkdir(name string, k kind) error {
	if err := x.root.Mkdir(name, dirMode); err != nil {
		return fmt.Errorf("creating directory %s: %w", name, err)
	}
	x.seen[name] = k
	x.stats.Dirs++
	// Mkdir applies the umask; the mode must not depend on it.
	if err := x.root.Chmod(name, dirMode); err != nil {
		return fmt.Errorf("setting mode of directory %s: %w", name, err)
	}
	return nil
}

func (x *extractor) file(name string, hdr *tar.Header, tr *tar.Reader) error {
	left := x.lim.Bytes - x.stats.Bytes
	if hdr.Size > left {
		// Fail early on the header; the copy below enforces the cap on
		// the bytes themselves.
		return refuse(hdr.Name, "archive unpacks to more than %d bytes", x.lim.Bytes)
	}
	mode := os.FileMode(fileMode)
	if hdr.Mode&0o111 != 0 {
		mode = execMode
	}
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("creating %s: %w", name, err)
	}
	x.seen[name] = kindFile
	x.stats.Files++
	n, err := copyCapped(f, tr, left, x.buf)
	x.stats.Bytes += n
	if err != nil {
		f.Close()
		var rerr readErr
		if errors.As(err, &rerr) {
			return x.readError(rerr.err)
		}
		if errors.Is(err, errOverCap) {
			return refuse(hdr.Name, "archive unpacks to more than %d bytes", x.lim.Bytes)
		}
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Chmod(mode); err != nil { // the umask again
		f.Close()
		return fmt.Errorf("setting mode of %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

var errOverCap = errors.New("over the byte cap")

// readErr marks an error from the reading side of a copy.
type readErr struct{ err error }

func (e readErr) Error() string { return e.err.Error() }

// copyCapped copies r to w, writing at most max bytes; if r has more,
// it returns errOverCap after writing max.
func copyCapped(w io.Writer, r io.Reader, max int64, buf []byte) (int64, error) {
	var n int64
	for {
		chunk := buf
		if left := max - n; left < int64(len(chunk)) {
			// Read one byte past the cap to learn whether there is more.
			chunk = chunk[:left+1]
		}
		m, rerr := r.Read(chunk)
		if int64(m) > max-n {
			m = int(max - n)
			rerr = errOverCap
		}
		if m > 0 {
			k, werr := w.Write(chunk[:m])
			n += int64(k)
			if werr == nil && k != m {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return n, werr
			}
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF):
			return n, nil
		case errors.Is(rerr, errOverCap):
			return n, errOverCap
		default:
			return n, readErr{rerr}
		}
	}
}

// makeLinks checks every symlink against the finished tree, then creates
// them all; no symlink exists while files are written.
func (x *extractor) makeLinks() error {
	for _, l := range x.links {
		if reason := x.resolve(l); reason != "" {
			return refuse(l.entry, "%s", reason)
		}
	}
	for _, l := range x.links {
		if err := x.root.Symlink(l.target, l.name); err != nil {
			return fmt.Errorf("creating symlink %s: %w", l.name, err)
		}
		x.stats.Links++
	}
	return nil
}

// resolve follows l's target through the archive's own symlinks the way
// the kernel would, and says why it is refused if it leaves the root at
// any step. Names the archive does not contain are taken as directories,
// which is the strict reading (the kernel would stop there).
func (x *extractor) resolve(l link) string {
	var cur []string // real directories from the root, never symlinks
	if d := path.Dir(l.name); d != "." {
		cur = strings.Split(d, "/")
	}
	var todo []string // components still to walk, last one first
	push := func(target string) {
		parts := strings.Split(target, "/")
		for i := len(parts) - 1; i >= 0; i-- {
			todo = append(todo, parts[i])
		}
	}
	push(l.target)
	hops := 0
	for len(todo) > 0 {
		c := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return fmt.Sprintf("symlink to %q resolves outside the directory", l.target)
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cur = append(cur, c)
		p := strings.Join(cur, "/")
		x.budget -= len(p) + 1
		if x.budget < 0 {
			return "symlinks too complex to check"
		}
		t, ok := x.targets[p]
		if !ok {
			continue
		}
		if hops++; hops > maxLinkHops {
			return fmt.Sprintf("symlink to %q: more than %d levels of symlinks", l.target, maxLinkHops)
		}
		cur = cur[:len(cur)-1]
		push(t)
	}
	return ""
}

// sourceReader remembers the caller's reader's own error.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && s.err == nil {
		s.err = err
	}
	return n, err
}

var errStreamCap = errors.New("tar stream over its cap")

// tarStream caps the tar stream at max() bytes and records whether the
// last read hit the end of data with nothing read, which is how a tar
// stream without its end marker looks.
type tarStream struct {
	r        io.Reader
	n        int64
	max      func() int64
	emptyEOF bool
}

func (s *tarStream) Read(p []byte) (int, error) {
	if s.n > s.max() {
		return 0, errStreamCap
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	s.emptyEOF = n == 0 && errors.Is(err, io.EOF)
	return n, err
}
