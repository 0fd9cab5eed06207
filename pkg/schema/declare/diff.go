package declare

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	"ariga.io/atlas/sql/schema"
)

// Options are the manifest's declarations.
type Options struct {
	// Schemas to compare (e.g. app).
	Schemas []string
	// Renames, applied before the diff: "schema.table" -> "new_table" or
	// "schema.table.column" -> "new_column" (rows kept).
	Renames map[string]string
	// Drops are the tables ("schema.table") and columns
	// ("schema.table.column") that may be dropped, or converted without
	// a safe cast, losing their data.
	Drops []string
	// ReferenceData are the tables ("schema.table") that receive the rows
	// the files have and live lacks, by primary key.
	ReferenceData []string
}

// Hazards of a statement.
const (
	HazardLock     = "lock"      // holds a lock that blocks writes while it runs
	HazardRewrite  = "rewrite"   // rewrites the table
	HazardDataLoss = "data loss" // declared in drops
)

// Statement is one statement of a plan.
type Statement struct {
	SQL     string
	Comment string
	Hazard  string // "" or one of the Hazard constants, with what it concerns
}

func (s Statement) String() string {
	if s.Hazard == "" {
		return s.SQL
	}
	return s.SQL + "  -- " + s.Hazard
}

// Refusal is a change that would lose data and that no declaration allows.
type Refusal struct {
	Object string // schema.table or schema.table.column
	What   string // what the change would do
	Allow  string // the declaration that allows it
	// Rename is the new table or column the files create that looks like
	// Object renamed (the same columns; the same type), if one does.
	Rename string
}

func (r Refusal) String() string { return r.Object + ": " + r.What + "; " + r.Allow }

// Plan is what takes the live database to the desired one.
type Plan struct {
	Statements []Statement
	Refused    []Refusal
	// Notes are what a declaration asked for that the plan does not do,
	// and why (nothing that loses data: that is Refused).
	Notes []string
	// Order, when statements of the files failed only because of their
	// order, is an order of the files that avoids it (read from the
	// errors, not tried: schema.Importer.OrderThatWorks tries it).
	Order *OrderHint
}

// Empty reports whether live already is the desired schema.
func (p *Plan) Empty() bool { return len(p.Statements) == 0 && len(p.Refused) == 0 }

// RefusedError is a plan that would lose data.
type RefusedError struct{ Refused []Refusal }

func (e *RefusedError) Error() string {
	var b strings.Builder
	b.WriteString("refusing a schema change that loses data (nothing was applied): ")
	for i, r := range e.Refused {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.String())
	}
	return b.String()
}

// FilesError is a problem with the schema files or the declarations, not
// with the database of the moment: the same release fails the same way.
type FilesError struct{ Err error }

func (e *FilesError) Error() string { return e.Err.Error() }
func (e *FilesError) Unwrap() error { return e.Err }

func filesErr(format string, args ...any) error {
	return &FilesError{Err: fmt.Errorf(format, args...)}
}

// Err is a *RefusedError when p refuses anything.
func (p *Plan) Err() error {
	if len(p.Refused) == 0 {
		return nil
	}
	return &RefusedError{Refused: p.Refused}
}

