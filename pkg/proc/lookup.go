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
	path := defaultPath
	for _, kv := range env { // the last PATH wins, as in the child
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &notFoundError{name: name, path: path}
}

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
