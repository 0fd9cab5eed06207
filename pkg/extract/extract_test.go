package extract_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/extract"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/gitbundle"
)

// ent is one tar entry: a header and the bytes written after it.
type ent struct {
	h    tar.Header
	body string
}

func file(name, body string) ent {
	return ent{h: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, body: body}
}

func exe(name, body string) ent {
	e := file(name, body)
	e.h.Mode = 0o755
	return e
}

func folder(name string) ent {
	return ent{h: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}

func symlink(name, target string) ent {
	return ent{h: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}}
}

func special(name string, typ byte, mode int64) ent {
	return ent{h: tar.Header{Name: name, Typeflag: typ, Mode: mode}}
}

// tarBytes writes ents as an uncompressed tar, failing t on writer errors.
func tarBytes(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.h
		if h.Typeflag != tar.TypeXGlobalHeader {
			h.ModTime = time.Unix(1767323045, 0)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing header %q: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("writing %q: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// gzipWriters saves the fuzzer allocating a compressor per input.
var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func tgz(t testing.TB, ents ...ent) []byte { return gz(t, tarBytes(t, ents...)) }

// block is a raw ustar header, for archives tar.Writer refuses to write.
func block(name string, typ byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b, name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "00000000000\x00")
	b[156] = typ
	copy(b[257:], "ustar\x0000")
	copy(b[148:], "        ")
	var sum int
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func pad(b []byte) []byte {
	if n := len(b) % 512; n != 0 {
		b = append(b, make([]byte, 512-n)...)
	}
	return b
}

// paxEntry is a raw tar of one entry preceded by a PAX header holding
// records ("key=value"), for what tar.Writer refuses to write: NUL in a
// path, GNU sparse records.
func paxEntry(records []string, name string, typ byte, body string) []byte {
	var data []byte
	for _, kv := range records {
		rec := " " + kv + "\n"
		n := len(rec) + len(fmt.Sprint(len(rec)))
		if len(fmt.Sprint(n)) != len(fmt.Sprint(len(rec))) {
			n++
		}
		data = append(data, fmt.Sprint(n)+rec...)
	}
	var b []byte
	b = append(b, block("PaxHeaders/"+name, tar.TypeXHeader, int64(len(data)))...)
	b = append(b, pad(data)...)
	b = append(b, block(name, typ, int64(len(body)))...)
	b = append(b, pad([]byte(body))...)
	return append(b, make([]byte, 1024)...)
}

func paxPath(name string) []byte { return paxEntry([]string{"path=" + name}, "x", tar.TypeReg, "") }

// setup makes parent/dir and parent/outside.txt, the file attacks aim at.
func setup(t testing.TB) (parent, dir string) {
	t.Helper()
	parent = t.TempDir()
	dir = filepath.Join(parent, "dir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "outside.txt"), []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	return parent, dir
}

const etcCanary = "/etc/cohuron-extract-test-canary"

// checkContained fails t if anything was written outside dir, or if dir
// holds anything Extract must never leave: symlinks leaving dir, special
// files, modes other than 0644/0755.
func checkContained(t testing.TB, parent, dir string) {
	t.Helper()
	des, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	if strings.Join(names, ",") != "dir,outside.txt" {
		t.Errorf("parent holds %v, want only dir and outside.txt", names)
	}
	if b, err := os.ReadFile(filepath.Join(parent, "outside.txt")); err != nil || string(b) != "original" {
		t.Errorf("outside.txt changed: %q, %v", b, err)
	}
	if st, err := os.Lstat(filepath.Join(parent, "outside.txt")); err != nil || st.Mode() != 0o644 {
		t.Errorf("outside.txt mode changed: %v, %v", st.Mode(), err)
	}
	if _, err := os.Lstat(etcCanary); err == nil {
		t.Errorf("%s was created", etcCanary)
	}
	err = filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		m := st.Mode()
		switch {
		case m.IsDir():
			if m.Perm() != 0o755 || m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
				t.Errorf("%s: dir mode %v", p, m)
			}
		case m.IsRegular():
			if (m.Perm() != 0o644 && m.Perm() != 0o755) || m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
				t.Errorf("%s: file mode %v", p, m)
			}
			if st.Sys().(*syscall.Stat_t).Nlink != 1 {
				t.Errorf("%s: hard link", p)
			}
		case m&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if filepath.IsAbs(target) {
				t.Errorf("%s: absolute symlink %s", p, target)
			}
			if j := filepath.Join(filepath.Dir(p), target); !inside(dir, j) {
				t.Errorf("%s -> %s leaves dir lexically", p, target)
			}
			if real, err := filepath.EvalSymlinks(p); err == nil && !inside(dir, real) {
				t.Errorf("%s -> %s resolves to %s, outside dir", p, target, real)
			}
		default:
			t.Errorf("%s: unexpected file type %v", p, m)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

func inside(dir, p string) bool {
	return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator))
}

// oneGiBOfZeros is a gzip bomb made lazily: 1024 files of 1 MiB zeros,
// compressed as they are read, so a test that stops early stops the
// generator too.
func oneGiBOfZeros(t *testing.T) io.Reader {
	pr, pw := io.Pipe()
	t.Cleanup(func() { pr.Close() })
	go func() {
		zw, _ := gzip.NewWriterLevel(pw, gzip.BestSpeed)
		tw := tar.NewWriter(zw)
		zeros := make([]byte, 1<<20)
		for i := range 1024 {
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("zero%04d", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 20}); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := tw.Write(zeros); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		tw.Close()
		zw.Close()
		pw.Close()
	}()
	return pr
}

// damaged marks attacks refused as damaged input rather than as an
// unsafe entry.
const damaged = "\x00damaged"

type attack struct {
	name  string
	input func(t *testing.T, parent string) io.Reader
	lim   extract.Limits
	// entry is the Entry of the *UnsafeError expected, "*" for any;
	// damaged expects a rejected error that is not an *UnsafeError.
	entry  string
	reason string // substring of the error
}

func archive(ents ...ent) func(*testing.T, string) io.Reader {
	return func(t *testing.T, _ string) io.Reader { return bytes.NewReader(tgz(t, ents...)) }
}

func rawGz(f func(t *testing.T) []byte) func(*testing.T, string) io.Reader {
	return func(t *testing.T, _ string) io.Reader { return bytes.NewReader(gz(t, f(t))) }
}

func raw(f func(t *testing.T) []byte) func(*testing.T, string) io.Reader {
	return func(t *testing.T, _ string) io.Reader { return bytes.NewReader(f(t)) }
}

var attacks = []attack{
	{name: "dotdot", input: archive(file("../outside.txt", "pwned")), entry: "../outside.txt", reason: ".. component"},
	{name: "dotdot-nested", input: archive(folder("a/"), file("a/../../outside.txt", "pwned")), entry: "a/../../outside.txt", reason: ".. component"},
	{name: "dotdot-dir", input: archive(folder("../x/")), entry: "../x/", reason: ".. component"},
	{name: "absolute", input: archive(file(etcCanary, "pwned")), entry: etcCanary, reason: "absolute"},
	{name: "absolute-to-parent", input: func(t *testing.T, parent string) io.Reader {
		return bytes.NewReader(tgz(t, file(filepath.Join(parent, "outside.txt"), "pwned")))
	}, entry: "*", reason: "absolute"},
	{name: "symlink-to-etc", input: archive(symlink("etc", "/etc")), entry: "etc", reason: "absolute"},
	{name: "symlink-to-etc-then-file", input: archive(symlink("etc", "/etc"), file("etc/cohuron-extract-test-canary", "pwned")), entry: "etc", reason: "absolute"},
	{name: "symlink-dotdot", input: archive(folder("a/"), symlink("a/up", "../../outside.txt")), entry: "a/up", reason: "outside"},
	{name: "symlink-dotdot-top", input: archive(symlink("up", "..")), entry: "up", reason: "outside"},
	{name: "symlink-abs-parent-then-file", input: func(t *testing.T, parent string) io.Reader {
		return bytes.NewReader(tgz(t, symlink("out", parent), file("out/outside.txt", "pwned")))
	}, entry: "out", reason: "absolute"},
	{name: "symlink-then-file-through-it", input: archive(folder("sub/"), symlink("link", "sub"), file("link/file", "x")), entry: "link/file", reason: "through symlink link"},
	{name: "symlink-then-dir-through-it", input: archive(folder("sub/"), symlink("link", "sub"), folder("link/d/")), entry: "link/d/", reason: "through symlink link"},
	{name: "symlink-then-deep-file-through-it", input: archive(folder("sub/"), symlink("link", "sub"), file("link/x/y/z", "x")), entry: "link/x/y/z", reason: "through symlink link"},
	{name: "symlink-chain-escape", input: archive(symlink("a", "."), symlink("s", "a/..")), entry: "s", reason: "resolves outside"},
	{name: "symlink-chain-escape-late", input: archive(folder("d/e/"), symlink("s", "d/e/a/.."), symlink("d/e/a", "../..")), entry: "s", reason: "resolves outside"},
	{name: "symlink-loop", input: archive(symlink("l", "l")), entry: "l", reason: "levels of symlinks"},
	{name: "symlink-empty-target", input: archive(symlink("l", "")), entry: "l", reason: "empty symlink target"},
	{name: "symlink-backslash-target", input: archive(symlink("l", `..\..\x`)), entry: "l", reason: "backslash"},
	{name: "symlink-then-same-name-file", input: archive(symlink("l", "f"), file("l", "x")), entry: "l", reason: "duplicate"},
	{name: "hardlink-etc-passwd", input: archive(ent{h: tar.Header{Name: "passwd", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}}), entry: "passwd", reason: "hard link"},
	{name: "hardlink-inside", input: archive(file("a", "x"), ent{h: tar.Header{Name: "b", Typeflag: tar.TypeLink, Linkname: "a"}}), entry: "b", reason: "hard link"},
	{name: "char-device", input: archive(special("null", tar.TypeChar, 0o666)), entry: "null", reason: "character device"},
	{name: "block-device", input: archive(special("sda", tar.TypeBlock, 0o660)), entry: "sda", reason: "block device"},
	{name: "fifo", input: archive(special("pipe", tar.TypeFifo, 0o644)), entry: "pipe", reason: "FIFO"},
	{name: "unknown-type", input: archive(special("cont", tar.TypeCont, 0o644)), entry: "cont", reason: "entry type"},
	{name: "setuid-file", input: archive(ent{h: tar.Header{Name: "su", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 1}, body: "x"}), entry: "su", reason: "setuid"},
	{name: "setgid-dir", input: archive(ent{h: tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o2755}}), entry: "d/", reason: "setgid"},
	{name: "sticky-dir", input: archive(ent{h: tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}}), entry: "tmp/", reason: "sticky"},
	{name: "duplicate-file", input: archive(file("a", "one"), file("a", "two")), entry: "a", reason: "duplicate"},
	{name: "duplicate-dir", input: archive(folder("d/"), folder("d/")), entry: "d/", reason: "duplicate"},
	{name: "file-then-dir", input: archive(file("a", "x"), folder("a/")), entry: "a/", reason: "duplicate"},
	{name: "dir-then-file", input: archive(folder("a/"), file("a", "x")), entry: "a", reason: "duplicate"},
	{name: "file-as-parent", input: archive(file("a", "x"), file("a/b", "y")), entry: "a/b", reason: "is a file"},
	{name: "nul-in-name", entry: damaged, input: raw(func(t *testing.T) []byte { return gz(t, paxPath("a\x00/../../outside.txt")) })},
	{name: "backslash", input: archive(file(`..\..\outside.txt`, "x")), entry: `..\..\outside.txt`, reason: "backslash"},
	{name: "invalid-utf8", input: archive(file("a\xff.txt", "x")), entry: "a\xff.txt", reason: "UTF-8"},
	{name: "empty-name", input: archive(file("", "x")), entry: "", reason: "empty name"},
	{name: "dot-slash", input: archive(file("./a", "x")), entry: "./a", reason: "clean"},
	{name: "double-slash", input: archive(file("a//b", "x")), entry: "a//b", reason: "clean"},
	{name: "dot-dir", input: archive(folder("./")), entry: "./", reason: "clean"},
	{name: "file-trailing-slash", input: rawGz(func(t *testing.T) []byte {
		return append(block("a/", tar.TypeReg, 0), make([]byte, 1024)...) // tar.Writer refuses it
	}), entry: "a/", reason: "clean"},
	{name: "long-component", input: archive(file(strings.Repeat("a", 256), "x")), entry: strings.Repeat("a", 256), reason: "255"},
	{name: "too-many-entries", input: archive(file("a", "1"), file("b", "2"), file("c", "3"), file("d", "4")), lim: extract.Limits{Files: 3}, entry: "d", reason: "more than 3 entries"},
	{name: "more-files-than-signed", input: archive(folder("x/"), folder("x/y/"), file("x/a", "1"), file("x/b", "2"), file("x/c", "3")), lim: extract.Limits{NonDirs: 2}, entry: "x/c", reason: "more than 2 files and links"},
	{name: "too-many-implied-dirs", input: archive(file("a/b/c/d", "1")), lim: extract.Limits{Files: 3}, entry: "a/b/c/d", reason: "more than 3 entries"},
	{name: "too-many-bytes", input: archive(file("a", strings.Repeat("x", 60)), file("b", strings.Repeat("y", 60))), lim: extract.Limits{Bytes: 100}, entry: "b", reason: "more than 100 bytes"},
	{name: "header-size-over-cap", input: archive(file("a", "0123456789")), lim: extract.Limits{Bytes: 5}, entry: "a", reason: "more than 5 bytes"},
	{name: "header-size-longer-than-data", entry: damaged, input: rawGz(func(t *testing.T) []byte {
		// The header says 10 bytes; 5 follow, then the stream ends.
		return append(block("a", tar.TypeReg, 10), "01234"...)
	}), reason: "unexpected EOF"},
	{name: "header-size-shorter-than-data", entry: damaged, input: rawGz(func(t *testing.T) []byte {
		// The header says 0 bytes; 600 bytes of data follow and are
		// read as the next header.
		b := block("a", tar.TypeReg, 0)
		b = append(b, bytes.Repeat([]byte("A"), 600)...)
		return append(pad(b), make([]byte, 1024)...)
	}), reason: "invalid tar header"},
	{name: "sparse-bomb", input: rawGz(func(t *testing.T) []byte {
		// One byte of data, read back as 1 GiB (holes are zeros).
		return paxEntry([]string{"GNU.sparse.major=0", "GNU.sparse.minor=1", "GNU.sparse.name=s", "GNU.sparse.numblocks=1",
			"GNU.sparse.realsize=1073741824", "GNU.sparse.map=1073741823,1"}, "s", tar.TypeReg, "x")
	}), lim: extract.Limits{Bytes: 1 << 20}, entry: "s", reason: "more than 1048576 bytes"},
	{name: "sparse-name-dotdot", input: rawGz(func(t *testing.T) []byte {
		// GNU sparse headers carry their own name, which overrides path.
		return paxEntry([]string{"path=s", "GNU.sparse.major=0", "GNU.sparse.minor=1", "GNU.sparse.name=../outside.txt", "GNU.sparse.numblocks=1",
			"GNU.sparse.realsize=4096", "GNU.sparse.map=4095,1"}, "s", tar.TypeReg, "x")
	}), entry: "../outside.txt", reason: ".. component"},
	{name: "gzip-bomb", input: func(t *testing.T, _ string) io.Reader { return oneGiBOfZeros(t) }, lim: extract.Limits{Bytes: 4 << 20}, entry: "zero0004", reason: "more than 4194304 bytes"},
	{name: "pax-header-bomb", input: archive(func() []ent {
		// 64 entries with 256 KiB of PAX comment each: nothing written,
		// 16 MiB to decompress.
		var ents []ent
		for i := range 64 {
			e := file(fmt.Sprintf("f%02d", i), "")
			e.h.PAXRecords = map[string]string{"comment": strings.Repeat("c", 256<<10)}
			ents = append(ents, e)
		}
		return ents
	}()...), lim: extract.Limits{Bytes: 1 << 20}, entry: damaged, reason: "headers too large"},
	{name: "truncated-gzip", entry: damaged, input: raw(func(t *testing.T) []byte {
		b := tgz(t, file("a", strings.Repeat("hello ", 1000)), file("b", "x"))
		return b[:len(b)/2]
	}), reason: "unexpected EOF"},
	{name: "truncated-gzip-trailer", entry: damaged, input: raw(func(t *testing.T) []byte {
		b := tgz(t, file("a", "x"))
		return b[:len(b)-4] // drop ISIZE: the data is all there, the check is not
	}), reason: "unexpected EOF"},
	{name: "corrupt-gzip-crc", entry: damaged, input: raw(func(t *testing.T) []byte {
		b := tgz(t, file("a", "x"))
		b[len(b)-8] ^= 0xff
		return b
	}), reason: "checksum"},
	{name: "tar-without-end-marker", entry: damaged, input: rawGz(func(t *testing.T) []byte {
		b := tarBytes(t, file("a", "x"))
		return b[:len(b)-1024]
	}), reason: "end-of-archive marker"},
	{name: "tar-one-zero-block", entry: damaged, input: rawGz(func(t *testing.T) []byte {
		b := tarBytes(t, file("a", "x"))
		return b[:len(b)-512]
	}), reason: "end-of-archive marker"},
	{name: "empty-gzip", entry: damaged, input: rawGz(func(t *testing.T) []byte { return nil }), reason: "end-of-archive marker"},
	{name: "not-gzip", entry: damaged, input: raw(func(t *testing.T) []byte { return tarBytes(t, file("a", "x")) }), reason: "not gzip"},
	{name: "empty-input", entry: damaged, input: raw(func(t *testing.T) []byte { return nil }), reason: "not gzip"},
	{name: "trailing-garbage", entry: damaged, input: raw(func(t *testing.T) []byte { return append(tgz(t, file("a", "x")), "garbage"...) }), reason: "after the end of the gzip stream"},
	{name: "second-gzip-member", entry: damaged, input: raw(func(t *testing.T) []byte {
		return append(tgz(t, file("a", "x")), tgz(t, file("../outside.txt", "pwned"))...)
	}), reason: "after the end of the gzip stream"},
	{name: "data-after-tar-end", entry: damaged, input: rawGz(func(t *testing.T) []byte {
		return append(tarBytes(t, file("a", "x")), tarBytes(t, file("../outside.txt", "pwned"))...)
	}), reason: "after the tar end-of-archive marker"},
	{name: "too-much-padding-after-tar-end", entry: damaged, input: rawGz(func(t *testing.T) []byte {
		return append(tarBytes(t, file("a", "x")), make([]byte, 2<<20)...)
	}), reason: "padding"},
}

