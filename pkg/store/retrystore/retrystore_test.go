package retrystore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/store/dirstore"
	"github.com/cohuron/deploy/pkg/store/retrystore"
	"github.com/cohuron/deploy/pkg/store/storetest"
)

const key = "releases/prod/latest"

var (
	errFlaky = errors.New("connection reset by peer")
	payload  = []byte("apiVersion: x\nseq: 7\n")
)

// fake fails the first fail calls of every op with err, and records calls
// and the bodies Put and PutIfAbsent read.
type fake struct {
	mu     sync.Mutex
	fail   int
	err    error
	calls  map[string]int
	bodies map[string][][]byte
	hook   func(op string, call int) // runs inside each call, before it answers
	body   io.ReadCloser             // what a successful Get returns
}

func newFake(fail int, err error) *fake {
	return &fake{fail: fail, err: err, calls: map[string]int{}, bodies: map[string][][]byte{}}
}

func (f *fake) call(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	n := f.calls[op]
	if f.hook != nil {
		f.hook(op, n)
	}
	if n <= f.fail {
		return f.err
	}
	return nil
}

func (f *fake) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func (f *fake) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fake) String() string { return "fake://bucket/prefix" }

func (f *fake) Get(ctx context.Context, key, ifNoneMatch string) (io.ReadCloser, store.Info, error) {
	info := store.Info{Key: key, Size: int64(len(payload)), ETag: "etag-1"}
	if err := f.call("get"); err != nil {
		return nil, info, err
	}
	if f.body != nil {
		return f.body, info, nil
	}
	return io.NopCloser(bytes.NewReader(payload)), info, nil
}

func (f *fake) Stat(ctx context.Context, key string) (store.Info, error) {
	info := store.Info{Key: key, Size: int64(len(payload)), ETag: "etag-1"}
	if err := f.call("stat"); err != nil {
		return store.Info{}, err
	}
	return info, nil
}

func (f *fake) put(op string, r io.Reader) error {
	b, rerr := io.ReadAll(r) // an upload reads the body, then the answer is lost
	f.mu.Lock()
	f.bodies[op] = append(f.bodies[op], b)
	f.mu.Unlock()
	if err := f.call(op); err != nil {
		return err
	}
	return rerr
}

func (f *fake) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return f.put("put", r)
}

func (f *fake) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	return f.put("put-if-absent", r)
}

func (f *fake) List(ctx context.Context, prefix string) ([]string, error) {
	if err := f.call("list"); err != nil {
		return nil, err
	}
	return []string{prefix + "1.yaml", prefix + "latest"}, nil
}

// recorder is injected as Sleep, Jitter and OnRetry.
type recorder struct {
	mu       sync.Mutex
	ceilings []time.Duration // what Jitter was asked for
	waits    []time.Duration // what Sleep was asked for
	retries  []string        // OnRetry calls as "op key attempt"
	sleep    func(ctx context.Context) error
}

func (r *recorder) options(attempts int) retrystore.Options {
	return retrystore.Options{
		Attempts: attempts,
		Sleep: func(ctx context.Context, d time.Duration) error {
			r.mu.Lock()
			r.waits = append(r.waits, d)
			f := r.sleep
			r.mu.Unlock()
			if f != nil {
				return f(ctx)
			}
			return nil
		},
		// The deterministic jitter: the top of [0, d).
		Jitter: func(d time.Duration) time.Duration {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.ceilings = append(r.ceilings, d)
			return d - time.Nanosecond
		},
		OnRetry: func(op, key string, attempt int, err error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if err == nil {
				panic("OnRetry with a nil error")
			}
			r.retries = append(r.retries, fmt.Sprintf("%s %s %d", op, key, attempt))
		},
	}
}

type op struct {
	name, key string
	run       func(ctx context.Context, s store.Store) error
}

var ops = []op{
	{"get", key, func(ctx context.Context, s store.Store) error {
		rc, _, err := s.Get(ctx, key, "")
		if rc != nil {
			rc.Close()
		}
		return err
	}},
	{"stat", key, func(ctx context.Context, s store.Store) error {
		_, err := s.Stat(ctx, key)
		return err
	}},
	{"list", "releases/prod/", func(ctx context.Context, s store.Store) error {
		_, err := s.List(ctx, "releases/prod/")
		return err
	}},
	{"put", key, func(ctx context.Context, s store.Store) error {
		return s.Put(ctx, key, bytes.NewReader(payload), int64(len(payload)))
	}},
	{"put-if-absent", key, func(ctx context.Context, s store.Store) error {
		return s.PutIfAbsent(ctx, key, bytes.NewReader(payload), int64(len(payload)))
	}},
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func minus1ns(ds ...time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d - time.Nanosecond
	}
	return out
}

