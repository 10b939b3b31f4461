/* norm.c — RMSNorm, the V4 weightless per-head query norm, LayerNorm (spec/norm.md).
 *
 * Reductions (sum of squares, mean) are computed exactly in double and rounded once to
 * fp32: that is one fp32 rounding of the true sum, where torch's CPU kernel rounds along a
 * cascade (a last-bit difference in fp32, invisible after the bf16 output rounding except
 * at rare ties). Everything after the reduction follows the official expression step by
 * step, one fp32 (or bf16) rounding per tensor op.
 */
#include <math.h>
#include "norm.h"
#include "numerics.h"

/* ---- RMSNorm ---- */

/* [NORM-1] x, y: [n_rows, dim] (may alias), w: [dim] fp32 (bf16 values) or NULL (= ones).
 * official: v = f32(f32(sum_j f32(x_j^2)) / dim); r = f32(1 / sqrtf(f32(v + eps)));
 *           y_j = bf16( f32(w_j * f32(x_j * r)) )   -- x * rsqrt first, then * w.
 * exact:    y_j = w_j * x_j / sqrt(mean(x^2) + eps) in double, fp32 out.
 * Pitfalls guarded: the multiplication order (x * r) * w; a bf16 rounding between the
 * normalisation and the weight (HF V2 style: two roundings instead of one); eps outside
 * the square root; mean over the wrong dimension (dim is the normalised width). */
void rmsnorm_row(const float *xr, const float *w, float *yr, int dim, float eps,
                 dsv4_numerics num)
{
    if (num == DSV4_OFFICIAL) {
        float v = torch_cpu_sum_squares(xr, dim, 0) / (float)dim;   /* [NUM-8] torch's order */
        float r = 1.0f / sqrtf(v + eps);
        for (int j = 0; j < dim; j++) {
            float t = xr[j] * r;
            if (w) t = w[j] * t;
            yr[j] = round_bf16(t);
        }
    } else {
        double ss = 0.0;
        for (int j = 0; j < dim; j++) ss += (double)xr[j] * (double)xr[j];
        double r = 1.0 / sqrt(ss / (double)dim + (double)eps);
        for (int j = 0; j < dim; j++) {
            double t = (double)xr[j] * r;
            if (w) t *= (double)w[j];
            yr[j] = (float)t;
        }
    }
}

void rmsnorm(const float *x, const float *w, float *y, int64_t n_rows, int dim, float eps,
             dsv4_numerics num)
{
    for (int64_t row = 0; row < n_rows; row++)
        rmsnorm_row(x + row * dim, w, y + row * dim, dim, eps, num);
}

/* [NORM-2] x: [n_rows, dim] in place, no weight (V4 q per-head norm:
 * q *= rsqrt(q.square().mean(-1) + eps) on a bf16 tensor, every op a bf16 tensor op).
 * n_rows must be ALL rows of the call ([B, S, H] flattened, in that order): the row index
 * decides which of PyTorch's two CPU code paths computed its rsqrt [NORM-2b].
 * official: s_j = bf16(x_j^2); m = bf16(f32(f32(sum_j s_j) / dim)); m = bf16(m + eps);
 *           r = bf16(f32(1 / sqrtf(m)))            rows in the vectorized body,
 *           r = bf16(f32(1 / bf16(sqrtf(m))))      rows in the scalar tail;
 *           x_j = bf16(x_j * r).
 *   (the mean of a bf16 tensor is summed in fp32 and divided in fp32, then cast to bf16;
 *    the scalar eps stays fp32 in the addition.)
 * exact: x_j / sqrt(mean(x^2) + eps) in double, fp32 out.
 * Pitfalls guarded: computing it as an fp32 RMSNorm (one rounding): five bf16 roundings
 * differ from one by up to ~4 bf16 ulps of the scale factor r; and [NORM-2b] below. */
/* [NORM-2b] PyTorch's CPU elementwise loop runs 2 * Vectorized<BFloat16>::size() elements
 * per vector step (32 with AVX2, the golden generator's build) and the remaining
 * n mod 32 elements through the scalar lambda, where `1 / std::sqrt(BFloat16)` rounds the
 * square root to bf16 before dividing: those rows get two roundings instead of one.
 * 0 models a single rounding everywhere (the GPU kernel, and the mathematics). */