func TestAttacks(t *testing.T) {
	if len(attacks) < 25 {
		t.Fatalf("only %d attack cases", len(attacks))
	}
	for _, tc := range attacks {
		t.Run(tc.name, func(t *testing.T) {
			parent, dir := setup(t)
			_, err := extract.Extract(tc.input(t, parent), dir, tc.lim)
			if err == nil {
				t.Fatal("Extract succeeded, want an error")
			}
			if got := fault.ExitCode(err); got != fault.ExitRejected {
				t.Errorf("ExitCode = %d, want %d (err: %v)", got, fault.ExitRejected, err)
			}
			var ue *extract.UnsafeError
			isUnsafe := errors.As(err, &ue)
			switch {
			case tc.entry == damaged && isUnsafe:
				t.Errorf("got *UnsafeError %v, want a rejected read error", err)
			case tc.entry == damaged:
			case !isUnsafe:
				t.Errorf("got %v (%T), want *UnsafeError", err, err)
			case tc.entry != "*" && ue.Entry != tc.entry:
				t.Errorf("UnsafeError.Entry = %q, want %q (err: %v)", ue.Entry, tc.entry, err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not mention %q", err, tc.reason)
			}
			checkContained(t, parent, dir)
		})
	}
}

// TestNoSymlinkBeforeEnd: a refused symlink is never created, even after
// good entries, so a failed extraction leaves no escaping link behind.
func TestNoSymlinkLeftOnError(t *testing.T) {
	parent, dir := setup(t)
	data := tgz(t, symlink("a", "."), file("f", "x"), symlink("s", "a/.."))
	_, err := extract.Extract(bytes.NewReader(data), dir, extract.Limits{})
	var ue *extract.UnsafeError
	if !errors.As(err, &ue) || ue.Entry != "s" {
		t.Fatalf("err = %v, want UnsafeError for s", err)
	}
	for _, n := range []string{"a", "s"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("symlink %s exists after a refused archive: %v", n, err)
		}
	}
	checkContained(t, parent, dir)
}

