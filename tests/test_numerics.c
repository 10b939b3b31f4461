/* test_numerics.c — the number formats of the official graph (spec/numerics.md).
 *
 * Every expected value is computed here independently of ref/numerics.c: from the format
 * definitions with double arithmetic (exact for these formats), ldexp and nextafter.
 */
#include <float.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "testutil.h"
#include "numerics.h"
#include "safetensors.h"

static uint32_t fbits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static float bitsf(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* ---- bf16 ---- */

/* Independent bf16 value of a 16-bit pattern from its fields (sign, 8-bit exponent,
 * 7-bit mantissa). */
static double bf16_value_ref(uint16_t b)
{
    int s = b >> 15, e = (b >> 7) & 0xFF, m = b & 0x7F;
    double v;
    if (e == 0xFF) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)m, -126 - 7);
    else v = ldexp(128.0 + m, e - 127 - 7);
    return s ? -v : v;
}

/* Independent RNE of a finite float to bf16: the two bf16 neighbours by truncation of
 * the magnitude, distances in double (exact), ties to the even pattern, overflow per
 * RNE (the neighbour above the max finite bf16 is treated as 2^128). */
static uint16_t bf16_rne_ref(float x)
{
    uint32_t u = fbits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t mag = u & 0x7FFFFFFFu;
    uint16_t lo = (uint16_t)(mag >> 16), hi = (uint16_t)(lo + 1);
    double a = fabs((double)x);
    double vlo = bf16_value_ref(lo);
    double vhi = hi == 0x7F80 ? ldexp(1.0, 128) : bf16_value_ref(hi);
    double dlo = a - vlo, dhi = vhi - a;
    uint16_t pick = (dlo < dhi || (dlo == dhi && (lo & 1) == 0)) ? lo : hi;
    return (uint16_t)(sign | pick);
}

/* All 65536 patterns decode to the value of their fields and re-encode to themselves
 * (NaNs: stay NaN, keep the sign, come back quiet).
 * Traps: a decode that is not the top-half embedding; an encode that is not the identity
 * on representable values. Likely bug: wrong shift, or rounding applied to exact values. */
static void test_bf16_all_patterns(void **state)
{
    (void)state;
    for (uint32_t p = 0; p < 65536; p++) {
        uint16_t b = (uint16_t)p;
        float v = bf16_to_float(b);
        double want = bf16_value_ref(b);
        if (isnan(want)) {
            if (!isnan(v)) fail_msg("bf16 0x%04x decodes to %g, expected NaN", p, v);
            uint16_t back = bf16_from_float(v);
            if ((back & 0x7FC0) != 0x7FC0 || (back & 0x8000) != (b & 0x8000))
                fail_msg("bf16 NaN 0x%04x re-encodes to 0x%04x: expected a quiet NaN with the "
                         "same sign (likely bug: NaN rounded like a number, giving Inf)", p, back);
            continue;
        }
        if ((double)v != want)
            fail_msg("bf16 0x%04x decodes to %.9g, expected %.9g", p, v, want);
        uint16_t back = bf16_from_float(v);
        if (back != b)
            fail_msg("bf16 0x%04x -> %.9g -> 0x%04x: not a round trip (likely bug: rounding "
                     "moves exact values)", p, v, back);
    }
}

/* RNE against the independent reference: for every bf16 pattern, the exact midpoint to
 * the next pattern (must go to the even one), one fp32 ulp below and above it, and a
 * few random low halves; plus 2^20 random fp32 bit patterns.
 * Trap: truncation (round toward zero), ties away from zero, overflow handled by
 * saturation. Likely bug: missing the +0x7FFF+lsb bias or the lsb tie term. */
