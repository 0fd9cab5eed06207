package preflight

import (
	"errors"
	"io/fs"
	"os/user"
	"slices"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/proc"
)

func userUnknown(name string) error { return user.UnknownUserError(name) }

var (
	rootAgent  = proc.UserInfo{Uid: 0, Gid: 0, Groups: []uint32{0}, Home: "/root", Name: "root"}
	plainAgent = proc.UserInfo{Uid: 1000, Gid: 1000, Groups: []uint32{1000}, Home: "/home/ops", Name: "ops"}
	stdEnv     = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}
)

func fakeChecker(f *fakeFS, agent proc.UserInfo) *Checker {
	return &Checker{FS: f, LookupUser: fakeUsers, Agent: &agent, UserName: fakeName, GroupName: fakeName}
}

// pmoSpec is the shape of the real app's manifest: pnpm install and
// build as cohuron, a node process, compose and a schema.
func pmoSpec() *manifest.Spec {
	return &manifest.Spec{
		User:    "cohuron",
		Install: &manifest.Install{Command: []string{"pnpm", "install", "--frozen-lockfile"}},
		Build:   []manifest.Hook{{Name: "web", Command: []string{"pnpm", "--filter", "web", "build"}}},
		Compose: &manifest.Compose{File: "docker-compose.yml", Project: "pmo"},
		Schema:  &manifest.Schema{Dir: "db"},
		Processes: []manifest.Process{{Name: "api", Command: []string{"node", "apps/api/dist/server.js"},
			Health: []manifest.HealthCheck{{HTTP: &manifest.HTTPCheck{URL: "http://127.0.0.1:4000/api/health"}}}}},
	}
}

// installOnly is a spec whose only step is pnpm install as cohuron.
func installOnly(s *manifest.Spec) {
	*s = manifest.Spec{User: "cohuron", Install: &manifest.Install{Command: []string{"pnpm", "install"}}}
}

func processes(cmds ...[]string) func(*manifest.Spec) {
	return func(s *manifest.Spec) {
		*s = manifest.Spec{User: "cohuron"}
		for i, c := range cmds {
			s.Processes = append(s.Processes, manifest.Process{Name: string(rune('a' + i)), Command: c})
		}
	}
}

