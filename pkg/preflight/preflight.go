package preflight

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/proc"
)

// Problem is one thing the host lacks to run the spec.
type Problem struct {
	// Check is what was checked: "spec.user", "tool pnpm (for
	// spec.install, run as cohuron)".
	Check string
	// Expected is what the check wants: "an account cohuron on this host".
	Expected string
	// Found is what is there instead, down to the file or directory that
	// blocks: "/root/.local/share/pnpm/pnpm is not executable by cohuron:
	// /root is mode 0700 owned by root".
	Found string
	// Fix is what an operator does about it, with the command when there
	// is one.
	Fix string
}

// String is the problem on one line: "CHECK: expected EXPECTED; found
// FOUND; fix: FIX".
func (p Problem) String() string {
	return fmt.Sprintf("%s: expected %s; found %s; fix: %s", p.Check, p.Expected, p.Found, p.Fix)
}

// Pass is a check that passed and what it found, e.g. "tool pnpm (for
// spec.install, run as cohuron)" found "/usr/local/bin/pnpm →
// /usr/local/lib/node_modules/pnpm/bin/pnpm.cjs (#!/usr/bin/env node)".
type Pass struct {
	Check string
	Found string
}

// String is the pass on one line: "CHECK: ok: FOUND".
func (p Pass) String() string { return p.Check + ": ok: " + p.Found }

// Result is what Check found: every check, passed or not, in the order
// made (spec.user, the tools run as spec.user, the tools run as the
// agent).
type Result struct {
	Passed   []Pass
	Problems []Problem
}

// OK reports whether no check found a problem.
func (r Result) OK() bool { return len(r.Problems) == 0 }

// Err is nil when r is OK, otherwise an *Error with r's problems.
func (r Result) Err() error {
	if r.OK() {
		return nil
	}
	return &Error{Problems: r.Problems}
}

// Error is a host that cannot run a spec. It needs a human: retrying
// does not help until the host is fixed.
type Error struct {
	Problems []Problem
}

// Error lists the problems, one line each.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	noun := "problem"
	if len(lines) != 1 {
		noun = "problems"
	}
	return fmt.Sprintf("host preflight: %d %s:\n%s", len(lines), noun, strings.Join(lines, "\n"))
}

// Checker checks hosts. The zero value checks this host as the current
// process; tests replace the fields.
type Checker struct {
	// FS reads file metadata; nil is the host's (HostFS).
	FS FS
	// LookupUser resolves spec.user; nil is proc.LookupUser. An error
	// wrapping user.UnknownUserError (or UnknownUserIdError) means the
	// account does not exist.
	LookupUser func(name string) (proc.UserInfo, error)
	// Agent is the account the agent runs as; nil is the current
	// process: its effective uid, its groups, and the home directory of
	// its passwd entry (where the docker CLI looks for plugins when the
	// environment sets neither DOCKER_CONFIG nor HOME).
	Agent *proc.UserInfo
	// UserName and GroupName name a file's owner and group in messages;
	// nil looks them up in the account databases, falling back to the
	// number.
	UserName  func(uid uint32) string
	GroupName func(gid uint32) string
}

// Check checks spec on this host as the current process, with env (the
// agent's tool environment: its PATH decides which programs are found).
func Check(spec *manifest.Spec, env []string) Result {
	return (&Checker{}).Check(spec, env)
}

// Check checks that spec.user exists and that every program a step of
// spec starts is found on env's PATH, as pkg/proc would find it, and is
// executable by whoever runs it:
//
//   - as spec.user (as the agent itself when the agent is not root;
//     pkg/proc ignores the user then): the command[0] of spec.install,
//     of each spec.build hook and of each process when it is node or
//     pnpm (pnpm also needs node) or an absolute path; install and build
//     commands also by any other name without a slash, since pkg/proc
//     looks those up on the PATH too;
//   - as the agent: docker and the compose v2 plugin or docker-compose
//     for spec.compose, pg_dump and psql for spec.schema, and the
//     command[0] of exec health checks.
//
// A command[0] with a slash that is not absolute is in the release and
// not checked. When spec.user is missing its tools are still checked, as
// for a new account in no group (only "other" bits apply), so one run
// reports everything. Check never runs a program and changes nothing.
func (c *Checker) Check(spec *manifest.Spec, env []string) Result {
	if spec == nil {
		spec = &manifest.Spec{}
	}
	r := &run{c: c, fsys: c.FS, env: env}
	if r.fsys == nil {
		r.fsys = HostFS{}
	}
	r.agent = c.agent()
	r.app = r.appAccount(spec)
	r.needs = needs(spec)
	for _, n := range r.needs {
		r.tool(n, r.accountOf(n))
	}
	return r.res
}

func (r *run) accountOf(n need) account {
	if n.asApp {
		return r.app
	}
	return r.agent
}

