/* dumpcmp.h — compare two safetensors dumps name by name with the tolerance table of
 * spec/tolerances.md (ref/tolerance.h): the engine of `dsv4ref compare` and of `dsv4ref check`
 * on exact-mode files (spec/validating-your-implementation.md). */
#ifndef DSV4_DUMPCMP_H
#define DSV4_DUMPCMP_H

#include <stdio.h>
#include "dsv4ref.h"
#include "safetensors.h"

/* [TOL-CMP] Compares the tensors of `expected` (its taps.* when it holds any, else every tensor
 * except aux.*; with only != NULL, only names whose full name or module path
 * (the name after taps.<k>.) starts with `only`) with the same names in
 * `actual`, in any float dtype each (F64 / F32 / F16 / BF16 read as double):
 *   index tensors (integer dtype on either side, or a name ending in attn.indexer / gate.1):
 *     per row (last dim) as sets, -1 dropped; mean Jaccard >= DSV4_TOL.jaccard_min;
 *   exact: rel-L2 of the whole tensor <= DSV4_TOL.exact_rel_l2;
 *   official: per-row rel-L2 (row = one token: the dims after [B, S] for ndim >= 3, the last
 *     dim for ndim 2), pooled over the non-outlier rows <= row_rel_l2 (logits: logits_rel_l2),
 *     at most dsv4_tol_outliers_allowed() rows above outlier_row;
 *   non-finite values must sit at the same places with the same value.
 * A tensor missing from `actual` or of another shape fails. One line per tensor (max abs,
 * rel-L2, cosine, Jaccard, worst position with both values) then "N passed, M failed".
 * Returns 0 all pass, 1 some fail, 2 nothing to compare. */
int dumpcmp_run(const st_file *expected, const st_file *actual, dsv4_numerics num, const char *only,
                FILE *out);

#endif
