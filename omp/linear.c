/* omp/linear.c — y = x W^T, the OpenMP kernel (spec/backends.md, spec/linear.md).
 *
 * Bit-identical to ref/linear.c: every output y[m][r] is computed by one thread with the
 * reference's arithmetic in the reference's order (the same double sums over the same k
 * range in ascending k, the same fp32 block accumulation in ascending block order). What
 * changes is only WHICH outputs are computed together:
 *   - the weight is dequantized RB rows at a time into a tile t[k][j] (k-major), with the
 *     same value the reference's weight_at gives (the same fp32 product code * scale);
 *   - the inner loop runs over the RB rows j of the tile: RB independent sums that advance
 *     together in k (the compiler vectorizes across them; no sum is split or reordered);
 *   - tiles x blocks of MB input rows are the parallel tasks (independent outputs).
 * The e4m3 / e2m1 decodes are lookup tables filled from ref/numerics.c's own functions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels_omp.h"
#include "linear.h"
#include "numerics.h"

#define LIN_BLOCK 128      /* FP8 weight block and activation block (ref/linear.c) */
#define LIN_FP4_GROUP 32   /* FP4 weight scale group (ref/linear.c) */
#define RB 16              /* weight rows per tile: divides 128, so a tile is in one FP8 row block */
#define MB 16              /* input rows per task */
#define KC 128             /* K chunk dequantized at once: [KC][RB] doubles = 16 KiB (L1) */

/* The weight's name for messages (ref/linear.c: wname). */
static const char *wname(const dsv4_weight *w)
{
    return w->name ? w->name : "weight";
}

/* ---- tiles ---- */

typedef struct {
    float e4m3[256];       /* e4m3_to_float of every code */
    double e4m3d[256];     /* the same, widened */
    float e2m1[16];        /* e2m1_to_float of every code */
    double e2m1d[16];      /* the same, widened */
} luts;

/* [NUM-3] [NUM-5] The decode tables, filled by the reference's own decoders. */
static void luts_init(luts *L)
{
    for (int i = 0; i < 256; i++) {
        L->e4m3[i] = e4m3_to_float((uint8_t)i);
        L->e4m3d[i] = (double)L->e4m3[i];
    }
    for (int i = 0; i < 16; i++) {
        L->e2m1[i] = e2m1_to_float((uint8_t)i);
        L->e2m1d[i] = (double)L->e2m1[i];
    }
}

/* Element i of an unaligned fp32 array. */
static float ld_f32(const void *p, int64_t i)
{
    float v;
    memcpy(&v, (const unsigned char *)p + i * 4, 4);
    return v;
}

/* bf16 bits -> float: the bits in the upper half (ref/numerics.c: bf16_to_float). */
static float ld_bf16(const void *p, int64_t i)
{
    uint16_t b;
    uint32_t u;
    float v;
    memcpy(&b, (const unsigned char *)p + i * 2, 2);
    u = (uint32_t)b << 16;
    memcpy(&v, &u, 4);
    return v;
}

/* Byte i. */
static uint8_t ld_u8(const void *p, int64_t i)
{
    return ((const unsigned char *)p)[i];
}

/* FP8 block scale of row block rb, column block cb (ref/linear.c: fp8_weight_scale). */
static float fp8_scale(const dsv4_weight *w, int64_t rb, int64_t cb)
{
    int64_t ncb = (w->cols + LIN_BLOCK - 1) / LIN_BLOCK;
    int64_t i = rb * ncb + cb;
    return w->scale_dtype == DSV4_F32 ? ld_f32(w->scale, i) : e8m0_to_float(ld_u8(w->scale, i));
}

/* FP4 group scale of W[r][c] (ref/linear.c: fp4_weight_scale). */
static float fp4_scale(const dsv4_weight *w, int64_t r, int64_t c)
{
    return e8m0_to_float(ld_u8(w->scale, r * (w->cols / LIN_FP4_GROUP) + c / LIN_FP4_GROUP));
}

/* [LIN-1] Chunk k0 .. k0+KC-1 of the tile of rows r0 .. r0+RB-1 (rows >= R are zero), as
 * doubles: t: [KC][RB] (k-major). K is a multiple of KC here or the chunk is the tail
 * (k1 = K). scaled = 1: the dequantized value weight_at(w, r, k) (the fp32 product
 * code * scale, then widened); scaled = 0: the raw e4m3 / e2m1 value (the FP8 / FP4 GEMMs
 * apply the scales per block). */
