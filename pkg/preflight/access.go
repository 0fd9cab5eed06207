package preflight

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Info is the metadata of one file, as lstat reports it.
type Info struct {
	Mode     fs.FileMode // type and permission bits
	Uid, Gid uint32
}

// FS is the host's file system as preflight reads it: metadata, link
// targets and the first bytes of a file, nothing else. preflight
// resolves symlinks itself: every path it passes is absolute and clean,
// and its directory holds no symlink, so an implementation may look
// paths up as plain keys.
type FS interface {
	// Lstat describes name without following a final symlink. A missing
	// file is an error matching fs.ErrNotExist.
	Lstat(name string) (Info, error)
	// Readlink returns the target of the symlink name, as written.
	Readlink(name string) (string, error)
	// ReadHead returns up to n bytes from the start of the regular file
	// name (to find a #! line); it must not follow a final symlink.
	ReadHead(name string, n int) ([]byte, error)
}

// HostFS is the real file system.
type HostFS struct{}

// Lstat implements FS.
func (HostFS) Lstat(name string) (Info, error) {
	fi, err := os.Lstat(name)
	if err != nil {
		return Info{}, err
	}
	info := Info{Mode: fi.Mode()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		info.Uid, info.Gid = st.Uid, st.Gid
	}
	return info, nil
}

// Readlink implements FS.
func (HostFS) Readlink(name string) (string, error) { return os.Readlink(name) }

// ReadHead implements FS. O_NONBLOCK keeps a FIFO swapped in after Lstat
// from blocking the open.
func (HostFS) ReadHead(name string, n int) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	b := make([]byte, n)
	m, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:m], nil
}

// maxLinks is the kernel's limit on symlinks followed in one lookup.
const maxLinks = 40

// walk is one path resolved as the kernel resolves it.
type walk struct {
	name  string // the path as given
	final string // the resolved path: no symlink in it
	info  Info   // of final
	// dirs are the directories searched, in order and without repeats:
	// those of name up to its first link, then those of each target.
	dirs  []string
	infos map[string]Info // of every directory in dirs
}

// show is the path for a message: "name" or "name → final".
func (w walk) show() string {
	if w.final == "" || w.final == w.name {
		return w.name
	}
	return w.name + " → " + w.final
}

// walkError is a path that does not resolve: missing, a non-directory
// in the middle, a link loop or an unreadable entry.
type walkError struct {
	at     string // the component's full path
	reason string // "does not exist", "is not a directory", …
	err    error
}

func (e *walkError) Error() string { return e.at + " " + e.reason }
func (e *walkError) Unwrap() error { return e.err }

// resolve walks name component by component from /, following symlinks
// (relative targets from the link's directory), and records every
// directory it searches.
func resolve(fsys FS, name string) (walk, error) {
	w := walk{name: name, infos: map[string]Info{}}
	if !filepath.IsAbs(name) {
		return w, &walkError{at: name, reason: "is not an absolute path"}
	}
	root, err := fsys.Lstat("/")
	if err != nil {
		return w, &walkError{at: "/", reason: "cannot be read: " + err.Error(), err: err}
	}
	w.infos["/"] = root
	cur := "/"
	rest := components(name)
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if !slices.Contains(w.dirs, cur) {
			w.dirs = append(w.dirs, cur)
		}
		if c == ".." {
			cur = filepath.Dir(cur)
			if len(rest) == 0 {
				w.final, w.info = cur, w.infos[cur]
			}
			continue
		}
		next := filepath.Join(cur, c)
		info, err := fsys.Lstat(next)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return w, &walkError{at: next, reason: "does not exist", err: err}
		case errors.Is(err, fs.ErrPermission):
			return w, &walkError{at: next, reason: "cannot be looked up by the agent: " + err.Error(), err: err}
		case err != nil:
			return w, &walkError{at: next, reason: "cannot be read: " + err.Error(), err: err}
		}
		switch {
		case info.Mode&fs.ModeSymlink != 0:
			if links++; links > maxLinks {
				return w, &walkError{at: next, reason: "is in a loop of symlinks (more than 40)"}
			}
			target, err := fsys.Readlink(next)
			if err != nil {
				return w, &walkError{at: next, reason: "is a symlink that cannot be read: " + err.Error(), err: err}
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			rest = append(components(target), rest...)
			if len(rest) == 0 { // a link to "/"
				w.final, w.info = cur, w.infos[cur]
			}
		case len(rest) == 0:
			w.final, w.info = next, info
		case info.Mode.IsDir():
			cur = next
			w.infos[cur] = info
		default:
			return w, &walkError{at: next, reason: "is not a directory"}
		}
	}
	if w.final == "" {
		w.final, w.info = cur, w.infos[cur]
	}
	return w, nil
}

// components splits p into its names, dropping empty ones and ".".
func components(p string) []string {
	var out []string
	for c := range strings.SplitSeq(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// account is whoever a step runs as.
type account struct {
	name   string // for messages: "cohuron", "root", "uid 1000"
	uid    uint32
	groups []uint32 // the primary group included
	home   string
	// root needs only an execute bit on files and may search every
	// directory.
	root bool
	// missing is an account that does not exist yet: owner and group
	// bits never apply to it, only other.
	missing bool
}

// Permission bits of one class.
const (
	permRead   = 4
	permSearch = 1 // execute, on a file
)

// allows reports whether the class of info that applies to a grants
// bit: owner when a owns the file, else group when a is in its group,
// else other (the kernel picks one class; it does not try the others).
func (a account) allows(info Info, bit fs.FileMode) bool {
	perm := info.Mode.Perm()
	if a.root {
		if bit == permSearch && !info.Mode.IsDir() {
			return perm&0o111 != 0
		}
		return true
	}
	switch {
	case !a.missing && info.Uid == a.uid:
		perm >>= 6
	case !a.missing && slices.Contains(a.groups, info.Gid):
		perm >>= 3
	}
	return perm&bit != 0
}

// blocked returns the first directory of w that a may not search.
func (a account) blocked(w walk) (string, bool) {
	for _, d := range w.dirs {
		if !a.allows(w.infos[d], permSearch) {
			return d, true
		}
	}
	return "", false
}
