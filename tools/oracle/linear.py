"""Linear layers and norms in their stored dtypes (v4-architecture.md §2, §3.1, §3.4;
mla-dsa.md §1.1, §1.3).

A weight is a dict {"kind": "bf16"|"f32"|"fp8"|"fp4", "w": dequantized float64 [out, in]}.
The dequantized weight is exact (e4m3 x 2^e8m0 per 128x128 block; e2m1 x 2^e8m0 per 32 K).
"""
import numpy as np

import numerics as nm


def load_weight(st, name):
    """Reads `name`.weight (+ .scale) from a SafeTensors and dequantizes it exactly. [O-LIN-0]
    FP8: e4m3 [out, in] with e8m0 scales [ceil(out/128), ceil(in/128)] (partial edge blocks);
    FP4: packed I8 [out, in/2] (low nibble first) with e8m0 scales [out, in/32]."""
    wname = name + ".weight"
    info = st.info(wname)
    dt = info["dtype"]
    if dt == "F8_E4M3":
        w = st.get(wname)
        s = st.get(name + ".scale")
        so = np.repeat(np.repeat(s, 128, axis=0), 128, axis=1)[:w.shape[0], :w.shape[1]]
        return {"kind": "fp8", "w": w * so}
    if dt in ("I8", "U8") and (name + ".scale") in st:
        q = nm.decode_e2m1_packed(st.get(wname, raw=True).view(np.uint8))
        s = st.get(name + ".scale")
        return {"kind": "fp4", "w": q * np.repeat(s, 32, axis=1)[:, :q.shape[1]]}
    if dt == "BF16":
        return {"kind": "bf16", "w": st.get(wname)}
    if dt in ("F32", "F64"):
        return {"kind": "f32", "w": st.get(wname)}
    raise ValueError(f"{st.path}: {wname}: unsupported weight dtype {dt}")


def linear(x, W, num, out="auto"):
    """[O-LIN-1] y = x W^T.  official:
      fp8/fp4 weight: x -> act_quant(block 128, ue8m0) then the block-scaled GEMM; bf16 out;
      bf16 weight:   F.linear in bf16 (f32 accumulate), bf16 out;
      f32 weight:    F.linear in f32 (the input is cast to f32 first), f32 out.
    exact: x W^T in float64 (weights dequantized exactly, activations not quantized)."""
    w = W["w"]
    if not num.official:
        return x @ w.T
    if W["kind"] in ("fp8", "fp4"):
        q, s = nm.act_quant(x, 128)
        xq = (q.reshape(q.shape[:-1] + (-1, 128)) * s[..., None]).reshape(q.shape)
        return nm.round_bf16(xq @ w.T)
    if W["kind"] == "bf16":
        return nm.round_bf16(x @ w.T)
    return nm.round_f32(x @ w.T)


def rmsnorm(x, w, eps, num):
    """[O-NORM-1] y = w * (x * rsqrt(mean(x^2) + eps)), computed in f32, one rounding to the
    input dtype (bf16 everywhere it is used): (x * rsqrt) first, then * w."""
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return num.bf16(w * (x * r))


def layernorm(x, w, b, eps, num):
    """[O-NORM-2] LayerNorm (V3.2 indexer k_norm): population variance, f32, bf16 out."""
    mu = np.mean(x, axis=-1, keepdims=True)
    v = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return num.bf16((x - mu) / np.sqrt(v + eps) * w + b)
