/* omp/flops.c — the double-precision multiply-add throughput: the arithmetic yardstick of
 * `dsv4ref bench` (spec/backends.md [BK-5]), next to the copy bandwidth (omp/copy.c).
 *
 * The bit-exact kernels' inner loops are W independent double sums a[j] = a[j] + q[j] * x
 * (one lane per output: heads, weight rows, channels), q read from an L1-resident tile, x a
 * float widened to double and broadcast. This file runs exactly that loop, with nothing else:
 * every thread its own tile [D][W] (D = 128: 8 KiB at W = 8 .. 32 KiB at W = 32, in L1) and
 * its own sums, no memory traffic beyond L1, no reduction across threads. Compiled like every
 * omp/ file (-ffp-contract=off, no fast-math), the multiply and the add stay two instructions
 * and are never fused: the same instruction mix as the kernels, so its rate is the ceiling a
 * bit-exact kernel of this form can reach (the "arithmetic peak"). */
#include <stdlib.h>
#include "kernels_omp.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define FD 128   /* tile depth (the loop over d of one pass) */

/* One thread: `passes` passes of a[j] += q[d][j] * (double)x[d] over d < FD, j < W; returns
 * the sum of the W sums (kept live, so the compiler cannot drop the work). */
#define MADD_LANES(W)                                                                        \
    static double madd_##W(int64_t passes, int seed)                                        \
    {                                                                                        \
        static const int w = W;                                                              \
        double q[FD * W], a[W];                                                              \
        float x[FD];                                                                         \
        for (int i = 0; i < FD * w; i++) q[i] = 1e-3 * (double)((i + seed) % 7);            \
        for (int d = 0; d < FD; d++) x[d] = 0.25f * (float)((d + seed) % 5);                 \
        for (int j = 0; j < w; j++) a[j] = 0.0;                                              \
        for (int64_t p = 0; p < passes; p++) {                                               \
            for (int d = 0; d < FD; d++) {                                                   \
                double xd = (double)x[d];                                                    \
                for (int j = 0; j < W; j++) a[j] += q[d * W + j] * xd;                       \
            }                                                                                \
            x[p % FD] += 0.0f; /* a store between passes: the loop stays a loop */           \
        }                                                                                    \
        double s = 0.0;                                                                      \
        for (int j = 0; j < w; j++) s += a[j];                                               \
        return s;                                                                            \
    }
MADD_LANES(8)
MADD_LANES(16)
MADD_LANES(32)

/* [BK-5] Every thread of the current team runs about `madds_per_thread` multiply-adds with
 * `lanes` (8, 16 or 32; else 16) independent sums. Returns the multiply-adds run in total
 * (all threads); *sink receives a value that depends on all of them (print or ignore it). */
int64_t madd_omp(int lanes, int64_t madds_per_thread, double *sink)
{
    if (lanes != 8 && lanes != 32) lanes = 16;
    int64_t passes = madds_per_thread / ((int64_t)FD * lanes);
    if (passes < 1) passes = 1;
    int64_t total = 0;
    double s = 0.0;
#pragma omp parallel reduction(+ : total, s)
    {
        int me = 0;
#ifdef _OPENMP
        me = omp_get_thread_num();
#endif
        s += lanes == 8 ? madd_8(passes, me) : lanes == 32 ? madd_32(passes, me) : madd_16(passes, me);
        total += passes * FD * lanes;
    }
    if (sink) *sink = s;
    return total;
}
