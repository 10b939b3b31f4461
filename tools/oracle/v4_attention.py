"""One DeepSeek-V4 attention layer: SWA (ratio 0), CSA (ratio 4: overlapping compressor +
lightning indexer top-k), HCA (ratio m > 4 in practice 128: all visible entries), each with
the raw sliding window and per-head sinks (v4-architecture.md §5, §6).

Prefill = the call at start_pos 0 over S tokens; decode = one token per call.  State per
layer: the raw kv rows of every position (the official ring holds the last w of them), the
compressor state(s).  Index lists are built exactly like the official ones (window part in
chronological order, then the compressed part), because the list order fixes the 64-key
blocks of the online softmax.
"""
import numpy as np

import compressor as C
import indexer as I
import linear as L
import rope as R
import torch_cpu as TC
from sparse_attention import sparse_attention


class AttnState:
    def __init__(self):
        self.raw = None                    # [B, T, D] raw window kv rows by position
        self.comp = C.CompressorState()    # main compressor
        self.icomp = C.CompressorState()   # indexer compressor (CSA)


def window_indices(w, S, start_pos):
    """[O-WIN-1] window part of the index list (official layout).
    prefill: row s lists positions max(0, s-w+1) .. in ascending order, -1 past s, width
    min(S, w); decode at t: the ring slots oldest -> newest (slot = position mod w), -1 pad
    while t < w-1.  Returns [S, width]."""
    if start_pos > 0:
        t = start_pos
        if t >= w - 1:
            s = t % w
            row = np.concatenate([np.arange(s + 1, w), np.arange(0, s + 1)])
        else:
            row = np.concatenate([np.arange(t + 1), np.full(w - t - 1, -1)])
        return row[None, :]
    base = np.arange(S)[:, None]
    mat = np.maximum(base - w + 1, 0) + np.arange(min(S, w))[None, :]
    return np.where(mat > base, -1, mat)


