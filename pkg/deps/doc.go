// Package deps is the dependency step of a release: it installs the
// pnpm workspace's node_modules (pnpm install --frozen-lockfile) only when
// the dependency key changed, and otherwise reuses the previous release's
// installed trees as hard-link clones, without touching the network.
//
// The key covers the publisher's digest of the dependency inputs
// (lockfile, workspace file, every package.json) and the node and pnpm
// versions. A finished install leaves a marker
// (node_modules/.cohuron-deps.json) naming its key and every node_modules
// directory it made; Check trusts nothing without it.
//
// deps must never run an install script as root (it refuses when it is
// root and no unprivileged user is set), change the lockfile, follow a
// symlink out of a release while cloning, or mark an install good before
// pnpm exited zero. Reused trees share inodes with the previous release,
// as pnpm's own store links do: nothing may modify installed files in
// place.
package deps
