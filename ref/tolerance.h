/* tolerance.h — every comparison limit of the project, mirrored from spec/tolerances.md
 * [TOL] (one table, derived from the formats on the path, never tuned). `dsv4ref check`
 * (tools/tapcmp.c) and `dsv4ref compare` (tools/cmd_compare.c) read these numbers. */
#ifndef DSV4_TOLERANCE_H
#define DSV4_TOLERANCE_H

#include <stdint.h>

typedef struct {
    double row_rel_l2;        /* official: pooled per-row rel-L2 of a float tap        1e-2 */
    double logits_rel_l2;     /* official: the same for logits                          2e-2 */
    double outlier_row;       /* a row above this rel-L2 is an outlier                  5e-2 */
    double outlier_frac;      /* at most this fraction of outlier rows                  0.01 */
    int64_t outlier_min_rows; /* below this many rows, no outlier is allowed            20   */
    double jaccard_min;       /* index taps: mean per-row Jaccard                       0.98 */
    double free_median;       /* free-running logits: median row rel-L2                 5e-2 */
    double free_argmax;       /* free-running logits: fraction of rows with same argmax 0.75 */
    double exact_rel_l2;      /* exact mode: rel-L2 of a whole tensor                   1e-6 */
    double cuda_exact_rel_l2; /* CUDA vs reference, exact mode                          1e-5 */
} dsv4_tolerance;

/* [TOL] the table of spec/tolerances.md */
extern const dsv4_tolerance DSV4_TOL;

/* [TOL] outlier rows allowed among n rows: 0 below outlier_min_rows, else 1% (n / 100 in
 * integers), at least 1 (the rule of official_compare.py). */
int64_t dsv4_tol_outliers_allowed(int64_t n_rows);

#endif
