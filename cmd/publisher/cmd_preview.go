package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/plan"
	"github.com/cohuron/deploy/pkg/release"
	"github.com/cohuron/deploy/pkg/schema"
	"github.com/cohuron/deploy/pkg/schema/declare"
)

type previewOptions struct {
	env, manifest string
	schemaServer  string
	markdown      bool
	json          bool
	store         storeFlags
	trust         trustFlags
}

func (o *previewOptions) addFlags(fs flagSet) {
	fs.StringVar(&o.env, "env", "", "environment")
	fs.StringVar(&o.manifest, "manifest", "", "the changed environment manifest (default manifests/ENV.yaml)")
	fs.BoolVar(&o.markdown, "markdown", false, "print Markdown (for a pull request's job summary)")
	fs.BoolVar(&o.json, "json", false, "print the current and next release, the plan and the hosts as JSON")
	fs.StringVar(&o.schemaServer, "schema-server", "", "a PostgreSQL server (URL, a role with CREATEDB) where a declarative schema change is previewed: the running release's and the new release's schema files are imported into scratch databases there and compared, statement by statement; its database name stands for the hosts' (default: the schema files changed are listed, not the statements)")
}

// previewResult is what --json prints.
type previewResult struct {
	Env           string    `json:"env"`
	CurrentSeq    uint64    `json:"currentSeq"`
	NextSeq       uint64    `json:"nextSeq"`
	ConfigChanged bool      `json:"configChanged"`
	Changed       []string  `json:"changedInputs"`
	Plan          plan.Plan `json:"plan"`
	// Schema is the declarative schema change, statement by statement,
	// when --schema-server let the preview compute it.
	Schema *schemaPreview `json:"schema,omitempty"`
	Hosts  []hostStatus   `json:"hosts"`
}

// schemaPreview is what a declarative schema change runs on a host whose
// database has the running release's schema.
type schemaPreview struct {
	// NotComputed says why the statements are not listed.
	NotComputed string              `json:"notComputed,omitempty"`
	Statements  []declare.Statement `json:"statements,omitempty"`
	Refused     []declare.Refusal   `json:"refused,omitempty"`
	Notes       []string            `json:"notes,omitempty"`
	Warnings    []schema.Warning    `json:"warnings,omitempty"`
	Order       *schema.OrderHint   `json:"order,omitempty"`
}