// Diff plans the change from live to desired for opt.Schemas.
func Diff(ctx context.Context, live, desired *sql.DB, opt Options) (*Plan, error) {
	ld, err := postgres.Open(live)
	if err != nil {
		return nil, fmt.Errorf("inspecting the live database: %w", err)
	}
	dd, err := postgres.Open(desired)
	if err != nil {
		return nil, fmt.Errorf("inspecting the shadow database: %w", err)
	}
	if len(opt.Schemas) == 0 {
		return nil, errNoSchema
	}
	// In order: new schemas and declared renames, functions (the table
	// changes' defaults, checks, generated columns and indexes may call
	// them; Apply turns check_function_bodies off), the table changes,
	// then views and triggers, then reference rows.
	p := &Plan{}
	var pre, fns, tables, after []Statement
	for _, name := range opt.Schemas {
		// Both at once: two servers' (or two databases') catalogs, each
		// about half of the diff's time.
		var to *schema.Schema
		var toErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			to, toErr = inspect(ctx, dd, name)
		}()
		from, err := inspect(ctx, ld, name)
		<-done
		if err != nil {
			return nil, fmt.Errorf("inspecting schema %s of the live database: %w", name, err)
		}
		if toErr != nil {
			return nil, fmt.Errorf("inspecting schema %s of the shadow database: %w", name, toErr)
		}
		if to == nil {
			return nil, filesErr("schema.schemas names %s, which the schema files do not create", name)
		}
		if from == nil {
			from = schema.New(name)
			pre = append(pre, Statement{SQL: "CREATE SCHEMA " + quote(name), Comment: "add schema " + name})
		}
		rs, live0 := renames(from, to, opt.Renames)
		pre = append(pre, rs...)
		changes, err := ld.SchemaDiff(from, to)
		if err != nil {
			return nil, fmt.Errorf("comparing schema %s: %w", name, err)
		}
		allowed, err := classify(ctx, live, live0, name, changes, opt, p)
		if err != nil {
			return nil, err
		}
		if len(allowed) > 0 {
			mp, err := ld.PlanChanges(ctx, "declare", allowed, func(o *migrate.PlanOptions) {
				o.SchemaQualifier = new(string)
				*o.SchemaQualifier = name
			})
			if err != nil {
				return nil, &FilesError{Err: fmt.Errorf("planning the changes of schema %s (a change this agent cannot make; make it by hand, or in steps): %w", name, err)}
			}
			for _, c := range mp.Changes {
				tables = append(tables, Statement{SQL: c.Cmd, Comment: c.Comment, Hazard: statementHazard(c)})
			}
		}
		f, rest, err := objects(ctx, live, desired, name)
		if err != nil {
			return nil, err
		}
		fns, after = append(fns, f...), append(after, rest...)
	}
	p.Statements = append(append(append(append(pre, fns...), tables...), after...), p.Statements...)
	if len(opt.ReferenceData) > 0 {
		st, notes, err := referenceRows(ctx, live, desired, opt.ReferenceData)
		if err != nil {
			return nil, err
		}
		p.Statements, p.Notes = append(p.Statements, st...), notes
	}
	return p, nil
}

// inspect is the schema name of drv, nil when it does not exist. Views,
// functions and triggers are compared by catalog (objects.go).
func inspect(ctx context.Context, drv migrate.Driver, name string) (*schema.Schema, error) {
	s, err := drv.InspectSchema(ctx, name, &schema.InspectOptions{Mode: schema.InspectTables})
	if schema.IsNotExistError(err) {
		return nil, nil
	}
	return s, err
}

// renames applies the declared renames to from (in memory) and returns
// their statements; a rename already done, or whose source is gone, is
// nothing to do.
func renames(from, to *schema.Schema, decl map[string]string) ([]Statement, liveNames) {
	var out []Statement
	names := liveNames{tables: map[string]string{}, columns: map[string]string{}}
	keys := make([]string, 0, len(decl))
	for k := range decl {
		keys = append(keys, k)
	}
	// Tables before columns, each in name order: a column's table may be
	// renamed too.
	sort.Strings(keys)
	sort.SliceStable(keys, func(i, j int) bool { return strings.Count(keys[i], ".") < strings.Count(keys[j], ".") })
	for _, k := range keys {
		parts := strings.Split(k, ".")
		if parts[0] != from.Name {
			continue
		}
		newName := decl[k]
		switch len(parts) {
		case 2:
			t, ok := from.Table(parts[1])
			if _, done := from.Table(newName); !ok || done {
				continue
			}
			if _, want := to.Table(newName); !want {
				continue
			}
			t.Name = newName
			names.tables[newName] = parts[1]
			out = append(out, Statement{SQL: fmt.Sprintf("ALTER TABLE %s.%s RENAME TO %s", quote(from.Name), quote(parts[1]), quote(newName)), Comment: "rename table " + k + " to " + newName + " (declared)"})
		case 3:
			t, ok := from.Table(parts[1])
			if !ok {
				if t, ok = from.Table(decl[parts[0]+"."+parts[1]]); !ok {
					continue
				}
			}
			c, ok := t.Column(parts[2])
			if _, done := t.Column(newName); !ok || done {
				continue
			}
			c.Name = newName
			names.columns[t.Name+"."+newName] = parts[2]
			out = append(out, Statement{SQL: fmt.Sprintf("ALTER TABLE %s.%s RENAME COLUMN %s TO %s", quote(from.Name), quote(t.Name), quote(parts[2]), quote(newName)), Comment: "rename column " + k + " to " + newName + " (declared)"})
		}
	}
	return out, names
}

