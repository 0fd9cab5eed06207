package preflight

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/cohuron/deploy/pkg/proc"
)

// maxInterpreters is how deep the kernel follows #! interpreters that are
// scripts themselves.
const maxInterpreters = 4

// headBytes is how much of a program is read for its #! line.
const headBytes = 256

// installHints say where the usual package puts a tool.
var installHints = map[string]string{
	"pnpm":           "npm install -g pnpm@9 puts it in /usr/local/bin",
	"node":           "apt-get install nodejs (Node.js 20) puts it in /usr/bin",
	"docker":         "apt-get install docker.io puts it in /usr/bin",
	"docker-compose": "apt-get install docker-compose puts it in /usr/bin",
	"pg_dump":        "apt-get install postgresql-client puts it in /usr/bin",
	"psql":           "apt-get install postgresql-client puts it in /usr/bin",
}

// tool checks one need as account a.
func (r *run) tool(n need, a account) {
	check := fmt.Sprintf("tool %s (for %s, run as %s)", n.tool, strings.Join(n.steps, ", "), a.name)
	switch {
	case n.tool == composeTool:
		r.compose(check, a)
	case filepath.IsAbs(n.tool):
		r.absolute(check, n, a)
	default:
		r.onPath(check, n.tool, a)
	}
}

// onPath checks that the file pkg/proc picks for name from the PATH is
// executable by a.
func (r *run) onPath(check, name string, a account) {
	expected := name + " on the agent's PATH, executable by " + a.name
	w, notes, ok := r.lookPath(name)
	if !ok {
		r.problem(Problem{Check: check, Expected: expected,
			Found: r.notFound(name, notes),
			Fix:   installFix(name, "", "or add its directory to the agent's PATH")})
		return
	}
	desc, denial := r.exec(w, a, 0)
	if denial == "" {
		r.pass(check, desc)
		return
	}
	who := a.name
	if a.root {
		who = "" // root reaches everything: the file itself is wrong
	}
	fix := installFix(name, who, "or put such a "+name+" first on the agent's PATH")
	if alt, ok := r.usable(name, a, filepath.Dir(w.name), 0); ok {
		fix = fmt.Sprintf("put %s before %s on the agent's PATH (%s is executable by %s), or %s",
			filepath.Dir(alt.name), filepath.Dir(w.name), alt.show(), a.name, fix)
	}
	r.problem(Problem{Check: check, Expected: expected, Found: denial, Fix: fix})
}

// notFound is the Found of a tool that is not on the PATH.
func (r *run) notFound(name string, notes []string) string {
	s := "no executable " + name + " in PATH " + strings.Join(proc.PathDirs(r.env), ":")
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, "; ") + ")"
	}
	return s
}

// installFix is "install NAME [where WHO can reach it] (HINT) OTHERWISE".
func installFix(name, who, otherwise string) string {
	s := "install " + name
	if who != "" {
		s += " where " + who + " can reach it"
	}
	if h := installHints[name]; h != "" {
		s += " (" + h + ")"
	}
	return s + " " + otherwise
}

// absolute checks a command[0] that is an absolute path.
func (r *run) absolute(check string, n need, a account) {
	expected := n.tool + " executable by " + a.name
	change := "or change command[0] of " + strings.Join(n.steps, ", ")
	w, err := resolve(r.fsys, n.tool)
	if err != nil {
		r.problem(Problem{Check: check, Expected: expected, Found: err.Error(),
			Fix: "install the program at " + n.tool + " " + change})
		return
	}
	desc, denial := r.exec(w, a, 0)
	if denial != "" {
		r.problem(Problem{Check: check, Expected: expected, Found: denial,
			Fix: "move the program where " + a.name + " can reach it (every directory searchable, the file executable by " + a.name + ") " + change})
		return
	}
	r.pass(check, desc)
}

// candidate resolves p, a file named in a directory dir: exists is false
// when nothing by that name is there (then pkg/proc and the docker CLI
// move on silently).
func (r *run) candidate(p string) (w walk, exists bool, err error) {
	dw, err := resolve(r.fsys, filepath.Dir(p))
	if err != nil || !dw.info.Mode.IsDir() {
		return walk{}, false, nil
	}
	if _, err := r.fsys.Lstat(filepath.Join(dw.final, filepath.Base(p))); err != nil {
		return walk{}, false, nil
	}
	w, err = resolve(r.fsys, p)
	return w, true, err
}

