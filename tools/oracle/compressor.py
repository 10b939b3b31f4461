"""KV compressor: learned per-channel softmax pooling of m consecutive tokens
(v4-architecture.md §5.3).  Overlapping (m = 4, CSA: each entry pools the previous block's
A halves and its own block's B halves, 2m positions) or not (m = 128 etc., HCA).

State: the projections (u_t, g_t + ape) of every token seen so far; entry j is complete
when token jm+m-1 has been processed.  This is the official kv_state/score_state machine
unrolled: the official state holds exactly the rows an emission needs (the previous block
for overlap, initialised to value 0 / score -inf, i.e. absent for entry 0).
"""
import numpy as np

import linear as L
import rope as R


class CompressorState:
    def __init__(self):
        self.u = None       # [B, T, kc] projections of the values
        self.g = None       # [B, T, kc] gate scores incl. ape
        self.entries = None # [B, n, c] emitted entries (after norm, RoPE, FP8/FP4 simulation)

    def n_entries(self):
        return 0 if self.entries is None else self.entries.shape[1]


def compressor_project(p, x, start_pos, num):
    """[O-CMP-1] u_t = Wkv a_t, g_t = Wg a_t + ape[t mod m] (f32 GEMMs on f32(a), f32 add).
    x: [B, S, d] (bf16 attention input); returns u, g [B, S, kc]."""
    m = p["ratio"]
    u = L.linear(x, p["wkv"], num)
    g = L.linear(x, p["wgate"], num)
    pos = np.arange(start_pos, start_pos + x.shape[1])
    return u, num.f32(g + p["ape"][pos % m][None])


def compressor_pool(p, u, g, j0, j1, num):
    """[O-CMP-2] raw pooled entries j0..j1-1 from the full histories u, g [B, T, kc]:
    non-overlap: c_j[e] = sum_{t in T_j} softmax_t(g_t[e]) u_t[e];
    overlap (m = 4): joint softmax over {g^A_t}_{t in T_(j-1)} U {g^B_t}_{t in T_j}
    (A = dims [0, c), B = dims [c, 2c)); T_(-1) absent (score -inf, value 0).
    Returns [B, j1-j0, c] (f32 in the official graph)."""
    m, c = p["ratio"], p["c"]
    B = u.shape[0]
    n = j1 - j0
    cu = u[:, j0 * m:j1 * m].reshape(B, n, m, -1)
    cg = g[:, j0 * m:j1 * m].reshape(B, n, m, -1)
    if p["overlap"]:
        if j0 > 0:
            pu = u[:, (j0 - 1) * m:(j1 - 1) * m].reshape(B, n, m, -1)[..., :c]
            pg = g[:, (j0 - 1) * m:(j1 - 1) * m].reshape(B, n, m, -1)[..., :c]
        else:
            pu = np.zeros((B, n, m, c))
            pg = np.full((B, n, m, c), -np.inf)
            if n > 1:
                pu[:, 1:] = cu[:, :-1, :, :c]
                pg[:, 1:] = cg[:, :-1, :, :c]
        vu = np.concatenate([pu, cu[..., c:]], axis=2)
        vg = np.concatenate([pg, cg[..., c:]], axis=2)
    else:
        vu, vg = cu, cg
    mx = vg.max(axis=2, keepdims=True)
    e = np.exp(vg - mx)
    w = e / e.sum(axis=2, keepdims=True)
    return num.f32((vu * w).sum(axis=2))


def compressor_finish(p, pooled, j0, cs_fn, num):
    """[O-CMP-3] k_j = RMSNorm(bf16(c_j)); RoPE on the last r dims at position j*m; then
    main (c = head_dim): FP8-simulate the first c - r dims (64-wide blocks);
    indexer (rotate): Hadamard over all c dims, then FP4-simulate (32-wide blocks)."""
    m, rd = p["ratio"], p["rope_dim"]
    k = L.rmsnorm(num.bf16(pooled), p["norm"], p["eps"], num)
    n = k.shape[1]
    cs = cs_fn(np.arange(j0, j0 + n) * m)
    k = k.copy()
    k[..., -rd:] = R.rope_interleaved(k[..., -rd:], cs, num)
    if p["rotate"]:
        k = num.hadamard(k)
        k = num.fp4_sim(k, 32)
    else:
        k[..., :-rd] = num.fp8_sim(k[..., :-rd], 64)
    return k


def compressor_call(p, x, start_pos, state, cs_fn, num):
    """[O-CMP-4] one forward call (prefill at start_pos 0 or a decode step) of the compressor:
    appends the projections to the state, emits every entry completed in this call
    (entry j completes at t = jm + m - 1), returns the new entries [B, n_new, c] or None."""
    u, g = compressor_project(p, x, start_pos, num)
    state.u = u if state.u is None else np.concatenate([state.u, u], axis=1)
    state.g = g if state.g is None else np.concatenate([state.g, g], axis=1)
    end = start_pos + x.shape[1]
    j0, j1 = state.n_entries(), end // p["ratio"]
    if j1 <= j0:
        return None
    k = compressor_finish(p, compressor_pool(p, state.u, state.g, j0, j1, num), j0, cs_fn, num)
    state.entries = k if state.entries is None else np.concatenate([state.entries, k], axis=1)
    return k


def compressor_params(st, prefix, ratio, c, rope_dim, eps, rotate):
    return {
        "ratio": ratio, "c": c, "rope_dim": rope_dim, "eps": eps, "rotate": rotate,
        "overlap": ratio == 4,
        "wkv": L.load_weight(st, prefix + ".wkv"), "wgate": L.load_weight(st, prefix + ".wgate"),
        "ape": st.get(prefix + ".ape"), "norm": st.get(prefix + ".norm.weight"),
    }
