package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// Errors every implementation returns (wrapped) for these conditions.
var (
	ErrNotFound    = errors.New("object not found")
	ErrExists      = errors.New("object already exists")
	ErrNotModified = errors.New("object not modified")
	// ErrTooLarge: ReadAll found more bytes than the caller allows.
	ErrTooLarge = errors.New("object over the size limit")
)

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ETag    string // opaque; changes whenever the content may have changed
	ModTime time.Time
}

// Store is where bundles, releases and status objects live. Keys are
// slash-separated relative paths (see CheckKey). Implementations must be
// safe for concurrent use.
type Store interface {
	// Get opens the object at key. When ifNoneMatch is not empty and equals
	// the object's current ETag, Get returns ErrNotModified and no body.
	// A missing object is ErrNotFound. The caller closes the body.
	Get(ctx context.Context, key, ifNoneMatch string) (io.ReadCloser, Info, error)
	// Stat describes the object at key, or returns ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Put writes the object at key, replacing any previous one; readers see
	// the old or the new content, never a part. size is -1 when unknown.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// PutIfAbsent writes the object only if none exists at key, atomically:
	// of two racing writers exactly one succeeds, the other gets ErrExists.
	PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error
	// List returns the keys under prefix (a folder ending in "/"), sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// String names the store for messages, without credentials.
	String() string
}

// CheckKey refuses keys that could escape the store or confuse an
// implementation: empty, absolute, unclean, with .. or control characters.
func CheckKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") || path.Clean(key) != key ||
		key == ".." || strings.HasPrefix(key, "../") || strings.ContainsAny(key, "\\\x00\r\n") {
		return fmt.Errorf("invalid store key %q: expected a clean relative path", key)
	}
	return nil
}

// CheckPrefix is CheckKey for List prefixes, which end in "/" (or are empty).
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("invalid store prefix %q: expected a folder ending in /", prefix)
	}
	return CheckKey(strings.TrimSuffix(prefix, "/"))
}

// ReadAll reads a whole small object, refusing more than max bytes.
func ReadAll(ctx context.Context, s Store, key string, max int64) ([]byte, Info, error) {
	rc, info, err := s.Get(ctx, key, "")
	if err != nil {
		return nil, info, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, info, fmt.Errorf("reading %s: %w", key, err)
	}
	if int64(len(data)) > max {
		return nil, info, fmt.Errorf("%s is over %d bytes: %w", key, max, ErrTooLarge)
	}
	return data, info, nil
}

// Keys of the store layout.

// BundleKey is where a bundle named name lives.
func BundleKey(name string) string { return "bundles/" + name }

// ReleaseKey is where release seq of env lives.
func ReleaseKey(env string, seq uint64) string { return fmt.Sprintf("releases/%s/%d.yaml", env, seq) }

// ReleasesPrefix lists the releases of env.
func ReleasesPrefix(env string) string { return "releases/" + env + "/" }

// LatestKey is the unsigned hint naming the newest release of env.
func LatestKey(env string) string { return "releases/" + env + "/latest" }

// StatusKey is where a host reports its status.
func StatusKey(env, host string) string { return "status/" + env + "/" + host + ".json" }

// StatusPrefix lists the status objects of env.
func StatusPrefix(env string) string { return "status/" + env + "/" }

// SigKey is the detached signature of the object at key.
func SigKey(key string) string { return key + ".sig" }
