#!/usr/bin/env bash
# Runs the whole test suite: unit tests and end-to-end tests that start real `weft` processes
# serving guests built from examples/. Ends with one summary line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh || exit 1
log=$(mktemp)
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
read -r passed failed < <(awk '/^test result:/ {
  for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i }
} END { print p + 0, f + 0 }' "$log")
rm -f "$log"

# Every benchmark once at tiny sizes: each must complete with correct answers (no timing asserted).
if python3 bench/run.py all --smoke; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
  status=1
fi
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
