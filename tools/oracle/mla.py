"""Multi-head latent attention (MLA, DeepSeek-V2/V3/V3.2): the common front, the naive (MHA
mode) path and the absorbed (MQA mode) path (mla-dsa.md §3, §4.4).

Rounding points follow the V3.2 official graph (post-fix, mla-dsa.md §4.4): GEMM outputs
bf16, logits bf16 (product, partial-logit sum, and the softmax-scale multiply each rounded),
softmax in f32 with a bf16 output, value products bf16.  Exact mode: float64, no rounding.
"""
import math

import numpy as np

import linear as L
import rope as R


def softmax_scale(cfg):
    """[O-MLA-0] lambda = d_qk^-1/2 * m^2 with m = 0.1 mscale ln(rope_factor) + 1 iff
    max_seq_len > original_seq_len (mla-dsa.md §1.5; the YaRN attention temperature)."""
    s = (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]) ** -0.5
    if cfg["max_seq_len"] > cfg["original_seq_len"]:
        m = 0.1 * cfg.get("mscale", 1.0) * math.log(cfg["rope_factor"]) + 1.0
        s = s * m * m
    return s


def mla_front(p, x, start_pos, num):
    """[O-MLA-1] x: [B, S, d] (bf16 attention input).  Returns (qr [B,S,r_q] query latent,
    q_nope [B,S,H,d_n], q_pe [B,S,H,d_r] (interleaved RoPE), c [B,S,r_kv] normalized KV latent
    (FP8 round trip in V3.2: act_quant 128-blocks, ue8m0, back to bf16), k_pe [B,S,d_r])."""
    B, S, _ = x.shape
    H, dn, dr, rkv = p["n_heads"], p["d_nope"], p["d_rope"], p["kv_lora_rank"]
    cs = p["cs_fn"](np.arange(start_pos, start_pos + S))
    qr = L.rmsnorm(L.linear(x, p["wq_a"], num), p["q_norm"], p["eps"], num)
    q = L.linear(qr, p["wq_b"], num).reshape(B, S, H, dn + dr)
    q_nope, q_pe = q[..., :dn], R.rope_interleaved(q[..., dn:], cs, num)
    kv = L.linear(x, p["wkv_a"], num)
    c = L.rmsnorm(kv[..., :rkv], p["kv_norm"], p["eps"], num)
    k_pe = R.rope_interleaved(kv[..., rkv:], cs, num)
    if p.get("fp8_latent", False):
        c = num.fp8_sim(c, 128)
    return qr, q_nope, q_pe, c, k_pe


def _softmax(s):
    m = np.max(s, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    return e / e.sum(axis=-1, keepdims=True)


def mla_naive(p, q_nope, q_pe, c, k_pe, mask, num):
    """[O-MLA-2] MHA mode: [k^C; v] = W_b c_tau per head (bf16), k = [k^C; k^R_tau] (k^R shared
    by the heads), l = bf16(bf16(q . k) * lambda) + mask, p = bf16(softmax_f32(l)),
    o = bf16(sum_tau p v).  q_*: [B,S,H,*]; c: [B,T,r_kv]; k_pe: [B,T,d_r]; mask: [B,S,T]
    additive (0 / -inf).  Returns o [B,S,H,d_v]."""
    B, T, _ = c.shape
    H, dn, dv = p["n_heads"], p["d_nope"], p["d_v"]
    kvb = L.linear(c, p["wkv_b"], num).reshape(B, T, H, dn + dv)
    k_nope, v = kvb[..., :dn], kvb[..., dn:]
    s = np.einsum("bshd,bthd->bsht", q_nope, k_nope) + np.einsum("bshr,btr->bsht", q_pe, k_pe)
    s = num.bf16(num.bf16(s) * num.const32(p["scale"]))
    s = num.bf16(s + mask[:, :, None, :])
    pr = num.bf16(_softmax(s))
    return num.bf16(np.einsum("bsht,bthd->bshd", pr, v))


def mla_absorbed(p, q_nope, q_pe, c, k_pe, mask, num):
    """[O-MLA-3] MQA mode over the latent cache: q~ = bf16(W_UK^T q^C) per head,
    l = bf16(bf16(bf16(q~ . c_tau) + bf16(q^R . k^R_tau)) * lambda) + mask,
    p = bf16(softmax_f32(l)), o~ = bf16(sum_tau p c_tau), o = bf16(W_UV o~).
    Equal to mla_naive in exact arithmetic (mla-dsa.md §3.6)."""
    H, dn, dv, rkv = p["n_heads"], p["d_nope"], p["d_v"], p["kv_lora_rank"]
    wb = p["wkv_b"]["w"].reshape(H, dn + dv, rkv)
    q_abs = num.bf16(np.einsum("bshd,hdc->bshc", q_nope, wb[:, :dn]))
    s = num.bf16(num.bf16(np.einsum("bshc,btc->bsht", q_abs, c)) + num.bf16(np.einsum("bshr,btr->bsht", q_pe, k_pe)))
    s = num.bf16(s * num.const32(p["scale"]))
    s = num.bf16(s + mask[:, :, None, :])
    pr = num.bf16(_softmax(s))
    ol = num.bf16(np.einsum("bsht,btc->bshc", pr, c))
    return num.bf16(np.einsum("bshc,hdc->bshd", ol, wb[:, dn:]))


def mla_params(st, prefix, cfg, num, scale=None):
    rd = cfg["qk_rope_head_dim"]
    freqs = R.yarn_freqs(rd, cfg["rope_theta"], cfg["rope_factor"], cfg["original_seq_len"], cfg["beta_fast"],
                         cfg["beta_slow"], cfg["max_seq_len"] > cfg["original_seq_len"], num)
    return {
        "n_heads": cfg["n_heads"], "d_nope": cfg["qk_nope_head_dim"], "d_rope": rd, "d_v": cfg["v_head_dim"],
        "kv_lora_rank": cfg["kv_lora_rank"], "eps": cfg.get("norm_eps", 1e-6),
        "scale": softmax_scale(cfg) if scale is None else scale,
        "cs_fn": lambda pos, f=freqs: R.cos_sin(f, pos, num),
        "wq_a": L.load_weight(st, prefix + ".wq_a"), "q_norm": st.get(prefix + ".q_norm.weight"),
        "wq_b": L.load_weight(st, prefix + ".wq_b"), "wkv_a": L.load_weight(st, prefix + ".wkv_a"),
        "kv_norm": st.get(prefix + ".kv_norm.weight"), "wkv_b": L.load_weight(st, prefix + ".wkv_b"),
        "wo": L.load_weight(st, prefix + ".wo"),
    }
