"""Dense causal multi-head attention with RoPE: the hypothetical full-MHA baseline of the
lineage (mla-dsa.md §2).

q_{t,h} = W^Q_h x_t, k_{t,h} = W^K_h x_t, v_{t,h} = W^V_h x_t; interleaved RoPE on the last
r dims of q and k at position t; l = q . k / sqrt(d_qk) for s <= t; p = softmax_s(l);
o_{t,h} = sum_s p v_{s,h}; u_t = W^O [o_{t,1}; ...; o_{t,H}].

There is no official DeepSeek graph for this baseline; official mode here means "a bf16
model": GEMM outputs, RoPE and the attention output rounded to bf16, softmax in f32.
"""
import numpy as np

import linear as L
import rope as R


class MHAState:
    def __init__(self):
        self.k = None   # [B, T, H, d_qk] (after RoPE)
        self.v = None   # [B, T, H, d_v]


def mha_call(p, x, start_pos, state, num):
    """[O-MHA-1] x: [B, S, d]; one prefill (start_pos 0) or decode call; returns u [B, S, d].
    The cache holds every past k, v (written before attention: the token sees itself)."""
    B, S, _ = x.shape
    H, dqk, dv, rd = p["n_heads"], p["d_qk"], p["d_v"], p["rope_dim"]
    cs = p["cs_fn"](np.arange(start_pos, start_pos + S))
    q = L.linear(x, p["wq"], num).reshape(B, S, H, dqk).copy()
    k = L.linear(x, p["wk"], num).reshape(B, S, H, dqk).copy()
    v = L.linear(x, p["wv"], num).reshape(B, S, H, dv)
    if rd:
        q[..., -rd:] = R.rope_interleaved(q[..., -rd:], cs, num)
        k[..., -rd:] = R.rope_interleaved(k[..., -rd:], cs, num)
    state.k = k if state.k is None else np.concatenate([state.k, k], axis=1)
    state.v = v if state.v is None else np.concatenate([state.v, v], axis=1)
    T = state.k.shape[1]
    l = np.einsum("bshd,bthd->bsht", q, state.k) * dqk ** -0.5
    pos_q = np.arange(start_pos, start_pos + S)[:, None]
    l = np.where((np.arange(T)[None, :] > pos_q)[None, :, None, :], -np.inf, l)
    l = l - l.max(axis=-1, keepdims=True)
    pr = np.exp(l)
    pr = pr / pr.sum(axis=-1, keepdims=True)
    o = num.bf16(np.einsum("bsht,bthd->bshd", pr, state.v))
    return L.linear(o.reshape(B, S, H * dv), p["wo"], num)


def mha_params(weights, n_heads, d_qk, d_v, rope_dim, theta, num):
    """weights: {"wq","wk","wv","wo"} -> float64 [out, in] arrays (treated as bf16 weights)."""
    freqs = R.yarn_freqs(rope_dim, theta, 1.0, 0, 32, 1, False, num) if rope_dim else None
    p = {k: {"kind": "bf16", "w": weights[k]} for k in ("wq", "wk", "wv", "wo")}
    p.update({"n_heads": n_heads, "d_qk": d_qk, "d_v": d_v, "rope_dim": rope_dim,
              "cs_fn": (lambda pos: R.cos_sin(freqs, pos, num)) if rope_dim else None})
    return p
