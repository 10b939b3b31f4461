/* hadamard.h — the Walsh-Hadamard rotation of the indexers (spec/hadamard.md). */
#ifndef DSV4_HADAMARD_H
#define DSV4_HADAMARD_H

#include <stdint.h>
#include "dsv4ref.h"

/* [HAD-1] x: [n_rows, n] in place, n a power of two:
 *   y = n^-1/2 * H_n x,  H[i][j] = (-1)^popcount(i & j)  (Sylvester order).
 * official: butterflies on f32(x) summed exactly, times f32(n^-1/2), one bf16 rounding.
 * exact: double, fp32 out.
 * n not a power of two (or > 2^20): x is left unchanged and dsv4_set_error() is called. */
void hadamard(float *x, int64_t n_rows, int n, dsv4_numerics num);
/* [HAD-1] one row (xr: [n], in place; n a power of two; t: [n] scratch): what every
 * backend's row loop calls. */
void hadamard_row(float *xr, int n, double *t, dsv4_numerics num);

#endif
