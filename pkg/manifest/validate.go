package manifest

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/cohuron/deploy/pkg/strictyaml"
)

var (
	envNameRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	nameRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	varNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	userRE       = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	projectRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	schemaNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	hexSHA256    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	digestRE     = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	bundleKey    = regexp.MustCompile(`^bundles/[A-Za-z0-9._-]+\.tar\.gz$`)
	commitRE     = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)
	maxTimeout   = time.Hour
)

// Validate checks the meaning of an environment manifest.
func (e *Environment) Validate() []strictyaml.Problem {
	var ps []strictyaml.Problem
	if e.APIVersion != APIVersion {
		ps = append(ps, problem("apiVersion", "expected %q, found %q", APIVersion, e.APIVersion))
	}
	if e.Kind != KindEnvironment {
		ps = append(ps, problem("kind", "expected %q, found %q", KindEnvironment, e.Kind))
	}
	if !envNameRE.MatchString(e.Metadata.Name) {
		ps = append(ps, problem("metadata.name", "expected a lowercase DNS label (a-z, 0-9, -), found %q", e.Metadata.Name))
	}
	return append(ps, e.Spec.validate("spec")...)
}

// Validate checks the meaning of a release manifest (its signature is
// checked elsewhere, before parsing).
func (r *Release) Validate() []strictyaml.Problem {
	var ps []strictyaml.Problem
	if r.APIVersion != APIVersion {
		ps = append(ps, problem("apiVersion", "expected %q, found %q", APIVersion, r.APIVersion))
	}
	if r.Kind != KindRelease {
		ps = append(ps, problem("kind", "expected %q, found %q", KindRelease, r.Kind))
	}
	if !envNameRE.MatchString(r.Env) {
		ps = append(ps, problem("env", "expected a lowercase DNS label, found %q", r.Env))
	}
	if r.Seq == 0 {
		ps = append(ps, problem("seq", "must be 1 or more"))
	}
	if r.IssuedAt.IsZero() || !r.ExpiresAt.After(r.IssuedAt) {
		ps = append(ps, problem("expiresAt", "must be after issuedAt (%s), found %s", r.IssuedAt.Format(time.RFC3339), r.ExpiresAt.Format(time.RFC3339)))
	}
	if !bundleKey.MatchString(r.Bundle.Key) {
		ps = append(ps, problem("bundle.key", "expected bundles/<name>.tar.gz, found %q", r.Bundle.Key))
	}
	if !hexSHA256.MatchString(r.Bundle.SHA256) {
		ps = append(ps, problem("bundle.sha256", "expected 64 lowercase hex digits, found %q", r.Bundle.SHA256))
	}
	if r.Bundle.Size <= 0 || r.Bundle.Files <= 0 || r.Bundle.Unpacked < 0 {
		ps = append(ps, problem("bundle", "size and files must be positive, found size %d, files %d", r.Bundle.Size, r.Bundle.Files))
	}
	if !commitRE.MatchString(r.Source.Commit) {
		ps = append(ps, problem("source.commit", "expected a full hex commit id, found %q", r.Source.Commit))
	}
	for name, in := range map[string]Input{
		"dependencies": r.Inputs.Dependencies, "compose": r.Inputs.Compose,
		"schema": r.Inputs.Schema, "config": r.Inputs.Config, "code": r.Inputs.Code,
	} {
		if !digestRE.MatchString(in.Digest) {
			ps = append(ps, problem("inputs."+name+".digest", "expected sha256:<64 hex>, found %q", in.Digest))
		}
	}
	for _, m := range []struct {
		name string
		in   map[string]Input
	}{{"hooks", r.Inputs.Hooks}, {"processes", r.Inputs.Processes}} {
		for _, k := range slices.Sorted(maps.Keys(m.in)) {
			if !digestRE.MatchString(m.in[k].Digest) {
				ps = append(ps, problem("inputs."+m.name+"."+k+".digest", "expected sha256:<64 hex>, found %q", m.in[k].Digest))
			}
		}
	}
	hooks := map[string]*Hook{}
	for i := range r.Spec.Build {
		hooks[r.Spec.Build[i].Name] = &r.Spec.Build[i]
	}
	seen := map[string]bool{}
	for i, a := range r.Artifacts {
		p := fmt.Sprintf("artifacts[%d]", i)
		h := hooks[a.Hook]
		switch {
		case h == nil || !h.AtPublish():
			ps = append(ps, problem(p+".hook", "expected a build hook that runs at publish time, found %q", a.Hook))
		case seen[a.Hook]:
			ps = append(ps, problem(p+".hook", "hook %q has two artifacts", a.Hook))
		case a.Inputs != r.Inputs.Hooks[a.Hook].Digest:
			ps = append(ps, problem(p+".inputs", "expected the hook's input digest %q, found %q", r.Inputs.Hooks[a.Hook].Digest, a.Inputs))
		}
		seen[a.Hook] = true
		if !bundleKey.MatchString(a.Key) {
			ps = append(ps, problem(p+".key", "expected bundles/<name>.tar.gz, found %q", a.Key))
		}
		if !hexSHA256.MatchString(a.SHA256) {
			ps = append(ps, problem(p+".sha256", "expected 64 lowercase hex digits, found %q", a.SHA256))
		}
		if a.Size <= 0 || a.Files <= 0 || a.Unpacked < 0 {
			ps = append(ps, problem(p, "size and files must be positive, found size %d, files %d", a.Size, a.Files))
		}
	}
	for _, h := range r.Spec.Build {
		if h.AtPublish() && !seen[h.Name] {
			ps = append(ps, problem("artifacts", "build hook %q runs at publish time but the release has no artifact for it", h.Name))
		}
	}
	return append(ps, r.Spec.validate("spec")...)
}

