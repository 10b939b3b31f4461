#!/usr/bin/env python3
"""Run the numpy oracle on golden-suite files (golden/*.safetensors, made by `dsv4ref golden`)
and compare every tap it holds with the oracle's own value.

    check_suite.py [FILE ...] [--dir golden] [--numerics exact|official|all] [--tol 1e-6] [-v]

Default: every exact-mode file of the suite (MANIFEST.json of --dir), each compared with
rel-L2 <= --tol (spec/tolerances.md: exact mode, C reference vs the oracle, 1e-6) per tap
tensor; index taps compared as sets per row (-1 dropped), which must be identical.

The oracle runs the file from its inputs and weights only — its config, schedule and scope
metadata — never from any tap (free-running: in exact mode nothing amplifies; a differing
top-k set or expert choice is reported as such).  Cases (spec/golden-suite.md [GLD-2]):
  no `scope`                  the whole V4 model (tools/oracle/model.py)
  scope "attention only ..."  metadata `attention` = mha | mla_naive | mla_absorbed | dsa | v4
  scope "unit <module>"       compressor | indexer | mhc | moe (tools/oracle/units.py)
Prints one line per file and ends with "N passed, M failed"; exit 0 all pass, 1 else, 2 bad input.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import check_official as CO    # noqa: E402
import linear as L             # noqa: E402
import mha as MHA              # noqa: E402
import mla as MLA              # noqa: E402
import numerics as nm          # noqa: E402
import safetensors_np as stn   # noqa: E402


# ---- the attention-only cases ----

class _Latent:
    def __init__(self):
        self.c = None
        self.k_pe = None


def _cat(a, b):
    return b if a is None else np.concatenate([a, b], axis=1)


def run_mla(st, num, path):
    """[O-MLA-1..3] one MLA module over the schedule: prefill with the causal mask, decode over
    the latent cache; the naive or absorbed path for every call (the file's `attention`)."""
    cfg = json.loads(st.meta["config"])
    p = MLA.mla_params(st, "layers.0.attn", cfg, num)
    x = st.get("inputs.x")
    state = _Latent()
    out = {}
    for k, call in enumerate(json.loads(st.meta["schedule"])):
        sp, ln = call["start_pos"], call["len"]
        xs = x[:, sp:sp + ln]
        B = xs.shape[0]
        _, q_nope, q_pe, c, k_pe = MLA.mla_front(p, xs, sp, num)
        state.c, state.k_pe = _cat(state.c, c), _cat(state.k_pe, k_pe)
        T = sp + ln
        pos = np.arange(sp, sp + ln)[:, None]
        mask = np.where(np.arange(T)[None, :] > pos, -np.inf, 0.0)[None].repeat(B, axis=0)
        f = MLA.mla_naive if path == "mla_naive" else MLA.mla_absorbed
        o = f(p, q_nope, q_pe, state.c, state.k_pe, mask, num)
        out[f"taps.{k}.layers.0.attn"] = L.linear(o.reshape(B, ln, -1), p["wo"], num)
    return out


def run_mha(st, num):
    """[O-MHA-1] one dense MHA module (RoPE over the whole head) over the schedule."""
    cfg = json.loads(st.meta["config"])
    w = {n: st.get(f"layers.0.attn.{n}.weight") for n in ("wq", "wk", "wv", "wo")}
    p = MHA.mha_params(w, cfg["n_heads"], cfg["head_dim"], cfg["v_head_dim"], cfg["head_dim"],
                       cfg["rope_theta"], num)
    x = st.get("inputs.x")
    state = MHA.MHAState()
    out = {}
    for k, call in enumerate(json.loads(st.meta["schedule"])):
        sp, ln = call["start_pos"], call["len"]
        out[f"taps.{k}.layers.0.attn"] = MHA.mha_call(p, x[:, sp:sp + ln], sp, state, num)
    return out


def run_v4_layer(st, num):
    """[O-ATT-1] one V4 attention layer layers.0.attn (ratio compress_ratios[0]) over the
    schedule, fed inputs.x; its taps under taps.k.layers.0.*."""
    import v4_attention as A
    cfg = json.loads(st.meta["config"])
    p = A.attention_params(st, "layers.0.attn", cfg, 0, num)
    x = st.get("inputs.x")
    state = A.AttnState()
    out = {}
    for k, call in enumerate(json.loads(st.meta["schedule"])):
        sp, ln = call["start_pos"], call["len"]
        o, taps = A.attention_call(p, x[:, sp:sp + ln], sp, state, num)
        out[f"taps.{k}.layers.0.attn"] = o
        for name, v in taps.items():
            out[f"taps.{k}.layers.0.{name}"] = v
    return out


def run_file(st, num):
    scope = st.meta.get("scope", "full model")
    if scope.startswith("attention only"):
        kind = st.meta.get("attention", "dsa")
        if kind == "mha":
            return run_mha(st, num)
        if kind in ("mla_naive", "mla_absorbed"):
            return run_mla(st, num, kind)
        if kind == "v4":
            return run_v4_layer(st, num)
        return CO.run_v32(st, num)
    if scope.startswith("unit "):
        import units
        return units.run_unit(st, num)
    taps = CO.run_v4(st, num, teacher=False)
    return add_block_inputs(st, taps)


def add_block_inputs(st, taps):
    """taps.k.layers.i.in (Block inputs, golden-format.md): Block i's input is Block i-1's
    output; Block 0's is the embedding row of each token copied to the hc streams
    (v4-architecture.md §4.1).  Derived here from the oracle's own values."""
    cfg = json.loads(st.meta["config"])
    tokens = st.get("inputs.tokens").astype(np.int64)
    emb = st.get("embed.weight")
    for k, call in enumerate(json.loads(st.meta["schedule"])):
        sp, ln = call["start_pos"], call["len"]
        e = emb[tokens[:, sp:sp + ln]]
        taps[f"taps.{k}.layers.0.in"] = np.repeat(e[:, :, None, :], cfg["hc_mult"], axis=2)
        for i in range(1, cfg["n_layers"]):
            if f"taps.{k}.layers.{i - 1}" in taps:
                taps[f"taps.{k}.layers.{i}.in"] = taps[f"taps.{k}.layers.{i - 1}"]
    return taps


# ---- comparison ----

def _rows_as_sets(a):
    a = np.asarray(a).reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)
    return [frozenset(int(v) for v in r if v >= 0) for r in a]


