package s3store

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// errSlow is why a watched body gave up.
var errSlow = errors.New("the store sends too slowly")

// watchedBody ends a download that trickles: fewer than minBytes in any
// window cancels the request. A read timeout alone never fires while a
// byte arrives now and then, so a slow drip would hold a converge
// forever.
type watchedBody struct {
	rc     io.ReadCloser
	cancel func()
	what   string
	window time.Duration
	min    int64

	mu    sync.Mutex
	n     int64 // bytes in the current window
	slow  bool
	done  bool
	timer *time.Timer
}

func watchBody(rc io.ReadCloser, cancel func(), what string, window time.Duration, minBytes int64) io.ReadCloser {
	b := &watchedBody{rc: rc, cancel: cancel, what: what, window: window, min: minBytes}
	b.timer = time.AfterFunc(window, b.tick)
	return b
}

func (b *watchedBody) tick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	if b.n < b.min {
		b.slow = true
		b.cancel()
		return
	}
	b.n = 0
	b.timer.Reset(b.window)
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.mu.Lock()
	b.n += int64(n)
	slow := b.slow
	if err != nil {
		b.done = true // the end, or a failure: no more windows to judge
	}
	b.mu.Unlock()
	if err != nil && err != io.EOF && slow {
		return n, fmt.Errorf("reading %s: fewer than %d bytes in %s: %w", b.what, b.min, b.window, errSlow)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}
