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
#include "testutil.h"
#include "numerics.h"
#include "linear.h"
#include "safetensors.h"

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
/* [LIN-5] an FP8 wo_a read as convert.py's bf16 matrix: rows [row0, row0+nrows) of
 * linear_dequant_bf16 on the FP8 weight equal the bf16 F.linear on a bf16 copy made the
 * convert.py way (bf16(f32(e4m3) x scale)), bit for bit, in both modes; and they differ from
 * the FP8 GEMM (which would quantize the activations). Trap: treating wo_a as an FP8 GEMM. */
static void test_dequant_bf16_rows(void **state)
{
    (void)state;
    make_w8();
    enum { NN = 3, R0 = 40, NR = 50 };
    static float x[NN * K], got[NN * NR], want[NN * NR], fp8y[NN * R8];
    static uint16_t wb[NR * K];
    make_x(x, NN, K, 31);
    dsv4_weight w = { DSV4_F8_E4M3, 0, R8, K, w8_codes, DSV4_F8_E8M0, w8_scale, "test.wo_a" };
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < K; c++) wb[r * K + c] = bf16_from_float(weight_at(&w, R0 + r, c));
    dsv4_weight wbf = { DSV4_BF16, 0, NR, K, wb, DSV4_F32, NULL, "test.wo_a.bf16" };
    for (int m = 0; m < 2; m++) {
        dsv4_numerics num = (dsv4_numerics)m;
        assert_int_equal(linear_dequant_bf16(&w, R0, NR, x, got, NN, num), 0);
        assert_int_equal(linear(&wbf, x, want, NN, 0, num), 0);
        if (memcmp(got, want, sizeof got) != 0)
            fail_msg("[LIN-5] mode %d: FP8 rows read as bf16 differ from the converted bf16 weight\n"
                     "  likely bug: weight row offset or bf16 rounding of the dequantized weight", m);
    }
    assert_int_equal(linear(&w, x, fp8y, NN, 0, DSV4_OFFICIAL), 0);
    static float fp8rows[NN * NR];
    for (int i = 0; i < NN; i++) memcpy(fp8rows + i * NR, fp8y + i * R8 + R0, sizeof(float) * NR);
    assert_int_equal(linear_dequant_bf16(&w, R0, NR, x, got, NN, DSV4_OFFICIAL), 0);
    expect_distinguishable("bf16 dequant vs FP8 GEMM", got, fp8rows, NN * NR, 1e-4);
    assert_int_equal(linear_dequant_bf16(&w, R8 - 1, 2, x, got, NN, DSV4_OFFICIAL), -1);
}

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

/* ---- against the official golden file ---- */

/* A weight view on a golden-file tensor (BF16; FP8 with .scale; packed FP4 with .scale). */
static int golden_weight(const st_file *f, const char *prefix, dsv4_weight *w)
{
    char n1[256], n2[256];
    snprintf(n1, sizeof n1, "%s.weight", prefix);
    snprintf(n2, sizeof n2, "%s.scale", prefix);
    const st_tensor *t = st_find(f, n1), *sc = st_find(f, n2);
    if (!t || t->ndim != 2) return -1;
    memset(w, 0, sizeof *w);
    w->fp4 = t->dtype == DSV4_I8 || t->dtype == DSV4_U8;
    w->dtype = t->dtype;
    w->rows = t->shape[0];
    w->cols = w->fp4 ? 2 * t->shape[1] : t->shape[1];
    w->data = t->data;
    w->scale_dtype = sc ? sc->dtype : DSV4_F32;
    w->scale = sc ? sc->data : NULL;
    w->name = t->name;
    return weight_check(w);
}

/* One official Expert on one token: gate = w1(x), up = w3(x) (bf16 GEMM outputs, used in
 * fp32), up clamped to +-limit, gate clamped above at limit, h = f32(silu(gate) * up),
 * h = f32(weight * h) for a routed expert, out = w2(bf16(h)) (bf16). */
static int expert_out(const dsv4_weight *w1, const dsv4_weight *w2, const dsv4_weight *w3,
                      const float *x, float weight, int routed, float limit, float *out)
{
    enum { MAXI = 512 };
    float g[MAXI], u[MAXI];
    if (w1->rows > MAXI) return -1;
    if (linear(w1, x, g, 1, 0, DSV4_OFFICIAL) || linear(w3, x, u, 1, 0, DSV4_OFFICIAL)) return -1;
    for (int64_t j = 0; j < w1->rows; j++) {
        float up = u[j] < -limit ? -limit : (u[j] > limit ? limit : u[j]);
        float gate = g[j] > limit ? limit : g[j];
        float silu = gate / (1.0f + expf(-gate));
        float h = silu * up;
        if (routed) h = weight * h;
        g[j] = round_bf16(h);
    }
    return linear(w2, g, out, 1, 0, DSV4_OFFICIAL);
}

/* The official MoE outputs of the fp8_fp4_weights golden case, recomputed from their
 * recorded inputs and routing (taps.k.layers.i.ffn.in, .ffn.gate.0/.1) with our FP4 GEMM
 * (routed experts: e2m1 + per-32 e8m0 scales) and FP8 GEMM (shared expert: e4m3 + 128x128
 * e8m0 blocks), both behind act_quant: y = bf16( sum over experts in ascending id of the
 * fp32 expert outputs, then the shared expert ). Every GEMM of an FFN is on this path, so
 * a wrong nibble order, scale layout, act_quant or block-sum order shows up as a large
 * error. Limit: the project's official-tap limit, 1e-2 per-tap rel-L2 (tolerances.md);
 * observed numbers are printed. */
