package schema

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// File is one schema file of a release.
type File struct {
	Name   string // as listed in the manifest, e.g. "db/07_tasks.ddl"
	Path   string // absolute path on disk
	SHA256 string // hex of the content; computed by Load
}

// Change is one schema file that must run.
type Change struct {
	File string
	Why  string // "added" | "changed"
}

// Pending is what Apply would run.
type Pending struct {
	Changes      []Change // in manifest order
	Seeds        []string // seed files that will run (first install only)
	FirstInstall bool     // no schema history yet
}

// Empty reports whether nothing would run.
func (p Pending) Empty() bool { return len(p.Changes) == 0 && len(p.Seeds) == 0 }

// Importer applies schema files to one database.
type Importer struct {
	URL string // postgres:// URL (or key=value string); its password is never printed
	Log *slog.Logger
	Now func() time.Time
	// Env is the complete environment of pg_dump and psql (PATH, ...).
	Env []string
	// Bin is the directory of pg_dump and psql; "" looks them up in PATH.
	Bin string
	// LockTimeout bounds every lock wait of the files' statements
	// (SET LOCAL lock_timeout); 0 means 30s.
	LockTimeout time.Duration
}

// ApplyOptions are the release's view of an Apply.
type ApplyOptions struct {
	Seq              uint64 // release seq, recorded in the history
	Host             string // recorded in the history
	AllowDestructive bool   // schema.allowDestructive of the release
}

// Result is what Apply did.
type Result struct {
	Applied []string // schema files run, in order
	Seeded  []string // seed files run, in order
	// AlreadyDone: once the lock was held nothing was pending; another
	// host (or an earlier run) applied these files first.
	AlreadyDone bool
}

// HistoryRow is one row of cohuron_agent.schema_history.
type HistoryRow struct {
	ID        int64
	File      string
	SHA256    string
	Kind      string // KindSchema or KindSeed
	Seq       uint64
	Host      string
	AppliedAt time.Time
}

// Kinds of history rows.
const (
	KindSchema = "schema"
	KindSeed   = "seed"
)

// HistorySchema is the database schema of the agent's own bookkeeping.
// It is never considered application data.
const HistorySchema = "cohuron_agent"

// LockKey is the pg_advisory_xact_lock key every importer takes: the first
// 8 bytes (big-endian) of SHA-256("cohuron-agent schema").
const LockKey int64 = -8248324730797706795

// DefaultLockTimeout is used when Importer.LockTimeout is 0.
const DefaultLockTimeout = 30 * time.Second

const createHistory = `CREATE SCHEMA IF NOT EXISTS cohuron_agent;
CREATE TABLE IF NOT EXISTS cohuron_agent.schema_history (
	id         bigserial PRIMARY KEY,
	file       text NOT NULL,
	sha256     text NOT NULL,
	kind       text NOT NULL CHECK (kind IN ('schema', 'seed')),
	seq        bigint NOT NULL,
	host       text NOT NULL,
	applied_at timestamptz NOT NULL
)`

const selectHistory = `SELECT id, file, sha256, kind, seq, host, applied_at FROM cohuron_agent.schema_history ORDER BY id`

// FileError is a schema or seed file that failed; nothing of the Apply
// was committed.
type FileError struct {
	File string
	Line int // 1-based; 0 when unknown
	Err  error
	// Refused: the agent refused what the file says (before or without a
	// server verdict): never transient.
	Refused bool
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// Transient reports whether the file failed for a reason of the moment
// (a lock timeout, a deadlock, a cancelled statement, a lost connection,
// a server short of resources) rather than because of what it says:
// the same file may pass when tried again.
func (e *FileError) Transient() bool {
	if e.Refused {
		return false
	}
	var pe *pgconn.PgError
	if !errors.As(e.Err, &pe) {
		return true // no server verdict on the SQL: the connection failed
	}
	switch pe.Code[:2] {
	case "08", "40", "53", "55", "57", "58":
		return true
	}
	return false
}

// DestructiveError refuses statements that lose data on a database that
// has data. Nothing was applied.
type DestructiveError struct {
	Findings []Finding
	Tables   []string // some of the tables that exist (schema.table)
}

func (e *DestructiveError) Error() string {
	var b strings.Builder
	b.WriteString("refusing to run destructive statements on a database that has tables (")
	b.WriteString(strings.Join(e.Tables, ", "))
	b.WriteString("): ")
	for i, f := range e.Findings {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.String())
	}
	b.WriteString("; nothing was applied. If this data loss is intended, set schema.allowDestructive: true" +
		" in the environment manifest for this release: the agent then takes a pg_dump of the schemas first")
	return b.String()
}