func TestUnsafeError(t *testing.T) {
	err := error(&extract.UnsafeError{Entry: "../x", Reason: "path has a .. component"})
	if got, want := err.Error(), `unsafe archive entry "../x": path has a .. component`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if k := fault.KindOf(fmt.Errorf("extracting: %w", err)); k != fault.KindRejected {
		t.Errorf("KindOf = %v, want rejected", k)
	}
}

func TestTree(t *testing.T) {
	parent, dir := setup(t)
	// The modes must not depend on the process umask.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	data := tgz(t,
		folder("a/"),
		folder("a/deep/"),
		file("a/deep/readme.txt", "hello\n"),
		ent{h: tar.Header{Name: "a/run.sh", Typeflag: tar.TypeReg, Mode: 0o700, Size: 10}, body: "#!/bin/sh\n"},
		ent{h: tar.Header{Name: "a/private", Typeflag: tar.TypeReg, Mode: 0o600, Size: 1}, body: "p"},
		ent{h: tar.Header{Name: "a/group-exec", Typeflag: tar.TypeReg, Mode: 0o610, Size: 1}, body: "g"},
		symlink("a/link", "../b/file"),
		symlink("a/dirlink", "deep"),
		symlink("top", "a/deep/readme.txt"),
		file("b/file", "target\n"), // b/ is implied
		file("b/empty", ""),
		ent{h: tar.Header{Name: "c/", Typeflag: tar.TypeDir, Mode: 0o700}},
		file("x/y/z/w.txt", "deep"), // three implied dirs
		folder("x/y/"),              // named after it was implied: fine
		ent{h: tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "x"}}},
	)
	st, err := extract.Extract(bytes.NewReader(data), dir, extract.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := extract.Stats{Files: 7, Dirs: 7, Links: 3, Bytes: int64(len("hello\n#!/bin/sh\npgtarget\ndeep"))}
	if st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	for p, c := range map[string]string{
		"a/deep/readme.txt": "hello\n", "a/run.sh": "#!/bin/sh\n", "a/private": "p", "a/group-exec": "g",
		"a/link": "target\n", "a/dirlink/readme.txt": "hello\n", "top": "hello\n", "b/file": "target\n",
		"b/empty": "", "x/y/z/w.txt": "deep",
	} {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || string(b) != c {
			t.Errorf("%s = %q, %v; want %q", p, b, err, c)
		}
	}
	for p, m := range map[string]fs.FileMode{
		"a/deep/readme.txt": 0o644, "a/run.sh": 0o755, "a/private": 0o644, "a/group-exec": 0o755,
		"a": fs.ModeDir | 0o755, "b": fs.ModeDir | 0o755, "c": fs.ModeDir | 0o755, "x/y/z": fs.ModeDir | 0o755,
		"a/link": fs.ModeSymlink | 0o777,
	} {
		fi, err := os.Lstat(filepath.Join(dir, p))
		if err != nil || fi.Mode() != m {
			t.Errorf("%s: mode %v, %v; want %v", p, fi.Mode(), err, m)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "a/link")); err != nil || target != "../b/file" {
		t.Errorf("a/link -> %q, %v", target, err)
	}
	checkContained(t, parent, dir)
}