// lookPath finds name as pkg/proc does, as the agent: the first file in
// a PATH directory that the agent can stat, regular, with any execute
// bit. notes say why files by that name earlier on the PATH were passed
// over.
func (r *run) lookPath(name string) (walk, []string, bool) {
	var notes []string
	for _, dir := range proc.PathDirs(r.env) {
		p := filepath.Join(dir, name)
		w, exists, err := r.candidate(p)
		switch {
		case !exists:
			continue
		case err != nil:
			note := err.Error()
			if !strings.HasPrefix(note, p+" ") {
				note = p + ": " + note
			}
			notes = append(notes, note)
			continue
		}
		if d, blocked := r.agent.blocked(w); blocked {
			notes = append(notes, fmt.Sprintf("%s: %s is %s, closed to the agent (%s)", w.show(), d, r.mode(w.infos[d]), r.agent.name))
			continue
		}
		if !w.info.Mode.IsRegular() {
			notes = append(notes, w.show()+" is "+typeName(w.info.Mode))
			continue
		}
		if w.info.Mode.Perm()&0o111 == 0 {
			notes = append(notes, w.show()+" has no execute bit ("+r.mode(w.info)+")")
			continue
		}
		return w, notes, true
	}
	return walk{}, notes, false
}

// usable finds the first name on the PATH, after directory skip when
// skip is set, that a can execute: what a fix can point at, and what
// execvp (env in a #! line) finds as a. depth is that of exec.
func (r *run) usable(name string, a account, skip string, depth int) (walk, bool) {
	after := skip == ""
	for _, dir := range proc.PathDirs(r.env) {
		if !after {
			after = filepath.Clean(dir) == skip
			continue
		}
		w, exists, err := r.candidate(filepath.Join(dir, name))
		if !exists || err != nil {
			continue
		}
		if _, denial := r.exec(w, a, depth); denial == "" {
			return w, true
		}
	}
	return walk{}, false
}

// exec decides whether a may execute the file w resolves to: every
// directory searched on the way allows a to search, the file is regular
// with a's execute bit, and a #! script is readable by a with an
// interpreter a may execute. It returns what it found (for a Pass) or
// why a may not (for a Problem).
func (r *run) exec(w walk, a account, depth int) (desc, denial string) {
	if d, blocked := a.blocked(w); blocked {
		return "", fmt.Sprintf("%s is not executable by %s: %s is %s", w.show(), a.name, d, r.mode(w.infos[d]))
	}
	if !w.info.Mode.IsRegular() {
		return "", w.show() + " is " + typeName(w.info.Mode) + ", not a program"
	}
	if !a.allows(w.info, permSearch) {
		return "", fmt.Sprintf("%s is not executable by %s: %s is %s", w.show(), a.name, w.final, r.mode(w.info))
	}
	head, err := r.fsys.ReadHead(w.final, headBytes)
	if err != nil || !bytes.HasPrefix(head, []byte("#!")) {
		// A binary, or a file the agent cannot read: the kernel decides
		// from the execute bit alone.
		return w.show(), ""
	}
	line, _, _ := bytes.Cut(head[2:], []byte("\n"))
	shebang := "#!" + strings.TrimSpace(string(line))
	desc = w.show() + " (" + shebang + ")"
	if !a.allows(w.info, permRead) {
		return "", fmt.Sprintf("%s is a script (%s) that %s cannot read: %s is %s", w.show(), shebang, a.name, w.final, r.mode(w.info))
	}
	interp, arg := splitShebang(string(line))
	switch {
	case interp == "":
		return "", w.show() + " has an empty #! line"
	case !filepath.IsAbs(interp):
		return desc, "" // relative to the working directory: not ours to check
	case depth+1 >= maxInterpreters:
		return "", fmt.Sprintf("%s (%s): more than %d levels of #! interpreters", w.show(), shebang, maxInterpreters)
	}
	iw, err := resolve(r.fsys, interp)
	if err != nil {
		return "", fmt.Sprintf("%s (%s): interpreter %s", w.show(), shebang, err)
	}
	if _, d := r.exec(iw, a, depth+1); d != "" {
		return "", fmt.Sprintf("%s (%s): interpreter %s", w.show(), shebang, d)
	}
	if filepath.Base(iw.final) != "env" {
		return desc, ""
	}
	prog := envProgram(arg)
	switch {
	case prog == "" || r.checked(a, prog):
		return desc, ""
	case filepath.IsAbs(prog):
		pw, err := resolve(r.fsys, prog)
		if err != nil {
			return "", fmt.Sprintf("%s (%s): %s", w.show(), shebang, err)
		}
		if _, d := r.exec(pw, a, depth+1); d != "" {
			return "", fmt.Sprintf("%s (%s): %s", w.show(), shebang, d)
		}
		return desc, ""
	case strings.Contains(prog, "/"):
		return desc, ""
	}
	if _, ok := r.usable(prog, a, "", depth+1); !ok {
		return "", fmt.Sprintf("%s (%s): no %s on the PATH is executable by %s", w.show(), shebang, prog, a.name)
	}
	return desc, ""
}

