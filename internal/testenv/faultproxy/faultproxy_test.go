package faultproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const payloadSize = 64 << 10

var payload = func() []byte {
	b := make([]byte, payloadSize)
	for i := range b {
		b[i] = byte(i*7 + i/251) // not periodic in 256, so offsets matter
	}
	return b
}()

// upstream is a stand-in store: it echoes what it received in X-Got-*
// headers and serves payload with a Content-Length (or chunked under
// /chunked/).
type upstream struct {
	*httptest.Server
	hits atomic.Int64
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		sum := sha256.New()
		n, err := io.Copy(sum, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h := w.Header()
		h.Set("X-Got-Host", r.Host)
		h.Set("X-Got-Method", r.Method)
		h.Set("X-Got-Path", r.URL.EscapedPath())
		h.Set("X-Got-Query", r.URL.RawQuery)
		h.Set("X-Got-Hop", r.Header.Get("X-Hop"))
		h.Set("X-Got-Connection", r.Header.Get("Connection"))
		h.Set("X-Got-Body-Len", strconv.FormatInt(n, 10))
		h.Set("X-Got-Body-Sha256", hex.EncodeToString(sum.Sum(nil)))
		h.Set("Content-Type", "application/octet-stream")
		if strings.HasPrefix(r.URL.Path, "/chunked/") {
			// Flushing before the end makes net/http use chunked encoding.
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(payload[:payloadSize/2])
			_ = http.NewResponseController(w).Flush()
			_, _ = w.Write(payload[payloadSize/2:])
			return
		}
		h.Set("Content-Length", strconv.Itoa(payloadSize))
		if r.Method != http.MethodHead {
			_, _ = w.Write(payload)
		}
	}))
	t.Cleanup(u.Close)
	return u
}

// newClient returns a client with its own transport, so no test sees
// another's pooled connections.
func newClient(t *testing.T, timeout time.Duration) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: nil, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

func setup(t *testing.T) (*upstream, *Proxy, *http.Client) {
	t.Helper()
	up := startUpstream(t)
	return up, Start(t, up.URL), newClient(t, 10*time.Second)
}

func do(t *testing.T, c *http.Client, method, u string, body []byte) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp, b
}

func wantStatus(t *testing.T, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want)
	}
}

// waitFor polls cond, for state that another goroutine reaches soon.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestPassThrough(t *testing.T) {
	up, p, c := setup(t)
	proxyHost := strings.TrimPrefix(p.URL(), "http://")

	t.Run("GET", func(t *testing.T) {
		// %2F differs from the decoded path: SigV4 signs the escaped form.
		req, err := http.NewRequest(http.MethodGet, p.URL()+"/bucket/a%2Fb%20c?versionId=3&x-id=GetObject", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "1")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, resp, http.StatusOK)
		if !bytes.Equal(body, payload) {
			t.Errorf("body differs: got %d bytes, want %d", len(body), len(payload))
		}
		for k, want := range map[string]string{
			"X-Got-Host":       proxyHost,
			"X-Got-Method":     "GET",
			"X-Got-Path":       "/bucket/a%2Fb%20c",
			"X-Got-Query":      "versionId=3&x-id=GetObject",
			"X-Got-Hop":        "", // named in Connection: hop-by-hop
			"X-Got-Connection": "",
			"Content-Length":   strconv.Itoa(payloadSize),
			"Content-Type":     "application/octet-stream",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		resp, body := do(t, c, http.MethodHead, p.URL()+"/bucket/obj", nil)
		wantStatus(t, resp, http.StatusOK)
		if len(body) != 0 || resp.ContentLength != payloadSize {
			t.Errorf("HEAD: %d body bytes, ContentLength %d; want 0, %d", len(body), resp.ContentLength, payloadSize)
		}
		if got := resp.Header.Get("X-Got-Method"); got != "HEAD" {
			t.Errorf("upstream saw method %q", got)
		}
	})

	t.Run("PUT", func(t *testing.T) {
		put := bytes.Repeat(payload, 4) // 256 KiB, more than any one buffer
		sum := sha256.Sum256(put)
		resp, _ := do(t, c, http.MethodPut, p.URL()+"/bucket/bundles/x.tar", put)
		wantStatus(t, resp, http.StatusOK)
		if got := resp.Header.Get("X-Got-Method"); got != "PUT" {
			t.Errorf("upstream saw method %q", got)
		}
		if got, want := resp.Header.Get("X-Got-Body-Len"), strconv.Itoa(len(put)); got != want {
			t.Errorf("upstream got %s body bytes, want %s", got, want)
		}
		if got, want := resp.Header.Get("X-Got-Body-Sha256"), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("upstream body sha256 %s, want %s", got, want)
		}
		if got := resp.Header.Get("X-Got-Host"); got != proxyHost {
			t.Errorf("upstream saw Host %q, want %q", got, proxyHost)
		}
	})

	t.Run("chunked", func(t *testing.T) {
		resp, body := do(t, c, http.MethodGet, p.URL()+"/chunked/obj", nil)
		wantStatus(t, resp, http.StatusOK)
		if !bytes.Equal(body, payload) {
			t.Errorf("chunked body differs: got %d bytes", len(body))
		}
	})

	if got := up.hits.Load(); got != 4 {
		t.Errorf("upstream hits = %d, want 4", got)
	}
	if s := p.Stats(); s.Requests != 4 || len(s.Injected) != 0 {
		t.Errorf("Stats = %+v, want 4 requests and nothing injected", s)
	}
}

