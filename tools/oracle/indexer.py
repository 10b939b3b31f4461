"""V4 lightning indexer for CSA layers (v4-architecture.md §5.4).

score[s, j] = sum_h w_h(s) * ReLU(qI_h(s) . K_I[j]),  w(s) = weights_proj(a_s) / sqrt(H_I D_I)
over the complete indexer keys j < floor((t+1)/m); selection = the top min(k_I, end/m).
"""
import numpy as np

import compressor as C
import linear as L
import rope as R
import torch_cpu as TC


def topk_desc(score, k):
    """[O-IDX-0] indices of the k largest entries along the last axis; the spec tie rule
    (score descending, then index ascending) or torch's CPU order when torch_cpu.TIE_RULE
    says so (spec/topk.md [TOPK-2])."""
    return TC.topk(score, k)


def indexer_call(p, x, qr, start_pos, state, cs_fn, num, offset):
    """[O-IDX-1] x: [B, S, d] attention input (bf16); qr: [B, S, r_q] query latent c_q;
    returns (selected [B, S, k] with the KV offset added, -1 = not visible, emitted keys).
    official rounding points: wq_b bf16 out; RoPE bf16; Hadamard bf16; FP4 simulation of q
    (32-wide blocks); weights bf16(bf16(weights_proj a) * f32(D_I^-1/2 H_I^-1/2)); q.K einsum
    bf16; ReLU; * w bf16; head sum bf16.  Prefill: -inf where j >= floor((s+1)/m); picks that
    are not visible become -1 (pitfall: fewer than k visible entries)."""
    B, S, _ = x.shape
    H, Dh, rd, m = p["n_heads"], p["head_dim"], p["rope_dim"], p["ratio"]
    end = start_pos + S
    q = L.linear(qr, p["wq_b"], num).reshape(B, S, H, Dh)
    q = q.copy()
    q[..., -rd:] = R.rope_interleaved(q[..., -rd:], cs_fn(np.arange(start_pos, end)), num)
    q = num.fp4_sim(num.hadamard(q), 32)
    new_keys = C.compressor_call(p["compressor"], x, start_pos, state, cs_fn, num)
    w = num.bf16(L.linear(x, p["weights_proj"], num) * num.const32(Dh ** -0.5 * H ** -0.5))
    n = end // m
    keys = state.entries[:, :n] if n > 0 else np.zeros((B, 0, Dh))
    sc = num.bf16(np.einsum("bshd,btd->bsht", q, keys))
    sc = num.bf16(np.maximum(sc, 0.0) * w[..., None])
    sc = num.bf16(sc.sum(axis=2))                         # [B, S, n]
    if start_pos == 0:
        vis = (np.arange(1, S + 1) // m)[:, None]
        sc = np.where(np.arange(n)[None, :] >= vis, -np.inf, sc)
    k = min(p["topk"], n)
    sel = topk_desc(sc, k)
    if start_pos == 0:
        vis = (np.arange(1, S + 1) // m)[None, :, None]
        sel = np.where(sel >= vis, -1, sel + offset)
    else:
        sel = sel + offset
    return sel, new_keys, sc


def indexer_params(st, prefix, cfg):
    return {
        "n_heads": cfg["index_n_heads"], "head_dim": cfg["index_head_dim"],
        "rope_dim": cfg["rope_head_dim"], "ratio": 4, "topk": cfg["index_topk"],
        "wq_b": L.load_weight(st, prefix + ".wq_b"),
        "weights_proj": L.load_weight(st, prefix + ".weights_proj"),
        "compressor": C.compressor_params(st, prefix + ".compressor", 4, cfg["index_head_dim"],
                                          cfg["rope_head_dim"], cfg["norm_eps"], True),
    }
