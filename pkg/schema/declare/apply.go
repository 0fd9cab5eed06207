package declare

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", which Atlas inspects through

	"github.com/cohuron/deploy/pkg/schema"
)

// Apply runs p's statements on live in one transaction under the agent's
// schema lock (schema.LockKey), each lock wait bounded by lockTimeout
// (0: schema.DefaultLockTimeout). A plan that refuses anything is not
// applied; a failing statement rolls everything back and is named.
func Apply(ctx context.Context, live *sql.DB, p *Plan, lockTimeout time.Duration) error {
	return apply(ctx, live, p, lockTimeout, nil, "")
}

// errAlreadyDone: the database had the files' schema once the lock was held.
var errAlreadyDone = errors.New("another host applied these schema files first")

// apply is Apply, calling beforeCommit (when set) once every statement
// ran; with a digest, it first checks under the lock that no host
// recorded that digest meanwhile (errAlreadyDone, nothing run).
func apply(ctx context.Context, live *sql.DB, p *Plan, lockTimeout time.Duration, beforeCommit func(), digest string) error {
	if err := p.Err(); err != nil {
		return err
	}
	if len(p.Statements) == 0 {
		return nil
	}
	if lockTimeout <= 0 {
		lockTimeout = schema.DefaultLockTimeout
	}
	tx, err := live.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("applying the schema change: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	for _, q := range []string{
		fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", schema.LockKey),
		fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", lockTimeout.Milliseconds()),
		// Functions are created before the tables they may name.
		"SET LOCAL check_function_bodies = off",
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("applying the schema change: %s: %w", q, err)
		}
	}
	if digest != "" {
		var done bool
		err := tx.QueryRowContext(ctx, schema.HistoryExistsQuery).Scan(&done)
		if err == nil && done {
			err = tx.QueryRowContext(ctx, schema.DeclaredQuery, schema.DeclarativeFile, digest).Scan(&done)
		}
		if err != nil {
			return fmt.Errorf("applying the schema change: reading the schema history: %w", err)
		}
		if done {
			return errAlreadyDone
		}
	}
	for i, s := range p.Statements {
		if _, err := tx.ExecContext(ctx, s.SQL); err != nil {
			return &StatementError{N: i + 1, Of: len(p.Statements), Statement: s, Err: err}
		}
	}
	if beforeCommit != nil {
		beforeCommit()
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("applying the schema change: commit: %w", err)
	}
	return nil
}

// StatementError is a statement of a plan the live database refused;
// nothing of the plan was applied.
type StatementError struct {
	N, Of     int
	Statement Statement
	Err       error
}

func (e *StatementError) Error() string {
	return fmt.Sprintf("applying the schema change, statement %d of %d (%s), nothing was applied: %v\n%s", e.N, e.Of, e.Statement.Comment, e.Err, e.Statement.SQL)
}

func (e *StatementError) Unwrap() error { return e.Err }

// Transient reports whether the statement failed for a reason of the
// moment (a lock timeout, a deadlock, a lost connection, a server short
// of resources) rather than because of the live data or the files (a
// unique index over duplicates, a foreign key rows break): only then is
// trying again on the next poll of any use.
func (e *StatementError) Transient() bool {
	var pe *pgconn.PgError
	if !errors.As(e.Err, &pe) {
		return true
	}
	switch pe.Code[:2] {
	case "08", "40", "53", "55", "57", "58":
		return true
	}
	return false
}

// isEmpty reports whether the live database has no table at all outside
// the system's and the agent's own schemas (a first install: the files
// are imported into it, rows and all). Any table anywhere, readable by
// this role or not, and the files go through a shadow instead: a wrong
// schema.schemas never lets them run on data.
func isEmpty(ctx context.Context, live *sql.DB) (bool, error) {
	var n int
	err := live.QueryRowContext(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1) AND n.nspname NOT LIKE 'pg_toast%'`, schema.HistorySchema).Scan(&n)
	return n == 0, err
}
