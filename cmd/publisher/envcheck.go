package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cohuron/deploy/pkg/artifact"
	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/fit"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/strictyaml"
)

// The checks of an environment manifest live here, once: `publisher
// check` runs them for a pull request, and publish and preview run the
// same ones before they sign or write anything, so a manifest check
// rejects is never published.

// envManifest is an environment manifest that parsed, with its document
// for the lines of problems found later.
type envManifest struct {
	file string
	env  *manifest.Environment
	doc  *strictyaml.Document
}

// problemsError is what is wrong with an environment manifest: one
// file:line: field: message per problem. It is rejected input (exit 3).
type problemsError struct {
	file     string
	problems []strictyaml.Problem
}

func (e *problemsError) Error() string {
	lines := make([]string, len(e.problems))
	for i, p := range e.problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (e *problemsError) FaultKind() fault.Kind { return fault.KindRejected }

// asProblems returns the problems of err: its own, or err itself as one
// problem of file.
func asProblems(file string, err error) []strictyaml.Problem {
	var pe *problemsError
	var se *strictyaml.Error
	switch {
	case errors.As(err, &pe):
		return pe.problems
	case errors.As(err, &se):
		return se.Problems
	}
	return []strictyaml.Problem{{File: file, Msg: err.Error()}}
}

// parseEnvironment runs the checks that need no bundle: the strict parse
// and validation, metadata.name against the file name (the store keeps
// releases by that name, and CI publishes manifests/ENV.yaml), and no
// publish-time build hook reading an env file with secret references.
// The manifest is returned whenever it parsed, so that a caller may go on
// to check it against a bundle and report every problem at once.
func parseEnvironment(file string, data []byte) (*envManifest, error) {
	env, doc, err := manifest.ParseEnvironmentDocument(file, data)
	if err != nil {
		return nil, &problemsError{file: file, problems: asProblems(file, err)}
	}
	m := &envManifest{file: file, env: env, doc: doc}
	var ps []strictyaml.Problem
	if want := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)); env.Metadata.Name != want {
		ps = append(ps, strictyaml.Problem{Path: "metadata.name",
			Msg: fmt.Sprintf("expected %q to match the file name, found %q", want, env.Metadata.Name)})
	}
	for i, h := range env.Spec.Build {
		if !h.AtPublish() {
			continue
		}
		if err := artifact.Literal(&env.Spec, h); err != nil {
			ps = append(ps, strictyaml.Problem{Path: fmt.Sprintf("spec.build[%d].inputs", i), Msg: err.Error()})
		}
	}
	return m, m.problems(ps)
}

// fit checks the manifest against the bundle it would be deployed with
// (pkg/fit).
func (m *envManifest) fit(ix *bundle.Index, read func(string) ([]byte, error)) error {
	return m.problems(fit.Check(&m.env.Spec, ix, read))
}

// problems gives path-keyed problems their file and line, or nil.
func (m *envManifest) problems(ps []strictyaml.Problem) error {
	if se := m.doc.Problems(m.file, ps); se != nil {
		return &problemsError{file: m.file, problems: se.Problems}
	}
	return nil
}

// loadEnvironment reads an environment manifest for publish or preview
// and runs check's checks that need no bundle; the manifest must be
// environment env. The bundle checks run later, through
// release.Request.Check, on the bundle being published.
func loadEnvironment(file, env string) (*envManifest, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fault.Usage(fmt.Errorf("environment manifest %s not found (pass --manifest)", file))
	}
	if err != nil {
		return nil, err
	}
	m, err := parseEnvironment(file, data)
	if err != nil {
		return nil, err
	}
	if env != "" && m.env.Metadata.Name != env {
		return nil, fault.Usage(fmt.Errorf("%s is environment %q, not %q", file, m.env.Metadata.Name, env))
	}
	return m, nil
}

// refused prints the problems of a manifest, one line each as check
// prints them, and returns the error that ends the command; other errors
// pass through.
func (c *CLI) refused(err error, what string) error {
	var pe *problemsError
	if !errors.As(err, &pe) {
		return err
	}
	for _, p := range pe.problems {
		fmt.Fprintln(c.err, p.String())
	}
	return fault.Rejected(fmt.Errorf("%s has %d problem(s), as publisher check reports them: %s", pe.file, len(pe.problems), what))
}

// sortProblems orders problems of one file by line, keeping the order of
// those on the same line.
func sortProblems(ps []strictyaml.Problem) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
}
