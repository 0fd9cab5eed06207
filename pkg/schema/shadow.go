package schema

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cohuron/deploy/pkg/proc"
)

// ShadowPrefix starts the name of every shadow database the agent
// creates; the rest is a digest of the host name and a random suffix, so
// hosts sharing a server never drop each other's.
const ShadowPrefix = "cohuron_shadow_"

// maxRetryRounds bounds the passes over the statements that failed: each
// pass runs them again in order, and a pass where none newly succeeds ends it.
const maxRetryRounds = 5

// Warning is one statement of a schema file that failed in the shadow
// import, as psql reported it: the app's own importer runs psql without
// ON_ERROR_STOP, so such a statement is skipped and the import goes on.
type Warning struct {
	File      string
	Line      int    // psql's line: where the statement ended
	Message   string // ERROR: and the lines after it (DETAIL, HINT, ...)
	Code      string // the SQLSTATE, e.g. 42P01 (undefined_table)
	Statement string
	// Order: the statement succeeded when run again after the rest, so
	// it failed only because of the files' order.
	Order bool
}

func (w Warning) String() string {
	s := fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Message)
	if w.Order {
		s += " (ran when retried after the rest: an order problem)"
	}
	return s
}

// ShadowOptions say how to import.
type ShadowOptions struct {
	// Host names the shadow databases of this host (see ShadowPrefix).
	Host string
	// Strict: a failing statement refuses the release (psql with
	// ON_ERROR_STOP) instead of being a warning.
	Strict bool
}

// ShadowResult is what a shadow import produced.
type ShadowResult struct {
	Database string    // the shadow's name (dropped when Shadow returns)
	Warnings []Warning // the statements that failed (or failed only first)
	Took     time.Duration
}

// Failed returns the warnings of statements that never ran.
func (r *ShadowResult) Failed() []Warning {
	var out []Warning
	for _, w := range r.Warnings {
		if !w.Order {
			out = append(out, w)
		}
	}
	return out
}

// Shadow creates an empty database on the live database's server, imports
// files into it (see Import), calls inspect with the shadow's URL (for the
// diff), and drops the shadow, whatever happened. It first drops what a
// crashed run of this host left (DropShadows). The role needs CREATEDB.
func (im *Importer) Shadow(ctx context.Context, files []File, opt ShadowOptions, inspect func(ctx context.Context, url string) error) (*ShadowResult, error) {
	start := time.Now()
	texts, err := sqlTexts(files)
	if err != nil {
		return nil, err
	}
	if err := im.DropShadows(ctx, opt.Host); err != nil {
		return nil, err
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	name := shadowPrefix(opt.Host) + hex.EncodeToString(rnd[:])
	if err := im.adminExec(ctx, "CREATE DATABASE "+quoteIdent(name)); err != nil {
		return nil, fmt.Errorf("creating shadow database %s: %w (the agent's database role needs CREATEDB for schema.mode declarative: ALTER ROLE ... CREATEDB)", name, err)
	}
	defer func() {
		// Dropped with a fresh context: the import's may be cancelled.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := im.adminExec(dctx, "DROP DATABASE IF EXISTS "+quoteIdent(name)+" WITH (FORCE)"); derr != nil {
			im.log().Warn("dropping the shadow database (the next import drops it)", "database", name, "err", derr)
		}
	}()
	// A throwaway database need not wait for its commits to reach the
	// disk: each statement of the import commits on its own, as under the
	// app's own importer, and on a durable server each would wait for a
	// flush. A crash loses the shadow, which is dropped anyway.
	if err := im.adminExec(ctx, "ALTER DATABASE "+quoteIdent(name)+" SET synchronous_commit = off"); err != nil {
		return nil, fmt.Errorf("shadow database %s: %w", name, err)
	}
	shadowURL, err := withDatabase(im.URL, name)
	if err != nil {
		return nil, err
	}
	live, err := pgx.ParseConfig(im.URL)
	if err != nil {
		return nil, fmt.Errorf("database URL %s: %w", redactURL(im.URL), err)
	}
	for i := range texts {
		texts[i] = asDatabase(texts[i], live.Database)
	}
	ws, err := im.importInto(ctx, shadowURL, files, texts, opt.Strict)
	if err != nil {
		return nil, err
	}
	res := &ShadowResult{Database: name, Warnings: ws}
	if inspect != nil {
		if err := inspect(ctx, shadowURL); err != nil {
			return nil, err
		}
	}
	res.Took = time.Since(start)
	im.log().Info("shadow import", "files", len(files), "failed", len(res.Failed()), "order", len(res.Warnings)-len(res.Failed()), "took", res.Took.Round(time.Millisecond))
	return res, nil
}

