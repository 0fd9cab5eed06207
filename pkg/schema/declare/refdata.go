package declare

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// referenceRows plans, for each reference table ("schema.table"), the
// insert of the rows the desired database has and live lacks, by primary
// key: the files' rows of a table the app reads as data (entity types,
// labels, permissions), which a deploy must bring. No row of live is
// updated or deleted; a row a user deleted from a reference table comes
// back (it is the files' to say). A reference table the files give no
// primary key cannot be matched: it gets no row, and a note says why
// (the schema change itself is not held back by a declaration about
// data; nothing is written, so nothing is lost).
func referenceRows(ctx context.Context, live, desired *sql.DB, tables []string) (out []Statement, notes []string, err error) {
	for _, name := range tables {
		sch, table, ok := strings.Cut(name, ".")
		if !ok {
			return nil, nil, filesErr("schema.referenceData: expected schema.table, found %q", name)
		}
		rel := quote(sch) + "." + quote(table)
		var exists bool
		if err := desired.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, rel).Scan(&exists); err != nil {
			return nil, nil, err
		}
		if !exists {
			return nil, nil, filesErr("schema.referenceData: the schema files create no table %s", name)
		}
		pk, err := column(ctx, desired, `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`, rel)
		if err != nil {
			return nil, nil, err
		}
		if len(pk) == 0 {
			notes = append(notes, fmt.Sprintf("schema.referenceData: %s gets no rows: the schema files give it no primary key, so its rows cannot be matched with live's (give it one in its file)", name))
			continue
		}
		cols, err := column(ctx, desired, `SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`, rel)
		if err != nil {
			return nil, nil, err
		}
		key := "jsonb_build_array(" + quoteAll(pk) + ")::text"
		have := map[string]bool{}
		if err := live.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, rel).Scan(&exists); err != nil {
			return nil, nil, err
		}
		if exists {
			keys, err := column(ctx, live, "SELECT "+key+" FROM "+rel)
			if err != nil {
				return nil, nil, fmt.Errorf("reading the keys of %s in the live database: %w", name, err)
			}
			for _, k := range keys {
				have[k] = true
			}
		}
		rows, err := desired.QueryContext(ctx, "SELECT "+key+", to_jsonb(t)::text FROM "+rel+" t")
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s in the shadow database: %w", name, err)
		}
		var missing []string
		for rows.Next() {
			var k, row string
			if err := rows.Scan(&k, &row); err != nil {
				_ = rows.Close()
				return nil, nil, err
			}
			if !have[k] {
				missing = append(missing, row)
			}
		}
		_ = rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
		if len(missing) == 0 {
			continue
		}
		list := quoteAll(cols)
		data := "[" + strings.Join(missing, ",") + "]"
		out = append(out, Statement{
			// ON CONFLICT: a row a user added with the same key between
			// the diff and the apply stays theirs.
			SQL: fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM jsonb_populate_recordset(NULL::%s, '%s'::jsonb) ON CONFLICT (%s) DO NOTHING",
				rel, list, list, rel, strings.ReplaceAll(data, "'", "''"), quoteAll(pk)),
			Comment: fmt.Sprintf("reference data: %d row(s) of %s the files have and live lacks (by primary key)", len(missing), name),
		})
		// Keys given explicitly do not advance a serial or identity
		// column's sequence: move it past them, or the next insert
		// collides.
		seqCols, err := column(ctx, desired, `SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND pg_get_serial_sequence($2, attname::text) IS NOT NULL ORDER BY attnum`, rel, rel)
		if err != nil {
			return nil, nil, err
		}
		for _, c := range seqCols {
			lit := "'" + strings.ReplaceAll(rel, "'", "''") + "'"
			out = append(out, Statement{
				SQL: fmt.Sprintf("SELECT setval(pg_get_serial_sequence(%s, %s), greatest((SELECT max(%s) FROM %s), 1))",
					lit, "'"+strings.ReplaceAll(c, "'", "''")+"'", quote(c), rel),
				Comment: fmt.Sprintf("reference data: the sequence of %s.%s past the rows' keys", name, c),
			})
		}
	}
	return out, notes, nil
}

func column(ctx context.Context, db *sql.DB, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return strings.Join(q, ", ")
}