static void test_bf16_rne(void **state)
{
    (void)state;
    test_rng rng = { 0x9E3779B97F4A7C15ULL };
    long checked = 0;
    for (uint32_t p = 0; p < 65536; p++) {
        uint32_t base = p << 16;
        if (((base >> 23) & 0xFF) == 0xFF) continue;     /* Inf/NaN rows: tested apart */
        uint32_t lows[6] = { 0x8000u, 0x7FFFu, 0x8001u, 0x0001u, 0xFFFFu,
                             (uint32_t)(test_rng_next(&rng) & 0xFFFFu) };
        for (int j = 0; j < 6; j++) {
            float x = bitsf(base | lows[j]);
            uint16_t got = bf16_from_float(x), want = bf16_rne_ref(x);
            if (got != want)
                fail_msg("bf16_from_float(%.9g = 0x%08x) = 0x%04x, expected 0x%04x "
                         "(likely bug: %s)", x, base | lows[j], got, want,
                         lows[j] == 0x8000u ? "tie not rounded to even"
                                            : "not round-to-nearest");
            checked++;
        }
    }
    for (int i = 0; i < (1 << 20); i++) {
        uint32_t u = (uint32_t)(test_rng_next(&rng) >> 32);
        if (((u >> 23) & 0xFF) == 0xFF) continue;
        float x = bitsf(u);
        uint16_t got = bf16_from_float(x), want = bf16_rne_ref(x);
        if (got != want)
            fail_msg("bf16_from_float(0x%08x) = 0x%04x, expected 0x%04x", u, got, want);
        checked++;
    }
    assert_true(checked > 1000000);
}

/* Specials: +-Inf stay Inf, NaN (including a NaN whose payload is only in the low 16 bits)
 * stays NaN, overflow: the largest float rounds up to Inf, max bf16 stays, and the value
 * just below the overflow midpoint stays finite.
 * Trap: NaN with a low-only payload turning into Inf under the RNE carry. */
static void test_bf16_specials(void **state)
{
    (void)state;
    assert_int_equal(bf16_from_float(INFINITY), 0x7F80);
    assert_int_equal(bf16_from_float(-INFINITY), 0xFF80);
    uint16_t n1 = bf16_from_float(bitsf(0x7F800001u));   /* signalling NaN, low payload */
    assert_true((n1 & 0x7FC0) == 0x7FC0 && !(n1 & 0x8000));
    uint16_t n2 = bf16_from_float(bitsf(0xFFFFFFFFu));
    assert_true((n2 & 0x7FC0) == 0x7FC0 && (n2 & 0x8000));
    assert_true(isnan(round_bf16(NAN)));
    assert_int_equal(bf16_from_float(FLT_MAX), 0x7F80);
    assert_int_equal(bf16_from_float(bitsf(0x7F7F0000u)), 0x7F7F);          /* max bf16 */
    assert_int_equal(bf16_from_float(bitsf(0x7F7F7FFFu)), 0x7F7F);          /* below mid */
    assert_int_equal(bf16_from_float(bitsf(0x7F7F8000u)), 0x7F80);          /* tie: odd -> up = Inf */
    assert_int_equal(bf16_from_float(-0.0f), 0x8000);
    assert_int_equal(bf16_from_float(bitsf(0x00008000u)), 0x0000);          /* subnormal tie -> even 0 */
    assert_int_equal(bf16_from_float(bitsf(0x00018000u)), 0x0002);          /* subnormal tie -> even 2 */
    float x[3] = { 1.00390625f, 3.0f, 1.0f + 0x1p-20f };
    round_bf16_n(x, 3, DSV4_EXACT);
    assert_true(x[2] == 1.0f + 0x1p-20f);                                  /* exact mode: no-op */
    round_bf16_n(x, 3, DSV4_OFFICIAL);
    assert_true(x[0] == 1.0f && x[1] == 3.0f && x[2] == 1.0f);             /* 1+2^-8 is a tie -> 1 */
}

/* ---- IEEE half ---- */

/* All 65536 half patterns decode to their field value and (non-NaN) re-encode to
 * themselves; RNE ties and subnormal ties; overflow to Inf at 65520.
 * Trap: subnormal flushing. Likely bug: the e == 0 branch. */
