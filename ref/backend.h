/* backend.h — one forward, three kernel sets (spec/backends.md).
 *
 * The orchestration (model.c, v4_attention.c, compressor.c, indexer.c, moe.c, mla.c, ...)
 * calls its hot kernels through a table of function pointers with EXACTLY the signatures of
 * the ref/ functions. The table is chosen at run time (`--backend ref|omp|cuda`), so the
 * claims "omp == ref bit for bit" and "cuda within tolerance" are claims about kernels only:
 * everything around them is the same code.
 *
 * The current table is process-global (dsv4_backend()); select it once, before a forward,
 * from a single thread. The default is the reference table. */
#ifndef DSV4_BACKEND_H
#define DSV4_BACKEND_H

#include <stdint.h>
#include "dsv4ref.h"
#include "indexer.h"

typedef struct {
    const char *name;   /* "ref", "omp", "cuda" */
    /* [LIN-1..LIN-4] ref/linear.h: linear */
    int (*linear)(const dsv4_weight *w, const float *x, float *y, int64_t n, int out_f32,
                  dsv4_numerics num);
    /* [NORM-1] ref/norm.h: rmsnorm */
    void (*rmsnorm)(const float *x, const float *w, float *y, int64_t n_rows, int dim,
                    float eps, dsv4_numerics num);
    /* [NORM-2] ref/norm.h: rmsnorm_head */
    void (*rmsnorm_head)(float *x, int64_t n_rows, int dim, float eps, dsv4_numerics num);
    /* [HAD-1] ref/hadamard.h: hadamard */
    void (*hadamard)(float *x, int64_t n_rows, int n, dsv4_numerics num);
    /* [SPA-1..SPA-4] ref/sparse_attention.h: sparse_attention */
    int (*sparse_attention)(const float *q, int64_t H, int64_t D, const float *kv,
                            int64_t n_kv, const int64_t *idx, int64_t n_idx,
                            const float *sink, double scale, float *out, dsv4_numerics num);
    /* [IDX-4] ref/indexer.h: indexer_scores */
    void (*indexer_scores)(const v4_indexer *I, const float *q, const float *w,
                           const float *keys, int64_t n, float *score);
} dsv4_kernels;

/* The three kernel sets. ref: always. omp: omp/backend.c (serial when the compiler has
 * no OpenMP). cuda: provided by the CUDA build (cuda/); the default in ref/backend.c returns
 * NULL and records the error "built without CUDA". */
const dsv4_kernels *dsv4_kernels_ref(void);
const dsv4_kernels *dsv4_kernels_omp(void);
const dsv4_kernels *dsv4_kernels_cuda(void);

/* The table by name ("ref", "omp", "cuda"): NULL with an error when unknown or not built. */
const dsv4_kernels *dsv4_kernels_by_name(const char *name);

/* The current table (the reference table until dsv4_backend_select succeeds). */
const dsv4_kernels *dsv4_backend(void);
/* Selects the current table by name: 0, or -1 with an error naming the backend. */
int dsv4_backend_select(const char *name);

/* omp only: the thread count of the omp kernels (n < 1: the OpenMP default). A no-op when
 * the build has no OpenMP. Returns the count now in effect (1 without OpenMP). */
int dsv4_omp_set_threads(int n);

#endif
