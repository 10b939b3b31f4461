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

The layer rows: "CSA layer decode @1M (FP8 weights)" = Attention.forward of one CSA layer at a
decode step (projections, norms, RoPE, FP8 / FP4 simulations, indexer with its compressor
projections, top-512, window + sparse attention, grouped output projection); "... full (attn +
mHC + MoE)" = the whole Block.forward (HCPre with the Sinkhorn, attn_norm, that attention,
HCPost, HCPre, ffn_norm, the MoE: fp32 router, sqrt-softplus, top-6, per-expert loop as the
official MoE.forward incl. its bincount().tolist(), 6 routed + 1 shared SwiGLU expert, HCPost).
Their weights are bf16, pre-dequantized from the checkpoint's FP8 / FP4 (see LayerWeights).
"""
import sys
import torch
import torch.nn.functional as F

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


# ---- one CSA layer's decode at 1M (V4-Flash Block.forward at a decode step) ----
# Weights are bf16, PRE-DEQUANTIZED (the checkpoint's FP8 attention / shared-expert weights and
# FP4 routed experts stored as bf16 here: eager PyTorch has no FP8/FP4 GEMM of the official
# kernels' form), except where the official graph itself uses fp32 (compressor wkv / wgate,
# HCPre fn, the router's gate.float()). Random data; every call redoes the same step (the
# window write and the compressor state update at a position that does not emit an entry, as
# the CUDA row: projections only). Activation simulations as the graph: FP8 round trip of the
# KV's non-RoPE part (block 64), FP4 of the indexer q (block 32, nearest grid value).
DIM, QR, HC, NMIX, E, KACT, INTER = 4096, 1024, 4, 24, 256, 6, 2048
IH, ID, NKEYS, TOPK = 64, 128, 262144, 512


def rand_w(*shape, dtype=torch.bfloat16, std=0.02):
    return torch.empty(*shape, dtype=dtype, device=dev).normal_(0.0, std)


def rmsnorm(x, w, eps=1e-6):
    xf = x.float()
    return (w * (xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps))).to(x.dtype)


def rope(x, cs, inverse=False):
    # x: [..., 64] (interleaved pairs); cs: [32] complex
    c = cs.conj() if inverse else cs
    r = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous()) * c
    return torch.view_as_real(r).flatten(-2).to(x.dtype)


def fp8_sim(x, block):
    shp = x.shape
    xf = x.float().reshape(-1, block)
    amax = xf.abs().amax(-1, keepdim=True).clamp(min=1e-4)
    s = torch.pow(2, torch.ceil(torch.log2(amax / 448)))
    q = (xf / s).clamp(-448, 448).to(torch.float8_e4m3fn).float() * s
    return q.reshape(shp).to(x.dtype)


FP4_GRID = None


def fp4_sim(x, block=32):
    global FP4_GRID
    if FP4_GRID is None:
        FP4_GRID = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], device=dev)
    shp = x.shape
    xf = x.float().reshape(-1, block)
    amax = xf.abs().amax(-1, keepdim=True).clamp(min=1e-30)
    s = torch.pow(2, torch.ceil(torch.log2(amax / 6)))
    v = (xf / s).clamp(-6, 6)
    i = (v.abs().unsqueeze(-1) - FP4_GRID).abs().argmin(-1)
    q = FP4_GRID[i] * torch.sign(v)
    return (q * s).reshape(shp).to(x.dtype)


def hadamard_matrix(n):
    h = torch.ones(1, 1, device=dev)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h * n ** -0.5


class LayerWeights:
    def __init__(self):
        self.wq_a, self.q_norm = rand_w(QR, DIM), torch.ones(QR, device=dev)
        self.wq_b = rand_w(H * D, QR)
        self.wkv, self.kv_norm = rand_w(D, DIM), torch.ones(D, device=dev)
        self.wo_a = rand_w(8 * 1024, H * D // 8)
        self.wo_b = rand_w(DIM, 8 * 1024)
        self.sink = torch.rand(H, device=dev)
        self.cwkv, self.cwg = rand_w(2 * D, DIM, dtype=torch.float32), rand_w(2 * D, DIM, dtype=torch.float32)
        self.ape = rand_w(4, 2 * D, dtype=torch.float32)
        self.iwq_b = rand_w(IH * ID, QR)
        self.iwp = rand_w(IH, DIM)
        self.icwkv, self.icwg = rand_w(2 * ID, DIM, dtype=torch.float32), rand_w(2 * ID, DIM, dtype=torch.float32)
        self.iape = rand_w(4, 2 * ID, dtype=torch.float32)
        self.had = hadamard_matrix(ID)
        self.cs = torch.polar(torch.ones(32, device=dev), torch.rand(32, device=dev))
        self.hc_fn = [rand_w(NMIX, HC * DIM, dtype=torch.float32) for _ in range(2)]
        self.hc_scale = [torch.rand(3, device=dev) for _ in range(2)]
        self.hc_base = [torch.rand(NMIX, device=dev) for _ in range(2)]
        self.attn_norm, self.ffn_norm = torch.ones(DIM, device=dev), torch.ones(DIM, device=dev)
        self.gate = rand_w(E, DIM)
        self.gate_bias = torch.rand(E, device=dev) * 0.01
        self.w1, self.w3 = rand_w(E, INTER, DIM), rand_w(E, INTER, DIM)   # all 256 experts (bf16: 8.6 GB)
        self.w2 = rand_w(E, DIM, INTER)                                     # (4.3 GB)
        self.s1, self.s3, self.s2 = rand_w(INTER, DIM), rand_w(INTER, DIM), rand_w(DIM, INTER)


class LayerState:
    """per-batch caches: the CSA pool [B, 128 + 262144, 512] (window first), the indexer keys
    [B, 262144, 128], the two compressors' state rows"""
    def __init__(self, B):
        # made in bf16 directly (no fp32 temporary: the pool is 17 GB at B = 64)
        self.pool = torch.empty(B, WIN + NKEYS, D, dtype=torch.bfloat16, device=dev).uniform_(-0.5, 0.5)
        self.keys = torch.empty(B, NKEYS, ID, dtype=torch.bfloat16, device=dev).uniform_(-0.5, 0.5)
        self.kv_state = torch.zeros(B, 8, 2 * D, device=dev)
        self.score_state = torch.zeros(B, 8, 2 * D, device=dev)
        self.ikv_state = torch.zeros(B, 8, 2 * ID, device=dev)
        self.iscore_state = torch.zeros(B, 8, 2 * ID, device=dev)
        self.win_idx = torch.arange(WIN, device=dev)[None].expand(B, -1)