func TestEmptyArchive(t *testing.T) {
	_, dir := setup(t)
	st, err := extract.Extract(bytes.NewReader(tgz(t)), dir, extract.Limits{})
	if err != nil || st != (extract.Stats{}) {
		t.Fatalf("Extract(empty) = %+v, %v", st, err)
	}
}

// TestLimitsExact: an archive exactly at its limits is accepted.
func TestLimitsExact(t *testing.T) {
	_, dir := setup(t)
	data := tgz(t, folder("d/"), file("d/a", "12345"), file("d/b", "67890"))
	st, err := extract.Extract(bytes.NewReader(data), dir, extract.Limits{Files: 3, Bytes: 10})
	if err != nil || st.Bytes != 10 || st.Files != 2 {
		t.Fatalf("Extract = %+v, %v", st, err)
	}
}

// TestTarPadding: GNU tar pads archives to 10 KiB records; the zeros after
// the end marker are fine.
func TestTarPadding(t *testing.T) {
	_, dir := setup(t)
	b := tarBytes(t, file("a", "x"))
	b = append(b, make([]byte, 10240-len(b)%10240)...)
	if _, err := extract.Extract(bytes.NewReader(gz(t, b)), dir, extract.Limits{}); err != nil {
		t.Fatal(err)
	}
}