def compressed_indices_all(m, S, start_pos, offset):
    """[O-WIN-2] HCA: every visible entry j < floor((t+1)/m), ascending, + offset; prefill rows
    list all S/m entries with the invisible ones as -1."""
    if start_pos > 0:
        return (np.arange((start_pos + 1) // m) + offset)[None, :]
    mat = np.tile(np.arange(S // m), (S, 1))
    vis = (np.arange(1, S + 1) // m)[:, None]
    return np.where(mat >= vis, -1, mat + offset)


def head_rms(q, eps, num):
    """[O-ATT-2] per-head q <- q * rsqrt(mean(q^2) + eps), no weight.  official: bf16 tensor
    ops, each step rounded (q^2, mean, +eps, rsqrt, product)."""
    if not num.official:
        return q / np.sqrt(np.mean(q * q, axis=-1, keepdims=True) + eps)
    sq = num.bf16(q * q)
    mean = num.bf16(sq.mean(axis=-1, keepdims=True))
    v = num.bf16(mean + eps)
    r = TC.rsqrt_bf16_cpu(v, num.bf16)   # [NORM-2b]: PyTorch CPU, scalar tail rounds twice
    return num.bf16(q * r)


def attention_call(p, x, start_pos, state, num):
    """[O-ATT-1] x: [B, S, d] attention input a = RMSNorm(HCPre(X)) (bf16); returns
    (o [B, S, d], taps dict).  Order (official): q path, window kv, indexer (runs its
    compressor), main compressor, one sparse softmax over window U compressed, de-RoPE,
    grouped low-rank output wo_a (bf16 einsum) then wo_b."""
    B, S, _ = x.shape
    H, D, rd, w, m = p["n_heads"], p["head_dim"], p["rope_dim"], p["window"], p["ratio"]
    end = start_pos + S
    cs_fn = p["cs_fn"]
    cs = cs_fn(np.arange(start_pos, end))
    taps = {}
    # q path [O-ATT-2]
    qr = L.rmsnorm(L.linear(x, p["wq_a"], num), p["q_norm"], p["eps"], num)
    q = L.linear(qr, p["wq_b"], num).reshape(B, S, H, D)
    q = head_rms(q, p["eps"], num).copy()
    q[..., -rd:] = R.rope_interleaved(q[..., -rd:], cs, num)
    # window kv [O-ATT-3]
    kv = L.rmsnorm(L.linear(x, p["wkv"], num), p["kv_norm"], p["eps"], num).copy()
    kv[..., -rd:] = R.rope_interleaved(kv[..., -rd:], cs, num)
    kv[..., :-rd] = num.fp8_sim(kv[..., :-rd], 64)
    state.raw = kv if state.raw is None else np.concatenate([state.raw, kv], axis=1)
    # index lists [O-WIN-1], [O-WIN-2], [O-IDX-1]
    win = window_indices(w, S, start_pos)
    idx = np.broadcast_to(win[None], (B,) + win.shape)
    offset = S if start_pos == 0 else w
    if m:
        if p["indexer"] is not None:
            sel, ikeys, _ = I.indexer_call(p["indexer"], x, qr, start_pos, state.icomp, cs_fn, num, offset)
            taps["attn.indexer"] = sel
            if ikeys is not None:
                taps["attn.indexer.compressor"] = ikeys
        else:
            hca = compressed_indices_all(m, S, start_pos, offset)
            sel = np.broadcast_to(hca[None], (B,) + hca.shape)
        idx = np.concatenate([idx, sel], axis=-1)
        new = C.compressor_call(p["compressor"], x, start_pos, state.comp, cs_fn, num)
        if new is not None:
            taps["attn.compressor"] = new
    # KV buffer as the official code lays it out [O-ATT-4]
    if start_pos == 0:
        buf = kv
        if m and state.comp.n_entries():
            buf = np.concatenate([kv, state.comp.entries], axis=1)
    else:
        ring = np.zeros((B, w, D))
        for pos in range(max(0, end - w), end):
            ring[:, pos % w] = state.raw[:, pos]
        buf = ring
        if m:
            ents = state.comp.entries if state.comp.n_entries() else np.zeros((B, 0, D))
            buf = np.concatenate([ring, ents], axis=1)
    o = sparse_attention(q, buf, p["sink"], np.asarray(idx), D ** -0.5, num)
    o = o.copy()
    o[..., -rd:] = R.rope_interleaved(o[..., -rd:], cs, num, inverse=True)
    # grouped output projection [O-ATT-5]
    G = p["o_groups"]
    o = o.reshape(B, S, G, -1)
    wa = p["wo_a"]["w"].reshape(G, p["o_lora_rank"], -1)
    z = num.bf16(np.einsum("bsgd,grd->bsgr", o, wa))
    out = L.linear(z.reshape(B, S, -1), p["wo_b"], num)
    return out, taps


def attention_params(st, prefix, cfg, layer_id, num):
    ratio = cfg["compress_ratios"][layer_id]
    rd = cfg["rope_head_dim"]
    if ratio:
        freqs = R.yarn_freqs(rd, cfg["compress_rope_theta"], cfg["rope_factor"], cfg["original_seq_len"],
                             cfg["beta_fast"], cfg["beta_slow"], cfg["original_seq_len"] > 0, num)
    else:
        freqs = R.yarn_freqs(rd, cfg["rope_theta"], cfg["rope_factor"], 0, cfg["beta_fast"],
                             cfg["beta_slow"], False, num)
    p = {
        "n_heads": cfg["n_heads"], "head_dim": cfg["head_dim"], "rope_dim": rd,
        "window": cfg["window_size"], "ratio": ratio, "eps": cfg["norm_eps"],
        "o_groups": cfg["o_groups"], "o_lora_rank": cfg["o_lora_rank"],
        "cs_fn": lambda pos, f=freqs: R.cos_sin(f, pos, num),
        "wq_a": L.load_weight(st, prefix + ".wq_a"), "q_norm": st.get(prefix + ".q_norm.weight"),
        "wq_b": L.load_weight(st, prefix + ".wq_b"), "wkv": L.load_weight(st, prefix + ".wkv"),
        "kv_norm": st.get(prefix + ".kv_norm.weight"), "wo_a": L.load_weight(st, prefix + ".wo_a"),
        "wo_b": L.load_weight(st, prefix + ".wo_b"), "sink": st.get(prefix + ".attn_sink"),
        "indexer": None, "compressor": None,
    }
    if ratio:
        p["compressor"] = C.compressor_params(st, prefix + ".compressor", ratio, cfg["head_dim"], rd,
                                              cfg["norm_eps"], False)
        if ratio == 4:
            p["indexer"] = I.indexer_params(st, prefix + ".indexer", cfg)
    return p
