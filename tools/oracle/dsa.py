"""DeepSeek Sparse Attention (V3.2): the lightning indexer and MLA over its top-k selection
(mla-dsa.md §4; the official model after the 2025-11-17 indexer RoPE fix).

Prefill (start_pos 0) runs MLA in MHA mode with the causal mask + the index mask; decode runs
the absorbed MQA mode over the latent cache with the index mask.
"""
import numpy as np

import linear as L
import mla
import numerics as nm
import rope as R
from indexer import topk_desc


class DSAState:
    def __init__(self):
        self.c = None      # [B, T, r_kv] latent cache (FP8 round-tripped)
        self.k_pe = None   # [B, T, d_r]
        self.ik = None     # [B, T, D_I] indexer keys (e4m3 values in official mode)
        self.iks = None    # [B, T] indexer key scales (powers of two; 1 in exact mode)


def _cat(a, b):
    return b if a is None else np.concatenate([a, b], axis=1)


def indexer_v32(p, x, qr, start_pos, state, num, causal):
    """[O-DSA-1] lightning indexer, V3.2 (mla-dsa.md §4.3): Q = wq_b(c^Q) [B,S,H_I,D_I] with
    layout [rope 64 | nope]; half-split RoPE on Q[..., :64] and on K[:64], K = LayerNorm(wk a);
    Q, K <- Hadamard; official: act_quant (one ue8m0 scale per 128 = per head / per token),
    w = f32(f32(weights_proj f32(a)) * H_I^-1/2) * sigma_q * D_I^-1/2,
    I[t, s] = sigma_k[s] * sum_h max(Qq_h . Kq_s, 0) * w_h  (f32);  exact: the same without
    quantization.  Prefill adds the causal mask.  Returns (top-k indices [B,S,k_eff], scores)."""
    B, S, _ = x.shape
    H, D, rd = p["n_heads"], p["head_dim"], p["rope_dim"]
    cs = p["cs_fn"](np.arange(start_pos, start_pos + S))
    q = L.linear(qr, p["wq_b"], num).reshape(B, S, H, D)
    q = np.concatenate([R.rope_half_split(q[..., :rd], cs, num), q[..., rd:]], axis=-1)
    k = L.layernorm(L.linear(x, p["wk"], num), p["k_norm_w"], p["k_norm_b"], 1e-6, num)
    k = np.concatenate([R.rope_half_split(k[..., :rd], cs, num), k[..., rd:]], axis=-1)
    q, k = num.hadamard(q), num.hadamard(k)
    if num.official:
        qq, qs = nm.act_quant(q, 128)
        kq, ks = nm.act_quant(k, 128)
        qs, ks = qs[..., 0], ks[..., 0]
    else:
        qq, qs, kq, ks = q, np.ones((B, S, H)), k, np.ones((B, S))
    state.ik, state.iks = _cat(state.ik, kq), _cat(state.iks, ks)
    w = num.f32(num.f32(L.linear(x, p["weights_proj"], num)) * H ** -0.5)
    w = num.f32(w * qs * num.const32(D ** -0.5))
    dots = np.maximum(np.einsum("bshd,btd->bsht", qq, state.ik), 0.0)
    score = num.f32(np.einsum("bsht,bsh->bst", dots, w) * state.iks[:, None, :])
    if causal is not None:
        score = score + causal
    k_eff = min(p["topk"], start_pos + S)
    return topk_desc(score, k_eff), score


def dsa_call(p, x, start_pos, state, num):
    """[O-DSA-2] one call of the V3.2 attention layer; x: [B, S, d] attention input.
    Returns (u [B,S,d] = wo(o), selected [B,S,k] absolute positions with the causally
    invisible prefill picks as -1)."""
    B, S, _ = x.shape
    end = start_pos + S
    qr, q_nope, q_pe, c, k_pe = mla.mla_front(p, x, start_pos, num)
    state.c, state.k_pe = _cat(state.c, c), _cat(state.k_pe, k_pe)
    causal = None
    if start_pos == 0:
        causal = np.triu(np.full((S, S), -np.inf), 1)[None]
    sel, _ = indexer_v32(p["indexer"], x, qr, start_pos, state, num, causal)
    mask = np.full((B, S, end), -np.inf)
    np.put_along_axis(mask, sel, 0.0, axis=-1)
    if start_pos == 0:
        mask = mask + causal
        o = mla.mla_naive(p, q_nope, q_pe, state.c, state.k_pe, mask, num)
        pos = np.arange(S)[None, :, None]
        sel = np.where(sel > pos, -1, sel)
    else:
        o = mla.mla_absorbed(p, q_nope, q_pe, state.c, state.k_pe, mask, num)
    u = L.linear(o.reshape(B, S, -1), p["wo"], num)
    return u, sel


def dsa_params(st, prefix, cfg, num, scale=None):
    p = mla.mla_params(st, prefix, cfg, num, scale)
    p["fp8_latent"] = True
    p["indexer"] = {
        "n_heads": cfg["index_n_heads"], "head_dim": cfg["index_head_dim"], "rope_dim": cfg["qk_rope_head_dim"],
        "topk": cfg["index_topk"], "cs_fn": p["cs_fn"],
        "wq_b": L.load_weight(st, prefix + ".indexer.wq_b"), "wk": L.load_weight(st, prefix + ".indexer.wk"),
        "k_norm_w": st.get(prefix + ".indexer.k_norm.weight"), "k_norm_b": st.get(prefix + ".indexer.k_norm.bias"),
        "weights_proj": L.load_weight(st, prefix + ".indexer.weights_proj"),
    }
    return p
