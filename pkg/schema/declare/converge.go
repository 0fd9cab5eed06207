package declare

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/cohuron/deploy/pkg/schema"
)

// OrderHint is an order of the files without order problems (Plan.Order).
type OrderHint = schema.OrderHint

// Request is a declarative release's schema step.
type Request struct {
	Importer *schema.Importer // the live database
	Files    []schema.File    // in import order
	Options                   // schemas and declarations
	Strict   bool
	Host     string // names this host's shadow databases; recorded
	Digest   string // of the files, recorded once applied
	Seq      uint64 // recorded
	Now      time.Time
	// Crash, when set, is called at each point a kill -9 is tested at
	// (CrashPoints); the agent's crash injection.
	Crash func(point string)
}

// CrashPoints are where Converge calls Request.Crash: the shadow imported
// (before the diff), the diff made (before anything is applied), and
// every statement run in the transaction (before its commit).
var CrashPoints = []string{"schema-shadow-imported", "schema-diffed", "schema-applying"}

func (r Request) crash(point string) {
	if r.Crash != nil {
		r.Crash(point)
	}
}

// Result is what Converge did.
type Result struct {
	// FirstInstall: the live database was empty and the files were
	// imported into it, rows and all.
	FirstInstall bool
	Statements   []Statement      // applied to the live database
	Warnings     []schema.Warning // statements the import skipped
	Notes        []string         // what a declaration asked that was not done (Plan.Notes)
	// AlreadyDone: once the lock was held, the database had these files'
	// schema (another host sharing it applied them): nothing was run.
	AlreadyDone bool
}

// Converge brings the live database to the schema of r.Files. Into an
// empty database (no table in r.Schemas) the files are imported as the
// app's tooling does, loading their rows; otherwise they are imported
// into a shadow database, compared with live, and what adds applied in
// one transaction (Apply) that also records r.Digest. A change that
// loses data without a declaration is a *RefusedError, nothing applied;
// an import the files fail is a *schema.FileError.
func Converge(ctx context.Context, r Request) (*Result, error) {
	live, err := sql.Open("pgx", r.Importer.URL)
	if err != nil {
		return nil, err
	}
	defer func() { _ = live.Close() }()
	record := statements(schema.RecordDeclared(r.Digest, r.Seq, r.Host, r.Now))
	empty, err := isEmpty(ctx, live)
	if err != nil {
		return nil, fmt.Errorf("looking at the live database: %w", err)
	}
	if empty {
		res, err := firstInstall(ctx, live, r, record)
		if err != nil || res != nil {
			return res, err
		}
		// Another host sharing the database installed it meanwhile.
	}
	p, warnings, err := preview(ctx, live, r)
	if err != nil {
		return nil, err
	}
	r.crash("schema-diffed")
	if err := p.Err(); err != nil {
		return &Result{Warnings: warnings}, err
	}
	out := &Result{Statements: p.Statements, Warnings: warnings, Notes: p.Notes}
	p.Statements = append(p.Statements, record...)
	err = apply(ctx, live, p, r.Importer.LockTimeout, func() { r.crash("schema-applying") }, r.Digest)
	if errors.Is(err, errAlreadyDone) {
		// Another host sharing the database applied these files first.
		return &Result{Warnings: warnings, AlreadyDone: true}, nil
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// firstInstall imports r.Files into the empty live database (rows and
// all) under the schema lock, held by a session for the whole import
// (psql's imports are not one transaction), and records the digest. It
// returns nil, nil when the database had tables once the lock was held:
// another host sharing it installed first.
func firstInstall(ctx context.Context, live *sql.DB, r Request, record []Statement) (*Result, error) {
	conn, err := live.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SELECT pg_advisory_lock(%d)", schema.LockKey)); err != nil {
		return nil, fmt.Errorf("taking the schema lock: %w", err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("SELECT pg_advisory_unlock(%d)", schema.LockKey))
	}()
	if empty, err := isEmpty(ctx, live); err != nil || !empty {
		return nil, err
	}
	res, err := r.Importer.Import(ctx, r.Files, schema.ShadowOptions{Host: r.Host, Strict: r.Strict})
	if err != nil {
		return nil, err
	}
	for _, s := range record { // on the locked session: the lock is ours
		if _, err := conn.ExecContext(ctx, s.SQL); err != nil {
			return nil, fmt.Errorf("recording the schema files' digest: %w", err)
		}
	}
	return &Result{FirstInstall: true, Warnings: res.Warnings}, nil
}

// Preview is what Converge would do, without doing it: the files imported
// into a shadow database and compared with live; nothing is written to
// live. An empty live database is a first install (a nil plan).
func Preview(ctx context.Context, r Request) (p *Plan, warnings []schema.Warning, firstInstall bool, err error) {
	live, err := sql.Open("pgx", r.Importer.URL)
	if err != nil {
		return nil, nil, false, err
	}
	defer func() { _ = live.Close() }()
	if empty, err := isEmpty(ctx, live); err != nil || empty {
		return nil, nil, empty, err
	}
	// Shadows of their own: a preview (agent plan, schema diff) must not
	// drop the one a converge on this host is comparing.
	r.Host += "-preview"
	p, warnings, err = preview(ctx, live, r)
	return p, warnings, false, err
}

func preview(ctx context.Context, live *sql.DB, r Request) (*Plan, []schema.Warning, error) {
	var p *Plan
	res, err := r.Importer.Shadow(ctx, r.Files, schema.ShadowOptions{Host: r.Host, Strict: r.Strict}, func(ctx context.Context, url string) error {
		shadow, err := sql.Open("pgx", url)
		if err != nil {
			return err
		}
		defer func() { _ = shadow.Close() }()
		r.crash("schema-shadow-imported")
		p, err = Diff(ctx, live, shadow, r.Options)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	p.Order = schema.HintOrder(r.Files, res.Warnings)
	return p, res.Warnings, nil
}

func statements(sqls []string) []Statement {
	out := make([]Statement, len(sqls))
	for i, q := range sqls {
		out[i] = Statement{SQL: q, Comment: "record the schema files' digest"}
	}
	return out
}
