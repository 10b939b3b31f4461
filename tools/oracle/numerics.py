"""Numerics of the oracle (spec: v4-architecture.md §3, mla-dsa.md §1), written in numpy.

Every activation of the oracle is a float64 array.  The two modes differ only in which of the
calls below are identities:

  exact     float64 everywhere: no bf16/f32 rounding, no FP8/FP4 simulation, exact Hadamard.
  official  the official graph's rounding points: bf16 round-to-nearest-even (RNE) where the
            official code holds a bf16 tensor, f32 where it holds f32, FP8 e4m3 / FP4 e2m1
            simulation with power-of-two (ue8m0) block scales where it quantizes.

Rounding is done directly from float64 to the target format with one RNE step (the
official graph computes in f32 first; the difference is a last-bit effect, see README).
"""
import numpy as np

# ---- generic RNE rounding to a binary floating-point format -------------------------------


def round_float(x, mant_bits, emin, max_finite=None):
    """RNE of float64 x to a binary format with `mant_bits` stored mantissa bits, minimum
    normal exponent `emin` (subnormals below 2^emin with quantum 2^(emin-mant_bits)).
    Values above max_finite (after rounding) become +-inf.  NaN/inf pass through.
    [O-NUM-1] (v4-architecture.md §3 conventions: bf16(x), f32(x) are RNE)."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    xf = np.where(finite, x, 0.0)
    _, e = np.frexp(xf)              # xf = m * 2^e, 0.5 <= |m| < 1  =>  floor(log2|x|) = e - 1
    e = np.maximum(e - 1, emin)
    q = np.ldexp(1.0, e - mant_bits)   # the quantum (ulp) at x's binade
    y = np.round(xf / q) * q           # np.round: round half to even; x/q is exact (power of 2)
    if max_finite is not None:
        y = np.where(np.abs(y) > max_finite, np.copysign(np.inf, y), y)
    return np.where(finite, y, x)


BF16_MAX = float.fromhex("0x1.fep127")
F32_MAX = float(np.finfo(np.float32).max)


def round_bf16(x):
    """bf16(x): RNE to bfloat16 (8 significant bits, f32 exponent range). [O-NUM-1]"""
    return round_float(x, 7, -126, BF16_MAX)


def round_f32(x):
    """f32(x): RNE to binary32. [O-NUM-1]"""
    x = np.asarray(x, dtype=np.float64)
    return x.astype(np.float32).astype(np.float64)   # IEEE conversion is RNE


# ---- FP8 e4m3 (E4M3FN) and FP4 e2m1 ---------------------------------------------------------

E4M3_MAX = 448.0
E2M1_MAX = 6.0


def round_e4m3(x):
    """e4m3(x): RNE to FP8 E4M3FN after clamping to +-448 (3 mantissa bits, emin -6,
    subnormal quantum 2^-9). [O-NUM-2] (mla-dsa.md §0 conventions; v4 §3.2)."""
    return round_float(np.clip(x, -E4M3_MAX, E4M3_MAX), 3, -6)


def decode_e4m3(codes):
    """E4M3FN byte codes -> float64 (0x7F/0xFF = NaN). [O-NUM-2]"""
    codes = np.asarray(codes, dtype=np.int64)
    s = np.where(codes & 0x80, -1.0, 1.0)
    e = (codes >> 3) & 0xF
    m = codes & 0x7
    v = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1.0 + m / 8.0) * np.exp2(e - 7.0)) * s
    return np.where((e == 0xF) & (m == 0x7), np.nan, v)


def encode_e4m3(x):
    """float -> E4M3FN byte codes, RNE with saturation to +-448 (NaN -> 0x7F). [O-NUM-2]"""
    x = np.asarray(x, dtype=np.float64)
    r = round_e4m3(np.where(np.isnan(x), 0.0, x))
    sign = np.signbit(r).astype(np.int64) << 7
    a = np.abs(r)
    _, e = np.frexp(a)
    e = e - 1
    sub = a < 2.0 ** -6
    m_sub = np.round(a / 2.0 ** -9).astype(np.int64)
    ee = np.clip(e + 7, 1, 15)
    m_norm = np.round((a / np.ldexp(1.0, e) - 1.0) * 8).astype(np.int64)
    code = np.where(sub, m_sub, (ee << 3) | m_norm)
    code = code | sign
    return np.where(np.isnan(x), 0x7F, code).astype(np.uint8)


E2M1_GRID = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0.0, -.5, -1, -1.5, -2, -3, -4, -6])


def round_e2m1(x):
    """e2m1(x): RNE to FP4 E2M1 after clamping to +-6 (1 mantissa bit, emin 0, subnormal 0.5):
    ties go to the even code, 0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4. [O-NUM-3]"""
    return round_float(np.clip(x, -E2M1_MAX, E2M1_MAX), 1, 0)


def decode_e2m1_packed(packed):
    """Packed FP4 bytes [.., K/2] (low nibble = element 2j, high = 2j+1) -> float64 [.., K]. [O-NUM-3]"""
    b = np.asarray(packed).astype(np.int64) & 0xFF
    lo, hi = b & 0xF, b >> 4
    out = np.empty(b.shape[:-1] + (2 * b.shape[-1],))
    out[..., 0::2] = E2M1_GRID[lo]
    out[..., 1::2] = E2M1_GRID[hi]
    return out


# ---- power-of-two (ue8m0) scales ------------------------------------------------------------


def pow2_ceil_scale(amax, inv_max):
    """s = 2^ceil(log2(f32(f32(amax) * f32(inv_max)))), the ceil taken on the f32 bits
    (exponent - 127, +1 if any mantissa bit is set).  [O-NUM-4] (v4 §3.2, §3.3; mla-dsa §1.2)"""
    p = (np.asarray(amax, dtype=np.float32) * np.float32(inv_max)).astype(np.float32)
    bits = p.view(np.uint32).astype(np.int64)
    exp = ((bits >> 23) & 0xFF) - 127 + ((bits & 0x7FFFFF) != 0)
    return np.ldexp(1.0, exp)


def _blocks(x, block):
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] % block:
        raise ValueError(f"last dim {x.shape[-1]} is not a multiple of the block size {block}")
    return x.reshape(x.shape[:-1] + (x.shape[-1] // block, block))


def act_quant(x, block=128):
    """FP8 activation quantization (official act_quant with scale_fmt ue8m0, non-in-place):
    per row and `block`-wide block, a = max(max|x|, 1e-4), s = pow2_ceil_scale(a, 1/448),
    q = e4m3(clamp(x/s)).  Returns (q values as float64 [.., K], s [.., K/block]). [O-NUM-5]"""
    xb = _blocks(x, block)
    amax = np.maximum(np.abs(xb).max(axis=-1), 1e-4)
    s = pow2_ceil_scale(amax, 1.0 / 448.0)
    q = round_e4m3(xb / s[..., None])
    return q.reshape(np.shape(x)), s


def fp8_sim(x, block):
    """In-place FP8 simulation (current kernel.py, QAT): x <- bf16(e4m3(x/s) * s). [O-NUM-6]"""
    q, s = act_quant(x, block)
    qb = _blocks(q, block)
    return round_bf16((qb * s[..., None]).reshape(np.shape(x)))


def fp4_sim(x, block=32):
    """In-place FP4 simulation: a = max(max|x|, 6*2^-126), s = pow2_ceil_scale(a, 1/6),
    x <- bf16(e2m1(clamp(x/s, -6, 6)) * s). [O-NUM-7] (v4 §3.3)"""
    xb = _blocks(x, block)
    amax = np.maximum(np.abs(xb).max(axis=-1), 6 * 2.0 ** -126)
    s = pow2_ceil_scale(amax, 1.0 / 6.0)
    q = round_e2m1(xb / s[..., None])
    return round_bf16((q * s[..., None]).reshape(np.shape(x)))


# ---- Hadamard -------------------------------------------------------------------------------


def hadamard_matrix(n):
    """Unnormalized Sylvester-Hadamard matrix H[i][j] = (-1)^popcount(i & j). [O-NUM-8]"""
    i = np.arange(n)
    pc = np.zeros((n, n), dtype=np.int64)
    a = i[:, None] & i[None, :]
    while np.any(a):
        pc += a & 1
        a >>= 1
    return np.where(pc & 1, -1.0, 1.0)


_HAD = {}


def hadamard(x):
    """rot(x) = n^-1/2 * H_n x over the last dim (orthogonal). [O-NUM-8] (v4 §3.5, mla-dsa §1.6)"""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    if n not in _HAD:
        _HAD[n] = hadamard_matrix(n) * (1.0 / np.sqrt(n))
    return x @ _HAD[n].T


# ---- the mode object ------------------------------------------------------------------------


class Numerics:
    """Which rounding points are live.  `official`: the official graph; `exact`: float64.
    Every module calls these at exactly the point the official graph rounds."""

    def __init__(self, mode):
        if mode not in ("exact", "official"):
            raise ValueError(f"numerics mode must be exact or official, not {mode!r}")
        self.mode = mode
        self.official = mode == "official"

    def bf16(self, x):
        return round_bf16(x) if self.official else np.asarray(x, dtype=np.float64)

    def f32(self, x):
        return round_f32(x) if self.official else np.asarray(x, dtype=np.float64)

    def fp8_sim(self, x, block):
        return fp8_sim(x, block) if self.official else np.asarray(x, dtype=np.float64)

    def fp4_sim(self, x, block=32):
        return fp4_sim(x, block) if self.official else np.asarray(x, dtype=np.float64)

    def hadamard(self, x):
        """bf16(n^-1/2 H x) in official mode (f32 butterflies, one bf16 rounding)."""
        return self.bf16(hadamard(x))

    def const32(self, c):
        """A Python double constant as the official graph uses it (f32 opmath)."""
        return float(np.float32(c)) if self.official else float(c)


EXACT = Numerics("exact")
OFFICIAL = Numerics("official")
