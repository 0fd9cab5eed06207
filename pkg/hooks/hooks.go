package hooks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cohuron/deploy/pkg/proc"
	"github.com/cohuron/deploy/pkg/tree"
)

// DefaultTimeout bounds a hook when the caller gives none.
const DefaultTimeout = 10 * time.Minute

// Runner runs build hooks.
type Runner struct {
	// Env is the child's environment (PATH and the like); HOME, USER and
	// LOGNAME are set from User, and CI=true so tools never prompt.
	Env []string
	// User is the unprivileged account hooks run as; required when we are
	// root. When we are not root, hooks run as us.
	User string
	Log  *slog.Logger // default: discard
	Now  func() time.Time
}

// Run runs the hook name's command in dir/cwd (cwd relative, "" for dir)
// as the app user, for at most timeout (0: DefaultTimeout; on expiry the
// whole process group is killed), appending its output to logPath
// (created 0640). The error names the hook and ends with the output's
// tail: build hook "api": pnpm --filter api build: exit 1: ...
func (r *Runner) Run(ctx context.Context, dir, name, cwd string, command []string, timeout time.Duration, logPath string) error {
	if name == "" {
		return errors.New("build hook: empty name")
	}
	if len(command) == 0 || command[0] == "" {
		return fmt.Errorf("build hook %q: empty command", name)
	}
	if cwd != "" && (!filepath.IsLocal(cwd) || filepath.Clean(cwd) != cwd) {
		return fmt.Errorf("build hook %q: cwd: expected a clean path inside the release, found %q", name, cwd)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	log, now := r.Log, r.Now
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	env, err := proc.UserEnv(r.Env, r.User, "build hooks")
	if err != nil {
		return fmt.Errorf("build hook %q: %w", name, err)
	}
	wd := filepath.Join(dir, cwd)
	if st, err := os.Stat(wd); err != nil {
		return fmt.Errorf("build hook %q: working directory: %w", name, err)
	} else if !st.IsDir() {
		return fmt.Errorf("build hook %q: working directory %s: expected a directory, found mode %v", name, wd, st.Mode())
	}
	logf, err := proc.OpenLog(logPath)
	if err != nil {
		return fmt.Errorf("build hook %q: %w", name, err)
	}
	defer logf.Close()

	cmdline := strings.Join(command, " ")
	start := now()
	fmt.Fprintf(logf, "== %s build hook %s as %s: %s (in %s)\n", start.UTC().Format(time.RFC3339), name, proc.Who(r.User), cmdline, wd)
	log.Info("running build hook", "hook", name, "command", cmdline, "dir", wd, "user", proc.Who(r.User))
	res, err := proc.Run(ctx, proc.Cmd{
		Name: command[0], Args: command[1:], Dir: wd, Env: env, User: r.User,
		Timeout: timeout, Output: logf,
	})
	end := now()
	if err != nil {
		fmt.Fprintf(logf, "== %s build hook %s failed after %s: %s\n", end.UTC().Format(time.RFC3339), name, end.Sub(start).Round(time.Millisecond), firstLine(err))
		return fmt.Errorf("build hook %q: %w", name, err)
	}
	fmt.Fprintf(logf, "== %s build hook %s done in %s\n", end.UTC().Format(time.RFC3339), name, res.Duration.Round(time.Millisecond))
	log.Info("build hook done", "hook", name, "duration", res.Duration.Round(time.Millisecond))
	return nil
}

// CarryOver gives dir the declared outputs (clean relative paths) of a
// hook from prev, the previous release: a directory as a hard-link clone
// (tree.LinkClone), a file as a hard link, a symlink recreated. Missing
// parents in dir are created like prev's. An output missing in prev, or
// reached through a symlink in either tree, is an error naming it; on
// error no output carried so far is left in dir.
func CarryOver(prev, dir string, outputs []string) (err error) {
	var carried []string
	defer func() {
		if err != nil {
			for _, p := range carried {
				os.RemoveAll(p)
			}
		}
	}()
	for _, o := range outputs {
		if !filepath.IsLocal(o) || filepath.Clean(o) != o {
			return fmt.Errorf("carrying over %q: expected a clean path inside the release", o)
		}
		src, dst := filepath.Join(prev, o), filepath.Join(dir, o)
		st, err := lstatNoSymlinkParents(prev, o)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s not in previous release %s: run the hook instead", o, prev)
		}
		if err != nil {
			return fmt.Errorf("carrying over %s from %s: %w", o, prev, err)
		}
		if err := makeParents(prev, dir, filepath.Dir(o)); err != nil {
			return fmt.Errorf("carrying over %s into %s: %w", o, dir, err)
		}
		switch {
		case st.IsDir():
			if _, err := tree.LinkClone(src, dst); err != nil {
				return fmt.Errorf("carrying over %s: %w", o, err)
			}
		case st.Mode().IsRegular():
			if err := os.Link(src, dst); err != nil {
				return fmt.Errorf("carrying over %s: %w", o, err)
			}
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err == nil {
				err = os.Symlink(target, dst)
			}
			if err == nil && os.Geteuid() == 0 {
				sys := st.Sys().(*syscall.Stat_t)
				err = os.Lchown(dst, int(sys.Uid), int(sys.Gid))
			}
			if err != nil {
				return fmt.Errorf("carrying over %s: %w", o, err)
			}
		default:
			return fmt.Errorf("carrying over %s: expected a directory, file or symlink, found mode %v", src, st.Mode())
		}
		carried = append(carried, dst)
	}
	return nil
}

