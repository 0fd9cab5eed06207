package deps

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/cohuron/deploy/pkg/proc"
	"github.com/cohuron/deploy/pkg/tree"
)

// Marker is the install marker, relative to the install directory.
const Marker = "node_modules/.cohuron-deps.json"

// modulesYAML is what pnpm writes when it finished linking node_modules.
const modulesYAML = "node_modules/.modules.yaml"

// DefaultInstallTimeout bounds an install when the caller gives none.
const DefaultInstallTimeout = 15 * time.Minute

// versionTimeout bounds `node --version` and `pnpm --version`.
const versionTimeout = time.Minute

// Tools are the versions of the tools that install, as they print them
// (trimmed): "v20.20.2", "9.15.9".
type Tools struct {
	Node, Pnpm string
}

var versionRE = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+[-+.0-9A-Za-z]*$`)

// Versions runs `node --version` and `pnpm --version` as user with env
// (PATH decides which node and pnpm), from /. Both versions are part of
// the dependency key. When we are root, user must be an unprivileged
// account.
func Versions(ctx context.Context, env []string, user string) (Tools, error) {
	cenv, err := proc.UserEnv(env, user, "install scripts")
	if err != nil {
		return Tools{}, fmt.Errorf("tool versions: %w", err)
	}
	var t Tools
	for _, tool := range []struct {
		name string
		dst  *string
	}{{"node", &t.Node}, {"pnpm", &t.Pnpm}} {
		res, err := proc.Run(ctx, proc.Cmd{
			Name: tool.name, Args: []string{"--version"}, Dir: "/", Env: cenv,
			User: user, Timeout: versionTimeout, MaxOutput: 8 << 10,
		})
		if err != nil {
			return Tools{}, fmt.Errorf("tool versions: %w", err)
		}
		v, err := parseVersion(res.Output)
		if err != nil {
			return Tools{}, fmt.Errorf("tool versions: %s --version: %w", tool.name, err)
		}
		*tool.dst = v
	}
	return t, nil
}

// Fingerprint identifies the node and pnpm that env's PATH finds, by the
// path, size and modification time of the files they resolve to, so the
// versions can be cached without starting either: an upgrade replaces
// the files and changes the fingerprint.
func Fingerprint(env []string) (string, error) {
	path := ""
	for _, kv := range env { // the last PATH wins, as in the child
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	var parts []string
	for _, name := range []string{"node", "pnpm"} {
		found := ""
		for _, dir := range filepath.SplitList(path) {
			if !filepath.IsAbs(dir) {
				continue
			}
			if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
				found = filepath.Join(dir, name)
				break
			}
		}
		if found == "" {
			return "", fmt.Errorf("%s not found in PATH %s", name, path)
		}
		real, err := filepath.EvalSymlinks(found)
		if err != nil {
			return "", err
		}
		fi, err := os.Stat(real)
		if err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%s=%s:%d:%d", name, real, fi.Size(), fi.ModTime().UnixNano()))
	}
	return strings.Join(parts, " "), nil
}

// parseVersion takes the last line that is a version: a notice printed
// before it does not change the key.
func parseVersion(out []byte) (string, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); versionRE.MatchString(l) {
			return l, nil
		}
	}
	return "", fmt.Errorf("expected a version like v20.1.0 or 9.15.9, found %q", bytes.TrimSpace(out))
}

// Key is the dependency key of a release: "sha256:<hex>" over the
// publisher's digest of the dependency inputs (lockfile, workspace file,
// every package.json) and the tool versions.
func Key(inputsDigest string, t Tools) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "cohuron-deps v1\ninputs %s\nnode %s\npnpm %s\n", inputsDigest, t.Node, t.Pnpm))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// marker is the content of Marker.
type marker struct {
	Key string `json:"key"`
	// Dirs are the node_modules directories of the install, relative to
	// the install directory, "node_modules" first.
	Dirs        []string  `json:"dirs"`
	InstalledAt time.Time `json:"installedAt"`
}

// Check reports nil when dir holds an intact install for key: the marker
// exists and names key, pnpm's node_modules/.modules.yaml exists, and
// every directory the marker lists is a directory (reached through no
// symlink). Otherwise the error says what is missing or different.
func Check(dir, key string) error {
	if err := check(dir, key); err != nil {
		return fmt.Errorf("checking dependencies in %s: %w", dir, err)
	}
	return nil
}

func check(dir, key string) error {
	if err := realDir(dir, "node_modules"); err != nil {
		return err
	}
	m, err := readMarker(dir)
	if err != nil {
		return err
	}
	if m.Key != key {
		return fmt.Errorf("installed for key %s, not %s", m.Key, key)
	}
	if st, err := os.Lstat(filepath.Join(dir, modulesYAML)); err != nil {
		return fmt.Errorf("%s missing: pnpm did not finish linking", modulesYAML)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: expected a regular file, found mode %v", modulesYAML, st.Mode())
	}
	for _, d := range m.Dirs {
		if err := realDir(dir, d); err != nil {
			return err
		}
	}
	return nil
}

// readMarker reads and validates dir's marker. The file lives in a tree
// the app user writes, so it is opened without following a symlink and
// its directory list is checked before anything uses it.
func readMarker(dir string) (marker, error) {
	var m marker
	f, err := os.OpenFile(filepath.Join(dir, Marker), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("%s missing: node_modules was not installed by the agent, or the install did not finish", Marker)
	}
	if err != nil {
		return m, fmt.Errorf("reading %s: %w", Marker, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return m, fmt.Errorf("%s: expected a regular file", Marker)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return m, fmt.Errorf("reading %s: %w", Marker, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: unreadable: %w", Marker, err)
	}
	if !strings.HasPrefix(m.Key, "sha256:") {
		return m, fmt.Errorf("%s: expected a key sha256:<hex>, found %q", Marker, m.Key)
	}
	if len(m.Dirs) == 0 || m.Dirs[0] != "node_modules" {
		return m, fmt.Errorf("%s: expected dirs to start with node_modules, found %q", Marker, m.Dirs)
	}
	for _, d := range m.Dirs {
		if !filepath.IsLocal(d) || filepath.Clean(d) != d || filepath.Base(d) != "node_modules" {
			return m, fmt.Errorf("%s: expected clean relative node_modules paths, found %q", Marker, d)
		}
	}
	return m, nil
}

// realDir checks that every component of rel under base is a directory,
// not a symlink.
func realDir(base, rel string) error {
	p := base
	parts := strings.Split(filepath.ToSlash(rel), "/")
	for i, part := range parts {
		p = filepath.Join(p, part)
		st, err := os.Lstat(p)
		at := strings.Join(parts[:i+1], "/")
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("%s missing", at)
		case err != nil:
			return err
		case !st.IsDir():
			return fmt.Errorf("%s: expected a directory, found mode %v", at, st.Mode())
		}
	}
	return nil
}

// Reuse hard-link-clones every node_modules directory listed in prev's
// marker into dir, which must hold the same workspace and no
// node_modules yet, then checks dir for key. It refuses when prev has no
// intact install for key. pnpm links packages with relative symlinks, so
// the clone is a working install; the absolute paths pnpm writes into
// its .bin shims (NODE_PATH) are rewritten from prev to dir, so the
// clone does not depend on prev staying around. On error nothing it
// created is left in dir.
func Reuse(prev, dir, key string) (err error) {
	if err := Check(prev, key); err != nil {
		return fmt.Errorf("reusing the dependencies of %s: %w", prev, err)
	}
	m, err := readMarker(prev)
	if err != nil {
		return fmt.Errorf("reusing the dependencies of %s: %w", prev, err)
	}
	var created []string
	defer func() {
		if err != nil {
			for _, p := range created {
				os.RemoveAll(p)
			}
		}
	}()
	for _, d := range m.Dirs {
		if parent := filepath.Dir(d); parent != "." {
			if err := realDir(dir, parent); err != nil {
				return fmt.Errorf("reusing the dependencies of %s in %s: workspace package %w", prev, dir, err)
			}
		}
		dst := filepath.Join(dir, d)
		if _, err := tree.LinkClone(filepath.Join(prev, d), dst); err != nil {
			return fmt.Errorf("reusing the dependencies of %s: %w", prev, err)
		}
		created = append(created, dst)
	}
	if err := rewriteShims(prev, dir, created); err != nil {
		return fmt.Errorf("reusing the dependencies of %s: %w", prev, err)
	}
	if err := Check(dir, key); err != nil {
		return fmt.Errorf("reusing the dependencies of %s: after cloning: %w", prev, err)
	}
	return nil
}

// maxShim bounds the .bin files read for rewriting; pnpm's shims are
// about 1 KiB.
const maxShim = 1 << 20

// rewriteShims replaces prev's absolute path by dir's in every regular
// file of a .bin directory under roots. A rewritten shim is a new file
// (with the old one's mode and owner): the old inode stays prev's.
func rewriteShims(prev, dir string, roots []string) error {
	newPath, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	olds := []string{prev}
	if real, err := filepath.EvalSymlinks(prev); err == nil && real != prev {
		olds = append(olds, real)
	}
	root := os.Geteuid() == 0
	for _, r := range roots {
		err := filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() || d.Name() != ".bin" {
				return err
			}
			entries, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			for _, e := range entries {
				if err := rewriteShim(filepath.Join(p, e.Name()), olds, newPath, root); err != nil {
					return err
				}
			}
			return filepath.SkipDir
		})
		if err != nil {
			return fmt.Errorf("rewriting .bin shims under %s: %w", r, err)
		}
	}
	return nil
}

func rewriteShim(p string, olds []string, newPath string, root bool) error {
	st, err := os.Lstat(p)
	if err != nil || !st.Mode().IsRegular() || st.Size() > maxShim {
		return err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	out := b
	for _, old := range olds {
		out = bytes.ReplaceAll(out, []byte(old+"/"), []byte(newPath+"/"))
	}
	if bytes.Equal(out, b) {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".shim-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(out)
	if err == nil {
		err = f.Chmod(st.Mode().Perm())
	}
	if err == nil && root {
		sys := st.Sys().(*syscall.Stat_t)
		err = f.Chown(int(sys.Uid), int(sys.Gid))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Installer runs the package manager's install.
type Installer struct {
	// Env is the child's environment (PATH and the like); HOME, USER and
	// LOGNAME are set from User, and CI=true so pnpm never prompts.
	Env []string
	// User is the unprivileged account install scripts run as; required
	// when we are root. When we are not root, the install runs as us.
	User string
	Log  *slog.Logger // default: discard
	Now  func() time.Time
}

// Install runs command (e.g. pnpm install --frozen-lockfile) in dir as
// the app user with timeout (0: DefaultInstallTimeout), appending its
// output to logPath (created 0640) and keeping the tail in the error.
// dir must belong to the app user. On success it finds every
// node_modules directory (the root's and each workspace package's, not
// those inside node_modules) and writes the marker for key atomically.
// Any marker already in dir is removed first: a failed install leaves
// none. When we are root and User is empty or uid 0 it refuses.
func (in *Installer) Install(ctx context.Context, dir string, command []string, timeout time.Duration, logPath string, key string) error {
	if len(command) == 0 || command[0] == "" {
		return fmt.Errorf("installing dependencies in %s: empty command", dir)
	}
	if !strings.HasPrefix(key, "sha256:") {
		return fmt.Errorf("installing dependencies in %s: expected a key sha256:<hex>, found %q", dir, key)
	}
	if timeout <= 0 {
		timeout = DefaultInstallTimeout
	}
	log, now := in.Log, in.Now
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	env, err := proc.UserEnv(in.Env, in.User, "install scripts")
	if err != nil {
		return fmt.Errorf("installing dependencies in %s: %w", dir, err)
	}
	if err := ownedByUser(dir, in.User); err != nil {
		return fmt.Errorf("installing dependencies in %s: %w", dir, err)
	}
	if err := os.Remove(filepath.Join(dir, Marker)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("installing dependencies in %s: removing the old marker: %w", dir, err)
	}

	cmdline := strings.Join(command, " ")
	logf, err := proc.OpenLog(logPath)
	if err != nil {
		return fmt.Errorf("installing dependencies in %s: %w", dir, err)
	}
	defer logf.Close()
	start := now()
	fmt.Fprintf(logf, "== %s %s: %s (in %s)\n", start.UTC().Format(time.RFC3339), proc.Who(in.User), cmdline, dir)
	log.Info("installing dependencies", "dir", dir, "command", cmdline, "user", proc.Who(in.User), "key", key)
	res, err := proc.Run(ctx, proc.Cmd{
		Name: command[0], Args: command[1:], Dir: dir, Env: env, User: in.User,
		Timeout: timeout, Output: logf,
	})
	end := now()
	if err != nil {
		fmt.Fprintf(logf, "== %s failed after %s: %v\n", end.UTC().Format(time.RFC3339), end.Sub(start).Round(time.Millisecond), firstLine(err))
		return fmt.Errorf("installing dependencies in %s as %s (log %s): %w", dir, proc.Who(in.User), logPath, err)
	}
	fmt.Fprintf(logf, "== %s done in %s\n", end.UTC().Format(time.RFC3339), res.Duration.Round(time.Millisecond))

	dirs, err := findModules(dir)
	if err != nil {
		return fmt.Errorf("installing dependencies in %s: %w", dir, err)
	}
	if len(dirs) == 0 || dirs[0] != "node_modules" {
		return fmt.Errorf("installing dependencies in %s: %s exited 0 but made no node_modules", dir, cmdline)
	}
	if err := writeMarker(dir, marker{Key: key, Dirs: dirs, InstalledAt: end.UTC()}); err != nil {
		return fmt.Errorf("installing dependencies in %s: %w", dir, err)
	}
	if err := Check(dir, key); err != nil {
		return fmt.Errorf("after %s: %w", cmdline, err)
	}
	log.Info("dependencies installed", "dir", dir, "key", key, "dirs", dirs, "duration", res.Duration.Round(time.Millisecond))
	return nil
}

// findModules lists the node_modules directories under dir without
// descending into any: "node_modules" first, then the others sorted.
func findModules(dir string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() || d.Name() != "node_modules" {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		dirs = append(dirs, rel)
		return filepath.SkipDir
	})
	if err != nil {
		return nil, fmt.Errorf("finding node_modules directories: %w", err)
	}
	sort.Slice(dirs, func(i, j int) bool {
		if (dirs[i] == "node_modules") != (dirs[j] == "node_modules") {
			return dirs[i] == "node_modules"
		}
		return dirs[i] < dirs[j]
	})
	return dirs, nil
}

// writeMarker writes the marker through a temporary file and a rename,
// owned like node_modules.
func writeMarker(dir string, m marker) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	// The tree belongs to the app user, who may have swapped node_modules
	// for a link: root writes only through an os.Root of dir, which no
	// link leads out of.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	st, err := root.Lstat("node_modules")
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("writing %s: node_modules is not a directory (found %s)", Marker, st.Mode().Type())
	}
	tmp := "node_modules/.cohuron-deps-" + rand.Text()[:12] + ".tmp"
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing %s: %w", Marker, err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil && os.Geteuid() == 0 {
		sys := st.Sys().(*syscall.Stat_t)
		err = f.Chown(int(sys.Uid), int(sys.Gid))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, Marker)
	}
	if err != nil {
		root.Remove(tmp)
		return fmt.Errorf("writing %s: %w", Marker, err)
	}
	return nil
}

// ownedByUser checks, when we are root, that dir belongs to user: the
// install writes node_modules there as that user.
func ownedByUser(dir, user string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("expected a directory, found mode %v", st.Mode())
	}
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := proc.LookupUser(user)
	if err != nil {
		return err
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != u.Uid {
		return fmt.Errorf("owned by uid %d, expected %s (uid %d): chown the release to the app user first", uid, u.Name, u.Uid)
	}
	return nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