def compressor_step(x, wkv, wg, ape, kv_state, score_state, pos=1):
    # decode, ratio 4 with overlap, at a position that does not emit: fp32 projections + state
    xf = x.float()
    kv = F.linear(xf, wkv)
    sc = F.linear(xf, wg) + ape[pos % 4]
    kv_state[:, 4 + pos % 4] = kv
    score_state[:, 4 + pos % 4] = sc


def attention(W, S, x, pos=1):
    # x: [B, 4096] bf16 (after attn_norm) -> [B, 4096] bf16
    B = x.shape[0]
    qr = rmsnorm(F.linear(x, W.wq_a), W.q_norm)
    q = F.linear(qr, W.wq_b).view(B, H, D)
    q = q * torch.rsqrt(q.square().mean(-1, keepdim=True) + 1e-6)
    q = torch.cat([q[..., :-64], rope(q[..., -64:], W.cs)], -1)
    kv = rmsnorm(F.linear(x, W.wkv), W.kv_norm)
    kv = torch.cat([fp8_sim(kv[..., :-64], 64), rope(kv[..., -64:], W.cs)], -1)
    # indexer: q from qr, Hadamard rotation, FP4 simulation; its compressor; scores; top-512
    iq = F.linear(qr, W.iwq_b).view(B, IH, ID)
    iq = torch.cat([iq[..., :-64], rope(iq[..., -64:], W.cs)], -1)
    iq = fp4_sim((iq.float() @ W.had).bfloat16())
    compressor_step(x, W.icwkv, W.icwg, W.iape, S.ikv_state, S.iscore_state, pos)
    iw = F.linear(x, W.iwp) * (ID ** -0.5 * IH ** -0.5)
    s = torch.einsum("bhd,btd->bht", iq, S.keys)
    s = (s.relu_() * iw.unsqueeze(-1)).sum(dim=1)
    top = s.topk(TOPK, dim=-1).indices + WIN
    idx = torch.cat([S.win_idx, top], 1)
    # window write, the main compressor, sparse attention over window + top-512
    S.pool[:, pos % WIN] = kv
    compressor_step(x, W.cwkv, W.cwg, W.ape, S.kv_state, S.score_state, pos)
    o = sparse_attn(q, S.pool, idx, W.sink, D ** -0.5)
    o = torch.cat([o[..., :-64], rope(o[..., -64:], W.cs, inverse=True)], -1)
    # grouped output projection: 8 groups of [1024, 4096], then wo_b
    o = torch.einsum("bgd,grd->bgr", o.view(B, 8, -1), W.wo_a.view(8, 1024, -1))
    return F.linear(o.flatten(1), W.wo_b)


