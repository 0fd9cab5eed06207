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
	"time"
)

// sslRequest is PostgreSQL's SSLRequest message (length 8, code 80877103):
// every server answers it with one byte, 'S' or 'N', before any
// authentication, so it proves a PostgreSQL is there without logging in.
var sslRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}

// runPgIsReady is pg_isready over TCP. Its exit codes are the real one's:
// 0 accepting, 1 rejecting, 2 no response, 3 no attempt (bad arguments).
func runPgIsReady(ctx context.Context, e *env, args []string) int {
	fs := flagSet{
		value: map[string]string{"h": "host", "host": "host", "p": "port", "port": "port",
			"U": "user", "username": "user", "d": "dbname", "dbname": "dbname", "t": "timeout", "timeout": "timeout"},
		boolean: map[string]string{"q": "quiet", "quiet": "quiet"},
	}
	flags, operands, err := fs.parse(args)
	if err == nil && len(operands) > 0 {
		err = fmt.Errorf("unexpected arguments %q", operands)
	}
	if err != nil {
		e.logf("pg_isready", "%v", err)
		return 3
	}
	host, port := "127.0.0.1", "5432"
	if h, ok := flags["host"]; ok {
		host = h
	}
	if p, ok := flags["port"]; ok {
		port = p
	}
	timeout, err := seconds(flags, "timeout", 3*time.Second)
	if err != nil {
		e.logf("pg_isready", "%v", err)
		return 3
	}
	addr := net.JoinHostPort(host, port)
	_, quiet := flags["quiet"]
	say := func(status string) {
		if !quiet {
			fmt.Fprintf(e.stdout, "%s - %s\n", addr, status)
		}
	}
	answer, err := postgresAnswer(ctx, addr, timeout)
	switch {
	case err != nil:
		say("no response")
		e.logf("pg_isready", "%v", err)
		return 2
	case answer == 'S' || answer == 'N':
		say("accepting connections")
		return 0
	default:
		say("rejecting connections")
		e.logf("pg_isready", "%s answered the SSLRequest with %q, want 'S' or 'N'", addr, answer)
		return 1
	}
}

