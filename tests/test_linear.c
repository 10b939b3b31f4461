/* test_linear.c — y = x W^T for bf16 / fp32 / FP8 / FP4 weights (spec/linear.md).
 *
 * References are fp64 products written here from the storage definitions: the weight is
 * dequantized from its fields (e4m3 / e2m1 value times 2^(e8m0 - 127)), the activation is
 * either used as is (exact mode, "plain") or quantized like the official act_quant
 * ("quantized"), then summed in double.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#ifndef cm_print_error
#define cm_print_error print_error   /* the installed cmocka (1.1) names it print_error */
#endif
#include "testutil.h"
#include "numerics.h"
#include "linear.h"

/* ---- independent references ---- */

static double e4m3_ref(uint8_t c)
{
    int e = (c >> 3) & 0xF, m = c & 7;
    double v = e == 0 ? m / 8.0 * ldexp(1.0, -6) : (1.0 + m / 8.0) * ldexp(1.0, e - 7);
    return (c & 0x80) ? -v : v;
}

static double e2m1_ref(uint8_t c)
{
    static const double g[8] = { 0, 0.5, 1, 1.5, 2, 3, 4, 6 };
    return (c & 8) ? -g[c & 7] : g[c & 7];
}

/* The official act_quant of one row, written from the spec: per 128-block, s = smallest
 * power of two >= f32(max(amax, 1e-4) * f32(1/448)), q = e4m3(x / s). Returns the
 * dequantized activation q * s in xq and the scales in s_out. */
static void act_quant_ref(const float *x, int K, double *xq, double *s_out)
{
    for (int b = 0; b < K / 128; b++) {
        float amax = 1e-4f;
        for (int k = 0; k < 128; k++) amax = fmaxf(amax, fabsf(x[b * 128 + k]));
        float p = amax * (float)(1.0 / 448.0);
        int e;
        double f = frexp((double)p, &e);
        double s = f == 0.5 ? ldexp(1.0, e - 1) : ldexp(1.0, e);
        s_out[b] = s;
        for (int k = 0; k < 128; k++)
            xq[b * 128 + k] = (double)e4m3_to_float(e4m3_from_float((float)(x[b * 128 + k] / s))) * s;
    }
}

/* ---- test data ---- */

enum { N = 3, K = 256, R8 = 200, R4 = 96 };

/* Activations: bf16 values whose magnitude changes per 128-block and per row. */
static void make_x(float *x, int n, int k, uint64_t seed)
{
    test_rng rng = { seed };
    for (int m = 0; m < n; m++)
        for (int j = 0; j < k; j++)
            x[m * k + j] = round_bf16(test_rng_uniform(&rng) * (float)ldexp(1.0, (j / 128) * 3 - m));
}

/* FP8 weight [R8, K]: random finite codes, e8m0 block scales all different; rows 128..199
 * form a partial last 128-row block. */
static uint8_t w8_codes[R8 * K];
static uint8_t w8_scale[2 * 2] = { 127 - 7, 127 - 4, 127 - 9, 127 - 2 };
static float w8_scale_f32[2 * 2] = { 0.00123f, 0.0371f, 0.0005f, 0.25f };

static void make_w8(void)
{
    test_rng rng = { 99 };
    for (int i = 0; i < R8 * K; i++) {
        uint8_t c = (uint8_t)(test_rng_next(&rng) % 0x7F);     /* 0..0x7E: finite */
        if (test_rng_next(&rng) & 1) c |= 0x80;
        w8_codes[i] = c;
    }
}

static double w8_deq(int r, int c, int f32scale)
{
    int bi = (r / 128) * 2 + c / 128;
    double s = f32scale ? (double)w8_scale_f32[bi] : ldexp(1.0, w8_scale[bi] - 127);
    return e4m3_ref(w8_codes[r * K + c]) * s;
}

/* FP4 weight [R4, K]: codes packed low nibble first, per-32 e8m0 scales. */
static uint8_t w4_codes[R4 * K], w4_bytes[R4 * K / 2], w4_scale[R4 * K / 32];

static void make_w4(void)
{
    test_rng rng = { 1234 };
    for (int i = 0; i < R4 * K; i++) w4_codes[i] = (uint8_t)(test_rng_next(&rng) % 16);
    for (int i = 0; i < R4 * K / 32; i++) w4_scale[i] = (uint8_t)(127 - 4 + test_rng_next(&rng) % 7);
    for (int i = 0; i < R4 * K / 2; i++)
        w4_bytes[i] = (uint8_t)(w4_codes[2 * i] | (w4_codes[2 * i + 1] << 4));
}

