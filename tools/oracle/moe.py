"""Mixture of experts with sqrt-softplus router, hash routing for the first layers, SwiGLU
experts with the clamp, and one shared expert (v4-architecture.md §7)."""
import numpy as np

import torch_cpu as TC

import linear as L


def softplus(z):
    """torch softplus (beta 1, threshold 20): log1p(exp(z)), z itself where z > 20."""
    return np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20))))


def route(a, tokens, p, cfg, num):
    """[O-MOE-1] s = sqrt(softplus(f32(a) W_gate^T)) (f32); selection top-k of s + bias
    (score layers) or tid2eid[token] (hash layers); weights = s[I] / sum s[I] * route_scale.
    a: [N, d]; returns (weights [N, k], indices [N, k], biased scores)."""
    logits = L.linear(a, p["gate"], num)  # f32 weight view: the official casts both to f32
    s = np.sqrt(softplus(logits))
    k = cfg["n_activated_experts"]
    biased = s
    if p["tid2eid"] is not None:
        ind = p["tid2eid"][tokens]
    else:
        biased = s + p["bias"]
        ind = TC.topk(biased, k)
    wgt = np.take_along_axis(s, ind, axis=-1)
    wgt = wgt / wgt.sum(axis=-1, keepdims=True) * cfg["route_scale"]
    return num.f32(wgt), ind, biased


def expert(a, e, limit, num, weight=None):
    """[O-MOE-2] g = f32(w1 a), u = f32(w3 a) (GEMM outputs bf16 in the official graph);
    u <- clamp(u, -L, L), g <- min(g, L) (L = swiglu_limit > 0); h = silu(g) u;
    routed: h <- weight * h before w2; y = w2(bf16(h))."""
    g = L.linear(a, e["w1"], num)
    u = L.linear(a, e["w3"], num)
    if limit > 0:
        u = np.clip(u, -limit, limit)
        g = np.minimum(g, limit)
    h = g / (1.0 + np.exp(-g)) * u
    if weight is not None:
        h = weight * h
    return L.linear(num.bf16(h), e["w2"], num)


def moe(a, tokens, p, cfg, num):
    """[O-MOE-3] Y = sum over experts in ascending id of the routed outputs (f32 accumulation of
    bf16 expert outputs), + the shared expert; bf16(Y).  a: [N, d]; tokens: [N]."""
    wgt, ind, _ = route(a, tokens, p, cfg, num)
    y = np.zeros_like(a)
    limit = cfg.get("swiglu_limit", 0.0) or 0.0
    for i, e in enumerate(p["experts"]):
        rows, slot = np.nonzero(ind == i)
        if rows.size == 0:
            continue
        y[rows] += expert(a[rows], e, limit, num, wgt[rows, slot][:, None])
    y = y + expert(a, p["shared"], limit, num)
    return num.bf16(y), wgt, ind


def moe_params(st, prefix, cfg, layer_id):
    gate_w = st.get(prefix + ".gate.weight")
    p = {"gate": {"kind": "f32", "w": gate_w}, "tid2eid": None, "bias": None, "experts": [], "shared": None}
    if layer_id < cfg.get("n_hash_layers", 0):
        p["tid2eid"] = st.get(prefix + ".gate.tid2eid")
    else:
        p["bias"] = st.get(prefix + ".gate.bias")

    def ex(pre):
        return {k: L.load_weight(st, f"{pre}.{k}") for k in ("w1", "w2", "w3")}
    p["experts"] = [ex(f"{prefix}.experts.{i}") for i in range(cfg["n_routed_experts"])]
    p["shared"] = ex(prefix + ".shared_experts")
    return p
