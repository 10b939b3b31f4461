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
    int fail = 0;
#pragma omp parallel if (n_rows * n > OMP_MIN_WORK) reduction(| : fail)
    {
        double *t = malloc(sizeof(double) * (size_t)n);
        if (!t) fail = 1;
#pragma omp for schedule(static)
        for (int64_t row = 0; row < n_rows; row++)
            if (t) hadamard_row(x + row * n, n, t, num);
        free(t);
    }
    if (fail) dsv4_set_error("hadamard buffer: out of memory");
}
