/* omp/copy.c — a parallel memory copy: the bandwidth yardstick of `dsv4ref bench`
 * (spec/backends.md [BK-5]). Each thread copies one contiguous slice. */
#include <string.h>
#include "kernels_omp.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* [BK-5] dst[0..n) = src[0..n), split into one slice per thread. */
void copy_omp(void *dst, const void *src, size_t n)
{
#pragma omp parallel
    {
        size_t nt = 1, me = 0;
#ifdef _OPENMP
        nt = (size_t)omp_get_num_threads();
        me = (size_t)omp_get_thread_num();
#endif
        size_t a = n / nt * me, b = me + 1 == nt ? n : n / nt * (me + 1);
        memcpy((char *)dst + a, (const char *)src + a, b - a);
    }
}