// run is one Check.
type run struct {
	c     *Checker
	fsys  FS
	env   []string
	agent account // runs compose, the schema tools and health checks
	app   account // runs install scripts, build hooks and processes
	needs []need
	res   Result
}

func (r *run) pass(check, found string) {
	r.res.Passed = append(r.res.Passed, Pass{Check: check, Found: found})
}

func (r *run) problem(p Problem) { r.res.Problems = append(r.res.Problems, p) }

func (c *Checker) lookupUser(name string) (proc.UserInfo, error) {
	if c.LookupUser != nil {
		return c.LookupUser(name)
	}
	return proc.LookupUser(name)
}

// agent is the account of the agent.
func (c *Checker) agent() account {
	if c.Agent != nil {
		u := *c.Agent
		name := u.Name
		if name == "" {
			name = "uid " + strconv.FormatUint(uint64(u.Uid), 10)
		}
		return account{name: name, uid: u.Uid, groups: withGroup(u.Groups, u.Gid), home: u.Home, root: u.Uid == 0}
	}
	uid := uint32(os.Geteuid())
	a := account{name: "uid " + strconv.FormatUint(uint64(uid), 10), uid: uid, root: uid == 0}
	if u, err := c.lookupUser(strconv.FormatUint(uint64(uid), 10)); err == nil {
		a.name, a.home = u.Name, u.Home
	}
	// The process's own groups, not the passwd entry's: they are what the
	// kernel checks.
	a.groups = []uint32{uint32(os.Getegid())}
	if gs, err := os.Getgroups(); err == nil {
		for _, g := range gs {
			a.groups = withGroup(a.groups, uint32(g))
		}
	}
	return a
}

func withGroup(groups []uint32, g uint32) []uint32 {
	for _, have := range groups {
		if have == g {
			return groups
		}
	}
	return append(groups, g)
}

// appAccount checks spec.user and returns whom install scripts, build
// hooks and processes run as: spec.user when the agent is root and it is
// set, root when the agent is root and it is not (only processes may
// run so: the manifest requires spec.user with install or build), the
// agent itself otherwise.
func (r *run) appAccount(spec *manifest.Spec) account {
	if !r.agent.root {
		if spec.User != "" {
			r.pass("spec.user", fmt.Sprintf("not used: the agent runs as %s, not root, so every step runs as %s", r.agent.name, r.agent.name))
		}
		return r.agent
	}
	if spec.User == "" {
		return r.agent
	}
	name := spec.User
	u, err := r.c.lookupUser(name)
	var unknown user.UnknownUserError
	var unknownID user.UnknownUserIdError
	switch {
	case errors.As(err, &unknown) || errors.As(err, &unknownID):
		r.problem(Problem{
			Check:    "spec.user",
			Expected: "an account " + name + " on this host",
			Found:    "no such user",
			Fix:      "useradd --system --create-home --shell /usr/sbin/nologin " + name,
		})
		return account{name: name, missing: true}
	case err != nil:
		r.problem(Problem{
			Check:    "spec.user",
			Expected: "an account " + name + " on this host",
			Found:    err.Error(),
			Fix:      "check the account databases (getent passwd " + name + "; /etc/nsswitch.conf)",
		})
		return account{name: name, missing: true}
	case u.Uid == 0:
		r.problem(Problem{
			Check:    "spec.user",
			Expected: "an unprivileged account (install scripts, build hooks and processes never run as root)",
			Found:    name + " has uid 0",
			Fix:      "set spec.user to an account with a uid of its own, e.g. one made by useradd --system --create-home --shell /usr/sbin/nologin cohuron",
		})
		return account{name: name, root: true}
	}
	r.pass("spec.user", fmt.Sprintf("%s (uid %d, gid %d)", u.Name, u.Uid, u.Gid))
	return account{name: name, uid: u.Uid, groups: withGroup(u.Groups, u.Gid), home: u.Home}
}

// owner names a file's owner for a message: "root", or "root (group
// staff)" when the group's name is not the owner's.
func (r *run) owner(info Info) string {
	un, gn := r.c.UserName, r.c.GroupName
	if un == nil {
		un = lookupUserName
	}
	if gn == nil {
		gn = lookupGroupName
	}
	u, g := un(info.Uid), gn(info.Gid)
	if g == u {
		return u
	}
	return u + " (group " + g + ")"
}

func lookupUserName(uid uint32) string {
	s := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(s); err == nil {
		return u.Username
	}
	return "uid " + s
}

func lookupGroupName(gid uint32) string {
	s := strconv.FormatUint(uint64(gid), 10)
	if g, err := user.LookupGroupId(s); err == nil {
		return g.Name
	}
	return "gid " + s
}

// mode is "mode 0700 owned by root".
func (r *run) mode(info Info) string {
	return fmt.Sprintf("mode %04o owned by %s", info.Mode.Perm(), r.owner(info))
}