static double w4_deq(int r, int c)
{
    return e2m1_ref(w4_codes[r * K + c]) * ldexp(1.0, w4_scale[r * (K / 32) + c / 32] - 127);
}

/* ---- FP8 ---- */

/* FP8 GEMM, official mode, against two fp64 references (R = 200: a partial last 128-row
 * block whose scales differ from the first block's).
 * (1) vs the product of the QUANTIZED activation and the dequantized weight: only the
 *     fp32 block sums / scaled accumulation (<= 4 fp32 roundings over |terms|:
 *     8 * 2^-24 * sum|xq w|) and the final bf16 rounding (2^-8 |y|) remain.
 * (2) vs the plain fp64 product: add the activation quantization error, per element
 *     |dx_k| <= max(2^-4 |x_k|, 2^-10 s_b) (half an e4m3 step: 3 mantissa bits in the normal
 *     range, 2^-9 s spacing in the subnormal range), so |dy| <= sum_k |dx_k| |w_k|.
 * Exact mode vs the plain product: 1e-6 (fp32 output of a double sum).
 * Traps: skipping act_quant (V3 bf16 path), a per-row weight scale, the scale row of the
 * partial block (r / 128 indexing), scales applied per element instead of per block sum. */
static void test_fp8_gemm(void **state)
{
    (void)state;
    make_w8();
    float x[N * K], yo[N * R8], ye[N * R8], y64f[N * R8];
    make_x(x, N, K, 7);
    dsv4_weight w = { DSV4_F8_E4M3, 0, R8, K, w8_codes, DSV4_F8_E8M0, w8_scale, "test.fp8" };
    assert_int_equal(linear(&w, x, yo, N, 0, DSV4_OFFICIAL), 0);
    assert_int_equal(linear(&w, x, ye, N, 0, DSV4_EXACT), 0);
    for (int m = 0; m < N; m++) {
        double xq[K], sx[K / 128];
        act_quant_ref(x + m * K, K, xq, sx);
        for (int r = 0; r < R8; r++) {
            double yq = 0, yp = 0, absq = 0, dq = 0;
            for (int k = 0; k < K; k++) {
                double wd = w8_deq(r, k, 0);
                yq += xq[k] * wd;
                yp += (double)x[m * K + k] * wd;
                absq += fabs(xq[k] * wd);
                double dx = fmax(ldexp(fabs(x[m * K + k]), -4), ldexp(sx[k / 128], -10));
                dq += dx * fabs(wd);
            }
            y64f[m * R8 + r] = (float)yp;
            double got = yo[m * R8 + r];
            double b1 = 0x1p-8 * fabs(yq) + 8 * 0x1p-24 * absq;
            if (fabs(got - yq) > b1)
                fail_msg("fp8 official y[%d][%d] = %.9g vs quantized fp64 %.9g (bound %.3g): "
                         "likely bug: block scales (row %s block) or block-sum order", m, r,
                         got, yq, b1, r >= 128 ? "partial" : "first");
            if (fabs(got - yp) > b1 + dq)
                fail_msg("fp8 official y[%d][%d] = %.9g vs fp64 %.9g beyond the activation "
                         "quantization bound", m, r, got, yp);
        }
    }
    expect_close("fp8 exact vs fp64", ye, y64f, N * R8, 1e-6,
                 "exact mode must not quantize the activation; weight dequant wrong");
    /* the activation quantization is visible: official differs from exact by ~2e-2 (e4m3
     * keeps 4 significant bits: ~2.5% rms per element), bf16 output rounding alone ~1e-3 */
    expect_distinguishable("fp8 official vs exact (act_quant)", yo, ye, N * R8, 5e-3);
    /* the partial block uses scale row 1: with scale row 0 the rows >= 128 would be off */
    double y_row1 = 0, y_row0 = 0;
    for (int k = 0; k < K; k++) {
        y_row1 += (double)x[k] * e4m3_ref(w8_codes[150 * K + k]) * ldexp(1.0, w8_scale[2 + k / 128] - 127);
        y_row0 += (double)x[k] * e4m3_ref(w8_codes[150 * K + k]) * ldexp(1.0, w8_scale[0 + k / 128] - 127);
    }
    assert_true(fabs(ye[150] - y_row1) <= 1e-6 * fabs(y_row1));
    assert_true(fabs(ye[150] - y_row0) > 0.1 * fabs(y_row1));
}

/* V3-style FP8 weight with F32 block scales (weight_scale_inv): official = the same FP8
 * GEMM with sc = f32(sx * sw); checked against the quantized fp64 reference. */