// lstatNoSymlinkParents lstats base/rel after checking that no directory
// between base and it is a symlink.
func lstatNoSymlinkParents(base, rel string) (fs.FileInfo, error) {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	p := base
	for i, part := range parts {
		p = filepath.Join(p, part)
		st, err := os.Lstat(p)
		if err != nil || i == len(parts)-1 {
			return st, err
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("%s: expected a directory, found mode %v", strings.Join(parts[:i+1], "/"), st.Mode())
		}
	}
	return nil, fs.ErrNotExist // not reached: rel has at least one part
}

// makeParents makes sure dir/rel is a directory reached through no
// symlink, creating what is missing with the mode (and, as root, the
// owner) of the same directory in prev.
func makeParents(prev, dir, rel string) error {
	if rel == "." {
		return nil
	}
	p, q := dir, prev
	for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
		p, q = filepath.Join(p, part), filepath.Join(q, part)
		st, err := os.Lstat(p)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s: expected a directory, found mode %v", p, st.Mode())
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		ps, err := os.Lstat(q)
		if err != nil {
			return err
		}
		if err := os.Mkdir(p, 0o700); err != nil {
			return err
		}
		if os.Geteuid() == 0 {
			sys := ps.Sys().(*syscall.Stat_t)
			if err := os.Lchown(p, int(sys.Uid), int(sys.Gid)); err != nil {
				return err
			}
		}
		if err := os.Chmod(p, ps.Mode()&(fs.ModePerm|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
		}
	}
	return nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// OnlyOutputs checks that the tree at root (an unpacked artifact) holds
// each of outputs and nothing else: every entry is one of them, inside
// one, or a directory on the way to one.
func OnlyOutputs(root string, outputs []string) error {
	for _, o := range outputs {
		if _, err := lstatNoSymlinkParents(root, o); err != nil {
			return fmt.Errorf("declared output %s is missing: %w", o, err)
		}
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		for _, o := range outputs {
			if rel == o && d.IsDir() {
				return filepath.SkipDir // everything inside an output is its own
			}
			if rel == o || strings.HasPrefix(rel, o+"/") {
				return nil
			}
			if strings.HasPrefix(o, rel+"/") {
				return nil // a parent of an output
			}
		}
		return fmt.Errorf("%s is not under a declared output (%s)", rel, strings.Join(outputs, ", "))
	})
}
