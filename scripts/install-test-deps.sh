#!/usr/bin/env bash
# Installs everything the test suite needs, idempotently, on a fresh
# Debian machine with Go: git, util-linux (unshare), mount, Node.js and npm, the
# Docker engine and docker-compose, PostgreSQL (Debian); the MinIO server
# and the cosign CLI (built from the Go module proxy into a cache
# directory), and terraform when the machine has none; PM2 and pnpm (npm).
# Safe to run again: it only builds what is missing or at the wrong version.
set -euo pipefail

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c   # github.com/minio/minio (no tagged Go module)
COSIGN_VERSION=v2.6.5                              # github.com/sigstore/cosign/v2
PM2_VERSION=6.0.14                                 # npm: pm2 (the agent's process manager)
PNPM_VERSION=9.15.9                                # npm: pnpm (the app's package manager)
TERRAFORM_VERSION=v1.5.7                           # github.com/hashicorp/terraform, only when none is on PATH
GO_MIN=1.26.5

BIN="${COHURON_TEST_BIN:-$HOME/.cache/cohuron-test/bin}"
mkdir -p "$BIN"

say() { printf 'install-test-deps: %s\n' "$*" >&2; }

# Go toolchain: the module pins it, but an older local go cannot even start.
if ! command -v go >/dev/null; then
  say "go is not installed; install Go $GO_MIN or newer first"; exit 1
fi
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$GO_MIN" "$have" | sort -V | head -1)" != "$GO_MIN" ]; then
  say "go $have is older than $GO_MIN (it lacks the os.Root and archive/tar fixes); install a newer Go"; exit 1
fi

# Debian packages.
need_apt=()
command -v git >/dev/null || need_apt+=(git)
command -v unshare >/dev/null || need_apt+=(util-linux)
# The disk-full tests mount small tmpfs filesystems.
{ command -v mount >/dev/null && command -v umount >/dev/null; } || need_apt+=(mount)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
{ command -v dockerd >/dev/null && command -v docker >/dev/null; } || need_apt+=(docker.io)
# The agent uses `docker compose` (v2) or `docker-compose` (v1), whichever
# a host has; the end-to-end tests and the bench's old-script baseline run
# `docker-compose`, so it is installed even next to the v2 plugin.
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
[ -x /usr/lib/postgresql/15/bin/postgres ] || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then say "please install: ${need_apt[*]}"; exit 1; fi
  say "apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# go_tool NAME MODULE@VERSION: build into $BIN unless that version is there.
go_tool() {
  local name=$1 pkg=$2 version=$3 stamp="$BIN/.$1.version"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg@$version" ]; then
    return 0
  fi
  say "building $name ($pkg@$version) into $BIN; this takes a few minutes the first time"
  GOBIN="$BIN" GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install "$pkg@$version"
  echo "$pkg@$version" > "$stamp"
}

# `install-test-deps.sh pm2` installs only what the demo needs.
if [ "${1:-all}" != pm2 ]; then
  go_tool cosign github.com/sigstore/cosign/v2/cmd/cosign "$COSIGN_VERSION"
  go_tool minio github.com/minio/minio "$MINIO_VERSION"
  # Terraform (terraform fmt -check, terraform output -json): the machine's
  # own when it has one; otherwise the last MPL release, built from the Go
  # module proxy (later releases carry replace directives go install refuses).
  command -v terraform >/dev/null || go_tool terraform github.com/hashicorp/terraform "$TERRAFORM_VERSION"
fi

# PM2 and pnpm from the npm registry, into a cache (not the system's global
# prefix). As root they go to /var/cache/cohuron-test/npm, world-readable:
# the dependency tests run pnpm as the unprivileged app user, who cannot
# enter /root (0700). COHURON_TEST_NPM overrides the prefix.
if [ -n "${COHURON_TEST_NPM:-}" ]; then
  NPM_PREFIX=$COHURON_TEST_NPM
elif [ "$(id -u)" -eq 0 ]; then
  NPM_PREFIX=/var/cache/cohuron-test/npm
else
  NPM_PREFIX="$(dirname "$BIN")/npm"
fi
(umask 022 && mkdir -p "$NPM_PREFIX")
if [ "$(id -u)" -eq 0 ]; then
  chmod 0755 "$NPM_PREFIX"
  [ "$NPM_PREFIX" != /var/cache/cohuron-test/npm ] || chmod 0755 /var/cache/cohuron-test
  # Every directory from / down to the prefix must be enterable by others.
  d=$NPM_PREFIX
  while [ "$d" != / ] && [ "$d" != . ]; do
    if [ $(( 0$(stat -c %a "$d") & 1 )) -eq 0 ]; then
      say "warning: $d is not enterable by others (o+x): the app user cannot run pnpm from $NPM_PREFIX"
    fi
    d=$(dirname "$d")
  done
fi
npm_tool() {
  local name=$1 version=$2
  if [ "$(cat "$BIN/.$name.version" 2>/dev/null)" != "$version" ] || [ ! -x "$NPM_PREFIX/bin/$name" ] ||
     [ "$(readlink "$BIN/$name" 2>/dev/null)" != "$NPM_PREFIX/bin/$name" ]; then
    say "installing $name@$version into $NPM_PREFIX"
    (umask 022 && npm install --global --prefix "$NPM_PREFIX" --no-audit --no-fund --loglevel=error "$name@$version" >/dev/null)
    echo "$version" > "$BIN/.$name.version"
  fi
  ln -sfn "$NPM_PREFIX/bin/$name" "$BIN/$name"
}
npm_tool pm2 "$PM2_VERSION"
npm_tool pnpm "$PNPM_VERSION"

say "ready in $BIN: pm2 $PM2_VERSION, pnpm $PNPM_VERSION, node $(node --version)$([ "${1:-all}" = pm2 ] || echo ", cosign $COSIGN_VERSION, minio $MINIO_VERSION, $(PATH="$BIN:$PATH" terraform version 2>/dev/null | head -1)")"