static int g_torch_cpu_vec_loop = 32;

void rmsnorm_head_set_torch_vec_loop(int n) { g_torch_cpu_vec_loop = n > 0 ? n : 0; }
int rmsnorm_head_torch_vec_loop(void) { return g_torch_cpu_vec_loop; }

void rmsnorm_head_row(float *xr, int dim, float eps, dsv4_numerics num, int scalar_tail)
{
    if (num == DSV4_OFFICIAL) {
        float m = round_bf16(torch_cpu_sum_squares(xr, dim, 1) / (float)dim);   /* [NUM-8] */
        m = round_bf16(m + eps);
        float sq = sqrtf(m);
        if (scalar_tail) sq = round_bf16(sq);   /* [NORM-2b] sqrt rounded to bf16 first */
        float r = round_bf16(1.0f / sq);
        for (int j = 0; j < dim; j++) xr[j] = round_bf16(xr[j] * r);
    } else {
        double ss = 0.0;
        for (int j = 0; j < dim; j++) ss += (double)xr[j] * (double)xr[j];
        double r = 1.0 / sqrt(ss / (double)dim + (double)eps);
        for (int j = 0; j < dim; j++) xr[j] = (float)((double)xr[j] * r);
    }
}

int64_t rmsnorm_head_body(int64_t n_rows)
{
    int64_t w = g_torch_cpu_vec_loop;
    return w > 0 ? n_rows - n_rows % w : n_rows;   /* rows [body, n_rows) = scalar tail */
}

void rmsnorm_head(float *x, int64_t n_rows, int dim, float eps, dsv4_numerics num)
{
    int64_t body = rmsnorm_head_body(n_rows);
    for (int64_t row = 0; row < n_rows; row++)
        rmsnorm_head_row(x + row * dim, dim, eps, num, row >= body);
}

/* ---- LayerNorm ---- */

/* [NORM-3] x, y: [n_rows, dim] (may alias), g, b: [dim] fp32 (NULL = ones / zeros).
 * Population variance (divide by dim, not dim - 1).
 * official: mu = f32(mean exact); var = f32(sum_j (x_j - mu_exact)^2 / dim);
 *           rstd = f32(1 / sqrtf(f32(var + eps)));
 *           y_j = bf16( f32(f32(f32(x_j - mu) * rstd) * g_j) + b_j )
 *   (torch's CPU kernel forms the same value as (x*rstd - mu*rstd)*g + b with Welford
 *    moments: last-bit fp32 differences, rare bf16 ties.)
 * exact: double, fp32 out.
 * Pitfalls guarded: 4 (the V3.2 indexer k_norm is a LayerNorm with bias, not an RMSNorm);
 * the unbiased (dim - 1) variance. */
void layernorm(const float *x, const float *g, const float *b, float *y, int64_t n_rows,
               int dim, float eps, dsv4_numerics num)
{
    for (int64_t row = 0; row < n_rows; row++) {
        const float *xr = x + row * dim;
        float *yr = y + row * dim;
        double s = 0.0;
        for (int j = 0; j < dim; j++) s += (double)xr[j];
        double mu = s / (double)dim;
        double vs = 0.0;
        for (int j = 0; j < dim; j++) vs += ((double)xr[j] - mu) * ((double)xr[j] - mu);
        double var = vs / (double)dim;
        if (num == DSV4_OFFICIAL) {
            float mu32 = (float)mu, var32 = (float)var;
            float rstd = 1.0f / sqrtf(var32 + eps);
            for (int j = 0; j < dim; j++) {
                float t = (xr[j] - mu32) * rstd;
                if (g) t = t * g[j];
                if (b) t = t + b[j];
                yr[j] = round_bf16(t);
            }
        } else {
            double rstd = 1.0 / sqrt(var + (double)eps);
            for (int j = 0; j < dim; j++) {
                double t = ((double)xr[j] - mu) * rstd;
                if (g) t *= (double)g[j];
                if (b) t += (double)b[j];
                yr[j] = (float)t;
            }
        }
    }
}
