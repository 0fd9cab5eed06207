#!/usr/bin/env bash
# The main job on the embedded default store (a local directory, no cloud
# account): the publisher builds, signs and publishes the sample app; the
# agent verifies it, converges the "host" (a directory under .demo/, the
# app under PM2) and health-checks it; a config-only change and a code
# change follow; then a release whose health check fails is rolled back
# automatically and `agent status` says why.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh pm2 >/dev/null
BIN="${COHURON_TEST_BIN:-$HOME/.cache/cohuron-test/bin}"
export PATH="$BIN:$PATH"

root=$PWD
demo=$root/.demo
if [ -d "$demo/pm2" ]; then PM2_HOME="$demo/pm2" pm2 kill >/dev/null 2>&1 || true; fi
rm -rf "$demo" && mkdir -p "$demo"
go build -o "$demo/bin/" ./cmd/publisher ./cmd/agent
export PATH="$demo/bin:$PATH"
export COSIGN_PASSWORD=demo-password   # throwaway key for the demo only
store="file://$demo/store"
port=${DEMO_PORT:-4711}
trap 'PM2_HOME="$demo/pm2" pm2 kill >/dev/null 2>&1 || true' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s#$demo#.demo#g"; "$@"; }
health() { printf '$ curl http://127.0.0.1:%s/api/health\n' "$port"; node -e "require('http').get('http://127.0.0.1:$port/api/health', r => { let b=''; r.on('data', d => b += d); r.on('end', () => console.log(r.statusCode, b)); }).on('error', e => { console.log('no answer:', e.message); })"; }

step "An application repository (testdata/sampleapp) and a signing key"
cp -r testdata/sampleapp "$demo/app"
git -C "$demo/app" init -q -b main
git -C "$demo/app" add -A
git -C "$demo/app" -c user.name=Demo -c user.email=demo@example.com commit -q -m "sample app v1"
run publisher keygen --out "$demo/keys"
mkdir -p "$demo/secrets/etc/cohuron/demo" && echo "demo-jwt-secret" > "$demo/secrets/etc/cohuron/demo/jwt-secret"
# The demo host lives under $demo: its paths replace /opt (agents refuse a
# release whose spec.paths are not the paths they manage).
sed "s/4000/$port/g; s#/opt/cohuron#$demo/host/opt/cohuron#g" testdata/demo/demo.yaml > "$demo/demo.yaml"
cat > "$demo/agent.yaml" <<YAML
store: $store
env: demo
key: $demo/keys/cosign.pub
root: $demo/host/opt/cohuron
backups: $demo/host/opt/cohuron-backups
stateDir: $demo/host/var/lib/cohuron-agent
pm2Home: $demo/pm2
secretsDir: $demo/secrets
hostId: demo-host
YAML

step "Publish release 1 and let the agent converge the host"
run publisher publish --repo "$demo/app" --env demo --store "$store" --key "$demo/keys/cosign.key" --manifest "$demo/demo.yaml"
run agent plan --config "$demo/agent.yaml"
run agent once --config "$demo/agent.yaml" 2>/dev/null
health

step "A manifest change (merged pull request): config-only release, only the affected process restarts"
sed -i 's/APP_GREETING: hello/APP_GREETING: bonjour/' "$demo/demo.yaml"
run publisher check "$demo/demo.yaml"
run publisher publish --env demo --store "$store" --key "$demo/keys/cosign.key" --manifest "$demo/demo.yaml"
run agent once --config "$demo/agent.yaml" 2>/dev/null
health

step "A code change on main: new bundle"
sed -i 's/"version": "1.0.0"/"version": "2.0.0"/' "$demo/app/apps/api/package.json"
git -C "$demo/app" -c user.name=Demo -c user.email=demo@example.com commit -qam "api 2.0.0"
run publisher publish --repo "$demo/app" --env demo --store "$store" --key "$demo/keys/cosign.key" --manifest "$demo/demo.yaml"
run agent once --config "$demo/agent.yaml" 2>/dev/null
health

step "A release whose health check fails: the agent rolls back automatically (exit 4)"
mkdir -p "$demo/broken"
sed 's#url: "http://127.0.0.1:'"$port"'/api/health"#url: "http://127.0.0.1:'"$port"'/api/v1/health"#; s/within: 30s/within: 5s/' "$demo/demo.yaml" > "$demo/broken/demo.yaml"
run publisher publish --env demo --store "$store" --key "$demo/keys/cosign.key" --manifest "$demo/broken/demo.yaml"
set +e
run agent once --config "$demo/agent.yaml" 2>/dev/null
code=$?
set -e
echo "exit code $code"
[ "$code" -eq 4 ] || { echo "demo: expected exit 4 (rolled back)"; exit 1; }
health
run agent status --config "$demo/agent.yaml"

step "The store and the host"
(cd "$demo/store" && find . -type f | sort)
ls -l "$demo/host/opt" | sed "s#$demo#.demo#g"
echo
echo "demo: ok (files in .demo/)"
