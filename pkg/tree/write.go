package tree

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile writes data to rel inside the tree at dir, atomically (a
// temporary sibling, synced, renamed over rel, the directory synced),
// creating missing directories, and when uid >= 0 hands the file to
// uid:gid. Everything goes through an os.Root: a symlink the tree's owner
// put (or swaps in) on the way cannot make it write outside dir.
func WriteFile(dir, rel string, data []byte, mode os.FileMode, uid, gid int) (err error) {
	if !filepath.IsLocal(rel) {
		return fmt.Errorf("writing %s in %s: not a path inside it", rel, dir)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	defer func() {
		if err != nil {
			err = fmt.Errorf("writing %s in %s: %w", rel, dir, err)
		}
	}()
	parent := filepath.Dir(rel)
	if err := r.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(parent, "."+filepath.Base(rel)+".tmp-"+rand.Text()[:8])
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode) // not narrowed by the umask
	}
	if err == nil && uid >= 0 {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Rename(tmp, rel)
	}
	if err != nil {
		r.Remove(tmp)
		return err
	}
	d, err := r.Open(parent)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