static void test_f16(void **state)
{
    (void)state;
    for (uint32_t p = 0; p < 65536; p++) {
        uint16_t h = (uint16_t)p;
        int s = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
        double want = e == 0x1F ? (m ? NAN : INFINITY)
                    : e == 0 ? ldexp((double)m, -24) : ldexp(1024.0 + m, e - 25);
        if (s) want = -want;
        float v = f16_to_float(h);
        if (isnan(want)) { assert_true(isnan(v)); continue; }
        if ((double)v != want) fail_msg("f16 0x%04x decodes to %g, expected %g", p, v, want);
        if (f16_from_float(v) != h) fail_msg("f16 0x%04x does not round trip", p);
    }
    assert_int_equal(f16_from_float(1.0f + 0x1p-11f), 0x3C00);   /* tie -> even */
    assert_int_equal(f16_from_float(1.0f + 3 * 0x1p-11f), 0x3C02);
    assert_int_equal(f16_from_float(0x1p-25f), 0x0000);          /* subnormal tie -> 0 */
    assert_int_equal(f16_from_float(3 * 0x1p-25f), 0x0002);
    assert_int_equal(f16_from_float(65504.0f), 0x7BFF);
    assert_int_equal(f16_from_float(65519.0f), 0x7BFF);
    assert_int_equal(f16_from_float(65520.0f), 0x7C00);
    assert_true(isnan(f16_to_float(f16_from_float(NAN))));
}

/* ---- e4m3fn ---- */

static double e4m3_value_ref(uint8_t c)
{
    int s = c >> 7, e = (c >> 3) & 0xF, m = c & 7;
    double v;
    if ((c & 0x7F) == 0x7F) return NAN;
    v = e == 0 ? (m / 8.0) * ldexp(1.0, -6) : (1.0 + m / 8.0) * ldexp(1.0, e - 7);
    return s ? -v : v;
}

/* All 256 codes against the formula (bias 7, subnormals m/8 * 2^-6, 0x7F/0xFF NaN, max
 * 448 = 0x7E) and re-encoding to themselves (-0 = 0x80 included).
 * Trap: e4m3 (with Inf, bias 8 "fnuz") instead of e4m3fn. */
static void test_e4m3_all_codes(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        double want = e4m3_value_ref((uint8_t)c);
        float v = e4m3_to_float((uint8_t)c);
        if (isnan(want)) {
            assert_true(isnan(v));
            assert_int_equal(e4m3_from_float(v) & 0x7F, 0x7F);
            continue;
        }
        if ((double)v != want) fail_msg("e4m3 0x%02x decodes to %g, expected %g", c, v, want);
        uint8_t back = e4m3_from_float(v);
        if (back != c) fail_msg("e4m3 0x%02x (%g) re-encodes to 0x%02x", c, v, back);
    }
    assert_true(e4m3_to_float(0x7E) == 448.0f);
    assert_true(e4m3_to_float(0x01) == 0x1p-9f);
    assert_true(e4m3_to_float(0x08) == 0x1p-6f);
}

/* Every midpoint between adjacent non-negative e4m3 values rounds to the even code (the
 * codes' lsb is the mantissa lsb, also across the subnormal/normal and binade borders),
 * and one fp32 ulp either side goes to the nearer value. Same for negatives.
 * Trap: ties away from zero; rounding on the wrong grid spacing in the subnormal range.
 * Likely bug: round() instead of rint-to-even, or a float/half ulp confusion. */
static void test_e4m3_midpoints(void **state)
{
    (void)state;
    for (int c = 0; c < 0x7E; c++) {
        double a = e4m3_value_ref((uint8_t)c), b = e4m3_value_ref((uint8_t)(c + 1));
        float mid = (float)((a + b) / 2.0);                /* exact: a few bits */
        assert_true((double)mid == (a + b) / 2.0);
        int even = (c % 2 == 0) ? c : c + 1;
        for (int sgn = 0; sgn < 2; sgn++) {
            float m = sgn ? -mid : mid;
            uint8_t sb = sgn ? 0x80 : 0;
            uint8_t got = e4m3_from_float(m);
            if (got != (uint8_t)(sb | even))
                fail_msg("e4m3_from_float(%g) = 0x%02x, expected the even code 0x%02x "
                         "(likely bug: ties not to even)", m, got, sb | even);
            float below = nextafterf(mid, 0.0f), above = nextafterf(mid, INFINITY);
            assert_int_equal(e4m3_from_float(sgn ? -below : below), sb | c);
            assert_int_equal(e4m3_from_float(sgn ? -above : above), sb | (c + 1));
        }
    }
}