static void load_chunk(const dsv4_weight *w, const luts *L, int64_t r0, int64_t k0, int64_t k1,
                       int scaled, double *t)
{
    int64_t K = w->cols, R = w->rows;
    for (int j = 0; j < RB; j++) {
        int64_t r = r0 + j;
        double *tj = t + j;
        if (r >= R) {
            for (int64_t k = k0; k < k1; k++) tj[(k - k0) * RB] = 0.0;
            continue;
        }
        if (w->fp4) {
            const unsigned char *row = (const unsigned char *)w->data + (r * K) / 2;
            if (!scaled)
                for (int64_t k = k0; k < k1; k += 2) {  /* k0, K even: whole bytes */
                    uint8_t byte = row[k / 2];
                    tj[(k - k0) * RB] = L->e2m1d[byte & 0xF];
                    tj[(k + 1 - k0) * RB] = L->e2m1d[byte >> 4];
                }
            else
                for (int64_t k = k0; k < k1; k += 2) {
                    uint8_t byte = row[k / 2];
                    float sc = fp4_scale(w, r, k);     /* k, k+1 share a 32-group */
                    tj[(k - k0) * RB] = (double)(L->e2m1[byte & 0xF] * sc);
                    tj[(k + 1 - k0) * RB] = (double)(L->e2m1[byte >> 4] * sc);
                }
        } else if (w->dtype == DSV4_F8_E4M3) {
            const unsigned char *row = (const unsigned char *)w->data + r * K;
            if (!scaled)
                for (int64_t k = k0; k < k1; k++) tj[(k - k0) * RB] = L->e4m3d[row[k]];
            else
                for (int64_t k = k0; k < k1; k++)
                    tj[(k - k0) * RB] = (double)(L->e4m3[row[k]] * fp8_scale(w, r / LIN_BLOCK, k / LIN_BLOCK));
        } else if (w->dtype == DSV4_BF16) {
            for (int64_t k = k0; k < k1; k++) tj[(k - k0) * RB] = (double)ld_bf16(w->data, r * K + k);
        } else {
            for (int64_t k = k0; k < k1; k++) tj[(k - k0) * RB] = (double)ld_f32(w->data, r * K + k);
        }
    }
}

/* RB sums s[j] += x[k] * t[k][j] over k = k0 .. k1-1 (chunk-relative t) in ascending k: each
 * s[j] is exactly the reference's sequential double sum; the RB sums are independent
 * (vectorized across j, RB chains in flight). */
static void dot_tile(const float *x, const double *t, int64_t k0, int64_t k1, double *s)
{
    double a[RB];
    for (int j = 0; j < RB; j++) a[j] = s[j];
    for (int64_t k = k0; k < k1; k++) {
        double xk = (double)x[k];
        const double *tk = t + (k - k0) * RB;
        for (int j = 0; j < RB; j++) a[j] += xk * tk[j];
    }
    for (int j = 0; j < RB; j++) s[j] = a[j];
}

/* ---- GEMMs ---- */

enum { G_DEQUANT = 0, G_FP8 = 1, G_FP4 = 2 };

/* Per-task state of MB input rows x RB outputs, carried from one K chunk to the next. */
typedef struct {
    double s[MB][RB];      /* G_DEQUANT: the running double sums */
    float acc[MB][RB];     /* G_FP8 / G_FP4: the fp32 block accumulators */
} task_acc;

/* One task: the tile of rows r0 .. r0+RB-1 against input rows m0 .. m1-1 (m1 - m0 <= MB),
 * K walked in chunks of KC (a multiple of 128: FP8 blocks and FP4 groups never straddle a
 * chunk), each chunk dequantized once into t and used by every input row.
 * G_DEQUANT [LIN-2]: y = f32(double sum over all K) (bf16_out: then bf16).
 * G_FP8 [LIN-3]: per 128-block b = f32(double block sum); sc = f32(sx * sw); acc = acc + b*sc.
 * G_FP4 [LIN-4]: per 32-group b = f32(double group sum); t = b * sx; acc = acc + t * sw. */
static void gemm_task(const dsv4_weight *w, const luts *L, int kind, int bf16_out,
                      const float *x, const float *sx, double *t, task_acc *T, int64_t r0,
                      int64_t m0, int64_t m1, float *y)
{
    int64_t K = w->cols, R = w->rows, nkb = K / LIN_BLOCK;
    int nr = R - r0 < RB ? (int)(R - r0) : RB;
    for (int64_t m = m0; m < m1; m++)
        for (int j = 0; j < RB; j++) {
            T->s[m - m0][j] = 0.0;
            T->acc[m - m0][j] = 0.0f;
        }
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        int64_t k1 = k0 + KC < K ? k0 + KC : K;
        load_chunk(w, L, r0, k0, k1, kind == G_DEQUANT, t);
        for (int64_t m = m0; m < m1; m++) {
            const float *xm = x + m * K;
            if (kind == G_DEQUANT) {
                dot_tile(xm, t, k0, k1, T->s[m - m0]);
                continue;
            }
            float *acc = T->acc[m - m0];
            int64_t g = kind == G_FP8 ? LIN_BLOCK : LIN_FP4_GROUP;
            for (int64_t b0 = k0; b0 < k1; b0 += g) {
                double s[RB];
                for (int j = 0; j < RB; j++) s[j] = 0.0;
                dot_tile(xm, t + (b0 - k0) * RB, b0, b0 + g, s);
                if (kind == G_FP8) {
                    float sc = sx[m * nkb + b0 / LIN_BLOCK] * fp8_scale(w, r0 / LIN_BLOCK, b0 / LIN_BLOCK);
                    for (int j = 0; j < RB; j++) {
                        float b = (float)s[j];
                        acc[j] = acc[j] + b * sc;
                    }
                } else {
                    float xs = sx[m * nkb + b0 / LIN_BLOCK];
                    for (int j = 0; j < nr; j++) {
                        float b = (float)s[j];
                        float tt = b * xs;
                        acc[j] = acc[j] + tt * fp4_scale(w, r0 + j, b0);
                    }
                }
            }
        }
    }
    for (int64_t m = m0; m < m1; m++)
        for (int j = 0; j < nr; j++) {
            float v = kind == G_DEQUANT ? (float)T->s[m - m0][j] : T->acc[m - m0][j];
            y[m * R + r0 + j] = (kind != G_DEQUANT || bf16_out) ? round_bf16(v) : v;
        }
}

