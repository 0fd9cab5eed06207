package preflight

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/proc"
)

// fakeFS is a file system in memory: exact paths to entries. It checks
// the FS contract (absolute clean paths, no symlink in the directory
// part) on every call.
type fakeFS struct {
	t     *testing.T
	files map[string]*fakeFile
}

type fakeFile struct {
	info   Info
	target string // of a symlink
	data   string // of a regular file
}

// Ids and names of the fake host.
const (
	uidRoot    = 0
	uidCohuron = 1001
	gidCohuron = 1001
	gidStaff   = 50
	gidWheel   = 10
)

var fakeNames = map[uint32]string{0: "root", 1001: "cohuron", 50: "staff", 10: "wheel"}

func fakeName(id uint32) string {
	if n, ok := fakeNames[id]; ok {
		return n
	}
	return fmt.Sprint(id)
}

func newFakeFS(t *testing.T) *fakeFS {
	f := &fakeFS{t: t, files: map[string]*fakeFile{}}
	f.files["/"] = &fakeFile{info: Info{Mode: fs.ModeDir | 0o755}}
	return f
}

func (f *fakeFS) contract(name string) {
	f.t.Helper()
	if !filepath.IsAbs(name) || filepath.Clean(name) != name {
		f.t.Errorf("FS called with %q: not absolute and clean", name)
	}
	for d := filepath.Dir(name); d != "/"; d = filepath.Dir(d) {
		if e, ok := f.files[d]; ok && e.info.Mode&fs.ModeSymlink != 0 {
			f.t.Errorf("FS called with %q: %s is a symlink", name, d)
		}
	}
}

func (f *fakeFS) Lstat(name string) (Info, error) {
	f.contract(name)
	e, ok := f.files[name]
	if !ok {
		return Info{}, &fs.PathError{Op: "lstat", Path: name, Err: fs.ErrNotExist}
	}
	return e.info, nil
}

func (f *fakeFS) Readlink(name string) (string, error) {
	f.contract(name)
	e, ok := f.files[name]
	if !ok || e.info.Mode&fs.ModeSymlink == 0 {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return e.target, nil
}

func (f *fakeFS) ReadHead(name string, n int) ([]byte, error) {
	f.contract(name)
	e, ok := f.files[name]
	if !ok || !e.info.Mode.IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	return []byte(e.data[:min(n, len(e.data))]), nil
}

// parents makes the missing parents of p, 0755 root.
func (f *fakeFS) parents(p string) {
	d := filepath.Dir(p)
	if _, ok := f.files[d]; ok || d == "/" {
		return
	}
	f.parents(d)
	f.files[d] = &fakeFile{info: Info{Mode: fs.ModeDir | 0o755}}
}

// dir makes (or changes) a directory.
func (f *fakeFS) dir(p string, perm fs.FileMode, uid, gid uint32) *fakeFS {
	f.parents(p)
	f.files[p] = &fakeFile{info: Info{Mode: fs.ModeDir | perm, Uid: uid, Gid: gid}}
	return f
}

// file makes a regular file.
func (f *fakeFS) file(p string, perm fs.FileMode, uid, gid uint32, data string) *fakeFS {
	f.parents(p)
	f.files[p] = &fakeFile{info: Info{Mode: perm, Uid: uid, Gid: gid}, data: data}
	return f
}

// bin makes a 0755 root binary.
func (f *fakeFS) bin(p string) *fakeFS { return f.file(p, 0o755, 0, 0, "\x7fELF") }

// script makes a 0755 root script.
func (f *fakeFS) script(p, shebang string) *fakeFS {
	return f.file(p, 0o755, 0, 0, shebang+"\nexit 0\n")
}

func (f *fakeFS) link(p, target string) *fakeFS {
	f.parents(p)
	f.files[p] = &fakeFile{info: Info{Mode: fs.ModeSymlink | 0o777}, target: target}
	return f
}

func (f *fakeFS) rm(p string) *fakeFS {
	for k := range f.files {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(f.files, k)
		}
	}
	return f
}

// debianHost is a host set up as the README says: node from Debian,
// pnpm from npm install -g, docker.io with the compose plugin, the
// PostgreSQL client (Debian's pg_wrapper is a Perl script), and root's
// home closed.
func debianHost(t *testing.T) *fakeFS {
	f := newFakeFS(t)
	f.bin("/usr/bin/env").bin("/usr/bin/node").bin("/usr/bin/perl").bin("/usr/bin/sh").bin("/usr/bin/docker")
	f.script("/usr/local/lib/node_modules/pnpm/bin/pnpm.cjs", "#!/usr/bin/env node")
	f.link("/usr/local/bin/pnpm", "../lib/node_modules/pnpm/bin/pnpm.cjs")
	f.bin("/usr/libexec/docker/cli-plugins/docker-compose")
	f.script("/usr/share/postgresql-common/pg_wrapper", "#!/usr/bin/perl")
	f.link("/usr/bin/pg_dump", "../share/postgresql-common/pg_wrapper")
	f.link("/usr/bin/psql", "../share/postgresql-common/pg_wrapper")
	f.dir("/root", 0o700, 0, 0)
	f.dir("/home/cohuron", 0o750, uidCohuron, gidCohuron)
	return f
}

// fakeUsers are the accounts of the fake host.
func fakeUsers(name string) (proc.UserInfo, error) {
	switch name {
	case "root", "0":
		return proc.UserInfo{Uid: 0, Gid: 0, Groups: []uint32{0}, Home: "/root", Name: "root"}, nil
	case "cohuron", "1001":
		return proc.UserInfo{Uid: uidCohuron, Gid: gidCohuron, Groups: []uint32{gidCohuron, gidStaff}, Home: "/home/cohuron", Name: "cohuron"}, nil
	case "toor":
		return proc.UserInfo{Uid: 0, Gid: 0, Groups: []uint32{0}, Home: "/root", Name: "toor"}, nil
	case "broken":
		return proc.UserInfo{}, fmt.Errorf("looking up user %q: nss: connection refused", name)
	}
	return proc.UserInfo{}, fmt.Errorf("looking up user %q: %w", name, userUnknown(name))
}
