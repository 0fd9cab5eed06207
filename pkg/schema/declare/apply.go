package declare

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/cohuron/deploy/pkg/schema"
)

// Apply runs p's statements on live in one transaction under the agent's
// schema lock (schema.LockKey), each lock wait bounded by lockTimeout
// (0: schema.DefaultLockTimeout). A plan that refuses anything is not
// applied; a failing statement rolls everything back and is named.
func Apply(ctx context.Context, live *sql.DB, p *Plan, lockTimeout time.Duration) error {
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
	defer tx.Rollback() // after Commit, a no-op
	for _, q := range []string{
		fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", schema.LockKey),
		fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", lockTimeout.Milliseconds()),
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("applying the schema change: %s: %w", q, err)
		}
	}
	for i, s := range p.Statements {
		if _, err := tx.ExecContext(ctx, s.SQL); err != nil {
			return fmt.Errorf("applying the schema change, statement %d of %d (%s), nothing was applied: %w\n%s", i+1, len(p.Statements), s.Comment, err, s.SQL)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("applying the schema change: commit: %w", err)
	}
	return nil
}
