#!/usr/bin/env bash
# Runs every test runner of the suite and ends with one line for the whole suite:
#   "N passed, M failed"
# Runners: the cmocka binaries $BUILD/tests/test_*, then the Python tests tests/test_*.py
# (each a script that prints its own "N passed, M failed" line and exits non-zero on failure).
set -u
BUILD=${BUILD:-build/ref}
PY=${PYTHON:-python3}
export DSV4REF_BIN=${DSV4REF_BIN:-$BUILD/dsv4ref}
export DSV4REF_SHARED=${DSV4REF_SHARED:-$(cd "$(dirname "$0")/.." && pwd)/../shared}
total_pass=0; total_fail=0; failed_runners=()
log=$(mktemp); trap 'rm -f "$log"' EXIT
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  start=$SECONDS
  CMOCKA_MESSAGE_OUTPUT=STDOUT "$t" >"$log" 2>&1; rc=$?
  p=$(grep -Eo '^\[  PASSED  \] [0-9]+ test' "$log" | grep -Eo '[0-9]+' | tail -n1)
  f=$(grep -Eo '^\[  FAILED  \] [0-9]+ test' "$log" | grep -Eo '[0-9]+' | tail -n1)
  p=${p:-0}; f=${f:-0}
  if [ $rc != 0 ] && [ "$f" = 0 ]; then f=1; fi   # a crash counts as a failure
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
  printf '%-34s %3d passed, %d failed  (%ds)\n' "$name" "$p" "$f" $((SECONDS - start))
  if [ "$f" != 0 ]; then failed_runners+=("$name"); sed 's/^/    | /' "$log" | grep -v '^    | \[ RUN\|^    | \[       OK' | tail -n 60; fi
done
for t in tests/test_*.py; do
  [ -f "$t" ] || continue
  name=$(basename "$t")
  start=$SECONDS
  PYTHONUNBUFFERED=1 "$PY" "$t" >"$log" 2>&1; rc=$?
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n1)
  p=$(echo "$line" | grep -Eo '^[0-9]+'); f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
  p=${p:-0}; f=${f:-0}
  if [ $rc != 0 ] && [ "$f" = 0 ]; then f=1; fi
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
  printf '%-34s %3d passed, %d failed  (%ds)\n' "$name" "$p" "$f" $((SECONDS - start))
  if [ "$f" != 0 ]; then failed_runners+=("$name"); sed 's/^/    | /' "$log" | tail -n 60; fi
done
echo
if [ ${#failed_runners[@]} -gt 0 ]; then echo "failing runners: ${failed_runners[*]}"; fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ] && [ "$total_pass" -gt 0 ]
