/* omp/norm.c — RMSNorm and the V4 per-head norm, the OpenMP kernels (spec/backends.md,
 * spec/norm.md). Rows are independent outputs: one row per iteration, the row's reduction
 * (sum of squares) in the reference's order on one thread, so results equal ref/norm.c bit
 * for bit. */
#include <math.h>
#include "kernels_omp.h"
#include "norm.h"
#include "numerics.h"

/* ---- RMSNorm ---- */

/* [NORM-1] As ref/norm.c: rmsnorm — the same row function, rows spread over threads.
 * x, y: [n_rows, dim] (may alias), w: [dim] or NULL. */
void rmsnorm_omp(const float *x, const float *w, float *y, int64_t n_rows, int dim, float eps,
                 dsv4_numerics num)
{
#pragma omp parallel for schedule(static) if (n_rows * dim > OMP_MIN_WORK)
    for (int64_t row = 0; row < n_rows; row++)
        rmsnorm_row(x + row * dim, w, y + row * dim, dim, eps, num);
}

/* [NORM-2] [NORM-2b] As ref/norm.c: rmsnorm_head. x: [n_rows, dim] in place, all rows of the
 * call (the row index decides body or scalar tail, whichever thread computes it). */
void rmsnorm_head_omp(float *x, int64_t n_rows, int dim, float eps, dsv4_numerics num)
{
    int64_t body = rmsnorm_head_body(n_rows);
#pragma omp parallel for schedule(static) if (n_rows * dim > OMP_MIN_WORK)
    for (int64_t row = 0; row < n_rows; row++)
        rmsnorm_head_row(x + row * dim, dim, eps, num, row >= body);
}