func TestTransientThenSuccess(t *testing.T) {
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			f := newFake(3, errFlaky)
			var r recorder
			s := retrystore.New(f, r.options(0)) // default 5 attempts, 250ms, 8s
			if err := o.run(context.Background(), s); err != nil {
				t.Fatalf("%s: %v, want success on the 4th try", o.name, err)
			}
			if got := f.count(o.name); got != 4 {
				t.Errorf("inner %s called %d times, want 4", o.name, got)
			}
			if want := []time.Duration{ms(250), ms(500), ms(1000)}; !slices.Equal(r.ceilings, want) {
				t.Errorf("jitter ceilings = %v, want %v", r.ceilings, want)
			}
			if want := minus1ns(ms(250), ms(500), ms(1000)); !slices.Equal(r.waits, want) {
				t.Errorf("waits = %v, want %v", r.waits, want)
			}
			want := []string{o.name + " " + o.key + " 1", o.name + " " + o.key + " 2", o.name + " " + o.key + " 3"}
			if !slices.Equal(r.retries, want) {
				t.Errorf("OnRetry calls = %q, want %q", r.retries, want)
			}
		})
	}
}

func TestBackoffCeilingsCapped(t *testing.T) {
	tests := []struct {
		name      string
		base, max time.Duration
		attempts  int
		want      []time.Duration
	}{
		{"defaults", 0, 0, 8, []time.Duration{ms(250), ms(500), ms(1000), ms(2000), ms(4000), ms(8000), ms(8000)}},
		{"custom", time.Second, 3 * time.Second, 5, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}},
		{"max below base", time.Second, ms(100), 3, []time.Duration{ms(100), ms(100)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(1000, errFlaky)
			var r recorder
			o := r.options(tc.attempts)
			o.Base, o.Max = tc.base, tc.max
			_, err := retrystore.New(f, o).List(context.Background(), "")
			if err == nil {
				t.Fatal("List succeeded against a store that always fails")
			}
			if !slices.Equal(r.ceilings, tc.want) {
				t.Errorf("ceilings = %v, want %v", r.ceilings, tc.want)
			}
			if want := minus1ns(tc.want...); !slices.Equal(r.waits, want) {
				t.Errorf("waits = %v, want %v", r.waits, want)
			}
		})
	}
	t.Run("no overflow", func(t *testing.T) {
		f := newFake(1000, errFlaky)
		var r recorder
		o := r.options(100) // Base<<99 overflows a naive shift
		o.Base, o.Max = time.Second, time.Hour
		retrystore.New(f, o).Stat(context.Background(), key)
		if len(r.ceilings) != 99 {
			t.Fatalf("%d waits, want 99", len(r.ceilings))
		}
		for i, d := range r.ceilings {
			if d <= 0 || d > time.Hour {
				t.Fatalf("ceiling %d = %v, want in (0, 1h]", i+1, d)
			}
		}
		if last := r.ceilings[98]; last != time.Hour {
			t.Errorf("last ceiling %v, want the cap", last)
		}
	})
}

func TestPermanentErrorsReturnAtOnce(t *testing.T) {
	errs := []struct {
		name   string
		err    error
		cancel bool // the caller's ctx is done when the error comes back
	}{
		{"not found", fmt.Errorf("%s in fake: %w", key, store.ErrNotFound), false},
		{"exists", fmt.Errorf("%s: %w", key, store.ErrExists), false},
		{"not modified", store.ErrNotModified, false},
		{"too large", fmt.Errorf("%s is over 10 bytes: %w", key, store.ErrTooLarge), false},
		{"rejected", fault.Rejected(errors.New("bad signature")), false},
		{"usage", fault.Usage(errors.New("no such bucket configured")), false},
		{"usage wrapped", fmt.Errorf("put: %w", fault.Usage(errors.New("x"))), false},
		{"caller canceled", fmt.Errorf("get: %w", context.Canceled), true},
		{"caller deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), true},
	}
	for _, o := range ops {
		for _, e := range errs {
			t.Run(o.name+"/"+e.name, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				f := newFake(1000, e.err)
				if e.cancel {
					f.hook = func(string, int) { cancel() }
				}
				var r recorder
				err := o.run(ctx, retrystore.New(f, r.options(5)))
				if err != e.err {
					t.Errorf("error = %v, want the inner error unchanged (%v)", err, e.err)
				}
				if n := f.total(); n != 1 {
					t.Errorf("inner store called %d times, want 1", n)
				}
				if len(r.waits) != 0 || len(r.retries) != 0 {
					t.Errorf("waited %v, OnRetry %q; want neither", r.waits, r.retries)
				}
			})
		}
	}
}

