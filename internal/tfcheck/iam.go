package tfcheck

import (
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// serviceWildcard matches an action that grants a whole service: "s3:*".
var serviceWildcard = regexp.MustCompile(`^[A-Za-z0-9-]+:\*$`)

// literal is a string constant and where it is written.
type literal struct {
	value string
	rng   hcl.Range
}

// statement is what the IAM rule needs of one policy statement, from either
// syntax. Fields that are not constants are left out: they cannot be judged.
type statement struct {
	kind       string // how the statement is written, for messages
	allow      bool
	actions    []literal
	notActions *hcl.Range // where NotAction is, when present
	resources  []literal
}

// checkPolicyDocument checks the statement blocks of a
// data "aws_iam_policy_document", including dynamic "statement" blocks.
func (c *checker) checkPolicyDocument(body *hclsyntax.Body) {
	for _, b := range body.Blocks {
		switch {
		case b.Type == "statement":
			c.checkStatement(blockStatement(b.Body))
		case b.Type == "dynamic" && len(b.Labels) == 1 && b.Labels[0] == "statement":
			for _, content := range b.Body.Blocks {
				if content.Type == "content" {
					c.checkStatement(blockStatement(content.Body))
				}
			}
		}
	}
}

func blockStatement(body *hclsyntax.Body) statement {
	st := statement{kind: `aws_iam_policy_document statement`, allow: true}
	if a := body.Attributes["effect"]; a != nil {
		// A computed effect counts as Allow: it may be one.
		if s, ok := staticString(a.Expr); ok && strings.EqualFold(s, "Deny") {
			st.allow = false
		}
	}
	if a := body.Attributes["actions"]; a != nil {
		st.actions = literals(a.Expr)
	}
	if a := body.Attributes["not_actions"]; a != nil {
		st.notActions = &a.NameRange
	}
	if a := body.Attributes["resources"]; a != nil {
		st.resources = literals(a.Expr)
	}
	return st
}

// checkJSONPolicies finds the statements in a jsonencode() argument: any
// object with an Action or NotAction key.
func (c *checker) checkJSONPolicies(arg hclsyntax.Expression) {
	// The callback returns no diagnostics, so neither does VisitAll.
	_ = hclsyntax.VisitAll(arg, func(n hclsyntax.Node) hcl.Diagnostics {
		obj, ok := n.(*hclsyntax.ObjectConsExpr)
		if !ok {
			return nil
		}
		items := map[string]hclsyntax.ObjectConsItem{}
		for _, item := range obj.Items {
			if k := hcl.ExprAsKeyword(item.KeyExpr); k != "" {
				items[k] = item
			} else if k, ok := staticString(item.KeyExpr); ok {
				items[k] = item
			}
		}
		action, hasAction := items["Action"]
		notAction, hasNotAction := items["NotAction"]
		if !hasAction && !hasNotAction {
			return nil
		}
		st := statement{kind: "jsonencode() policy statement", allow: true}
		if e, ok := items["Effect"]; ok {
			if s, ok := staticString(e.ValueExpr); ok && strings.EqualFold(s, "Deny") {
				st.allow = false
			}
		}
		if hasAction {
			st.actions = literals(action.ValueExpr)
		}
		if hasNotAction {
			rng := notAction.KeyExpr.Range()
			st.notActions = &rng
		}
		if r, ok := items["Resource"]; ok {
			st.resources = literals(r.ValueExpr)
		}
		c.checkStatement(st)
		return nil
	})
}

// checkStatement applies the least-privilege rule to an Allow statement.
func (c *checker) checkStatement(st statement) {
	if !st.allow {
		return // a Deny may use wildcards: it only takes away
	}
	if st.notActions != nil {
		c.addf(*st.notActions, "%s (Effect Allow) uses NotAction: it grants every action but those listed; expected an explicit list of actions", st.kind)
	}
	s3 := ""
	for _, a := range st.actions {
		if a.value == "*" || serviceWildcard.MatchString(a.value) {
			c.addf(a.rng, "%s (Effect Allow) grants action %q: every action of %s; expected the actions it needs, by name",
				st.kind, a.value, service(a.value))
		}
		if s3 == "" && strings.HasPrefix(strings.ToLower(a.value), "s3:") {
			s3 = a.value
		}
	}
	if s3 == "" {
		return
	}
	for _, r := range st.resources {
		if r.value == "*" {
			c.addf(r.rng, "%s (Effect Allow) grants %s on resource \"*\" (every bucket); expected bucket or object ARNs", st.kind, s3)
		}
	}
}

func service(action string) string {
	if s, _, ok := strings.Cut(action, ":"); ok {
		return "service " + s
	}
	return "every service"
}

// literals returns the string constants of a list (or of a single string,
// as JSON policies allow); other elements are skipped.
func literals(expr hclsyntax.Expression) []literal {
	if tuple, ok := expr.(*hclsyntax.TupleConsExpr); ok {
		var out []literal
		for _, e := range tuple.Exprs {
			if s, ok := staticString(e); ok {
				out = append(out, literal{s, e.Range()})
			}
		}
		return out
	}
	if s, ok := staticString(expr); ok {
		return []literal{{s, expr.Range()}}
	}
	return nil
}
