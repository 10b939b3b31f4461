#!/usr/bin/env bash
# make bench: the reference and the OpenMP kernels side by side in one run (dsv4ref bench:
# tools/cmd_bench.c, spec/backends.md [BK-5]). Extra arguments go to `dsv4ref bench`, e.g.
#   make bench BENCH_ARGS=--quick        a few seconds
#   make bench BENCH_ARGS="--threads 1,8,16 --no-ref"
# OMP_WAIT_POLICY=active (unless set): between two kernels the OpenMP workers keep spinning
# instead of sleeping, so a short parallel region does not pay a thread wake-up (on a virtual
# machine that can be a scheduler tick, milliseconds, per kernel call). OMP_PROC_BIND=close
# pins the threads (unless set).
set -eu
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-active}
export OMP_PROC_BIND=${OMP_PROC_BIND:-close}
exec ./build/dsv4ref bench ${BENCH_ARGS:-} "$@"