func TestStatusTimes(t *testing.T) {
	up, p, c := setup(t)
	p.Add(Fault{Kind: Status, Times: 2})
	for i := range 2 {
		resp, body := do(t, c, http.MethodGet, p.URL()+"/bucket/releases/prod/latest", nil)
		wantStatus(t, resp, http.StatusServiceUnavailable)
		if !bytes.Contains(body, []byte("<Code>ServiceUnavailable</Code>")) ||
			!bytes.Contains(body, []byte("<Resource>/bucket/releases/prod/latest</Resource>")) {
			t.Errorf("request %d: body is not an S3 error: %s", i, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/xml" {
			t.Errorf("Content-Type = %q", ct)
		}
	}
	if got := up.hits.Load(); got != 0 {
		t.Fatalf("a Status fault reached upstream %d times", got)
	}
	resp, body := do(t, c, http.MethodGet, p.URL()+"/bucket/releases/prod/latest", nil)
	wantStatus(t, resp, http.StatusOK)
	if !bytes.Equal(body, payload) {
		t.Errorf("third request: body differs")
	}
	s := p.Stats()
	if s.Requests != 3 || s.Injected[Status] != 2 || len(s.Injected) != 1 {
		t.Errorf("Stats = %+v, want 3 requests, 2 status faults", s)
	}
}

func TestMatching(t *testing.T) {
	_, p, c := setup(t)
	p.Add(Fault{Kind: Status, Status: 500, Method: http.MethodPut, Path: "bundles/"})
	p.Add(Fault{Kind: Status, Status: 404, Path: "/releases/prod/latest"})
	cases := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/b/bundles/x", 200},
		{http.MethodPut, "/b/bundles/x", 500},
		{http.MethodPut, "/b/other/x", 200},
		{http.MethodGet, "/b/releases/prod/latest", 404},
		{http.MethodHead, "/b/releases/prod/latest", 404},
		{http.MethodGet, "/b/releases/staging/latest", 200},
	}
	for _, tc := range cases {
		var body []byte
		if tc.method == http.MethodPut {
			body = []byte("bundle")
		}
		resp, _ := do(t, c, tc.method, p.URL()+tc.path, body)
		wantStatus(t, resp, tc.want)
	}

	// Order and Times: the first matching fault with Times left applies.
	p.Clear()
	p.Add(Fault{Kind: Status, Status: 500, Times: 1})
	p.Add(Fault{Kind: Status, Status: 502})
	for _, want := range []int{500, 502, 502} {
		resp, _ := do(t, c, http.MethodGet, p.URL()+"/b/k", nil)
		wantStatus(t, resp, want)
	}
	p.Clear()
	resp, _ := do(t, c, http.MethodGet, p.URL()+"/b/k", nil)
	wantStatus(t, resp, 200)

	s := p.Stats()
	if s.Requests != 10 || s.Injected[Status] != 6 {
		t.Errorf("Stats = %+v, want 10 requests, 6 status faults", s)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestHang(t *testing.T) {
	up, p, _ := setup(t)
	p.Add(Fault{Kind: Hang, Delay: 10 * time.Second})

	_, err := newClient(t, 300*time.Millisecond).Get(p.URL() + "/b/k")
	if err == nil || !isTimeout(err) {
		t.Fatalf("GET through Hang: err = %v, want a client timeout", err)
	}

	// A second hang still in flight must not hold Close for its Delay.
	errc := make(chan error, 1)
	patient := newClient(t, 0)
	go func() {
		resp, err := patient.Get(p.URL() + "/b/k")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, "the second hang", func() bool { return p.Stats().Injected[Hang] == 2 })
	start := time.Now()
	p.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v with a hang in flight", d)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("hung request got a response after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hung request still blocked after Close")
	}
	if got := up.hits.Load(); got != 0 {
		t.Errorf("a Hang fault reached upstream %d times", got)
	}
}

// getCut GETs path and reads the whole body, expecting the read to fail.
func getCut(t *testing.T, c *http.Client, u string) ([]byte, error) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	wantStatus(t, resp, http.StatusOK)
	if resp.Header.Get("X-Got-Host") == "" {
		t.Error("upstream headers were not relayed")
	}
	return io.ReadAll(resp.Body)
}

