package fit

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
	"gopkg.in/yaml.v3"

	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/strictyaml"
)

// ReadFunc returns the content of the bundle file at name (a path in the
// bundle, such as docker-compose.yml).
type ReadFunc func(name string) ([]byte, error)

// Check reports where spec, already valid (manifest.Environment.Validate),
// does not fit the bundle indexed by ix, whose files read returns. Each
// problem's Path is the field of the environment manifest
// (spec.compose.services[0], …) and its message says what was checked,
// what was expected and what was found; File and Line are the caller's
// (strictyaml.Document.Problems). No problems: the spec fits.
func Check(spec *manifest.Spec, ix *bundle.Index, read ReadFunc) []strictyaml.Problem {
	c := &checker{spec: spec, ix: ix, read: read}
	for i, f := range spec.EnvFiles {
		c.writable(fmt.Sprintf("spec.envFiles[%d].path", i), "env file", f.Path)
	}
	if in := spec.Install; in != nil {
		c.dir("spec.install.cwd", in.Cwd)
	}
	for i, h := range spec.Build {
		at := fmt.Sprintf("spec.build[%d]", i)
		c.dir(at+".cwd", h.Cwd)
		for j, o := range h.Outputs {
			c.output(fmt.Sprintf("%s.outputs[%d]", at, j), o)
		}
		c.globs(at+".inputs", h.Inputs, "the hook would never rebuild for a change there")
	}
	c.compose()
	if sc := spec.Schema; sc != nil {
		for _, l := range []struct {
			name  string
			files []string
		}{{"files", sc.Files}, {"seed", sc.Seed}} {
			for i, f := range l.files {
				at := fmt.Sprintf("spec.schema.%s[%d]", l.name, i)
				if !manifest.IsGlob(f) {
					c.file(at, "schema file", f)
				} else if doublestar.ValidatePattern(f) && !c.schemaGlob(f) {
					c.add(at, "expected a glob matching at least one .sql or .ddl file of the bundle, found none matching %q", f)
				}
			}
		}
	}
	for i, p := range spec.Processes {
		at := fmt.Sprintf("spec.processes[%d]", i)
		if c.dir(at+".cwd", p.Cwd) {
			c.command(at, p.Cwd, p.Command)
		}
		c.globs(at+".inputs", p.Inputs, "the process would never restart for a change there")
	}
	return c.ps
}

type checker struct {
	spec *manifest.Spec
	ix   *bundle.Index
	read ReadFunc
	ps   []strictyaml.Problem
}

func (c *checker) add(at, format string, args ...any) {
	c.ps = append(c.ps, strictyaml.Problem{Path: at, Msg: fmt.Sprintf(format, args...)})
}

// kind is what a path of the release is in the bundle.
type kind int

const (
	missing     kind = iota // nothing at or under it
	file                    // a regular file
	link                    // a symlink
	dir                     // a directory (entries under it)
	throughLink             // under a symlink: extracting or writing it would follow the link
	throughFile             // under a regular file
)

// node is where a path leads in the bundle: its kind, and the entry at
// the path or, for throughLink and throughFile, the one in the way.
type node struct {
	kind  kind
	entry bundle.Entry
}

func locate(ix *bundle.Index, p string) node {
	if p == "" || p == "." {
		return node{kind: dir}
	}
	for i := range len(p) {
		if p[i] != '/' {
			continue
		}
		if e, ok := ix.Lookup(p[:i]); ok {
			if e.Link {
				return node{throughLink, e}
			}
			return node{throughFile, e}
		}
	}
	if e, ok := ix.Lookup(p); ok {
		if e.Link {
			return node{link, e}
		}
		return node{file, e}
	}
	if ix.HasDir(p) {
		return node{kind: dir}
	}
	return node{kind: missing}
}

// found says what is at p, for the "found" half of a message.
func (n node) found(p string) string {
	switch n.kind {
	case file:
		return "file " + p
	case link:
		return "symlink " + p
	case dir:
		return "directory " + p
	case throughLink:
		return p + " reached through symlink " + n.entry.Path
	case throughFile:
		return p + " under " + n.entry.Path + ", which is a file"
	}
	return "no " + p + " in the bundle"
}

// dir checks that cwd (empty: the release root) is a directory of the
// bundle reached through no symlink.
func (c *checker) dir(at, cwd string) bool {
	if n := locate(c.ix, cwd); n.kind != dir {
		c.add(at, "expected a directory of the bundle reached through no symlink, found %s", n.found(cwd))
		return false
	}
	return true
}