func TestCheck(t *testing.T) {
	const (
		pnpmCheck    = "tool pnpm (for spec.install, run as cohuron)"
		pnpmExpected = "expected pnpm on the agent's PATH, executable by cohuron"
		pnpmFix      = "fix: install pnpm where cohuron can reach it (npm install -g pnpm@9 puts it in /usr/local/bin) or put such a pnpm first on the agent's PATH"
	)
	for _, tc := range []struct {
		name  string
		host  func(f *fakeFS)
		spec  func(s *manifest.Spec)
		env   []string
		agent *proc.UserInfo
		want  []string // Problem.String of each problem, in order
		pass  []string // Pass.String of each pass, when given
	}{
		{
			name: "the pmo spec on a Debian host",
			pass: []string{
				"spec.user: ok: cohuron (uid 1001, gid 1001)",
				"tool pnpm (for spec.install, spec.build[web], run as cohuron): ok: /usr/local/bin/pnpm → /usr/local/lib/node_modules/pnpm/bin/pnpm.cjs (#!/usr/bin/env node)",
				"tool node (for spec.install, spec.build[web], spec.processes[api], run as cohuron): ok: /usr/bin/node",
				"tool docker (for spec.compose, run as root): ok: /usr/bin/docker",
				"tool docker compose (for spec.compose, run as root): ok: plugin /usr/libexec/docker/cli-plugins/docker-compose",
				"tool pg_dump (for spec.schema, run as root): ok: /usr/bin/pg_dump → /usr/share/postgresql-common/pg_wrapper (#!/usr/bin/perl)",
				"tool psql (for spec.schema, run as root): ok: /usr/bin/psql → /usr/share/postgresql-common/pg_wrapper (#!/usr/bin/perl)",
			},
		},
		{
			name: "spec.user missing: its tools are still checked, as for a new account",
			host: func(f *fakeFS) {
				f.rm("/usr/local/bin/pnpm").bin("/root/.local/share/pnpm/pnpm")
			},
			spec: func(s *manifest.Spec) { installOnly(s); s.User = "app" },
			env:  []string{"PATH=/root/.local/share/pnpm:/usr/bin"},
			want: []string{
				"spec.user: expected an account app on this host; found no such user; fix: useradd --system --create-home --shell /usr/sbin/nologin app",
				"tool pnpm (for spec.install, run as app): expected pnpm on the agent's PATH, executable by app; found /root/.local/share/pnpm/pnpm is not executable by app: /root is mode 0700 owned by root; " +
					"fix: install pnpm where app can reach it (npm install -g pnpm@9 puts it in /usr/local/bin) or put such a pnpm first on the agent's PATH",
			},
		},
		{
			name: "pnpm installed under root's home (the operators' report)",
			host: func(f *fakeFS) { f.bin("/root/.local/share/pnpm/pnpm") },
			spec: installOnly,
			env:  []string{"PATH=/root/.local/share/pnpm:/usr/bin"},
			want: []string{pnpmCheck + ": " + pnpmExpected + "; found /root/.local/share/pnpm/pnpm is not executable by cohuron: /root is mode 0700 owned by root; " + pnpmFix},
		},
		{
			name: "a usable pnpm later on the PATH: the fix says to reorder",
			host: func(f *fakeFS) { f.bin("/root/.local/share/pnpm/pnpm") },
			spec: installOnly,
			env:  []string{"PATH=/root/.local/share/pnpm/:/usr/local/bin:/usr/bin"}, // a trailing slash too
			want: []string{pnpmCheck + ": " + pnpmExpected + "; found /root/.local/share/pnpm/pnpm is not executable by cohuron: /root is mode 0700 owned by root; " +
				"fix: put /usr/local/bin before /root/.local/share/pnpm on the agent's PATH (/usr/local/bin/pnpm → /usr/local/lib/node_modules/pnpm/bin/pnpm.cjs is executable by cohuron), or install pnpm where cohuron can reach it (npm install -g pnpm@9 puts it in /usr/local/bin) or put such a pnpm first on the agent's PATH"},
		},
		{
			name: "a link from a public directory into root's home: the target's directory blocks",
			host: func(f *fakeFS) {
				f.rm("/usr/local/bin/pnpm").link("/usr/local/bin/pnpm", "/root/.local/share/pnpm/pnpm").bin("/root/.local/share/pnpm/pnpm")
			},
			spec: installOnly,
			want: []string{pnpmCheck + ": " + pnpmExpected + "; found /usr/local/bin/pnpm → /root/.local/share/pnpm/pnpm is not executable by cohuron: /root is mode 0700 owned by root; " + pnpmFix},
		},
		{
			name: "a link through a closed directory to a public file: the path as given blocks",
			host: func(f *fakeFS) {
				f.dir("/opt/private", 0o700, 0, 0).link("/opt/private/pnpm", "/usr/local/lib/node_modules/pnpm/bin/pnpm.cjs")
			},
			spec: installOnly,
			env:  []string{"PATH=/opt/private:/usr/bin"},
			want: []string{pnpmCheck + ": " + pnpmExpected + "; found /opt/private/pnpm → /usr/local/lib/node_modules/pnpm/bin/pnpm.cjs is not executable by cohuron: /opt/private is mode 0700 owned by root; " + pnpmFix},
		},
		{
			name: "no execute bit for others on the file",
			host: func(f *fakeFS) {
				f.file("/usr/local/lib/node_modules/pnpm/bin/pnpm.cjs", 0o744, 0, 0, "#!/usr/bin/env node")
			},
			spec: installOnly,
			want: []string{pnpmCheck + ": " + pnpmExpected + "; found /usr/local/bin/pnpm → /usr/local/lib/node_modules/pnpm/bin/pnpm.cjs is not executable by cohuron: /usr/local/lib/node_modules/pnpm/bin/pnpm.cjs is mode 0744 owned by root; " + pnpmFix},
		},
		{
			name: "group bits apply through a supplementary group",
			host: func(f *fakeFS) {
				f.dir("/opt/tools", 0o750, 0, gidStaff).file("/opt/tools/pnpm", 0o750, 0, gidStaff, "\x7fELF")
			},
			spec: installOnly,
			env:  []string{"PATH=/opt/tools:/usr/bin"},
			pass: []string{"spec.user: ok: cohuron (uid 1001, gid 1001)",
				"tool pnpm (for spec.install, run as cohuron): ok: /opt/tools/pnpm",
				"tool node (for spec.install, run as cohuron): ok: /usr/bin/node"},
		},
		{
			name: "a group cohuron is not in: the directory blocks, its group named",
			host: func(f *fakeFS) {
				f.dir("/opt/tools", 0o750, 0, gidWheel).file("/opt/tools/pnpm", 0o755, 0, 0, "\x7fELF")
			},
			spec: installOnly,
			env:  []string{"PATH=/opt/tools:/usr/bin"},
			want: []string{pnpmCheck + ": " + pnpmExpected + "; found /opt/tools/pnpm is not executable by cohuron: /opt/tools is mode 0750 owned by root (group wheel); " + pnpmFix},
		},
		{
			name: "the owner class applies alone: 0605 owned by cohuron is not executable by cohuron",
			host: func(f *fakeFS) { f.file("/opt/tools/pnpm", 0o605, uidCohuron, gidCohuron, "\x7fELF") },
			spec: installOnly,
			env:  []string{"PATH=/opt/tools:/usr/bin"},
			want: []string{pnpmCheck + ": " + pnpmExpected + "; found /opt/tools/pnpm is not executable by cohuron: /opt/tools/pnpm is mode 0605 owned by cohuron; " + pnpmFix},
		},
		{
			name: "an exec-only binary is fine, an exec-only script is not",
			host: func(f *fakeFS) {
				f.file("/opt/tools/pnpm", 0o711, 0, 0, "\x7fELF")
				f.file("/opt/tools/node", 0o711, 0, 0, "#!/usr/bin/sh\n")
			},
			spec: installOnly,
			env:  []string{"PATH=/opt/tools:/usr/bin"},
			want: []string{"tool node (for spec.install, run as cohuron): expected node on the agent's PATH, executable by cohuron; found /opt/tools/node is a script (#!/usr/bin/sh) that cohuron cannot read: /opt/tools/node is mode 0711 owned by root; " +
				"fix: put /usr/bin before /opt/tools on the agent's PATH (/usr/bin/node is executable by cohuron), or install node where cohuron can reach it (apt-get install nodejs (Node.js 20) puts it in /usr/bin) or put such a node first on the agent's PATH"},
		},
		{
			name: "a #! interpreter cohuron cannot reach",
			host: func(f *fakeFS) {
				f.bin("/root/.nvm/versions/node/v20/bin/node")
				f.script("/usr/local/lib/node_modules/pnpm/bin/pnpm.cjs", "#!/root/.nvm/versions/node/v20/bin/node")
			},
			spec: installOnly,
			want: []string{pnpmCheck + ": " + pnpmExpected + "; found /usr/local/bin/pnpm → /usr/local/lib/node_modules/pnpm/bin/pnpm.cjs (#!/root/.nvm/versions/node/v20/bin/node): interpreter /root/.nvm/versions/node/v20/bin/node is not executable by cohuron: /root is mode 0700 owned by root; " + pnpmFix},
		},
		{
			name: "a missing #! interpreter",
			host: func(f *fakeFS) { f.rm("/usr/bin/perl") },
			spec: func(s *manifest.Spec) { *s = manifest.Spec{Schema: &manifest.Schema{Dir: "db"}} },
			want: []string{
				"tool pg_dump (for spec.schema, run as root): expected pg_dump on the agent's PATH, executable by root; found /usr/bin/pg_dump → /usr/share/postgresql-common/pg_wrapper (#!/usr/bin/perl): interpreter /usr/bin/perl does not exist; fix: install pg_dump (apt-get install postgresql-client puts it in /usr/bin) or put such a pg_dump first on the agent's PATH",
				"tool psql (for spec.schema, run as root): expected psql on the agent's PATH, executable by root; found /usr/bin/psql → /usr/share/postgresql-common/pg_wrapper (#!/usr/bin/perl): interpreter /usr/bin/perl does not exist; fix: install psql (apt-get install postgresql-client puts it in /usr/bin) or put such a psql first on the agent's PATH",
			},
		},
		{
			name: "#!/usr/bin/env names a program not checked on its own",
			host: func(f *fakeFS) {
				f.rm("/usr/bin/node").script("/usr/local/bin/npx", "#!/usr/bin/env node")
				f.dir("/root/.nvm/bin", 0o755, 0, 0).bin("/root/.nvm/bin/node")
			},
			spec: func(s *manifest.Spec) {
				*s = manifest.Spec{User: "cohuron", Build: []manifest.Hook{{Name: "web", Command: []string{"npx", "vite", "build"}}}}
			},
			env: []string{"PATH=/usr/local/bin:/usr/bin:/root/.nvm/bin"},
			want: []string{"tool npx (for spec.build[web], run as cohuron): expected npx on the agent's PATH, executable by cohuron; found /usr/local/bin/npx (#!/usr/bin/env node): no node on the PATH is executable by cohuron; " +
				"fix: install npx where cohuron can reach it or put such a npx first on the agent's PATH"},
		},
		{
			name: "scripts that run themselves through env: the check ends",
			host: func(f *fakeFS) {
				f.script("/usr/local/bin/a", "#!/usr/bin/env b").script("/usr/local/bin/b", "#!/usr/bin/env b")
			},
			spec: func(s *manifest.Spec) {
				*s = manifest.Spec{User: "cohuron", Install: &manifest.Install{Command: []string{"a"}}}
			},
			want: []string{"tool a (for spec.install, run as cohuron): expected a on the agent's PATH, executable by cohuron; found /usr/local/bin/a (#!/usr/bin/env b): no b on the PATH is executable by cohuron; " +
				"fix: install a where cohuron can reach it or put such a a first on the agent's PATH"},
		},
		{
			name: "not found, with what was passed over on the way",
			host: func(f *fakeFS) {
				f.rm("/usr/local/bin/pnpm").file("/usr/local/bin/pnpm", 0o644, 0, 0, "")
				f.link("/usr/bin/pnpm", "/opt/pnpm/bin/pnpm")
				f.dir("/opt/bin/pnpm", 0o755, 0, 0)
			},
			spec: installOnly,
			env:  []string{"PATH=/usr/local/bin:relative/bin:/usr/bin:/opt/bin:/nonexistent"},
			want: []string{pnpmCheck + ": " + pnpmExpected + "; found no executable pnpm in PATH /usr/local/bin:/usr/bin:/opt/bin:/nonexistent (" +
				"/usr/local/bin/pnpm has no execute bit (mode 0644 owned by root); /usr/bin/pnpm: /opt/pnpm does not exist; /opt/bin/pnpm is a directory); " +
				"fix: install pnpm (npm install -g pnpm@9 puts it in /usr/local/bin) or add its directory to the agent's PATH"},
		},
		{
			name: "a symlink loop",
			host: func(f *fakeFS) {
				f.rm("/usr/local/bin/pnpm").link("/usr/local/bin/pnpm", "pnpm2").link("/usr/local/bin/pnpm2", "pnpm")
			},
			spec: installOnly,
			env:  []string{"PATH=/usr/local/bin:/usr/bin"},
			want: []string{pnpmCheck + ": " + pnpmExpected + "; found no executable pnpm in PATH /usr/local/bin:/usr/bin (/usr/local/bin/pnpm is in a loop of symlinks (more than 40)); " +
				"fix: install pnpm (npm install -g pnpm@9 puts it in /usr/local/bin) or add its directory to the agent's PATH"},
		},
		{
			name: "process commands: node, pnpm and absolute paths are checked; names PM2 resolves and release paths are not",
			host: func(f *fakeFS) { f.bin("/opt/app/bin/worker") },
			spec: processes([]string{"node", "server.js"}, []string{"pnpm", "start"}, []string{"./bin/server"}, []string{"tsx", "src/server.ts"},
				[]string{"/opt/app/bin/worker"}, []string{"/opt/app/bin/missing"}),
			pass: []string{"spec.user: ok: cohuron (uid 1001, gid 1001)",
				"tool node (for spec.processes[a], spec.processes[b], run as cohuron): ok: /usr/bin/node",
				"tool pnpm (for spec.processes[b], run as cohuron): ok: /usr/local/bin/pnpm → /usr/local/lib/node_modules/pnpm/bin/pnpm.cjs (#!/usr/bin/env node)",
				"tool /opt/app/bin/worker (for spec.processes[e], run as cohuron): ok: /opt/app/bin/worker"},
			want: []string{"tool /opt/app/bin/missing (for spec.processes[f], run as cohuron): expected /opt/app/bin/missing executable by cohuron; found /opt/app/bin/missing does not exist; fix: install the program at /opt/app/bin/missing or change command[0] of spec.processes[f]"},
		},
		{
			name: "an absolute command in a closed directory",
			host: func(f *fakeFS) { f.bin("/root/bin/server") },
			spec: processes([]string{"/root/bin/server"}),
			want: []string{"tool /root/bin/server (for spec.processes[a], run as cohuron): expected /root/bin/server executable by cohuron; found /root/bin/server is not executable by cohuron: /root is mode 0700 owned by root; " +
				"fix: move the program where cohuron can reach it (every directory searchable, the file executable by cohuron) or change command[0] of spec.processes[a]"},
		},
		{
			name: "no spec.user, agent root: processes run as root, only an execute bit matters",
			host: func(f *fakeFS) {
				f.rm("/usr/bin/node").file("/root/.nvm/bin/node", 0o700, 0, 0, "\x7fELF")
				f.file("/root/bin/server", 0o600, 0, 0, "\x7fELF")
			},
			spec: func(s *manifest.Spec) {
				*s = manifest.Spec{Processes: []manifest.Process{{Name: "api", Command: []string{"node", "server.js"}},
					{Name: "worker", Command: []string{"/root/bin/server"}}}}
			},
			env:  []string{"PATH=/root/.nvm/bin:/usr/bin"},
			pass: []string{"tool node (for spec.processes[api], run as root): ok: /root/.nvm/bin/node"},
			want: []string{"tool /root/bin/server (for spec.processes[worker], run as root): expected /root/bin/server executable by root; found /root/bin/server is not executable by root: /root/bin/server is mode 0600 owned by root; " +
				"fix: move the program where root can reach it (every directory searchable, the file executable by root) or change command[0] of spec.processes[worker]"},
		},
		{
			name:  "agent not root: spec.user is not used, every step runs as the agent",
			agent: &plainAgent,
			host: func(f *fakeFS) {
				f.dir("/home/ops/.local/bin", 0o755, 1000, 1000).bin("/home/ops/.local/bin/pnpm")
				f.dir("/opt/closed", 0o700, 0, 0).bin("/opt/closed/docker")
			},
			spec: func(s *manifest.Spec) {
				*s = *pmoSpec()
				s.User = "nosuchuser"
				s.Schema = nil
			},
			env: []string{"PATH=/opt/closed:/home/ops/.local/bin:/usr/bin"},
			pass: []string{
				"spec.user: ok: not used: the agent runs as ops, not root, so every step runs as ops",
				"tool pnpm (for spec.install, spec.build[web], run as ops): ok: /home/ops/.local/bin/pnpm",
				"tool node (for spec.install, spec.build[web], spec.processes[api], run as ops): ok: /usr/bin/node",
				"tool docker (for spec.compose, run as ops): ok: /usr/bin/docker",
				"tool docker compose (for spec.compose, run as ops): ok: plugin /usr/libexec/docker/cli-plugins/docker-compose",
			},
		},
		{
			name:  "agent not root: a file the agent cannot stat is passed over, as pkg/proc passes it",
			agent: &plainAgent,
			host: func(f *fakeFS) {
				f.dir("/opt/closed", 0o700, 0, 0).bin("/opt/closed/pg_dump").bin("/opt/closed/psql")
				f.rm("/usr/bin/pg_dump")
			},
			spec: func(s *manifest.Spec) { *s = manifest.Spec{Schema: &manifest.Schema{Dir: "db"}} },
			env:  []string{"PATH=/opt/closed:/usr/bin"},
			want: []string{"tool pg_dump (for spec.schema, run as ops): expected pg_dump on the agent's PATH, executable by ops; found no executable pg_dump in PATH /opt/closed:/usr/bin (/opt/closed/pg_dump: /opt/closed is mode 0700 owned by root, closed to the agent (ops)); " +
				"fix: install pg_dump (apt-get install postgresql-client puts it in /usr/bin) or add its directory to the agent's PATH"},
		},
		{
			name: "compose: docker-compose when there is no plugin",
			host: func(f *fakeFS) { f.rm("/usr/libexec/docker").bin("/usr/bin/docker-compose") },
			spec: func(s *manifest.Spec) { *s = manifest.Spec{Compose: &manifest.Compose{File: "c.yml", Project: "p"}} },
			pass: []string{"tool docker (for spec.compose, run as root): ok: /usr/bin/docker",
				"tool docker compose (for spec.compose, run as root): ok: /usr/bin/docker-compose"},
		},
		{
			name: "compose: the plugin in root's ~/.docker (the agent's home: the env has no HOME)",
			host: func(f *fakeFS) {
				f.rm("/usr/libexec/docker").bin("/root/.docker/cli-plugins/docker-compose")
			},
			spec: func(s *manifest.Spec) { *s = manifest.Spec{Compose: &manifest.Compose{File: "c.yml", Project: "p"}} },
			pass: []string{"tool docker (for spec.compose, run as root): ok: /usr/bin/docker",
				"tool docker compose (for spec.compose, run as root): ok: plugin /root/.docker/cli-plugins/docker-compose"},
		},
		{
			name: "compose: DOCKER_CONFIG wins over HOME",
			host: func(f *fakeFS) {
				f.rm("/usr/libexec/docker").bin("/etc/docker-cli/cli-plugins/docker-compose").file("/home/x/.docker/cli-plugins/docker-compose", 0o644, 0, 0, "")
			},
			spec: func(s *manifest.Spec) { *s = manifest.Spec{Compose: &manifest.Compose{File: "c.yml", Project: "p"}} },
			env:  []string{"PATH=/usr/bin", "HOME=/home/x", "DOCKER_CONFIG=/etc/docker-cli"},
			pass: []string{"tool docker (for spec.compose, run as root): ok: /usr/bin/docker",
				"tool docker compose (for spec.compose, run as root): ok: plugin /etc/docker-cli/cli-plugins/docker-compose"},
		},
		{
			name: "compose: a broken first plugin hides the later ones (as in the docker CLI), docker-compose rescues",
			host: func(f *fakeFS) {
				f.file("/usr/local/lib/docker/cli-plugins/docker-compose", 0o644, 0, 0, "")
				f.bin("/usr/bin/docker-compose")
			},
			spec: func(s *manifest.Spec) { *s = manifest.Spec{Compose: &manifest.Compose{File: "c.yml", Project: "p"}} },
			pass: []string{"tool docker (for spec.compose, run as root): ok: /usr/bin/docker",
				"tool docker compose (for spec.compose, run as root): ok: /usr/bin/docker-compose"},
		},
		{
			name: "compose: none at all, and no docker",
			host: func(f *fakeFS) {
				f.rm("/usr/libexec/docker").rm("/usr/bin/docker")
				f.link("/usr/lib/docker/cli-plugins/docker-compose", "/nonexistent") // dangling: skipped
			},
			spec: func(s *manifest.Spec) { *s = manifest.Spec{Compose: &manifest.Compose{File: "c.yml", Project: "p"}} },
			env:  []string{"PATH=/usr/bin"},
			want: []string{
				"tool docker (for spec.compose, run as root): expected docker on the agent's PATH, executable by root; found no executable docker in PATH /usr/bin; fix: install docker (apt-get install docker.io puts it in /usr/bin) or add its directory to the agent's PATH",
				"tool docker compose (for spec.compose, run as root): expected the docker compose v2 plugin (docker-compose in a docker CLI plugin directory) or docker-compose on the agent's PATH, executable by root; " +
					"found no docker-compose plugin in /root/.docker/cli-plugins, /usr/local/lib/docker/cli-plugins, /usr/local/libexec/docker/cli-plugins, /usr/lib/docker/cli-plugins, /usr/libexec/docker/cli-plugins; no executable docker-compose in PATH /usr/bin; " +
					"fix: install the compose v2 plugin (apt-get install docker-compose-plugin, from Docker's apt repository, puts it in /usr/libexec/docker/cli-plugins) or docker-compose (apt-get install docker-compose puts it in /usr/bin)",
			},
		},
		{
			name: "compose: a broken plugin and nothing else",
			host: func(f *fakeFS) {
				f.rm("/usr/libexec/docker").file("/usr/local/lib/docker/cli-plugins/docker-compose", 0o644, 0, 0, "")
			},
			spec: func(s *manifest.Spec) { *s = manifest.Spec{Compose: &manifest.Compose{File: "c.yml", Project: "p"}} },
			env:  []string{"PATH=/usr/bin"},
			want: []string{"tool docker compose (for spec.compose, run as root): expected the docker compose v2 plugin (docker-compose in a docker CLI plugin directory) or docker-compose on the agent's PATH, executable by root; " +
				"found plugin /usr/local/lib/docker/cli-plugins/docker-compose is not executable by root: /usr/local/lib/docker/cli-plugins/docker-compose is mode 0644 owned by root; no executable docker-compose in PATH /usr/bin; " +
				"fix: install the compose v2 plugin (apt-get install docker-compose-plugin, from Docker's apt repository, puts it in /usr/libexec/docker/cli-plugins) or docker-compose (apt-get install docker-compose puts it in /usr/bin)"},
		},
		{
			name: "exec health checks run as the agent; install commands of any name are looked up",
			host: func(f *fakeFS) { f.rm("/usr/bin/sh") },
			spec: func(s *manifest.Spec) {
				*s = manifest.Spec{User: "cohuron", Install: &manifest.Install{Command: []string{"sh", "-c", "pnpm install"}},
					Processes: []manifest.Process{{Name: "api", Command: []string{"./server"},
						Health: []manifest.HealthCheck{{Exec: &manifest.ExecCheck{Command: []string{"curl", "-f", "http://127.0.0.1/"}}},
							{Exec: &manifest.ExecCheck{Command: []string{"bin/check"}}}}}}}
			},
			want: []string{
				"tool sh (for spec.install, run as cohuron): expected sh on the agent's PATH, executable by cohuron; found no executable sh in PATH /usr/local/bin:/usr/bin:/bin; fix: install sh or add its directory to the agent's PATH",
				"tool curl (for spec.processes[api].health[0], run as root): expected curl on the agent's PATH, executable by root; found no executable curl in PATH /usr/local/bin:/usr/bin:/bin; fix: install curl or add its directory to the agent's PATH",
			},
		},
		{
			name: "spec.user with uid 0",
			spec: func(s *manifest.Spec) { *s = manifest.Spec{User: "toor"} },
			want: []string{"spec.user: expected an unprivileged account (install scripts, build hooks and processes never run as root); found toor has uid 0; fix: set spec.user to an account with a uid of its own, e.g. one made by useradd --system --create-home --shell /usr/sbin/nologin cohuron"},
		},
		{
			name: "spec.user lookup fails for another reason",
			spec: func(s *manifest.Spec) { *s = manifest.Spec{User: "broken"} },
			want: []string{`spec.user: expected an account broken on this host; found looking up user "broken": nss: connection refused; fix: check the account databases (getent passwd broken; /etc/nsswitch.conf)`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := debianHost(t)
			if tc.host != nil {
				tc.host(f)
			}
			spec := pmoSpec()
			if tc.spec != nil {
				tc.spec(spec)
			}
			env := tc.env
			if env == nil {
				env = stdEnv
			}
			agent := rootAgent
			if tc.agent != nil {
				agent = *tc.agent
			}
			res := fakeChecker(f, agent).Check(spec, env)
			var got []string
			for _, p := range res.Problems {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if tc.pass != nil {
				var passed []string
				for _, p := range res.Passed {
					passed = append(passed, p.String())
				}
				if !slices.Equal(passed, tc.pass) {
					t.Errorf("passed:\n%s\nwant:\n%s", strings.Join(passed, "\n"), strings.Join(tc.pass, "\n"))
				}
			}
			if res.OK() != (len(tc.want) == 0) || (res.Err() == nil) != res.OK() {
				t.Errorf("OK() = %v, Err() = %v with %d problems", res.OK(), res.Err(), len(res.Problems))
			}
		})
	}
}

func TestErr(t *testing.T) {
	f := debianHost(t).rm("/usr/bin/node")
	spec := pmoSpec()
	spec.User = "cohuron-missing"
	err := fakeChecker(f, rootAgent).Check(spec, stdEnv).Err()
	var pe *Error
	if !errors.As(err, &pe) || len(pe.Problems) != 2 {
		t.Fatalf("Err() = %v, want an *Error with 2 problems", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 || lines[0] != "host preflight: 2 problems:" || !strings.HasPrefix(lines[1], "spec.user: ") ||
		!strings.HasPrefix(lines[2], "tool node (for spec.install, spec.build[web], spec.processes[api], run as cohuron-missing): ") {
		t.Errorf("Error() =\n%s\nwant a count line, then one line per problem", err)
	}
	if err := fakeChecker(debianHost(t), rootAgent).Check(pmoSpec(), stdEnv).Err(); err != nil {
		t.Errorf("Err() of a good host = %v", err)
	}
}

func TestResolve(t *testing.T) {
	f := newFakeFS(t)
	f.dir("/a/b", 0o755, 0, 0).bin("/a/b/file")
	f.link("/a/rel", "b/file")
	f.link("/a/up", "../a/./b//file")
	f.link("/a/abs", "/a/b/file")
	f.link("/a/chain", "rel")
	f.link("/a/dirlink", "b")
	f.link("/c", "/a/dirlink")
	f.link("/root-link", "/")
	f.link("/loop", "loop")
	for _, tc := range []struct {
		name, final string
		dirs        []string
		err         string
	}{
		{name: "/a/b/file", final: "/a/b/file", dirs: []string{"/", "/a", "/a/b"}},
		{name: "/a/rel", final: "/a/b/file", dirs: []string{"/", "/a", "/a/b"}},
		{name: "/a/up", final: "/a/b/file", dirs: []string{"/", "/a", "/a/b"}},
		{name: "/a/chain", final: "/a/b/file", dirs: []string{"/", "/a", "/a/b"}},
		{name: "/c/file", final: "/a/b/file", dirs: []string{"/", "/a", "/a/b"}},
		{name: "/a/b/../b/file", final: "/a/b/file", dirs: []string{"/", "/a", "/a/b"}},
		{name: "/root-link", final: "/", dirs: []string{"/"}},
		{name: "/a/dirlink", final: "/a/b", dirs: []string{"/", "/a"}},
		{name: "/a/b/file/x", err: "/a/b/file is not a directory"},
		{name: "/a/missing/x", err: "/a/missing does not exist"},
		{name: "/loop", err: "/loop is in a loop of symlinks (more than 40)"},
		{name: "a/b", err: "a/b is not an absolute path"},
	} {
		w, err := resolve(f, tc.name)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("resolve(%s) error = %v, want %s", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || w.final != tc.final || !slices.Equal(w.dirs, tc.dirs) {
			t.Errorf("resolve(%s) = %s via %q, %v; want %s via %q", tc.name, w.final, w.dirs, err, tc.final, tc.dirs)
		}
	}
	var we *walkError
	if _, err := resolve(f, "/a/missing"); !errors.As(err, &we) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("resolve of a missing file: %v, want a *walkError matching fs.ErrNotExist", err)
	}
}

func TestAllows(t *testing.T) {
	cohuron := account{name: "cohuron", uid: uidCohuron, groups: []uint32{gidCohuron, gidStaff}}
	root := account{name: "root", root: true}
	missing := account{name: "new", missing: true}
	file := func(perm fs.FileMode, uid, gid uint32) Info { return Info{Mode: perm, Uid: uid, Gid: gid} }
	dir := func(perm fs.FileMode, uid, gid uint32) Info { return Info{Mode: fs.ModeDir | perm, Uid: uid, Gid: gid} }
	for _, tc := range []struct {
		name string
		a    account
		info Info
		bit  fs.FileMode
		want bool
	}{
		{"owner x", cohuron, file(0o700, uidCohuron, 0), permSearch, true},
		{"owner without x, other with", cohuron, file(0o605, uidCohuron, 0), permSearch, false},
		{"primary group", cohuron, file(0o750, 0, gidCohuron), permSearch, true},
		{"supplementary group", cohuron, file(0o750, 0, gidStaff), permSearch, true},
		{"group without x, other with", cohuron, file(0o705, 0, gidStaff), permSearch, false},
		{"other", cohuron, file(0o701, 0, 0), permSearch, true},
		{"other without x", cohuron, file(0o770, 0, 0), permSearch, false},
		{"read by other", cohuron, file(0o704, 0, 0), permRead, true},
		{"no read", cohuron, file(0o711, 0, 0), permRead, false},
		{"root: any x on a file", root, file(0o100, 5, 5), permSearch, true},
		{"root: no x on a file", root, file(0o666, 5, 5), permSearch, false},
		{"root: any directory", root, dir(0o000, 5, 5), permSearch, true},
		{"root: reads anything", root, file(0o000, 5, 5), permRead, true},
		{"a missing account gets other bits: owner uid 0 does not match", missing, file(0o700, 0, 0), permSearch, false},
		{"a missing account gets other bits", missing, file(0o701, 0, 0), permSearch, true},
	} {
		if got := tc.a.allows(tc.info, tc.bit); got != tc.want {
			t.Errorf("%s: allows(%v, %o) = %v, want %v", tc.name, tc.info.Mode, tc.bit, got, tc.want)
		}
	}
}

func TestNeeds(t *testing.T) {
	got := needs(pmoSpec())
	want := []need{
		{"pnpm", true, []string{"spec.install", "spec.build[web]"}},
		{"node", true, []string{"spec.install", "spec.build[web]", "spec.processes[api]"}},
		{"docker", false, []string{"spec.compose"}},
		{composeTool, false, []string{"spec.compose"}},
		{"pg_dump", false, []string{"spec.schema"}},
		{"psql", false, []string{"spec.schema"}},
	}
	if !slices.EqualFunc(got, want, func(a, b need) bool {
		return a.tool == b.tool && a.asApp == b.asApp && slices.Equal(a.steps, b.steps)
	}) {
		t.Errorf("needs(pmo) = %+v\nwant %+v", got, want)
	}
	if n := needs(&manifest.Spec{}); len(n) != 0 {
		t.Errorf("needs of an empty spec = %+v", n)
	}
}

func TestShebang(t *testing.T) {
	for _, tc := range []struct{ line, interp, arg, prog string }{
		{"/usr/bin/env node", "/usr/bin/env", "node", "node"},
		{" /usr/bin/env  -S node --max-old-space-size=4096 ", "/usr/bin/env", "-S node --max-old-space-size=4096", "node"},
		{"/usr/bin/env NODE_ENV=production node", "/usr/bin/env", "NODE_ENV=production node", "node"},
		{"/bin/sh", "/bin/sh", "", ""},
		{"/usr/bin/perl -w", "/usr/bin/perl", "-w", ""},
	} {
		interp, arg := splitShebang(tc.line)
		if interp != tc.interp || arg != tc.arg {
			t.Errorf("splitShebang(%q) = %q, %q; want %q, %q", tc.line, interp, arg, tc.interp, tc.arg)
		}
		if tc.interp == "/usr/bin/env" {
			if p := envProgram(arg); p != tc.prog {
				t.Errorf("envProgram(%q) = %q, want %q", arg, p, tc.prog)
			}
		}
	}
}