// preview prints what publishing a changed environment manifest would do
// to the hosts, without signing or writing anything: the plan of a host
// that runs the current release and has not drifted, each step with its
// reason, and which hosts that is.
func (c *CLI) preview(ctx context.Context, args []string) error {
	var o previewOptions
	fs := c.flags("preview", "--store URL --env ENV (--policy FILE | --key cosign.pub|awskms:///…) [--manifest FILE] [--markdown|--json]")
	o.addFlags(fs)
	o.store.add(fs)
	o.trust.add(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.fromTerraform(ctx, &o.store, &o.env, nil, &o.trust); err != nil {
		return err
	}
	if err := required("env", o.env, "store", o.store.url); err != nil {
		return err
	}
	if o.manifest == "" {
		o.manifest = filepath.Join("manifests", o.env+".yaml")
	}
	st, err := o.store.open(ctx)
	if err != nil {
		return err
	}
	pol, err := o.trust.load(ctx, c.password(false))
	if err != nil {
		return err
	}
	const refused = "nothing was previewed"
	m, err := loadEnvironment(o.manifest, o.env)
	if err != nil {
		return c.refused(err, refused)
	}
	p := &release.Publisher{Store: st, Now: c.now, Log: c.log}
	pv, err := p.Preview(ctx, release.Request{Env: m.env, Policy: pol, Check: m.fit})
	if err != nil {
		return c.refused(err, refused)
	}
	cur := pv.Current.Release
	res := previewResult{
		Env: o.env, CurrentSeq: cur.Seq, NextSeq: pv.Next.Seq,
		ConfigChanged: cur.Inputs.Config.Digest != pv.Next.Inputs.Config.Digest,
		Changed:       changedInputs(&cur.Inputs, &pv.Next.Inputs),
		Plan:          plan.Preview(plan.Desired{Release: cur, Digest: pv.Current.Digest}, plan.Desired{Release: pv.Next, Digest: pv.NextDigest}),
	}
	if pv.SchemaFiles != nil {
		if res.Schema, err = c.previewSchema(ctx, pv, o.schemaServer); err != nil {
			return err
		}
	}
	if res.Hosts, _, err = c.hostStatuses(ctx, st, o.env); err != nil {
		return err
	}
	switch {
	case o.json:
		return c.printJSON(res)
	case o.markdown:
		writePreviewMarkdown(c.out, o.manifest, pv, res)
	default:
		writePreviewText(c.out, o.manifest, pv, res)
	}
	return nil
}

// previewSchema compares the schema files of the running and the next
// release on server (scratch databases, dropped afterwards), as a host
// whose database has the running release's schema would.
func (c *CLI) previewSchema(ctx context.Context, pv *release.Preview, server string) (*schemaPreview, error) {
	if server == "" {
		return &schemaPreview{NotComputed: "pass --schema-server URL (a PostgreSQL server where scratch databases may be created) to list the statements; agent plan on a host lists them against its live database"}, nil
	}
	cur, next := pv.Current.Release, pv.Next
	dir, cleanup, err := schema.WriteTemp(pv.SchemaFiles)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	from, err := schema.Load(dir, cur.SchemaOrder())
	if err != nil {
		return nil, err
	}
	to, err := schema.Load(dir, next.SchemaOrder())
	if err != nil {
		return nil, err
	}
	sc := next.Spec.Schema
	im := &schema.Importer{URL: server, Log: c.log, Now: c.now, Env: []string{"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8"}}
	p, warnings, err := declare.Compare(ctx, im, from, to, sc.Strict, "publisher-preview",
		declare.Options{Schemas: sc.Schemas, Renames: sc.Renames, Drops: sc.Drops, ReferenceData: sc.ReferenceData})
	if err != nil {
		return nil, fmt.Errorf("previewing the schema change on --schema-server: %w", err)
	}
	return &schemaPreview{Statements: p.Statements, Refused: p.Refused, Notes: p.Notes, Warnings: warnings, Order: p.Order}, nil
}

// changedInputs names the converge inputs whose digest differs.
func changedInputs(a, b *manifest.Inputs) []string {
	var out []string
	for _, in := range []struct {
		name string
		a, b manifest.Input
	}{{"dependencies", a.Dependencies, b.Dependencies}, {"compose", a.Compose, b.Compose}, {"schema", a.Schema, b.Schema}, {"config", a.Config, b.Config}, {"code", a.Code, b.Code}} {
		if in.a.Digest != in.b.Digest {
			out = append(out, in.name)
		}
	}
	return out
}

// hostNote says whether the previewed plan is what a host will do.
func hostNote(h hostStatus, curSeq uint64) string {
	switch {
	case h.Health == "unreadable":
		return "unknown: its status object is unreadable"
	case h.CurrentSeq != curSeq:
		return fmt.Sprintf("more: it runs seq %d, not %d, so it also applies what changed since", h.CurrentSeq, curSeq)
	case h.Blocked != "":
		return "not yet: blocked (" + h.Blocked + ")"
	case h.Health == "unhealthy":
		return "more: it is unhealthy, so it also repairs what drifted"
	}
	return "this plan"
}

func previewSummary(manifestFile string, pv *release.Preview, res previewResult) (intro, verdict string) {
	cur := pv.Current.Release
	intro = fmt.Sprintf("Publishing %s makes release %d of %s, a config-only release that keeps the bundle of release %d (%s, commit %s). Release %d was verified (signed by %s).",
		manifestFile, res.NextSeq, res.Env, cur.Seq, cur.Bundle.Key, short(cur.Source.Commit), cur.Seq, strings.Join(pv.Current.Signers, ", "))
	if len(pv.Builds) > 0 {
		intro += fmt.Sprintf(" The publish builds %s at publish time (its inputs changed).", strings.Join(pv.Builds, ", "))
	}
	switch {
	case !res.ConfigChanged:
		verdict = "The manifest does not change the environment: publishing it only renews the release's expiry (the hosts still move to a new release directory and switch)."
	default:
		verdict = "Changed inputs: " + strings.Join(res.Changed, ", ") + ". A host that runs release " + fmt.Sprint(cur.Seq) + " and has not drifted would:"
	}
	return intro, verdict
}

func writePreviewText(w io.Writer, manifestFile string, pv *release.Preview, res previewResult) {
	intro, verdict := previewSummary(manifestFile, pv, res)
	fmt.Fprintf(w, "%s\n%s\n", intro, verdict)
	fmt.Fprintf(w, "seq %d -> %d: %d step(s)\n", res.Plan.FromSeq, res.Plan.Seq, len(res.Plan.Steps))
	for _, s := range res.Plan.Steps {
		fmt.Fprintf(w, "  %s\n", s)
	}
	for _, s := range res.Plan.Skipped {
		fmt.Fprintf(w, "  skip %s\n", s)
	}
	if sp := res.Schema; sp != nil {
		fmt.Fprintf(w, "schema, declarative: ")
		switch {
		case sp.NotComputed != "":
			fmt.Fprintf(w, "statements not computed: %s\n", sp.NotComputed)
		default:
			fmt.Fprintf(w, "%d statement(s) on a database with release %d's schema\n", len(sp.Statements), res.CurrentSeq)
		}
		for _, st := range sp.Statements {
			fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(st.String(), "\n", "\n    "))
		}
		for _, r := range sp.Refused {
			fmt.Fprintf(w, "  refused %s\n", r)
		}
		for _, n := range sp.Notes {
			fmt.Fprintf(w, "  note %s\n", n)
		}
		for _, wn := range sp.Warnings {
			fmt.Fprintf(w, "  warning %s\n", firstLine(wn.String()))
		}
		for _, l := range sp.Order.Lines() {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if len(res.Hosts) == 0 {
		fmt.Fprintf(w, "no host has reported for %s yet\n", res.Env)
	}
	for _, h := range res.Hosts {
		fmt.Fprintf(w, "host %s: seq %d, %s: %s\n", h.Host, h.CurrentSeq, orDash(h.Health), hostNote(h, res.CurrentSeq))
	}
}

func writePreviewMarkdown(w io.Writer, manifestFile string, pv *release.Preview, res previewResult) {
	intro, verdict := previewSummary(manifestFile, pv, res)
	fmt.Fprintf(w, "### %s: what this change does to the hosts\n\n%s\n\n%s\n\n", res.Env, intro, verdict)
	fmt.Fprintf(w, "| step | target | why |\n|---|---|---|\n")
	for _, s := range res.Plan.Steps {
		fmt.Fprintf(w, "| %s | %s | %s |\n", s.Kind, mdCell(s.Target), mdCell(s.Reason))
	}
	if len(res.Plan.Skipped) > 0 {
		fmt.Fprintf(w, "\nNot run:\n\n| step | target | why not |\n|---|---|---|\n")
		for _, s := range res.Plan.Skipped {
			fmt.Fprintf(w, "| %s | %s | %s |\n", s.Kind, mdCell(s.Target), mdCell(s.Reason))
		}
	}
	if sp := res.Schema; sp != nil {
		fmt.Fprintf(w, "\n#### Schema (declarative)\n\n")
		if sp.NotComputed != "" {
			fmt.Fprintf(w, "Statements not computed: %s.\n", sp.NotComputed)
		} else {
			fmt.Fprintf(w, "On a database with release %d's schema: %d statement(s), %d refused.\n\n", res.CurrentSeq, len(sp.Statements), len(sp.Refused))
			if len(sp.Statements) > 0 {
				fmt.Fprintf(w, "```sql\n")
				for _, st := range sp.Statements {
					fmt.Fprintf(w, "%s;\n", st)
				}
				fmt.Fprintf(w, "```\n")
			}
			for _, r := range sp.Refused {
				fmt.Fprintf(w, "- **refused** %s\n", mdCell(r.String()))
			}
			for _, n := range sp.Notes {
				fmt.Fprintf(w, "- note: %s\n", mdCell(n))
			}
			if len(sp.Warnings) > 0 {
				fmt.Fprintf(w, "- %d statement(s) of the files fail in the import and are skipped, as psql skips them\n", len(sp.Warnings))
			}
			if h := sp.Order; h != nil && len(h.Moves) > 0 {
				fmt.Fprintf(w, "- %d statement(s) fail only because of the files' order; `agent schema diff` on a host prints an order that avoids it\n", len(h.Moves))
			}
		}
	}
	fmt.Fprintf(w, "\n#### Hosts\n\n")
	if len(res.Hosts) == 0 {
		fmt.Fprintf(w, "No host has reported for %s yet.\n", res.Env)
		return
	}
	fmt.Fprintf(w, "| host | runs | health | does |\n|---|---|---|---|\n")
	for _, h := range res.Hosts {
		fmt.Fprintf(w, "| %s | seq %d | %s | %s |\n", mdCell(h.Host), h.CurrentSeq, mdCell(orDash(h.Health)), mdCell(hostNote(h, res.CurrentSeq)))
	}
}

// mdCell keeps a value inside its table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
