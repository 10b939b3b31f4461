#!/usr/bin/env python3
"""Run the oracle on an official golden file's schedule, dump its taps under the golden
names, and judge the dump with shared/tools/official_compare.py.

    check_official.py FILE [--mode official|exact] [--teacher [block|sublayer]] [--dump OUT] [--only PREFIX]
                           [--calls N] [--no-compare]

--teacher   teacher forcing (golden-format.md): Block i (i >= 1) is fed the golden output of
            Block i-1 of the same call (taps.k.layers.(i-1)); the attention-only V3.2 file is
            always fed inputs.x.  --teacher sublayer additionally feeds every attention its
            golden attn.in and every MoE its golden ffn.in (isolates each sublayer).  Without it the schedule runs free on its own outputs and
            the comparison is done in free mode (only logits judged).
--calls N   run only the first N calls of the schedule (the compare then reports the taps of
            the skipped calls missing; meant for quick looks, use --only to narrow).
Prints the compare's output; its last line is "N passed, M failed".  Exit status = compare's.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numerics as nm          # noqa: E402
import torch_cpu as TC         # noqa: E402
import safetensors_np as stn   # noqa: E402


def shared_dir():
    env = os.environ.get("DSV4REF_SHARED")
    if env:
        return env
    return os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared"))


def run_v4(st, num, teacher, calls=None, sublayer=False):
    """All calls of a full-model file; returns {tap name: array}."""
    import model as MD
    mdl = MD.Model(st, num)
    sched = json.loads(st.meta["schedule"])
    tokens = st.get("inputs.tokens")
    state = mdl.new_state()
    out = {}
    for k, call in enumerate(sched[:calls] if calls else sched):
        sp, ln = call["start_pos"], call["len"]
        tk = tokens[:, sp:sp + ln]
        tf = None
        if teacher:
            def tf(i, k=k):
                name = f"taps.{k}.layers.{i - 1}"
                return st.get(name) if name in st else None
        sub = None
        if sublayer:
            def sub(path, k=k):
                name = f"taps.{k}.{path}"
                return st.get(name) if name in st else None
        _, taps, _ = MD.forward_call(mdl, tk, sp, state, tf, sub)
        for path, v in taps.items():
            out[f"taps.{k}.{path}"] = v
    return out


def run_v32(st, num, calls=None):
    import dsa
    cfg = json.loads(st.meta["config"])
    scale = float(st.meta["softmax_scale"]) if "softmax_scale" in st.meta else None
    p = dsa.dsa_params(st, "layers.0.attn", cfg, num, scale)
    sched = json.loads(st.meta["schedule"])
    x = st.get("inputs.x")
    state = dsa.DSAState()
    out = {}
    for k, call in enumerate(sched[:calls] if calls else sched):
        sp, ln = call["start_pos"], call["len"]
        o, sel = dsa.dsa_call(p, x[:, sp:sp + ln], sp, state, num)
        out[f"taps.{k}.layers.0.attn"] = o
        out[f"taps.{k}.layers.0.attn.indexer"] = sel
    return out


def write_dump(path, taps, meta, float_dtype="F32"):
    tensors = {}
    for name, v in taps.items():
        v = np.asarray(v)
        if np.issubdtype(v.dtype, np.integer):
            tensors[name] = ("I64", v.astype(np.int64))
        else:
            tensors[name] = (float_dtype, v)
    stn.save(path, tensors, meta)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--mode", choices=("official", "exact"), default="official")
    ap.add_argument("--teacher", nargs="?", const="block", choices=("block", "sublayer"), default=None,
                    help="block (default): golden-format teacher forcing; sublayer: also feed every "
                         "attention and MoE its golden input (diagnostic, isolates each sublayer)")
    ap.add_argument("--dump", default=None, help="where to write the dump (default: a temp file)")
    ap.add_argument("--only", default="")
    ap.add_argument("--calls", type=int, default=None)
    ap.add_argument("--no-compare", action="store_true")
    ap.add_argument("--dump-dtype", choices=("F32", "F64"), default="F32",
                    help="storage of float taps in the dump (F64 keeps exact-mode values unrounded)")
    ap.add_argument("--tie-rule", choices=("spec", "torch-cpu"), default=None,
                    help="top-k ties (default: torch-cpu for files made by the official code)")
    a = ap.parse_args(argv)
    t0 = time.time()
    try:
        st = stn.load(a.file)
    except (OSError, ValueError) as err:
        print(f"error: {err}")
        return 2
    num = nm.Numerics(a.mode)
    # [TOPK-2]: a file made by DeepSeek's official code on the CPU kept torch.topk's tie order
    TC.TIE_RULE = a.tie_rule or ("torch-cpu" if "DeepSeek official" in st.meta.get("source", "") else "spec")
    scope = st.meta.get("scope", "full model")
    if scope.startswith("attention only"):
        taps = run_v32(st, num, a.calls)
        teacher = True
    else:
        taps = run_v4(st, num, a.teacher is not None, a.calls, a.teacher == "sublayer")
        teacher = a.teacher is not None
    t1 = time.time()
    dump = a.dump or os.path.join(tempfile.mkdtemp(prefix="oracle-"), "dump.safetensors")
    write_dump(dump, taps, {"format": "dsv4-golden-1", "case": st.meta.get("case", "?"),
                            "source": "dsv4ref tools/oracle (numpy)", "numerics": a.mode}, a.dump_dtype)
    print(f"oracle: {st.meta.get('case', '?')} mode {a.mode} "
          f"{('teacher ' + (a.teacher or 'block')) if teacher else 'free'}: "
          f"{len(taps)} taps in {t1 - t0:.1f} s -> {dump}", flush=True)
    if a.no_compare:
        return 0
    cmp = os.path.join(shared_dir(), "tools", "official_compare.py")
    args = [sys.executable, cmp, a.file, dump, "--mode", "teacher" if teacher else "free"]
    if a.only:
        args += ["--only", a.only]
    r = subprocess.run(args, capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stdout.write(r.stderr)
    if not a.dump:
        os.remove(dump)
        os.rmdir(os.path.dirname(dump))
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
