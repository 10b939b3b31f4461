#!/usr/bin/env bash
# cuda_device_run.sh — everything the CUDA path needs a GPU for, in one go (spec/cuda.md):
#   1. the kernel lab (build/cuda/test_kernels): every kernel vs its ref/ function
#   2. `dsv4ref check --backend cuda` on every V4 golden file of golden/official/ (official,
#      teacher-forced and free-running; exact mode: CUDA dump vs reference dump), with the
#      reference backend side by side
#   3. compute-sanitizer memcheck and racecheck on the kernel lab (--quick sizes)
#   4. tools/bench_cuda.sh (kernel benchmarks + eager PyTorch side by side)
# Usage: tools/cuda_device_run.sh GOLDEN_DIR OUTDIR   (binaries prebuilt by `make cuda`;
# rebuilt here when they do not run).
set -u
G=${1:-golden/official}
O=${2:-build/cuda/device}
mkdir -p "$O"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
nvcc --version | tail -1
if ! ./build/cuda/test_kernels --probe >/dev/null 2>&1; then
  echo "prebuilt binaries do not run here: rebuilding"
  rm -rf build && make ref >/dev/null && make cuda >/dev/null || { echo "BUILD FAILED"; exit 1; }
fi

echo "== 1. kernel lab"
timeout 120 ./build/cuda/test_kernels 2>&1 | tee "$O/tests.txt"

echo "== 2. golden checks"
: > "$O/golden.txt"
for f in "$G"/*.safetensors*; do
  case "$f" in *v32_mla*) continue;; esac   # attention-only V3.2 case: not a V4 model run
  b=$(basename "$f")
  for be in cuda; do   # the ref backend's numbers come from the CPU machine (spec/cuda.md)
    for tf in --teacher-forcing ""; do
      r=$(DSV4_CUDA_STATS=1 timeout 200 ./build/cuda/dsv4ref check "$f" --backend $be $tf 2>&1)
      echo "$r" >> "$O/golden.txt"
      printf '%-44s %-4s %-18s %s | %s\n' "$b" $be "${tf:-free-running}" "$(echo "$r" | grep -E 'passed|error|FAIL' | grep passed | tail -1)" \
        "$(echo "$r" | grep -o 'cuda backend calls.*' | cut -c1-160)"
    done
  done
  r=$(DSV4_CUDA_GEMM=simt timeout 200 ./build/cuda/dsv4ref check "$f" --backend cuda --teacher-forcing 2>&1)
  echo "$r" >> "$O/golden.txt"
  printf '%-44s %-4s %-18s %s\n' "$b" cuda "tf, simt GEMMs" "$(echo "$r" | grep passed | tail -1)"
  for be in cuda ref; do
    timeout 100 ./build/cuda/dsv4ref check "$f" --backend $be --numerics exact --teacher-forcing --dump "$O/exact_$be.st" >/dev/null 2>&1
  done
  python3 - "$O/exact_cuda.st" "$O/exact_ref.st" "$b" <<'PY'
import sys, numpy as np
from safetensors.numpy import load_file
try:
    a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
except Exception as e:
    print(f"{sys.argv[3]:<44} exact: cannot read dumps: {e}"); sys.exit(0)
worst, name, n, jac = 0.0, "", 0, []
for k in b:
    if k not in a: continue
    if a[k].dtype.kind == "i":   # index taps: sets per row, -1 dropped
        x, y = a[k].reshape(-1, a[k].shape[-1]), b[k].reshape(-1, b[k].shape[-1])
        for r1, r2 in zip(x, y):
            s1, s2 = set(r1[r1 >= 0].tolist()), set(r2[r2 >= 0].tolist())
            jac.append(len(s1 & s2) / len(s1 | s2) if (s1 | s2) else 1.0)
        continue
    if a[k].dtype.kind != "f": continue
    x, y = a[k].astype(np.float64), b[k].astype(np.float64)
    den = np.linalg.norm(y)
    e = np.linalg.norm(x - y) / den if den > 0 else np.linalg.norm(x - y)
    n += 1
    if e > worst: worst, name = e, k
print(f"{sys.argv[3]:<44} exact mode, teacher-forced, CUDA dump vs reference dump: {n} taps, worst rel-L2 {worst:.2e} ({name}) limit 1e-5; index taps mean Jaccard {np.mean(jac) if jac else 1.0:.4f}")
PY
  rm -f "$O"/exact_*.st
done 2>&1 | tee "$O/golden_summary.txt"

echo "== 3. benchmarks"
timeout 240 bash tools/bench_cuda.sh "$O/bench" 2>&1 | tail -70
echo "-- repeat of the CUDA benchmarks (run-to-run spread)"
timeout 120 ./build/cuda/test_kernels --bench > "$O/bench/cuda2.txt" 2>&1; grep -E "CSA decode|HCA decode|indexer scores 1M wmma" "$O/bench/cuda2.txt"

echo "== 4. compute-sanitizer"
for tool in memcheck racecheck; do
  timeout 300 compute-sanitizer --tool $tool ./build/cuda/test_kernels --quick > "$O/sanitizer_$tool.txt" 2>&1
  echo "$tool: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|checks,' "$O/sanitizer_$tool.txt" | tr '\n' ' ')"
done