func TestNotModifiedKeepsInfo(t *testing.T) {
	f := newFake(1000, store.ErrNotModified)
	rc, info, err := retrystore.New(f, retrystore.Options{}).Get(context.Background(), key, "etag-1")
	if !errors.Is(err, store.ErrNotModified) || rc != nil || info.ETag != "etag-1" {
		t.Fatalf("Get = %v, %+v, %v; want no body, the inner Info and ErrNotModified", rc, info, err)
	}
}

func TestInnerDeadlineIsTransient(t *testing.T) {
	// A per-request timeout inside the inner store while the caller's ctx
	// is alive is worth another try.
	f := newFake(2, fmt.Errorf("operation error S3: GetObject: %w", context.DeadlineExceeded))
	var r recorder
	if _, err := retrystore.New(f, r.options(5)).Stat(context.Background(), key); err != nil {
		t.Fatalf("Stat: %v, want success on the 3rd try", err)
	}
	if n := f.count("stat"); n != 3 {
		t.Errorf("inner Stat called %d times, want 3", n)
	}
}

func TestAttemptsExhausted(t *testing.T) {
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			last := fmt.Errorf("%s in fake: %w", o.key, errFlaky)
			f := newFake(1000, last)
			var r recorder
			err := o.run(context.Background(), retrystore.New(f, r.options(3)))
			want := fmt.Sprintf("%s %s: 3 attempts failed: %s in fake: %s", o.name, o.key, o.key, errFlaky)
			if err == nil || err.Error() != want {
				t.Fatalf("error = %v, want %q", err, want)
			}
			if !errors.Is(err, last) || !errors.Is(err, errFlaky) {
				t.Errorf("error does not wrap the last error")
			}
			if k := fault.KindOf(err); k != fault.KindTransient {
				t.Errorf("fault kind %v, want transient", k)
			}
			if retrystore.Permanent(err) {
				t.Errorf("Permanent(%v) = true, want false", err)
			}
			if n := f.count(o.name); n != 3 {
				t.Errorf("inner %s called %d times, want 3", o.name, n)
			}
			// OnRetry before each wait, not after the last try.
			wantRetries := []string{o.name + " " + o.key + " 1", o.name + " " + o.key + " 2"}
			if !slices.Equal(r.retries, wantRetries) {
				t.Errorf("OnRetry calls = %q, want %q", r.retries, wantRetries)
			}
			if len(r.waits) != 2 {
				t.Errorf("waited %v, want 2 waits", r.waits)
			}
		})
	}
}

func TestCancelDuringSleepStops(t *testing.T) {
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f := newFake(1000, errFlaky)
			var r recorder
			r.sleep = func(ctx context.Context) error {
				cancel()
				return ctx.Err()
			}
			err := o.run(ctx, retrystore.New(f, r.options(5)))
			if !errors.Is(err, context.Canceled) || !errors.Is(err, errFlaky) {
				t.Fatalf("error = %v, want context.Canceled wrapping the last error", err)
			}
			if n := f.total(); n != 1 {
				t.Errorf("inner store called %d times, want 1", n)
			}
			if len(r.waits) != 1 {
				t.Errorf("waited %v, want 1 wait", r.waits)
			}
		})
	}
}

func TestCancelDuringAttemptStops(t *testing.T) {
	// The inner store fails with a non-context error while the caller's
	// ctx ends: no wait, no retry.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFake(1000, errFlaky)
	f.hook = func(string, int) { cancel() }
	var r recorder
	_, err := retrystore.New(f, r.options(5)).Stat(ctx, key)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errFlaky) {
		t.Fatalf("error = %v, want context.Canceled and the inner error", err)
	}
	if n := f.total(); n != 1 || len(r.waits) != 0 || len(r.retries) != 0 {
		t.Errorf("%d calls, waits %v, retries %q; want 1 call and no retry", n, r.waits, r.retries)
	}
}

