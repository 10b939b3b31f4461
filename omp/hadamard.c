/* omp/hadamard.c — the Walsh-Hadamard rotation, the OpenMP kernel (spec/backends.md,
 * spec/hadamard.md). Rows are independent; each row's butterflies run in the reference's
 * stage order on one thread, so results equal ref/hadamard.c bit for bit. */
#include <math.h>
#include <stdlib.h>
#include "hadamard.h"
#include "kernels_omp.h"
#include "numerics.h"

/* [HAD-1] As ref/hadamard.c: hadamard. x: [n_rows, n] in place, n a power of two. */
void hadamard_omp(float *x, int64_t n_rows, int n, dsv4_numerics num)
{
    if (n <= 0 || n > (1 << 20) || (n & (n - 1)) != 0) {
        dsv4_set_error("hadamard: size %d is not a power of two (<= 2^20)", n);
        return;
    }
    const float scale32 = (float)(1.0 / sqrt((double)n));
    const double scale64 = 1.0 / sqrt((double)n);
    int fail = 0;
#pragma omp parallel if (n_rows * n > OMP_MIN_WORK) reduction(| : fail)
    {
        double *t = malloc(sizeof(double) * (size_t)n);
        if (!t) fail = 1;
#pragma omp for schedule(static)
        for (int64_t row = 0; row < n_rows; row++) {
            if (!t) continue;
            float *xr = x + row * n;
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
        free(t);
    }
    if (fail) dsv4_set_error("hadamard buffer: out of memory");
}
