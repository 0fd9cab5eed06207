package declare

import (
	"context"
	"database/sql"

	"github.com/cohuron/deploy/pkg/schema"
)

// Compare plans, from files alone, what a host whose live database has
// the schema of from (the running release's files) would do to reach to
// (a new release's): both are imported into shadow databases on the
// server of im (named for host), which need not hold the live database
// (a scratch server: publisher preview in a pull request's job), and
// compared as Diff compares live with a shadow. Its database name stands
// for the live database's (three-part names in the files). The
// warnings are to's import's. A live database that drifted from its
// files, or whose rows a change depends on (NOT NULL over rows, a unique
// index over duplicates), is not seen: agent plan on a host is.
func Compare(ctx context.Context, im *schema.Importer, from, to []schema.File, strict bool, host string, opt Options) (*Plan, []schema.Warning, error) {
	var p *Plan
	var warnings []schema.Warning
	_, err := im.Shadow(ctx, from, schema.ShadowOptions{Host: host + "-running"}, func(ctx context.Context, liveURL string) error {
		live, err := sql.Open("pgx", liveURL)
		if err != nil {
			return err
		}
		defer func() { _ = live.Close() }()
		res, err := im.Shadow(ctx, to, schema.ShadowOptions{Host: host + "-next", Strict: strict}, func(ctx context.Context, url string) error {
			desired, err := sql.Open("pgx", url)
			if err != nil {
				return err
			}
			defer func() { _ = desired.Close() }()
			p, err = Diff(ctx, live, desired, opt)
			return err
		})
		if res != nil {
			warnings = res.Warnings
			p.Order = schema.HintOrder(to, warnings)
		}
		return err
	})
	return p, warnings, err
}
