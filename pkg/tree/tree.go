package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

const openDir = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// LinkClone recreates the directory tree src at dst, which must not exist
// (its parent must): directories with the same mode bits (setgid and
// sticky included), regular files as hard links to the same inodes,
// symlinks with the same target text (never followed). When we are root,
// directories and symlinks keep their owner and group; hard links share
// them anyway. Anything else (device, fifo, socket) is refused with an
// error naming it. files is the number of regular files linked.
//
// The clone is built in a temporary sibling ".<name>.clone-*" and renamed
// to dst once complete and synced, so dst either does not exist or is
// whole; a crash can leave the temporary sibling behind, never a half
// tree at dst. src and dst must be on the same filesystem.
func LinkClone(src, dst string) (files int, err error) {
	st, err := os.Lstat(src)
	if err != nil {
		return 0, fmt.Errorf("cloning %s: %w", src, err)
	}
	if !st.IsDir() {
		return 0, fmt.Errorf("cloning %s: expected a directory, found %s", src, kind(st.Mode()))
	}
	if _, err := os.Lstat(dst); err == nil {
		return 0, fmt.Errorf("cloning %s to %s: destination already exists", src, dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("cloning %s to %s: checking destination: %w", src, dst, err)
	}
	parent := filepath.Dir(dst)
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dst)+".clone-")
	if err != nil {
		return 0, fmt.Errorf("cloning %s to %s: %w", src, dst, err)
	}
	defer func() {
		if err != nil {
			removeAll(tmp)
		}
	}()

	sfd, err := unix.Open(src, openDir, 0)
	if err != nil {
		return 0, fmt.Errorf("cloning %s: opening it: %w", src, err)
	}
	defer closeFd(sfd)
	var sst unix.Stat_t
	if err := unix.Fstat(sfd, &sst); err != nil {
		return 0, fmt.Errorf("cloning %s: %w", src, err)
	}
	if ls, ok := st.Sys().(*syscall.Stat_t); !ok || ls.Dev != sst.Dev || ls.Ino != sst.Ino {
		return 0, fmt.Errorf("cloning %s: the directory changed while it was being opened", src)
	}
	dfd, err := unix.Open(tmp, openDir, 0)
	if err != nil {
		return 0, fmt.Errorf("cloning %s: opening %s: %w", src, tmp, err)
	}
	defer closeFd(dfd)

	c := &cloner{src: src, root: os.Geteuid() == 0}
	if err := c.dir(sfd, dfd, "."); err != nil {
		return c.files, err
	}
	if err := c.dirAttrs(dfd, &sst, "."); err != nil {
		return c.files, err
	}
	// Everything must be on disk before the name appears.
	if err := unix.Syncfs(dfd); err != nil {
		return c.files, fmt.Errorf("cloning %s to %s: syncing: %w", src, dst, err)
	}
	if err := renameNoReplace(tmp, dst); err != nil {
		return c.files, fmt.Errorf("cloning %s to %s: %w", src, dst, err)
	}
	if pfd, err := unix.Open(parent, openDir, 0); err == nil {
		_ = unix.Fsync(pfd) // the rename is done; this only hurries it to disk
		closeFd(pfd)
	}
	return c.files, nil
}

type cloner struct {
	src   string
	root  bool
	files int
}

func (c *cloner) path(rel string) string { return filepath.Join(c.src, rel) }

// dir clones the entries of the open source directory sfd into dfd.
func (c *cloner) dir(sfd, dfd int, rel string) error {
	names, err := readNames(sfd, c.path(rel))
	if err != nil {
		return err
	}
	for _, name := range names {
		r := filepath.Join(rel, name)
		var st unix.Stat_t
		if err := unix.Fstatat(sfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("cloning %s: %w", c.path(r), err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := c.subdir(sfd, dfd, name, r, &st); err != nil {
				return err
			}
		case unix.S_IFREG:
			if err := unix.Linkat(sfd, name, dfd, name, 0); err != nil {
				return fmt.Errorf("cloning %s: hard link: %w", c.path(r), err)
			}
			// Linkat does not follow a symlink, but the name may have been
			// swapped for another file since Fstatat: check what we linked.
			var got unix.Stat_t
			if err := unix.Fstatat(dfd, name, &got, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("cloning %s: %w", c.path(r), err)
			}
			if got.Dev != st.Dev || got.Ino != st.Ino {
				return fmt.Errorf("cloning %s: the file changed while it was being linked", c.path(r))
			}
			c.files++
		case unix.S_IFLNK:
			target, err := readlinkat(sfd, name)
			if err != nil {
				return fmt.Errorf("cloning %s: reading symlink: %w", c.path(r), err)
			}
			if err := unix.Symlinkat(target, dfd, name); err != nil {
				return fmt.Errorf("cloning %s: symlink: %w", c.path(r), err)
			}
			if c.root {
				if err := unix.Fchownat(dfd, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
					return fmt.Errorf("cloning %s: owner of symlink: %w", c.path(r), err)
				}
			}
		default:
			return fmt.Errorf("cloning %s: %s is a %s: only directories, regular files and symlinks can be cloned",
				c.src, c.path(r), kind(fileMode(st.Mode)))
		}
	}
	return nil
}

func (c *cloner) subdir(sfd, dfd int, name, rel string, st *unix.Stat_t) error {
	csfd, err := unix.Openat(sfd, name, openDir, 0)
	if err != nil {
		return fmt.Errorf("cloning %s: %w", c.path(rel), err)
	}
	defer closeFd(csfd)
	var got unix.Stat_t
	if err := unix.Fstat(csfd, &got); err != nil {
		return fmt.Errorf("cloning %s: %w", c.path(rel), err)
	}
	if got.Dev != st.Dev || got.Ino != st.Ino {
		return fmt.Errorf("cloning %s: the directory changed while it was being cloned", c.path(rel))
	}
	if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
		return fmt.Errorf("cloning %s: mkdir: %w", c.path(rel), err)
	}
	cdfd, err := unix.Openat(dfd, name, openDir, 0)
	if err != nil {
		return fmt.Errorf("cloning %s: %w", c.path(rel), err)
	}
	defer closeFd(cdfd)
	if err := c.dir(csfd, cdfd, rel); err != nil {
		return err
	}
	// Mode last: a read-only source directory must still be filled.
	return c.dirAttrs(cdfd, &got, rel)
}

