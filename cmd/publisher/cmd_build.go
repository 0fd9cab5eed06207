package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/gitbundle"
)

type buildOptions struct {
	repo, ref, branch, out string
	json                   bool
}

func (o *buildOptions) addFlags(fs flagSet) {
	fs.StringVar(&o.repo, "repo", ".", "git repository to bundle")
	fs.StringVar(&o.ref, "ref", "HEAD", "branch, tag or commit to bundle")
	fs.StringVar(&o.branch, "branch", "", "branch name recorded in the bundle name and release (default: from --ref)")
	fs.StringVar(&o.out, "out", "", "bundle file to write, or an existing directory to write <name>.tar.gz into")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
}

func (c *CLI) build(ctx context.Context, args []string) error {
	var o buildOptions
	fs := c.flags("build", "--repo PATH --ref REF --out FILE|DIR [--json]")
	o.addFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required("out", o.out); err != nil {
		return err
	}
	res, path, err := buildBundle(ctx, gitbundle.Options{Repo: o.repo, Ref: o.ref, Branch: o.branch}, o.out)
	if err != nil {
		return err
	}
	for _, s := range res.Skipped {
		c.log.Warn("not bundled", "entry", s)
	}
	if o.json {
		return c.printJSON(map[string]any{
			"path": path, "name": res.Name, "sha256": res.SHA256, "size": res.Size,
			"files": len(res.Index.Entries), "unpacked": res.Index.Unpacked(), "source": res.Source,
		})
	}
	fmt.Fprintf(c.out, "%s  %s\n", res.SHA256, path)
	return nil
}

// buildBundle writes the bundle to out (a file, or a directory to put
// <name>.tar.gz in) through a temp file, so a failed build leaves nothing.
func buildBundle(ctx context.Context, opts gitbundle.Options, out string) (*gitbundle.Result, string, error) {
	dir, file := filepath.Dir(out), ""
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		dir = out
	} else {
		file = out
	}
	tmp, err := os.CreateTemp(dir, ".bundle-*.tar.gz")
	if err != nil {
		return nil, "", fault.Usage(fmt.Errorf("creating bundle file: %w", err))
	}
	defer os.Remove(tmp.Name())
	res, err := gitbundle.Build(ctx, opts, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, "", err
	}
	if file == "" {
		file = filepath.Join(dir, res.Name)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return nil, "", err
	}
	return res, file, nil
}
