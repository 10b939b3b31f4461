/* kernels_omp.h — the OpenMP kernel set (spec/backends.md): the ref/ functions of the same
 * names with an `_omp` suffix, same signatures, same results bit for bit in both numerics
 * modes at any thread count. Parallel only over independent outputs (rows, heads, keys,
 * output features); every reduction runs in the reference's order inside one thread. */
#ifndef DSV4_KERNELS_OMP_H
#define DSV4_KERNELS_OMP_H

#include <stddef.h>
#include <stdint.h>
#include "dsv4ref.h"
#include "indexer.h"

/* omp/linear.c — [LIN-1..LIN-4], as ref/linear.c: linear */
int linear_omp(const dsv4_weight *w, const float *x, float *y, int64_t n, int out_f32,
               dsv4_numerics num);
/* omp/norm.c — [NORM-1] [NORM-2], as ref/norm.c: rmsnorm, rmsnorm_head */
void rmsnorm_omp(const float *x, const float *w, float *y, int64_t n_rows, int dim, float eps,
                 dsv4_numerics num);
void rmsnorm_head_omp(float *x, int64_t n_rows, int dim, float eps, dsv4_numerics num);
/* omp/hadamard.c — [HAD-1], as ref/hadamard.c: hadamard */
void hadamard_omp(float *x, int64_t n_rows, int n, dsv4_numerics num);
/* omp/sparse_attention.c — [SPA-1..SPA-4], as ref/sparse_attention.c: sparse_attention */
int sparse_attention_omp(const float *q, int64_t H, int64_t D, const float *kv, int64_t n_kv,
                         const int64_t *idx, int64_t n_idx, const float *sink, double scale,
                         float *out, dsv4_numerics num);
/* omp/indexer.c — [IDX-4], as ref/indexer.c: indexer_scores */
void indexer_scores_omp(const v4_indexer *I, const float *q, const float *w, const float *keys,
                        int64_t n, float *score);

/* omp/copy.c — [BK-5] dst = src (n bytes), one slice per thread: the copy bandwidth the
 * benchmark measures the kernels against. */
void copy_omp(void *dst, const void *src, size_t n);

/* omp/flops.c — [BK-5] every thread of the team runs about madds_per_thread double
 * multiply-adds (separate mul and add, `lanes` = 8, 16 or 32 independent sums over an
 * L1-resident tile: the kernels' inner-loop form); returns the total run. The arithmetic
 * peak the benchmark measures the kernels against. */
int64_t madd_omp(int lanes, int64_t madds_per_thread, double *sink);

/* Below this many multiply-adds a kernel runs on the calling thread (no fork/join cost).
 * A scheduling choice only: it never changes a result. */
#define OMP_MIN_WORK 32768

#endif