func TestReset(t *testing.T) {
	_, p, c := setup(t)
	p.Add(Fault{Kind: Reset, After: 1000})
	resp, err := c.Get(p.URL() + "/b/k")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != payloadSize {
		t.Errorf("ContentLength = %d, want the real %d", resp.ContentLength, payloadSize)
	}
	body, err := io.ReadAll(resp.Body)
	if len(body) != 1000 || !bytes.Equal(body, payload[:1000]) {
		t.Errorf("read %d bytes before the reset, want the first 1000", len(body))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read error = %v, want connection reset", err)
	}
	if n := p.Stats().Injected[Reset]; n != 1 {
		t.Errorf("Injected[Reset] = %d, want 1", n)
	}
}

func TestTruncate(t *testing.T) {
	_, p, c := setup(t)
	for _, path := range []string{"/b/k", "/chunked/k"} {
		t.Run(path, func(t *testing.T) {
			p.Add(Fault{Kind: Truncate, After: 1000, Times: 1})
			body, err := getCut(t, c, p.URL()+path)
			if len(body) != 1000 || !bytes.Equal(body, payload[:1000]) {
				t.Errorf("read %d bytes before the cut, want the first 1000", len(body))
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("read error = %v, want unexpected EOF", err)
			}
		})
	}
	if n := p.Stats().Injected[Truncate]; n != 2 {
		t.Errorf("Injected[Truncate] = %d, want 2", n)
	}
}

func TestDrip(t *testing.T) {
	_, p, c := setup(t)
	p.Add(Fault{Kind: Drip, Chunk: 5000, Delay: time.Millisecond, Times: 1})
	resp, body := do(t, c, http.MethodGet, p.URL()+"/b/k", nil)
	wantStatus(t, resp, http.StatusOK)
	if !bytes.Equal(body, payload) {
		t.Errorf("dripped body differs: got %d bytes", len(body))
	}
	if n := p.Stats().Injected[Drip]; n != 1 {
		t.Errorf("Injected[Drip] = %d, want 1", n)
	}

	// With a long Delay only the first chunk arrives; Close then ends the
	// response early. This shows the body is really held back without
	// measuring time.
	p.Add(Fault{Kind: Drip, Chunk: 100, Delay: time.Hour})
	resp2, err := c.Get(p.URL() + "/b/k")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	first := make([]byte, 100)
	if _, err := io.ReadFull(resp2.Body, first); err != nil || !bytes.Equal(first, payload[:100]) {
		t.Fatalf("first chunk: %v", err)
	}
	p.Close()
	rest, err := io.ReadAll(resp2.Body)
	if err == nil || len(rest) != 0 {
		t.Errorf("after Close: read %d more bytes, err %v; want 0 and an error", len(rest), err)
	}
}

func TestRefuse(t *testing.T) {
	up, p, c := setup(t)
	p.Add(Fault{Kind: Refuse, Times: 1})
	resp, err := c.Get(p.URL() + "/b/k")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET through Refuse: status %d, want an error", resp.StatusCode)
	}
	if got := up.hits.Load(); got != 0 {
		t.Errorf("a Refuse fault reached upstream %d times", got)
	}
	resp, body := do(t, c, http.MethodGet, p.URL()+"/b/k", nil)
	wantStatus(t, resp, http.StatusOK)
	if !bytes.Equal(body, payload) {
		t.Error("body after Refuse differs")
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := Start(t, addr)
	resp, body := do(t, newClient(t, 10*time.Second), http.MethodGet, p.URL()+"/b/k", nil)
	wantStatus(t, resp, http.StatusBadGateway)
	if !bytes.Contains(body, []byte("<Code>BadGateway</Code>")) {
		t.Errorf("body: %s", body)
	}
}

