#!/usr/bin/env python3
"""Worked example (spec/validating-your-implementation.md): validate a port of ONE kernel —
the V4 KV compressor — against the golden suite, with numpy only.

    compressor_numpy.py GOLDEN DUMP [--bug rope-half] [--compare DSV4REF]

1. read a unit-level golden file (golden/compressor_hca_exact.safetensors or
   golden/compressor_csa_exact.safetensors: scope "unit compressor"): its config, schedule,
   weights layers.0.attn.compressor.* and input inputs.x;
2. recompute, written from spec/compressor.md and spec/rope.md only, the entries the
   compressor emits in every call of the schedule (exact numerics: float64 mathematics);
3. write them to DUMP under the golden tap names taps.<k>.layers.0.attn.compressor (F32);
4. with --compare, run `DSV4REF compare GOLDEN DUMP` and exit with its status.

--bug rope-half rotates the RoPE dims as two halves instead of interleaved pairs (pitfall 2
of the catalogue): the compare then fails and names the tensors.
"""
import argparse
import json
import math
import struct
import subprocess
import sys

import numpy as np


# ---- 1. a minimal safetensors reader / writer (golden-format.md) ----

def read_safetensors(path):
    """-> (metadata dict, {name: float64 or int64 array}); BF16 decoded by shifting to f32."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    plain = {"F64": "<f8", "F32": "<f4", "I64": "<i8", "I32": "<i4"}
    out = {}
    for name, h in header.items():
        b, e = h["data_offsets"]
        raw = blob[base + b:base + e]
        if h["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32).astype(np.float64)
        elif h["dtype"] in plain:
            arr = np.frombuffer(raw, dtype=plain[h["dtype"]])
            arr = arr.astype(np.float64) if arr.dtype.kind == "f" else arr.astype(np.int64)
        else:
            continue   # not needed here
        out[name] = arr.reshape(h["shape"])
    return meta, out


def write_safetensors(path, tensors, meta):
    """tensors {name: float array} written as F32, name-sorted."""
    header, chunks, off = {}, [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(data)]}
        chunks.append(data)
        off += len(data)
    header["__metadata__"] = meta
    hj = json.dumps(header).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(chunks))


# ---- 2. the compressor, from spec/compressor.md and spec/rope.md (exact numerics) ----

def yarn_omega(r, theta, factor, L, beta_fast, beta_slow):
    """spec/rope.md: omega_i = theta^(-2i/r); YaRN (compressed V4 layers, L > 0) blends
    omega/factor and omega with a linear ramp between the correction dims lo and hi."""
    omega = theta ** (-np.arange(0, r, 2) / r)
    if L <= 0:
        return omega

    def corr(rot):
        return r * math.log(L / (rot * 2 * math.pi)) / (2 * math.log(theta))
    lo = max(math.floor(corr(beta_fast)), 0)
    hi = min(math.ceil(corr(beta_slow)), r - 1)
    if lo == hi:
        hi += 0.001
    ramp = np.clip((np.arange(r // 2) - lo) / (hi - lo), 0, 1)
    return omega / factor * ramp + omega * (1 - ramp)


def rope(x, pos, omega, bug):
    """rotate the pairs of x [n, r] at positions pos [n]: interleaved (2i, 2i+1) — the official
    layout (pitfall 2); bug = "rope-half" pairs (i, i + r/2) instead."""
    ang = pos[:, None] * omega[None, :]
    c, s = np.cos(ang), np.sin(ang)
    y = x.copy()
    if bug == "rope-half":
        h = x.shape[1] // 2
        a, b = x[:, :h], x[:, h:]
        y[:, :h], y[:, h:] = a * c - b * s, a * s + b * c
    else:
        a, b = x[:, 0::2], x[:, 1::2]
        y[:, 0::2], y[:, 1::2] = a * c - b * s, a * s + b * c
    return y


def compress(cfg, W, x, bug):
    """all entries of the sequence x [T, d]: entry j pools tokens jm .. jm+m-1 (and, for m = 4,
    the previous block's first half channels: the overlap), softmax over tokens per channel of
    the gate scores, weighted sum of the values; RMSNorm; RoPE at position j*m on the last r
    dims. Returns [T // m, c]."""
    m, c, r = cfg["compress_ratios"][0], cfg["head_dim"], cfg["rope_head_dim"]
    u = x @ W["wkv"].T                                       # [T, kappa c]
    g = x @ W["wgate"].T + W["ape"][np.arange(len(x)) % m]   # [T, kappa c]
    n = len(x) // m
    out = np.zeros((n, c))
    for j in range(n):
        blk = slice(j * m, j * m + m)
        if m == 4:   # overlap: previous block's A half (channels [0, c)) + this block's B half
            prev = slice((j - 1) * m, j * m)
            vu = np.concatenate([u[prev, :c] if j else np.zeros((0, c)), u[blk, c:]])
            vg = np.concatenate([g[prev, :c] if j else np.zeros((0, c)), g[blk, c:]])
        else:
            vu, vg = u[blk], g[blk]
        p = np.exp(vg - vg.max(axis=0))
        out[j] = (p / p.sum(axis=0) * vu).sum(axis=0)
    out = W["norm"] * out / np.sqrt(np.mean(out * out, axis=-1, keepdims=True) + cfg["norm_eps"])
    omega = yarn_omega(r, cfg["compress_rope_theta"], cfg["rope_factor"], cfg["original_seq_len"],
                       cfg["beta_fast"], cfg["beta_slow"])
    out[:, c - r:] = rope(out[:, c - r:], np.arange(n) * m, omega, bug)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("golden")
    ap.add_argument("dump")
    ap.add_argument("--bug", choices=("rope-half",), default=None)
    ap.add_argument("--compare", metavar="DSV4REF", default=None)
    a = ap.parse_args()
    meta, t = read_safetensors(a.golden)
    if not meta.get("scope", "").startswith("unit compressor") or meta.get("numerics") != "exact":
        sys.exit(f"{a.golden}: expected an exact-mode 'unit compressor' golden file")
    cfg, sched = json.loads(meta["config"]), json.loads(meta["schedule"])
    pre = "layers.0.attn.compressor."
    W = {"wkv": t[pre + "wkv.weight"], "wgate": t[pre + "wgate.weight"], "ape": t[pre + "ape"],
         "norm": t[pre + "norm.weight"]}
    x, m = t["inputs.x"], cfg["compress_ratios"][0]
    taps = {}
    for b in range(x.shape[0]):
        # the compressor is causal and stateless across entries once a block is complete, so
        # the entries of the whole sequence, split by the call in which each completes, are
        # what a prefill + decode implementation must emit call by call
        ent = compress(cfg, W, x[b], a.bug)
        for k, call in enumerate(sched):
            end = call["start_pos"] + call["len"]
            j0, j1 = call["start_pos"] // m, end // m
            if j1 > j0:
                taps.setdefault(f"taps.{k}.layers.0.attn.compressor", []).append(ent[j0:j1])
    taps = {k: np.stack(v) for k, v in taps.items()}       # [B, n_new, c]
    write_safetensors(a.dump, taps, {"format": "dsv4-golden-1", "numerics": "exact",
                                     "source": "tools/examples/compressor_numpy.py"})
    print(f"wrote {len(taps)} taps to {a.dump}")
    if a.compare:
        r = subprocess.run([a.compare, "compare", a.golden, a.dump])
        return r.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