// Import imports files into the database itself, the way the app's own
// tooling does: psql without ON_ERROR_STOP, each failing statement a
// Warning (with opt.Strict a *FileError), the statements that failed run
// once more after the rest (and again while that helps; never a drop or a
// delete). It is for the first install into an empty database, whose
// rows the files load; afterwards the agent imports into a shadow and
// applies the difference. Files that hold psql meta-commands are refused:
// psql would run them on this host.
func (im *Importer) Import(ctx context.Context, files []File, opt ShadowOptions) (*ShadowResult, error) {
	start := time.Now()
	texts, err := sqlTexts(files)
	if err != nil {
		return nil, err
	}
	ws, err := im.importInto(ctx, im.URL, files, texts, opt.Strict)
	if err != nil {
		return nil, err
	}
	return &ShadowResult{Warnings: ws, Took: time.Since(start)}, nil
}

// sqlTexts reads files, checked against their digests, refusing psql
// meta-commands.
func sqlTexts(files []File) ([]string, error) {
	texts := make([]string, len(files))
	for i, f := range files {
		var err error
		if texts[i], err = readChecked(f); err != nil {
			return nil, err
		}
		if ms := metaCommands(f.Name, texts[i]); len(ms) > 0 {
			return nil, &FileError{File: f.Name, Line: ms[0].Line, Refused: true,
				Err: fmt.Errorf("psql meta-command %s: schema files are SQL only (psql would run it on the agent's host); remove it", ms[0].Statement)}
		}
	}
	return texts, nil
}

// asDatabase makes the names db.schema.name of sql (outside literals,
// comments and dollar-quoted bodies) schema.name. In the live database
// db PostgreSQL takes one for the other, so the app's own importer, run
// there, treats them alike; the shadow database has another name, where
// db.schema.name is a cross-database reference, an error: the statement
// would be skipped in the shadow and not live (the real app's
// db/17_inventory.ddl selects INTO a table FROM app.app.product). Only
// names where a table's stands are changed (after FROM, JOIN, INTO, ...),
// only an unquoted db, case-insensitively, as PostgreSQL folds it.
func asDatabase(sql, db string) string {
	if db == "" || db != strings.ToLower(db) {
		return sql
	}
	toks := tokens(sql, 0, len(sql))
	var b strings.Builder
	last := 0
	part := func(t token) bool { return t.kind == tWord || t.kind == tIdent }
	for i := 0; i+4 < len(toks); i++ {
		t := toks[i]
		if !t.isWord(strings.ToUpper(db)) || !toks[i+1].is(".") || !part(toks[i+2]) || !toks[i+3].is(".") || !part(toks[i+4]) {
			continue
		}
		// Only where a table's name stands: elsewhere (a column) a.b.c is
		// schema.table.column.
		if i == 0 || !slices.ContainsFunc(tableWords, toks[i-1].isWord) {
			continue
		}
		b.WriteString(sql[last:t.off])
		last = toks[i+1].off + 1
	}
	if last == 0 {
		return sql
	}
	b.WriteString(sql[last:])
	return b.String()
}

// batch is consecutive files of an import run by one psql: each as in a
// session of its own (the app's importer runs psql once a file), since
// between two files the script ends any transaction the first left open
// and resets the session (ROLLBACK; DISCARD ALL: settings such as
// search_path, temporary tables, prepared statements, the role). It
// saves a psql process and a connection a file, about half the import.
type batch struct {
	script string
	names  []string
	starts []int // the script line each file's first line is on
	lines  []int // each file's lines
}

// batchSeparator ends a file's session state before the next file.
const batchSeparator = "ROLLBACK;\nDISCARD ALL;\n"

// batchFrom is the batch of files[start:] that runs in one psql: up to
// the first file that does not end outside every literal, identifier,
// comment and dollar-quoted body (psql would join it with what follows;
// run alone, it ends at its end), which runs alone.
func batchFrom(files []File, texts []string, start int) batch {
	var b batch
	var sb strings.Builder
	line := 1
	for i := start; i < len(files); i++ {
		clean := endsClean(texts[i])
		if !clean && len(b.names) > 0 {
			break
		}
		text := texts[i]
		if !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		n := strings.Count(text, "\n")
		b.names, b.starts, b.lines = append(b.names, files[i].Name), append(b.starts, line), append(b.lines, n)
		sb.WriteString(text)
		if !clean {
			break // alone: psql sends what is left at the end of its input
		}
		// A last statement without its semicolon: psql sends it at the
		// end of a file's input, so it is ended here.
		sb.WriteString(";\n" + batchSeparator)
		line += n + 1 + strings.Count(batchSeparator, "\n")
	}
	b.script = sb.String()
	return b
}

