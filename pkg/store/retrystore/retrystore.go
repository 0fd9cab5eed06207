package retrystore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/cohuron/deploy/pkg/clock"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/store"
)

// Defaults for zero Options.
const (
	DefaultAttempts = 5
	DefaultBase     = 250 * time.Millisecond
	DefaultMax      = 8 * time.Second
)

// Options tune the retries; zero values take the defaults.
type Options struct {
	Attempts int           // tries per operation, including the first (default 5)
	Base     time.Duration // first backoff ceiling (default 250ms)
	Max      time.Duration // backoff ceiling cap (default 8s)
	// Sleep waits d or until ctx ends (default: a timer). Tests inject a recorder.
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter returns a random duration in [0, d) (default math/rand/v2). Tests inject it.
	Jitter func(d time.Duration) time.Duration
	Log    *slog.Logger // nil: no logging (never slog.Default())
	// OnRetry is called before each wait (for metrics); may be nil. attempt
	// is the number of the try that just failed: 1 after the first.
	OnRetry func(op, key string, attempt int, err error)
}

// Store is a store.Store that retries the inner store's transient failures.
// It is safe for concurrent use when the inner store and the injected
// functions are.
type Store struct {
	inner    store.Store
	attempts int
	base     time.Duration
	max      time.Duration
	sleep    func(context.Context, time.Duration) error
	jitter   func(time.Duration) time.Duration
	log      *slog.Logger
	onRetry  func(op, key string, attempt int, err error)
}

var _ store.Store = (*Store)(nil)

// New wraps s.
func New(s store.Store, o Options) *Store {
	r := &Store{
		inner: s, attempts: o.Attempts, base: o.Base, max: o.Max,
		sleep: o.Sleep, jitter: o.Jitter, log: o.Log, onRetry: o.OnRetry,
	}
	if r.attempts <= 0 {
		r.attempts = DefaultAttempts
	}
	if r.base <= 0 {
		r.base = DefaultBase
	}
	if r.max <= 0 {
		r.max = DefaultMax
	}
	if r.sleep == nil {
		r.sleep = clock.Sleep
	}
	if r.jitter == nil {
		r.jitter = jitter
	}
	return r
}

// Permanent reports whether err is never worth retrying: nil, the store's
// ErrNotFound, ErrExists, ErrNotModified and ErrTooLarge, and errors whose
// fault kind is rejected or usage. Everything else is transient.
//
// Context errors are not permanent by themselves, as Permanent cannot see
// the caller's context: the Store stops as soon as the caller's ctx is
// done, but retries a context.DeadlineExceeded that came from a timeout
// inside the inner store while the caller's ctx is still alive.
func Permanent(err error) bool {
	if err == nil {
		return true
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) ||
		errors.Is(err, store.ErrNotModified) || errors.Is(err, store.ErrTooLarge) {
		return true
	}
	switch fault.KindOf(err) {
	case fault.KindRejected, fault.KindUsage:
		return true
	}
	return false
}

// String names the inner store.
func (s *Store) String() string { return s.inner.String() }

// Get implements store.Store. Only opening is retried: the body returned
// is the inner store's, and a failure while reading it is the caller's to
// handle (callers verify digests and retry the whole operation).
func (s *Store) Get(ctx context.Context, key, ifNoneMatch string) (io.ReadCloser, store.Info, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, store.Info{}, err
	}
	var rc io.ReadCloser
	var info store.Info
	err := s.do(ctx, "get", key, s.attempts, nil, func() error {
		var err error
		rc, info, err = s.inner.Get(ctx, key, ifNoneMatch)
		if err != nil && rc != nil && !Permanent(err) {
			// Not in the contract, but never leak a body we are about to drop.
			rc.Close()
			rc = nil
		}
		return err
	})
	return rc, info, err
}

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	if err := store.CheckKey(key); err != nil {
		return store.Info{}, err
	}
	var info store.Info
	err := s.do(ctx, "stat", key, s.attempts, nil, func() error {
		var err error
		info, err = s.inner.Stat(ctx, key)
		return err
	})
	return info, err
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	if err := store.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	var keys []string
	err := s.do(ctx, "list", prefix, s.attempts, nil, func() error {
		var err error
		keys, err = s.inner.List(ctx, prefix)
		return err
	})
	return keys, err
}

