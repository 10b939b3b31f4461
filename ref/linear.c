/* linear.c — y = x W^T for every weight storage of the official checkpoints (spec/linear.md).
 *
 * Order: weight validation and dequantization, then the GEMMs: exact, fp32, bf16, FP8, FP4.
 * Sums that the official kernels (or their CPU stand-ins) take inside one block are taken
 * exactly in double and rounded once to fp32 (double is exact for <= 128 products of two
 * e4m3 values, whose magnitudes span 2^-18 .. 2^18: 36 + 4 + 4 + 7 bits < 53), then
 * scaled and accumulated in fp32 in ascending block order, like the kernels' separate
 * fp32 accumulator.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "linear.h"
#include "numerics.h"

#define LIN_BLOCK 128      /* FP8 weight block (rows and cols) and activation block */
#define LIN_FP4_GROUP 32   /* FP4 weight scale group along K */

static const char *wname(const dsv4_weight *w)
{
    return w->name ? w->name : "weight";
}

/* ---- validation ---- */

/* [LIN-1] Checks w's dtype / fp4 / scale combination and shapes:
 *   F32, BF16 (fp4 = 0): no scale.
 *   F8_E4M3 (fp4 = 0): scale [ceil(rows/128), ceil(cols/128)] of F8_E8M0 or F32.
 *   I8 / U8 with fp4 = 1: cols even and a multiple of 32; scale [rows, cols/32] F8_E8M0.
 * The buffer sizes themselves are the loader's job (st_tensor shapes). */
int weight_check(const dsv4_weight *w)
{
    if (!w) return dsv4_set_error("linear: NULL weight");
    if (w->rows <= 0 || w->cols <= 0)
        return dsv4_set_error("%s: shape [%lld, %lld] must be positive", wname(w),
                              (long long)w->rows, (long long)w->cols);
    if (!w->data) return dsv4_set_error("%s: no data", wname(w));
    if (w->fp4) {
        if (w->dtype != DSV4_I8 && w->dtype != DSV4_U8)
            return dsv4_set_error("%s: FP4 weight must be stored I8 or U8 (packed e2m1), got %s",
                                  wname(w), dsv4_dtype_name(w->dtype));
        if (w->cols % LIN_FP4_GROUP != 0)
            return dsv4_set_error("%s: FP4 weight cols %lld is not a multiple of 32 (one e8m0 "
                                  "scale per 32 elements)", wname(w), (long long)w->cols);
        if (!w->scale || w->scale_dtype != DSV4_F8_E8M0)
            return dsv4_set_error("%s: FP4 weight needs F8_E8M0 scales [rows, cols/32]", wname(w));
        return 0;
    }
    switch (w->dtype) {
    case DSV4_F32:
    case DSV4_BF16:
        return 0;
    case DSV4_F8_E4M3:
        if (!w->scale || (w->scale_dtype != DSV4_F8_E8M0 && w->scale_dtype != DSV4_F32))
            return dsv4_set_error("%s: F8_E4M3 weight needs F8_E8M0 or F32 block scales "
                                  "[ceil(rows/128), ceil(cols/128)]", wname(w));
        return 0;
    default:
        return dsv4_set_error("%s: unsupported weight dtype %s (expected F32, BF16, F8_E4M3 or "
                              "packed FP4)", wname(w), dsv4_dtype_name(w->dtype));
    }
}

/* ---- dequantization ---- */

static float load_f32(const void *p, int64_t i)
{
    float v;
    memcpy(&v, (const unsigned char *)p + i * 4, 4);
    return v;
}

static uint16_t load_u16(const void *p, int64_t i)
{
    uint16_t v;
    memcpy(&v, (const unsigned char *)p + i * 2, 2);
    return v;
}

static uint8_t load_u8(const void *p, int64_t i)
{
    return ((const unsigned char *)p)[i];
}