// file checks that p is a regular file of the bundle.
func (c *checker) file(at, what, p string) bool {
	if n := locate(c.ix, p); n.kind != file {
		c.add(at, "expected %s %s to be a file of the bundle, found %s", what, p, n.found(p))
		return false
	}
	return true
}

// writable checks a path the agent writes into the release: it must not
// be reached through a symlink (the write would land wherever it points)
// nor be a directory or under a file of the bundle.
func (c *checker) writable(at, what, p string) {
	switch n := locate(c.ix, p); n.kind {
	case link, throughLink:
		c.add(at, "expected %s %s to be reached through no symlink of the bundle, found %s: writing it would write outside the release", what, p, n.found(p))
	case dir, throughFile:
		c.add(at, "expected %s %s to be a file path, found %s", what, p, n.found(p))
	}
}

// output checks a build hook's output: written inside the release, and
// not a tracked file or directory, since the agent carries outputs over
// from the running release in place of what the bundle has there.
func (c *checker) output(at, o string) {
	switch n := locate(c.ix, o); n.kind {
	case link, throughLink:
		c.add(at, "expected output %s to be reached through no symlink of the bundle, found %s: the hook would write outside the release", o, n.found(o))
	case throughFile:
		c.add(at, "expected output %s to be a path the bundle can hold, found %s", o, n.found(o))
	case file:
		c.add(at, "expected an output the bundle does not track, found tracked file %s: the agent would replace it with the output it carries over from the running release", o)
	case dir:
		under := c.under(o)
		c.add(at, "expected an output the bundle does not track, found %d tracked file(s) under %s (%s…): the agent would replace them with the output it carries over from the running release", len(under), o, under[0].Path)
	}
}

// under returns the entries under directory d.
func (c *checker) under(d string) []bundle.Entry {
	es := c.ix.Entries
	i := sort.Search(len(es), func(i int) bool { return es[i].Path >= d+"/" })
	j := i
	for j < len(es) && strings.HasPrefix(es[j].Path, d+"/") {
		j++
	}
	return es[i:j]
}

// evalFlags make node run code from its arguments, not a script.
var evalFlags = map[string]bool{"-e": true, "--eval": true, "-p": true, "--print": true}

// command checks what a process runs from the release: a node script
// (relative to cwd), and a command like ./bin/server. Bare names (node,
// pnpm) are found on PATH and not checked.
func (c *checker) command(at, cwd string, argv []string) {
	if nodeArgs, script, _, ok := manifest.NodeScript(argv); ok && script != "-" && !path.IsAbs(script) {
		eval := false
		for _, a := range nodeArgs {
			eval = eval || evalFlags[a] || strings.HasPrefix(a, "--eval=") || strings.HasPrefix(a, "--print=")
		}
		if !eval {
			i := 1 + len(nodeArgs)
			if argv[i] == "--" {
				i++
			}
			c.runnable(fmt.Sprintf("%s.command[%d]", at, i), "script", cwd, script, false)
		}
	}
	if len(argv) > 0 && strings.Contains(argv[0], "/") && !path.IsAbs(argv[0]) {
		c.runnable(at+".command[0]", "command", cwd, argv[0], true)
	}
}

// runnable checks that name, relative to cwd, is a file of the bundle
// (executable when exec), or lies under a build hook's outputs or, with
// an install step, under node_modules.
func (c *checker) runnable(at, what, cwd, name string, exec bool) {
	p := path.Join(cwd, name)
	rel := p
	if cwd != "" {
		rel = fmt.Sprintf("%s (%s in cwd %s)", p, name, cwd)
	}
	if !bundle.IsCleanPath(p) || p == "." {
		c.add(at, "expected %s %s to be inside the release, found a path outside it", what, rel)
		return
	}
	if c.builtOrInstalled(p) {
		return
	}
	n := locate(c.ix, p)
	switch n.kind {
	case file:
		if exec && n.entry.Mode != bundle.ModeExec {
			c.add(at, "expected command %s to be an executable file, found mode %o (git update-index --chmod=+x %s)", rel, n.entry.Mode, p)
		}
		return
	case link:
		return // a link the extraction allows; node and exec follow it
	}
	hint := ""
	if hasElem(p, "node_modules") {
		hint = ": node_modules is never bundled, and without spec.install nothing installs it"
	}
	c.add(at, "expected %s %s to be a file of the bundle or under a build hook's outputs, found %s%s", what, rel, n.found(p), hint)
}