def hc_pre(X, fn, scale, base, iters=20, eps=1e-6, norm_eps=1e-6):
    # X: [B, 4, 4096] bf16 -> a [B, 4096] bf16, post [B, 4], comb [B, 4, 4]
    B = X.shape[0]
    xf = X.flatten(1).float()
    mixes = F.linear(xf, fn) * torch.rsqrt(xf.square().mean(-1, keepdim=True) + norm_eps)
    pre = torch.sigmoid(mixes[:, :HC] * scale[0] + base[:HC]) + eps
    post = 2 * torch.sigmoid(mixes[:, HC:2 * HC] * scale[1] + base[HC:2 * HC])
    c = (mixes[:, 2 * HC:] * scale[2] + base[2 * HC:]).view(B, HC, HC)
    c = c.softmax(-1) + eps
    c = c / (c.sum(-2, keepdim=True) + eps)
    for _ in range(iters - 1):
        c = c / (c.sum(-1, keepdim=True) + eps)
        c = c / (c.sum(-2, keepdim=True) + eps)
    a = (pre.unsqueeze(-1) * xf.view(B, HC, DIM)).sum(dim=1)
    return a.to(X.dtype), post, c


def hc_post(o, res, post, comb):
    # y_k = post_k o + sum_j comb[j, k] res_j   (o: [B, 4096]; res: [B, 4, 4096])
    y = post.unsqueeze(-1) * o.unsqueeze(1) + (comb.unsqueeze(-1) * res.unsqueeze(2)).sum(dim=1)
    return y.to(o.dtype)


def expert(x, w1, w3, w2, wt=None, limit=10.0):
    g = F.linear(x, w1).float()
    u = F.linear(x, w3).float()
    u = torch.clamp(u, min=-limit, max=limit)
    g = torch.clamp(g, max=limit)
    h = F.silu(g) * u
    if wt is not None:
        h = wt * h
    return F.linear(h.to(x.dtype), w2)


def moe(W, a):
    # a: [B, 4096] bf16 (after ffn_norm) -> [B, 4096] bf16
    s = F.softplus(F.linear(a.float(), W.gate.float())).sqrt()
    ids = (s + W.gate_bias).topk(KACT, dim=-1).indices
    w = s.gather(1, ids)
    w = w / w.sum(dim=-1, keepdim=True) * 1.5
    y = torch.zeros(a.shape, dtype=torch.float32, device=dev)
    counts = torch.bincount(ids.flatten(), minlength=E).tolist()
    for i in range(E):
        if counts[i] == 0:
            continue
        r, c = torch.where(ids == i)
        y[r] += expert(a[r], W.w1[i], W.w3[i], W.w2[i], w[r, c, None])
    y += expert(a, W.s1, W.s3, W.s2)
    return y.to(a.dtype)


def layer_full(W, S, X):
    # Block.forward: HCPre / attn_norm / attention / HCPost, then HCPre / ffn_norm / MoE / HCPost
    a, post, comb = hc_pre(X, W.hc_fn[0], W.hc_scale[0], W.hc_base[0])
    X2 = hc_post(attention(W, S, rmsnorm(a, W.attn_norm)), X, post, comb)
    a, post, comb = hc_pre(X2, W.hc_fn[1], W.hc_scale[1], W.hc_base[1])
    return hc_post(moe(W, rmsnorm(a, W.ffn_norm)), X2, post, comb)


def layer_rows(W, B):
    S = LayerState(B)
    x = (torch.rand(B, DIM, device=dev) - 0.5).bfloat16()
    X = (torch.rand(B, HC, DIM, device=dev) - 0.5).bfloat16()
    ms = timeit(lambda: attention(W, S, x), 10)
    row("CSA layer decode @1M (FP8 weights)", B, ms)
    ms = timeit(lambda: layer_full(W, S, X), 10)
    row("CSA layer decode @1M full (attn + mHC + MoE)", B, ms)
    del S


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
    print("torch layer rows: bf16 weights (the FP8 / FP4 checkpoint weights pre-dequantized), "
          "all 256 experts resident")
    W = None
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
        del kvs, scs
        if W is None:
            W = LayerWeights()
        layer_rows(W, B)


if __name__ == "__main__":
    if not torch.cuda.is_available():
        print("torch_eager_decode: SKIPPED: no CUDA device")
        sys.exit(0)
    main()