/* Saturation: (448, 464] and everything above, Inf included, gives +-448 (0x7E / 0xFE),
 * never the NaN code 0x7F (464 is the midpoint 448..480 a naive rounder sends up);
 * NaN -> 0x7F; below half the smallest subnormal -> +-0; 2^-10 is a tie -> 0.
 * Trap: overflow to NaN instead of the graph's clamp. */
static void test_e4m3_saturation_and_small(void **state)
{
    (void)state;
    float big[] = { 448.0f, 449.0f, 463.99f, 464.0f, 480.0f, 1e30f, INFINITY };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        assert_int_equal(e4m3_from_float(big[i]), 0x7E);
        assert_int_equal(e4m3_from_float(-big[i]), 0xFE);
    }
    assert_int_equal(e4m3_from_float(NAN), 0x7F);
    assert_int_equal(e4m3_from_float(0x1p-10f), 0x00);
    assert_int_equal(e4m3_from_float(nextafterf(0x1p-10f, 1.0f)), 0x01);
    assert_int_equal(e4m3_from_float(-0x1p-12f), 0x80);
    assert_int_equal(e4m3_from_float(3 * 0x1p-10f), 0x02);        /* tie 1 vs 2 -> 2 */
    assert_int_equal(e4m3_from_float(15 * 0x1p-10f), 0x08);       /* tie 7 vs 8 -> 8 = 2^-6 */
}

/* ---- e8m0 ---- */

/* All 256 bytes decode to 2^(e-127) (0xFF NaN); powers of two encode exactly; others
 * encode to the power of two above.
 * Trap: bias 128, or 0x00 read as zero. */
static void test_e8m0(void **state)
{
    (void)state;
    for (int e = 0; e < 255; e++) {
        float v = e8m0_to_float((uint8_t)e);
        if ((double)v != ldexp(1.0, e - 127)) fail_msg("e8m0 0x%02x decodes to %g", e, v);
        assert_int_equal(e8m0_from_float(v), e);
        if (e > 0 && e < 254) {
            assert_int_equal(e8m0_from_float(v * 1.5f), e + 1);
            assert_int_equal(e8m0_from_float(nextafterf(v, INFINITY)), e + 1);
            assert_int_equal(e8m0_from_float(nextafterf(v, 0.0f)), e);
        }
    }
    assert_true(isnan(e8m0_to_float(0xFF)));
    assert_int_equal(e8m0_from_float(NAN), 0xFF);
}

/* ---- e2m1 ---- */

/* All 16 codes, every tie listed in the header, clamping, pack/unpack nibble order.
 * Traps: ties to the larger magnitude (5 -> 6, 2.5 -> 3); high-nibble-first packing.
 * Likely bug: a uniform-grid rounder or `bytes[j] = c[2j] << 4 | c[2j+1]`. */
static void test_e2m1(void **state)
{
    (void)state;
    const float grid[16] = { 0, .5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -.5f, -1, -1.5f, -2, -3, -4, -6 };
    for (int c = 0; c < 16; c++) {
        assert_true(e2m1_to_float((uint8_t)c) == grid[c]);
        assert_true(signbit(e2m1_to_float((uint8_t)c)) == signbit(grid[c]));
        assert_int_equal(e2m1_from_float(grid[c]), c);
    }
    const float ties[7] = { 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f };
    const int want[7] = { 0, 2, 2, 4, 4, 6, 6 };       /* codes of 0, 1, 1, 2, 2, 4, 4 */
    for (int i = 0; i < 7; i++) {
        assert_int_equal(e2m1_from_float(ties[i]), want[i]);
        assert_int_equal(e2m1_from_float(-ties[i]), 8 | want[i]);
    }
    /* just above each tie goes up, just below goes down */
    const int up[7] = { 1, 2, 3, 4, 5, 6, 7 }, down[7] = { 0, 1, 2, 3, 4, 5, 6 };
    for (int i = 0; i < 7; i++) {
        assert_int_equal(e2m1_from_float(nextafterf(ties[i], 100.0f)), up[i]);
        assert_int_equal(e2m1_from_float(nextafterf(ties[i], -100.0f)), down[i]);
    }
    assert_int_equal(e2m1_from_float(7.0f), 7);
    assert_int_equal(e2m1_from_float(1e9f), 7);
    assert_int_equal(e2m1_from_float(-100.0f), 15);

    uint8_t codes[6] = { 0x1, 0xA, 0xF, 0x0, 0x7, 0x8 }, bytes[3], back[6];
    e2m1_pack(codes, 6, bytes);
    assert_int_equal(bytes[0], 0xA1);
    assert_int_equal(bytes[1], 0x0F);
    assert_int_equal(bytes[2], 0x87);
    e2m1_unpack(bytes, 6, back);
    assert_memory_equal(codes, back, 6);
}