func TestDefaultSleepHonoursContext(t *testing.T) {
	// Default Sleep and Jitter with hour-long ceilings: if the timer did
	// not watch ctx, this test would hang until its deadline.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFake(1000, errFlaky)
	s := retrystore.New(f, retrystore.Options{
		Base: time.Hour, Max: time.Hour,
		OnRetry: func(string, string, int, error) { cancel() },
	})
	_, err := s.Stat(ctx, key)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	if n := f.total(); n != 1 {
		t.Errorf("inner store called %d times, want 1", n)
	}
}

func TestPutSeekableRetriedWithFullBody(t *testing.T) {
	for _, op := range []string{"put", "put-if-absent"} {
		t.Run(op, func(t *testing.T) {
			f := newFake(2, errFlaky)
			var r recorder
			s := retrystore.New(f, r.options(5))
			// A body already advanced by 4 bytes: each try must get the rest.
			body := bytes.NewReader(payload)
			body.Seek(4, io.SeekStart)
			var err error
			if op == "put" {
				err = s.Put(context.Background(), key, body, int64(len(payload)-4))
			} else {
				err = s.PutIfAbsent(context.Background(), key, body, int64(len(payload)-4))
			}
			if err != nil {
				t.Fatalf("%s: %v", op, err)
			}
			got := f.bodies[op]
			if len(got) != 3 {
				t.Fatalf("inner %s received %d bodies, want 3", op, len(got))
			}
			for i, b := range got {
				if !bytes.Equal(b, payload[4:]) {
					t.Errorf("try %d body = %q, want %q", i+1, b, payload[4:])
				}
			}
		})
	}
}

// onlyReader hides every method but Read.
type onlyReader struct{ io.Reader }

// pipeLike is an io.Seeker that cannot seek, like *os.File on a pipe.
type pipeLike struct{ io.Reader }

func (pipeLike) Seek(int64, int) (int64, error) { return 0, errors.New("seek: illegal seek") }

func TestPutUnseekableTriedOnce(t *testing.T) {
	readers := map[string]func() io.Reader{
		"reader":    func() io.Reader { return onlyReader{bytes.NewReader(payload)} },
		"pipe":      func() io.Reader { return pipeLike{bytes.NewReader(payload)} },
		"multi":     func() io.Reader { return io.MultiReader(bytes.NewReader(payload)) },
		"nopcloser": func() io.Reader { return io.NopCloser(bytes.NewReader(payload)) },
	}
	for name, mk := range readers {
		for _, op := range []string{"put", "put-if-absent"} {
			t.Run(name+"/"+op, func(t *testing.T) {
				f := newFake(1, errFlaky)
				var r recorder
				s := retrystore.New(f, r.options(5))
				var err error
				if op == "put" {
					err = s.Put(context.Background(), key, mk(), -1)
				} else {
					err = s.PutIfAbsent(context.Background(), key, mk(), -1)
				}
				if err != errFlaky {
					t.Errorf("error = %v, want the inner error unchanged", err)
				}
				if n := f.count(op); n != 1 {
					t.Errorf("inner %s called %d times, want 1", op, n)
				}
				if len(r.waits) != 0 || len(r.retries) != 0 {
					t.Errorf("waited %v, OnRetry %q; want neither", r.waits, r.retries)
				}
			})
		}
	}
}

// rewindFails seeks once (to learn its offset) and then fails.
type rewindFails struct {
	*bytes.Reader
	seeks int
}

func (r *rewindFails) Seek(off int64, whence int) (int64, error) {
	r.seeks++
	if r.seeks > 1 {
		return 0, errors.New("rewind refused")
	}
	return r.Reader.Seek(off, whence)
}

func TestPutRewindFailureStops(t *testing.T) {
	f := newFake(1000, errFlaky)
	var r recorder
	err := retrystore.New(f, r.options(5)).Put(context.Background(), key, &rewindFails{Reader: bytes.NewReader(payload)}, -1)
	if err == nil || !strings.Contains(err.Error(), "rewind refused") || !errors.Is(err, errFlaky) {
		t.Fatalf("error = %v, want the rewind failure and the last error", err)
	}
	if n := f.count("put"); n != 1 || len(r.waits) != 0 {
		t.Errorf("%d calls and waits %v, want 1 call and no wait", n, r.waits)
	}
}

