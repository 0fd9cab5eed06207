package gitbundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
)

// AlwaysExcluded are path components never bundled.
var AlwaysExcluded = []string{"node_modules", ".git", "dist", "build"}

// IgnoreFile holds extra exclusion patterns (gitignore syntax), read from
// the commit being bundled.
const IgnoreFile = ".bundleignore"

// Options say what to bundle.
type Options struct {
	Repo   string // path to a git repository (or a directory inside one)
	Ref    string // branch, tag, commit id or HEAD (default HEAD)
	Branch string // branch name to record; guessed from Ref when empty
}

// Result describes a built bundle.
type Result struct {
	Name    string // cohuron-<branch>-<shortsha>-<YYYYmmdd-HHMMSS>.tar.gz
	SHA256  string // hex digest of the tar.gz bytes
	Size    int64
	Source  manifest.Source
	Index   *bundle.Index
	Skipped []string // submodules and other entries not bundled, for the operator
}

type pending struct {
	entry bundle.Entry
	hash  plumbing.Hash
}

// Build writes the bundle of the commit opts.Ref to w.
func Build(ctx context.Context, opts Options, w io.Writer) (*Result, error) {
	repo, err := git.PlainOpenWithOptions(opts.Repo, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fault.Usage(fmt.Errorf("opening git repository %s: %w", opts.Repo, err))
	}
	ref := opts.Ref
	if ref == "" {
		ref = "HEAD"
	}
	hash, err := repo.ResolveRevision(plumbing.Revision(ref))
	if err != nil {
		return nil, fault.Usage(fmt.Errorf("resolving %q in %s: %w", ref, opts.Repo, err))
	}
	commit, err := repo.CommitObject(*hash)
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", hash, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading tree of %s: %w", hash, err)
	}

	branch := opts.Branch
	if branch == "" {
		branch = guessBranch(repo, ref)
	}
	res := &Result{
		Source: manifest.Source{
			Repo:    repoName(repo, opts.Repo),
			Branch:  branch,
			Commit:  commit.Hash.String(),
			Author:  fmt.Sprintf("%s <%s>", commit.Author.Name, commit.Author.Email),
			Message: firstLine(commit.Message),
			Time:    commit.Committer.When.UTC().Truncate(time.Second),
		},
	}
	res.Name = Name(branch, commit.Hash.String(), res.Source.Time)

	ignore, err := loadIgnore(tree)
	if err != nil {
		return nil, err
	}
	files, skipped, err := listFiles(tree, ignore)
	if err != nil {
		return nil, err
	}
	res.Skipped = skipped
	if len(files) == 0 {
		return nil, fault.Usage(fmt.Errorf("commit %s has no files to bundle after exclusions", commit.Hash))
	}

	cw := &bundle.DigestWriter{W: w}
	ix, err := writeArchive(ctx, repo, files, res.Source.Time, cw)
	if err != nil {
		return nil, err
	}
	res.Index = ix
	res.Size = cw.Size()
	res.SHA256 = cw.Sum()
	return res, nil
}

var nameUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Name is the bundle file name of a commit.
func Name(branch, commit string, t time.Time) string {
	b := strings.Trim(nameUnsafe.ReplaceAllString(branch, "-"), "-.")
	if b == "" {
		b = "detached"
	}
	short := commit
	if len(short) > 7 {
		short = short[:7]
	}
	return fmt.Sprintf("cohuron-%s-%s-%s.tar.gz", b, short, t.UTC().Format("20060102-150405"))
}

func listFiles(tree *object.Tree, ignore gitignore.Matcher) ([]pending, []string, error) {
	var files []pending
	var skipped []string
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, te, err := walker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("walking tree: %w", err)
		}
		if te.Mode == filemode.Dir {
			continue
		}
		if excluded(name, ignore) {
			continue
		}
		var e bundle.Entry
		switch te.Mode {
		case filemode.Regular, filemode.Deprecated:
			e.Mode = bundle.ModeFile
		case filemode.Executable:
			e.Mode = bundle.ModeExec
		case filemode.Symlink:
			e.Mode, e.Link = bundle.ModeSymlink, true
		default: // submodules: their content is not in this repository
			skipped = append(skipped, fmt.Sprintf("%s (mode %s)", name, te.Mode))
			continue
		}
		if strings.ContainsAny(name, "\x00\\") || !bundle.IsCleanPath(name) {
			return nil, nil, fault.Rejected(fmt.Errorf("path %q cannot be bundled: expected a clean relative path", name))
		}
		e.Path = name
		files = append(files, pending{entry: e, hash: te.Hash})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].entry.Path < files[j].entry.Path })
	return files, skipped, nil
}

