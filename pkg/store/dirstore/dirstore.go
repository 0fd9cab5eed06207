package dirstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/cohuron/deploy/pkg/store"
)

const tmpPrefix = ".tmp-"

// hashETagMax is the size up to which the ETag is a content hash; larger
// objects (bundles) use size and mtime, which is enough to see a change.
const hashETagMax = 1 << 20

// Store keeps objects as files under a directory.
type Store struct {
	dir  string
	root *os.Root
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the directory store at dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating store directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening store directory: %w", err)
	}
	return &Store{dir: dir, root: root}, nil
}

// Close releases the directory handle.
func (s *Store) Close() error { return s.root.Close() }

func (s *Store) String() string { return "file://" + s.dir }

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key, ifNoneMatch string) (io.ReadCloser, store.Info, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, store.Info{}, err
	}
	f, err := s.root.Open(key)
	if err != nil {
		return nil, store.Info{}, notFound(key, err)
	}
	info, err := s.info(key, f)
	if err != nil {
		f.Close()
		return nil, store.Info{}, err
	}
	if ifNoneMatch != "" && ifNoneMatch == info.ETag {
		f.Close()
		return nil, info, store.ErrNotModified
	}
	return f, info, nil
}

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	if err := store.CheckKey(key); err != nil {
		return store.Info{}, err
	}
	f, err := s.root.Open(key)
	if err != nil {
		return store.Info{}, notFound(key, err)
	}
	defer f.Close()
	return s.info(key, f)
}

func (s *Store) info(key string, f *os.File) (store.Info, error) {
	st, err := f.Stat()
	if err != nil {
		return store.Info{}, err
	}
	if !st.Mode().IsRegular() {
		return store.Info{}, fmt.Errorf("%s: %w (not a regular file)", key, store.ErrNotFound)
	}
	info := store.Info{Key: key, Size: st.Size(), ModTime: st.ModTime()}
	if st.Size() <= hashETagMax {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return store.Info{}, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return store.Info{}, err
		}
		info.ETag = hex.EncodeToString(h.Sum(nil)[:16])
	} else {
		info.ETag = fmt.Sprintf("%x-%x", st.Size(), st.ModTime().UnixNano())
	}
	return info, nil
}

// Put implements store.Store: temp file, fsync, rename, fsync dir.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	tmp, err := s.writeTemp(ctx, key, r, size)
	if err != nil {
		return err
	}
	if err := s.root.Rename(tmp, key); err != nil {
		s.root.Remove(tmp)
		return fmt.Errorf("storing %s: %w", key, err)
	}
	return s.syncDir(path.Dir(key))
}

// PutIfAbsent implements store.Store: a hard link fails if the name exists,
// which makes the claim atomic.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	tmp, err := s.writeTemp(ctx, key, r, size)
	if err != nil {
		return err
	}
	defer s.root.Remove(tmp)
	if err := s.root.Link(tmp, key); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", key, store.ErrExists)
		}
		return fmt.Errorf("storing %s: %w", key, err)
	}
	return s.syncDir(path.Dir(key))
}

func (s *Store) writeTemp(ctx context.Context, key string, r io.Reader, size int64) (string, error) {
	if err := store.CheckKey(key); err != nil {
		return "", err
	}
	if strings.HasPrefix(path.Base(key), tmpPrefix) {
		return "", fmt.Errorf("invalid store key %q: names starting with %s are reserved", key, tmpPrefix)
	}
	dir := path.Dir(key)
	if err := s.root.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp := path.Join(dir, tmpPrefix+rand.Text())
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("creating temp file for %s: %w", key, err)
	}
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("short write: expected %d bytes, got %d", size, n)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.root.Remove(tmp)
		return "", fmt.Errorf("writing %s: %w", key, err)
	}
	return tmp, nil
}

func (s *Store) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	if err := store.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	start := strings.TrimSuffix(prefix, "/")
	if start == "" {
		start = "."
	}
	var keys []string
	err := fs.WalkDir(s.root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == start {
				return fs.SkipAll
			}
			return err
		}
		if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), tmpPrefix) {
			keys = append(keys, p)
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", prefix, err)
	}
	sort.Strings(keys)
	return keys, nil
}

func notFound(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", key, store.ErrNotFound)
	}
	return fmt.Errorf("opening %s: %w", key, err)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
