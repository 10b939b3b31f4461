/* tapcmp.h — judge computed taps against a golden file with the rules of
 * ../shared/tools/official_compare.py (spec/tolerances.md [TOL]): per module path pooled over
 * calls, one token row at a time; index taps as sets (Jaccard); teacher-mode excusal of rows
 * downstream of a differing discrete choice; free-running judges only the logits. */
#ifndef DSV4_TAPCMP_H
#define DSV4_TAPCMP_H

#include <stdio.h>
#include "safetensors.h"

typedef enum { TAPCMP_TEACHER = 0, TAPCMP_FREE = 1 } tapcmp_mode;

/* Compares every taps.<k>.<path> of golden with the same name in ours; prints one line per
 * path (max abs, rel-L2, cosine, Jaccard, worst position with both values) to out, then
 * "N passed, M failed". Returns 0 all gating paths pass, 1 some fail, 2 nothing to compare. */
int tapcmp_run(const st_file *golden, const st_file *ours, tapcmp_mode mode, FILE *out);

#endif
