package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/deps"
	"github.com/cohuron/deploy/pkg/extract"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/hooks"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/proc"
	"github.com/cohuron/deploy/pkg/secrets"
	"github.com/cohuron/deploy/pkg/tree"
)

// Builder runs publish-time build hooks.
type Builder struct {
	// Env is what pnpm, node and the hooks run with (PATH and the like).
	Env []string
	// User runs install scripts and hooks when the publisher is root
	// (they never run as root); empty when it is not.
	User string
	// CacheDir keeps one installed node_modules per dependency key, so
	// a build whose dependencies did not change clones them instead of
	// installing ("" keeps none).
	CacheDir string
	// Limits cap the unpacked bundle.
	Limits extract.Limits
	Log    *slog.Logger
	Now    func() time.Time
}

// Built is an archive of a hook's outputs, on disk.
type Built struct {
	Path   string
	SHA256 string
	Size   int64
	Index  *bundle.Index
}

// Build unpacks the bundle at bundlePath into a scratch tree, writes the
// env files (literal values only: secrets never reach a publisher),
// installs the dependencies (cloned from the cache when their key is
// there), runs hook h, and archives its declared outputs into out with
// the bundle's format and mtime. The error names the hook and the step.
func (b *Builder) Build(ctx context.Context, spec *manifest.Spec, in manifest.Inputs, h manifest.Hook, bundlePath string, mtime time.Time, out string) (*Built, error) {
	log := b.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := Literal(spec, h); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 && b.User == "" {
		return nil, fault.Usage(fmt.Errorf("build hook %q runs at publish time and this publisher runs as root: install scripts and build hooks never run as root; "+
			"pass --build-user NAME (or set COHURON_BUILD_USER) to an unprivileged account of this machine", h.Name))
	}
	work, err := os.MkdirTemp("", "publisher-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o755); err != nil {
		return nil, err
	}
	dir, logs := filepath.Join(work, "tree"), filepath.Join(work, "logs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Open(bundlePath)
	if err != nil {
		return nil, err
	}
	_, err = extract.Extract(f, dir, b.Limits)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("build hook %q: unpacking the bundle: %w", h.Name, err)
	}
	for _, ef := range spec.EnvFiles {
		if !literalOnly(ef) {
			continue
		}
		vals := map[string]string{}
		for name, v := range ef.Vars {
			vals[name] = v.Literal
		}
		data, err := secrets.Format(vals)
		if err != nil {
			return nil, fmt.Errorf("build hook %q: env file %s, %w", h.Name, ef.Path, err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(ef.Path)), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, ef.Path), data, 0o644); err != nil {
			return nil, err
		}
	}
	if b.User != "" && os.Geteuid() == 0 {
		u, err := proc.LookupUser(b.User)
		if err != nil {
			return nil, fmt.Errorf("build user: %w", err)
		}
		if err := tree.Chown(work, int(u.Uid), int(u.Gid)); err != nil {
			return nil, err
		}
	}
	start := b.now()
	if spec.Install != nil {
		if err := b.install(ctx, spec, in, dir, logs); err != nil {
			return nil, fmt.Errorf("build hook %q: %w", h.Name, err)
		}
	}
	r := &hooks.Runner{Env: b.Env, User: b.User, Log: log, Now: b.Now}
	if err := r.Run(ctx, dir, h.Name, h.Cwd, h.Command, h.Timeout.Duration, filepath.Join(logs, "build-"+h.Name+".log")); err != nil {
		return nil, err
	}
	built, err := Pack(dir, h.Outputs, mtime, out)
	if err != nil {
		return nil, fmt.Errorf("build hook %q: %w", h.Name, err)
	}
	log.Info("built at publish time", "hook", h.Name, "files", len(built.Index.Entries), "bytes", built.Size, "took", b.now().Sub(start).Round(time.Millisecond))
	return built, nil
}

func (b *Builder) now() time.Time {
	if b.Now == nil {
		return time.Now()
	}
	return b.Now()
}

// install puts node_modules into dir: cloned from the cache when it holds
// the dependency key, else installed and then kept in the cache.
func (b *Builder) install(ctx context.Context, spec *manifest.Spec, in manifest.Inputs, dir, logs string) error {
	tools, err := deps.Versions(ctx, b.Env, b.User)
	if err != nil {
		return err
	}
	key := deps.Key(in.Dependencies.Digest, tools)
	cwd := filepath.Join(dir, spec.Install.Cwd)
	cached := ""
	if b.CacheDir != "" {
		cached = filepath.Join(b.CacheDir, strings.TrimPrefix(key, "sha256:")[:16])
		if deps.Check(filepath.Join(cached, spec.Install.Cwd), key) == nil {
			if err := deps.Reuse(filepath.Join(cached, spec.Install.Cwd), cwd, key); err == nil {
				return nil
			}
		}
	}
	inst := &deps.Installer{Env: b.Env, User: b.User, Log: b.Log, Now: b.Now}
	if err := inst.Install(ctx, cwd, spec.Install.Command, spec.Install.Timeout.Duration, filepath.Join(logs, "install.log"), key); err != nil {
		return err
	}
	if cached != "" {
		b.keep(cwd, filepath.Join(cached, spec.Install.Cwd), key)
	}
	return nil
}

