"""An in-memory stand-in for a SafeTensors file (names -> (dtype, array)) so that the
oracle's loaders can be driven by synthetic weights in the unit tests and by generators."""
import json

import numpy as np


class DictSource:
    def __init__(self, tensors, meta=None, path="<memory>"):
        self.path = path
        self.meta = dict(meta or {})
        self._t = {}
        for name, v in tensors.items():
            dtype, arr = v if isinstance(v, tuple) else ("F32", v)
            self._t[name] = (dtype, np.asarray(arr))

    @property
    def names(self):
        return list(self._t)

    def __contains__(self, name):
        return name in self._t

    def info(self, name):
        dtype, arr = self._t[name]
        return {"dtype": dtype, "shape": list(arr.shape)}

    def get(self, name, raw=False):
        if name not in self._t:
            raise KeyError(f"{self.path}: no tensor named {name}")
        return self._t[name][1]


def tiny_v4_config(**over):
    """A tiny V4 config whose dimensions are all distinct (for synthetic tests)."""
    c = {"vocab_size": 50, "dim": 40, "moe_inter_dim": 24, "n_layers": 3, "n_hash_layers": 1,
         "n_heads": 3, "n_routed_experts": 5, "n_shared_experts": 1, "n_activated_experts": 2,
         "score_func": "sqrtsoftplus", "route_scale": 1.5, "swiglu_limit": 10.0, "q_lora_rank": 36,
         "head_dim": 80, "rope_head_dim": 16, "norm_eps": 1e-6, "o_groups": 3, "o_lora_rank": 20,
         "window_size": 8, "compress_ratios": [4, 16, 0], "compress_rope_theta": 160000.0,
         "original_seq_len": 64, "rope_theta": 10000.0, "rope_factor": 4.0, "beta_fast": 32,
         "beta_slow": 1, "index_n_heads": 2, "index_head_dim": 32, "index_topk": 3, "hc_mult": 4,
         "hc_sinkhorn_iters": 20, "hc_eps": 1e-6, "max_seq_len": 256}
    c.update(over)
    return c


def random_v4_weights(cfg, seed=0, mtp=False):
    """Random weights for a tiny V4 model under the official names (F32 everywhere); with
    mtp=True also the MTP block mtp.0.* (layer id n_layers: compress_ratios[n_layers])."""
    rng = np.random.default_rng(seed)
    d, H, D, rq = cfg["dim"], cfg["n_heads"], cfg["head_dim"], cfg["q_lora_rank"]
    G, Ro, m = cfg["o_groups"], cfg["o_lora_rank"], cfg["moe_inter_dim"]
    n, mix = cfg["hc_mult"], (2 + cfg["hc_mult"]) * cfg["hc_mult"]
    HI, DI = cfg["index_n_heads"], cfg["index_head_dim"]
    t = {}

    def w(name, *shape, scale=None):
        s = scale if scale is not None else shape[-1] ** -0.5
        t[name] = rng.normal(0, s, size=shape)

    w("embed.weight", cfg["vocab_size"], d, scale=1.0)
    blocks = [(f"layers.{i}", i) for i in range(cfg["n_layers"])]
    if mtp:
        blocks.append(("mtp.0", cfg["n_layers"]))
        w("mtp.0.e_proj.weight", d, d); w("mtp.0.h_proj.weight", d, d)
        for nm_ in ("enorm", "hnorm", "norm"):
            t[f"mtp.0.{nm_}.weight"] = 1 + 0.1 * rng.normal(size=d)
        w("mtp.0.hc_head_fn", n, n * d, scale=0.05)
        t["mtp.0.hc_head_base"] = rng.normal(0, 0.5, size=n)
        t["mtp.0.hc_head_scale"] = np.abs(rng.normal(1, 0.2, size=1))
    for p, i in blocks:
        ratio = cfg["compress_ratios"][i]
        w(p + ".attn.wq_a.weight", rq, d); t[p + ".attn.q_norm.weight"] = 1 + 0.1 * rng.normal(size=rq)
        w(p + ".attn.wq_b.weight", H * D, rq); w(p + ".attn.wkv.weight", D, d)
        t[p + ".attn.kv_norm.weight"] = 1 + 0.1 * rng.normal(size=D)
        w(p + ".attn.wo_a.weight", G * Ro, H * D // G); w(p + ".attn.wo_b.weight", d, G * Ro)
        t[p + ".attn.attn_sink"] = rng.normal(size=H)
        if ratio:
            k = 2 if ratio == 4 else 1
            cp = p + ".attn.compressor"
            w(cp + ".wkv.weight", k * D, d); w(cp + ".wgate.weight", k * D, d)
            t[cp + ".ape"] = rng.normal(0, 0.5, size=(ratio, k * D))
            t[cp + ".norm.weight"] = 1 + 0.1 * rng.normal(size=D)
            if ratio == 4:
                ip = p + ".attn.indexer"
                w(ip + ".wq_b.weight", HI * DI, rq); w(ip + ".weights_proj.weight", HI, d)
                w(ip + ".compressor.wkv.weight", 2 * DI, d); w(ip + ".compressor.wgate.weight", 2 * DI, d)
                t[ip + ".compressor.ape"] = rng.normal(0, 0.5, size=(4, 2 * DI))
                t[ip + ".compressor.norm.weight"] = 1 + 0.1 * rng.normal(size=DI)
        for nm_ in ("attn", "ffn"):
            w(f"{p}.hc_{nm_}_fn", mix, n * d, scale=0.05)
            t[f"{p}.hc_{nm_}_base"] = rng.normal(0, 0.5, size=mix)
            t[f"{p}.hc_{nm_}_scale"] = np.abs(rng.normal(1, 0.2, size=3))
        t[p + ".attn_norm.weight"] = 1 + 0.1 * rng.normal(size=d)
        t[p + ".ffn_norm.weight"] = 1 + 0.1 * rng.normal(size=d)
        w(p + ".ffn.gate.weight", cfg["n_routed_experts"], d)
        if i < cfg["n_hash_layers"]:
            t[p + ".ffn.gate.tid2eid"] = ("I64", np.stack([rng.permutation(cfg["n_routed_experts"])[:cfg["n_activated_experts"]]
                                                           for _ in range(cfg["vocab_size"])]))
        else:
            t[p + ".ffn.gate.bias"] = rng.normal(0, 0.1, size=cfg["n_routed_experts"])
        for e in [f"experts.{j}" for j in range(cfg["n_routed_experts"])] + ["shared_experts"]:
            w(f"{p}.ffn.{e}.w1.weight", m, d); w(f"{p}.ffn.{e}.w3.weight", m, d); w(f"{p}.ffn.{e}.w2.weight", d, m)
    t["norm.weight"] = 1 + 0.1 * rng.normal(size=d)
    w("head.weight", cfg["vocab_size"], d)
    w("hc_head_fn", n, n * d, scale=0.05)
    t["hc_head_base"] = rng.normal(0, 0.5, size=n)
    t["hc_head_scale"] = np.abs(rng.normal(1, 0.2, size=1))
    return DictSource(t, {"config": json.dumps(cfg)})
