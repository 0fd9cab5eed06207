// Package preflight checks, before the agent changes anything, that a host
// can run a release's spec, and says how to fix every way it cannot: that
// spec.user exists and is unprivileged, and that each program a step
// starts (pnpm and node for install, build hooks and processes; docker and
// compose for spec.compose; pg_dump and psql for spec.schema; absolute
// commands and exec health checks) is the file pkg/proc would pick from
// the agent's tool PATH and that whoever runs it may execute it.
//
// "May execute" is decided from file metadata the way the kernel decides
// it: symlinks are resolved component by component, every directory
// searched on the way (of the path as given and of each link target) must
// grant search to the account, the file must be regular with the execute
// bit of the account's class (owner, group including supplementary
// groups, or other), and a #! script must also be readable and its
// interpreter executable. Root needs only an execute bit.
//
// preflight must never run a tool (not even `--version`), never change
// the host (no chmod, no useradd: it names those commands in its fixes),
// and never import os/exec. It reads metadata, link targets and the first
// bytes of a program (for a #! line) only.
package preflight