/* FP8 block scale of W[r][c]: scale[r/128][c/128] as float. */
static float fp8_weight_scale(const dsv4_weight *w, int64_t r, int64_t c)
{
    int64_t ncb = (w->cols + LIN_BLOCK - 1) / LIN_BLOCK;
    int64_t i = (r / LIN_BLOCK) * ncb + c / LIN_BLOCK;
    return w->scale_dtype == DSV4_F32 ? load_f32(w->scale, i) : e8m0_to_float(load_u8(w->scale, i));
}

/* e2m1 code of W[r][c]: element 2j in the low nibble of byte j. */
static uint8_t fp4_code(const dsv4_weight *w, int64_t r, int64_t c)
{
    uint8_t byte = load_u8(w->data, (r * w->cols + c) / 2);
    return (c % 2 == 0) ? (uint8_t)(byte & 0xF) : (uint8_t)(byte >> 4);
}

/* FP4 group scale of W[r][c]: scale[r][c/32]. */
static float fp4_weight_scale(const dsv4_weight *w, int64_t r, int64_t c)
{
    return e8m0_to_float(load_u8(w->scale, r * (w->cols / LIN_FP4_GROUP) + c / LIN_FP4_GROUP));
}

/* [LIN-1] Dequantized W[r][c] as fp32: f32 / bf16 exactly; e4m3 * block scale (exact for
 * e8m0 scales, one fp32 rounding for F32 scales); e2m1 * group scale (exact). */
float weight_at(const dsv4_weight *w, int64_t r, int64_t c)
{
    if (w->fp4) return e2m1_to_float(fp4_code(w, r, c)) * fp4_weight_scale(w, r, c);
    switch (w->dtype) {
    case DSV4_F32: return load_f32(w->data, r * w->cols + c);
    case DSV4_BF16: return bf16_to_float(load_u16(w->data, r * w->cols + c));
    case DSV4_F8_E4M3:
        return e4m3_to_float(load_u8(w->data, r * w->cols + c)) * fp8_weight_scale(w, r, c);
    default: return NAN;
    }
}

/* ---- GEMMs ---- */

/* [LIN-2] exact / fp32 form: y[m][r] = f32( sum_k x[m][k] * W[r][k] ), the sum in double.
 * x: [n, K], y: [n, R]; W dequantized row by row. Used for the exact mode (all dtypes) and
 * for the official fp32 F.linear (out_f32 = 1) — torch's fp32 GEMM rounds along its own
 * order, a last-bit fp32 difference. `bf16_out` rounds each result to bf16 (official
 * F.linear on bf16 operands: fp32 accumulator, bf16 output). */
static int gemm_dequant(const dsv4_weight *w, const float *x, float *y, int64_t n, int bf16_out)
{
    int64_t K = w->cols, R = w->rows;
    float *wr = dsv4_calloc((size_t)K, sizeof(float), "linear weight row");
    if (!wr) return -1;
    for (int64_t r = 0; r < R; r++) {
        for (int64_t k = 0; k < K; k++) wr[k] = weight_at(w, r, k);
        for (int64_t m = 0; m < n; m++) {
            const float *xm = x + m * K;
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++) acc += (double)xm[k] * (double)wr[k];
            float v = (float)acc;
            y[m * R + r] = bf16_out ? round_bf16(v) : v;
        }
    }
    free(wr);
    return 0;
}

/* x: [n, K] must be finite where the official graph quantizes it. */
static int check_finite_input(const dsv4_weight *w, const float *x, int64_t n, int64_t K)
{
    for (int64_t i = 0; i < n * K; i++)
        if (!isfinite(x[i]))
            return dsv4_set_error("%s: input x[%lld][%lld] = %g is not finite; the official "
                                  "graph quantizes this input to FP8", wname(w),
                                  (long long)(i / K), (long long)(i % K), (double)x[i]);
    return 0;
}

/* [LIN-3] act_quant of the GEMM input: x: [n, K] -> xq: [n, K] (the e4m3 values as float,
 * unscaled) and sx: [n, K/128] (powers of two). K % 128 == 0 is required, as the kernel
 * asserts. */