static void test_golden_moe(void **state)
{
    (void)state;
    const char *files[4] = { "fp8_fp4_weights.safetensors.gz", "flash_bf16_prefill_decode.safetensors.gz",
                             "pro_schedule_batch2.safetensors.gz", "short_boundaries_s4.safetensors" };
    int checked = 0, checked_fp4 = 0;
    double worst = 0;
    for (int fi = 0; fi < 4; fi++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", official_golden_dir(), files[fi]);
    st_file *f = st_open(path);
    if (!f) { printf("  (skipped %s: %s)\n", path, dsv4_last_error()); continue; }
    for (int layer = 0; layer < 8; layer++) {
        char pre[128];
        dsv4_weight sw1, sw2, sw3;
        snprintf(pre, sizeof pre, "layers.%d.ffn.shared_experts.w1", layer);
        if (golden_weight(f, pre, &sw1)) continue;
        snprintf(pre, sizeof pre, "layers.%d.ffn.shared_experts.w2", layer);
        assert_int_equal(golden_weight(f, pre, &sw2), 0);
        snprintf(pre, sizeof pre, "layers.%d.ffn.shared_experts.w3", layer);
        assert_int_equal(golden_weight(f, pre, &sw3), 0);
        for (int call = 0; call < 64; call++) {
            char nin[128], nout[128], nw[128], nid[128];
            snprintf(nin, sizeof nin, "taps.%d.layers.%d.ffn.in", call, layer);
            snprintf(nout, sizeof nout, "taps.%d.layers.%d.ffn", call, layer);
            snprintf(nw, sizeof nw, "taps.%d.layers.%d.ffn.gate.0", call, layer);
            snprintf(nid, sizeof nid, "taps.%d.layers.%d.ffn.gate.1", call, layer);
            const st_tensor *tin = st_find(f, nin), *tout = st_find(f, nout);
            const st_tensor *tw = st_find(f, nw), *tid = st_find(f, nid);
            if (!tin || !tout || !tw || !tid) continue;
            int64_t D = tin->shape[tin->ndim - 1], T = tin->numel / D, KS = tw->shape[1];
            float *x = malloc(sizeof(float) * (size_t)(T * D));
            float *y = malloc(sizeof(float) * (size_t)(T * D));
            float *want = malloc(sizeof(float) * (size_t)(T * D));
            float *e = malloc(sizeof(float) * (size_t)D);
            assert_true(x && y && want && e);
            for (int64_t i = 0; i < T * D; i++) {
                x[i] = (float)st_get_f64(tin, i);
                want[i] = (float)st_get_f64(tout, i);
            }
            for (int64_t t = 0; t < T; t++) {
                float *yt = y + t * D;
                for (int64_t j = 0; j < D; j++) yt[j] = 0.0f;
                for (int ex = 0; ex < 256; ex++)
                    for (int64_t s = 0; s < KS; s++) {
                        if (st_get_i64(tid, t * KS + s) != ex) continue;
                        dsv4_weight w1, w2, w3;
                        snprintf(pre, sizeof pre, "layers.%d.ffn.experts.%d.w1", layer, ex);
                        assert_int_equal(golden_weight(f, pre, &w1), 0);
                        snprintf(pre, sizeof pre, "layers.%d.ffn.experts.%d.w2", layer, ex);
                        assert_int_equal(golden_weight(f, pre, &w2), 0);
                        snprintf(pre, sizeof pre, "layers.%d.ffn.experts.%d.w3", layer, ex);
                        assert_int_equal(golden_weight(f, pre, &w3), 0);
                        checked_fp4 += w1.fp4;
                        assert_int_equal(expert_out(&w1, &w2, &w3, x + t * D,
                                                    (float)st_get_f64(tw, t * KS + s), 1, 10.0f, e), 0);
                        for (int64_t j = 0; j < D; j++) yt[j] = yt[j] + e[j];
                    }
                assert_int_equal(expert_out(&sw1, &sw2, &sw3, x + t * D, 1.0f, 0, 10.0f, e), 0);
                for (int64_t j = 0; j < D; j++) yt[j] = round_bf16(yt[j] + e[j]);
            }
            int64_t same = 0;
            for (int64_t i = 0; i < T * D; i++) same += y[i] == want[i];
            double r = rel_l2(y, want, T * D);
            printf("  %s %s: %lld rows, rel-L2 %.3e, %lld of %lld values bit-identical\n",
                   files[fi], nout, (long long)T, r, (long long)same, (long long)(T * D));
            if (r > worst) worst = r;
            expect_close(nout, y, want, T * D, 1e-2,
                         "FP4/FP8 GEMM: nibble order, scale layout, act_quant or block order");
            checked++;
            free(x); free(y); free(want); free(e);
        }
    }
    st_close(f);
    }
    assert_true(checked > 0 && checked_fp4 > 0);
    printf("  golden MoE: %d taps, worst rel-L2 %.3e\n", checked, worst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp8_gemm),
        cmocka_unit_test(test_fp8_gemm_f32_scale),
        cmocka_unit_test(test_fp4_gemm),
        cmocka_unit_test(test_bf16_and_fp32),
        cmocka_unit_test(test_dequant_bf16_rows),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_golden_moe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