func (s *Spec) validate(at string) []strictyaml.Problem {
	var ps []strictyaml.Problem
	add := func(p, format string, args ...any) { ps = append(ps, problem(at+"."+p, format, args...)) }

	for _, f := range []struct{ name, val string }{{"paths.root", s.Paths.Root}, {"paths.backups", s.Paths.Backups}} {
		if !path.IsAbs(f.val) || path.Clean(f.val) != f.val || f.val == "/" {
			add(f.name, "expected a clean absolute directory other than /, found %q", f.val)
		}
	}
	if r, b := s.Paths.Root, s.Paths.Backups; r != "" && (r == b || strings.HasPrefix(b+"/", r+"/") || strings.HasPrefix(r+"/", b+"/")) {
		add("paths.backups", "must not be %q or nested with paths.root %q", b, r)
	}
	if s.User != "" && (!userRE.MatchString(s.User) || s.User == "root") {
		add("user", "expected an unprivileged user name, found %q", s.User)
	}

	envFiles := map[string]bool{}
	for i, f := range s.EnvFiles {
		p := fmt.Sprintf("envFiles[%d]", i)
		if err := relPath(f.Path); err != "" {
			add(p+".path", "%s", err)
		}
		if envFiles[f.Path] {
			add(p+".path", "duplicate env file %q", f.Path)
		}
		envFiles[f.Path] = true
		if len(f.Vars) == 0 {
			add(p+".vars", "declare at least one variable")
		}
		for _, name := range slices.Sorted(maps.Keys(f.Vars)) {
			vp := p + ".vars." + name
			if !varNameRE.MatchString(name) {
				add(vp, "invalid variable name %q: expected letters, digits and _", name)
			}
			ps = append(ps, checkValue(at+"."+vp, name, f.Vars[name])...)
		}
	}

	if in := s.Install; in != nil {
		ps = append(ps, checkCommand(at+".install", in.Command, in.Cwd, in.Timeout)...)
	}
	hooks := map[string]bool{}
	for i, h := range s.Build {
		p := fmt.Sprintf("build[%d]", i)
		if !nameRE.MatchString(h.Name) || hooks[h.Name] {
			add(p+".name", "expected a unique lowercase name, found %q", h.Name)
		}
		hooks[h.Name] = true
		ps = append(ps, checkCommand(at+"."+p, h.Command, h.Cwd, h.Timeout)...)
		for j, o := range h.Outputs {
			if err := relPath(o); err != "" {
				add(fmt.Sprintf("%s.outputs[%d]", p, j), "%s", err)
			}
		}
		ps = append(ps, checkGlobs(at+"."+p+".inputs", h.Inputs)...)
		switch h.At {
		case "", AtHost:
		case AtPublish:
			if len(h.Outputs) == 0 {
				add(p+".outputs", "a hook that runs at publish time ships its outputs to the hosts: declare them")
			}
			if len(h.Inputs) == 0 {
				// Its artifact is reused while its inputs' digest holds: it
				// must say what it reads, env files included (vite bakes
				// VITE_* values into the build).
				add(p+".inputs", "a hook that runs at publish time is rebuilt only when its inputs change: declare them (globs, e.g. apps/web/**; env files they match count)")
			}
		default:
			add(p+".at", "expected host or publish, found %q", h.At)
		}
	}
	if (s.Install != nil || len(s.Build) > 0) && s.User == "" {
		add("user", "required with install or build: install scripts and build hooks never run as root")
	}

	if c := s.Compose; c != nil {
		if err := relPath(c.File); err != "" {
			add("compose.file", "%s", err)
		}
		if !projectRE.MatchString(c.Project) {
			add("compose.project", "expected lowercase letters, digits, - and _, found %q", c.Project)
		}
		if c.EnvFile != "" && !envFiles[c.EnvFile] {
			add("compose.envFile", "%q is not declared in envFiles", c.EnvFile)
		}
		seen := map[string]bool{}
		for i, svc := range c.Services {
			if !projectRE.MatchString(svc) || seen[svc] {
				add(fmt.Sprintf("compose.services[%d]", i), "expected a unique service name, found %q", svc)
			}
			seen[svc] = true
		}
		ps = append(ps, checkTimeout(at+".compose.healthTimeout", c.HealthTimeout)...)
	}

	if sc := s.Schema; sc != nil {
		if err := relPath(sc.Dir); err != "" {
			add("schema.dir", "%s", err)
		}
		ps = append(ps, checkValue(at+".schema.databaseURL", "DATABASE_URL", sc.DatabaseURL)...)
		if sc.DatabaseURL == (Value{}) {
			add("schema.databaseURL", "required")
		}
		if len(sc.Files) == 0 {
			add("schema.files", "list the schema files in import order (globs like db/**/*.ddl add the files they match that are not listed, after the list, in path order)")
		}
		seen := map[string]bool{}
		for _, list := range []struct {
			name  string
			files []string
		}{{"files", sc.Files}, {"seed", sc.Seed}} {
			for i, f := range list.files {
				p := fmt.Sprintf("schema.%s[%d]", list.name, i)
				if err := relPath(f); err != "" {
					add(p, "%s", err)
				} else if !strings.HasPrefix(f, sc.Dir+"/") {
					add(p, "%q is outside schema.dir %q", f, sc.Dir)
				}
				switch glob := IsGlob(f); {
				case glob && list.name == "seed":
					add(p, "expected a seed file, found the glob %q: seeds run once each, list them by name", f)
				case glob && !doublestar.ValidatePattern(f):
					add(p, "invalid glob %q (use * within a name, ** for any directories, {a,b} for either)", f)
				case !glob && !isSchemaFile(f):
					add(p, "expected a .sql or .ddl file (or a glob matching them, e.g. %s/**/*.ddl), found %q", sc.Dir, f)
				}
				if seen[f] {
					add(p, "%q is listed twice", f)
				}
				seen[f] = true
			}
		}
		for i, name := range sc.Schemas {
			if !schemaNameRE.MatchString(name) {
				add(fmt.Sprintf("schema.schemas[%d]", i), "expected a schema name (lowercase letters, digits, _), found %q", name)
			}
		}
		if sc.Reversible && len(sc.Schemas) == 0 {
			add("schema.reversible", "a reversible import needs schema.schemas: the schemas to dump before and restore on rollback")
		}
		switch sc.Mode {
		case "", SchemaHistory:
			for _, f := range []struct {
				what string
				set  bool
			}{{"strict", sc.Strict}, {"renames", len(sc.Renames) > 0}, {"drops", len(sc.Drops) > 0}, {"referenceData", len(sc.ReferenceData) > 0}} {
				if f.set {
					add("schema."+f.what, "only with schema.mode: declarative")
				}
			}
		case SchemaDeclarative:
			if len(sc.Schemas) == 0 {
				add("schema.schemas", "schema.mode declarative compares these database schemas with the files': name them (e.g. [app])")
			}
			if len(sc.Seed) > 0 {
				add("schema.seed", "schema.mode declarative loads the files' rows on the first install into an empty database, and never again: list seed files in schema.files")
			}
			if sc.AllowDestructive {
				add("schema.allowDestructive", "schema.mode declarative never runs the files on the live database: declare what may be dropped in schema.drops")
			}
			for from, to := range sc.Renames {
				parts := strings.Split(from, ".")
				if (len(parts) != 2 && len(parts) != 3) || !slices.Contains(sc.Schemas, parts[0]) || !schemaNameRE.MatchString(to) {
					add("schema.renames", "expected schema.table: new_table or schema.table.column: new_column, the schema one of schema.schemas; found %q: %q", from, to)
				}
			}
			for i, r := range sc.ReferenceData {
				if parts := strings.Split(r, "."); len(parts) != 2 || !slices.Contains(sc.Schemas, parts[0]) {
					add(fmt.Sprintf("schema.referenceData[%d]", i), "expected schema.table, the schema one of schema.schemas; found %q", r)
				}
			}
			for i, d := range sc.Drops {
				if parts := strings.Split(d, "."); (len(parts) != 2 && len(parts) != 3) || !slices.Contains(sc.Schemas, parts[0]) {
					add(fmt.Sprintf("schema.drops[%d]", i), "expected schema.table, schema.table.column or schema.table.constraint, the schema one of schema.schemas; found %q", d)
				}
			}
		default:
			add("schema.mode", "expected history or declarative, found %q", sc.Mode)
		}
	}

	if len(s.Processes) == 0 {
		add("processes", "declare at least one process")
	}
	procs, ports := map[string]bool{}, map[int]string{}
	for i, pr := range s.Processes {
		p := fmt.Sprintf("processes[%d]", i)
		if !nameRE.MatchString(pr.Name) || procs[pr.Name] {
			add(p+".name", "expected a unique lowercase name, found %q", pr.Name)
		}
		procs[pr.Name] = true
		ps = append(ps, checkCommand(at+"."+p, pr.Command, pr.Cwd, Duration{})...)
		ps = append(ps, checkGlobs(at+"."+p+".inputs", pr.Inputs)...)
		if pr.EnvFile != "" && !envFiles[pr.EnvFile] {
			add(p+".envFile", "%q is not declared in envFiles", pr.EnvFile)
		}
		if pr.Port != 0 {
			if pr.Port < 1 || pr.Port > 65535 {
				add(p+".port", "expected 1-65535, found %d", pr.Port)
			} else if other, dup := ports[pr.Port]; dup {
				add(p+".port", "port %d is also used by %s", pr.Port, other)
			}
			ports[pr.Port] = pr.Name
		}
		switch pr.Mode {
		case "", "fork", "cluster":
		default:
			add(p+".mode", "expected fork or cluster, found %q", pr.Mode)
		}
		if pr.Instances < 0 || pr.Instances > 64 || (pr.Instances > 1 && pr.Mode != "cluster") {
			add(p+".instances", "expected 1-64, and more than 1 only in cluster mode, found %d", pr.Instances)
		}
		if len(pr.Health) == 0 {
			add(p+".health", "process %s has no health check; declare at least one", pr.Name)
		}
		for j, h := range pr.Health {
			ps = append(ps, h.validate(fmt.Sprintf("%s.%s.health[%d]", at, p, j))...)
		}
	}
	return ps
}

