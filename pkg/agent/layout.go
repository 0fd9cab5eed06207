package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cohuron/deploy/pkg/state"
)

// rootTarget says where the root points: the target of its symlink, or
// plain=true for a directory left by the old deploy script.
func (a *Agent) rootTarget() (target string, plain bool, err error) {
	fi, err := os.Lstat(a.Cfg.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		t, err := os.Readlink(a.Cfg.Root)
		return t, false, err
	}
	if fi.IsDir() {
		return "", true, nil
	}
	return "", false, fmt.Errorf("%s is a %s; expected a symlink or a directory", a.Cfg.Root, fi.Mode().Type())
}

// switchRoot points the root at dir with one rename, so readers see the
// old release or the new one.
func (a *Agent) switchRoot(dir string) error {
	if err := os.MkdirAll(filepath.Dir(a.Cfg.Root), 0o755); err != nil {
		return err
	}
	tmp := a.Cfg.Root + ".switch-" + rand.Text()[:8]
	if err := os.Symlink(dir, tmp); err != nil {
		return fmt.Errorf("switching %s: %w", a.Cfg.Root, err)
	}
	if err := os.Rename(tmp, a.Cfg.Root); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("switching %s to %s: %w", a.Cfg.Root, dir, err)
	}
	return state.SyncDir(filepath.Dir(a.Cfg.Root))
}

// adoptedPrefix starts the directory name of an adopted tree.
const adoptedPrefix = "adopted-"

// adopt turns a plain root directory (the old deploy script's) into the
// first backup, and the root into a symlink to it.
func (a *Agent) adopt() (*state.Release, error) {
	id := adoptedPrefix + a.Now().UTC().Format("20060102-150405")
	dst := filepath.Join(a.releasesDir(), id)
	if err := os.MkdirAll(a.releasesDir(), 0o755); err != nil {
		return nil, err
	}
	// Link first, then move the tree, then the link over the root: a crash
	// leaves either the old directory or a working link (see recoverRoot).
	tmp := a.Cfg.Root + ".adopt-" + rand.Text()[:8]
	if err := os.Symlink(dst, tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(a.Cfg.Root, dst); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("adopting %s (it must be on the same filesystem as %s): %w", a.Cfg.Root, a.Cfg.Backups, err)
	}
	if err := os.Rename(tmp, a.Cfg.Root); err != nil {
		return nil, fmt.Errorf("adopting %s: %w", a.Cfg.Root, err)
	}
	a.Log.Info("adopted the existing release tree as the first backup", "root", a.Cfg.Root, "backup", dst)
	return &state.Release{ID: id, Dir: dst, Applied: a.Now()}, state.SyncDir(filepath.Dir(a.Cfg.Root))
}

// recoverRoot repairs a root left missing by a crash during adoption.
func (a *Agent) recoverRoot(st *state.State) error {
	if _, err := os.Lstat(a.Cfg.Root); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	adopted, _ := filepath.Glob(filepath.Join(a.releasesDir(), adoptedPrefix+"*"))
	if st.Current == nil && len(adopted) > 0 {
		sort.Strings(adopted)
		a.Log.Warn("root is missing after an interrupted adoption; linking it back", "to", adopted[len(adopted)-1])
		return a.switchRoot(adopted[len(adopted)-1])
	}
	return nil
}

// prune deletes release directories beyond the newest Keep good ones. It
// never deletes the current release, the previous good ones it keeps, a
// directory a journal names, or one that a running process (not restarted
// since) still runs from (inUse).
func (a *Agent) prune(st *state.State, inUse []string) {
	keep := map[string]bool{}
	for _, d := range inUse {
		keep[d] = true
	}
	if st.Current != nil {
		keep[st.Current.Dir] = true
	}
	if len(st.Previous) > a.Cfg.Keep {
		st.Previous = st.Previous[:a.Cfg.Keep]
	}
	for _, r := range st.Previous {
		keep[r.Dir] = true
	}
	entries, err := os.ReadDir(a.releasesDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		dir := filepath.Join(a.releasesDir(), e.Name())
		if keep[dir] || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		os.Remove(a.envsPath(e.Name()))
		if err := os.RemoveAll(dir); err != nil {
			a.Log.Warn("pruning old release", "dir", dir, "err", err)
		} else {
			a.Log.Info("pruned old release", "dir", dir)
		}
	}
}

// syncFS flushes the filesystem holding dir (one syncfs call instead of an
// fsync per extracted file).
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}