func excluded(p string, ignore gitignore.Matcher) bool {
	parts := strings.Split(p, "/")
	for i, part := range parts {
		for _, x := range AlwaysExcluded {
			if part == x {
				return true
			}
		}
		if ignore != nil && ignore.Match(parts[:i+1], i < len(parts)-1) {
			return true
		}
	}
	return false
}

func loadIgnore(tree *object.Tree) (gitignore.Matcher, error) {
	f, err := tree.File(IgnoreFile)
	if errors.Is(err, object.ErrFileNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", IgnoreFile, err)
	}
	text, err := f.Contents()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", IgnoreFile, err)
	}
	var ps []gitignore.Pattern
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ps = append(ps, gitignore.ParsePattern(line, nil))
	}
	return gitignore.NewMatcher(ps), nil
}

type blob struct {
	entry bundle.Entry
	data  []byte
	err   error
}

// writeArchive reads blobs in one goroutine (go-git storage is not safe
// for concurrent use) while this one hashes, tars and compresses.
func writeArchive(ctx context.Context, repo *git.Repository, files []pending, mtime time.Time, w io.Writer) (*bundle.Index, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	blobs := make(chan blob, 256)
	go func() {
		defer close(blobs)
		for _, f := range files {
			b := blob{entry: f.entry}
			obj, err := repo.BlobObject(f.hash)
			if err == nil {
				var r io.ReadCloser
				if r, err = obj.Reader(); err == nil {
					b.data = make([]byte, 0, obj.Size)
					buf := bytes.NewBuffer(b.data)
					_, err = buf.ReadFrom(r)
					r.Close()
					b.data = buf.Bytes()
				}
			}
			if err != nil {
				b.err = fmt.Errorf("reading %s: %w", f.entry.Path, err)
			}
			select {
			case blobs <- b:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	bw, err := bundle.NewWriter(w, mtime)
	if err != nil {
		return nil, err
	}
	bw.Index.Entries = make([]bundle.Entry, 0, len(files))
	for b := range blobs {
		if b.err != nil {
			return nil, b.err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := bw.Add(b.entry, b.data); err != nil {
			return nil, err
		}
	}
	if err := bw.Close(); err != nil {
		return nil, err
	}
	return bw.Index, nil
}

func guessBranch(repo *git.Repository, ref string) string {
	if ref == "HEAD" {
		if head, err := repo.Head(); err == nil && head.Name().IsBranch() {
			return head.Name().Short()
		}
		return "detached"
	}
	if strings.HasPrefix(ref, "refs/heads/") {
		return strings.TrimPrefix(ref, "refs/heads/")
	}
	if _, err := repo.Reference(plumbing.NewBranchReferenceName(ref), false); err == nil {
		return ref
	}
	if r, err := repo.Reference(plumbing.NewRemoteReferenceName("origin", ref), false); err == nil {
		return strings.TrimPrefix(r.Name().Short(), "origin/")
	}
	if strings.HasPrefix(ref, "origin/") {
		return strings.TrimPrefix(ref, "origin/")
	}
	return "detached"
}

// repoName is the origin URL without credentials (CI checkouts often embed
// a token as the user name), or the directory name.
func repoName(repo *git.Repository, dir string) string {
	if r, err := repo.Remote("origin"); err == nil && len(r.Config().URLs) > 0 {
		raw := r.Config().URLs[0]
		if u, err := url.Parse(raw); err == nil && u.Scheme != "" {
			u.User = nil
			u.RawQuery = ""
			return u.String()
		}
		return fault.Scrub(raw)
	}
	return path.Base(strings.TrimRight(dir, "/"))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
