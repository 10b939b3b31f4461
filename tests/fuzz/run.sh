#!/usr/bin/env bash
# tests/fuzz/run.sh — short libFuzzer runs of every parser over a COPY of the committed seed
# corpus (spec/io.md [IO-FUZZ]). FUZZ_SECONDS per target (default 60). Fails on any crash,
# sanitizer report, leak or timeout; the reproducer is left in build/fuzz/artifacts/.
# Without clang / libFuzzer it says so and exits 0.
set -u
cd "$(dirname "$0")/../.."
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
CLANG=${CLANG:-clang}
OUT=build/fuzz
# clang flags (not the Makefile's gcc flags): libFuzzer + ASan + UBSan, UB is fatal
FLAGS=(-g -O1 -std=c99 -D_POSIX_C_SOURCE=200809L -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -fno-omit-frame-pointer -Iref)
LIBSRC=(ref/json.c ref/safetensors.c ref/common.c)
TARGETS=(json safetensors)

if ! command -v "$CLANG" >/dev/null 2>&1; then
  echo "fuzz: clang not found: skipping the fuzz runs"; exit 0
fi
mkdir -p "$OUT"
probe=$(mktemp -d); trap 'rm -rf "$probe"' EXIT
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$probe/p.c"
if ! "$CLANG" -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
  echo "fuzz: $CLANG cannot build libFuzzer targets (-fsanitize=fuzzer): skipping the fuzz runs"; exit 0
fi

rc=0
for t in "${TARGETS[@]}"; do
  bin="$OUT/fuzz_$t"
  echo "fuzz: building $bin"
  if ! "$CLANG" "${FLAGS[@]}" "tests/fuzz/fuzz_$t.c" "${LIBSRC[@]}" -lz -lm -o "$bin"; then
    echo "fuzz: build of fuzz_$t failed"; exit 1
  fi
  work="$probe/corpus_$t"; mkdir -p "$work" "$OUT/artifacts"
  cp tests/fuzz/corpus/"$t"/* "$work"/ 2>/dev/null   # a copy: the committed corpus never grows
  echo "fuzz: running fuzz_$t for ${SECONDS_PER_TARGET}s"
  "$bin" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
         -print_final_stats=1 -artifact_prefix="$OUT/artifacts/${t}-" "$work" >"$OUT/fuzz_$t.log" 2>&1
  r=$?
  grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$OUT/fuzz_$t.log" | sed 's/^/  /'
  if [ $r != 0 ]; then
    echo "fuzz: fuzz_$t FAILED (exit $r); log $OUT/fuzz_$t.log, reproducer in $OUT/artifacts/:"
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$OUT/fuzz_$t.log" | head -n 10 | sed 's/^/  /'
    rc=1
  else
    echo "fuzz: fuzz_$t ok"
  fi
done
exit $rc
