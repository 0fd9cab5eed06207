package standin

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// runResult is what one in-process run of an applet left.
type runResult struct {
	code           int
	stdout, stderr string
}

func (r runResult) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// run runs argv in-process with the environment env.
func run(t *testing.T, e map[string]string, argv ...string) runResult {
	t.Helper()
	var out, errOut bytes.Buffer
	en := testEnv(e, &out, &errOut)
	code := en.run(t.Context(), argv)
	return runResult{code, out.String(), errOut.String()}
}

func testEnv(e map[string]string, stdout, stderr io.Writer) *env {
	return &env{
		getenv:     func(k string) string { return e[k] },
		stdout:     &lockedWriter{w: stdout},
		stderr:     &lockedWriter{w: stderr},
		routeTable: "/nonexistent/route",
		amqpAddr:   "127.0.0.1:1",
	}
}

// listen returns a listener on a free loopback port and that port.
func listen(t *testing.T) (net.Listener, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return l, port
}

// start serves l with serve until the test ends, then checks serve
// returned nil.
func start(t *testing.T, l net.Listener, serve func(context.Context, net.Listener) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serving %s: %v", l.Addr(), err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("serving %s: still running 10s after its context ended", l.Addr())
		}
	})
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	l, port := listen(t)
	l.Close()
	return port
}

func TestFlagParse(t *testing.T) {
	fs := flagSet{
		value:   map[string]string{"o": "output", "output": "output", "tries": "tries"},
		boolean: map[string]string{"f": "fail", "s": "silent", "S": "show", "spider": "spider"},
	}
	tests := []struct {
		args     []string
		flags    map[string]string
		operands []string
		err      string
	}{
		{args: []string{"-f", "URL"}, flags: map[string]string{"fail": ""}, operands: []string{"URL"}},
		{args: []string{"-fsS", "-o", "F", "URL"}, flags: map[string]string{"fail": "", "silent": "", "show": "", "output": "F"}, operands: []string{"URL"}},
		{args: []string{"-sofile", "URL"}, flags: map[string]string{"silent": "", "output": "file"}, operands: []string{"URL"}},
		{args: []string{"--tries=1", "--spider", "URL"}, flags: map[string]string{"tries": "1", "spider": ""}, operands: []string{"URL"}},
		{args: []string{"--output", "F", "--", "-f"}, flags: map[string]string{"output": "F"}, operands: []string{"-f"}},
		{args: []string{"-x"}, err: "unknown flag -x"},
		{args: []string{"--nope"}, err: "unknown flag --nope"},
		{args: []string{"-o"}, err: "flag -o needs a value"},
		{args: []string{"--tries"}, err: "flag --tries needs a value"},
	}
	for _, tt := range tests {
		flags, operands, err := fs.parse(tt.args)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("parse(%q): error %v, want %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(flags, tt.flags) || !reflect.DeepEqual(operands, tt.operands) {
			t.Errorf("parse(%q) = %v, %q, %v; want %v, %q", tt.args, flags, operands, err, tt.flags, tt.operands)
		}
	}
}

func TestDefaultGateway(t *testing.T) {
	const header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	tests := []struct {
		name, table, want, err string
	}{
		{name: "docker bridge", want: "172.18.0.1", table: header +
			"eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"},
		{name: "subnet route first", want: "192.168.0.1", table: header +
			"eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
			"eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"},
		{name: "no default route", err: "no IPv4 default route", table: header +
			"eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"},
		{name: "default route down", err: "no IPv4 default route", table: header +
			"eth0\t00000000\t010012AC\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"},
		{name: "bad gateway", err: `gateway "zz" is not 8 hex digits`, table: header +
			"eth0\t00000000\tzz\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"},
	}
	for _, tt := range tests {
		ip, err := defaultGateway(strings.NewReader(tt.table))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: got %v, %v; want an error with %q", tt.name, ip, err, tt.err)
			}
			continue
		}
		if err != nil || ip.String() != tt.want {
			t.Errorf("%s: got %v, %v; want %s", tt.name, ip, err, tt.want)
		}
	}
}