/* ---- power-of-two scale rules ---- */

/* ceil(log2) on bits vs frexp: exact powers of two and their neighbours.
 * Trap: log2f + ceilf (rounding makes log2(2^k * (1+2^-23)) == k). */
static void test_ceil_log2_bits(void **state)
{
    (void)state;
    for (int k = -126; k <= 127; k++) {
        float p = (float)ldexp(1.0, k);
        assert_int_equal(ceil_log2_bits(p), k);
        assert_int_equal(ceil_log2_bits(nextafterf(p, INFINITY)), k + 1);
        if (k > -126) assert_int_equal(ceil_log2_bits(nextafterf(p, 0.0f)), k);
    }
    assert_int_equal(ceil_log2_bits(0x1p-149f), -149);
    assert_int_equal(ceil_log2_bits(3 * 0x1p-149f), -147);
}

/* Independent: smallest power of two >= v via frexp. */
static float pow2_ceil_ref(float v)
{
    int e;
    double f = frexp((double)v, &e);                      /* v = f 2^e, f in [0.5, 1) */
    return (float)(f == 0.5 ? ldexp(1.0, e - 1) : ldexp(1.0, e));
}

/* FP8 scale: amax = 448 * 2^k gives exactly 2^k, the next float above gives 2^(k+1);
 * amax below 1e-4 is floored (s = 2^-22); every positive bf16 amax against the reference
 * with the fp32 product f32(a * f32(1/448)).
 * Traps: s = amax/448 (non-ue8m0), floor(log2) instead of ceil, missing 1e-4 floor
 * (s = 0 -> division by zero on an all-zero block). */
static void test_fp8_scale(void **state)
{
    (void)state;
    for (int k = -20; k <= 20; k++) {
        float a = (float)ldexp(448.0, k);
        float s = fp8_pow2_scale(a);
        if ((double)s != ldexp(1.0, k))
            fail_msg("fp8_pow2_scale(448*2^%d) = %g, expected 2^%d", k, s, k);
        float s2 = fp8_pow2_scale(nextafterf(a, INFINITY));
        if ((double)s2 != ldexp(1.0, k + 1))
            fail_msg("fp8_pow2_scale(next above 448*2^%d) = %g, expected 2^%d", k, s2, k + 1);
    }
    assert_true(fp8_pow2_scale(0.0f) == 0x1p-22f);       /* 1e-4/448 = 2.2e-7 -> 2^-22 */
    assert_true(fp8_pow2_scale(1e-6f) == 0x1p-22f);
    /* every positive finite bf16 amax, against the frexp reference of the fp32 product,
     * and against the real-number rule (smallest k with a <= 448 * 2^k, exact in double):
     * the fp32 product never changes the result for bf16 amax in [2^-14, 2^14] */
    const float inv = (float)(1.0 / 448.0);
    int real_rule_differs = 0;
    for (uint32_t p = 1; p < 0x7F80; p++) {
        float a = bf16_to_float((uint16_t)p);
        float af = a > 1e-4f ? a : 1e-4f;
        float want = pow2_ceil_ref(af * inv);
        float got = fp8_pow2_scale(a);
        if (got != want) fail_msg("fp8_pow2_scale(%.9g) = %g, expected %g", a, got, want);
        assert_true(a / got <= 448.0f);                  /* the block maximum fits */
        int k = -40;
        while ((double)af > 448.0 * ldexp(1.0, k)) k++;
        if ((double)got != ldexp(1.0, k)) {
            real_rule_differs++;
            if (a >= 0x1p-14f && a <= 0x1p14f)
                fail_msg("fp8_pow2_scale(%.9g) = %g but the real-number rule gives 2^%d", a, got, k);
        }
    }
    printf("  fp8 scale: fp32-product rule vs real-number rule differ at %d of 32639 bf16 "
           "amax values (none in [2^-14, 2^14])\n", real_rule_differs);
}

