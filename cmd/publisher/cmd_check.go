package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/gitbundle"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/release"
	"github.com/cohuron/deploy/pkg/strictyaml"
	"github.com/cohuron/deploy/pkg/trust"
)

type checkOptions struct {
	files     []string
	json      bool
	repo, ref string
}

func (c *CLI) check(ctx context.Context, args []string) error {
	var o checkOptions
	fs := c.flags("check", "[--json] [--repo PATH [--ref REF]] [FILES...]   (default: manifests/*.yaml policies/*.yaml)")
	fs.BoolVar(&o.json, "json", false, "print the findings as JSON")
	fs.StringVar(&o.repo, "repo", "", "application repository: also check each environment manifest against the bundle of --ref, as publish does (compose services, cwds, scripts, build outputs, env file paths, input globs)")
	fs.StringVar(&o.ref, "ref", "HEAD", "branch, tag or commit of --repo to check against")
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.repo == "" && o.ref != "HEAD" {
		return fault.Usage(errors.New("--ref needs --repo: the repository whose commit to check against"))
	}
	o.files = fs.Args()
	if len(o.files) == 0 {
		for _, g := range []string{"manifests/*.yaml", "policies/*.yaml"} {
			m, _ := filepath.Glob(g)
			o.files = append(o.files, m...)
		}
		if len(o.files) == 0 {
			return fault.Usage(errors.New("no files given and none found in manifests/ or policies/"))
		}
	}
	return c.runCheck(ctx, o)
}

type checkResult struct {
	File string `json:"file"`
	Kind string `json:"kind"`
	OK   bool   `json:"ok"`
	// Bundle is the bundle an environment manifest was checked against (--repo).
	Bundle   string               `json:"bundle,omitempty"`
	Problems []strictyaml.Problem `json:"problems,omitempty"`
}

// checkBundle is the bundle of --repo, built once for every manifest.
type checkBundle struct {
	name   string
	source manifest.Source
	ix     *bundle.Index
	read   func(string) ([]byte, error)
}

func (c *CLI) runCheck(ctx context.Context, o checkOptions) error {
	var b *checkBundle
	if o.repo != "" {
		tmp, err := os.MkdirTemp("", "publisher-check-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		res, path, err := buildBundle(ctx, gitbundle.Options{Repo: o.repo, Ref: o.ref}, tmp)
		if err != nil {
			return err
		}
		for _, s := range res.Skipped {
			c.log.Warn("not bundled", "entry", s)
		}
		b = &checkBundle{name: res.Name, source: res.Source, ix: res.Index, read: bundle.FileReader(path, release.MaxCheckedFile)}
	}
	var results []checkResult
	bad := 0
	for _, f := range o.files {
		r := checkFile(f, b)
		if !r.OK {
			bad++
		}
		results = append(results, r)
	}
	if o.json {
		if err := c.printJSON(results); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			if r.OK {
				against := ""
				if r.Bundle != "" {
					against = fmt.Sprintf(", fits %s %s@%s", b.source.Repo, b.source.Branch, short(b.source.Commit))
				}
				fmt.Fprintf(c.out, "ok    %s (%s%s)\n", r.File, r.Kind, against)
				continue
			}
			for _, p := range r.Problems {
				fmt.Fprintln(c.out, p.String())
			}
		}
		fmt.Fprintf(c.out, "%d file(s) checked, %d with problems\n", len(results), bad)
	}
	if bad > 0 {
		return fault.Rejected(fmt.Errorf("%d of %d file(s) have problems", bad, len(results)))
	}
	return nil
}

// checkFile checks one file; an environment manifest also against b
// when there is one.
func checkFile(file string, b *checkBundle) checkResult {
	r := checkResult{File: file}
	fail := func(err error) checkResult {
		r.Problems = asProblems(file, err)
		return r
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fail(err)
	}
	var head struct {
		Kind string `yaml:"kind"`
	}
	_ = yaml.Unmarshal(data, &head) // errors are reported by the strict parse below
	r.Kind = head.Kind
	switch head.Kind {
	case manifest.KindEnvironment:
		m, err := parseEnvironment(file, data)
		if m == nil {
			return fail(err)
		}
		if err != nil {
			r.Problems = asProblems(file, err)
		}
		if b != nil {
			r.Bundle = b.name
			if err := m.fit(b.ix, b.read); err != nil {
				r.Problems = append(r.Problems, asProblems(file, err)...)
				sortProblems(r.Problems)
			}
		}
		if len(r.Problems) > 0 {
			return r
		}
	case trust.KindTrustPolicy:
		if _, err := trust.Parse(file, data, trust.RepoKeyReader(file)); err != nil {
			return fail(err)
		}
	default:
		return fail(fmt.Errorf("kind %q: expected %s or %s", head.Kind, manifest.KindEnvironment, trust.KindTrustPolicy))
	}
	r.OK = true
	return r
}