func (h *HealthCheck) validate(at string) []strictyaml.Problem {
	var ps []strictyaml.Problem
	n := 0
	if h.HTTP != nil {
		n++
		u, err := url.Parse(h.HTTP.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ps = append(ps, problem(at+".http.url", "expected an http:// or https:// URL, found %q", h.HTTP.URL))
		} else if u.User != nil {
			ps = append(ps, problem(at+".http.url", "health check URLs must not carry credentials, found %q", u.Redacted()))
		}
		if s := h.HTTP.ExpectStatus; s != 0 && (s < 100 || s > 599) {
			ps = append(ps, problem(at+".http.expectStatus", "expected an HTTP status 100-599, found %d", s))
		}
	}
	if h.TCP != nil {
		n++
		host, port, err := net.SplitHostPort(h.TCP.Address)
		pn, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || pn < 1 || pn > 65535 {
			ps = append(ps, problem(at+".tcp.address", "expected host:port, found %q", h.TCP.Address))
		}
	}
	if h.Exec != nil {
		n++
		if len(h.Exec.Command) == 0 || h.Exec.Command[0] == "" {
			ps = append(ps, problem(at+".exec.command", "must not be empty"))
		}
	}
	if n != 1 {
		ps = append(ps, problem(at, "set exactly one of http, tcp and exec, found %d", n))
	}
	ps = append(ps, checkTimeout(at+".timeout", h.Timeout)...)
	return append(ps, checkTimeout(at+".within", h.Within)...)
}