func TestDispatch(t *testing.T) {
	if r := run(t, nil, "/usr/bin/frobnicate"); r.code != 127 || !strings.Contains(r.stderr, `no applet "frobnicate"`) {
		t.Errorf("unknown name: %v", r)
	}
	if r := run(t, nil, "standin"); r.code != 2 || !strings.Contains(r.stderr, "which applet?") {
		t.Errorf("standin without an applet: %v", r)
	}
	if r := run(t, nil, "/usr/local/bin/standin", "frobnicate"); r.code != 127 {
		t.Errorf("standin with an unknown applet: %v", r)
	}
	if r := run(t, nil, "/bin/sh", "pg_isready"); r.code != 2 || !strings.Contains(r.stderr, "only `sh -c COMMAND`") {
		t.Errorf("sh without -c: %v", r)
	}
	if r := run(t, nil, "sh", "-c", "pg_isready | cat"); r.code != 2 || !strings.Contains(r.stderr, "shell syntax") {
		t.Errorf("sh with a pipe: %v", r)
	}
	if r := run(t, nil, "sh", "-c", "psql -c 'select 1'"); r.code != 2 {
		t.Errorf("sh with quotes: %v", r)
	}
	if r := run(t, nil, "sh", "-c", "psql -l"); r.code != 127 || !strings.Contains(r.stderr, "psql: command not found") {
		t.Errorf("sh with an unknown command: %v", r)
	}
}

// fakePostgres answers every SSLRequest with answer, as a server without
// TLS does with 'N'.
func fakePostgres(t *testing.T, answer byte) string {
	t.Helper()
	l, port := listen(t)
	start(t, l, func(ctx context.Context, l net.Listener) error {
		return acceptLoop(ctx, l, func(_ context.Context, c net.Conn) {
			var req [8]byte
			if _, err := io.ReadFull(c, req[:]); err != nil || !bytes.Equal(req[:], sslRequest) {
				return
			}
			c.Write([]byte{answer})
		})
	})
	return port
}

func TestPgIsReady(t *testing.T) {
	port := fakePostgres(t, 'N')
	r := run(t, nil, "pg_isready", "-h", "127.0.0.1", "-p", port, "-U", "app", "-d", "app")
	if r.code != 0 || r.stdout != "127.0.0.1:"+port+" - accepting connections\n" {
		t.Errorf("against a server: %v", r)
	}
	if r := run(t, nil, "pg_isready", "-q", "-h", "127.0.0.1", "-p", port); r.code != 0 || r.stdout != "" {
		t.Errorf("-q against a server: %v", r)
	}
	if r := run(t, nil, "pg_isready", "-h", "127.0.0.1", "-p", fakePostgres(t, 'E')); r.code != 1 || !strings.Contains(r.stdout, "rejecting") {
		t.Errorf("against a server answering E: %v", r)
	}
	dead := closedPort(t)
	if r := run(t, nil, "pg_isready", "-h", "127.0.0.1", "-p", dead, "-t", "1"); r.code != 2 || !strings.Contains(r.stdout, "no response") || !strings.Contains(r.stderr, "connecting to 127.0.0.1:"+dead) {
		t.Errorf("against nothing: %v", r)
	}
	if r := run(t, nil, "pg_isready", "--frob"); r.code != 3 {
		t.Errorf("bad flag: %v", r)
	}
	// The db healthcheck's way: through sh -c.
	if r := run(t, nil, "/bin/sh", "-c", "pg_isready -U app -d app -h 127.0.0.1 -p "+port); r.code != 0 {
		t.Errorf("through sh -c: %v", r)
	}
}

func TestProxy(t *testing.T) {
	pgPort := fakePostgres(t, 'N')
	l, port := listen(t)
	var logs bytes.Buffer
	logw := &lockedWriter{w: &logs}
	start(t, l, func(ctx context.Context, l net.Listener) error {
		return acceptLoop(ctx, l, proxyTo("127.0.0.1:"+pgPort, func(f string, a ...any) { fmt.Fprintf(logw, f+"\n", a...) }))
	})
	if r := run(t, nil, "pg_isready", "-h", "127.0.0.1", "-p", port); r.code != 0 {
		t.Errorf("through the proxy: %v", r)
	}

	// An echo upstream: bytes go both ways, and a client's close ends it.
	el, echoPort := listen(t)
	start(t, el, func(ctx context.Context, l net.Listener) error {
		return acceptLoop(ctx, l, func(_ context.Context, c net.Conn) { io.Copy(c, c) })
	})
	pl, proxyPort := listen(t)
	start(t, pl, func(ctx context.Context, l net.Listener) error {
		return acceptLoop(ctx, l, proxyTo("127.0.0.1:"+echoPort, func(string, ...any) {}))
	})
	c, err := net.Dial("tcp", "127.0.0.1:"+proxyPort)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	payload := bytes.Repeat([]byte("0123456789"), 100_000)
	go c.Write(payload)
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, payload) {
		t.Errorf("echo through the proxy: %v (equal: %v)", err, bytes.Equal(got, payload))
	}

	// Upstream gone: the client is closed and the proxy says why.
	dl, deadPort := listen(t)
	dead := closedPort(t)
	var deadLogs bytes.Buffer
	deadw := &lockedWriter{w: &deadLogs}
	start(t, dl, func(ctx context.Context, l net.Listener) error {
		return acceptLoop(ctx, l, proxyTo("127.0.0.1:"+dead, func(f string, a ...any) { fmt.Fprintf(deadw, f+"\n", a...) }))
	})
	if r := run(t, nil, "pg_isready", "-h", "127.0.0.1", "-p", deadPort, "-t", "2"); r.code != 2 {
		t.Errorf("through the proxy to nothing: %v", r)
	}
	if s := deadw.String(); !strings.Contains(s, "to the upstream 127.0.0.1:"+dead) {
		t.Errorf("proxy log %q does not name the upstream it could not reach", s)
	}
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.(*bytes.Buffer).String()
}

