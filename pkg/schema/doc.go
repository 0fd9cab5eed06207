// Package schema imports a release's PostgreSQL schema: the DDL files in
// the fixed order the manifest lists them, and the seed files on first
// install only.
//
// The database remembers what was applied in cohuron_agent.schema_history
// (file, SHA-256, kind, release seq, host, time). A file runs only when it
// is new or its content changed; a seed runs only on the first install and
// never again, whatever its checksum. Pending tells, with one read of the
// history, whether anything must run, so a converge with nothing to do
// does not touch the schema.
//
// Apply runs everything in one transaction under an advisory lock, so
// several hosts sharing a database import once and a failing file leaves
// the database exactly as it was; the error names the file and line.
// Statements that lose data (DROP SCHEMA/TABLE/DATABASE/OWNED, TRUNCATE,
// ALTER TABLE ... DROP COLUMN) are refused unless the release allows them
// (the agent dumps the schemas with Dump first) or the database has no
// tables. Restore puts a dump back.
//
// Shadow (schema.mode declarative, being built: issue 14) imports the
// files into a throwaway database on the same server the way the app's
// own tooling does, psql without ON_ERROR_STOP: each failing statement is
// a warning with file:line, the failed ones run once more after the rest
// (an order problem when they then pass; drops and deletes never), and
// the shadow is dropped afterwards, or by the next import after a crash.
//
// schema must never re-run an unchanged file or a seed, apply anything
// outside one transaction, let a file's BEGIN/COMMIT end that
// transaction, drop data the release did not allow to drop, or put the
// database password in an error, a log line or a command line, or let
// psql run a meta-command from a schema file. Only
// pg_dump and psql are run, through pkg/proc.
package schema
