#!/usr/bin/env bash
# Runs every Fuzz target in the module for the given time each (default 3s) and reports the
# executions of each and in total. A crash fails the run; Go saves the input under the package's
# testdata/fuzz/<Target>/, where it stays as a regression seed once committed (seeds there run as
# ordinary tests in go test).
set -euo pipefail
t=${1:-3s}
cd "$(dirname "$0")/.."
log=$(mktemp "${TMPDIR:-/tmp}/veil-fuzz.XXXXXX")
trap 'rm -f "$log"' EXIT
n=0
total=0
start=$(date +%s)
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)\(' "$dir"/*_test.go 2>/dev/null | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/' | sort -u); do
    corpus="$dir/testdata/fuzz/$f"
    before=$(ls "$corpus" 2>/dev/null | sort || true)
    if ! go test -run '^$' -fuzz "^${f}\$" -fuzztime "$t" "$pkg" >"$log" 2>&1; then
      after=$(ls "$corpus" 2>/dev/null | sort || true)
      # Go's fuzz coordinator can report its own -fuzztime deadline as a failure when a worker
      # is mid-call as the time runs out (golang/go#75804, fixed in Go 1.27). That writes no
      # input; a real crash always does.
      if [ "$before" = "$after" ] && grep -q 'context deadline exceeded' "$log"; then
        echo "fuzz $pkg $f: stopped by the fuzztime deadline race (golang/go#75804), no crasher"
      else
        cat "$log"
        exit 1
      fi
    fi
    execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
    echo "fuzz $pkg $f ($t): $execs execs"
    total=$((total + execs))
    n=$((n+1))
  done
done
echo "fuzz: $n targets, $t each, $total execs in $(( $(date +%s) - start ))s"
