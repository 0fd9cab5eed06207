package standin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// service is one port of a service applet: serve must return once ctx
// ends, having closed l.
type service struct {
	addr  string
	serve func(ctx context.Context, l net.Listener) error
}

// serve listens on every address first, so that a busy port fails at once
// and by name, then serves them all until ctx ends (exit 0) or one fails
// (exit 1, the others stopped).
func (e *env) serve(ctx context.Context, name string, args []string, svcs ...service) int {
	if len(args) > 0 {
		e.logf(name, "ignoring arguments %q", args)
	}
	ls := make([]net.Listener, 0, len(svcs))
	for _, s := range svcs {
		l, err := net.Listen("tcp", s.addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			e.logf(name, "listening on %s: %v", s.addr, err)
			return 1
		}
		ls = append(ls, l)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(svcs))
	for i, s := range svcs {
		e.logf(name, "listening on %s", ls[i].Addr())
		go func() {
			err := s.serve(ctx, ls[i])
			if err != nil {
				err = fmt.Errorf("serving %s: %w", ls[i].Addr(), err)
			}
			errs <- err
		}()
	}
	var failed error
	for range svcs {
		if err := <-errs; err != nil && failed == nil {
			failed = err
			cancel()
		}
	}
	if failed != nil {
		e.logf(name, "%v", failed)
		return 1
	}
	e.logf(name, "stopped")
	return 0
}

// acceptLoop runs handle for every connection on l, each in its own
// goroutine, until ctx ends; then it closes l and the open connections and
// returns nil once every handler has returned. An accept error ends it
// the same way and is returned.
func acceptLoop(ctx context.Context, l net.Listener, handle func(ctx context.Context, c net.Conn)) error {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	closeAll := func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			closeAll()
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting: %w", err)
		}
		mu.Lock()
		// ctx ended after Accept: closeAll may have run without this one.
		if ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			handle(ctx, c)
		})
	}
}

// serveHTTP answers every request on l with h until ctx ends.
func serveHTTP(h http.Handler) func(ctx context.Context, l net.Listener) error {
	return func(ctx context.Context, l net.Listener) error {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		stop := context.AfterFunc(ctx, func() { srv.Close() })
		defer stop()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// runDB forwards :5432 to the PostgreSQL of the test, on the host.
func runDB(ctx context.Context, e *env, args []string) int {
	port := e.getenv(UpstreamPortVar)
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		e.logf("db", "%s=%q: want the port of the host's PostgreSQL (1-65535)", UpstreamPortVar, port)
		return 2
	}
	f, err := os.Open(e.routeTable)
	if err != nil {
		e.logf("db", "finding the host (the default gateway): %v", err)
		return 1
	}
	gw, err := defaultGateway(f)
	f.Close()
	if err != nil {
		e.logf("db", "finding the host in %s: %v", e.routeTable, err)
		return 1
	}
	upstream := net.JoinHostPort(gw.String(), port)
	e.logf("db", "forwarding :5432 to PostgreSQL at %s", upstream)
	return e.serve(ctx, "db", args, service{":5432", func(ctx context.Context, l net.Listener) error {
		return acceptLoop(ctx, l, proxyTo(upstream, func(format string, args ...any) { e.logf("db", format, args...) }))
	}})
}

// defaultGateway returns the gateway of the IPv4 default route in a
// /proc/net/route table: in a container on a Docker bridge network, the
// host's address on that bridge.
func defaultGateway(table io.Reader) (net.IP, error) {
	const rtfUp, rtfGateway = 0x1, 0x2
	sc := bufio.NewScanner(table)
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err := strconv.ParseUint(f[3], 16, 32)
		if err != nil || flags&(rtfUp|rtfGateway) != rtfUp|rtfGateway {
			continue
		}
		v, err := strconv.ParseUint(f[2], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("default route via %s: gateway %q is not 8 hex digits", f[0], f[2])
		}
		// The kernel prints the address in host byte order: little-endian.
		return net.IPv4(byte(v), byte(v>>8), byte(v>>16), byte(v>>24)), nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("no IPv4 default route with a gateway (is the container on a bridge network?)")
}

// proxyTo copies bytes both ways between each client and a new connection
// to upstream; when either side closes, both are closed.
func proxyTo(upstream string, logf func(format string, args ...any)) func(ctx context.Context, c net.Conn) {
	return func(ctx context.Context, c net.Conn) {
		d := net.Dialer{Timeout: 5 * time.Second}
		u, err := d.DialContext(ctx, "tcp", upstream)
		if err != nil {
			if ctx.Err() == nil {
				logf("connecting %s to the upstream %s: %v", c.RemoteAddr(), upstream, err)
			}
			return
		}
		defer u.Close()
		stop := context.AfterFunc(ctx, func() { u.Close() })
		defer stop()
		done := make(chan struct{}, 2)
		go func() { io.Copy(u, c); done <- struct{}{} }()
		go func() { io.Copy(c, u); done <- struct{}{} }()
		<-done
		u.Close()
		c.Close()
		<-done
	}
}

// runRedis serves Redis on :6379 from an in-memory miniredis.
func runRedis(ctx context.Context, e *env, args []string) int {
	return e.serve(ctx, "redis", args, service{":6379", serveRedis})
}

// serveRedis hands every connection on l to one miniredis: its Dial gives
// a server end per connection, and the bytes are copied across.
func serveRedis(ctx context.Context, l net.Listener) error {
	m := miniredis.NewMiniRedis()
	defer m.Close()
	return acceptLoop(ctx, l, func(ctx context.Context, c net.Conn) {
		s, err := m.Dial()
		if err != nil {
			return
		}
		defer s.Close()
		done := make(chan struct{}, 2)
		go func() { io.Copy(s, c); done <- struct{}{} }()
		go func() { io.Copy(c, s); done <- struct{}{} }()
		<-done
		s.Close()
		c.Close()
		<-done
	})
}

// runMailHog is an SMTP sink on :1025 and HTTP 200 on :8025.
func runMailHog(ctx context.Context, e *env, args []string) int {
	return e.serve(ctx, "mailhog", args, mailHogServices(":1025", ":8025")...)
}

func mailHogServices(smtpAddr, httpAddr string) []service {
	var received atomic.Int64
	return []service{
		{smtpAddr, func(ctx context.Context, l net.Listener) error {
			return acceptLoop(ctx, l, func(_ context.Context, c net.Conn) { smtpSession(c, &received) })
		}},
		{httpAddr, serveHTTP(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "standin mailhog: %d messages received and dropped\n", received.Load())
		}))},
	}
}

