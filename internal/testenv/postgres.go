package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cohuron/deploy/pkg/proc"
)

// Postgres is a running PostgreSQL server, trusted on 127.0.0.1 for the
// user postgres (no password).
type Postgres struct {
	URL  string // postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable
	Port int
	Bin  string // directory of initdb, postgres, pg_dump, psql
}

// PostgresBin finds the directory of the PostgreSQL server binaries: the
// highest version under /usr/lib/postgresql/*/bin (Debian), else
// `pg_config --bindir`.
func PostgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestVer := "", -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil && v > bestVer {
			best, bestVer = d, v
		}
	}
	if best != "" {
		return best, nil
	}
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err != nil {
		return "", fmt.Errorf("no /usr/lib/postgresql/*/bin/postgres and pg_config --bindir failed: %w", err)
	}
	d := strings.TrimSpace(string(out))
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(d, b)); err != nil {
			return "", fmt.Errorf("pg_config --bindir says %s, which has no %s: %w", d, b, err)
		}
	}
	return d, nil
}

// StartPostgres initialises a fresh cluster in a temporary directory and
// starts it on a free port; it is stopped and removed when t ends. As root
// the server runs as the user postgres (initdb refuses root); otherwise it
// runs as the current user.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	return StartPostgresOpts(t, PostgresOptions{})
}

// PostgresOptions are the choices of StartPostgresOpts; the zero value is
// StartPostgres.
type PostgresOptions struct {
	// ListenBridges makes the server listen on every address, so that
	// containers on Docker bridge networks reach it at their gateway (see
	// Docker.BuildAppStandins). pg_hba.conf then admits, besides loopback
	// (trusted, as without it), only the private ranges Docker takes its
	// networks from (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16), and
	// those only with a password (scram-sha-256): postgres has none, so
	// only roles a test gave a password log in from there.
	ListenBridges bool
	// Durable keeps PostgreSQL's default durability (fsync,
	// synchronous_commit and full_page_writes on), as a production server
	// (the app's db container) runs; the default turns them off, which
	// tests do not need. Benchmarks of database work use it.
	Durable bool
}

// bridgeHBA is pg_hba.conf with ListenBridges.
const bridgeHBA = `# StartPostgresOpts with ListenBridges: loopback trusted, Docker's
# private ranges with a password, nothing else.
local   all          all                     trust
host    all          all    127.0.0.1/32     trust
host    all          all    ::1/128          trust
local   replication  all                     trust
host    replication  all    127.0.0.1/32     trust
host    replication  all    ::1/128          trust
host    all          all    10.0.0.0/8       scram-sha-256
host    all          all    172.16.0.0/12    scram-sha-256
host    all          all    192.168.0.0/16   scram-sha-256
`

