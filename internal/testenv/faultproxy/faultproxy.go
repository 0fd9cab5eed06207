package faultproxy

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Kind of fault.
type Kind string

const (
	// Status answers with Fault.Status (default 503) and an S3-style XML
	// error body, without contacting upstream.
	Status Kind = "status"
	// Hang accepts the request and sends nothing for Fault.Delay (default
	// 1 minute), or until the client gives up or the proxy is closed, then
	// closes the connection.
	Hang Kind = "hang"
	// Reset forwards the request, sends the upstream status and headers
	// (with the real Content-Length) and the first Fault.After body bytes,
	// then closes the TCP connection with RST. After should be smaller than
	// the body; a response without one (HEAD, 204, 304) ends after headers.
	Reset Kind = "reset"
	// Truncate is like Reset but closes normally (FIN) after Fault.After
	// body bytes, so the client sees an unexpected EOF.
	Truncate Kind = "truncate"
	// Drip forwards the request but sends the response body Fault.Chunk
	// bytes (default 1) at a time, Fault.Delay (default 100ms) apart.
	Drip Kind = "drip"
	// Refuse closes the client connection at once without any response,
	// like a dead store.
	Refuse Kind = "refuse"

	// Note for Hang and Refuse: when the connection was a reused
	// keep-alive one, net/http retries an idempotent request (GET, HEAD)
	// once by itself, so one client call can consume two matching requests.
)

const (
	defaultStatus    = http.StatusServiceUnavailable
	defaultHangDelay = time.Minute
	defaultDripDelay = 100 * time.Millisecond
)

// Fault describes which requests get which fault.
type Fault struct {
	Kind   Kind
	Method string        // "" = any; else exact match (GET, HEAD, PUT…)
	Path   string        // "" = any; else the request's URL.Path must contain this substring (or, ending in "$", end with it)
	Times  int           // how many matching requests get this fault; 0 = every matching request until Clear
	Status int           // for Status (default 503)
	After  int64         // for Reset/Truncate: body bytes passed through first
	Chunk  int           // for Drip (default 1)
	Delay  time.Duration // Hang: how long (default 1 minute); Drip: between chunks (default 100ms)
}

func (f *Fault) matches(r *http.Request) bool {
	return (f.Method == "" || f.Method == r.Method) &&
		(f.Path == "" || pathMatches(r.URL.Path, f.Path))
}

// Stats counts what the proxy saw.
type Stats struct {
	Requests int          // requests received
	Injected map[Kind]int // faults injected, by kind
}

type rule struct {
	Fault
	used int
}

// Proxy is a fault-injecting reverse proxy. It is safe for concurrent use.
type Proxy struct {
	upstream  *url.URL
	ln        net.Listener
	srv       *http.Server
	transport *http.Transport
	serveDone chan struct{}

	// ctx is every request's base context: cancelling it on Close aborts
	// upstream round trips, drips and hangs without waiting for Delay.
	ctx    context.Context
	cancel context.CancelFunc

	closeOnce sync.Once
	handlers  sync.WaitGroup // handlers in flight, hijacked ones included

	mu     sync.Mutex
	closed bool
	rules  []*rule
	stats  Stats
}

// Start listens on 127.0.0.1:0 and proxies to upstream (e.g.
// "http://127.0.0.1:9000"). It closes the proxy in t.Cleanup.
func Start(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := start(upstream)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

func start(upstream string) (*Proxy, error) {
	u, err := parseUpstream(upstream)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		upstream: u,
		ln:       ln,
		transport: &http.Transport{
			Proxy:       nil, // never route the store through $HTTP_PROXY
			DialContext: (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			// Pass Accept-Encoding and bodies through untouched.
			DisableCompression:  true,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
		serveDone: make(chan struct{}),
		ctx:       ctx,
		cancel:    cancel,
		stats:     Stats{Injected: map[Kind]int{}},
	}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(p.serveHTTP),
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() {
		defer close(p.serveDone)
		_ = p.srv.Serve(ln) // returns http.ErrServerClosed on Close
	}()
	return p, nil
}

func parseUpstream(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream %q: want http(s)://host:port", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("upstream %q: a path or query is not supported; requests keep their own", s)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// URL is the proxy's base URL, "http://127.0.0.1:PORT".
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Add appends a fault. Faults are tried in the order added; the first
// matching one with Times left applies. It panics on an invalid Fault,
// which is a bug in the test.
func (p *Proxy) Add(f Fault) {
	switch f.Kind {
	case Status, Hang, Reset, Truncate, Drip, Refuse:
	default:
		panic(fmt.Sprintf("faultproxy: unknown fault kind %q", f.Kind))
	}
	if f.Times < 0 || f.After < 0 || f.Chunk < 0 || f.Delay < 0 {
		panic(fmt.Sprintf("faultproxy: negative field in %+v", f))
	}
	if f.Status == 0 {
		f.Status = defaultStatus
	}
	if f.Status < 200 || f.Status > 599 {
		panic(fmt.Sprintf("faultproxy: status %d out of range 200-599", f.Status))
	}
	if f.Chunk == 0 {
		f.Chunk = 1
	}
	if f.Delay == 0 {
		f.Delay = defaultDripDelay
		if f.Kind == Hang {
			f.Delay = defaultHangDelay
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &rule{Fault: f})
}

// Clear removes all faults; requests in flight finish as they started.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
}

// Stats returns a copy of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Requests: p.stats.Requests, Injected: make(map[Kind]int, len(p.stats.Injected))}
	for k, v := range p.stats.Injected {
		s.Injected[k] = v
	}
	return s
}

// Close stops the proxy: it stops listening, aborts every request in
// flight (hangs and drips included, without waiting for their Delay) and
// waits for their handlers to return. It is safe to call more than once.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true // no handler may join p.handlers from now on
		p.mu.Unlock()
		p.cancel()
		_ = p.srv.Close() // closes the listener and non-hijacked conns
		<-p.serveDone
		p.handlers.Wait()
		p.transport.CloseIdleConnections()
	})
}

