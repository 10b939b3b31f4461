"""Sparse attention over an index list with a per-head sink (v4-architecture.md §5.6).

One softmax over the listed rows (window rows then compressed entries), value = key (MQA,
a single shared latent head), the sink logit z_h in the denominator only:
    o_h = sum_i e^(l_i - M) k_i / (sum_i e^(l_i - M) + e^(z_h - M)),  l_i = (q_h . k_i) * scale.
"""
import numpy as np

BLOCK = 64


def sparse_attention(q, kv, sink, idx, scale, num):
    """[O-SPA-1] q: [B, S, H, D]; kv: [B, N, D] (the KV buffer); sink: [H] (f32);
    idx: [B, S, K] int rows of kv, -1 = none (contributes nothing); returns o [B, S, H, D].
    official: the kernel's numerics -- keys in blocks of 64 in list order, online softmax with
    the running max, unnormalized probabilities rounded to bf16 before P.V (the denominator
    sums the unrounded values), sink added at the end, output bf16.
    exact: the same recurrence without rounding (= the exact softmax).
    Guards pitfall: a block of only -1 entries (running max -inf): exp(-inf - -inf) = NaN is
    avoided by treating an all-masked block as contributing nothing."""
    B, S, H, D = q.shape
    K = idx.shape[-1]
    valid = idx >= 0
    bidx = np.arange(B)[:, None, None]
    keys = np.where(valid[..., None], kv[bidx, np.where(valid, idx, 0)], 0.0)   # [B, S, K, D]
    logits = np.einsum("bshd,bskd->bshk", q, keys) * scale
    logits = np.where(valid[:, :, None, :], logits, -np.inf)
    m = np.full((B, S, H), -np.inf)
    den = np.zeros((B, S, H))
    acc = np.zeros((B, S, H, D))
    for b0 in range(0, max(K, 1), BLOCK):
        lb = logits[..., b0:b0 + BLOCK]
        if lb.shape[-1] == 0:
            break
        m_new = np.maximum(m, lb.max(axis=-1))
        live = np.isfinite(m_new)
        safe = np.where(live, m_new, 0.0)
        rescale = np.where(live, np.exp(np.where(np.isfinite(m), m, -np.inf) - safe), 1.0)
        p = np.where(live[..., None], np.exp(lb - safe[..., None]), 0.0)
        den = den * rescale + p.sum(axis=-1)
        acc = acc * rescale[..., None] + np.einsum("bshk,bskd->bshd", num.bf16(p), keys[:, :, b0:b0 + BLOCK])
        m = m_new
    safe = np.where(np.isfinite(m), m, 0.0)
    den = den + np.exp(sink[None, None, :] - safe)
    return num.bf16(acc / den[..., None])