/* FP4 scale: amax = 6 * 2^k -> 2^k, next above -> 2^(k+1), floor 6 * 2^-126 -> 2^-126;
 * every positive bf16 amax against the frexp reference. Trap: the FP8 floor / max reused. */
static void test_fp4_scale(void **state)
{
    (void)state;
    for (int k = -30; k <= 30; k++) {
        float a = (float)ldexp(6.0, k);
        assert_true((double)fp4_pow2_scale(a) == ldexp(1.0, k));
        assert_true((double)fp4_pow2_scale(nextafterf(a, INFINITY)) == ldexp(1.0, k + 1));
    }
    assert_true(fp4_pow2_scale(0.0f) == 0x1p-126f);
    assert_true(fp4_pow2_scale(1e-38f) == 0x1p-126f);
    const float inv = (float)(1.0 / 6.0), fl = 6.0f * 0x1p-126f;
    for (uint32_t p = 1; p < 0x7F80; p++) {                /* every positive bf16 amax */
        float a = bf16_to_float((uint16_t)p);
        float want = pow2_ceil_ref((a > fl ? a : fl) * inv);
        if (fp4_pow2_scale(a) != want)
            fail_msg("fp4_pow2_scale(%.9g) = %g, expected %g", a, fp4_pow2_scale(a), want);
        assert_true(a / want <= 6.0f);
    }
}

/* ---- block simulations ---- */

/* fp8_sim_block on bf16 data with blocks of very different magnitudes: every output is
 * (e4m3 value) * s with s the block's scale, within half an e4m3 step of the input, and
 * the round trip is idempotent. A 64-wide and a 128-wide block size give different
 * results on the same data (the caller's block choice is visible: with power-of-two
 * scales the e4m3 relative precision is scale-invariant, so only values pushed into the
 * subnormal range by a large neighbour in the same block show the difference).
 * Traps: one scale for the whole row; non-idempotent (double rounding); block 64 vs 128. */
static void test_fp8_sim_block(void **state)
{
    (void)state;
    enum { N = 512 };
    float x[N], y[N], z[N], w[N];
    test_rng rng = { 5 };
    for (int i = 0; i < N; i++)
        x[i] = round_bf16(test_rng_uniform(&rng) * (float)ldexp(1.0, (i / 64) % 2 ? 2 : -14));
    memcpy(y, x, sizeof x);
    fp8_sim_block(y, N, 128);
    for (int b = 0; b < N / 128; b++) {
        float amax = 0;
        for (int i = 0; i < 128; i++) amax = fmaxf(amax, fabsf(x[b * 128 + i]));
        float s = fp8_pow2_scale(amax);
        for (int i = 0; i < 128; i++) {
            float q = y[b * 128 + i] / s;
            uint8_t c = e4m3_from_float(q);
            assert_true(e4m3_to_float(c) == q);          /* on the grid */
            double xs = fabs((double)x[b * 128 + i] / s);
            double step = xs < 0x1p-6 ? 0x1p-9 : ldexp(1.0, (int)floor(log2(xs)) - 3);
            assert_true(fabs((double)q - (double)x[b * 128 + i] / s) <= step / 2 * (1 + 1e-12));
            assert_true(round_bf16(y[b * 128 + i]) == y[b * 128 + i]);
        }
    }
    memcpy(z, y, sizeof y);
    fp8_sim_block(z, N, 128);
    assert_memory_equal(y, z, sizeof y);
    memcpy(w, x, sizeof x);
    fp8_sim_block(w, N, 64);
    /* the small half-blocks (2^-14 next to 2^2) fall into the e4m3 subnormal range when
     * they share a 128-wide scale with the large half: a 64-wide block keeps them exact-ish */
    expect_distinguishable("fp8 sim block 64 vs 128 (small half)", w, y, 64, 1e-2);
    /* act_quant gives the same codes and scales */
    uint8_t codes[N]; float sc[N / 128];
    fp8_act_quant(x, N, 128, codes, sc);
    for (int i = 0; i < N; i++) assert_true(e4m3_to_float(codes[i]) * sc[i / 128] == y[i]);
}