func TestDirMustBeEmptyAndExist(t *testing.T) {
	parent, dir := setup(t)
	if err := os.WriteFile(filepath.Join(dir, "old"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	data := tgz(t, file("a", "x"))
	_, err := extract.Extract(bytes.NewReader(data), dir, extract.Limits{})
	if fault.ExitCode(err) != fault.ExitUsage || !strings.Contains(fmt.Sprint(err), "not empty") {
		t.Errorf("non-empty dir: %v", err)
	}
	_, err = extract.Extract(bytes.NewReader(data), filepath.Join(parent, "missing"), extract.Limits{})
	if fault.ExitCode(err) != fault.ExitUsage {
		t.Errorf("missing dir: %v", err)
	}
	_, err = extract.Extract(bytes.NewReader(data), filepath.Join(parent, "outside.txt"), extract.Limits{})
	if fault.ExitCode(err) != fault.ExitUsage {
		t.Errorf("dir is a file: %v", err)
	}
}

type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// TestSourceErrorKeepsItsKind: a dropped download is not bad input.
func TestSourceErrorKeepsItsKind(t *testing.T) {
	data := tgz(t, file("a", strings.Repeat("x", 1<<16)), file("b", "y"))
	for _, n := range []int{0, 5, len(data) / 2, len(data) - 1} {
		_, dir := setup(t)
		cause := fault.Transient(errors.New("connection reset"))
		_, err := extract.Extract(&failingReader{r: bytes.NewReader(data), n: n, err: cause}, dir, extract.Limits{})
		if !errors.Is(err, cause) || fault.KindOf(err) != fault.KindTransient {
			t.Errorf("failing after %d bytes: err = %v (kind %v), want the source's transient error", n, err, fault.KindOf(err))
		}
	}
}

// TestBundleRoundTrip extracts a bundle built by pkg/bundle from a git
// repository and compares every entry with the index and the commit.
func TestBundleRoundTrip(t *testing.T) {
	testenv.Bin(t, "git")
	files := map[string]string{
		"package.json":                          `{"name":"x"}`,
		"pnpm-lock.yaml":                        "lockfileVersion: '9.0'\n",
		"apps/api/server.js":                    "console.log('v1')\n",
		"apps/web/index.html":                   "<h1>hi</h1>\n",
		"db/01_schema.ddl":                      "CREATE SCHEMA app;\n",
		"db/system/02_task.ddl":                 "CREATE TABLE app.task(id int);\n",
		"scripts/deploy.sh":                     "#!/bin/sh\necho deploy\n",
		"a/b/c/d/e/" + strings.Repeat("n", 120): "long path\n",
		"unicode/résumé.txt":                    "é\n",
		"empty.txt":                             "",
		"apps/web/public/big.bin":               strings.Repeat("0123456789abcdef", 1<<14),
	}
	repo := testenv.NewRepo(t, files)
	if err := os.Chmod(filepath.Join(repo, "scripts/deploy.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("server.js", filepath.Join(repo, "apps/api/main.js")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../db", filepath.Join(repo, "apps/web/db")); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, repo, "add", "-A")
	testenv.Git(t, repo, "commit", "-q", "-m", "exec and links")

	var buf bytes.Buffer
	res, err := gitbundle.Build(context.Background(), gitbundle.Options{Repo: repo}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	parent, dir := setup(t)
	st, err := extract.Extract(bytes.NewReader(buf.Bytes()), dir, extract.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files+st.Links != len(res.Index.Entries) || st.Links != 2 || st.Bytes != res.Index.Unpacked() {
		t.Errorf("Stats = %+v; index has %d entries, %d bytes", st, len(res.Index.Entries), res.Index.Unpacked())
	}
	for name, content := range files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != content {
			t.Errorf("%s: %d bytes, %v; want %d bytes", name, len(b), err, len(content))
		}
	}
	for _, e := range res.Index.Entries {
		fi, err := os.Lstat(filepath.Join(dir, e.Path))
		if err != nil {
			t.Errorf("%s: %v", e.Path, err)
			continue
		}
		want := fs.FileMode(e.Mode)
		if e.Link {
			want = fs.ModeSymlink | 0o777
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", e.Path, fi.Mode(), want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "apps/api/main.js")); err != nil || string(b) != files["apps/api/server.js"] {
		t.Errorf("apps/api/main.js -> server.js: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "apps/web/db/01_schema.ddl")); err != nil || string(b) != files["db/01_schema.ddl"] {
		t.Errorf("apps/web/db -> ../../db: %q, %v", b, err)
	}
	// ReadIndex and Extract agree on what a bundle is.
	if _, err := bundle.ReadIndex(bytes.NewReader(buf.Bytes()), bundle.ReadLimits{}); err != nil {
		t.Errorf("ReadIndex: %v", err)
	}
	checkContained(t, parent, dir)
}

// FuzzExtract feeds random bytes and mutated archives (as gzip bytes, or
// as tar bytes compressed here so mutations reach the tar layer). Extract
// must not panic and must never write outside dir or leave anything
// checkContained refuses, whether it succeeds or not. Each input extracts
// into fresh temp dirs, so point TMPDIR at a tmpfs (/dev/shm) to fuzz
// several times faster.
func FuzzExtract(f *testing.F) {
	seeds := [][]ent{
		{folder("a/"), file("a/b", "hello"), exe("a/run", "#!/bin/sh\n"), symlink("a/l", "b"), symlink("top", "a/l")},
		{file("x/y/z", "deep"), folder("x/y/"), symlink("x/y/up", "../../x")},
		{symlink("a", "."), symlink("s", "a/x")},
		{folder("sub/"), symlink("link", "sub"), file("f", strings.Repeat("z", 2000))},
		{file("a", "1"), file("b", "2")},
	}
	for _, s := range seeds {
		tb := tarBytes(f, s...)
		f.Add(tb, true)
		f.Add(gz(f, tb), false)
	}
	f.Add(paxPath("a\x00b"), true)
	f.Add([]byte("not gzip"), false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, data []byte, compress bool) {
		if compress {
			data = gz(t, data)
		}
		parent, dir := setup(t)
		_, err := extract.Extract(bytes.NewReader(data), dir, extract.Limits{Files: 200, Bytes: 1 << 20})
		if err != nil && fault.ExitCode(err) != fault.ExitRejected {
			t.Errorf("error %v has exit code %d, want %d", err, fault.ExitCode(err), fault.ExitRejected)
		}
		checkContained(t, parent, dir)
	})
}

// BenchmarkExtract extracts a ~20 MB bundle shaped like a monorepo:
// thousands of text files and some incompressible assets.
func BenchmarkExtract(b *testing.B) {
	var ents []ent
	var unpacked int64
	line := "export const value = await fetchProject(request, response); // task business\n"
	for i := range 2000 {
		if i%100 == 0 {
			ents = append(ents, folder(fmt.Sprintf("apps/mod%02d/", i/100)))
		}
		body := strings.Repeat(line, 60+i%120)
		ents = append(ents, file(fmt.Sprintf("apps/mod%02d/file%04d.ts", i/100, i), body))
		unpacked += int64(len(body))
	}
	seed := uint32(1)
	for i := range 16 {
		asset := make([]byte, 256<<10)
		for j := range asset {
			seed = seed*1664525 + 1013904223
			asset[j] = byte(seed >> 24)
		}
		ents = append(ents, file(fmt.Sprintf("public/img%02d.png", i), string(asset)))
		unpacked += int64(len(asset))
	}
	data := tgz(b, ents...)
	b.Logf("bundle: %d entries, %.1f MB unpacked, %.1f MB compressed", len(ents), float64(unpacked)/1e6, float64(len(data))/1e6)
	b.SetBytes(unpacked)
	parent := b.TempDir()
	b.ResetTimer()
	for i := range b.N {
		d := filepath.Join(parent, fmt.Sprint(i))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		if _, err := extract.Extract(bytes.NewReader(data), d, extract.Limits{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(d)
		b.StartTimer()
	}
}

// TestSparse: GNU sparse files are extracted with their holes written
// as zeros, which count against the byte cap.
func TestSparse(t *testing.T) {
	data := gz(t, paxEntry([]string{"GNU.sparse.major=0", "GNU.sparse.minor=1", "GNU.sparse.name=s", "GNU.sparse.numblocks=1",
		"GNU.sparse.realsize=4096", "GNU.sparse.map=4095,1"}, "s", tar.TypeReg, "x"))
	_, dir := setup(t)
	st, err := extract.Extract(bytes.NewReader(data), dir, extract.Limits{Bytes: 4096})
	if err != nil || st.Bytes != 4096 {
		t.Fatalf("Extract = %+v, %v", st, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "s")); string(b) != strings.Repeat("\x00", 4095)+"x" {
		t.Errorf("s = %q...", b[:16])
	}
	_, dir = setup(t)
	var ue *extract.UnsafeError
	if _, err := extract.Extract(bytes.NewReader(data), dir, extract.Limits{Bytes: 4095}); !errors.As(err, &ue) {
		t.Errorf("over the cap by its holes: %v", err)
	}
}