// liveNames are live's names of what declared renames renamed in memory
// (new -> old), for the checks that read live rows before the renames run.
type liveNames struct {
	tables  map[string]string // new table -> old
	columns map[string]string // new table.new column -> old column
}

func (n liveNames) table(t string) string {
	if old, ok := n.tables[t]; ok {
		return old
	}
	return t
}

func (n liveNames) column(t, c string) string {
	if old, ok := n.columns[t+"."+c]; ok {
		return old
	}
	return c
}

// classify keeps the changes that lose no data (or whose loss is
// declared) and adds a Refusal to p for each other one.
func classify(ctx context.Context, live *sql.DB, names liveNames, sch string, changes []schema.Change, opt Options, p *Plan) ([]schema.Change, error) {
	declared := func(obj string) bool { return slices.Contains(opt.Drops, obj) }
	var out []schema.Change
	for _, c := range changes {
		switch c := c.(type) {
		case *schema.DropTable:
			obj := sch + "." + c.T.Name
			if !declared(obj) {
				p.Refused = append(p.Refused, dropRefusal(obj, "table", "rows", sch, renamedTable(c.T, changes), "the same columns"))
				continue
			}
			out = append(out, c)
		case *schema.ModifyTable:
			var keep []schema.Change
			for _, tc := range c.Changes {
				ok, err := tableChange(ctx, live, names, sch, c.T, tc, c.Changes, declared, p)
				if err != nil {
					return nil, err
				}
				if !ok {
					continue
				}
				if mc, isMod := tc.(*schema.ModifyColumn); isMod && mc.Change.Is(schema.ChangeType) && !safeCast(typeOf(mc.From), typeOf(mc.To)) {
					// Declared in drops: the column is dropped and added
					// again with its new type, its values lost as declared
					// (a cast could fail halfway through the rows).
					keep = append(keep, &schema.DropColumn{C: mc.From}, &schema.AddColumn{C: mc.To})
					continue
				}
				keep = append(keep, tc)
			}
			if len(keep) > 0 {
				out = append(out, &schema.ModifyTable{T: c.T, Changes: keep})
			}
		case *schema.AddTable, *schema.ModifySchema:
			out = append(out, c)
		default:
			// Views, functions, triggers, sequences and the like are not
			// planned here (objects.go compares them by catalog).
		}
	}
	return out, nil
}

func tableChange(ctx context.Context, live *sql.DB, names liveNames, sch string, t *schema.Table, tc schema.Change, siblings []schema.Change, declared func(string) bool, p *Plan) (bool, error) {
	table := sch + "." + t.Name
	switch c := tc.(type) {
	case *schema.DropColumn:
		obj := table + "." + c.C.Name
		if declared(obj) {
			return true, nil
		}
		p.Refused = append(p.Refused, dropRefusal(obj, "column", "values", table, renamedColumn(c.C, siblings), "the only new column of its type"))
		return false, nil
	case *schema.AddColumn:
		if c.C.Type.Null || c.C.Default != nil {
			return true, nil
		}
		rows, err := exists(ctx, live, fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s.%s)", quote(sch), quote(names.table(t.Name))))
		if err != nil || !rows {
			return err == nil, err
		}
		obj := table + "." + c.C.Name
		p.Refused = append(p.Refused, Refusal{Object: obj, What: "a NOT NULL column without a default, on a table with rows",
			Allow: "give it a DEFAULT in the schema file, or add it as NULL and backfill before making it NOT NULL"})
		return false, nil
	case *schema.ModifyColumn:
		obj := table + "." + c.To.Name
		if c.Change.Is(schema.ChangeType) && !safeCast(typeOf(c.From), typeOf(c.To)) && !declared(obj) {
			p.Refused = append(p.Refused, Refusal{Object: obj, What: fmt.Sprintf("type %s -> %s has no cast that keeps every value", typeOf(c.From), typeOf(c.To)),
				Allow: "declare schema.drops: [" + obj + "] to drop it and add it again with the new type, its values lost (after the dump)"})
			return false, nil
		}
		if c.Change.Is(schema.ChangeNull) && !c.To.Type.Null {
			nulls, err := exists(ctx, live, fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s.%s WHERE %s IS NULL)", quote(sch), quote(names.table(t.Name)), quote(names.column(t.Name, c.From.Name))))
			if err != nil {
				return false, err
			}
			if nulls {
				p.Refused = append(p.Refused, Refusal{Object: obj, What: "NOT NULL on a column that holds NULLs",
					Allow: "fill them (an UPDATE in a schema file of a later release is not run on live data: backfill by hand), or keep the column nullable"})
				return false, nil
			}
		}
		return true, nil
	case *schema.DropIndex:
		if !c.I.Unique {
			return true, nil // an index holds no rule about the rows
		}
		return declaredOr(table+"."+c.I.Name, "a unique index", declared, p), nil
	case *schema.DropForeignKey:
		return declaredOr(table+"."+c.F.Symbol, "a foreign key", declared, p), nil
	case *schema.DropCheck:
		return declaredOr(table+"."+c.C.Name, "a check constraint", declared, p), nil
	case *schema.DropPrimaryKey:
		return declaredOr(table+"."+c.P.Name, "the primary key", declared, p), nil
	default:
		return true, nil
	}
}

