package agent

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cohuron/deploy/pkg/bundle"
	"github.com/cohuron/deploy/pkg/manifest"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/schema"
	"github.com/cohuron/deploy/pkg/schema/declare"
)

// SchemaDiff is the live database against the running release's schema
// files (schema.mode declarative), as `agent schema diff` prints it.
type SchemaDiff struct {
	Seq          uint64              `json:"seq"`
	FirstInstall bool                `json:"firstInstall,omitempty"` // the database is empty
	Statements   []declare.Statement `json:"statements,omitempty"`
	Refused      []declare.Refusal   `json:"refused,omitempty"`
	Warnings     []schema.Warning    `json:"warnings,omitempty"`
	Notes        []string            `json:"notes,omitempty"` // what a declaration asked that the change does not do
	// Order is an order of the files in which no statement fails because
	// of the order, when some did (schema diff tries it; plan reads it
	// from the errors).
	Order *schema.OrderHint `json:"order,omitempty"`
}

// SchemaDiff imports the running release's schema files into a shadow
// database and compares it with the live one. It writes nothing to the
// live database, the state or the host.
func (a *Agent) SchemaDiff(ctx context.Context) (*SchemaDiff, error) {
	st, err := a.states.Load()
	if err != nil {
		return nil, err
	}
	if st.Current == nil || st.Current.Spec == nil || st.Current.Spec.Schema == nil {
		return nil, fault.Usage(errors.New("no running release with a schema section on this host"))
	}
	sc := st.Current.Spec.Schema
	if !sc.Declarative() {
		return nil, fault.Usage(fmt.Errorf("the running release (seq %d) has schema.mode %q: schema diff compares declarative schemas (schema.mode: declarative)", st.Current.Seq, sc.Mode))
	}
	rel := currentAsRelease(st.Current)
	files, err := schema.Load(st.Current.Dir, rel.SchemaOrder())
	if err != nil {
		return nil, err
	}
	return a.diffSchema(ctx, rel, files, true)
}

// diffSchema compares the live database with the schema files of rel
// (checked against rel's digests). With tryOrder, an order hint is tried
// (OrderThatWorks: more shadow imports).
func (a *Agent) diffSchema(ctx context.Context, rel *manifest.Release, files []schema.File, tryOrder bool) (*SchemaDiff, error) {
	sc := rel.Spec.Schema
	for _, f := range files {
		if want := rel.Inputs.Schema.Files[f.Name]; f.SHA256 != want {
			return nil, fmt.Errorf("schema file %s (%s): sha256 %s, the release signed %s", f.Name, f.Path, f.SHA256, want)
		}
	}
	im, err := a.importer(ctx, sc)
	if err != nil {
		return nil, err
	}
	p, warnings, first, err := declare.Preview(ctx, a.declareRequest(im, files, sc))
	if err != nil {
		return nil, err
	}
	d := &SchemaDiff{Seq: rel.Seq, FirstInstall: first, Warnings: warnings}
	if p != nil {
		d.Statements, d.Refused, d.Notes, d.Order = p.Statements, p.Refused, p.Notes, p.Order
	}
	if tryOrder && d.Order != nil {
		if d.Order, err = im.OrderThatWorks(ctx, files, warnings, schema.ShadowOptions{Host: a.Cfg.HostID + "-order"}); err != nil {
			return nil, fmt.Errorf("trying an order of the schema files without order problems: %w", err)
		}
	}
	return d, nil
}

// planSchema is diffSchema for a release not staged yet (agent plan): its
// schema files are read from its verified bundle.
func (a *Agent) planSchema(ctx context.Context, rel *manifest.Release) (*SchemaDiff, error) {
	path, err := a.bundleFile(ctx, rel)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	data, err := bundle.ReadFiles(f, rel.SchemaOrder(), 64<<20)
	f.Close()
	if err != nil {
		return nil, err
	}
	dir, cleanup, err := schema.WriteTemp(data)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	files, err := schema.Load(dir, rel.SchemaOrder())
	if err != nil {
		return nil, err
	}
	return a.diffSchema(ctx, rel, files, false)
}