// locate maps a line of the batch's script to the file and line psql
// would have reported running that file alone.
func (b batch) locate(line int) (string, int) {
	for i := len(b.starts) - 1; i >= 0; i-- {
		if line >= b.starts[i] {
			return b.names[i], min(line-b.starts[i]+1, b.lines[i])
		}
	}
	return b.names[0], line
}

// endsClean reports whether sql ends outside every literal, quoted
// identifier, comment and dollar-quoted body, as far as this package's
// lexer (PostgreSQL's rules) sees: a statement appended after it is
// read as a statement of its own.
func endsClean(sql string) bool {
	const probe = "\n;\nSELECT 1;"
	s := sql + probe
	toks := tokens(s, 0, len(s))
	n := len(toks)
	return n >= 3 && toks[n-3].isWord("SELECT") && toks[n-3].off == len(sql)+3 && toks[n-2].kind == tNumber && toks[n-1].is(";")
}

// tableWords are the words a table's name follows: where db.schema.name
// is a table of database db.
var tableWords = []string{"FROM", "JOIN", "INTO", "UPDATE", "TABLE", "EXISTS", "ONLY", "REFERENCES", "TRUNCATE"}

// importInto runs texts (of files) in order with psql against conn, then
// the failed statements again; it returns the warnings in file order.
func (im *Importer) importInto(ctx context.Context, conn string, files []File, texts []string, strict bool) ([]Warning, error) {
	var out, failed []Warning
	for start := 0; start < len(files); {
		b := batchFrom(files, texts, start)
		ws, err := im.psqlScript(ctx, conn, b.script, strict)
		for j := range ws {
			ws[j].File, ws[j].Line = b.locate(ws[j].Line)
		}
		if err != nil {
			if strict && len(ws) > 0 {
				return nil, &FileError{File: ws[0].File, Line: ws[0].Line, Refused: true,
					Err: fmt.Errorf("%s (schema.strict: true refuses any failing statement)", ws[0].Message)}
			}
			return nil, fmt.Errorf("importing %s: %w", strings.Join(b.names, ", "), err)
		}
		failed = append(failed, ws...)
		start += len(b.names)
	}
	// A statement that drops or deletes is not run again: after the
	// rest it would remove what the rest created. Nor one PostgreSQL
	// could not parse: what the rest creates does not change that.
	var retryable []Warning
	for _, w := range failed {
		if losesData(w.Statement) || w.Code == sqlstateSyntaxError {
			out = append(out, w)
		} else {
			retryable = append(retryable, w)
		}
	}
	failed = retryable
	var session *pgx.Conn
	if len(failed) > 0 {
		var err error
		if session, err = im.connectTo(ctx, conn); err != nil {
			return nil, fmt.Errorf("running the failed statements again: %w", err)
		}
		defer closeConn(session)
		// Their notices are the first pass's again (psql's went nowhere).
		if _, err := session.Exec(ctx, "SET client_min_messages = error"); err != nil {
			return nil, fmt.Errorf("running the failed statements again: %w", err)
		}
	}
	for round := 0; round < maxRetryRounds && len(failed) > 0; round++ {
		still, err := retry(ctx, session, failed)
		if err != nil {
			return nil, err
		}
		if len(still) == len(failed) {
			break
		}
		for _, w := range failed {
			if !containsWarning(still, w) {
				w.Order = true
				out = append(out, w)
			}
		}
		failed = still
	}
	out = append(out, failed...)
	pos := map[string]int{}
	for i, f := range files {
		pos[f.Name] = i
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if pos[a.File] != pos[b.File] {
			return pos[a.File] < pos[b.File]
		}
		return a.Line < b.Line
	})
	return out, nil
}

// losesData reports whether stmt drops, deletes or truncates anything.
func losesData(stmt string) bool {
	if len(Destructive("", stmt)) > 0 {
		return true
	}
	toks := tokens(stmt, 0, len(stmt))
	return len(toks) > 0 && (toks[0].isWord("DROP") || toks[0].isWord("DELETE") || toks[0].isWord("TRUNCATE") ||
		toks[0].isWord("ALTER") && slicesContainsWord(toks, "DROP"))
}

func slicesContainsWord(toks []token, w string) bool {
	for _, t := range toks {
		if t.isWord(w) {
			return true
		}
	}
	return false
}