// Put implements store.Store. It is retried only when r is an io.Seeker
// that can report its offset: before each retry r is sought back to where
// it was before the first try. Any other reader gets one try, and its
// error is returned as the inner store gave it.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	attempts, rewind := s.rewinder(r)
	return s.do(ctx, "put", key, attempts, rewind, func() error {
		return s.inner.Put(ctx, key, r, size)
	})
}

// PutIfAbsent implements store.Store, retried like Put. A retry cannot
// tell a lost response from a lost race: when a try succeeded but its
// answer never arrived, the next try returns ErrExists, which callers
// already treat as "someone else wrote it" (and, for content-addressed or
// signed objects, verify by reading it back).
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	attempts, rewind := s.rewinder(r)
	return s.do(ctx, "put-if-absent", key, attempts, rewind, func() error {
		return s.inner.PutIfAbsent(ctx, key, r, size)
	})
}

// rewinder returns how many tries a body allows and how to rewind it.
func (s *Store) rewinder(r io.Reader) (int, func() error) {
	sk, ok := r.(io.Seeker)
	if !ok {
		return 1, nil
	}
	start, err := sk.Seek(0, io.SeekCurrent)
	if err != nil { // a pipe behind an *os.File, say
		return 1, nil
	}
	return s.attempts, func() error {
		_, err := sk.Seek(start, io.SeekStart)
		return err
	}
}

// do runs try up to attempts times, waiting with full jitter in between,
// and stops at the first success, permanent error or end of ctx. rewind,
// if not nil, runs before every retry.
func (s *Store) do(ctx context.Context, op, key string, attempts int, rewind func() error, try func() error) error {
	for n := 1; ; n++ {
		err := try()
		if err == nil || Permanent(err) {
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			// The caller gave up; err is most likely ctx's own error.
			return s.stopped(op, key, n, err, cerr)
		}
		if n >= attempts {
			if n == 1 {
				return err // one try allowed (a body we cannot rewind)
			}
			return fault.Transient(fmt.Errorf("%s %s: %d attempts failed: %w", op, key, n, err))
		}
		if rewind != nil {
			if rerr := rewind(); rerr != nil {
				return fmt.Errorf("%s %s: rewinding the body after %s: %w (last error: %w)", op, key, plural(n), rerr, err)
			}
		}
		wait := s.jitter(s.ceiling(n))
		if s.onRetry != nil {
			s.onRetry(op, key, n, err)
		}
		if s.log != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "store operation failed, retrying",
				slog.String("op", op), slog.String("key", key), slog.Int("attempt", n),
				slog.Duration("wait", wait), slog.String("err", fault.Scrub(err.Error())))
		}
		if serr := s.sleep(ctx, wait); serr != nil {
			return s.stopped(op, key, n, err, serr)
		}
	}
}

// stopped is the error when the caller's context ends after n tries.
// A context error is then permanent: returned as is after one try.
func (s *Store) stopped(op, key string, n int, last, cerr error) error {
	if errors.Is(last, context.Canceled) || errors.Is(last, context.DeadlineExceeded) {
		if n == 1 {
			return last
		}
		return fmt.Errorf("%s %s: %d attempts failed: %w", op, key, n, last)
	}
	return fmt.Errorf("%s %s: stopped after %s: %w (last error: %w)", op, key, plural(n), cerr, last)
}

func plural(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// ceiling is the backoff ceiling before retry n: min(max, base<<(n-1)),
// without overflow.
func (s *Store) ceiling(n int) time.Duration {
	d := min(s.base, s.max)
	for i := 1; i < n; i++ {
		if d > s.max-d {
			return s.max
		}
		d *= 2
	}
	return d
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
