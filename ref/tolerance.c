/* tolerance.c — the numbers of spec/tolerances.md [TOL] (ref/tolerance.h). Each is derived
 * there from the formats on the path (bf16 u = 2^-8 per rounding, fp32 u = 2^-24); change
 * the spec page first, then this table. */
#include "tolerance.h"

/* [TOL] */
const dsv4_tolerance DSV4_TOL = {
    1e-2,    /* row_rel_l2: sqrt(n) 2^-8 with n ~ 6-12 bf16 roundings on a teacher-forced path */
    2e-2,    /* logits_rel_l2: two more roundings (HCHead, final norm) and the whole last layer */
    5e-2,    /* outlier_row: a 1-ulp input change moving an FP8/FP4 code */
    0.01,    /* outlier_frac */
    20,      /* outlier_min_rows */
    0.98,    /* jaccard_min: bf16 ties at the top-k boundary */
    5e-2,    /* free_median: the official code rerun in fp64, free-running, drifts to ~2e-2 */
    0.75,    /* free_argmax */
    1e-6,    /* exact_rel_l2: fp32 storage (2^-24) over <= ~16 stored steps per path */
    1e-5,    /* cuda_exact_rel_l2: fp32 accumulation, u sqrt(K) for K <= 4096 */
};

/* [TOL] */
int64_t dsv4_tol_outliers_allowed(int64_t n_rows)
{
    if (n_rows < DSV4_TOL.outlier_min_rows) return 0;
    return n_rows / 100 > 1 ? n_rows / 100 : 1;
}
