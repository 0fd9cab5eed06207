package proc

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// lookPath finds name in the PATH of env (defaultPath when env has none).
// Relative and empty PATH entries are skipped: the current directory is
// never searched.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := pathOf(env)
	for _, dir := range pathDirs(path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &notFoundError{name: name, path: path}
}

// pathOf is the PATH of env: the last one wins, as in the child;
// defaultPath when env has none.
func pathOf(env []string) string {
	path := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	return path
}

// pathDirs are the entries of path that lookPath searches: the absolute
// ones, in order.
func pathDirs(path string) []string {
	var dirs []string
	for _, dir := range filepath.SplitList(path) {
		if filepath.IsAbs(dir) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// PathDirs returns the directories LookPath and Run search, in order, for
// a name without a slash: the absolute entries of the last PATH in env,
// or of the default PATH when env has none. For callers that must
// predict which file Run would start without starting it (pkg/preflight).
func PathDirs(env []string) []string { return pathDirs(pathOf(env)) }

// LookPath finds name as Run would: in the PATH of env, never in the
// current directory. For libraries that start a program themselves
// (terraform-exec) and need its absolute path.
func LookPath(name string, env []string) (string, error) { return lookPath(name, env) }

// UserInfo is a resolved user account.
type UserInfo struct {
	Uid, Gid uint32
	Groups   []uint32 // all group ids, the primary one included
	Home     string
	Name     string
}

// LookupUser resolves a user name or numeric uid to its ids, groups and
// home directory, for Cmd.User and for callers writing HOME.
func LookupUser(name string) (UserInfo, error) {
	if name == "" {
		return UserInfo{}, errors.New("looking up user: empty name")
	}
	var (
		u   *user.User
		err error
	)
	if _, perr := strconv.ParseUint(name, 10, 32); perr == nil {
		u, err = user.LookupId(name)
	} else {
		u, err = user.Lookup(name)
	}
	if err != nil {
		return UserInfo{}, fmt.Errorf("looking up user %q: %w", name, err)
	}
	uid, err := parseID(u.Uid)
	if err != nil {
		return UserInfo{}, fmt.Errorf("user %q: uid: %w", name, err)
	}
	gid, err := parseID(u.Gid)
	if err != nil {
		return UserInfo{}, fmt.Errorf("user %q: gid: %w", name, err)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return UserInfo{}, fmt.Errorf("user %q: groups: %w", name, err)
	}
	info := UserInfo{Uid: uid, Gid: gid, Home: u.HomeDir, Name: u.Username}
	seen := map[uint32]bool{}
	for _, s := range append([]string{u.Gid}, gids...) {
		g, err := parseID(s)
		if err != nil {
			return UserInfo{}, fmt.Errorf("user %q: group: %w", name, err)
		}
		if !seen[g] {
			seen[g] = true
			info.Groups = append(info.Groups, g)
		}
	}
	return info, nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// UserEnv returns the environment of a child that runs as user (see
// Cmd.User): env without HOME, USER, LOGNAME and CI, then those set from
// the account, and CI=true so package managers never prompt. When we are
// root the account must exist and not have uid 0: what names the step
// refused ("install scripts", "build hooks"). When we are not root, the
// child runs as we do and gets our own account's values.
func UserEnv(env []string, user, what string) ([]string, error) {
	name := user
	if os.Geteuid() == 0 {
		if user == "" || user == "root" || user == "0" {
			return nil, fmt.Errorf("%s never run as root; set spec.user (found user %q)", what, user)
		}
	} else {
		name = strconv.Itoa(os.Geteuid())
	}
	u, err := LookupUser(name)
	if err != nil {
		return nil, err
	}
	if u.Uid == 0 {
		return nil, fmt.Errorf("%s never run as root; set spec.user (user %q has uid 0)", what, user)
	}
	out := make([]string, 0, len(env)+4)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "USER", "LOGNAME", "CI":
			continue
		}
		out = append(out, kv)
	}
	return append(out, "HOME="+u.Home, "USER="+u.Name, "LOGNAME="+u.Name, "CI=true"), nil
}

// Who names the account a child with this Cmd.User runs as, for logs.
func Who(user string) string {
	if os.Geteuid() != 0 || user == "" {
		return "uid " + strconv.Itoa(os.Geteuid())
	}
	return user
}