// WriteTemp writes data (schema files read from a bundle: name ->
// content) into a new temporary directory, for Load; cleanup removes it.
func WriteTemp(data map[string][]byte) (dir string, cleanup func(), err error) {
	if dir, err = os.MkdirTemp("", "cohuron-schema-"); err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	for name, b := range data {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err = os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
			err = os.WriteFile(p, b, 0o600)
		}
		if err != nil {
			cleanup()
			return "", nil, err
		}
	}
	return dir, cleanup, nil
}

// Load reads root/name for each name, in order, and computes its SHA-256.
// Names must be clean relative paths inside root; missing files, symlinks
// (anywhere on the path below root) and non-regular files are refused.
func Load(root string, names []string) ([]File, error) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("schema root %q: %w", root, err)
	}
	seen := map[string]bool{}
	files := make([]File, 0, len(names))
	for _, name := range names {
		if err := checkName(name); err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("schema file %q is listed twice", name)
		}
		seen[name] = true
		path := absRoot
		parts := strings.Split(name, "/")
		var fi fs.FileInfo
		for i, part := range parts {
			path = filepath.Join(path, part)
			fi, err = os.Lstat(path)
			if err != nil {
				return nil, fmt.Errorf("schema file %s: %w", name, err)
			}
			last := i == len(parts)-1
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				return nil, fmt.Errorf("schema file %s: %s is a symlink; expected a regular file or directory in the release", name, path)
			case last && !fi.Mode().IsRegular():
				return nil, fmt.Errorf("schema file %s: %s is not a regular file (mode %s)", name, path, fi.Mode())
			case !last && !fi.IsDir():
				return nil, fmt.Errorf("schema file %s: %s is not a directory (mode %s)", name, path, fi.Mode())
			}
		}
		sum, err := hashFile(path, fi)
		if err != nil {
			return nil, fmt.Errorf("schema file %s: %w", name, err)
		}
		files = append(files, File{Name: name, Path: path, SHA256: sum})
	}
	return files, nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("schema file name is empty")
	case !filepath.IsLocal(name) || strings.Contains(name, `\`):
		return fmt.Errorf("schema file name %q: expected a relative path inside the release", name)
	case filepath.Clean(name) != name:
		return fmt.Errorf("schema file name %q is not clean (expected %q)", name, filepath.Clean(name))
	}
	return nil
}

// hashFile hashes path, checking it is still the file that was Lstat'ed.
func hashFile(path string, want fs.FileInfo) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	got, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !os.SameFile(want, got) {
		return "", fmt.Errorf("%s changed while being read", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readChecked reads f.Path and checks it against f.SHA256.
func readChecked(f File) (string, error) {
	if f.Path == "" {
		return "", fmt.Errorf("schema file %s: no path on disk to read it from", f.Name)
	}
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return "", fmt.Errorf("schema file %s: %w", f.Name, err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, f.SHA256) {
		return "", fmt.Errorf("schema file %s: %s has SHA-256 %s, expected %s (from the release)", f.Name, f.Path, got, f.SHA256)
	}
	if !utf8.Valid(data) {
		return "", fmt.Errorf("schema file %s: %s is not valid UTF-8", f.Name, f.Path)
	}
	return string(data), nil
}

func checkFiles(files, seeds []File) error {
	seen := map[string]string{}
	for _, list := range []struct {
		kind  string
		files []File
	}{{KindSchema, files}, {KindSeed, seeds}} {
		for _, f := range list.files {
			if err := checkName(f.Name); err != nil {
				return err
			}
			if k, dup := seen[f.Name]; dup {
				return fmt.Errorf("%s file %s is also listed as a %s file", list.kind, f.Name, k)
			}
			seen[f.Name] = list.kind
			if len(f.SHA256) != 64 {
				return fmt.Errorf("%s file %s: SHA-256 %q is not 64 hex digits", list.kind, f.Name, f.SHA256)
			}
			if _, err := hex.DecodeString(f.SHA256); err != nil {
				return fmt.Errorf("%s file %s: SHA-256 %q is not hex", list.kind, f.Name, f.SHA256)
			}
		}
	}
	return nil
}

// history is what the history table says.
type history struct {
	rows   int
	latest map[string]string // schema file -> SHA-256 of its last application
}

func (h history) pending(files, seeds []File) Pending {
	p := Pending{FirstInstall: h.rows == 0}
	for _, f := range files {
		sum, ok := h.latest[f.Name]
		switch {
		case !ok:
			p.Changes = append(p.Changes, Change{File: f.Name, Why: "added"})
		case !strings.EqualFold(sum, f.SHA256):
			p.Changes = append(p.Changes, Change{File: f.Name, Why: "changed"})
		}
	}
	if p.FirstInstall {
		for _, s := range seeds {
			p.Seeds = append(p.Seeds, s.Name)
		}
	}
	return p
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readRows reads the history; exists is false when the table is missing.
func readRows(ctx context.Context, q querier) (rows []HistoryRow, exists bool, err error) {
	r, err := q.Query(ctx, selectHistory, pgx.QueryExecModeSimpleProtocol)
	if err == nil {
		for r.Next() {
			var h HistoryRow
			var seq int64
			if err = r.Scan(&h.ID, &h.File, &h.SHA256, &h.Kind, &seq, &h.Host, &h.AppliedAt); err != nil {
				break
			}
			h.Seq = uint64(seq)
			rows = append(rows, h)
		}
		r.Close()
		if err == nil {
			err = r.Err()
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
		return nil, false, nil // undefined_table, invalid_schema_name
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading %s.schema_history: %w", HistorySchema, err)
	}
	return rows, true, nil
}

func toHistory(rows []HistoryRow) history {
	h := history{rows: len(rows), latest: map[string]string{}}
	for _, r := range rows {
		if r.Kind == KindSchema {
			h.latest[r.File] = r.SHA256
		}
	}
	return h
}

func (im *Importer) log() *slog.Logger {
	if im.Log != nil {
		return im.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (im *Importer) connect(ctx context.Context) (*pgx.Conn, error) {
	return im.connectTo(ctx, im.URL)
}

// connectTo connects to url (im.URL, or a shadow database's) as connect does.
func (im *Importer) connectTo(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database URL %s: %w", redactURL(url), err)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "cohuron-agent"
	}
	log := im.log()
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		log.Info("postgres notice", "severity", n.Severity, "message", n.Message)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", redactURL(url), err)
	}
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Closing after the work is done (or failed): a failed close loses
	// nothing, the server ends the session either way.
	_ = conn.Close(ctx)
}

// Pending reads the history (one connection, one query, no writes) and
// tells which files would run. Only Name and SHA256 of the files are
// used, so digests from a signed release will do before the files are on
// disk. A missing history table means a first install: every file is
// added and the seeds run.
func (im *Importer) Pending(ctx context.Context, files, seeds []File) (Pending, error) {
	if err := checkFiles(files, seeds); err != nil {
		return Pending{}, err
	}
	conn, err := im.connect(ctx)
	if err != nil {
		return Pending{}, err
	}
	defer closeConn(conn)
	rows, _, err := readRows(ctx, conn)
	if err != nil {
		return Pending{}, err
	}
	return toHistory(rows).pending(files, seeds), nil
}

// Applied returns the history rows, oldest first; none when the history
// table does not exist.
func (im *Importer) Applied(ctx context.Context) ([]HistoryRow, error) {
	conn, err := im.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer closeConn(conn)
	rows, _, err := readRows(ctx, conn)
	return rows, err
}

// Apply runs the pending files, then on first install the seeds, in one
// transaction holding the advisory lock LockKey, and records them in the
// history. The pending set is recomputed under the lock. Destructive
// statements are refused (*DestructiveError) unless opt.AllowDestructive
// or the database has no tables outside pg_catalog, information_schema
// and cohuron_agent. A failing file gives a *FileError; on any error
// nothing is committed.
func (im *Importer) Apply(ctx context.Context, files, seeds []File, opt ApplyOptions) (res Result, err error) {
	if im.Now == nil {
		return Result{}, errors.New("schema.Importer.Now is not set")
	}
	if err := checkFiles(files, seeds); err != nil {
		return Result{}, err
	}
	log := im.log().With("seq", opt.Seq)
	conn, err := im.connect(ctx)
	if err != nil {
		return Result{}, err
	}
	defer closeConn(conn)
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return Result{}, fmt.Errorf("beginning the schema transaction: %w", err)
	}
	defer func() {
		if err != nil {
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = tx.Rollback(rctx)
		}
	}()

	// The lock comes first: concurrent CREATE ... IF NOT EXISTS can fail
	// on catalog unique indexes. It is taken before lock_timeout is set:
	// waiting for another host's import is bounded by ctx only.
	var got bool
	if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", LockKey).Scan(&got); err != nil {
		return Result{}, fmt.Errorf("taking the schema lock: %w", err)
	}
	if !got {
		log.Info("waiting for another importer's schema lock", "lock_key", LockKey)
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", LockKey); err != nil {
			return Result{}, fmt.Errorf("waiting for the schema lock (another host is importing): %w", err)
		}
	}
	lt := im.LockTimeout
	if lt <= 0 {
		lt = DefaultLockTimeout
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", lt.Milliseconds())); err != nil {
		return Result{}, fmt.Errorf("setting lock_timeout: %w", err)
	}
	var haveHistory bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass('cohuron_agent.schema_history') IS NOT NULL").Scan(&haveHistory); err != nil {
		return Result{}, fmt.Errorf("looking for %s.schema_history: %w", HistorySchema, err)
	}
	if !haveHistory { // under the lock: no other importer creates it now
		if _, err := tx.Exec(ctx, createHistory); err != nil {
			return Result{}, fmt.Errorf("creating %s.schema_history: %w", HistorySchema, err)
		}
	}
	rows, _, err := readRows(ctx, tx)
	if err != nil {
		return Result{}, err
	}
	p := toHistory(rows).pending(files, seeds)
	if p.Empty() {
		if err := tx.Commit(ctx); err != nil {
			return Result{}, fmt.Errorf("committing: %w", err)
		}
		log.Info("schema already up to date")
		return Result{AlreadyDone: true}, nil
	}

	type job struct {
		file File
		kind string
		text string
	}
	byName := map[string]File{}
	for _, f := range append(append([]File{}, files...), seeds...) {
		byName[f.Name] = f
	}
	var jobs []job
	for _, c := range p.Changes {
		jobs = append(jobs, job{file: byName[c.File], kind: KindSchema})
	}
	for _, s := range p.Seeds {
		jobs = append(jobs, job{file: byName[s], kind: KindSeed})
	}
	var findings []Finding
	for i := range jobs {
		j := &jobs[i]
		if j.text, err = readChecked(j.file); err != nil {
			return Result{}, err
		}
		if tc := transactionControl(j.file.Name, j.text); len(tc) > 0 {
			return Result{}, &FileError{File: j.file.Name, Line: tc[0].Line, Refused: true, Err: fmt.Errorf(
				"%s: files must not control transactions (the agent applies all of them in one transaction); remove BEGIN/COMMIT from the file", tc[0].Statement)}
		}
		findings = append(findings, Destructive(j.file.Name, j.text)...)
	}
	if len(findings) > 0 {
		switch tables, err := userTables(ctx, tx); {
		case err != nil:
			return Result{}, err
		case opt.AllowDestructive:
			log.Warn("running destructive statements: allowed by the release", "findings", findingStrings(findings))
		case len(tables) == 0:
			log.Info("running destructive statements on a database without tables", "findings", findingStrings(findings))
		default:
			return Result{}, &DestructiveError{Findings: findings, Tables: tables}
		}
	}

	for _, j := range jobs {
		began := im.Now()
		if _, err := tx.Exec(ctx, j.text); err != nil {
			return Result{}, fileError(j.file.Name, j.text, err)
		}
		if st := tx.Conn().PgConn().TxStatus(); st != 'T' {
			return Result{}, &FileError{File: j.file.Name, Refused: true, Err: fmt.Errorf(
				"the file left the transaction (status %q, expected in transaction); it must not contain COMMIT, ROLLBACK or END", st)}
		}
		log.Info("applied schema file", "file", j.file.Name, "kind", j.kind, "why", why(p, j.file.Name, j.kind),
			"duration", im.Now().Sub(began))
		if j.kind == KindSchema {
			res.Applied = append(res.Applied, j.file.Name)
		} else {
			res.Seeded = append(res.Seeded, j.file.Name)
		}
	}
	now := im.Now()
	for _, j := range jobs {
		if _, err := tx.Exec(ctx, `INSERT INTO cohuron_agent.schema_history (file, sha256, kind, seq, host, applied_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, j.file.Name, strings.ToLower(j.file.SHA256), j.kind, int64(opt.Seq), opt.Host, now); err != nil {
			return Result{}, fmt.Errorf("recording %s in the schema history: %w", j.file.Name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{}, fmt.Errorf("committing the schema transaction: %w", err)
	}
	return res, nil
}

func why(p Pending, name, kind string) string {
	if kind == KindSeed {
		return "first install"
	}
	for _, c := range p.Changes {
		if c.File == name {
			return c.Why
		}
	}
	return ""
}

func findingStrings(fs []Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.String()
	}
	return out
}

// userTables lists up to 5 tables that hold application data: ordinary,
// partitioned, materialized and foreign tables outside the system schemas
// and cohuron_agent, and not members of an extension.
func userTables(ctx context.Context, tx pgx.Tx) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT n.nspname || '.' || c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p', 'm', 'f')
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'cohuron_agent')
		  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
		  AND NOT EXISTS (SELECT 1 FROM pg_depend d
		      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
		ORDER BY 1 LIMIT 5`)
	if err != nil {
		return nil, fmt.Errorf("checking whether the database has tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("checking whether the database has tables: %w", err)
	}
	return tables, nil
}

// fileError attributes err to the file, with the line of PgError.Position
// (a 1-based character offset into the text sent, which is the file).
func fileError(name, text string, err error) error {
	fe := &FileError{File: name, Err: err}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Position > 0 {
		fe.Line = lineOfChar(text, int(pgErr.Position))
	}
	return fe
}

// lineOfChar returns the 1-based line of the pos-th (1-based) character.
func lineOfChar(text string, pos int) int {
	line, n := 1, 0
	for _, r := range text {
		n++
		if n >= pos {
			break
		}
		if r == '\n' {
			line++
		}
	}
	return line
}
