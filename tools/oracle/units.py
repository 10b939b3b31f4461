"""The unit-level cases of the golden suite (spec/golden-suite.md [GLD-4]) run by the oracle:
one V4 sub-module on the inputs stored in the file, composed from the oracle's own modules
(compressor.py, indexer.py, mhc.py, moe.py) exactly as the full-model oracle wires them in
v4_attention.py / model.py.  Weight, input and tap names (metadata `scope` = "unit <module>"):

  compressor  layers.0.attn.compressor.*   inputs.x [B,T,d]      taps.k.layers.0.attn.compressor
  indexer     layers.0.attn.indexer.*      inputs.x, inputs.qr   taps.k.layers.0.attn.indexer (entry
                                                                 numbers, no KV offset), .compressor
  mhc         layers.0.hc_attn_*, hc_head_*  inputs.x [B,T,hc,d], inputs.o [B,T,d]
              taps.0.layers.0.hc_pre.{0,1,2} (a, post, comb), taps.0.layers.0.hc_post, taps.0.hc_head
  moe         layers.{0,1}.ffn.*           inputs.x, inputs.tokens  taps.0.layers.i.ffn, .ffn.gate.{0,1}
"""
import json

import numpy as np

import compressor as C
import indexer as I
import mhc
import moe as M
import rope as R


def _compressed_cs(cfg, num):
    """[O-ROPE] the table of a compressed layer: compress_rope_theta with YaRN (v4 §3.6)."""
    f = R.yarn_freqs(cfg["rope_head_dim"], cfg["compress_rope_theta"], cfg["rope_factor"], cfg["original_seq_len"],
                     cfg["beta_fast"], cfg["beta_slow"], cfg["original_seq_len"] > 0, num)
    return lambda pos: R.cos_sin(f, pos, num)


def run_unit(st, num):
    cfg = json.loads(st.meta["config"])
    sched = json.loads(st.meta["schedule"])
    unit = st.meta["scope"][5:].split(":")[0].strip()
    x = st.get("inputs.x")
    out = {}
    if unit == "compressor":
        p = C.compressor_params(st, "layers.0.attn.compressor", cfg["compress_ratios"][0], cfg["head_dim"],
                                cfg["rope_head_dim"], cfg["norm_eps"], False)
        cs_fn, state = _compressed_cs(cfg, num), C.CompressorState()
        for k, call in enumerate(sched):
            sp, ln = call["start_pos"], call["len"]
            e = C.compressor_call(p, x[:, sp:sp + ln], sp, state, cs_fn, num)
            if e is not None:
                out[f"taps.{k}.layers.0.attn.compressor"] = e
    elif unit == "indexer":
        p = I.indexer_params(st, "layers.0.attn.indexer", cfg)
        cs_fn, state = _compressed_cs(cfg, num), C.CompressorState()
        qr = st.get("inputs.qr")
        for k, call in enumerate(sched):
            sp, ln = call["start_pos"], call["len"]
            sel, keys, _ = I.indexer_call(p, x[:, sp:sp + ln], qr[:, sp:sp + ln], sp, state, cs_fn, num, 0)
            out[f"taps.{k}.layers.0.attn.indexer"] = sel
            if keys is not None:
                out[f"taps.{k}.layers.0.attn.indexer.compressor"] = keys
    elif unit == "mhc":
        fn, sc, bs = st.get("layers.0.hc_attn_fn"), st.get("layers.0.hc_attn_scale"), st.get("layers.0.hc_attn_base")
        a, post, comb = mhc.hc_pre(x, fn, sc, bs, cfg, num)
        out["taps.0.layers.0.hc_pre.0"] = a
        out["taps.0.layers.0.hc_pre.1"] = post
        out["taps.0.layers.0.hc_pre.2"] = comb
        out["taps.0.layers.0.hc_post"] = mhc.hc_post(st.get("inputs.o"), x, post, comb, num)
        out["taps.0.hc_head"] = mhc.hc_head(x, st.get("hc_head_fn"), st.get("hc_head_scale"),
                                            st.get("hc_head_base"), cfg, num)
    elif unit == "moe":
        B, T, d = x.shape
        tokens = st.get("inputs.tokens").astype(np.int64).reshape(-1)
        for i in range(2):
            p = M.moe_params(st, f"layers.{i}.ffn", cfg, i)
            y, wgt, ind = M.moe(x.reshape(-1, d), tokens, p, cfg, num)
            out[f"taps.0.layers.{i}.ffn"] = y.reshape(B, T, d)
            out[f"taps.0.layers.{i}.ffn.gate.0"] = wgt
            out[f"taps.0.layers.{i}.ffn.gate.1"] = ind
    else:
        raise ValueError(f"{st.path}: unknown unit '{unit}'")
    return out
