package declare

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"
)

// catalog queries: name -> definition of each object of a schema, those
// of extensions left out (the extension makes them).
const (
	functionsQuery = `SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid),
  pg_get_function_result(p.oid) || ' ' || pg_get_function_identity_arguments(p.oid)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = $1 AND p.prokind IN ('f', 'p')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')`
	viewsQuery = `SELECT c.relname, pg_get_viewdef(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind = 'v'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')`
	triggersQuery = `SELECT c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid), c.relname, t.tgname
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND NOT t.tgisinternal`
)

// objects plans the functions, views and triggers of schema sch that the
// desired database has and live lacks or defines otherwise: created or
// replaced with the desired definition (they hold no rows). Objects only
// live has are left as they are.
func objects(ctx context.Context, live, desired *sql.DB, sch string) (functions, rest []Statement, err error) {
	tables, err := column(ctx, desired, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'c')`, sch)
	if err != nil {
		return nil, nil, err
	}
	for _, k := range []struct {
		what, query string
		stmt        func(name, def string, extra []string, inLive bool) []string
	}{
		{"function", functionsQuery, func(_, def string, _ []string, _ bool) []string { return []string{def} }},
		{"view", viewsQuery, func(name, def string, _ []string, _ bool) []string {
			return []string{fmt.Sprintf("CREATE OR REPLACE VIEW %s.%s AS %s", quote(sch), quote(name), def)}
		}},
		{"trigger", triggersQuery, func(_, def string, extra []string, _ bool) []string {
			// IF EXISTS: a trigger of a table renamed by a declaration is
			// live's under the old table name, and moved with it.
			return []string{fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s.%s", quote(extra[1]), quote(sch), quote(extra[0])), def}
		}},
	} {
		have, _, err := definitions(ctx, live, k.query, sch)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the %ss of schema %s of the live database: %w", k.what, sch, err)
		}
		want, extra, err := definitions(ctx, desired, k.query, sch)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the %ss of schema %s of the shadow database: %w", k.what, sch, err)
		}
		names := make([]string, 0, len(want))
		for n := range want {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			old, inLive := have[n]
			if inLive && old == want[n] {
				continue
			}
			verb := "add"
			if inLive {
				verb = "replace"
			}
			for _, sql := range k.stmt(n, want[n], extra[n], inLive) {
				st := Statement{SQL: sql, Comment: verb + " " + k.what + " " + sch + "." + n}
				if k.what == "function" && !namesTable(extra[n], tables) {
					functions = append(functions, st)
				} else {
					rest = append(rest, st) // its signature names a table's row type: after the tables
				}
			}
		}
	}
	return functions, rest, nil
}

// definitions runs q for schema sch: name -> definition, and any further
// columns per name.
func definitions(ctx context.Context, db *sql.DB, q, sch string) (map[string]string, map[string][]string, error) {
	rows, err := db.QueryContext(ctx, q, sch)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = rows.Close() }()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, err
	}
	defs, extra := map[string]string{}, map[string][]string{}
	for rows.Next() {
		vals := make([]string, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		defs[vals[0]] = vals[1]
		extra[vals[0]] = vals[2:]
	}
	return defs, extra, rows.Err()
}

// namesTable reports whether a function's signature (result and
// arguments, in extra[0]) names one of tables as a type (a row type):
// the function then comes after the table changes; others come before,
// as defaults, checks and indexes of those changes may call them.
func namesTable(extra []string, tables []string) bool {
	if len(extra) == 0 {
		return false
	}
	words := strings.FieldsFunc(extra[0], func(r rune) bool {
		return r != '_' && r != '.' && !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	for _, w := range words {
		_, w = cutSchema(w)
		if slices.Contains(tables, w) {
			return true
		}
	}
	return false
}

func cutSchema(w string) (string, string) {
	if i := strings.LastIndexByte(w, '.'); i >= 0 {
		return w[:i], w[i+1:]
	}
	return "", w
}