// dirAttrs gives the open directory fd the owner (when root) and mode of st.
func (c *cloner) dirAttrs(fd int, st *unix.Stat_t, rel string) error {
	if c.root {
		if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("cloning %s: owner: %w", c.path(rel), err)
		}
	}
	if err := unix.Fchmod(fd, st.Mode&0o7777); err != nil {
		return fmt.Errorf("cloning %s: mode: %w", c.path(rel), err)
	}
	return nil
}

// Chown sets the owner and group of root and everything under it to
// uid:gid without following any symlink: symlinks themselves are
// re-owned, their targets are not. A hard-linked file is one inode, so
// its other names (in other trees) change owner too: chown a tree before
// linking it to others, not after.
func Chown(root string, uid, gid int) error {
	st, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("chown %s: %w", root, err)
	}
	if !st.IsDir() {
		if err := os.Lchown(root, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", root, err)
		}
		return nil
	}
	fd, err := unix.Open(root, openDir, 0)
	if err != nil {
		return fmt.Errorf("chown %s: %w", root, err)
	}
	defer closeFd(fd)
	if err := chownDir(fd, root, uid, gid); err != nil {
		return err
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", root, err)
	}
	return nil
}

func chownDir(fd int, path string, uid, gid int) error {
	names, err := readNames(fd, path)
	if err != nil {
		return fmt.Errorf("chown %w", err)
	}
	for _, name := range names {
		p := filepath.Join(path, name)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		owned := int(st.Uid) == uid && int(st.Gid) == gid
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// Hard links shared with an older release are usually owned
			// already: leave them (and their ctime) alone.
			if owned {
				continue
			}
			if err := unix.Fchownat(fd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("chown %s: %w", p, err)
			}
			continue
		}
		cfd, err := unix.Openat(fd, name, openDir, 0)
		if err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		err = chownDir(cfd, p, uid, gid)
		if err == nil && !owned {
			if err = unix.Fchown(cfd, uid, gid); err != nil {
				err = fmt.Errorf("chown %s: %w", p, err)
			}
		}
		closeFd(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// readNames lists the directory open as fd (path is for messages) without
// moving fd's own offset: it reads through a duplicate.
func readNames(fd int, path string) ([]string, error) {
	dup, err := unix.Openat(fd, ".", openDir, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: reading directory: %w", path, err)
	}
	f := os.NewFile(uintptr(dup), path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("%s: reading directory: %w", path, err)
	}
	return names, nil
}

// removeAll removes a partial clone, first making its directories
// writable: a cloned read-only directory would stop a non-root caller.
func removeAll(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700) // WalkDir reports symlinks as such, never as directories
		}
		return nil
	})
	os.RemoveAll(dir) // does not follow symlinks
}

// closeFd closes a directory descriptor; nothing was written through it.
func closeFd(fd int) { _ = unix.Close(fd) }

func readlinkat(fd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// renameNoReplace renames old to new unless new exists (an empty
// directory would otherwise be silently replaced).
func renameNoReplace(old, new string) error {
	err := unix.Renameat2(unix.AT_FDCWD, old, unix.AT_FDCWD, new, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("destination appeared while cloning: %w", fs.ErrExist)
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) { // filesystem without RENAME_NOREPLACE
		if _, lerr := os.Lstat(new); lerr == nil {
			return fmt.Errorf("destination appeared while cloning: %w", fs.ErrExist)
		}
		return os.Rename(old, new)
	}
	return err
}

func fileMode(m uint32) fs.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return 0
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeDir != 0:
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "special file"
}