static int quantize_input(const dsv4_weight *w, const float *x, int64_t n, float **xq_out,
                          float **sx_out)
{
    int64_t K = w->cols;
    *xq_out = NULL;
    *sx_out = NULL;
    if (K % LIN_BLOCK != 0)
        return dsv4_set_error("%s: in_features %lld is not a multiple of 128: the official "
                              "act_quant (block 128) cannot quantize this input",
                              wname(w), (long long)K);
    if (check_finite_input(w, x, n, K)) return -1;
    float *xq = dsv4_calloc((size_t)(n * K), sizeof(float), "linear quantized input");
    float *sx = dsv4_calloc((size_t)(n * (K / LIN_BLOCK)), sizeof(float), "linear input scales");
    uint8_t *codes = dsv4_calloc((size_t)K, 1, "linear input codes");
    if (!xq || !sx || !codes) {
        free(xq); free(sx); free(codes);
        return -1;
    }
    for (int64_t m = 0; m < n; m++) {
        fp8_act_quant(x + m * K, K, LIN_BLOCK, codes, sx + m * (K / LIN_BLOCK));
        for (int64_t k = 0; k < K; k++) xq[m * K + k] = e4m3_to_float(codes[k]);
    }
    free(codes);
    *xq_out = xq;
    *sx_out = sx;
    return 0;
}

/* [LIN-3] FP8 GEMM (fp8_gemm): per output (m, r), in ascending K-block order kb:
 *   b   = f32( sum_{k in kb} xq[m][k] * wq[r][k] )        (exact sum, one rounding)
 *   sc  = f32( sx[m][kb] * sw[r/128][kb] )
 *   acc = f32( acc + f32(b * sc) ),   y = bf16(acc).
 * x: [n, K], y: [n, R]. Pitfalls guarded: dequantizing W to bf16 and skipping the
 * activation quantization (the V3 bf16 path, not V3.2/V4); a per-row (instead of 128x128
 * block) weight scale; a partial last 128-row block (R % 128 != 0) indexing the scale
 * with the wrong stride. */
static int gemm_fp8(const dsv4_weight *w, const float *x, float *y, int64_t n)
{
    int64_t K = w->cols, R = w->rows, nkb = K / LIN_BLOCK;
    float *xq, *sx;
    if (quantize_input(w, x, n, &xq, &sx)) return -1;
    float *wr = dsv4_calloc((size_t)K, sizeof(float), "linear weight row");
    if (!wr) { free(xq); free(sx); return -1; }
    for (int64_t r = 0; r < R; r++) {
        for (int64_t k = 0; k < K; k++) wr[k] = e4m3_to_float(load_u8(w->data, r * K + k));
        for (int64_t m = 0; m < n; m++) {
            float acc = 0.0f;
            for (int64_t kb = 0; kb < nkb; kb++) {
                double s = 0.0;
                for (int64_t k = kb * LIN_BLOCK; k < (kb + 1) * LIN_BLOCK; k++)
                    s += (double)xq[m * K + k] * (double)wr[k];
                float b = (float)s;
                float sc = sx[m * nkb + kb] * fp8_weight_scale(w, r, kb * LIN_BLOCK);
                acc = acc + b * sc;
            }
            y[m * R + r] = round_bf16(acc);
        }
    }
    free(wr); free(xq); free(sx);
    return 0;
}

/* [LIN-4] FP4 GEMM (fp4_gemm): the input is act_quant'ed to e4m3 (block 128), the e2m1
 * weight is exact in e4m3; per output (m, r), in ascending 32-wide K chunks c:
 *   b   = f32( sum_{k in c} xq[m][k] * e2m1(W[r][k]) )
 *   acc = f32( acc + f32( f32(b * sx[m][k/128]) * sw[r][k/32] ) ),   y = bf16(acc).
 * Pitfalls guarded: nibble order (low nibble = even element); 32-wide weight scales
 * applied per 128; skipping the activation quantization. */
