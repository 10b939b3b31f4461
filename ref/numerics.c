/* numerics.c — the number formats of the official graph (spec/numerics.md).
 *
 * Every function here is exact integer/bit manipulation or exact power-of-two arithmetic:
 * nothing depends on the FPU rounding mode except the explicit round-to-nearest-even
 * helpers below, which do not use the FPU either. Order: bf16, half, e4m3, e8m0, e2m1,
 * the power-of-two scale rules, then the block round trips that combine them.
 */
#include <math.h>
#include <string.h>
#include "numerics.h"

/* ---- bits ---- */

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Round a non-negative double that holds an integer-plus-fraction value to the nearest
 * integer, ties to even. Used on values that are exact multiples of powers of two, so the
 * fraction test is exact. */
static double rne_integer(double v)
{
    double r = floor(v);
    double f = v - r;
    if (f > 0.5 || (f == 0.5 && fmod(r, 2.0) != 0.0)) r += 1.0;
    return r;
}

/* ---- bfloat16 ---- */

/* [NUM-2] float -> bf16, round to nearest even on the top 16 bits.
 * x: scalar fp32. Pitfalls guarded: truncation instead of RNE (a one-ulp bias on every
 * rounding), a NaN whose payload lives only in the low 16 bits becoming Inf (we force the
 * quiet bit), overflow: values at or above the bf16 max + half ulp become Inf as RNE says. */
uint16_t bf16_from_float(float x)
{
    uint32_t u = f32_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)               /* NaN: keep sign, force quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    uint32_t bias = 0x7FFFu + ((u >> 16) & 1u);        /* ties to the even bf16 */
    return (uint16_t)((u + bias) >> 16);              /* carry into the exponent = RNE */
}

/* [NUM-2] bf16 -> float: exact (the bf16 bits are the top half of the fp32 bits). */
float bf16_to_float(uint16_t b)
{
    return f32_from_bits((uint32_t)b << 16);
}

/* [NUM-2] The one call that marks an official-mode bf16 rounding point. */
float round_bf16(float x)
{
    return bf16_to_float(bf16_from_float(x));
}

/* [NUM-2] x: [n] in place; rounds only in official mode (the exact mode keeps fp32). */
void round_bf16_n(float *x, int64_t n, dsv4_numerics num)
{
    if (num != DSV4_OFFICIAL) return;
    for (int64_t i = 0; i < n; i++) x[i] = round_bf16(x[i]);
}

/* ---- IEEE half (file I/O only) ---- */

/* [NUM-2] float -> binary16, RNE, subnormals, overflow to Inf, NaN kept quiet.
 * Pitfall guarded: flushing half subnormals (2^-24 .. 2^-14) to zero. */
uint16_t f16_from_float(float x)
{
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
    if (a == 0x7F800000u) return (uint16_t)(sign | 0x7C00u);
    double v = (double)f32_from_bits(a);               /* exact */
    if (v >= 65520.0) return (uint16_t)(sign | 0x7C00u); /* max 65504 + half ulp (16) */
    if (v < 0x1p-14) {                                  /* subnormal range: units of 2^-24 */
        double m = rne_integer(v * 0x1p24);             /* m = 1024 is the min normal: fine */
        return (uint16_t)(sign | (uint16_t)m);
    }
    int e;
    (void)frexp(v, &e);                                 /* v = f * 2^e, f in [0.5, 1) */
    e -= 1;                                             /* v in [2^e, 2^(e+1)) */
    double m = rne_integer(ldexp(v, 10 - e));           /* in [1024, 2048] */
    if (m >= 2048.0) { m = 1024.0; e += 1; }
    if (e > 15) return (uint16_t)(sign | 0x7C00u);
    return (uint16_t)(sign | (uint16_t)((e + 15) << 10) | (uint16_t)((int)m - 1024));
}

/* [NUM-2] binary16 -> float: exact. */
float f16_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    int e = (h >> 10) & 0x1F;
    uint32_t m = h & 0x3FFu;
    if (e == 0x1F) return f32_from_bits(sign | 0x7F800000u | (m << 13));
    if (e == 0) {
        float v = (float)m * 0x1p-24f;                  /* exact */
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((uint32_t)(e - 15 + 127) << 23) | (m << 13));
}

/* ---- FP8 e4m3fn ---- */