func TestDBArguments(t *testing.T) {
	for _, port := range []string{"", "x", "0", "70000"} {
		r := run(t, map[string]string{UpstreamPortVar: port}, "standin", "db")
		if r.code != 2 || !strings.Contains(r.stderr, UpstreamPortVar) {
			t.Errorf("%s=%q: %v", UpstreamPortVar, port, r)
		}
	}
	r := run(t, map[string]string{UpstreamPortVar: "5432"}, "standin", "db")
	if r.code != 1 || !strings.Contains(r.stderr, "/nonexistent/route") {
		t.Errorf("without a routing table: %v", r)
	}
	dir := t.TempDir()
	table := filepath.Join(dir, "route")
	os.WriteFile(table, []byte("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"), 0o644)
	var out, errOut bytes.Buffer
	e := testEnv(map[string]string{UpstreamPortVar: "5432"}, &out, &errOut)
	e.routeTable = table
	if code := e.run(t.Context(), []string{"standin", "db"}); code != 1 || !strings.Contains(errOut.String(), "no IPv4 default route") {
		t.Errorf("without a default route: exit %d, %q", code, errOut.String())
	}
}

func TestRedis(t *testing.T) {
	l, port := listen(t)
	start(t, l, serveRedis)
	if r := run(t, nil, "redis-cli", "-h", "127.0.0.1", "-p", port, "ping"); r.code != 0 || r.stdout != "PONG\n" {
		t.Errorf("ping: %v", r)
	}
	if r := run(t, nil, "redis-cli", "-p", port, "PING"); r.code != 0 {
		t.Errorf("PING: %v", r)
	}
	// A real server: what one connection writes, another reads.
	resp := func(cmds ...string) string {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(cmds))
		for _, s := range cmds {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(s), s)
		}
		io.WriteString(c, b.String())
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("%q: %v", cmds, err)
		}
		return line
	}
	if got := resp("SET", "k", "v"); got != "+OK\r\n" {
		t.Errorf("SET answered %q", got)
	}
	if got := resp("EXISTS", "k"); got != ":1\r\n" {
		t.Errorf("EXISTS on another connection answered %q", got)
	}
	if r := run(t, nil, "redis-cli", "-p", closedPort(t), "ping"); r.code != 1 || !strings.Contains(r.stderr, "connecting to 127.0.0.1:") {
		t.Errorf("ping to nothing: %v", r)
	}
	if r := run(t, nil, "redis-cli", "-p", port, "get", "k"); r.code != 2 || !strings.Contains(r.stderr, "only `redis-cli") {
		t.Errorf("another command: %v", r)
	}
	// A server that is there but not ready (as Redis while loading).
	el, errPort := listen(t)
	start(t, el, func(ctx context.Context, l net.Listener) error {
		return acceptLoop(ctx, l, func(_ context.Context, c net.Conn) {
			io.WriteString(c, "-LOADING Redis is loading the dataset in memory\r\n")
		})
	})
	if r := run(t, nil, "redis-cli", "-p", errPort, "ping"); r.code != 1 || !strings.Contains(r.stderr, "-LOADING") {
		t.Errorf("ping to a loading server: %v", r)
	}
}

