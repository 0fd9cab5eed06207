package schema

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/cohuron/deploy/pkg/proc"
	"github.com/cohuron/deploy/pkg/state"
)

// Dump runs pg_dump --format=plain --no-owner for the given schemas (all
// of them when none) into path, mode 0600, written atomically (temporary
// file, fsync, rename). A schema that does not exist yet dumps as
// nothing, so restoring the dump drops it. The password goes to
// pg_dump in PGPASSWORD, never on its command line.
func (im *Importer) Dump(ctx context.Context, schemas []string, path string) error {
	dbname, env, err := im.cliConn()
	if err != nil {
		return err
	}
	args := []string{"--format=plain", "--no-owner", "--dbname=" + dbname}
	for _, s := range schemas {
		if s == "" {
			return errors.New("dumping: empty schema name")
		}
	}
	if len(schemas) > 0 {
		// pg_dump fails when no named schema exists (a first install).
		// A schema that does not exist yet dumps as nothing, so restoring
		// the dump drops it: the database as it was.
		existing, err := im.existingSchemas(ctx, schemas)
		if err != nil {
			return err
		}
		if len(existing) == 0 {
			im.log().Info("no schema to dump yet", "schemas", schemas, "path", path)
			return state.WriteFile(path, []byte(fmt.Sprintf("-- cohuron-agent: schemas %v did not exist; restoring this dump drops them\n", schemas)), 0o600)
		}
		for _, s := range existing {
			// A double-quoted pattern matches the name literally.
			args = append(args, "--schema="+quoteIdent(s))
		}
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("dumping schemas to %s: %w", path, err)
	}
	tmpName := tmp.Name()
	done := false
	defer func() {
		if !done {
			os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("dumping schemas to %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("dumping schemas to %s: %w", path, err)
	}
	args = append(args, "--file="+tmpName)
	log := im.log()
	log.Info("dumping schemas", "schemas", schemas, "path", path)
	if _, err := proc.Run(ctx, proc.Cmd{Name: im.bin("pg_dump"), Args: args, Env: env}); err != nil {
		return fmt.Errorf("dumping schemas %v to %s: %w", schemas, path, err)
	}
	if err := syncFile(tmpName); err != nil {
		return fmt.Errorf("dumping schemas to %s: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("dumping schemas to %s: %w", path, err)
	}
	done = true
	if err := syncFile(dir); err != nil {
		return fmt.Errorf("dumping schemas to %s: syncing the directory: %w", path, err)
	}
	return nil
}

// Restore puts dumped schemas back in one psql transaction: it takes the
// schema lock, drops each schema, runs the dump and deletes the history
// rows of release seq. Plain dumps of pg_dump 15.14 and later hold
// \restrict meta-commands, so psql runs them, not a driver.
func (im *Importer) Restore(ctx context.Context, schemas []string, dump string, seq uint64) error {
	if len(schemas) == 0 {
		return errors.New("restoring: no schemas named; a whole-database dump cannot be restored over the database")
	}
	if fi, err := os.Stat(dump); err != nil {
		return fmt.Errorf("restoring from %s: %w", dump, err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("restoring from %s: not a regular file (mode %s)", dump, fi.Mode())
	}
	dbname, env, err := im.cliConn()
	if err != nil {
		return err
	}
	lt := im.LockTimeout
	if lt <= 0 {
		lt = DefaultLockTimeout
	}
	args := []string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--dbname=" + dbname,
		"-c", fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", LockKey),
		"-c", fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", lt.Milliseconds()),
	}
	for _, s := range schemas {
		if s == "" {
			return errors.New("restoring: empty schema name")
		}
		args = append(args, "-c", "DROP SCHEMA IF EXISTS "+quoteIdent(s)+" CASCADE")
	}
	args = append(args, "-f", dump,
		"-c", fmt.Sprintf("DELETE FROM cohuron_agent.schema_history WHERE seq = %d", seq))
	im.log().Warn("restoring schemas from dump", "schemas", schemas, "dump", dump, "seq", seq)
	if _, err := proc.Run(ctx, proc.Cmd{Name: im.bin("psql"), Args: args, Env: env}); err != nil {
		return fmt.Errorf("restoring schemas %v from %s (nothing changed): %w", schemas, dump, err)
	}
	return nil
}

func (im *Importer) bin(name string) string {
	if im.Bin == "" {
		return name
	}
	return filepath.Join(im.Bin, name)
}

// cliConn returns the --dbname argument (the URL without its password)
// and the environment for pg_dump and psql (Env plus PGPASSWORD).
func (im *Importer) cliConn() (string, []string, error) {
	return cliConnOf(im.URL, im.Env)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

var kvPassword = regexp.MustCompile(`(^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S*)`)

// splitPassword removes the password from a postgres:// URL (userinfo or
// ?password=) or a key=value connection string.
func splitPassword(conn string) (rest, password string, err error) {
	scheme, after, isURL := strings.Cut(conn, "://")
	if !isURL || (scheme != "postgres" && scheme != "postgresql") {
		m := kvPassword.FindStringSubmatchIndex(conn)
		if m == nil {
			return conn, "", nil
		}
		v := conn[m[4]:m[5]]
		if strings.HasPrefix(v, "'") && strings.HasSuffix(v, "'") && len(v) >= 2 {
			v = v[1 : len(v)-1]
			v = strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(v)
		}
		return strings.TrimSpace(conn[:m[2]] + conn[m[5]:]), v, nil
	}
	// Not url.Parse: multi-host URLs (h1:5432,h2:5432) are valid here.
	hostEnd := strings.IndexAny(after, "/?")
	if hostEnd < 0 {
		hostEnd = len(after)
	}
	authority, tail := after[:hostEnd], after[hostEnd:]
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		user, pw, hasPW := strings.Cut(authority[:at], ":")
		if hasPW {
			if password, err = url.PathUnescape(pw); err != nil {
				return "", "", errors.New("database URL: the password is not valid percent-encoding")
			}
			authority = user + authority[at:]
		}
	}
	if path, query, ok := strings.Cut(tail, "?"); ok {
		q, err := url.ParseQuery(query)
		if err != nil {
			return "", "", errors.New("database URL: the query string is not valid (percent-encoding or separators)")
		}
		if pw := q.Get("password"); pw != "" {
			password = pw
		}
		q.Del("password")
		tail = path
		if len(q) > 0 {
			tail += "?" + q.Encode()
		}
	}
	return scheme + "://" + authority + tail, password, nil
}

// redactURL returns the connection string without its password, for
// messages.
func redactURL(conn string) string {
	rest, _, err := splitPassword(conn)
	if err != nil {
		return "(unparsable database URL)"
	}
	return rest
}

// existingSchemas returns those of names that exist in the database.
func (im *Importer) existingSchemas(ctx context.Context, names []string) ([]string, error) {
	conn, err := im.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer closeConn(conn)
	rows, err := conn.Query(ctx, "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1) ORDER BY nspname", names)
	if err != nil {
		return nil, fmt.Errorf("listing schemas: %w", err)
	}
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