// checked reports whether tool is checked on its own for a, so a #! line
// naming it need not check it again.
func (r *run) checked(a account, tool string) bool {
	for _, n := range r.needs {
		if n.tool == tool && r.accountOf(n).name == a.name {
			return true
		}
	}
	return false
}

// splitShebang splits a #! line as the kernel does: the interpreter up
// to the first blank, then the rest as one argument.
func splitShebang(line string) (interp, arg string) {
	line = strings.TrimSpace(line)
	i := strings.IndexAny(line, " \t")
	if i < 0 {
		return line, ""
	}
	return line[:i], strings.TrimSpace(line[i+1:])
}

// envProgram is the program env runs in "#!/usr/bin/env [-S] [opts]
// [VAR=val] prog …".
func envProgram(arg string) string {
	for _, f := range strings.Fields(arg) {
		if strings.HasPrefix(f, "-") || strings.Contains(f, "=") {
			continue
		}
		return f
	}
	return ""
}

// typeName names a file type for a message.
func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file (" + m.Type().String() + ")"
}

// pluginDirs are where the docker CLI looks for docker-compose, in its
// order: DOCKER_CONFIG/cli-plugins (HOME/.docker/cli-plugins, HOME being
// the env's or the agent's home), then the system directories.
func (r *run) pluginDirs(a account) []string {
	config, home := "", a.home
	for _, kv := range r.env { // the last wins, as in the child
		if v, ok := strings.CutPrefix(kv, "DOCKER_CONFIG="); ok {
			config = v
		} else if v, ok := strings.CutPrefix(kv, "HOME="); ok {
			home = v
		}
	}
	if config == "" && home != "" {
		config = filepath.Join(home, ".docker")
	}
	var dirs []string
	if filepath.IsAbs(config) {
		dirs = append(dirs, filepath.Join(config, "cli-plugins"))
	}
	return append(dirs, "/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
		"/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")
}

// compose checks for Docker Compose as pkg/compose.Detect finds it: the
// docker CLI's compose plugin (the first docker-compose in a plugin
// directory; the CLI does not try the others when it is broken), else
// docker-compose on the PATH.
func (r *run) compose(check string, a account) {
	expected := "the docker compose v2 plugin (docker-compose in a docker CLI plugin directory) or docker-compose on the agent's PATH, executable by " + a.name
	dirs := r.pluginDirs(a)
	var found []string
	plugin := false
	for _, dir := range dirs {
		w, exists, err := r.candidate(filepath.Join(dir, "docker-compose"))
		if !exists || errors.Is(err, fs.ErrNotExist) {
			continue // the CLI skips a missing file and a dangling link alike
		}
		plugin = true
		if err != nil {
			found = append(found, "plugin "+err.Error())
			break
		}
		desc, denial := r.exec(w, a, 0)
		if denial == "" {
			r.pass(check, "plugin "+desc)
			return
		}
		found = append(found, "plugin "+denial)
		break
	}
	if !plugin {
		found = append(found, "no docker-compose plugin in "+strings.Join(dirs, ", "))
	}
	if w, notes, ok := r.lookPath("docker-compose"); ok {
		desc, denial := r.exec(w, a, 0)
		if denial == "" {
			r.pass(check, desc)
			return
		}
		found = append(found, denial)
	} else {
		found = append(found, r.notFound("docker-compose", notes))
	}
	r.problem(Problem{Check: check, Expected: expected, Found: strings.Join(found, "; "),
		Fix: "install the compose v2 plugin (apt-get install docker-compose-plugin, from Docker's apt repository, puts it in /usr/libexec/docker/cli-plugins) or docker-compose (" + installHints["docker-compose"] + ")"})
}
