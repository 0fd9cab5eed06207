package s3store

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// dripReader hands out one byte per read, waiting between reads, until
// cancelled.
type dripReader struct {
	wait      time.Duration
	cancelled chan struct{}
}

func (d *dripReader) Read(p []byte) (int, error) {
	select {
	case <-d.cancelled:
		return 0, errors.New("context canceled")
	case <-time.After(d.wait):
		p[0] = 'x'
		return 1, nil
	}
}

func (d *dripReader) Close() error { return nil }

func TestWatchBodyStopsADrip(t *testing.T) {
	d := &dripReader{wait: 5 * time.Millisecond, cancelled: make(chan struct{})}
	cancelled := false
	b := watchBody(d, func() {
		if !cancelled {
			cancelled = true
			close(d.cancelled)
		}
	}, "bundles/x in s3://b", 50*time.Millisecond, 1000)
	defer b.Close()
	n, err := io.Copy(io.Discard, b)
	if !errors.Is(err, errSlow) || !strings.Contains(err.Error(), "fewer than 1000 bytes in 50ms") {
		t.Fatalf("err = %v after %d bytes, want errSlow naming the rate", err, n)
	}
}

func TestWatchBodyPassesAFastBody(t *testing.T) {
	body := strings.Repeat("y", 1<<20)
	called := 0
	b := watchBody(io.NopCloser(strings.NewReader(body)), func() { called++ }, "k", 10*time.Millisecond, 1000)
	got, err := io.ReadAll(b)
	if err != nil || len(got) != len(body) {
		t.Fatalf("read %d bytes, err %v", len(got), err)
	}
	time.Sleep(30 * time.Millisecond) // a window passing after EOF must not cancel
	if called != 0 {
		t.Errorf("cancel called %d times before Close", called)
	}
	b.Close()
	if called != 1 {
		t.Errorf("cancel called %d times after Close, want 1", called)
	}
}
