package tfcheck

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/terraform-config-inspect/tfconfig"
	"github.com/zclconf/go-cty/cty"
)

// Problem is one defect, at a place in a file.
type Problem struct {
	File    string
	Line    int
	Message string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message) }

// Check checks the root module in dir root and every local module it calls.
// It returns the problems sorted by file and line; none means clean.
func Check(root string) []Problem {
	c := &checker{
		root:    filepath.Clean(root),
		parser:  hclparse.NewParser(),
		modules: map[string]*module{},
	}
	m := c.module(c.root)
	if m != nil {
		c.checkTFVars(m)
	}
	sort.Slice(c.problems, func(i, j int) bool {
		a, b := c.problems[i], c.problems[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Message < b.Message
	})
	return c.problems
}

type checker struct {
	root     string
	parser   *hclparse.Parser
	modules  map[string]*module // by directory; nil while being checked (a cycle)
	problems []Problem
}

// module is one loaded module: what terraform-config-inspect sees
// (variables, outputs, module calls) plus the syntax trees for the rest.
type module struct {
	dir     string
	cfg     *tfconfig.Module
	files   []*hcl.File
	callees map[string]*module // local module calls, by call name
}

func (c *checker) addf(rng hcl.Range, format string, args ...any) {
	c.problems = append(c.problems, Problem{File: rng.Filename, Line: rng.Start.Line, Message: fmt.Sprintf(format, args...)})
}

// module loads and checks the module in dir once, then returns it.
func (c *checker) module(dir string) *module {
	if m, seen := c.modules[dir]; seen {
		return m
	}
	c.modules[dir] = nil
	m := c.load(dir)
	if m == nil {
		return nil
	}
	// Callees first: the caller's checks need their variables and outputs.
	for _, name := range sortedKeys(m.cfg.ModuleCalls) {
		call := m.cfg.ModuleCalls[name]
		if !isLocal(call.Source) {
			continue
		}
		calleeDir := filepath.Join(dir, call.Source)
		if !tfconfig.IsModuleDir(calleeDir) {
			c.problems = append(c.problems, Problem{File: call.Pos.Filename, Line: call.Pos.Line,
				Message: fmt.Sprintf("module %q: source %q: expected a directory with .tf files, found none at %s", name, call.Source, calleeDir)})
			continue
		}
		if callee := c.module(calleeDir); callee != nil {
			m.callees[name] = callee
		}
	}
	for _, f := range m.files {
		c.walkBody(m, f.Body.(*hclsyntax.Body))
	}
	c.modules[dir] = m
	return m
}

func (c *checker) load(dir string) *module {
	cfg, diags := tfconfig.LoadModule(dir)
	m := &module{dir: dir, cfg: cfg, callees: map[string]*module{}}
	names, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(names) == 0 {
		c.problems = append(c.problems, Problem{File: dir, Message: "expected a Terraform module (.tf files), found none"})
		return nil
	}
	parseErrors := false
	for _, name := range names {
		src, err := os.ReadFile(name)
		if err != nil {
			c.problems = append(c.problems, Problem{File: name, Message: err.Error()})
			parseErrors = true
			continue
		}
		f, pd := c.parser.ParseHCL(src, name)
		c.diags(pd)
		parseErrors = parseErrors || pd.HasErrors()
		if f != nil && !pd.HasErrors() {
			m.files = append(m.files, f)
		}
	}
	// terraform-config-inspect reports the same syntax errors: say them once.
	if !parseErrors {
		for _, d := range diags {
			if d.Severity == tfconfig.DiagError {
				p := Problem{File: dir, Message: d.Summary + ": " + d.Detail}
				if d.Pos != nil {
					p.File, p.Line = d.Pos.Filename, d.Pos.Line
				}
				c.problems = append(c.problems, p)
			}
		}
	}
	return m
}

// diags adds the errors among diagnostics (syntax errors) as problems.
func (c *checker) diags(diags hcl.Diagnostics) {
	for _, d := range diags {
		switch {
		case d.Severity != hcl.DiagError:
		case d.Subject != nil:
			c.addf(*d.Subject, "%s: %s", d.Summary, d.Detail)
		default:
			c.problems = append(c.problems, Problem{Message: d.Summary + ": " + d.Detail})
		}
	}
}

// walkBody checks every attribute and block of a body, recursively.
func (c *checker) walkBody(m *module, body *hclsyntax.Body) {
	for _, name := range sortedKeys(body.Attributes) {
		c.checkExpr(m, body.Attributes[name].Expr)
	}
	for _, b := range body.Blocks {
		switch {
		case addressBlocks[b.Type]:
			continue // resource addresses, not references to outputs or variables
		case b.Type == "module" && len(b.Labels) == 1:
			c.checkCall(m, b)
		case b.Type == "data" && len(b.Labels) == 2 && b.Labels[0] == "aws_iam_policy_document":
			c.checkPolicyDocument(b.Body)
		}
		c.walkBody(m, b.Body)
	}
}

// addressBlocks hold resource addresses (module.NAME.TYPE.NAME), which
// read like output references but name resources across a refactor.
var addressBlocks = map[string]bool{"moved": true, "removed": true, "import": true}

// moduleMeta are the arguments of a module block that are not variables.
var moduleMeta = map[string]bool{"source": true, "version": true, "count": true, "for_each": true, "providers": true, "depends_on": true}

// checkCall compares the arguments of a module block with the variables of
// the (local) module it calls.
func (c *checker) checkCall(m *module, b *hclsyntax.Block) {
	name := b.Labels[0]
	callee := m.callees[name]
	if callee == nil {
		return // not local, or broken (already reported)
	}
	declared := sortedKeys(callee.cfg.Variables)
	for _, arg := range sortedKeys(b.Body.Attributes) {
		if moduleMeta[arg] {
			continue
		}
		if _, ok := callee.cfg.Variables[arg]; !ok {
			c.addf(b.Body.Attributes[arg].NameRange, "module %q: argument %q is not a variable of %s (expected one of: %s)",
				name, arg, callee.dir, strings.Join(declared, ", "))
		}
	}
	for _, v := range declared {
		decl := callee.cfg.Variables[v]
		if _, passed := b.Body.Attributes[v]; decl.Required && !passed {
			c.addf(b.DefRange(), "module %q: required variable %q of %s (%s:%d, no default) is not passed",
				name, v, callee.dir, decl.Pos.Filename, decl.Pos.Line)
		}
	}
}

// checkExpr checks the references of an expression and the function calls
// in it that this package understands.
func (c *checker) checkExpr(m *module, expr hclsyntax.Expression) {
	for _, tr := range hclsyntax.Variables(expr) {
		c.checkReference(m, tr)
	}
	// The callback returns no diagnostics, so neither does VisitAll.
	_ = hclsyntax.VisitAll(expr, func(n hclsyntax.Node) hcl.Diagnostics {
		fc, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok {
			return nil
		}
		switch fc.Name {
		case "jsonencode":
			for _, arg := range fc.Args {
				c.checkJSONPolicies(arg)
			}
		case "templatefile":
			if len(fc.Args) == 2 {
				c.checkTemplateCall(m, fc)
			}
		case "file":
			if len(fc.Args) == 1 {
				if p, ok := c.evalPath(m, fc.Args[0]); ok {
					if _, err := os.Stat(p); err != nil {
						c.addf(fc.Args[0].Range(), "file(): expected an existing file, found none at %s", p)
					}
				}
			}
		}
		return nil
	})
}

// checkReference checks var.NAME and module.NAME.OUTPUT.
func (c *checker) checkReference(m *module, tr hcl.Traversal) {
	name, ok := attrAt(tr, 1)
	if !ok {
		return
	}
	switch tr.RootName() {
	case "var":
		if _, ok := m.cfg.Variables[name]; !ok {
			c.addf(tr.SourceRange(), "var.%s: no variable %q is declared in %s (declared: %s)",
				name, name, m.dir, strings.Join(sortedKeys(m.cfg.Variables), ", "))
		}
	case "module":
		if _, ok := m.cfg.ModuleCalls[name]; !ok {
			c.addf(tr.SourceRange(), "module.%s: no module %q is called in %s (called: %s)",
				name, name, m.dir, strings.Join(sortedKeys(m.cfg.ModuleCalls), ", "))
			return
		}
		callee := m.callees[name]
		if callee == nil {
			return // a registry module: its outputs are unknown here
		}
		// module.NAME[0].OUTPUT: skip the instance key of count/for_each.
		i := 2
		for i < len(tr) {
			if _, isIndex := tr[i].(hcl.TraverseIndex); !isIndex {
				break
			}
			i++
		}
		out, ok := attrAt(tr, i)
		if !ok {
			return // the whole module object
		}
		if _, ok := callee.cfg.Outputs[out]; !ok {
			c.addf(tr.SourceRange(), "module.%s.%s: %s declares no output %q (outputs: %s)",
				name, out, callee.dir, out, strings.Join(sortedKeys(callee.cfg.Outputs), ", "))
		}
	}
}

// checkTemplateCall compares the variables a template uses with those a
// templatefile() call passes: Terraform fails on a missing one at plan
// time, on the operator's machine; an unused one is usually a rename that
// was half done.
func (c *checker) checkTemplateCall(m *module, fc *hclsyntax.FunctionCallExpr) {
	path, ok := c.evalPath(m, fc.Args[0])
	if !ok {
		return
	}
	src, err := os.ReadFile(path)
	if err != nil {
		c.addf(fc.Args[0].Range(), "templatefile(): expected an existing template, found none at %s", path)
		return
	}
	tmpl, diags := hclsyntax.ParseTemplate(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		c.diags(diags)
		return
	}
	obj, ok := fc.Args[1].(*hclsyntax.ObjectConsExpr)
	if !ok {
		return // variables built elsewhere (a local): not checked
	}
	passed := map[string]hcl.Range{}
	for _, item := range obj.Items {
		if k := hcl.ExprAsKeyword(item.KeyExpr); k != "" {
			passed[k] = item.KeyExpr.Range()
		} else if v, ok := staticString(item.KeyExpr); ok {
			passed[v] = item.KeyExpr.Range()
		}
	}
	used := map[string]bool{}
	call := fc.Range()
	for _, tr := range hclsyntax.Variables(tmpl) {
		name := tr.RootName()
		used[name] = true
		if _, ok := passed[name]; !ok {
			c.addf(tr.SourceRange(), "template uses ${%s}, which templatefile() at %s:%d does not pass (passed: %s)",
				name, call.Filename, call.Start.Line, strings.Join(sortedKeys(passed), ", "))
		}
	}
	for _, name := range sortedKeys(passed) {
		if !used[name] {
			c.addf(passed[name], "templatefile(): passes %q, which template %s does not use", name, path)
		}
	}
}

// evalPath evaluates a file path argument with path.module, path.root and
// the string defaults of the module's variables; ok is false when it needs
// anything else.
func (c *checker) evalPath(m *module, expr hclsyntax.Expression) (string, bool) {
	vars := map[string]cty.Value{}
	for name, v := range m.cfg.Variables {
		if s, ok := v.Default.(string); ok {
			vars[name] = cty.StringVal(s)
		}
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{
		"path": cty.ObjectVal(map[string]cty.Value{
			"module": cty.StringVal(m.dir),
			"root":   cty.StringVal(c.root),
			"cwd":    cty.StringVal("."),
		}),
		"var": cty.ObjectVal(vars),
	}}
	v, diags := expr.Value(ctx)
	if diags.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
		return "", false
	}
	return v.AsString(), true
}

