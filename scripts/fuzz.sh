#!/usr/bin/env bash
# Runs every fuzz target in the module for a short time each (default 5s).
#
# FUZZPARALLEL=N      passed to go test as -parallel N (fuzz workers).
# COHURON_RELIABILITY_OUT=DIR
#                     also write one JSON line per target to DIR/fuzz.jsonl
#                     (package, target, fuzztime, execs, interesting,
#                     elapsed, passed) for docs/RELIABILITY.md
#                     (make reliability). The file is rewritten each run.
set -euo pipefail
fuzztime=${1:-5s}

parallel=()
if [[ -n ${FUZZPARALLEL:-} ]]; then
  parallel=(-parallel "$FUZZPARALLEL")
fi

record=
log=
if [[ -n ${COHURON_RELIABILITY_OUT:-} ]]; then
  mkdir -p "$COHURON_RELIABILITY_OUT"
  record=$COHURON_RELIABILITY_OUT/fuzz.jsonl
  : >"$record"
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
fi

# json_string VALUE: VALUE as a JSON string literal.
json_string() {
  printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

# record_target PKG TARGET STATUS SECONDS: append the target's line to
# $record, from the last progress line go test printed to $log, e.g.
#   fuzz: elapsed: 3s, execs: 123456 (41152/sec), new interesting: 2 (total: 40)
# A target whose time ran out while go test was still replaying its corpus
# ("gathering baseline coverage") prints no such line: it has 0 execs, and
# its elapsed comes from the last progress line of any kind (else SECONDS).
record_target() {
  local pkg=$1 target=$2 status=$3 seconds=$4 last execs interesting elapsed passed
  last=$(grep -E '^fuzz: elapsed: [^,]*, execs: [0-9]+' "$log" | tail -n 1 || true)
  execs=$(printf '%s' "$last" | sed -nE 's/.*, execs: ([0-9]+).*/\1/p')
  interesting=$(printf '%s' "$last" | sed -nE 's/.*new interesting: ([0-9]+).*/\1/p')
  elapsed=$(grep -E '^fuzz: elapsed: [^,]*,' "$log" | tail -n 1 | sed -nE 's/^fuzz: elapsed: ([^,]*),.*/\1/p' || true)
  passed=false
  if [[ $status -eq 0 ]]; then
    passed=true
  fi
  printf '{"package": %s, "target": %s, "fuzztime": %s, "execs": %s, "interesting": %s, "elapsed": %s, "passed": %s}\n' \
    "$(json_string "$pkg")" "$(json_string "$target")" "$(json_string "$fuzztime")" \
    "${execs:-0}" "${interesting:-0}" "$(json_string "${elapsed:-${seconds}s}")" "$passed" >>"$record"
}

for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz: $pkg $target ($fuzztime)"
    if [[ -z $record ]]; then
      go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" ${parallel[@]+"${parallel[@]}"} "$pkg"
      continue
    fi
    # go test prints the fuzz progress on stdout: stream it and keep a copy.
    start=$SECONDS
    status=0
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" ${parallel[@]+"${parallel[@]}"} "$pkg" | tee "$log" || status=$?
    record_target "$pkg" "$target" "$status" "$((SECONDS - start))"
    if [[ $status -ne 0 ]]; then
      exit "$status"
    fi
  done
done