static void test_fp8_gemm_f32_scale(void **state)
{
    (void)state;
    make_w8();
    float x[N * K], yo[N * R8];
    make_x(x, N, K, 8);
    dsv4_weight w = { DSV4_F8_E4M3, 0, R8, K, w8_codes, DSV4_F32, w8_scale_f32, "test.fp8f32" };
    assert_int_equal(linear(&w, x, yo, N, 0, DSV4_OFFICIAL), 0);
    for (int m = 0; m < N; m++) {
        double xq[K], sx[K / 128];
        act_quant_ref(x + m * K, K, xq, sx);
        for (int r = 0; r < R8; r++) {
            double yq = 0, absq = 0;
            for (int k = 0; k < K; k++) {
                yq += xq[k] * w8_deq(r, k, 1);
                absq += fabs(xq[k] * w8_deq(r, k, 1));
            }
            assert_true(fabs(yo[m * R8 + r] - yq) <= 0x1p-8 * fabs(yq) + 8 * 0x1p-24 * absq);
        }
    }
    assert_true(weight_at(&w, 130, 5) == (float)(e4m3_ref(w8_codes[130 * K + 5]) * (double)w8_scale_f32[2]));
}

/* ---- FP4 ---- */

/* FP4 GEMM (e2m1 weight, per-32 e8m0 scales, activation act_quant'ed to e4m3), same two
 * bounds as the FP8 GEMM (the chunk sums are per 32, so <= 10 fp32 roundings of the
 * |terms|). Nibble order: a reference reading the high nibble first is far off.
 * Traps: nibble order, per-128 instead of per-32 weight scales, no act_quant. */
static void test_fp4_gemm(void **state)
{
    (void)state;
    make_w4();
    float x[N * K], yo[N * R4], ye[N * R4], y64f[N * R4], yswap[N * R4];
    make_x(x, N, K, 17);
    dsv4_weight w = { DSV4_I8, 1, R4, K, w4_bytes, DSV4_F8_E8M0, w4_scale, "test.fp4" };
    assert_int_equal(linear(&w, x, yo, N, 0, DSV4_OFFICIAL), 0);
    assert_int_equal(linear(&w, x, ye, N, 0, DSV4_EXACT), 0);
    for (int m = 0; m < N; m++) {
        double xq[K], sx[K / 128];
        act_quant_ref(x + m * K, K, xq, sx);
        for (int r = 0; r < R4; r++) {
            double yq = 0, yp = 0, absq = 0, dq = 0, ys = 0;
            for (int k = 0; k < K; k++) {
                double wd = w4_deq(r, k);
                yq += xq[k] * wd;
                yp += (double)x[m * K + k] * wd;
                absq += fabs(xq[k] * wd);
                dq += fmax(ldexp(fabs(x[m * K + k]), -4), ldexp(sx[k / 128], -10)) * fabs(wd);
                ys += (double)x[m * K + k] * w4_deq(r, k ^ 1);   /* swapped nibbles */
            }
            y64f[m * R4 + r] = (float)yp;
            yswap[m * R4 + r] = (float)ys;
            double b1 = 0x1p-8 * fabs(yq) + 16 * 0x1p-24 * absq;
            if (fabs(yo[m * R4 + r] - yq) > b1)
                fail_msg("fp4 official y[%d][%d] = %.9g vs quantized fp64 %.9g (bound %.3g): "
                         "likely bug: nibble order or per-32 scale indexing", m, r,
                         yo[m * R4 + r], yq, b1);
            assert_true(fabs(yo[m * R4 + r] - yp) <= b1 + dq);
        }
    }
    expect_close("fp4 exact vs fp64", ye, y64f, N * R4, 1e-6,
                 "FP4 dequantization: nibble order or scale layout [rows, cols/32]");
    expect_distinguishable("fp4 nibble order", ye, yswap, N * R4, 0.1);
    expect_distinguishable("fp4 official vs exact (act_quant)", yo, ye, N * R4, 5e-3);
}

/* ---- bf16 / fp32 ---- */

/* BF16 weight: official = bf16(f32(sum)), within 2^-8 |y| (+ fp32 slack) of fp64;
 * out_f32 = 1 keeps fp32 (not bf16-rounded), within 1e-6 of fp64.
 * Trap: rounding the fp32 GEMMs (router, compressor, head) to bf16. */