// dropRefusal refuses dropping obj, a table or column (kind) whose data
// (rows, values) would go, naming the declarations that allow it; when
// the files make something in parent that looks like obj renamed (to,
// for why), it says so and suggests that rename.
func dropRefusal(obj, kind, data, parent, to, why string) Refusal {
	r := Refusal{Object: obj, What: "the schema files no longer create this " + kind + "; dropping it loses its " + data,
		Allow: "declare schema.renames: {" + obj + ": NEW_NAME} if it was renamed, or schema.drops: [" + obj + "] to drop it (after the dump)"}
	if to != "" {
		r.Rename = to
		r.Allow = "it looks renamed to " + parent + "." + to + " (" + why + "): declare schema.renames: {" + obj + ": " + to + "} to keep its " + data + ", or schema.drops: [" + obj + "] to drop it (after the dump)"
	}
	return r
}

// declaredOr allows dropping a rule the rows follow (a unique index, a
// foreign key, a check, the primary key) only when schema.drops names it:
// it loses no row, but a statement that failed in the shadow import (an
// order problem the retry did not solve) would otherwise drop it from live.
func declaredOr(obj, what string, declared func(string) bool, p *Plan) bool {
	if declared(obj) {
		return true
	}
	p.Refused = append(p.Refused, Refusal{Object: obj, What: "the schema files no longer make " + what + " live has (it may have failed in their import: see the warnings)",
		Allow: "declare schema.drops: [" + obj + "] to drop it, or fix the schema file that should make it"})
	return false
}

// renamedTable is the table the changes add whose columns are most like
// from's (at least 80% of either's names shared), if any.
func renamedTable(from *schema.Table, changes []schema.Change) string {
	names := func(t *schema.Table) map[string]bool {
		m := map[string]bool{}
		for _, c := range t.Columns {
			m[c.Name] = true
		}
		return m
	}
	have := names(from)
	best, bestScore := "", 0.8
	for _, c := range changes {
		add, ok := c.(*schema.AddTable)
		if !ok {
			continue
		}
		want, shared := names(add.T), 0
		for n := range want {
			if have[n] {
				shared++
			}
		}
		score := float64(shared) / float64(max(len(have), len(want), 1))
		if score >= bestScore {
			best, bestScore = add.T.Name, score
		}
	}
	return best
}

// renamedColumn is the only column the table's changes add with from's
// type and a name like it (cust_id, customer_id), if there is exactly one.
func renamedColumn(from *schema.Column, siblings []schema.Change) string {
	found := ""
	for _, c := range siblings {
		add, ok := c.(*schema.AddColumn)
		if !ok || !strings.EqualFold(typeOf(add.C), typeOf(from)) || !alike(from.Name, add.C.Name) {
			continue
		}
		if found != "" {
			return ""
		}
		found = add.C.Name
	}
	return found
}

// alike reports whether two names share a prefix or a suffix of at least
// three characters.
func alike(a, b string) bool {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	m := 0
	for m < len(a) && m < len(b) && a[len(a)-1-m] == b[len(b)-1-m] {
		m++
	}
	return n >= 3 || m >= 3
}

func exists(ctx context.Context, db *sql.DB, q string) (bool, error) {
	var b bool
	if err := db.QueryRowContext(ctx, q).Scan(&b); err != nil {
		return false, fmt.Errorf("%s: %w", q, err)
	}
	return b, nil
}