/* fp4_sim_block: a hand example with amax 6 (s = 1) on the tie values, and a block of
 * amax 0.75 (s = 2^-3: 0.75/6 = 0.125) checked value by value.
 * Trap: ties to the larger magnitude; scale 2^floor. */
static void test_fp4_sim_block(void **state)
{
    (void)state;
    float x[64] = { 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f, -5.0f, -0.3f };
    float want[64] = { 0, 1, 1, 2, 2, 4, 4, 6, -4, -0.5f };
    /* second block: amax 0.75 -> s = 2^ceil(log2(f32(0.75 * f32(1/6)) = 0.125)) = 0.125;
     * x/s = 6, 2, 1.25 (tie -> 1), -0.75 (tie -> -1), 0, 4, 2.5 (tie -> 2), 0.3125 (-> 0.5) */
    float b2[8] = { 0.75f, 0.25f, 0.15625f, -0.09375f, 0.0f, 0.5f, 0.3125f, 0.0390625f };
    float w2[8] = { 0.75f, 0.25f, 0.125f, -0.125f, 0.0f, 0.5f, 0.25f, 0.0625f };
    for (int i = 0; i < 8; i++) { x[32 + i] = b2[i]; want[32 + i] = w2[i]; }
    fp4_sim_block(x, 64, 32);
    for (int i = 0; i < 64; i++)
        if (x[i] != want[i])
            fail_msg("fp4_sim_block element %d = %g, expected %g (likely bug: e2m1 tie rule or "
                     "scale rule)", i, x[i], want[i]);
}

/* ---- against the official golden files ---- */

/* The compressed entries the official code emitted (taps.*.attn.compressor: FP8-simulated
 * on the non-rope dims, 64-wide blocks) are fixed points of fp8_sim_block(64) on those
 * dims, and the indexer keys (taps.*.attn.indexer.compressor: FP4-simulated, 32-wide) are
 * fixed points of fp4_sim_block(32): the official values lie on our grids with our scale
 * rule (a power-of-two scale s with amax/s in (224, 448] resp. (3, 6] reproduces itself).
 * The rope dims are not simulated: they are not all fixed points.
 * Traps: a scale rule or grid different from the official one (values would move), FP8
 * simulation of the rope dims. */