/* [LIN-3] act_quant of x: [n, K] -> xq [n, K] (e4m3 values), sx [n, K/128]; the checks and
 * messages of ref/linear.c: quantize_input (first non-finite element in row-major order). */
static int quantize_input(const dsv4_weight *w, const luts *L, const float *x, int64_t n,
                          float *xq, float *sx)
{
    int64_t K = w->cols, nkb = K / LIN_BLOCK;
    int fail = 0;
    for (int64_t i = 0; i < n * K; i++)
        if (!isfinite(x[i]))
            return dsv4_set_error("%s: input x[%lld][%lld] = %g is not finite; the official "
                                  "graph quantizes this input to FP8", wname(w),
                                  (long long)(i / K), (long long)(i % K), (double)x[i]);
#pragma omp parallel if (n * K > OMP_MIN_WORK) reduction(| : fail)
    {
        uint8_t *codes = malloc((size_t)K);
        if (!codes) fail = 1;
#pragma omp for schedule(static)
        for (int64_t m = 0; m < n; m++) {
            if (!codes) continue;
            fp8_act_quant(x + m * K, K, LIN_BLOCK, codes, sx + m * nkb);
            for (int64_t k = 0; k < K; k++) xq[m * K + k] = L->e4m3[codes[k]];
        }
        free(codes);
    }
    return fail ? dsv4_set_error("%s: out of memory (linear input codes)", wname(w)) : 0;
}

/* [LIN-1..LIN-4] As ref/linear.c: linear. x: [n, w->cols], y: [n, w->rows]. */
int linear_omp(const dsv4_weight *w, const float *x, float *y, int64_t n, int out_f32,
               dsv4_numerics num)
{
    if (weight_check(w)) return -1;
    if (n < 0) return dsv4_set_error("%s: negative row count %lld", wname(w), (long long)n);
    int64_t K = w->cols, R = w->rows, nkb = K / LIN_BLOCK;
    int kind = G_DEQUANT, bf16_out = 0;
    if (num == DSV4_OFFICIAL && !out_f32) {
        if (w->fp4) kind = G_FP4;
        else if (w->dtype == DSV4_F8_E4M3) kind = G_FP8;
        else bf16_out = 1;
    }
    if (n == 0) return 0;
    luts L;
    luts_init(&L);
    float *xq = NULL, *sx = NULL;
    if (kind != G_DEQUANT) {
        if (K % LIN_BLOCK != 0)
            return dsv4_set_error("%s: in_features %lld is not a multiple of 128: the official "
                                  "act_quant (block 128) cannot quantize this input",
                                  wname(w), (long long)K);
        xq = dsv4_calloc((size_t)(n * K), sizeof(float), "linear quantized input");
        sx = dsv4_calloc((size_t)(n * nkb), sizeof(float), "linear input scales");
        if (!xq || !sx || quantize_input(w, &L, x, n, xq, sx)) { free(xq); free(sx); return -1; }
        x = xq;
    }
    int64_t ntile = (R + RB - 1) / RB, nmb = (n + MB - 1) / MB;
    int fail = 0;
#pragma omp parallel if (n * R * K > OMP_MIN_WORK) reduction(| : fail)
    {
        double *t = malloc(sizeof(double) * (size_t)(KC * RB));
        task_acc *T = malloc(sizeof *T);
        if (!t || !T) fail = 1;
#pragma omp for collapse(2) schedule(dynamic)
        for (int64_t tile = 0; tile < ntile; tile++)
            for (int64_t mb = 0; mb < nmb; mb++) {
                if (!t || !T) continue;
                int64_t m1 = (mb + 1) * MB < n ? (mb + 1) * MB : n;
                gemm_task(w, &L, kind, bf16_out, x, sx, t, T, tile * RB, mb * MB, m1, y);
            }
        free(t);
        free(T);
    }
    free(xq);
    free(sx);
    return fail ? dsv4_set_error("%s: out of memory (linear weight tile)", wname(w)) : 0;
}
