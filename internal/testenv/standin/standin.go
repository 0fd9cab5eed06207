package standin

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// UpstreamPortVar names the port of the host's PostgreSQL that `standin db`
// forwards to; the db image sets it (ENV in its Dockerfile).
const UpstreamPortVar = "STANDIN_UPSTREAM_PORT"

// applet is one program of the binary; it returns the exit code.
type applet func(ctx context.Context, e *env, args []string) int

// applets maps the names the binary runs under to their code. It is filled
// in init because sh refers back to it.
var applets map[string]applet

func init() {
	applets = map[string]applet{
		"sh":                   runSh,
		"pg_isready":           runPgIsReady,
		"redis-cli":            runRedisCLI,
		"curl":                 runCurl,
		"wget":                 runWget,
		"rabbitmq-diagnostics": runRabbitMQDiagnostics,
		"db":                   runDB,
		"redis":                runRedis,
		"mailhog":              runMailHog,
		"rabbitmq":             runRabbitMQ,
	}
}

// Applets returns the names Run answers to, sorted.
func Applets() []string {
	names := make([]string, 0, len(applets))
	for n := range applets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// env is what applets read and write instead of the process's globals, so
// tests can run them in-process.
type env struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	// routeTable is the path of the kernel's IPv4 routing table.
	routeTable string
	// amqpAddr is where rabbitmq-diagnostics looks for the broker: inside
	// the container, the service itself.
	amqpAddr string
}

// logf prints a line on stderr (errors, and a service's progress),
// prefixed with the applet's name.
func (e *env) logf(name, format string, args ...any) {
	fmt.Fprintf(e.stderr, "standin %s: %s\n", name, fmt.Sprintf(format, args...))
}

// Run runs the applet named by args[0]'s base name, or by args[1] when the
// binary runs as "standin", and returns its exit code. Services run until
// ctx ends. getenv reads the environment (os.Getenv in the binary).
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	e := &env{getenv: getenv, stdout: &lockedWriter{w: stdout}, stderr: &lockedWriter{w: stderr}, routeTable: "/proc/net/route", amqpAddr: "127.0.0.1:5672"}
	return e.run(ctx, args)
}

func (e *env) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "standin: no program name (empty argv)")
		return 2
	}
	name := filepath.Base(args[0])
	if name == "standin" {
		if len(args) < 2 {
			fmt.Fprintf(e.stderr, "standin: which applet? want one of %s\n", strings.Join(Applets(), ", "))
			return 2
		}
		args = args[1:]
		name = args[0]
	}
	a, ok := applets[name]
	if !ok {
		fmt.Fprintf(e.stderr, "standin: no applet %q; want one of %s\n", name, strings.Join(Applets(), ", "))
		return 127
	}
	return a(ctx, e, args[1:])
}

// shellSyntax are the characters a real shell would treat specially: sh
// refuses a command that has any, rather than run it differently.
const shellSyntax = "|&;<>()$`\\\"'*?[]#~{}\n"

// runSh is `sh -c COMMAND`, as Docker runs CMD-SHELL healthchecks.
func runSh(ctx context.Context, e *env, args []string) int {
	if len(args) < 2 || args[0] != "-c" {
		e.logf("sh", "only `sh -c COMMAND` is supported, got sh %q", args)
		return 2
	}
	cmd := args[1]
	if i := strings.IndexAny(cmd, shellSyntax); i >= 0 {
		e.logf("sh", "command %q uses shell syntax (%q); only a plain command with space-separated arguments is supported", cmd, cmd[i])
		return 2
	}
	fields := strings.Fields(cmd)
	if len(fields) == 0 {
		return 0
	}
	if _, ok := applets[filepath.Base(fields[0])]; !ok {
		e.logf("sh", "%s: command not found (this stand-in runs only %s)", fields[0], strings.Join(Applets(), ", "))
		return 127
	}
	return e.run(ctx, fields)
}

// flagSet describes an applet's flags: names (without dashes) mapped to a
// canonical name, split by whether they take a value.
type flagSet struct {
	value   map[string]string
	boolean map[string]string
}

// parse accepts the flag shapes healthchecks use: -x, -x VALUE, -xVALUE,
// bundled booleans (-fsS), --long, --long=VALUE, --long VALUE, and "--".
// It returns the flags by canonical name ("" for booleans) and the
// operands, or an error naming an unknown flag or a missing value.
func (fs flagSet) parse(args []string) (map[string]string, []string, error) {
	flags := map[string]string{}
	var operands []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return flags, append(operands, args[i+1:]...), nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			if c, ok := fs.boolean[name]; ok && !hasVal {
				flags[c] = ""
				continue
			}
			c, ok := fs.value[name]
			if !ok {
				return nil, nil, fmt.Errorf("unknown flag --%s", name)
			}
			if !hasVal {
				if i+1 >= len(args) {
					return nil, nil, fmt.Errorf("flag --%s needs a value", name)
				}
				i++
				val = args[i]
			}
			flags[c] = val
		case strings.HasPrefix(a, "-") && len(a) > 1:
			for j := 1; j < len(a); j++ {
				name := a[j : j+1]
				if c, ok := fs.boolean[name]; ok {
					flags[c] = ""
					continue
				}
				c, ok := fs.value[name]
				if !ok {
					return nil, nil, fmt.Errorf("unknown flag -%s", name)
				}
				val := a[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return nil, nil, fmt.Errorf("flag -%s needs a value", name)
					}
					i++
					val = args[i]
				}
				flags[c] = val
				break
			}
		default:
			operands = append(operands, a)
		}
	}
	return flags, operands, nil
}

// lockedWriter serialises writes from the goroutines of a service.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