// begin counts the request and picks its fault, if any. ok is false once
// the proxy is closing.
func (p *Proxy) begin(r *http.Request) (f *Fault, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, false
	}
	p.handlers.Add(1)
	p.stats.Requests++
	for _, ru := range p.rules {
		if !ru.matches(r) || (ru.Times > 0 && ru.used >= ru.Times) {
			continue
		}
		ru.used++
		p.stats.Injected[ru.Kind]++
		fc := ru.Fault
		return &fc, true
	}
	return nil, true
}

func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := p.begin(r)
	if !ok {
		writeS3Error(w, r, http.StatusServiceUnavailable, "faultproxy is closed")
		return
	}
	defer p.handlers.Done()
	if f == nil {
		p.forward(w, r, nil)
		return
	}
	switch f.Kind {
	case Status:
		writeS3Error(w, r, f.Status, "injected by faultproxy")
	case Hang:
		p.hang(w, f.Delay)
	case Refuse:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		_ = conn.Close()
	case Reset, Truncate, Drip:
		p.forward(w, r, f)
	}
}

// hang keeps the connection silent until delay passes, the client hangs
// up or the proxy closes. It hijacks so it can notice the client leaving
// even while a request body is still unread.
func (p *Proxy) hang(w http.ResponseWriter, delay time.Duration) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		_, _ = io.Copy(io.Discard, brw.Reader) // ends on client close or conn.Close below
	}()
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-gone:
	case <-p.ctx.Done():
	}
	_ = conn.Close()
	<-gone
}

// forward proxies r upstream and relays the response, applying f if it is
// a Reset, Truncate or Drip fault.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, f *Fault) {
	resp, err := p.roundTrip(r)
	if err != nil {
		// Like a real gateway in front of a dead store: a retryable 502.
		writeS3Error(w, r, http.StatusBadGateway, fmt.Sprintf("faultproxy: upstream: %v", err))
		return
	}
	defer resp.Body.Close()

	if f != nil && (f.Kind == Reset || f.Kind == Truncate) {
		p.cut(w, r, resp, f)
		return
	}

	h := w.Header()
	removeHopByHop(resp.Header)
	for k, vv := range resp.Header {
		h[k] = append([]string(nil), vv...)
	}
	// Stop net/http from adding headers upstream did not send.
	for _, k := range []string{"Content-Type", "Date"} {
		if _, ok := h[k]; !ok {
			h[k] = nil
		}
	}
	w.WriteHeader(resp.StatusCode)

	chunk, delay := 32*1024, time.Duration(0)
	if f != nil && f.Kind == Drip {
		chunk, delay = f.Chunk, f.Delay
	}
	if err := relay(r.Context(), w, resp.Body, chunk, delay); err != nil {
		// The status is out already; abort so the client cannot mistake
		// a cut-short body for a complete one.
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		for _, v := range vv {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
}

// roundTrip sends r upstream unchanged except for the dialled address and
// hop-by-hop headers.
func (p *Proxy) roundTrip(r *http.Request) (*http.Response, error) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = p.upstream.Scheme
	out.URL.Host = p.upstream.Host
	out.Host = r.Host // SigV4 signed the host the client dialled: the proxy's
	out.Close = false
	out.Trailer = r.Trailer // filled in place when the client's body ends
	if r.ContentLength == 0 {
		out.Body = nil // lets the transport retry on a stale idle conn
	}
	removeHopByHop(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // no Go default User-Agent
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err)
	}
	return resp, nil
}

