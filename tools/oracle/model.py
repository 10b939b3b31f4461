"""The full DeepSeek-V4 forward (v4-architecture.md §4, §4.1, §4.2, §8): embedding, n
hyper-connection streams, Blocks (HCPre -> RMSNorm -> attention -> HCPost -> HCPre -> RMSNorm
-> MoE -> HCPost), HCHead -> RMSNorm -> fp32 head on the last position; the MTP block when
its weights exist.
"""
import json

import numpy as np

import linear as L
import mhc
import moe as M
import v4_attention as A


class Model:
    """Weights of one golden/ checkpoint file (official names) and its config."""

    def __init__(self, st, num, cfg=None):
        self.st, self.num = st, num
        self.cfg = cfg if cfg is not None else json.loads(st.meta["config"])
        c = self.cfg
        self.n_layers = c["n_layers"]
        self.embed = st.get("embed.weight")
        self.layers = [self._block(f"layers.{i}", i) for i in range(self.n_layers)]
        self.norm = st.get("norm.weight")
        self.head = st.get("head.weight")
        self.hc_head = (st.get("hc_head_fn"), st.get("hc_head_scale"), st.get("hc_head_base"))
        self.mtp = []
        k = 0
        while f"mtp.{k}.e_proj.weight" in st:
            b = self._block(f"mtp.{k}", self.n_layers + k)
            b.update({"e_proj": L.load_weight(st, f"mtp.{k}.e_proj"), "h_proj": L.load_weight(st, f"mtp.{k}.h_proj"),
                      "enorm": st.get(f"mtp.{k}.enorm.weight"), "hnorm": st.get(f"mtp.{k}.hnorm.weight"),
                      "norm": st.get(f"mtp.{k}.norm.weight"),
                      "hc_head": (st.get(f"mtp.{k}.hc_head_fn"), st.get(f"mtp.{k}.hc_head_scale"),
                                  st.get(f"mtp.{k}.hc_head_base"))})
            self.mtp.append(b)
            k += 1

    def _block(self, pre, layer_id):
        st, c = self.st, self.cfg
        return {
            "id": layer_id,
            "attn": A.attention_params(st, pre + ".attn", c, layer_id, self.num),
            "ffn": M.moe_params(st, pre + ".ffn", c, layer_id),
            "attn_norm": st.get(pre + ".attn_norm.weight"), "ffn_norm": st.get(pre + ".ffn_norm.weight"),
            "hc_attn": (st.get(pre + ".hc_attn_fn"), st.get(pre + ".hc_attn_scale"), st.get(pre + ".hc_attn_base")),
            "hc_ffn": (st.get(pre + ".hc_ffn_fn"), st.get(pre + ".hc_ffn_scale"), st.get(pre + ".hc_ffn_base")),
        }

    def new_state(self):
        return {"layers": [A.AttnState() for _ in self.layers], "mtp": [A.AttnState() for _ in self.mtp]}


def block_call(blk, X, tokens, start_pos, astate, cfg, num, taps, name, sub=None):
    """[O-MOD-2] one Block; X: [B, S, n, d] bf16 streams; records taps under `name`.
    sub(path) -> golden tensor or None: sublayer teacher forcing (diagnostic): the attention
    and the MoE are fed the golden attn.in / ffn.in instead of our own (our own are tapped)."""
    B, S, n, d = X.shape
    eps = cfg["norm_eps"]
    Rres = X
    fn, sc, bs = blk["hc_attn"]
    a, post, comb = mhc.hc_pre(X, fn, sc, bs, cfg, num)
    a = L.rmsnorm(a, blk["attn_norm"], eps, num)
    taps[name + ".attn.in"] = a
    if sub is not None and sub(name + ".attn.in") is not None:
        a = sub(name + ".attn.in")
    o, ataps = A.attention_call(blk["attn"], a, start_pos, astate, num)
    for k, v in ataps.items():
        taps[f"{name}.{k}"] = v
    taps[name + ".attn"] = o
    X = mhc.hc_post(o, Rres, post, comb, num)
    Rres = X
    fn, sc, bs = blk["hc_ffn"]
    a, post, comb = mhc.hc_pre(X, fn, sc, bs, cfg, num)
    a = L.rmsnorm(a, blk["ffn_norm"], eps, num)
    taps[name + ".ffn.in"] = a
    if sub is not None and sub(name + ".ffn.in") is not None:
        a = sub(name + ".ffn.in")
    y, wgt, ind = M.moe(a.reshape(-1, d), tokens.reshape(-1), blk["ffn"], cfg, num)
    y = y.reshape(B, S, d)
    taps[name + ".ffn"] = y
    taps[name + ".ffn.gate.0"] = wgt
    taps[name + ".ffn.gate.1"] = ind
    X = mhc.hc_post(y, Rres, post, comb, num)
    taps[name] = X
    return X


def head_logits(X, hc, norm_w, head_w, cfg, num):
    """[O-MOD-3] h = HCHead(X); h = RMSNorm(h); logits = f32(h[:, -1]) W_head^T (fp32 GEMM)."""
    h = mhc.hc_head(X, hc[0], hc[1], hc[2], cfg, num)
    h = L.rmsnorm(h, norm_w, cfg["norm_eps"], num)
    return num.f32(h[:, -1] @ head_w.T)


def forward_call(model, tokens, start_pos, state, teacher=None, sub=None):
    """[O-MOD-1] one forward call over tokens [B, S] at start_pos (prefill 0, or one decode
    token); returns (logits [B, vocab], taps {path: array}).  teacher(i) -> golden block input
    of layer i (i >= 1) or None: teacher forcing feeds each Block the golden output of the
    previous Block so the state of every layer is built from forced inputs."""
    cfg, num = model.cfg, model.num
    B, S = tokens.shape
    n = cfg["hc_mult"]
    taps = {}
    e = model.embed[tokens]                                       # [B, S, d] bf16
    X = np.repeat(e[:, :, None, :], n, axis=2)
    for i, blk in enumerate(model.layers):
        if teacher is not None and i > 0:
            forced = teacher(i)
            if forced is not None:
                X = forced
        X = block_call(blk, X, tokens, start_pos, state["layers"][i], cfg, num, taps, f"layers.{i}", sub)
    logits = head_logits(X, model.hc_head, model.norm, model.head, cfg, num)
    taps["logits"] = logits
    return logits, taps, X


def mtp_call(model, k, X, next_tokens, start_pos, state, taps=None):
    """[O-MOD-4] MTP block k (M lines 738-766): x' = e_proj(enorm(embed(next ids))) broadcast
    to the n streams + h_proj(hnorm(X)) (hnorm per stream); then one Block (its own layer id,
    SWA attention with rope_theta and no YaRN when its compress ratio is 0); then its own
    HCHead, norm and the shared head.  Not exercised by the official golden files (the
    official generate path never calls it); implemented from the equations."""
    cfg, num = model.cfg, model.num
    blk = model.mtp[k]
    eps = cfg["norm_eps"]
    e = L.rmsnorm(model.embed[next_tokens], blk["enorm"], eps, num)
    h = L.rmsnorm(X, blk["hnorm"], eps, num)
    Xm = num.bf16(L.linear(e, blk["e_proj"], num)[:, :, None, :] + L.linear(h, blk["h_proj"], num))
    t = {} if taps is None else taps
    Xm = block_call(blk, Xm, next_tokens, start_pos, state["mtp"][k], cfg, num, t, f"mtp.{k}")
    return head_logits(Xm, blk["hc_head"], blk["norm"], model.head, cfg, num)
