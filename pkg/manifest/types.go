package manifest

import "github.com/invopop/jsonschema"

// APIVersion is the only apiVersion this code reads and writes.
const APIVersion = "deploy.cohuron.dev/v1"

// Kinds of document.
const (
	KindEnvironment = "Environment"
	KindRelease     = "Release"
)

// Environment is manifests/<env>.yaml: the desired state of one
// environment, minus the application code.
type Environment struct {
	APIVersion string   `yaml:"apiVersion" json:"apiVersion"`
	Kind       string   `yaml:"kind" json:"kind"`
	Metadata   Metadata `yaml:"metadata" json:"metadata"`
	Spec       Spec     `yaml:"spec" json:"spec"`
}

// Metadata names the environment.
type Metadata struct {
	// Name is the environment name (prod, staging, …); releases are kept per name.
	Name   string            `yaml:"name" json:"name"`
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// Spec is what a host of the environment must look like.
type Spec struct {
	// Paths on the host.
	Paths Paths `yaml:"paths" json:"paths"`
	// User is the unprivileged account that runs install scripts, hooks and processes.
	User string `yaml:"user,omitempty" json:"user,omitempty"`
	// EnvFiles are written into the release directory before anything runs.
	EnvFiles []EnvFile `yaml:"envFiles,omitempty" json:"envFiles,omitempty"`
	// Install installs dependencies (pnpm install --frozen-lockfile).
	Install *Install `yaml:"install,omitempty" json:"install,omitempty"`
	// Build hooks run in the release directory after install.
	Build []Hook `yaml:"build,omitempty" json:"build,omitempty"`
	// Compose describes the Docker Compose services the app depends on.
	Compose *Compose `yaml:"compose,omitempty" json:"compose,omitempty"`
	// Schema describes the database schema import.
	Schema *Schema `yaml:"schema,omitempty" json:"schema,omitempty"`
	// Processes are the application processes, each with health checks.
	Processes []Process `yaml:"processes" json:"processes"`
}

// Paths are absolute directories on the host.
type Paths struct {
	// Root is the live release, switched atomically (/opt/cohuron).
	Root string `yaml:"root" json:"root"`
	// Backups keeps previous releases for rollback (/opt/cohuron-backups).
	Backups string `yaml:"backups" json:"backups"`
}

// EnvFile is a dotenv file written into the release.
type EnvFile struct {
	// Path relative to the release root, e.g. apps/api/.env.
	Path string `yaml:"path" json:"path"`
	// Vars maps variable names to literal values or secret references.
	Vars map[string]Value `yaml:"vars" json:"vars"`
}

// Install is the dependency installation step.
type Install struct {
	Command []string `yaml:"command" json:"command"`
	// Cwd is relative to the release root; empty means the root.
	Cwd     string   `yaml:"cwd,omitempty" json:"cwd,omitempty"`
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Hook is a build command run in the release directory.
type Hook struct {
	Name    string   `yaml:"name" json:"name"`
	Command []string `yaml:"command" json:"command"`
	Cwd     string   `yaml:"cwd,omitempty" json:"cwd,omitempty"`
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Outputs are what the hook builds (e.g. apps/web/dist), relative to the
	// release root. When what the hook builds from did not change, the
	// agent carries them over from the running release instead of running
	// the hook; a hook without outputs runs on every release.
	Outputs []string `yaml:"outputs,omitempty" json:"outputs,omitempty"`
	// Inputs are globs of the bundle files the hook builds from, relative
	// to the release root ("**" matches any number of directories, e.g.
	// apps/web/**). The lockfile, the workspace file, every package.json
	// and the env files the globs match are implied. Empty: every file.
	Inputs []string `yaml:"inputs,omitempty" json:"inputs,omitempty"`
	// At says where the hook runs: on each host (host, the default), or
	// once by `publisher publish` (publish), which ships the outputs as a
	// signed artifact beside the bundle that hosts only extract.
	At string `yaml:"at,omitempty" json:"at,omitempty" jsonschema:"enum=host,enum=publish"`
}

// Hook locations (Hook.At).
const (
	AtHost    = "host"
	AtPublish = "publish"
)

// AtPublish reports whether the publisher runs the hook.
func (h *Hook) AtPublish() bool { return h.At == AtPublish }

// Compose is the Docker Compose project of the environment.
type Compose struct {
	// File is the compose file, relative to the release root.
	File string `yaml:"file" json:"file"`
	// Project is the compose project name (-p).
	Project string `yaml:"project" json:"project"`
	// EnvFile is an env file (declared in envFiles) passed with --env-file.
	EnvFile string `yaml:"envFile,omitempty" json:"envFile,omitempty"`
	// Services that must be running (and healthy, when they declare a healthcheck).
	Services      []string `yaml:"services,omitempty" json:"services,omitempty"`
	HealthTimeout Duration `yaml:"healthTimeout,omitempty" json:"healthTimeout,omitempty"`
}

// Schema is the database schema import.
type Schema struct {
	// Dir holds the DDL files, relative to the release root.
	Dir string `yaml:"dir" json:"dir"`
	// DatabaseURL is where to import; normally a secret reference.
	DatabaseURL Value `yaml:"databaseURL" json:"databaseURL"`
	// Files are applied in this order (not alphabetical). Globs
	// (db/**/*.ddl) add the .sql and .ddl files they match that are not
	// listed, after the list, in path order.
	Files []string `yaml:"files" json:"files"`
	// Seed files run once, on first install, never again.
	Seed []string `yaml:"seed,omitempty" json:"seed,omitempty"`
	// AllowDestructive lets DROP SCHEMA/TABLE and TRUNCATE through (after a dump).
	AllowDestructive bool `yaml:"allowDestructive,omitempty" json:"allowDestructive,omitempty"`
	// Reversible says a pg_dump taken before import may be restored on rollback.
	Reversible bool `yaml:"reversible,omitempty" json:"reversible,omitempty"`
	// Schemas are the database schemas the files define (e.g. app): they
	// are dumped before a change and, when reversible, restored by an
	// automatic rollback. Empty means the whole database is dumped and
	// nothing is restored.
	Schemas []string `yaml:"schemas,omitempty" json:"schemas,omitempty"`
	// Mode is history (default: each file runs once, when new or changed,
	// recorded in cohuron_agent.schema_history) or declarative (the files
	// describe the whole schema: imported into a shadow database as psql
	// imports them, compared with the live database, what adds applied,
	// what loses data refused unless renames or drops declare it).
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty" jsonschema:"enum=history,enum=declarative"`
	// Strict (declarative): a statement that fails in the shadow import
	// refuses the release instead of being a warning.
	Strict bool `yaml:"strict,omitempty" json:"strict,omitempty"`
	// Renames (declarative): schema.table -> new table name, or
	// schema.table.column -> new column name; run as ALTER ... RENAME
	// before the comparison, rows kept.
	Renames map[string]string `yaml:"renames,omitempty" json:"renames,omitempty"`
	// Drops (declarative): the tables (schema.table) and columns
	// (schema.table.column) that may be dropped, or changed to a type
	// without a safe cast, losing their data (after the dump), and the
	// unique indexes, foreign keys, checks and primary keys
	// (schema.table.name) that may be dropped.
	Drops []string `yaml:"drops,omitempty" json:"drops,omitempty"`
	// ReferenceData (declarative): the tables (schema.table) the app reads
	// as data (entity types, labels, permissions) that receive the files'
	// rows live lacks, by primary key. No other table ever gets a row from
	// a deploy after the first install.
	ReferenceData []string `yaml:"referenceData,omitempty" json:"referenceData,omitempty"`
}

// Schema modes (Schema.Mode).
const (
	SchemaHistory     = "history"
	SchemaDeclarative = "declarative"
)

// Declarative reports whether the schema is declarative.
func (s *Schema) Declarative() bool { return s != nil && s.Mode == SchemaDeclarative }

// Process is one application process.
type Process struct {
	Name    string   `yaml:"name" json:"name"`
	Cwd     string   `yaml:"cwd,omitempty" json:"cwd,omitempty"`
	Command []string `yaml:"command" json:"command"`
	// EnvFile names one of spec.envFiles, loaded into the process environment.
	EnvFile string `yaml:"envFile,omitempty" json:"envFile,omitempty"`
	// Port the process listens on, if any.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// Mode is fork (default) or cluster (PM2 reload without dropping requests).
	Mode      string `yaml:"mode,omitempty" json:"mode,omitempty" jsonschema:"enum=fork,enum=cluster"`
	Instances int    `yaml:"instances,omitempty" json:"instances,omitempty"`
	// Inputs are globs of the bundle files the process runs from (as for
	// build hooks; the dependency files are implied). The process is
	// restarted only when they, its env file or its definition changed, or
	// a build hook with outputs under its cwd ran. Empty: every file.
	Inputs []string `yaml:"inputs,omitempty" json:"inputs,omitempty"`
	// Health checks; every process needs at least one.
	Health []HealthCheck `yaml:"health" json:"health"`
}

// HealthCheck is one probe; exactly one of HTTP, TCP and Exec is set.
type HealthCheck struct {
	HTTP *HTTPCheck `yaml:"http,omitempty" json:"http,omitempty"`
	TCP  *TCPCheck  `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	Exec *ExecCheck `yaml:"exec,omitempty" json:"exec,omitempty"`
	// Timeout of one probe (default 5s).
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Within is how long the process may take to become healthy (default 60s).
	Within Duration `yaml:"within,omitempty" json:"within,omitempty"`
}

// JSONSchemaExtend tells editors what Validate enforces: exactly one kind
// of probe per check.
func (HealthCheck) JSONSchemaExtend(s *jsonschema.Schema) {
	s.OneOf = []*jsonschema.Schema{{Required: []string{"http"}}, {Required: []string{"tcp"}}, {Required: []string{"exec"}}}
}

// HTTPCheck passes when GET URL answers ExpectStatus (default 200).
type HTTPCheck struct {
	URL          string `yaml:"url" json:"url"`
	ExpectStatus int    `yaml:"expectStatus,omitempty" json:"expectStatus,omitempty"`
}

// TCPCheck passes when Address accepts a connection.
type TCPCheck struct {
	Address string `yaml:"address" json:"address"`
}

// ExecCheck passes when Command exits 0.
type ExecCheck struct {
	Command []string `yaml:"command" json:"command"`
}

// nodeValueFlags are node options that take their value as the next
// argument (`--import tsx`); any other option must be one word
// (`--max-old-space-size=512`).
var nodeValueFlags = map[string]bool{
	"-r": true, "--require": true, "--import": true, "--loader": true, "--experimental-loader": true,
	"-C": true, "--conditions": true, "--env-file": true, "--title": true, "--input-type": true,
}

// NodeScript splits a process command [node, options…, script, args…]
// into node's own options, the script and its arguments. ok is false
// when the command does not start with node or names no script.
func NodeScript(command []string) (nodeArgs []string, script string, args []string, ok bool) {
	if len(command) < 2 || command[0] != "node" {
		return nil, "", nil, false
	}
	rest := command[1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			if i+1 < len(rest) {
				return rest[:i], rest[i+1], rest[i+2:], true
			}
			return nil, "", nil, false
		case len(a) > 1 && a[0] == '-':
			if nodeValueFlags[a] {
				i++ // the option's value
			}
		default:
			return rest[:i], a, rest[i+1:], true
		}
	}
	return nil, "", nil, false
}
