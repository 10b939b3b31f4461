/* omp/backend.c — the OpenMP kernel table (spec/backends.md). */
#ifdef _OPENMP
#include <omp.h>
#endif
#include "backend.h"
#include "kernels_omp.h"

static const dsv4_kernels k_omp = {
    "omp", linear_omp, rmsnorm_omp, rmsnorm_head_omp, hadamard_omp, sparse_attention_omp,
    indexer_scores_omp
};

/* [BK-1] The OpenMP kernels (serial, same results, when the compiler has no OpenMP). */
const dsv4_kernels *dsv4_kernels_omp(void)
{
    return &k_omp;
}

/* [BK-3] Thread count of the omp kernels; n < 1 keeps the OpenMP default. */
int dsv4_omp_set_threads(int n)
{
#ifdef _OPENMP
    if (n >= 1) omp_set_num_threads(n);
    return omp_get_max_threads();
#else
    (void)n;
    return 1;
#endif
}