func TestStats(t *testing.T) {
	_, p, c := setup(t)
	p.Add(Fault{Kind: Status, Times: 1})
	p.Add(Fault{Kind: Truncate, After: 10, Times: 1})
	p.Add(Fault{Kind: Refuse, Times: 1})
	do(t, c, http.MethodGet, p.URL()+"/b/k", nil)
	if _, err := getCut(t, c, p.URL()+"/b/k"); err == nil {
		t.Error("Truncate: read succeeded")
	}
	if _, err := c.Get(p.URL() + "/b/k"); err == nil {
		t.Error("Refuse: GET succeeded")
	}
	do(t, c, http.MethodGet, p.URL()+"/b/k", nil)

	s := p.Stats()
	want := map[Kind]int{Status: 1, Truncate: 1, Refuse: 1}
	if s.Requests != 4 || len(s.Injected) != len(want) {
		t.Fatalf("Stats = %+v, want 4 requests and %v", s, want)
	}
	for k, n := range want {
		if s.Injected[k] != n {
			t.Errorf("Injected[%s] = %d, want %d", k, s.Injected[k], n)
		}
	}
	s.Injected[Status] = 99 // a copy: must not touch the proxy
	if p.Stats().Injected[Status] != 1 {
		t.Error("Stats returned the proxy's own map")
	}
}

// TestConcurrent is for the race detector: faults change while requests run.
func TestConcurrent(t *testing.T) {
	_, p, c := setup(t)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	wg.Go(func() {
		for ctx.Err() == nil {
			p.Add(Fault{Kind: Status, Path: "/odd/"})
			p.Stats()
			p.Clear()
			time.Sleep(100 * time.Microsecond) // leave the CPU to the requests
		}
	})
	var reqs sync.WaitGroup
	for i := range 4 {
		reqs.Go(func() {
			for range 5 {
				u := p.URL() + "/even/k"
				if i%2 == 1 {
					u = p.URL() + "/odd/k"
				}
				resp, err := c.Get(u)
				if err != nil {
					t.Error(err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					t.Error(err)
				case resp.StatusCode == http.StatusOK && !bytes.Equal(body, payload):
					t.Errorf("%s: body differs", u)
				case resp.StatusCode != http.StatusOK && (i%2 == 0 || resp.StatusCode != http.StatusServiceUnavailable):
					t.Errorf("%s: status %d", u, resp.StatusCode)
				}
			}
		})
	}
	reqs.Wait()
	cancel()
	wg.Wait()
	if got := p.Stats().Requests; got != 20 {
		t.Errorf("Requests = %d, want 20", got)
	}
}

func TestParseUpstream(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:9000":   "http://127.0.0.1:9000",
		"127.0.0.1:9000":          "http://127.0.0.1:9000",
		"https://minio.local/":    "https://minio.local",
		"http://127.0.0.1:9000/b": "",
		"ftp://x":                 "",
	} {
		u, err := parseUpstream(in)
		switch {
		case want == "" && err == nil:
			t.Errorf("parseUpstream(%q) = %v, want an error", in, u)
		case want != "" && (err != nil || u.String() != want):
			t.Errorf("parseUpstream(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
}

func TestPathMatches(t *testing.T) {
	for _, tt := range []struct {
		path, pattern string
		want          bool
	}{
		{"/b/demo/bundles/x.tar.gz", "bundles/", true},
		{"/b/demo/bundles/x.tar.gz.sig", ".tar.gz$", false},
		{"/b/demo/bundles/x.tar.gz", ".tar.gz$", true},
		{"/b/demo/releases/demo/latest", "latest$", true},
		{"/b/demo/releases/demo/latest", "releases/prod", false},
	} {
		if got := pathMatches(tt.path, tt.pattern); got != tt.want {
			t.Errorf("pathMatches(%q, %q) = %v, want %v", tt.path, tt.pattern, got, tt.want)
		}
	}
}