def compare(name, golden, ours, tol):
    """(ok, message) for one tap."""
    g = np.asarray(golden)
    o = np.asarray(ours)
    if g.shape != o.shape:
        return False, f"{name}: shape {list(o.shape)} (oracle) != {list(g.shape)} (file)"
    if np.issubdtype(o.dtype, np.integer) or np.issubdtype(g.dtype, np.integer) or name.endswith(("attn.indexer", "gate.1")):
        sg, so = _rows_as_sets(g), _rows_as_sets(o)
        bad = [i for i, (a, b) in enumerate(zip(sg, so)) if a != b]
        if bad:
            i = bad[0]
            return False, (f"{name}: {len(bad)}/{len(sg)} index rows differ as sets; row {i}: "
                           f"file {sorted(sg[i])} oracle {sorted(so[i])}")
        return True, f"{name}: {len(sg)} index rows identical as sets"
    g = g.astype(np.float64)
    o = o.astype(np.float64)
    den = np.linalg.norm(g)
    err = np.linalg.norm(o - g) / (den if den > 0 else 1.0)
    if not np.isfinite(err) or err > tol:
        i = int(np.argmax(np.abs(o - g)))
        return False, (f"{name}: rel-L2 {err:.3e} > {tol:g}; worst at flat {i}: file {g.flat[i]:.9g} "
                       f"oracle {o.flat[i]:.9g}")
    return True, f"{name}: rel-L2 {err:.2e}"


def check_file(path, tol, verbose):
    st = stn.load(path)
    num = nm.Numerics(st.meta.get("numerics", "exact"))
    taps = run_file(st, num)
    names = [n for n in st.names if n.startswith("taps.")]
    n_ok, worst, msgs = 0, 0.0, []
    for n in names:
        if n not in taps:
            msgs.append(f"{n}: the oracle produced no such tap")
            continue
        ok, msg = compare(n, st.get(n), taps[n], tol)
        if ok:
            n_ok += 1
            if "rel-L2" in msg:
                worst = max(worst, float(msg.rsplit(" ", 1)[1]))
        if not ok or verbose:
            msgs.append(msg)
    return n_ok, len(names), worst, msgs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--dir", default=os.path.join(HERE, "..", "..", "golden"))
    ap.add_argument("--numerics", choices=("exact", "official", "all"), default="exact")
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    files = a.files
    if not files:
        try:
            with open(os.path.join(a.dir, "MANIFEST.json")) as f:
                man = json.load(f)
        except (OSError, ValueError) as err:
            print(f"error: {err}")
            return 2
        files = [os.path.join(a.dir, c["file"]) for c in man["cases"]
                 if a.numerics == "all" or c["numerics"] == a.numerics]
    passed = failed = 0
    for p in files:
        try:
            n_ok, n, worst, msgs = check_file(p, a.tol, a.verbose)
        except (OSError, ValueError, KeyError) as err:
            print(f"FAIL {os.path.basename(p)}: {err}")
            failed += 1
            continue
        good = n_ok == n and n > 0
        print(f"{'ok  ' if good else 'FAIL'} {os.path.basename(p)}: {n_ok}/{n} taps agree, worst rel-L2 {worst:.2e}")
        for m in msgs[:20 if not a.verbose else None]:
            print("     " + m)
        passed += good
        failed += not good
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
