package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/cohuron/deploy/pkg/manifest"
)

// Normalized modes written to the archive.
const (
	ModeFile    = 0o644
	ModeExec    = 0o755
	ModeDir     = 0o755
	ModeSymlink = 0o777
)

// Entry is one file or symlink of a bundle (directories are implied).
type Entry struct {
	Path   string
	Mode   int64 // ModeFile, ModeExec or ModeSymlink
	Link   bool
	Size   int64
	SHA256 string // of the content, or of the link target
}

// Index lists a bundle's entries, sorted by path.
type Index struct {
	Entries []Entry
}

// Unpacked is the sum of file sizes.
func (ix *Index) Unpacked() int64 {
	var n int64
	for _, e := range ix.Entries {
		n += e.Size
	}
	return n
}

// Lookup returns the entry at p.
func (ix *Index) Lookup(p string) (Entry, bool) {
	i := sort.Search(len(ix.Entries), func(i int) bool { return ix.Entries[i].Path >= p })
	if i < len(ix.Entries) && ix.Entries[i].Path == p {
		return ix.Entries[i], true
	}
	return Entry{}, false
}

// HasDir reports whether some entry lives under directory d.
func (ix *Index) HasDir(d string) bool {
	prefix := d + "/"
	i := sort.Search(len(ix.Entries), func(i int) bool { return ix.Entries[i].Path >= prefix })
	return i < len(ix.Entries) && strings.HasPrefix(ix.Entries[i].Path, prefix)
}

// isDependencyFile reports whether p is an input of the install step.
func isDependencyFile(p string) bool {
	switch p {
	case "pnpm-lock.yaml", "pnpm-workspace.yaml", ".npmrc", ".nvmrc", ".node-version":
		return true
	}
	return path.Base(p) == "package.json"
}

// Inputs computes the release inputs of spec against this bundle and
// checks that every file the spec names is in it.
func (ix *Index) Inputs(spec *manifest.Spec) (manifest.Inputs, error) {
	var in manifest.Inputs
	var missing []string
	need := func(what, p string) string {
		e, ok := ix.Lookup(p)
		if !ok || e.Link {
			missing = append(missing, fmt.Sprintf("%s %s", what, p))
			return ""
		}
		return e.SHA256
	}

	code := sha256.New()
	deps := map[string]string{}
	for _, e := range ix.Entries {
		fmt.Fprintf(code, "%o %s %s\n", e.Mode, e.SHA256, e.Path)
		if isDependencyFile(e.Path) && !e.Link {
			deps[e.Path] = e.SHA256
		}
	}
	in.Code = manifest.Input{Digest: "sha256:" + hex.EncodeToString(code.Sum(nil))}
	in.Dependencies = manifest.Input{Digest: manifest.Digest(deps), Files: deps}

	compose := map[string]string{}
	if c := spec.Compose; c != nil {
		compose[c.File] = need("compose file", c.File)
	}
	in.Compose = manifest.Input{Digest: manifest.Digest(compose), Files: compose}

	schema := map[string]string{}
	type step struct{ Path, SHA256 string }
	var steps []step
	if sc := spec.Schema; sc != nil {
		var files []string // regular files only: a symlink is no schema file
		for _, e := range ix.Entries {
			if !e.Link {
				files = append(files, e.Path)
			}
		}
		order, absent := sc.Order(files)
		for _, f := range absent {
			missing = append(missing, "schema file "+f)
		}
		for _, f := range append(order, sc.Seed...) {
			sum := need("schema file", f)
			schema[f] = sum
			steps = append(steps, step{f, sum})
		}
	}
	// The order of schema files matters, so the digest covers the list;
	// in declarative mode the declarations too (a rename or a reference
	// table declared later must reach the database).
	in.Schema = manifest.Input{Digest: manifest.Digest(steps), Files: schema}
	if sc := spec.Schema; sc.Declarative() {
		in.Schema.Digest = manifest.Digest(struct {
			Files                         any
			Strict                        bool
			Renames                       map[string]string
			Schemas, Drops, ReferenceData []string
		}{steps, sc.Strict, sc.Renames, sc.Schemas, sc.Drops, sc.ReferenceData})
	}

	envs := map[string]string{}
	for _, f := range spec.EnvFiles {
		envs[f.Path] = manifest.Digest(f.Vars)
	}
	in.Config = manifest.Input{Digest: manifest.Digest(spec), Files: envs}

	in.Hooks = map[string]manifest.Input{}
	for _, h := range spec.Build {
		files, envFiles := ix.match(h.Inputs, spec, envs)
		in.Hooks[h.Name] = input(struct {
			Hook     manifest.Hook
			Files    map[string]string
			Deps     string
			EnvFiles map[string]string
		}{h, files, in.Dependencies.Digest, envFiles}, files)
	}
	in.Processes = map[string]manifest.Input{}
	for _, p := range spec.Processes {
		if p.Cwd != "" && !ix.HasDir(p.Cwd) {
			missing = append(missing, fmt.Sprintf("directory %s (cwd of process %s)", p.Cwd, p.Name))
		}
		files, _ := ix.match(p.Inputs, spec, envs)
		in.Processes[p.Name] = input(struct {
			Process manifest.Process
			Files   map[string]string
			Deps    string
			EnvFile string
		}{p, files, in.Dependencies.Digest, envs[p.EnvFile]}, files)
	}
	if len(missing) > 0 {
		return in, fmt.Errorf("the manifest names what the bundle does not contain: %s", strings.Join(missing, "; "))
	}
	return in, nil
}

// match returns the digests (mode and content) of the entries that
// globs match (every entry when globs is empty), and of the env files of
// spec they match (none when globs is empty: a hook that declares no
// inputs is built from the code and the dependencies, as before inputs).
func (ix *Index) match(globs []string, spec *manifest.Spec, envs map[string]string) (files, envFiles map[string]string) {
	matches := func(p string) bool { return manifest.MatchesInputs(globs, p) }
	files = map[string]string{}
	for _, e := range ix.Entries {
		if matches(e.Path) {
			files[e.Path] = fmt.Sprintf("%o:%s", e.Mode, e.SHA256)
		}
	}
	envFiles = map[string]string{}
	for _, f := range spec.EnvFiles {
		if len(globs) > 0 && matches(f.Path) {
			envFiles[f.Path] = envs[f.Path]
		}
	}
	return files, envFiles
}

// input is the Input of a hook or process: the digest of what it depends
// on, and a short digest per matched file unless there are too many.
func input(v any, files map[string]string) manifest.Input {
	in := manifest.Input{Digest: manifest.Digest(v)}
	if len(files) <= manifest.MaxInputFiles {
		in.Files = make(map[string]string, len(files))
		for p, d := range files {
			sum := sha256.Sum256([]byte(d))
			in.Files[p] = hex.EncodeToString(sum[:8])
		}
	}
	return in
}

// IsCleanPath reports whether p is a clean relative path inside a bundle.
func IsCleanPath(p string) bool {
	return p != "" && !path.IsAbs(p) && path.Clean(p) == p && p != ".." && !strings.HasPrefix(p, "../")
}