/* [NUM-3] float -> e4m3fn code. x: scalar fp32.
 * RNE on the grid {m * 2^-9 : m = 0..7} (subnormals) and {(8+m) * 2^(e-10)} (e = 1..15,
 * max 0x7E = 448); |x| > 448 saturates to 448 (the official graph clamps to +-448 before
 * the cast); NaN -> 0x7F; the sign is kept, so tiny negatives give -0 (0x80).
 * Pitfalls guarded: Inf/overflow codes (e4m3fn has none), subnormal flushing, ties going
 * away from zero, the 0x7F NaN code produced by rounding 464 upward. */
uint8_t e4m3_from_float(float x)
{
    if (isnan(x)) return 0x7F;
    uint8_t sign = signbit(x) ? 0x80 : 0x00;
    double a = fabs((double)x);
    if (a > 448.0) a = 448.0;                           /* saturation = the graph's clamp */
    if (a < 0x1p-6) {                                   /* subnormal range, units of 2^-9 */
        double m = rne_integer(a * 512.0);              /* m = 8 is the min normal 0x08 */
        return (uint8_t)(sign | (uint8_t)m);
    }
    int e;
    (void)frexp(a, &e);
    e -= 1;                                             /* a in [2^e, 2^(e+1)), e in [-6, 8] */
    double m = rne_integer(ldexp(a, 3 - e));            /* in [8, 16] */
    if (m >= 16.0) { m = 8.0; e += 1; }
    return (uint8_t)(sign | (uint8_t)((e + 7) << 3) | (uint8_t)((int)m - 8));
}

/* [NUM-3] e4m3fn code -> float, exact. 0x7F / 0xFF are NaN. */
float e4m3_to_float(uint8_t c)
{
    uint32_t sign = (uint32_t)(c & 0x80) << 24;
    int e = (c >> 3) & 0xF;
    uint32_t m = c & 0x7u;
    if ((c & 0x7F) == 0x7F) return f32_from_bits(sign | 0x7FC00000u);
    if (e == 0) {
        float v = (float)m * 0x1p-9f;                   /* exact */
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((uint32_t)(e - 7 + 127) << 23) | (m << 20));
}

/* ---- e8m0 scales ---- */

/* [NUM-4] e8m0 byte -> 2^(e-127), exact (2^-127 is an fp32 subnormal); 0xFF = NaN. */
float e8m0_to_float(uint8_t e)
{
    if (e == 0xFF) return f32_from_bits(0x7FC00000u);
    if (e == 0) return 0x1p-127f;
    return f32_from_bits((uint32_t)e << 23);
}

/* [NUM-4] |x| -> e8m0 of 2^ceil(log2 |x|) (exact for powers of two), clamped to
 * [2^-127, 2^127]; zero -> 0x00; NaN / Inf -> 0xFF. */
uint8_t e8m0_from_float(float x)
{
    if (isnan(x) || isinf(x)) return 0xFF;
    float a = fabsf(x);
    if (a == 0.0f) return 0x00;
    int k = ceil_log2_bits(a);
    if (k < -127) k = -127;
    if (k > 127) k = 127;
    return (uint8_t)(k + 127);
}

/* ---- FP4 e2m1 ---- */

static const float k_e2m1_grid[8] = { 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f };

/* [NUM-5] float -> e2m1 code (bit 3 = sign). Clamp to [-6, 6], then the nearest grid value,
 * ties to the even code: 0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4.
 * NaN -> 0 (callers check finiteness first). Pitfall guarded: ties to the larger magnitude
 * (5 -> 6, 2.5 -> 3) and uniform-grid rounding (the grid spacing is 0.5, 1, 2). */
uint8_t e2m1_from_float(float x)
{
    if (isnan(x)) return 0;
    uint8_t sign = signbit(x) ? 0x8 : 0x0;
    float a = fabsf(x);
    if (a > 6.0f) a = 6.0f;
    int best = 0;
    for (int i = 1; i < 8; i++) {
        /* grid values are exact, the distances below are exact differences of floats */
        double d_best = fabs((double)a - k_e2m1_grid[best]);
        double d_i = fabs((double)a - k_e2m1_grid[i]);
        if (d_i < d_best || (d_i == d_best && (i % 2) == 0)) best = i;
    }
    return (uint8_t)(sign | (uint8_t)best);
}

/* [NUM-5] e2m1 code (low 4 bits) -> float, exact. */
float e2m1_to_float(uint8_t code)
{
    float v = k_e2m1_grid[code & 0x7];
    return (code & 0x8) ? -v : v;
}

/* [NUM-5] codes: [n] (n even) -> bytes: [n/2], byte j = code[2j] | code[2j+1] << 4.
 * Pitfall guarded: high-nibble-first packing (swaps every pair of K elements). */