// relay copies body to w in chunks of at most chunk bytes, flushing each,
// and waits delay between chunks.
func relay(ctx context.Context, w http.ResponseWriter, body io.Reader, chunk int, delay time.Duration) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, chunk)
	for first := true; ; first = false {
		if delay > 0 && !first {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		n, rerr := readChunk(body, buf, delay > 0)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return fmt.Errorf("write to client: %w", err)
			}
			if err := rc.Flush(); err != nil {
				return fmt.Errorf("flush to client: %w", err)
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read upstream body: %w", rerr)
		}
	}
}

// readChunk reads into buf; with full it keeps reading until buf is full
// so drip chunks have the asked size, otherwise one Read is enough.
func readChunk(r io.Reader, buf []byte, full bool) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
		if !full && n > 0 {
			break
		}
	}
	return n, nil
}

// cut writes the upstream response itself on the hijacked connection, so
// it can stop after f.After body bytes and close with FIN or RST.
func (p *Proxy) cut(w http.ResponseWriter, r *http.Request, resp *http.Response, f *Fault) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	// A client that stops reading must not keep Close waiting.
	stop := context.AfterFunc(p.ctx, func() { _ = conn.Close() })
	defer stop()
	defer func() {
		if tc, ok := conn.(*net.TCPConn); ok && f.Kind == Reset {
			_ = tc.SetLinger(0) // Close then sends RST instead of FIN
		}
		_ = conn.Close()
	}()

	h := resp.Header.Clone()
	removeHopByHop(h)
	hasBody := r.Method != http.MethodHead && bodyAllowed(resp.StatusCode)
	chunked := hasBody && resp.ContentLength < 0
	if hasBody {
		// Announce the whole body so the client knows it was cut short.
		h.Del("Content-Length")
		if chunked {
			h.Set("Transfer-Encoding", "chunked")
		} else {
			h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		}
	}
	bw := bufio.NewWriter(conn)
	text := http.StatusText(resp.StatusCode)
	if text == "" {
		text = "Status " + strconv.Itoa(resp.StatusCode)
	}
	fmt.Fprintf(bw, "HTTP/1.1 %03d %s\r\n", resp.StatusCode, text)
	_ = h.Write(bw)
	_, _ = bw.WriteString("\r\n")
	if hasBody && f.After > 0 {
		if chunked {
			_ = writeChunks(bw, io.LimitReader(resp.Body, f.After))
		} else {
			_, _ = io.CopyN(bw, resp.Body, f.After)
		}
	}
	_ = bw.Flush()
}

// writeChunks writes r in HTTP/1.1 chunked encoding without the final
// zero-length chunk, so the client sees the body end early.
func writeChunks(w io.Writer, r io.Reader) error {
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := fmt.Fprintf(w, "%x\r\n%s\r\n", n, buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// hopHeaders apply to one connection only and must not be forwarded.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

type s3Error struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string
	Message   string
	Resource  string
	RequestID string `xml:"RequestId"`
}

// writeS3Error answers like S3 does, so the SDK classifies the error (and
// decides on retries) the same way as for the real store.
func writeS3Error(w http.ResponseWriter, r *http.Request, status int, msg string) {
	// Marshal cannot fail: the struct holds only strings.
	body, _ := xml.Marshal(s3Error{Code: s3Code(status), Message: msg, Resource: r.URL.Path, RequestID: "faultproxy"})
	body = append([]byte(xml.Header), body...)
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Amz-Request-Id", "faultproxy")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func s3Code(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "InvalidRequest"
	case http.StatusForbidden:
		return "AccessDenied"
	case http.StatusNotFound:
		return "NoSuchKey"
	case http.StatusConflict:
		return "OperationAborted"
	case http.StatusPreconditionFailed:
		return "PreconditionFailed"
	case http.StatusTooManyRequests:
		return "SlowDown"
	case http.StatusInternalServerError:
		return "InternalError"
	case http.StatusNotImplemented:
		return "NotImplemented"
	case http.StatusBadGateway:
		return "BadGateway"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusGatewayTimeout:
		return "GatewayTimeout"
	}
	if status >= 500 {
		return "InternalError"
	}
	return "FaultInjected"
}

// pathMatches is a substring match, or a suffix match for a pattern
// ending in "$" ("bundles/x.tar.gz$" spares "bundles/x.tar.gz.sig").
func pathMatches(path, pattern string) bool {
	if suffix, ok := strings.CutSuffix(pattern, "$"); ok {
		return strings.HasSuffix(path, suffix)
	}
	return strings.Contains(path, pattern)
}