static int gemm_fp4(const dsv4_weight *w, const float *x, float *y, int64_t n)
{
    int64_t K = w->cols, R = w->rows, nkb = K / LIN_BLOCK, nch = K / LIN_FP4_GROUP;
    float *xq, *sx;
    if (quantize_input(w, x, n, &xq, &sx)) return -1;
    float *wr = dsv4_calloc((size_t)K, sizeof(float), "linear weight row");
    float *sw = dsv4_calloc((size_t)nch, sizeof(float), "linear weight scales");
    if (!wr || !sw) { free(wr); free(sw); free(xq); free(sx); return -1; }
    for (int64_t r = 0; r < R; r++) {
        for (int64_t k = 0; k < K; k++) wr[k] = e2m1_to_float(fp4_code(w, r, k));
        for (int64_t c = 0; c < nch; c++) sw[c] = fp4_weight_scale(w, r, c * LIN_FP4_GROUP);
        for (int64_t m = 0; m < n; m++) {
            float acc = 0.0f;
            for (int64_t c = 0; c < nch; c++) {
                double s = 0.0;
                for (int64_t k = c * LIN_FP4_GROUP; k < (c + 1) * LIN_FP4_GROUP; k++)
                    s += (double)xq[m * K + k] * (double)wr[k];
                float b = (float)s;
                float t = b * sx[m * nkb + (c * LIN_FP4_GROUP) / LIN_BLOCK];
                acc = acc + t * sw[c];
            }
            y[m * R + r] = round_bf16(acc);
        }
    }
    free(wr); free(sw); free(xq); free(sx);
    return 0;
}

/* [LIN-1..LIN-4] The dispatcher. x: [n, w->cols], y: [n, w->rows].
 * exact: [LIN-2] for every dtype (double accumulation of x * dequant(W), fp32 out).
 * official, out_f32 = 1: [LIN-2] (fp32 F.linear of the dequantized weight).
 * official, out_f32 = 0: F32 / BF16 -> [LIN-2] with a bf16 output; F8_E4M3 -> [LIN-3];
 *   FP4 -> [LIN-4]. */
int linear_dequant_bf16(const dsv4_weight *w, int64_t row0, int64_t nrows, const float *x,
                        float *y, int64_t n, dsv4_numerics num)
{
    if (weight_check(w)) return -1;
    if (row0 < 0 || nrows < 0 || row0 + nrows > w->rows)
        return dsv4_set_error("%s: rows [%lld, %lld) outside the weight's %lld rows", wname(w),
                              (long long)row0, (long long)(row0 + nrows), (long long)w->rows);
    int64_t K = w->cols;
    float *wr = dsv4_calloc((size_t)K, sizeof(float), "linear weight row");
    if (!wr) return -1;
    for (int64_t r = 0; r < nrows; r++) {
        for (int64_t k = 0; k < K; k++) wr[k] = round_bf16(weight_at(w, row0 + r, k));
        for (int64_t m = 0; m < n; m++) {
            const float *xm = x + m * K;
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++) acc += (double)xm[k] * (double)wr[k];
            float v = (float)acc;
            y[m * nrows + r] = num == DSV4_OFFICIAL ? round_bf16(v) : v;
        }
    }
    free(wr);
    return 0;
}

int linear(const dsv4_weight *w, const float *x, float *y, int64_t n, int out_f32,
           dsv4_numerics num)
{
    if (weight_check(w)) return -1;
    if (n < 0) return dsv4_set_error("%s: negative row count %lld", wname(w), (long long)n);
    if (num != DSV4_OFFICIAL || out_f32) return gemm_dequant(w, x, y, n, 0);
    if (w->fp4) return gemm_fp4(w, x, y, n);
    if (w->dtype == DSV4_F8_E4M3) return gemm_fp8(w, x, y, n);
    return gemm_dequant(w, x, y, n, 1);
}
