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
if [[ -n ${COHURON_RELIABILITY_OUT:-} ]]; then
  mkdir -p "$COHURON_RELIABILITY_OUT"
  record=$COHURON_RELIABILITY_OUT/fuzz.jsonl
  : >"$record"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT

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
  [[ -n $record ]] || return 0
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

# corpus_listing DIR TARGET: the failing inputs go test has written for
# TARGET (DIR/testdata/fuzz/TARGET), one name per line.
corpus_listing() {
  ls -1 "$1/testdata/fuzz/$2" 2>/dev/null || true
}

# coordinator_race TARGET BEFORE AFTER: whether the failure in $log is Go's
# fuzz coordinator reporting its own -fuzztime deadline (golang/go#75804,
# fixed in Go 1.27, in no 1.26 release): the only failure line is the bare
# "context deadline exceeded" right under "--- FAIL: TARGET", and go test
# wrote no failing input. Anything else (a crasher, a hang, an error from the
# target itself, which carries file:line) is a real failure.
coordinator_race() {
  local target=$1 before=$2 after=$3
  [[ $before == "$after" ]] || return 1
  grep -A1 -E "^--- FAIL: ${target} \(" "$log" | sed -n 2p | grep -qxF '    context deadline exceeded' || return 1
  [[ $(grep -cE '^--- FAIL: ' "$log") -eq 1 ]] || return 1
  ! grep -qiE '^[[:space:]]+[^ ]+\.go:[0-9]+: |failing input written|fuzzing process hung' "$log"
}

for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz: $pkg $target ($fuzztime)"
    # go test prints the fuzz progress on stdout: stream it and keep a copy.
    start=$SECONDS
    status=0
    before=$(corpus_listing "$dir" "$target")
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" ${parallel[@]+"${parallel[@]}"} "$pkg" 2>&1 | tee "$log" || status=$?
    if [[ $status -ne 0 ]] && coordinator_race "$target" "$before" "$(corpus_listing "$dir" "$target")"; then
      echo "fuzz: $target: ran its $fuzztime; the failure above is Go's fuzz coordinator misreporting its own deadline (golang/go#75804, fixed in Go 1.27), no failing input was written: counted as passed"
      status=0
    fi
    record_target "$pkg" "$target" "$status" "$((SECONDS - start))"
    if [[ $status -ne 0 ]]; then
      exit "$status"
    fi
  done
done