// StartPostgresOpts is StartPostgres with options.
func StartPostgresOpts(t testing.TB, opts PostgresOptions) *Postgres {
	t.Helper()
	bin, err := PostgresBin()
	if err != nil {
		Missing(t, "PostgreSQL server", err.Error())
	}
	runAs, uid, gid := "", -1, -1
	if os.Geteuid() == 0 {
		u, err := proc.LookupUser("postgres")
		if err != nil {
			Missing(t, "PostgreSQL server (user postgres)", err.Error())
		}
		runAs, uid, gid = "postgres", int(u.Uid), int(u.Gid)
	}

	// Not t.TempDir(): its parent is 0700 root, which postgres cannot enter.
	dir, err := os.MkdirTemp("", "cohuron-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		t.Fatal(err)
	}
	if uid >= 0 {
		for _, d := range []string{dir, sock} {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	env := []string{
		"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + dir, "USER=postgres", "LOGNAME=postgres",
		"LC_ALL=C.UTF-8", "TZ=UTC",
	}
	ctx := context.Background()
	if res, err := proc.Run(ctx, proc.Cmd{
		Name: filepath.Join(bin, "initdb"),
		Args: []string{"-D", data, "--auth=trust", "-U", "postgres",
			"--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"},
		Env: env, User: runAs, Timeout: 2 * time.Minute,
	}); err != nil {
		t.Fatalf("initdb: %v\n%s", err, res.Output)
	}

	listen := "127.0.0.1"
	if opts.ListenBridges {
		listen = "*"
		hba := filepath.Join(data, "pg_hba.conf")
		if err := os.WriteFile(hba, []byte(bridgeHBA), 0o600); err != nil {
			t.Fatal(err)
		}
		if uid >= 0 {
			if err := os.Chown(hba, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}

	port := FreePort(t)
	logPath := filepath.Join(dir, "postgres.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-k", sock,
		"-c", "listen_addresses=" + listen, "-c", "max_connections=50"}
	if !opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	p, err := proc.Start(ctx, proc.Cmd{
		Name: filepath.Join(bin, "postgres"),
		Args: args,
		Env:  env, User: runAs, Output: logf,
	})
	if err != nil {
		logf.Close()
		t.Fatalf("starting postgres: %v", err)
	}
	t.Cleanup(func() {
		p.Stop(10 * time.Second)
		logf.Close()
	})
	pg := &Postgres{
		URL:  fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		Port: port,
		Bin:  bin,
	}
	wait, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		try, cancelTry := context.WithTimeout(wait, 2*time.Second)
		conn, err := pgx.Connect(try, pg.URL)
		cancelTry()
		if err == nil {
			conn.Close(ctx)
			return pg
		}
		select {
		case <-p.Done():
			log, _ := os.ReadFile(logPath)
			t.Fatalf("postgres exited early: %v\n%s", p.Wait(), log)
		case <-wait.Done():
			log, _ := os.ReadFile(logPath)
			t.Fatalf("postgres not ready after 60s: %v\n%s", err, log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CreateDB creates a fresh database (with the extensions uuid-ossp and
// pgcrypto, as the app needs) and returns its URL.
func (p *Postgres) CreateDB(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL)
	if err != nil {
		t.Fatalf("connecting to the test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("creating database %q: %v", name, err)
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	dbURL := u.String()
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connecting to database %q: %v", name, err)
	}
	defer db.Close(ctx)
	for _, ext := range []string{"uuid-ossp", "pgcrypto"} {
		if _, err := db.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS "+pgx.Identifier{ext}.Sanitize()); err != nil {
			t.Fatalf("creating extension %s in %q (Debian: package postgresql-contrib or postgresql >= 10): %v", ext, name, err)
		}
	}
	return dbURL
}

// The app's database, as the db service of its docker-compose.yml declares
// it (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB).
const (
	AppDBUser     = "app"
	AppDBPassword = "app"
	AppDBName     = "app"
)

// CreateAppDB creates what the app's db service gets from its image: the
// role app with password app, and the database app owned by it, with the
// extensions uuid-ossp and pgcrypto (the only ones the app's DDL uses).
// It returns postgres://app:app@127.0.0.1:PORT/app?sslmode=disable. Unlike
// the image, which makes POSTGRES_USER the superuser, the role only gets
// CREATEDB (for shadow databases): the db stand-in's port is published on
// every host address, and a superuser with a known password would be a
// shell on this machine (COPY ... TO PROGRAM). Call it once per server.
func (p *Postgres) CreateAppDB(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL)
	if err != nil {
		t.Fatalf("connecting to the test server: %v", err)
	}
	defer conn.Close(ctx)
	role := pgx.Identifier{AppDBUser}.Sanitize()
	for _, stmt := range []string{
		// A literal, not a parameter: utility statements take none. The
		// password is a constant without quotes.
		fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB PASSWORD '%s'", role, AppDBPassword),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{AppDBName}.Sanitize(), role),
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("creating the app's role and database (%s): %v", stmt, err)
		}
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + AppDBName
	// The extensions are made by the superuser, so the role needs no more
	// rights; the DDL's CREATE EXTENSION IF NOT EXISTS finds them.
	db, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("connecting to database %q: %v", AppDBName, err)
	}
	defer db.Close(ctx)
	for _, ext := range []string{"uuid-ossp", "pgcrypto"} {
		if _, err := db.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS "+pgx.Identifier{ext}.Sanitize()); err != nil {
			t.Fatalf("creating extension %s in %q (Debian: package postgresql-contrib or postgresql >= 10): %v", ext, AppDBName, err)
		}
	}
	u.User = url.UserPassword(AppDBUser, AppDBPassword)
	return u.String()
}
