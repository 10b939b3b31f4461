/* omp/norm.c — RMSNorm and the V4 per-head norm, the OpenMP kernels (spec/backends.md,
 * spec/norm.md). Rows are independent outputs: one row per iteration, the row's reduction
 * (sum of squares) in the reference's order on one thread, so results equal ref/norm.c bit
 * for bit. */
#include <math.h>
#include "kernels_omp.h"
#include "norm.h"
#include "numerics.h"

/* ---- RMSNorm ---- */

/* [NORM-1] As ref/norm.c: rmsnorm. x, y: [n_rows, dim] (may alias), w: [dim] or NULL. */
void rmsnorm_omp(const float *x, const float *w, float *y, int64_t n_rows, int dim, float eps,
                 dsv4_numerics num)
{
#pragma omp parallel for schedule(static) if (n_rows * dim > OMP_MIN_WORK)
    for (int64_t row = 0; row < n_rows; row++) {
        const float *xr = x + row * dim;
        float *yr = y + row * dim;
        if (num == DSV4_OFFICIAL) {
            double ss = 0.0;
            for (int j = 0; j < dim; j++) ss += (double)(xr[j] * xr[j]);
            float v = (float)ss / (float)dim;
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
}

/* [NORM-2] [NORM-2b] As ref/norm.c: rmsnorm_head. x: [n_rows, dim] in place, all rows of the
 * call (the row index decides body or scalar tail, whichever thread computes it). */
void rmsnorm_head_omp(float *x, int64_t n_rows, int dim, float eps, dsv4_numerics num)
{
    int64_t w = rmsnorm_head_torch_vec_loop();
    int64_t body = w > 0 ? n_rows - n_rows % w : n_rows;   /* rows [body, n_rows): scalar tail */
#pragma omp parallel for schedule(static) if (n_rows * dim > OMP_MIN_WORK)
    for (int64_t row = 0; row < n_rows; row++) {
        float *xr = x + row * dim;
        if (num == DSV4_OFFICIAL) {
            double ss = 0.0;
            for (int j = 0; j < dim; j++) ss += (double)round_bf16(xr[j] * xr[j]);
            float m = round_bf16((float)ss / (float)dim);
            m = round_bf16(m + eps);
            float sq = sqrtf(m);
            if (row >= body) sq = round_bf16(sq);   /* [NORM-2b] scalar tail */
            float r = round_bf16(1.0f / sq);
            for (int j = 0; j < dim; j++) xr[j] = round_bf16(xr[j] * r);
        } else {
            double ss = 0.0;
            for (int j = 0; j < dim; j++) ss += (double)xr[j] * (double)xr[j];
            double r = 1.0 / sqrt(ss / (double)dim + (double)eps);
            for (int j = 0; j < dim; j++) xr[j] = (float)((double)xr[j] * r);
        }
    }
}