// typeOf is a column's full type (precision, scale, length included):
// Atlas's Raw is information_schema's data_type, without them.
func typeOf(c *schema.Column) string {
	if t, err := postgres.FormatType(c.Type.Type); err == nil && t != "" {
		return t
	}
	return c.Type.Raw
}

var sized = regexp.MustCompile(`^(character varying|varchar|character|char|numeric|decimal)\((\d+)(?:,\s*(\d+))?\)$`)

// safeCast reports whether every value of type from converts to type to
// unchanged.
func safeCast(from, to string) bool {
	from, to = strings.ToLower(from), strings.ToLower(to)
	if from == to {
		return true
	}
	ints := []string{"smallint", "integer", "bigint"}
	if i, j := slices.Index(ints, from), slices.Index(ints, to); i >= 0 && j >= i {
		return true
	}
	if to == "text" && (strings.HasPrefix(from, "character varying") || strings.HasPrefix(from, "varchar")) {
		return true
	}
	if (to == "character varying" || to == "varchar") && strings.HasPrefix(from, "character varying") {
		return true // unbounded
	}
	if slices.Contains(ints, from) && (to == "numeric" || to == "decimal") {
		return true
	}
	mf, mt := sized.FindStringSubmatch(from), sized.FindStringSubmatch(to)
	if mf == nil || mt == nil || base(mf[1]) != base(mt[1]) || base(mf[1]) == "character" {
		return false
	}
	nf, _ := strconv.Atoi(mf[2])
	nt, _ := strconv.Atoi(mt[2])
	sf, _ := strconv.Atoi(mf[3])
	st, _ := strconv.Atoi(mt[3])
	return nt >= nf && st == sf
}

func base(t string) string {
	switch t {
	case "varchar":
		return "character varying"
	case "char":
		return "character"
	case "decimal":
		return "numeric"
	}
	return t
}

// statementHazard says what planned statement c costs while it runs:
// Atlas plans a table's new indexes as statements of their own, with the
// table's change as their source.
func statementHazard(c *migrate.Change) string {
	if cmd := strings.ToUpper(c.Cmd); strings.HasPrefix(cmd, "CREATE INDEX") || strings.HasPrefix(cmd, "CREATE UNIQUE INDEX") {
		return hazard(&schema.AddIndex{})
	}
	if mt, ok := c.Source.(*schema.ModifyTable); ok {
		var rest []schema.Change
		for _, tc := range mt.Changes {
			if _, isIndex := tc.(*schema.AddIndex); !isIndex {
				rest = append(rest, tc)
			}
		}
		return hazard(&schema.ModifyTable{T: mt.T, Changes: rest})
	}
	return hazard(c.Source)
}

// hazard says what a planned change costs while it runs.
func hazard(c schema.Change) string {
	switch c := c.(type) {
	case *schema.ModifyTable:
		var hs []string
		for _, tc := range c.Changes {
			if h := hazard(tc); h != "" && !slices.Contains(hs, h) {
				hs = append(hs, h)
			}
		}
		return strings.Join(hs, ", ")
	case *schema.DropTable, *schema.DropColumn:
		return HazardDataLoss + " (declared in schema.drops)"
	case *schema.AddIndex:
		return HazardLock + ": writes to the table wait while the index builds"
	case *schema.AddForeignKey, *schema.AddCheck:
		return HazardLock + ": every row is checked"
	case *schema.ModifyColumn:
		if c.Change.Is(schema.ChangeType) {
			if safeCast(typeOf(c.From), typeOf(c.To)) && !rewrites(typeOf(c.From), typeOf(c.To)) {
				return ""
			}
			return HazardRewrite + ": the table is rewritten, writes wait"
		}
		if c.Change.Is(schema.ChangeNull) && !c.To.Type.Null {
			return HazardLock + ": every row is checked for NULL"
		}
	}
	return ""
}

// rewrites reports whether a safe cast still rewrites the table (a wider
// integer does; a longer varchar or varchar to text does not).
func rewrites(from, to string) bool {
	from, to = strings.ToLower(from), strings.ToLower(to)
	return !strings.HasPrefix(from, "character varying") || (to != "text" && !strings.HasPrefix(to, "character varying"))
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// errNoSchema is returned when opt.Schemas is empty.
var errNoSchema = errors.New("schema.schemas: name the database schemas the files define (e.g. app)")
