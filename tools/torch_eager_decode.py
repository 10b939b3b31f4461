#!/usr/bin/env python3
"""torch_eager_decode.py — the V4 decode kernels in eager PyTorch on the same GPU, for the
side-by-side numbers of tools/bench_cuda.sh (spec/cuda.md "Benchmarks").

Each step follows the official graph's math (DeepSeek-V4 inference/model.py, its pure-PyTorch
reading of the TileLang kernels): bf16 storage, fp32 softmax with the sink logit in the
denominator, bf16 probabilities for P.V; indexer scores as bf16 einsum, ReLU, head weights,
sum over heads, top-k; the compressor's gated softmax pooling, RMSNorm, RoPE and the FP8
round trip. Shapes are V4-Flash: 64 heads x 512, window 128, top-512 of 1M/4 entries,
HCA 8192 entries at 1M, indexer 64 x 128 over 262,144 keys. Times are medians of CUDA-event
timings after warm-up. Prints one row per step, named as in `test_kernels --bench`.
"""
import sys
import torch

dev = "cuda"
torch.manual_seed(0)
H, D, WIN = 64, 512, 128


def timeit(f, reps=20):
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        f()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def row(name, B, ms):
    print(f"torch {name:<34} B={B:<3d} {ms * 1e3:9.1f} us", flush=True)


def sparse_attn(q, pool, idx, sink, scale):
    # q: [B, H, D] bf16; pool: [B, N, D] bf16; idx: [B, n] int64; sink: [H] fp32
    B = q.shape[0]
    kv = torch.gather(pool, 1, idx[:, :, None].expand(-1, -1, pool.shape[-1]))   # [B, n, D]
    s = torch.einsum("bhd,bnd->bhn", q.float(), kv.float()) * scale
    s = torch.cat([s, sink[None, :, None].expand(B, -1, 1)], dim=-1)
    p = torch.softmax(s, dim=-1)[..., :-1]
    return torch.einsum("bhn,bnd->bhd", p.bfloat16(), kv).bfloat16()


def main():
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    # ceilings
    n = 1 << 30
    a = torch.empty(n, dtype=torch.float32, device=dev).uniform_()
    b = torch.empty_like(a)
    ms = timeit(lambda: b.copy_(a), 10)
    print(f"torch copy bandwidth (read+write): {2 * 4 * n / ms / 1e6:.0f} GB/s")
    del a, b
    x = torch.randn(8192, 8192, dtype=torch.bfloat16, device=dev)
    y = torch.randn(8192, 8192, dtype=torch.bfloat16, device=dev)
    ms = timeit(lambda: x @ y, 10)
    print(f"torch bf16 GEMM 8192^3 (random data): {2 * 8192 ** 3 / ms / 1e9:.0f} TFLOP/s")
    del x, y
    scale = D ** -0.5
    for B in (1, 64):
        for csa in (1, 0):
            n_pool = 262144 + WIN if csa else 8192 + WIN
            n_idx = WIN + 512 if csa else WIN + 8192
            pool = (torch.rand(B, n_pool, D, device=dev) - 0.5).bfloat16()
            q = (torch.rand(B, H, D, device=dev) - 0.5).bfloat16()
            sink = torch.rand(H, device=dev)
            win = torch.arange(WIN, device=dev)[None].expand(B, -1)
            rest = (WIN + torch.randint(0, 262144, (B, 512), device=dev)) if csa else \
                (WIN + torch.arange(8192, device=dev)[None].expand(B, -1))
            idx = torch.cat([win, rest], 1)
            ms = timeit(lambda: sparse_attn(q, pool, idx, sink, scale))
            row("CSA decode (128+512 of 262144)" if csa else "HCA decode 1M (128+8192)", B, ms)
            del pool
        n = 262144
        keys = (torch.rand(B, n, 128, device=dev) - 0.5).bfloat16()
        qi = (torch.rand(B, 64, 128, device=dev) - 0.5).bfloat16()
        w = torch.rand(B, 64, device=dev).bfloat16()

        def indexer():
            s = torch.einsum("bhd,bnd->bhn", qi, keys)          # bf16
            s = (torch.relu(s) * w[:, :, None]).sum(dim=1)       # bf16 ops, [B, n]
            return s.topk(512, dim=-1).indices

        ms = timeit(lambda: torch.einsum("bhd,bnd->bhn", qi, keys).relu_().mul_(w[:, :, None]).sum(dim=1))
        row("indexer scores 1M", B, ms)
        ms = timeit(indexer)
        row("indexer scores+top-512 1M", B, ms)
        del keys
        # compressor emission (CSA main): state [B, 8, 2c] -> entry [B, c]
        c = 512
        kvs = torch.rand(B, 8, 2 * c, device=dev)
        scs = torch.rand(B, 8, 2 * c, device=dev)
        nw = torch.rand(c, device=dev).bfloat16()
        cs = torch.polar(torch.ones(32, device=dev), torch.rand(32, device=dev))

        def compressor():
            kv = torch.cat([kvs[:, :4, :c], kvs[:, 4:, c:]], 1)
            sc = torch.cat([scs[:, :4, :c], scs[:, 4:, c:]], 1)
            e = (kv * sc.softmax(dim=1)).sum(dim=1).bfloat16()
            xf = e.float()
            e = (nw * (xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + 1e-6))).bfloat16()
            r = torch.view_as_complex(e[:, -64:].float().view(B, 32, 2)) * cs
            e = torch.cat([e[:, :-64], torch.view_as_real(r).flatten(1).bfloat16()], 1)
            nope = e[:, :-64].float().view(B, -1, 64)
            amax = nope.abs().amax(-1, keepdim=True).clamp(min=1e-4)
            s = torch.pow(2, torch.ceil(torch.log2(amax / 448)))
            q8 = (nope / s).clamp(-448, 448).to(torch.float8_e4m3fn).float() * s
            return torch.cat([q8.flatten(1).bfloat16(), e[:, -64:]], 1)

        ms = timeit(compressor)
        row("compressor emit (pool+norm+rope+fp8)", B, ms)


if __name__ == "__main__":
    if not torch.cuda.is_available():
        print("torch_eager_decode: SKIPPED: no CUDA device")
        sys.exit(0)
    main()