func TestGetRetriesOpeningOnly(t *testing.T) {
	f := newFake(1, errFlaky)
	midBody := errors.New("unexpected EOF mid-body")
	f.body = io.NopCloser(io.MultiReader(strings.NewReader("part"), errReader{midBody}))
	var r recorder
	rc, info, err := retrystore.New(f, r.options(5)).Get(context.Background(), key, "")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	if info.ETag != "etag-1" {
		t.Errorf("info = %+v, want the inner Info", info)
	}
	b, err := io.ReadAll(rc)
	if string(b) != "part" || !errors.Is(err, midBody) {
		t.Errorf("read %q, %v; want the inner body's failure", b, err)
	}
	if n := f.count("get"); n != 2 {
		t.Errorf("inner Get called %d times, want 2 (one failure, one open)", n)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestInvalidKeysNeverReachInner(t *testing.T) {
	ctx := context.Background()
	f := newFake(0, nil)
	s := retrystore.New(f, retrystore.Options{})
	for _, k := range []string{"", "/abs", "../up", "a/../../b", "a//b", "a/", "a\x00b", "a\\b"} {
		if _, _, err := s.Get(ctx, k, ""); err == nil {
			t.Errorf("Get(%q) succeeded", k)
		}
		if _, err := s.Stat(ctx, k); err == nil {
			t.Errorf("Stat(%q) succeeded", k)
		}
		if err := s.Put(ctx, k, bytes.NewReader(payload), -1); err == nil {
			t.Errorf("Put(%q) succeeded", k)
		}
		if err := s.PutIfAbsent(ctx, k, bytes.NewReader(payload), -1); err == nil {
			t.Errorf("PutIfAbsent(%q) succeeded", k)
		}
	}
	for _, p := range []string{"releases", "/releases/", "../", "a//", "a\x00/"} {
		if _, err := s.List(ctx, p); err == nil {
			t.Errorf("List(%q) succeeded", p)
		}
	}
	if n := f.total(); n != 0 {
		t.Errorf("inner store called %d times (%v), want 0", n, f.calls)
	}
	// And valid ones do get through.
	if _, err := s.List(ctx, ""); err != nil || f.total() != 1 {
		t.Errorf("List(\"\") = %v after %d calls, want one call to the inner store", err, f.total())
	}
}

func TestPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, true},
		{store.ErrNotFound, true},
		{fmt.Errorf("x: %w", store.ErrExists), true},
		{store.ErrNotModified, true},
		{fmt.Errorf("x: %w", store.ErrTooLarge), true},
		{fault.Rejected(errors.New("x")), true},
		{fault.Usage(errors.New("x")), true},
		{errFlaky, false},
		{fault.Transient(errFlaky), false},
		{fault.Transient(fault.Usage(errors.New("x"))), false}, // the outermost kind wins
		{context.DeadlineExceeded, false},                      // depends on the caller's ctx
		{context.Canceled, false},
	}
	for _, tc := range tests {
		if got := retrystore.Permanent(tc.err); got != tc.want {
			t.Errorf("Permanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestLogsEachRetry(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	f := newFake(2, errors.New("GET https://u:secret@host/x?X-Amz-Signature=abc: 503"))
	var r recorder
	o := r.options(5)
	o.Log = log
	if _, err := retrystore.New(f, o).Stat(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logged %d lines, want 2:\n%s", len(lines), buf.String())
	}
	for i, l := range lines {
		for _, want := range []string{"level=WARN", "op=stat", "key=" + key, fmt.Sprintf("attempt=%d", i+1), "wait=", "err="} {
			if !strings.Contains(l, want) {
				t.Errorf("line %d %q lacks %q", i+1, l, want)
			}
		}
		if strings.Contains(l, "secret") || strings.Contains(l, "=abc") {
			t.Errorf("line %d leaks a credential: %s", i+1, l)
		}
	}
}

func TestNilLogNeverUsesDefault(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)
	f := newFake(2, errFlaky)
	var r recorder
	if _, err := retrystore.New(f, r.options(5)).Stat(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("logged to slog.Default with a nil Log: %s", buf.String())
	}
}

func TestString(t *testing.T) {
	if got := retrystore.New(newFake(0, nil), retrystore.Options{}).String(); got != "fake://bucket/prefix" {
		t.Errorf("String() = %q, want the inner store's", got)
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		d, err := dirstore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return retrystore.New(d, retrystore.Options{})
	})
}
