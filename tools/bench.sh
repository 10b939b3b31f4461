#!/usr/bin/env bash
# make bench: the reference and the OpenMP kernels side by side in one run (dsv4ref bench:
# tools/cmd_bench.c, spec/backends.md [BK-5]). Extra arguments go to `dsv4ref bench`, e.g.
#   make bench BENCH_ARGS=--quick        a few seconds
#   make bench BENCH_ARGS="--threads 1,8,16 --no-ref"
set -eu
exec ./build/dsv4ref bench ${BENCH_ARGS:-} "$@"
