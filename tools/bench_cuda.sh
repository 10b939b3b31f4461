#!/usr/bin/env bash
# bench_cuda.sh — the CUDA benchmarks (spec/cuda.md): the kernel lab's --bench (copy
# bandwidth as the HBM roofline, per-kernel time / GB/s / FLOP/s at V4-Flash decode shapes,
# batch 1 and 64), then the same steps in eager PyTorch on the same GPU, then a side-by-side
# table. Needs build/cuda/test_kernels (make cuda) and a GPU; skips with a message otherwise.
set -u
OUT=${1:-build/cuda/bench}
mkdir -p "$OUT"
./build/cuda/test_kernels --bench | tee "$OUT/cuda.txt"
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  PYTHONUNBUFFERED=1 python3 tools/torch_eager_decode.py | tee "$OUT/torch.txt"
else
  echo "bench_cuda: no PyTorch with CUDA here: eager comparison skipped" | tee "$OUT/torch.txt"
fi
python3 - "$OUT/cuda.txt" "$OUT/torch.txt" <<'PY'
import re, sys
cuda, torch = {}, {}
pat = re.compile(r"^(.*?)\s+B=(\d+)\s+([\d.]+) us")
for line in open(sys.argv[1]):
    m = pat.match(line.strip())
    if m: cuda.setdefault((m.group(1).strip(), int(m.group(2))), float(m.group(3)))
for line in open(sys.argv[2]):
    if line.startswith("torch "):
        m = pat.match(line[6:].strip())
        if m: torch[(m.group(1).strip(), int(m.group(2)))] = float(m.group(3))
print("\nside by side (best CUDA variant of each step vs eager PyTorch):")
print(f"{'step':<40} {'B':>3} {'cuda us':>10} {'torch us':>10} {'speed-up':>9}")
for (name, B), t in sorted(torch.items(), key=lambda k: (k[0][1], k[0][0])):
    best = [v for (n, b), v in cuda.items() if b == B and n.startswith(name)]
    if best:
        c = min(best)
        print(f"{name:<40} {B:>3} {c:>10.1f} {t:>10.1f} {t / c:>8.1f}x")
PY