func TestHTTPTools(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/minio/health/live":
			fmt.Fprint(w, "live")
		case "/moved":
			http.Redirect(w, r, "/minio/health/live", http.StatusFound)
		default:
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	live := srv.URL + "/minio/health/live"
	dead := "http://127.0.0.1:" + closedPort(t) + "/"
	out := filepath.Join(t.TempDir(), "body")
	tests := []struct {
		argv []string
		code int
	}{
		{[]string{"curl", "-f", live}, 0},
		{[]string{"curl", "-fsS", "-o", out, live}, 0},
		{[]string{"curl", "-f", srv.URL + "/down"}, 22},
		{[]string{"curl", srv.URL + "/down"}, 22},
		{[]string{"curl", "-f", srv.URL + "/moved"}, 22},
		{[]string{"curl", "-fL", srv.URL + "/moved"}, 0},
		{[]string{"curl", "-f", dead}, 7},
		{[]string{"curl", "-f"}, 2},
		{[]string{"curl", "-X", "POST", live}, 2},
		{[]string{"wget", "--quiet", "--tries=1", "--spider", live}, 0},
		{[]string{"wget", "-q", "-O", "-", live}, 0},
		{[]string{"wget", "--quiet", "--tries=1", "--spider", srv.URL + "/down"}, 8},
		{[]string{"wget", "--quiet", "--tries=2", "--spider", dead}, 4},
		{[]string{"wget", "--quiet", live}, 2},
		{[]string{"wget", "--tries=0", "--spider", live}, 2},
	}
	for _, tt := range tests {
		if r := run(t, nil, tt.argv...); r.code != tt.code {
			t.Errorf("%q: %v; want exit %d", tt.argv, r, tt.code)
		}
	}
	if body, err := os.ReadFile(out); err != nil || string(body) != "live" {
		t.Errorf("curl -o wrote %q, %v; want %q", body, err, "live")
	}
	if r := run(t, nil, "curl", "-f", live); r.stdout != "live" {
		t.Errorf("curl printed %q, want the body", r.stdout)
	}
	if r := run(t, nil, "wget", "-q", "--spider", live); r.stdout != "" {
		t.Errorf("wget --spider printed %q", r.stdout)
	}
	if r := run(t, nil, "curl", "-f", srv.URL+"/down"); !strings.Contains(r.stderr, "answered 503 Service Unavailable, want 2xx") {
		t.Errorf("curl's error %q does not say what it got", r.stderr)
	}
}

func TestMailHog(t *testing.T) {
	var out, errOut bytes.Buffer
	e := testEnv(nil, &out, &errOut)
	smtpL, smtpPort := listen(t)
	httpL, httpPort := listen(t)
	smtpL.Close()
	httpL.Close()
	// Served the way the applet serves them, on free ports.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	go func() {
		done <- e.serve(ctx, "mailhog", nil, mailHogServices("127.0.0.1:"+smtpPort, "127.0.0.1:"+httpPort)...)
	}()
	waitPort(t, smtpPort)
	waitPort(t, httpPort)

	addr := "127.0.0.1:" + smtpPort
	auth := smtp.PlainAuth("", "user", "secret", "127.0.0.1")
	msg := "Subject: hello\r\n\r\n" + strings.Repeat("x", 10_000) + "\r\n..leading dot\r\nbye\r\n"
	if err := smtp.SendMail(addr, auth, "from@example.com", []string{"a@example.com", "b@example.com"}, []byte(msg)); err != nil {
		t.Errorf("sending a message with AUTH PLAIN: %v", err)
	}
	if err := smtp.SendMail(addr, nil, "from@example.com", []string{"a@example.com"}, []byte("Subject: 2\r\n\r\nbody\r\n")); err != nil {
		t.Errorf("sending a message without AUTH: %v", err)
	}
	// The banner is what the integration test checks through the host port.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if banner, _ := br.ReadString('\n'); !strings.HasPrefix(banner, "220 ") {
		t.Errorf("banner %q, want 220", banner)
	}
	io.WriteString(c, "DATA\r\n")
	if got, _ := br.ReadString('\n'); !strings.HasPrefix(got, "503 ") {
		t.Errorf("DATA before MAIL answered %q, want 503", got)
	}
	// AUTH LOGIN, as nodemailer uses when the server offers it first.
	for _, step := range []struct{ send, want string }{
		{"AUTH LOGIN", "334 VXNlcm5hbWU6"},
		{"dXNlcg==", "334 UGFzc3dvcmQ6"},
		{"c2VjcmV0", "235 "},
		{"AUTH LOGIN dXNlcg==", "334 UGFzc3dvcmQ6"},
		{"c2VjcmV0", "235 "},
		{"AUTH CRAM-MD5", "504 "},
		{"STARTTLS", "502 "},
	} {
		io.WriteString(c, step.send+"\r\n")
		if got, _ := br.ReadString('\n'); !strings.HasPrefix(got, step.want) {
			t.Errorf("%s answered %q, want %s", step.send, got, step.want)
		}
	}
	io.WriteString(c, "QUIT\r\n")
	if got, _ := br.ReadString('\n'); !strings.HasPrefix(got, "221 ") {
		t.Errorf("QUIT answered %q, want 221", got)
	}
	c.Close()

	r := run(t, nil, "wget", "--quiet", "--tries=1", "--spider", "http://127.0.0.1:"+httpPort)
	if r.code != 0 {
		t.Errorf("wget --spider on the HTTP port: %v", r)
	}
	if r := run(t, nil, "curl", "-f", "http://127.0.0.1:"+httpPort+"/"); !strings.Contains(r.stdout, "2 messages") {
		t.Errorf("the HTTP port says %q, want 2 messages", r.stdout)
	}
	cancel()
	if code := <-done; code != 0 || !strings.Contains(errOut.String(), "stopped") {
		t.Errorf("stopping: exit %d, %q", code, errOut.String())
	}
}