// keep clones a fresh install into the cache (best effort: a cache that
// cannot be written only makes the next build install again).
func (b *Builder) keep(src, dst, key string) {
	// A temporary sibling of its own: publishes may run side by side.
	err := os.MkdirAll(filepath.Dir(dst), 0o755)
	tmp := ""
	if err == nil {
		tmp, err = os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-")
	}
	if err == nil {
		err = os.Chmod(tmp, 0o755)
	}
	if err == nil {
		// The workspace's package directories, without their files.
		err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			if d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			rel, _ := filepath.Rel(src, p)
			return os.MkdirAll(filepath.Join(tmp, rel), 0o755)
		})
	}
	if err == nil {
		err = deps.Reuse(src, tmp, key)
	}
	if err == nil {
		os.RemoveAll(dst)
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
		if b.Log != nil {
			b.Log.Warn("keeping node_modules in the build cache", "dir", dst, "err", err)
		}
	}
}

// Literal refuses a publish-time hook that would read an env file with
// secret references: the publisher never resolves secrets, so the build
// would see a file that hosts get and CI does not.
func Literal(spec *manifest.Spec, h manifest.Hook) error {
	for _, ef := range spec.EnvFiles {
		if literalOnly(ef) || !reads(h, ef.Path) {
			continue
		}
		var refs []string
		for name, v := range ef.Vars {
			if v.IsRef() {
				refs = append(refs, name)
			}
		}
		sort.Strings(refs)
		return fault.Rejected(fmt.Errorf("build hook %q runs at publish time, but its inputs include env file %s, whose %s %s a secret reference; "+
			"publish-time builds see literal values only: make them literals, or run the hook on the hosts (at: host)",
			h.Name, ef.Path, strings.Join(refs, ", "), plural(len(refs), "is", "are")))
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// reads reports whether hook h's inputs cover path (every file when it
// declares none).
func reads(h manifest.Hook, path string) bool {
	return manifest.MatchesInputs(h.Inputs, path)
}

func literalOnly(ef manifest.EnvFile) bool {
	for _, v := range ef.Vars {
		if v.IsRef() {
			return false
		}
	}
	return true
}

// Pack archives the outputs (clean relative paths) of the tree at dir
// into out, in the bundle format with mtime: files and symlinks that stay
// inside the outputs; anything else is an error naming it.
func Pack(dir string, outputs []string, mtime time.Time, out string) (*Built, error) {
	// The tree belongs to the build user and Pack may run as root: every
	// read goes through an os.Root, so no symlink (planted, or swapped in
	// by a process the hook left behind) leads outside it.
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var entries []string
	for _, o := range outputs {
		if !filepath.IsLocal(o) || filepath.Clean(o) != o {
			return nil, fmt.Errorf("output %q: expected a clean path inside the release", o)
		}
		if err := noSymlinkParents(r, o); err != nil {
			return nil, err
		}
		st, err := r.Lstat(o)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("declared output %s was not built", o)
		}
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			entries = append(entries, filepath.ToSlash(o))
			continue
		}
		n := len(entries)
		err = fs.WalkDir(r.FS(), filepath.ToSlash(o), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			entries = append(entries, p)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(entries) == n {
			return nil, fmt.Errorf("declared output %s holds no files: hosts would find it missing", o)
		}
	}
	slices.Sort(entries)
	entries = slices.Compact(entries)
	f, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cw := &bundle.DigestWriter{W: f}
	bw, err := bundle.NewWriter(cw, mtime)
	if err != nil {
		return nil, err
	}
	for _, p := range entries {
		st, err := r.Lstat(p)
		if err != nil {
			return nil, err
		}
		e := bundle.Entry{Path: p, Mode: bundle.ModeFile}
		var data []byte
		switch {
		case st.Mode().IsRegular():
			if st.Mode().Perm()&0o111 != 0 {
				e.Mode = bundle.ModeExec
			}
			data, err = readRegular(r, p)
		case st.Mode()&fs.ModeSymlink != 0:
			e.Mode, e.Link = bundle.ModeSymlink, true
			var target string
			target, err = r.Readlink(p)
			data = []byte(target)
			if err == nil && !insideOutputs(p, target, outputs) {
				err = fmt.Errorf("symlink %s -> %s leaves the declared outputs", p, target)
			}
		default:
			err = fmt.Errorf("%s is a %s: outputs hold files and symlinks only", p, st.Mode().Type())
		}
		if err != nil {
			return nil, err
		}
		if err := bw.Add(e, data); err != nil {
			return nil, err
		}
	}
	if err := bw.Close(); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	return &Built{Path: out, SHA256: cw.Sum(), Size: cw.Size(), Index: bw.Index}, nil
}

// noSymlinkParents refuses an output whose parent directories include a
// symlink: its files would be packed under a name they do not have.
func noSymlinkParents(r *os.Root, o string) error {
	parent := filepath.Dir(o)
	for p := parent; p != "."; p = filepath.Dir(p) {
		st, err := r.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("output %s: %s is a symlink; expected directories of the release", o, p)
		}
	}
	return nil
}

// readRegular reads p, which must still be a regular file once open.
func readRegular(r *os.Root, p string) ([]byte, error) {
	f, err := r.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s changed while packing (now a %s)", p, st.Mode().Type())
	}
	return io.ReadAll(f)
}

// insideOutputs reports whether a symlink at p to target resolves inside
// one of the outputs.
func insideOutputs(p, target string, outputs []string) bool {
	if filepath.IsAbs(target) {
		return false
	}
	joined := filepath.ToSlash(filepath.Join(filepath.Dir(p), target))
	for _, o := range outputs {
		if joined == o || strings.HasPrefix(joined, o+"/") {
			return true
		}
	}
	return false
}