func containsWarning(ws []Warning, w Warning) bool {
	for _, x := range ws {
		if x.File == w.File && x.Line == w.Line && x.Statement == w.Statement {
			return true
		}
	}
	return false
}

// retry runs the statements of failed again, in order, on one session,
// and returns those that failed again. Each is sent on its own, as the
// text psql sent (a simple query, as psql's): none can run into the
// next, as in one script the rest of a fragment that opens a quote
// would swallow the statements after it.
func retry(ctx context.Context, conn *pgx.Conn, failed []Warning) ([]Warning, error) {
	var still []Warning
	for _, w := range failed {
		_, err := conn.Exec(ctx, w.Statement)
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe):
			w.Message, w.Code = pgMessage(pe), pe.Code
			still = append(still, w)
		case err != nil:
			return nil, fmt.Errorf("running the failed statements again: %w", err)
		}
		if conn.PgConn().TxStatus() != 'I' {
			// A BEGIN, or a failure inside one: ended before the next
			// statement, as between two files.
			if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
				return nil, fmt.Errorf("running the failed statements again: %w", err)
			}
		}
	}
	return still, nil
}

// pgMessage is an error as psql prints it (without its LINE excerpt).
func pgMessage(pe *pgconn.PgError) string {
	m := pe.Severity + ": " + pe.Message
	if pe.Detail != "" {
		m += "\nDETAIL:  " + pe.Detail
	}
	if pe.Hint != "" {
		m += "\nHINT:  " + pe.Hint
	}
	return m
}

// sqlstateSyntaxError is PostgreSQL's syntax_error: the statement's text
// does not parse (the real app has 76, fragments of functions).
const sqlstateSyntaxError = "42601"

// psqlScript runs sql with psql on stdin against url, query output
// discarded, and returns the statements that failed. With stop, the first
// failure ends the script (and the returned error is set). Errors are
// reported verbosely, for their SQLSTATE (Warning.Code).
func (im *Importer) psqlScript(ctx context.Context, conn, sql string, stop bool) ([]Warning, error) {
	dbname, env, err := cliConnOf(conn, im.Env)
	if err != nil {
		return nil, err
	}
	onErr := "0"
	if stop {
		onErr = "1"
	}
	var out bytes.Buffer
	_, err = proc.Run(ctx, proc.Cmd{Name: im.bin("psql"), Env: env, Stdin: strings.NewReader(sql), Output: &out,
		Args: []string{"-X", "-q", "-b", "-o", os.DevNull, "-v", "ON_ERROR_STOP=" + onErr, "-v", "VERBOSITY=verbose", "--dbname=" + dbname, "-f", "-"}})
	ws := parsePsqlErrors(out.Bytes())
	if err != nil && (!stop || len(ws) == 0) {
		return ws, fmt.Errorf("psql: %w", err)
	}
	if err != nil {
		return ws, errors.New(ws[0].Message)
	}
	return ws, nil
}

// psqlLine is a line psql prints about its input: psql:FILE:LINE: WHAT: ...
// (with VERBOSITY verbose, an ERROR's SQLSTATE first: ERROR:  42P01: ...).
var (
	psqlLine     = regexp.MustCompile(`^psql:<stdin>:(\d+): ([A-Z]+):  ?(.*)$`)
	psqlSQLState = regexp.MustCompile(`^([0-9A-Z]{5}): (.*)$`)
)

// parsePsqlErrors reads psql -b's stderr: each ERROR line, the lines
// after it (DETAIL, HINT, CONTEXT, LINE n; not verbose mode's LOCATION,
// which names PostgreSQL's source) and the STATEMENT that failed, which
// may span lines.
func parsePsqlErrors(out []byte) []Warning {
	var ws []Warning
	var cur *Warning
	inStatement := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		l := sc.Text()
		m := psqlLine.FindStringSubmatch(l)
		if m == nil {
			switch {
			case cur != nil && inStatement:
				cur.Statement += "\n" + l
			case cur != nil && strings.HasPrefix(l, "LOCATION:  "):
			case cur != nil && strings.TrimSpace(l) != "":
				cur.Message += "\n" + l
			}
			continue
		}
		n, _ := strconv.Atoi(m[1])
		switch m[2] {
		case "ERROR": // FATAL (the connection lost) ends psql with exit 2: an error of the moment
			w := Warning{Line: n, Message: m[2] + ": " + m[3]}
			if c := psqlSQLState.FindStringSubmatch(m[3]); c != nil {
				w.Code, w.Message = c[1], m[2]+": "+c[2]
			}
			ws = append(ws, w)
			cur, inStatement = &ws[len(ws)-1], false
		case "STATEMENT":
			if cur != nil {
				cur.Statement, inStatement = m[3], true
			}
		default: // WARNING, NOTICE, ...: not a failure
			cur, inStatement = nil, false
		}
	}
	return ws
}