static void test_bf16_and_fp32(void **state)
{
    (void)state;
    enum { R = 40, KK = 72 };
    static uint16_t wb[R * KK];
    float x[N * KK], yo[N * R], yf[N * R], y64f[N * R];
    test_rng rng = { 55 };
    for (int i = 0; i < R * KK; i++) wb[i] = bf16_from_float(test_rng_uniform(&rng));
    make_x(x, N, KK, 3);
    dsv4_weight w = { DSV4_BF16, 0, R, KK, wb, DSV4_F32, NULL, "test.bf16" };
    assert_int_equal(linear(&w, x, yo, N, 0, DSV4_OFFICIAL), 0);
    assert_int_equal(linear(&w, x, yf, N, 1, DSV4_OFFICIAL), 0);
    int not_bf16 = 0;
    for (int m = 0; m < N; m++)
        for (int r = 0; r < R; r++) {
            double s = 0;
            for (int k = 0; k < KK; k++) s += (double)x[m * KK + k] * bf16_to_float(wb[r * KK + k]);
            y64f[m * R + r] = (float)s;
            assert_true(round_bf16(yo[m * R + r]) == yo[m * R + r]);
            assert_true(fabs(yo[m * R + r] - s) <= (0x1p-8 + 0x1p-20) * fabs(s) + 1e-30);
            not_bf16 += round_bf16(yf[m * R + r]) != yf[m * R + r];
        }
    expect_close("fp32 linear vs fp64", yf, y64f, N * R, 1e-6, "fp32 GEMM rounded to bf16");
    assert_true(not_bf16 > N * R / 2);
    /* F32 weights read the same way */
    static float wf[R * KK];
    for (int i = 0; i < R * KK; i++) wf[i] = bf16_to_float(wb[i]);
    dsv4_weight w32 = { DSV4_F32, 0, R, KK, wf, DSV4_F32, NULL, "test.f32" };
    float y2[N * R];
    assert_int_equal(linear(&w32, x, y2, N, 1, DSV4_OFFICIAL), 0);
    assert_memory_equal(y2, yf, sizeof y2);
}

/* ---- errors ---- */

/* Clear errors: official FP8 with in_features not a multiple of 128 (act_quant cannot
 * run; exact mode can), non-finite input where the graph quantizes, malformed weights.
 * Trap: silently quantizing a partial block / NaN propagating into every output. */
static void test_errors(void **state)
{
    (void)state;
    make_w8();
    enum { KB = 200 };
    static float x[KB], y[R8];
    for (int i = 0; i < KB; i++) x[i] = 0.5f;
    dsv4_weight w = { DSV4_F8_E4M3, 0, 8, KB, w8_codes, DSV4_F8_E8M0, w8_scale, "layers.0.attn.wkv.weight" };
    assert_int_equal(linear(&w, x, y, 1, 0, DSV4_OFFICIAL), -1);
    assert_non_null(strstr(dsv4_last_error(), "layers.0.attn.wkv.weight"));
    assert_non_null(strstr(dsv4_last_error(), "multiple of 128"));
    assert_int_equal(linear(&w, x, y, 1, 0, DSV4_EXACT), 0);
    float xn[K];
    for (int i = 0; i < K; i++) xn[i] = 1.0f;
    xn[77] = NAN;
    dsv4_weight w2 = { DSV4_F8_E4M3, 0, R8, K, w8_codes, DSV4_F8_E8M0, w8_scale, "q" };
    assert_int_equal(linear(&w2, xn, y, 1, 0, DSV4_OFFICIAL), -1);
    assert_non_null(strstr(dsv4_last_error(), "not finite"));
    dsv4_weight bad1 = { DSV4_F8_E4M3, 0, R8, K, w8_codes, DSV4_F8_E8M0, NULL, "noscale" };
    assert_int_equal(weight_check(&bad1), -1);
    assert_non_null(strstr(dsv4_last_error(), "noscale"));
    dsv4_weight bad2 = { DSV4_I8, 1, 4, 48, w4_bytes, DSV4_F8_E8M0, w4_scale, "fp4cols" };
    assert_int_equal(weight_check(&bad2), -1);
    dsv4_weight bad3 = { DSV4_I64, 0, 4, 4, w4_bytes, DSV4_F32, NULL, "i64" };
    assert_int_equal(weight_check(&bad3), -1);
    dsv4_weight bad4 = { DSV4_BF16, 0, 0, 4, w4_bytes, DSV4_F32, NULL, "empty" };
    assert_int_equal(weight_check(&bad4), -1);
    dsv4_weight ok = { DSV4_I8, 1, R4, K, w4_bytes, DSV4_F8_E8M0, w4_scale, "ok" };
    assert_int_equal(weight_check(&ok), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp8_gemm),
        cmocka_unit_test(test_fp8_gemm_f32_scale),
        cmocka_unit_test(test_fp4_gemm),
        cmocka_unit_test(test_bf16_and_fp32),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