// checkTFVars checks the variable files shipped in the root: every setting
// names a declared variable, and every required variable is set.
func (c *checker) checkTFVars(root *module) {
	var files []string
	for _, pattern := range []string{"*.tfvars", "*.tfvars.example"} {
		found, _ := filepath.Glob(filepath.Join(root.dir, pattern))
		files = append(files, found...)
	}
	slices.Sort(files)
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			c.problems = append(c.problems, Problem{File: name, Message: err.Error()})
			continue
		}
		f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		if diags.HasErrors() {
			c.diags(diags)
			continue
		}
		attrs := f.Body.(*hclsyntax.Body).Attributes
		for _, a := range sortedKeys(attrs) {
			if _, ok := root.cfg.Variables[a]; !ok {
				c.addf(attrs[a].NameRange, "%s sets %q, which is not a variable of %s (expected one of: %s)",
					filepath.Base(name), a, root.dir, strings.Join(sortedKeys(root.cfg.Variables), ", "))
			}
		}
		for _, v := range sortedKeys(root.cfg.Variables) {
			if _, set := attrs[v]; root.cfg.Variables[v].Required && !set {
				c.problems = append(c.problems, Problem{File: name, Line: 1,
					Message: fmt.Sprintf("%s does not set required variable %q (no default)", filepath.Base(name), v)})
			}
		}
	}
}

func isLocal(source string) bool {
	return strings.HasPrefix(source, "./") || strings.HasPrefix(source, "../")
}

// attrAt returns the attribute name at step i of a traversal.
func attrAt(tr hcl.Traversal, i int) (string, bool) {
	if i >= len(tr) {
		return "", false
	}
	a, ok := tr[i].(hcl.TraverseAttr)
	return a.Name, ok
}

// staticString is the value of an expression that is a string constant.
func staticString(expr hcl.Expression) (string, bool) {
	v, diags := expr.Value(nil)
	if diags.HasErrors() || !v.IsWhollyKnown() || v.IsNull() || v.Type() != cty.String {
		return "", false
	}
	return v.AsString(), true
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