void e2m1_pack(const uint8_t *codes, int64_t n, uint8_t *bytes)
{
    for (int64_t j = 0; j < n / 2; j++)
        bytes[j] = (uint8_t)((codes[2 * j] & 0xF) | ((codes[2 * j + 1] & 0xF) << 4));
}

/* [NUM-5] bytes: [n/2] -> codes: [n]; the inverse of e2m1_pack. */
void e2m1_unpack(const uint8_t *bytes, int64_t n, uint8_t *codes)
{
    for (int64_t j = 0; j < n / 2; j++) {
        codes[2 * j] = bytes[j] & 0xF;
        codes[2 * j + 1] = (uint8_t)(bytes[j] >> 4);
    }
}

/* ---- power-of-two scale rules ---- */

/* [NUM-6] ceil(log2 v) from the IEEE bits of the fp32 v > 0: exponent - 127, plus 1 if any
 * mantissa bit is set (the kernels' fast_log2_ceil). Subnormals (never reached through the
 * scale rules, whose floors keep the argument normal) are handled mathematically: v =
 * man * 2^-149. Pitfall guarded: computing log2 in floating point, which is off by one at
 * exact powers of two after rounding. */
int ceil_log2_bits(float v)
{
    uint32_t u = f32_bits(v) & 0x7FFFFFFFu;
    int ex = (int)(u >> 23);
    uint32_t man = u & 0x7FFFFFu;
    if (ex == 0) {
        if (man == 0) return -150;                      /* v = 0: no power of two; below all */
        int k = 0;                                      /* ceil(log2(man)) */
        while (((uint32_t)1 << k) < man) k++;
        return -149 + k;
    }
    return ex - 127 + (man != 0 ? 1 : 0);
}

/* 2^k as fp32 for k in [-149, 127] (exact). */
static float pow2f(int k)
{
    return (float)ldexp(1.0, k);
}

/* [NUM-6] FP8 activation scale (scale_fmt = ue8m0): s = 2^ceil(log2(f32(max(amax, 1e-4) *
 * f32(1/448)))). amax: fp32 scalar >= 0. Both constants are the kernel's fp32 literals; the
 * product is one fp32 rounding. Pitfall guarded: s = amax/448 (the non-ue8m0 path), and
 * computing a/448 exactly (differs from the fp32 product at a few inputs near powers of two). */
float fp8_pow2_scale(float amax)
{
    const float floor_ = 1e-4f;
    const float inv = (float)(1.0 / 448.0);
    float a = amax > floor_ ? amax : floor_;
    float p = a * inv;
    return pow2f(ceil_log2_bits(p));
}

/* [NUM-6] FP4 block scale: s = 2^ceil(log2(f32(max(amax, 6*2^-126) * f32(1/6)))). */
float fp4_pow2_scale(float amax)
{
    const float floor_ = 6.0f * 0x1p-126f;              /* exact in fp32 */
    const float inv = (float)(1.0 / 6.0);
    float a = amax > floor_ ? amax : floor_;
    float p = a * inv;
    return pow2f(ceil_log2_bits(p));
}

/* ---- block simulations ---- */

/* max |x| over x: [n]; NaN ignored (callers check finiteness where it matters). */
static float block_amax(const float *x, int64_t n)
{
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > m) m = a;
    }
    return m;
}

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* [NUM-7] x: [n] (bf16 values as floats) in place, blocks of `block` consecutive values
 * (a trailing partial block, which the official graph never has, is treated as its own
 * block). Per block: s = fp8_pow2_scale(amax), x <- bf16(f32(e4m3(clamp(x/s, +-448))) * s).
 * x/s is exact (s is a power of two). Pitfalls guarded: 64-wide vs 128-wide blocks are the
 * caller's choice; a non-pow2 scale; skipping the clamp (e4m3fn has no Inf). */
void fp8_sim_block(float *x, int64_t n, int block)
{
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        int64_t len = n - b0 < block ? n - b0 : block;
        float s = fp8_pow2_scale(block_amax(x + b0, len));
        for (int64_t i = 0; i < len; i++) {
            uint8_t q = e4m3_from_float(clampf(x[b0 + i] / s, -448.0f, 448.0f));
            x[b0 + i] = round_bf16(e4m3_to_float(q) * s);
        }
    }
}

/* [NUM-7] Same with FP4 e2m1 (block 32 in the V4 indexer): s = fp4_pow2_scale(amax),
 * x <- bf16(e2m1(clamp(x/s, +-6)) * s). */