func TestRabbitMQ(t *testing.T) {
	var out, errOut bytes.Buffer
	e := testEnv(nil, &out, &errOut)
	l, amqpPort := listen(t)
	hl, httpPort := listen(t)
	l.Close()
	hl.Close()
	e.amqpAddr = "127.0.0.1:" + amqpPort
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	go func() {
		done <- e.serve(ctx, "rabbitmq", nil, rabbitMQServices(e.amqpAddr, "127.0.0.1:"+httpPort)...)
	}()
	waitPort(t, amqpPort)
	waitPort(t, httpPort)

	var dout, derr bytes.Buffer
	d := testEnv(nil, &dout, &derr)
	d.amqpAddr = e.amqpAddr
	if code := d.run(t.Context(), []string{"rabbitmq-diagnostics", "-q", "ping"}); code != 0 || dout.Len() != 0 {
		t.Errorf("rabbitmq-diagnostics -q ping: exit %d, %q %q", code, dout.String(), derr.String())
	}
	// An AMQP client's handshake ends at once, not after a timeout.
	c, err := net.Dial("tcp", e.amqpAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("AMQP\x00\x00\x09\x01"))
	began := time.Now()
	if n, err := c.Read(make([]byte, 16)); err == nil || time.Since(began) > 2*time.Second {
		t.Errorf("the AMQP port answered %d bytes, %v after %v; want the connection closed at once", n, err, time.Since(began))
	}
	c.Close()
	if r := run(t, nil, "curl", "-f", "http://127.0.0.1:"+httpPort+"/"); r.code != 0 {
		t.Errorf("the management port: %v", r)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("stopping: exit %d, %q", code, errOut.String())
	}
	if r := run(t, nil, "rabbitmq-diagnostics", "ping"); r.code != 69 || !strings.Contains(r.stderr, "connecting to 127.0.0.1:1") {
		t.Errorf("ping to nothing: %v", r)
	}
	if r := run(t, nil, "rabbitmq-diagnostics", "status"); r.code != 64 {
		t.Errorf("another command: %v", r)
	}
}

func TestServeBusyPort(t *testing.T) {
	l, port := listen(t)
	defer l.Close()
	var out, errOut bytes.Buffer
	e := testEnv(nil, &out, &errOut)
	free, _ := listen(t)
	freeAddr := free.Addr().String()
	free.Close()
	code := e.serve(t.Context(), "redis", []string{"--appendonly", "yes"},
		service{freeAddr, serveRedis}, service{"127.0.0.1:" + port, serveRedis})
	if code != 1 || !strings.Contains(errOut.String(), "listening on 127.0.0.1:"+port) || !strings.Contains(errOut.String(), "address already in use") {
		t.Errorf("busy port: exit %d, %q", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), `ignoring arguments ["--appendonly" "yes"]`) {
		t.Errorf("extra arguments not named: %q", errOut.String())
	}
	// The first port was released again.
	if l2, err := net.Listen("tcp", freeAddr); err != nil {
		t.Errorf("%s still held after a failed start: %v", freeAddr, err)
	} else {
		l2.Close()
	}
}

func TestAcceptLoopStopsOpenConnections(t *testing.T) {
	l, port := listen(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- acceptLoop(ctx, l, func(ctx context.Context, c net.Conn) { io.Copy(io.Discard, c) })
	}()
	c, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x")) // make sure the handler runs
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("acceptLoop returned %v after its context ended, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("acceptLoop still running 5s after its context ended, with a connection open")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the open connection was not closed")
	}
}

// waitPort waits until 127.0.0.1:port accepts.
func waitPort(t *testing.T, port string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %s not accepting after 5s: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