// postgresAnswer sends an SSLRequest to addr and returns the first byte
// of the answer.
func postgresAnswer(ctx context.Context, addr string, timeout time.Duration) (byte, error) {
	c, err := dial(ctx, addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(sslRequest); err != nil {
		return 0, fmt.Errorf("sending an SSLRequest to %s: %w", addr, err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, fmt.Errorf("reading the answer to an SSLRequest from %s: %w", addr, err)
	}
	return b[0], nil
}

// runRedisCLI is `redis-cli [-h HOST] [-p PORT] ping`.
func runRedisCLI(ctx context.Context, e *env, args []string) int {
	fs := flagSet{value: map[string]string{"h": "host", "p": "port"}}
	flags, operands, err := fs.parse(args)
	if err == nil && (len(operands) != 1 || !strings.EqualFold(operands[0], "ping")) {
		err = fmt.Errorf("only `redis-cli [-h HOST] [-p PORT] ping` is supported, got command %q", operands)
	}
	if err != nil {
		e.logf("redis-cli", "%v", err)
		return 2
	}
	host, port := "127.0.0.1", "6379"
	if h, ok := flags["host"]; ok {
		host = h
	}
	if p, ok := flags["port"]; ok {
		port = p
	}
	addr := net.JoinHostPort(host, port)
	reply, err := redisPing(ctx, addr, 5*time.Second)
	if err != nil {
		e.logf("redis-cli", "%v", err)
		return 1
	}
	if reply != "+PONG" {
		e.logf("redis-cli", "PING to %s answered %q, want +PONG", addr, reply)
		return 1
	}
	fmt.Fprintln(e.stdout, "PONG")
	return 0
}

// redisPing sends PING over RESP and returns the reply line.
func redisPing(ctx context.Context, addr string, timeout time.Duration) (string, error) {
	c, err := dial(ctx, addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "*1\r\n$4\r\nPING\r\n"); err != nil {
		return "", fmt.Errorf("sending PING to %s: %w", addr, err)
	}
	line, err := bufio.NewReader(io.LimitReader(c, 4096)).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading the reply to PING from %s: %w", addr, err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// runCurl is curl's GET. Unlike curl it fails on every non-2xx answer, with
// -f or not, so no healthcheck can pass on an error page; and it prints
// errors even with -s, since the healthcheck log is where they are read.
func runCurl(ctx context.Context, e *env, args []string) int {
	fs := flagSet{
		value: map[string]string{"o": "output", "output": "output", "m": "max-time", "max-time": "max-time"},
		boolean: map[string]string{"f": "fail", "fail": "fail", "s": "silent", "silent": "silent",
			"S": "show-error", "show-error": "show-error", "L": "location", "location": "location"},
	}
	flags, operands, err := fs.parse(args)
	if err == nil && len(operands) != 1 {
		err = fmt.Errorf("want exactly one URL, got %q", operands)
	}
	var timeout time.Duration
	if err == nil {
		timeout, err = seconds(flags, "max-time", 30*time.Second)
	}
	if err != nil {
		e.logf("curl", "%v", err)
		return 2
	}
	_, follow := flags["location"]
	out, hasOut := flags["output"]
	return httpGet(ctx, e, "curl", operands[0], timeout, follow, func(resp *http.Response) error {
		if !hasOut || out == "-" {
			_, err := io.Copy(e.stdout, io.LimitReader(resp.Body, 1<<20))
			return err
		}
		return writeBody(out, resp.Body)
	}, curlCodes)
}

// runWget is wget's GET: --spider checks without saving, else -O FILE (or
// - for stdout) saves the body. --tries counts attempts on network errors
// (default 1, not wget's 20: a healthcheck has its own retries).
func runWget(ctx context.Context, e *env, args []string) int {
	fs := flagSet{
		value: map[string]string{"tries": "tries", "t": "tries", "T": "timeout", "timeout": "timeout",
			"O": "output", "output-document": "output"},
		boolean: map[string]string{"q": "quiet", "quiet": "quiet", "spider": "spider"},
	}
	flags, operands, err := fs.parse(args)
	if err == nil && len(operands) != 1 {
		err = fmt.Errorf("want exactly one URL, got %q", operands)
	}
	_, spider := flags["spider"]
	out, hasOut := flags["output"]
	if err == nil && !spider && !hasOut {
		err = errors.New("want --spider or -O FILE (saving under the URL's name is not supported)")
	}
	tries := 1
	if v, ok := flags["tries"]; ok && err == nil {
		tries, err = strconv.Atoi(v)
		if err == nil && tries < 1 {
			err = fmt.Errorf("--tries=%d, want at least 1", tries)
		}
	}
	var timeout time.Duration
	if err == nil {
		timeout, err = seconds(flags, "timeout", 30*time.Second)
	}
	if err != nil {
		e.logf("wget", "%v", err)
		return 2
	}
	var code int
	for attempt := 1; attempt <= tries; attempt++ {
		code = httpGet(ctx, e, "wget", operands[0], timeout, true, func(resp *http.Response) error {
			switch {
			case spider:
				return nil
			case out == "-":
				_, err := io.Copy(e.stdout, resp.Body)
				return err
			default:
				return writeBody(out, resp.Body)
			}
		}, wgetCodes)
		if code != wgetCodes.network {
			break
		}
	}
	return code
}

// exitCodes are a tool's exit codes by kind of failure.
type exitCodes struct{ usage, network, status, write int }

// The real tools' codes (curl: 7 could not connect, 22 HTTP error, 23 write
// error; wget: 4 network failure, 8 server error response, 3 file I/O).
var (
	curlCodes = exitCodes{usage: 2, network: 7, status: 22, write: 23}
	wgetCodes = exitCodes{usage: 2, network: 4, status: 8, write: 3}
)

// httpGet GETs url and hands a 2xx response to keep. It returns 0 or the
// tool's exit code for the kind of failure, after printing what was
// expected and found.
func httpGet(ctx context.Context, e *env, name, url string, timeout time.Duration, follow bool, keep func(*http.Response) error, codes exitCodes) int {
	client := &http.Client{
		Timeout: timeout,
		// No proxy from the environment: the target is the container itself.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	if !follow {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		e.logf(name, "bad URL %q: %v", url, err)
		return codes.usage
	}
	resp, err := client.Do(req)
	if err != nil {
		e.logf(name, "GET %s: %v", url, err)
		return codes.network
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e.logf(name, "GET %s answered %s, want 2xx", url, resp.Status)
		return codes.status
	}
	if err := keep(resp); err != nil {
		e.logf(name, "GET %s: saving the body: %v", url, err)
		return codes.write
	}
	return 0
}

func writeBody(path string, body io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runRabbitMQDiagnostics is `rabbitmq-diagnostics [-q] ping`: the broker
// counts as up when its AMQP port accepts. Exit codes are the real
// tool's: 64 usage, 69 unavailable.
func runRabbitMQDiagnostics(ctx context.Context, e *env, args []string) int {
	fs := flagSet{boolean: map[string]string{"q": "quiet", "quiet": "quiet"}}
	flags, operands, err := fs.parse(args)
	if err == nil && (len(operands) != 1 || operands[0] != "ping") {
		err = fmt.Errorf("only `rabbitmq-diagnostics [-q] ping` is supported, got command %q", operands)
	}
	if err != nil {
		e.logf("rabbitmq-diagnostics", "%v", err)
		return 64
	}
	c, err := dial(ctx, e.amqpAddr, 5*time.Second)
	if err != nil {
		e.logf("rabbitmq-diagnostics", "ping: %v", err)
		return 69
	}
	c.Close()
	if _, quiet := flags["quiet"]; !quiet {
		fmt.Fprintln(e.stdout, "Ping succeeded")
	}
	return 0
}

// dial connects to addr over TCP, naming addr in its error.
func dial(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	return c, nil
}

// seconds reads flag name as a whole number of seconds, def when unset.
func seconds(flags map[string]string, name string, def time.Duration) (time.Duration, error) {
	v, ok := flags[name]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive number of seconds", name, v)
	}
	return time.Duration(n * float64(time.Second)), nil
}
