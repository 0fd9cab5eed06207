package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/strictyaml"
	"github.com/cohuron/deploy/pkg/trust"
)

type checkOptions struct {
	files []string
	json  bool
}

func (c *CLI) check(ctx context.Context, args []string) error {
	var o checkOptions
	fs := c.flags("check", "[--json] [FILES...]   (default: manifests/*.yaml policies/*.yaml)")
	fs.BoolVar(&o.json, "json", false, "print the findings as JSON")
	if err := parse(fs, args); err != nil {
		return err
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
	File     string               `json:"file"`
	Kind     string               `json:"kind"`
	OK       bool                 `json:"ok"`
	Problems []strictyaml.Problem `json:"problems,omitempty"`
}

func (c *CLI) runCheck(_ context.Context, o checkOptions) error {
	var results []checkResult
	bad := 0
	for _, f := range o.files {
		r := checkFile(f)
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
				fmt.Fprintf(c.out, "ok    %s (%s)\n", r.File, r.Kind)
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

func checkFile(file string) checkResult {
	r := checkResult{File: file}
	fail := func(err error) checkResult {
		var se *strictyaml.Error
		if errors.As(err, &se) {
			r.Problems = se.Problems
		} else {
			r.Problems = []strictyaml.Problem{{File: file, Msg: err.Error()}}
		}
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
		env, err := manifest.ParseEnvironment(file, data)
		if err != nil {
			return fail(err)
		}
		if want := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)); env.Metadata.Name != want {
			return fail(&strictyaml.Error{Problems: []strictyaml.Problem{{File: file, Path: "metadata.name",
				Msg: fmt.Sprintf("expected %q to match the file name, found %q", want, env.Metadata.Name)}}})
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
