#!/usr/bin/env bash
# The main job on the embedded default store (a local directory, no cloud
# account): build and sign the sample app, publish it, verify it as an
# agent would, then a code change, a config-only change, a rollback, and
# a tampered release being rejected.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=$root/.demo
rm -rf "$demo" && mkdir -p "$demo"
go build -o "$demo/bin/" ./cmd/publisher
pub="$demo/bin/publisher"
store="file://$demo/store"
export COSIGN_PASSWORD=demo-password   # throwaway key for the demo only

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s#$demo#.demo#g"; "$@"; }

step "An application repository (the sample app in testdata/sampleapp)"
cp -r testdata/sampleapp "$demo/app"
git -C "$demo/app" init -q -b main
git -C "$demo/app" add -A
git -C "$demo/app" -c user.name=Demo -c user.email=demo@example.com commit -q -m "sample app v1"

step "A signing key (cosign-compatible)"
run "$pub" keygen --out "$demo/keys"

step "Publish release 1: reproducible bundle + signed release manifest"
run "$pub" publish --repo "$demo/app" --ref main --env demo --store "$store" --key "$demo/keys/cosign.key" --manifest testdata/demo/demo.yaml

step "Verify the latest release the way an agent does"
run "$pub" verify --store "$store" --env demo --key "$demo/keys/cosign.pub"

step "A code change on main publishes a new bundle"
sed -i 's/status: .ok./status: "ok", greeting: "v2"/' "$demo/app/apps/api/server.js"
git -C "$demo/app" -c user.name=Demo -c user.email=demo@example.com commit -qam "api: v2"
run "$pub" publish --repo "$demo/app" --env demo --store "$store" --key "$demo/keys/cosign.key" --manifest testdata/demo/demo.yaml

step "A manifest change (a merged pull request) publishes a config-only release"
sed 's/APP_GREETING: hello/APP_GREETING: bonjour/' testdata/demo/demo.yaml > "$demo/demo.yaml"
run "$pub" check "$demo/demo.yaml"
run "$pub" publish --env demo --store "$store" --key "$demo/keys/cosign.key" --manifest "$demo/demo.yaml"

step "Roll back: a new release pointing at release 1"
run "$pub" rollback --store "$store" --env demo --to 1 --key "$demo/keys/cosign.key"
run "$pub" verify --store "$store" --env demo --key "$demo/keys/cosign.pub"

step "Tampering with the store is caught (exit 3)"
latest=$(cat "$demo/store/releases/demo/latest")
sed -i 's/APP_GREETING: hello/APP_GREETING: pwned/' "$demo/store/releases/demo/$latest.yaml"
set +e
"$pub" verify --store "$store" --env demo --key "$demo/keys/cosign.pub"
code=$?
set -e
echo "exit code $code"
[ "$code" -eq 3 ] || { echo "demo: expected exit 3 for a tampered release"; exit 1; }

step "The store"
(cd "$demo/store" && find . -type f | sort)
echo
echo "demo: ok (files in .demo/)"
