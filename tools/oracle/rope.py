"""RoPE with YaRN frequency interpolation; interleaved and half-split pairings.

Spec: v4-architecture.md §3.6 (V4: YaRN iff original_seq_len > 0 and the layer compresses),
mla-dsa.md §1.4 (V3/V3.2: YaRN iff max_seq_len > original_seq_len; same table formula).
"""
import math

import numpy as np


def yarn_freqs(rope_dim, base, factor, original_seq_len, beta_fast, beta_slow, yarn, num):
    """[O-ROPE-1] omega_i = 1/base^(2i/r), i < r/2; with YaRN: corr(rho) = r ln(L/(2 pi rho)) /
    (2 ln base), lo = max(floor(corr(beta_fast)), 0), hi = min(ceil(corr(beta_slow)), r-1)
    (hi += 0.001 if equal), ramp_i = clamp((i-lo)/(hi-lo), 0, 1), smooth = 1 - ramp,
    omega <- omega/factor * (1 - smooth) + omega * smooth.
    official: every step in f32 like the official table; exact: float64.
    returns [r/2] float64."""
    half = rope_dim // 2
    if num.official:
        f = np.float32
        expo = (np.arange(0, rope_dim, 2, dtype=f) / f(rope_dim)).astype(f)
        # torch's CPU pow(python scalar, f32 tensor) matches the correctly rounded f32 of the
        # double power (measured against the official tables: exact), then an f32 reciprocal
        freqs = (f(1.0) / np.power(float(base), expo.astype(np.float64)).astype(f)).astype(f)
    else:
        freqs = 1.0 / np.power(float(base), np.arange(0, rope_dim, 2) / rope_dim)
    if yarn:
        def corr(rot):
            return rope_dim * math.log(original_seq_len / (rot * 2 * math.pi)) / (2 * math.log(base))
        lo = max(math.floor(corr(beta_fast)), 0)
        hi = min(math.ceil(corr(beta_slow)), rope_dim - 1)
        if lo == hi:
            hi += 0.001
        if num.official:
            f = np.float32
            ramp = np.clip(((np.arange(half, dtype=f) - f(lo)) / f(hi - lo)).astype(f), 0, 1).astype(f)
            smooth = (f(1) - ramp).astype(f)
            freqs = ((freqs / f(factor)).astype(f) * (f(1) - smooth)).astype(f) + (freqs * smooth).astype(f)
            freqs = freqs.astype(f)
        else:
            ramp = np.clip((np.arange(half) - lo) / (hi - lo), 0, 1)
            smooth = 1 - ramp
            freqs = freqs / factor * (1 - smooth) + freqs * smooth
    return np.asarray(freqs, dtype=np.float64)


def cos_sin(freqs, positions, num):
    """[O-ROPE-2] phi(t, i) = t * omega_i; returns (cos, sin) [len(positions), r/2].
    official: f32 angle f32(f32(t) * omega), f32 cos/sin (torch.polar of an f32 table)."""
    t = np.asarray(positions)
    if num.official:
        ang = (t.astype(np.float32)[:, None] * freqs.astype(np.float32)[None, :]).astype(np.float32)
        a64 = ang.astype(np.float64)
        return (np.cos(a64).astype(np.float32).astype(np.float64),
                np.sin(a64).astype(np.float32).astype(np.float64))
    ang = t.astype(np.float64)[:, None] * freqs[None, :]
    return np.cos(ang), np.sin(ang)


def _bcast(c, x):
    """cos/sin [S, r/2] against x [B, S, (H,) r/2]."""
    c = c[None]
    if x.ndim == 4:
        c = c[:, :, None, :]
    return c


def rope_interleaved(x, cs, num, inverse=False):
    """[O-ROPE-3] interleaved pairs (x[2i], x[2i+1]) <- (a c - b s, a s + b c); inverse uses -s.
    x: [B, S, r] or [B, S, H, r]; cs = cos_sin(...) for the S positions. Output bf16 in
    official mode (the official code copies the f32 product back into a bf16 tensor)."""
    c, s = cs
    c, s = _bcast(c, x), _bcast(s, x)
    if inverse:
        s = -s
    a, b = x[..., 0::2], x[..., 1::2]
    y = np.empty_like(np.asarray(x, dtype=np.float64))
    y[..., 0::2] = a * c - b * s
    y[..., 1::2] = a * s + b * c
    return num.bf16(y)


def rope_half_split(x, cs, num):
    """[O-ROPE-4] half-split pairs (x[i], x[i + r/2]) (V3.2 indexer after the 2025-11-17 fix)."""
    c, s = cs
    c, s = _bcast(c, x), _bcast(s, x)
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return num.bf16(np.concatenate([a * c - b * s, a * s + b * c], axis=-1))
