/* hadamard.c — the Walsh-Hadamard rotation of the indexers (spec/hadamard.md). */
#include <math.h>
#include <stdlib.h>
#include "hadamard.h"
#include "numerics.h"

/* ---- Hadamard ---- */

/* [HAD-1] x: [n_rows, n] in place, n a power of two (128 in the indexers):
 *   y = n^-1/2 * H_n x,   H[i][j] = (-1)^popcount(i & j)   (Sylvester / natural order)
 * computed by log2(n) butterfly stages (a, b) <- (a + b, a - b) on pairs at distance h,
 * h = 1, 2, 4, ... — that order gives exactly the Sylvester matrix.
 * official: the butterflies exact (double: sums of n bf16 values), the result rounded to
 *   fp32, times the fp32 constant f32(n^-1/2) (0x3db504f3 for 128), one bf16 rounding
 *   (the GPU kernel sums in fp32 along the same butterflies; the official CPU stand-in
 *   sums in fp64 — last-bit effects).
 * exact: double, times 1/sqrt(n) in double, fp32 out.
 * On n not a power of two (or n > 2^20) x is left unchanged and an error is recorded.
 * Pitfalls guarded: 4 / 11 (the rotation before FP8 / FP4 quantization is not optional);
 * a sequency-ordered (Walsh) or unnormalised matrix; scaling by 1/n instead of n^-1/2. */
void hadamard_row(float *xr, int n, double *t, dsv4_numerics num)
{
    const float scale32 = (float)(1.0 / sqrt((double)n));
    const double scale64 = 1.0 / sqrt((double)n);
    for (int i = 0; i < n; i++) t[i] = (double)xr[i];
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                double a = t[j], b = t[j + h];
                t[j] = a + b;
                t[j + h] = a - b;
            }
    for (int i = 0; i < n; i++) {
        if (num == DSV4_OFFICIAL) xr[i] = round_bf16((float)t[i] * scale32);
        else xr[i] = (float)(t[i] * scale64);
    }
}

void hadamard(float *x, int64_t n_rows, int n, dsv4_numerics num)
{
    if (n <= 0 || n > (1 << 20) || (n & (n - 1)) != 0) {
        dsv4_set_error("hadamard: size %d is not a power of two (<= 2^20)", n);
        return;
    }
    double *t = dsv4_calloc((size_t)n, sizeof(double), "hadamard buffer");
    if (!t) return;
    for (int64_t row = 0; row < n_rows; row++) hadamard_row(x + row * n, n, t, num);
    free(t);
}