// builtOrInstalled reports whether p is made on the host: under a build
// hook's outputs (built there or at publish time), or under node_modules
// when the spec installs dependencies.
func (c *checker) builtOrInstalled(p string) bool {
	for _, h := range c.spec.Build {
		for _, o := range h.Outputs {
			if p == o || strings.HasPrefix(p, o+"/") {
				return true
			}
		}
	}
	return c.spec.Install != nil && hasElem(p, "node_modules")
}

// hasElem reports whether p has a path element named elem.
func hasElem(p, elem string) bool {
	for part := range strings.SplitSeq(p, "/") {
		if part == elem {
			return true
		}
	}
	return false
}

// globs checks that each input glob matches a bundle file or an env file
// (both are what inputs are matched against): one that matches nothing
// is almost surely a typo, and why says what it would cost.
func (c *checker) globs(at string, globs []string, why string) {
	for i, g := range globs {
		if !doublestar.ValidatePattern(g) || c.matches(g) {
			continue // an invalid glob is Validate's problem
		}
		hint := ""
		if c.ix.HasDir(g) {
			hint = fmt.Sprintf(" (%s is a directory: %s/** matches what is in it)", g, g)
		}
		c.add(fmt.Sprintf("%s[%d]", at, i), "expected a glob matching at least one file of the bundle, found none matching %q%s: %s", g, hint, why)
	}
}

// schemaGlob reports whether g matches a schema file of the bundle.
func (c *checker) schemaGlob(g string) bool {
	for _, e := range c.ix.Entries {
		if ext := path.Ext(e.Path); ext != ".sql" && ext != ".ddl" || e.Link {
			continue
		}
		if ok, _ := doublestar.Match(g, e.Path); ok {
			return true
		}
	}
	return false
}

func (c *checker) matches(g string) bool {
	for _, e := range c.ix.Entries {
		if ok, _ := doublestar.Match(g, e.Path); ok {
			return true
		}
	}
	for _, f := range c.spec.EnvFiles {
		if ok, _ := doublestar.Match(g, f.Path); ok {
			return true
		}
	}
	return false
}

// compose checks the compose file and that it defines every declared
// service.
func (c *checker) compose() {
	co := c.spec.Compose
	if co == nil || !c.file("spec.compose.file", "compose file", co.File) {
		return
	}
	defined, err := c.services(co.File)
	if err != nil {
		c.add("spec.compose.file", "%s", err)
		return
	}
	names := "none"
	if len(defined) > 0 {
		names = strings.Join(defined, ", ")
	}
	for i, svc := range co.Services {
		if !slices.Contains(defined, svc) {
			c.add(fmt.Sprintf("spec.compose.services[%d]", i), "expected a service that %s defines (%s), found %q", co.File, names, svc)
		}
	}
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// services returns the keys of the compose file's top-level services:
// mapping, in the file's order.
func (c *checker) services(name string) ([]string, error) {
	data, err := c.read(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("expected compose file %s to be a file of the bundle, found none", name)
	}
	if err != nil {
		return nil, fmt.Errorf("expected to read compose file %s from the bundle, found an error: %w", name, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		where := name
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			where, msg = name+":"+m[1], m[2]
		}
		return nil, fmt.Errorf("expected compose file %s to be YAML, found a syntax error at %s: %s", name, where, msg)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("expected compose file %s to define services:, found an empty file", name)
	}
	top := resolve(doc.Content[0])
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("expected compose file %s to be a mapping with services:, found %s at %s:%d", name, kindName(top), name, top.Line)
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "services" {
			continue
		}
		svcs := resolve(top.Content[i+1])
		switch {
		case svcs.Kind == yaml.ScalarNode && svcs.Tag == "!!null":
			return nil, nil
		case svcs.Kind != yaml.MappingNode:
			return nil, fmt.Errorf("expected services: in compose file %s to be a mapping of service names, found %s at %s:%d", name, kindName(svcs), name, svcs.Line)
		}
		var names []string
		for j := 0; j+1 < len(svcs.Content); j += 2 {
			if k := svcs.Content[j]; k.Tag != "!!merge" {
				names = append(names, k.Value)
			}
		}
		return names, nil
	}
	return nil, fmt.Errorf("expected compose file %s to have a top-level services: mapping, found none", name)
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "something else"
}