static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void test_golden_fixed_points(void **state)
{
    (void)state;
    const char *files[3] = { "flash_bf16_prefill_decode.safetensors.gz",
                             "fp8_fp4_weights.safetensors.gz", "short_boundaries_s4.safetensors" };
    long rows8 = 0, rows4 = 0, rope_moved = 0;
    for (int fi = 0; fi < 3; fi++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", official_golden_dir(), files[fi]);
        st_file *f = st_open(path);
        if (!f) { printf("  (skipped %s: %s)\n", path, dsv4_last_error()); continue; }
        for (size_t i = 0; i < st_count(f); i++) {
            const st_tensor *t = st_get(f, i);
            int is_idx = ends_with(t->name, ".attn.indexer.compressor");
            int is_kv = ends_with(t->name, ".attn.compressor");
            if (strncmp(t->name, "taps.", 5) != 0 || (!is_idx && !is_kv)) continue;
            int64_t D = t->shape[t->ndim - 1], nrows = t->numel / D;
            int64_t nq = is_idx ? D : D - 64;          /* rope_head_dim 64 in these cases */
            float row[512], sim[512];
            assert_true(D <= 512);
            for (int64_t r = 0; r < nrows; r++) {
                for (int64_t j = 0; j < D; j++) row[j] = (float)st_get_f64(t, r * D + j);
                memcpy(sim, row, sizeof(float) * (size_t)D);
                if (is_idx) fp4_sim_block(sim, nq, 32);
                else fp8_sim_block(sim, nq, 64);
                for (int64_t j = 0; j < nq; j++)
                    if (sim[j] != row[j])
                        fail_msg("%s %s row %lld dim %lld: official %.9g moves to %.9g under "
                                 "our %s simulation (likely bug: scale rule or grid)",
                                 files[fi], t->name, (long long)r, (long long)j, row[j], sim[j],
                                 is_idx ? "FP4" : "FP8");
                if (is_kv) {
                    memcpy(sim, row + nq, sizeof(float) * 64);
                    fp8_sim_block(sim, 64, 64);
                    rope_moved += memcmp(sim, row + nq, sizeof(float) * 64) != 0;
                    rows8++;
                } else rows4++;
            }
        }
        st_close(f);
    }
    printf("  golden fixed points: %ld FP8 compressed rows, %ld FP4 indexer rows; %ld of the "
           "FP8 rows' rope parts are not on the FP8 grid\n", rows8, rows4, rope_moved);
    assert_true(rows8 > 0 && rows4 > 0);
    assert_true(rope_moved > rows8 / 2);
}

/* [NUM-8] PyTorch's CPU float row sum. For n = 100 (12 full vectors = 3 rows of 4, no
 * cascade level reached, 4 tail elements) the order written out independently here must be
 * reproduced bit for bit; and on random rows it must differ from the correctly rounded sum
 * somewhere, or the rule would not be observable (the flash golden file's layer-0 attention
 * input is bit-exact only with it). */
static void test_torch_cpu_sum_order(void **state)
{
    (void)state;
    enum { N = 100 };
    static float x[N];
    test_rng rng = { 99 };
    int differs = 0;
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < N; i++) x[i] = test_rng_uniform(&rng) * (1.0f + (float)(i % 7));
        float acc[4][8] = { { 0 } };
        for (int r = 0; r < 3; r++)
            for (int k = 0; k < 4; k++)
                for (int c = 0; c < 8; c++) acc[k][c] += x[(r * 4 + k) * 8 + c] * x[(r * 4 + k) * 8 + c];
        for (int k = 1; k < 4; k++)
            for (int c = 0; c < 8; c++) acc[0][c] += acc[k][c];
        float want = 0.0f;
        for (int i = 96; i < N; i++) want += x[i] * x[i];
        for (int c = 0; c < 8; c++) want += acc[0][c];
        float got = torch_cpu_sum_squares(x, N, 0);
        if (memcmp(&got, &want, sizeof got) != 0)
            fail_msg("[NUM-8] trial %d: %.9g vs the written-out order %.9g\n  likely bug: lane/"
                     "accumulator order of torch_cpu_sum_squares", trial, (double)got, (double)want);
        double exact = 0.0;
        for (int i = 0; i < N; i++) exact += (double)(x[i] * x[i]);
        differs += got != (float)exact;
    }
    if (differs == 0) fail_msg("[NUM-8]: never differs from the rounded exact sum: the test cannot see the rule");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torch_cpu_sum_order),
        cmocka_unit_test(test_bf16_all_patterns),
        cmocka_unit_test(test_bf16_rne),
        cmocka_unit_test(test_bf16_specials),
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_e4m3_all_codes),
        cmocka_unit_test(test_e4m3_midpoints),
        cmocka_unit_test(test_e4m3_saturation_and_small),
        cmocka_unit_test(test_e8m0),
        cmocka_unit_test(test_e2m1),
        cmocka_unit_test(test_ceil_log2_bits),
        cmocka_unit_test(test_fp8_scale),
        cmocka_unit_test(test_fp4_scale),
        cmocka_unit_test(test_fp8_sim_block),
        cmocka_unit_test(test_fp4_sim_block),
        cmocka_unit_test(test_golden_fixed_points),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