// DropShadows drops the shadow databases host left (a crashed import).
func (im *Importer) DropShadows(ctx context.Context, host string) error {
	conn, err := im.connect(ctx)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, shadowPrefix(host))
	if err != nil {
		return fmt.Errorf("listing shadow databases: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing shadow databases: %w", err)
	}
	for _, n := range names {
		im.log().Info("dropping a shadow database a previous import left", "database", n)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(n)+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("dropping shadow database %s: %w", n, err)
		}
	}
	return nil
}

func (im *Importer) adminExec(ctx context.Context, sql string) error {
	conn, err := im.connect(ctx)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	_, err = conn.Exec(ctx, sql)
	return err
}

func shadowPrefix(host string) string {
	sum := sha256.Sum256([]byte(host))
	return ShadowPrefix + hex.EncodeToString(sum[:4]) + "_"
}

// withDatabase returns conn (a postgres:// URL or key=value string) with
// its database replaced by db.
func withDatabase(conn, db string) (string, error) {
	scheme, _, isURL := strings.Cut(conn, "://")
	if isURL && (scheme == "postgres" || scheme == "postgresql") {
		u, err := url.Parse(conn)
		if err != nil {
			return "", fmt.Errorf("database URL %s: %w", redactURL(conn), err)
		}
		q := u.Query()
		q.Del("dbname")
		u.RawQuery = q.Encode()
		u.Path, u.RawPath = "/"+db, ""
		return u.String(), nil
	}
	// key=value: a later keyword overrides an earlier one.
	return conn + " dbname='" + db + "'", nil
}

// cliConnOf returns the --dbname argument for conn (without its
// password) and base plus PGPASSWORD.
func cliConnOf(conn string, base []string) (string, []string, error) {
	dbname, password, err := splitPassword(conn)
	if err != nil {
		return "", nil, err
	}
	env := append([]string{}, base...)
	if password != "" {
		env = append(env, "PGPASSWORD="+password)
	}
	return dbname, env, nil
}

// DeclarativeFile is the file name of the schema_history row that records
// the digest of a declarative schema's files once the database has their
// schema (the sha256 column holds the digest).
const DeclarativeFile = "(declarative)"

// DeclaredState is what a declarative release's schema step asks the
// database before it runs, on one connection: whether the database was
// brought to the schema of the files whose digest is digest (a
// declarative release recorded it; no history table yet is false), and
// the role it connects as, with whether that role may create the shadow
// databases of the declarative mode (CREATEDB, or a superuser).
func (im *Importer) DeclaredState(ctx context.Context, digest string) (done bool, role string, canShadow bool, err error) {
	conn, err := im.connect(ctx)
	if err != nil {
		return false, "", false, err
	}
	defer closeConn(conn)
	if err = conn.QueryRow(ctx, `SELECT rolname, rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&role, &canShadow); err != nil {
		return false, "", false, err
	}
	if err = conn.QueryRow(ctx, HistoryExistsQuery).Scan(&done); err != nil || !done {
		return false, role, canShadow, err
	}
	err = conn.QueryRow(ctx, DeclaredQuery, DeclarativeFile, digest).Scan(&done)
	return done, role, canShadow, err
}

// HistoryExistsQuery and DeclaredQuery ask whether a database was brought
// to the schema of the files whose digest is $2 (DeclarativeFile as $1);
// the second only once the first says the history table exists.
const (
	HistoryExistsQuery = `SELECT to_regclass('cohuron_agent.schema_history') IS NOT NULL`
	DeclaredQuery      = `SELECT EXISTS (SELECT 1 FROM cohuron_agent.schema_history WHERE file = $1 AND sha256 = $2)`
)

// RecordDeclared are the statements that record, in the transaction that
// applies a declarative change, that the database has the schema of the
// files whose digest is digest.
func RecordDeclared(digest string, seq uint64, host string, at time.Time) []string {
	lit := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	return []string{
		createHistory,
		fmt.Sprintf("INSERT INTO cohuron_agent.schema_history (file, sha256, kind, seq, host, applied_at) VALUES (%s, %s, %s, %d, %s, %s::timestamptz)",
			lit(DeclarativeFile), lit(digest), lit(KindSchema), seq, lit(host), lit(at.UTC().Format(time.RFC3339Nano))),
	}
}