func checkCommand(at string, argv []string, cwd string, timeout Duration) []strictyaml.Problem {
	var ps []strictyaml.Problem
	if len(argv) == 0 || argv[0] == "" {
		ps = append(ps, problem(at+".command", "must not be empty"))
	}
	if cwd != "" {
		if err := relPath(cwd); err != "" {
			ps = append(ps, problem(at+".cwd", "%s", err))
		}
	}
	return append(ps, checkTimeout(at+".timeout", timeout)...)
}

// MatchesInputs reports whether the bundle path p matches one of the
// input globs (doublestar syntax, as checkGlobs accepts them); with no
// globs every path matches: a hook or process that declares no inputs
// depends on the whole bundle.
func MatchesInputs(globs []string, p string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, _ := doublestar.Match(g, p); ok {
			return true
		}
	}
	return false
}

// checkGlobs checks input globs: clean relative patterns with valid syntax.
func checkGlobs(at string, globs []string) []strictyaml.Problem {
	var ps []strictyaml.Problem
	for i, g := range globs {
		p := fmt.Sprintf("%s[%d]", at, i)
		if err := relPath(g); err != "" {
			ps = append(ps, problem(p, "%s", err))
		} else if !doublestar.ValidatePattern(g) {
			ps = append(ps, problem(p, "invalid glob %q (use * within a name, ** for any directories, {a,b} for either)", g))
		}
	}
	return ps
}

func checkTimeout(at string, d Duration) []strictyaml.Problem {
	if d.Duration < 0 || d.Duration > maxTimeout {
		return []strictyaml.Problem{problem(at, "expected a duration between 0 and %s, found %s", maxTimeout, d.Duration)}
	}
	return nil
}

// relPath returns a complaint when p is not a clean relative path inside
// the release, or "" when it is.
func relPath(p string) string {
	switch {
	case p == "":
		return "path is empty"
	case path.IsAbs(p):
		return fmt.Sprintf("expected a path relative to the release root, found absolute %q", p)
	case path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Sprintf("expected a clean path inside the release (no . or .. parts), found %q", p)
	case strings.ContainsAny(p, "\x00\\"):
		return fmt.Sprintf("path %q contains a NUL or backslash", p)
	}
	return ""
}