// SMTP limits of the sink.
const (
	smtpLineMax  = 4096
	smtpIdle     = 5 * time.Minute
	smtpHostname = "standin-mailhog"
)

// smtpSession speaks enough SMTP for nodemailer and similar clients:
// EHLO (PIPELINING, 8BITMIME, SMTPUTF8, AUTH PLAIN LOGIN, any credentials
// accepted, as MailHog does), MAIL, RCPT, DATA, RSET, NOOP, VRFY, QUIT; no
// STARTTLS. Each message is read to its end and dropped.
func smtpSession(c net.Conn, received *atomic.Int64) {
	r := bufio.NewReaderSize(c, smtpLineMax)
	w := bufio.NewWriter(c)
	reply := func(lines ...string) bool {
		for _, l := range lines {
			w.WriteString(l + "\r\n")
		}
		c.SetWriteDeadline(time.Now().Add(smtpIdle))
		return w.Flush() == nil
	}
	readLine := func() (string, bool) {
		c.SetReadDeadline(time.Now().Add(smtpIdle))
		line, err := r.ReadSlice('\n')
		if err != nil {
			return "", false
		}
		return strings.TrimRight(string(line), "\r\n"), true
	}
	if !reply("220 " + smtpHostname + " ESMTP stand-in for MailHog") {
		return
	}
	var from bool
	var rcpts int
	for {
		line, ok := readLine()
		if !ok {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			ok = reply("250-"+smtpHostname+" Hello "+arg, "250-PIPELINING", "250-8BITMIME", "250-SMTPUTF8", "250 AUTH PLAIN LOGIN")
		case "HELO":
			ok = reply("250 " + smtpHostname + " Hello " + arg)
		case "AUTH":
			ok = smtpAuth(arg, reply, readLine)
		case "MAIL":
			from, rcpts = true, 0
			ok = reply("250 2.1.0 Ok")
		case "RCPT":
			if !from {
				ok = reply("503 5.5.1 MAIL first")
				break
			}
			rcpts++
			ok = reply("250 2.1.5 Ok")
		case "DATA":
			if rcpts == 0 {
				ok = reply("503 5.5.1 RCPT first")
				break
			}
			if !reply("354 End data with <CR><LF>.<CR><LF>") || !readData(c, r) {
				return
			}
			received.Add(1)
			from, rcpts = false, 0
			ok = reply("250 2.0.0 Ok: queued")
		case "RSET":
			from, rcpts = false, 0
			ok = reply("250 2.0.0 Ok")
		case "NOOP":
			ok = reply("250 2.0.0 Ok")
		case "VRFY":
			ok = reply("252 2.0.0 Cannot VRFY user")
		case "QUIT":
			reply("221 2.0.0 Bye")
			return
		default:
			ok = reply("502 5.5.2 command not implemented: " + verb)
		}
		if !ok {
			return
		}
	}
}

// smtpAuth reads credentials the way the mechanism sends them and accepts
// any, as MailHog does.
func smtpAuth(arg string, reply func(...string) bool, readLine func() (string, bool)) bool {
	mech, initial, _ := strings.Cut(arg, " ")
	var prompts []string
	switch strings.ToUpper(mech) {
	case "PLAIN":
		if initial == "" {
			prompts = []string{"334 "}
		}
	case "LOGIN":
		prompts = []string{"334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"} // "Username:", "Password:"
		if initial != "" {
			prompts = prompts[1:]
		}
	default:
		return reply("504 5.5.4 unrecognised authentication type " + mech)
	}
	for _, p := range prompts {
		if !reply(p) {
			return false
		}
		if _, ok := readLine(); !ok {
			return false
		}
	}
	return reply("235 2.7.0 Authentication successful")
}

// readData reads a message up to its terminating "." line. Lines longer
// than the reader's buffer are read in pieces.
func readData(c net.Conn, r *bufio.Reader) bool {
	lineStart := true
	for {
		c.SetReadDeadline(time.Now().Add(smtpIdle))
		piece, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return false
		}
		if lineStart && (string(piece) == ".\r\n" || string(piece) == ".\n") {
			return true
		}
		lineStart = err == nil
	}
}

// runRabbitMQ closes every AMQP connection on :5672 at once and answers
// HTTP 200 on :15672 (the management port).
func runRabbitMQ(ctx context.Context, e *env, args []string) int {
	return e.serve(ctx, "rabbitmq", args, rabbitMQServices(":5672", ":15672")...)
}

func rabbitMQServices(amqpAddr, httpAddr string) []service {
	return []service{
		{amqpAddr, func(ctx context.Context, l net.Listener) error {
			return acceptLoop(ctx, l, func(context.Context, net.Conn) {})
		}},
		{httpAddr, serveHTTP(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "standin rabbitmq: no broker here; AMQP connections are closed at once")
		}))},
	}
}