void fp4_sim_block(float *x, int64_t n, int block)
{
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        int64_t len = n - b0 < block ? n - b0 : block;
        float s = fp4_pow2_scale(block_amax(x + b0, len));
        for (int64_t i = 0; i < len; i++) {
            uint8_t q = e2m1_from_float(clampf(x[b0 + i] / s, -6.0f, 6.0f));
            x[b0 + i] = round_bf16(e2m1_to_float(q) * s);
        }
    }
}

/* [NUM-7] Non-in-place act_quant of a GEMM input. x: [n] -> codes: [n] e4m3,
 * scales: [ceil(n/block)] powers of two (as float). */
void fp8_act_quant(const float *x, int64_t n, int block, uint8_t *codes, float *scales)
{
    for (int64_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        int64_t len = n - b0 < block ? n - b0 : block;
        float s = fp8_pow2_scale(block_amax(x + b0, len));
        scales[bi] = s;
        for (int64_t i = 0; i < len; i++)
            codes[b0 + i] = e4m3_from_float(clampf(x[b0 + i] / s, -448.0f, 448.0f));
    }
}

/* ---- PyTorch's CPU order of a float row sum ---- */

static int ceil_log2_i64(int64_t x)
{
    int k = 0;
    while (((int64_t)1 << k) < x) k++;
    return k;
}

static float square_as(float x, int round_sq_bf16)
{
    float q = x * x;
    return round_sq_bf16 ? round_bf16(q) : q;
}

/* [NUM-8] x: [n] -> sum of squares in PyTorch's CPU reduction order (fp32 additions):
 * vectorized_inner_sum over Vectorized<float> (L = 8 lanes): the n/8 full vectors go through
 * row_sum (ILP = 4 accumulator vectors fed round-robin, multi_row_sum's cascade of 4 levels
 * of 2^max(4, ceil(log2(rows))/4) rows), the leftover vectors into accumulator 0, accumulators
 * 1..3 folded into 0; then a scalar accumulator starts at 0, adds the n mod 8 tail elements,
 * then the 8 lanes of the vector accumulator in order. */
float torch_cpu_sum_squares(const float *x, int64_t n, int round_sq_bf16)
{
    enum { L = 8, ILP = 4, LEVELS = 4 };
    int64_t nvec = n / L, rows = nvec / ILP;   /* a "row" = ILP consecutive vectors */
    float acc[LEVELS][ILP][L];
    for (int a = 0; a < LEVELS; a++)
        for (int k = 0; k < ILP; k++)
            for (int c = 0; c < L; c++) acc[a][k][c] = 0.0f;
    int level_power = ceil_log2_i64(rows) / LEVELS;
    if (level_power < 4) level_power = 4;
    int64_t level_step = (int64_t)1 << level_power, level_mask = level_step - 1;
    int64_t i = 0;
    while (i + level_step <= rows) {
        for (int64_t j = 0; j < level_step; j++, i++)
            for (int k = 0; k < ILP; k++)
                for (int c = 0; c < L; c++) acc[0][k][c] += square_as(x[(i * ILP + k) * L + c], round_sq_bf16);
        for (int lv = 1; lv < LEVELS; lv++) {
            for (int k = 0; k < ILP; k++)
                for (int c = 0; c < L; c++) { acc[lv][k][c] += acc[lv - 1][k][c]; acc[lv - 1][k][c] = 0.0f; }
            if ((i & (level_mask << (lv * level_power))) != 0) break;
        }
    }
    for (; i < rows; i++)
        for (int k = 0; k < ILP; k++)
            for (int c = 0; c < L; c++) acc[0][k][c] += square_as(x[(i * ILP + k) * L + c], round_sq_bf16);
    for (int lv = 1; lv < LEVELS; lv++)
        for (int k = 0; k < ILP; k++)
            for (int c = 0; c < L; c++) acc[0][k][c] += acc[lv][k][c];
    for (int64_t v = rows * ILP; v < nvec; v++)
        for (int c = 0; c < L; c++) acc[0][0][c] += square_as(x[v * L + c], round_sq_bf16);
    for (int k = 1; k < ILP; k++)
        for (int c = 0; c < L; c++) acc[0][0][c] += acc[0][k][c];
    float total = 0.0f;
    for (int64_t t = nvec * L; t < n; t++) total += square_as(x[t], round_sq_bf16);
    for (int c = 0; c < L; c++) total += acc[0][0][c];
    return total;
}
