/* hooks.cu — the CLI's cuda backend: strong definitions of the ref/ functions that cuda/ has
 * kernels for. The reference library is linked with these functions made weak
 * (cuda/Makefile: objcopy -W), so every call inside the reference forward — model.c,
 * v4_attention.c, indexer.c, moe.c, compressor.c, mhc.c — lands here; `ref_<name>` is the
 * reference's own function (a renamed copy), used for --backend ref and for shapes a kernel
 * does not take. This is the stand-in for ref/backend.h until that table lands on main.
 * A CUDA failure is fatal (exit 2 with the error): a check must never pass silently on the
 * reference path. */
#include <cstdio>
#include <cstdlib>
#include "cuda_common.cuh"
#include "kernels.h"

extern "C" {
#include "linear.h"
#include "norm.h"
#include "hadamard.h"
#include "sparse_attention.h"
#include "indexer.h"
#include "mhc.h"
#include "moe.h"
#include "compressor.h"

int ref_linear(const dsv4_weight *w, const float *x, float *y, int64_t n, int out_f32, dsv4_numerics num);
void ref_rmsnorm(const float *x, const float *w, float *y, int64_t n_rows, int dim, float eps, dsv4_numerics num);
void ref_rmsnorm_head(float *x, int64_t n_rows, int dim, float eps, dsv4_numerics num);
void ref_hadamard(float *x, int64_t n_rows, int n, dsv4_numerics num);
int ref_sparse_attention(const float *q, int64_t H, int64_t D, const float *kv, int64_t n_kv,
                         const int64_t *idx, int64_t n_idx, const float *sink, double scale,
                         float *out, dsv4_numerics num);
void ref_indexer_scores(const v4_indexer *I, const float *q, const float *w, const float *keys,
                        int64_t n, float *score);
void ref_mhc_post(const float *o, const float *res, const float *post, const float *comb, int64_t n,
                  int hc, int64_t dim, float *y, dsv4_numerics num);
int ref_moe_expert_forward(const moe_expert *e, int64_t dim, int64_t inter, double swiglu_limit,
                           const float *a, const float *rw, int64_t n, float *y, dsv4_numerics num);
int ref_compressor_decode(v4_compressor *C, const float *x, int64_t B, int64_t t, float *out);

int dsv4_cuda_enabled = 0;   /* set by cuda/main.cu from --backend */
}

/* a CUDA failure inside a void reference function: one line, exit 2 */
static void fatal(const char *what)
{
    fprintf(stderr, "dsv4ref: cuda backend: %s: %s\n", what, dsv4_last_error());
    exit(2);
}

/* [LIN-1..LIN-4] every GEMM of the forward (bad input: the reference's own error messages) */
extern "C" int linear(const dsv4_weight *w, const float *x, float *y, int64_t n, int out_f32,
                      dsv4_numerics num)
{
    if (!dsv4_cuda_enabled) return ref_linear(w, x, y, n, out_f32, num);
    return cuda_linear(w, x, y, n, out_f32, num);   /* errors are the ref's own (bad input) */
}

/* [NORM-1] */
extern "C" void rmsnorm(const float *x, const float *w, float *y, int64_t n_rows, int dim,
                        float eps, dsv4_numerics num)
{
    if (!dsv4_cuda_enabled) { ref_rmsnorm(x, w, y, n_rows, dim, eps, num); return; }
    if (cuda_rmsnorm(x, w, y, n_rows, dim, eps, num)) fatal("rmsnorm");
}

/* [NORM-2] */
extern "C" void rmsnorm_head(float *x, int64_t n_rows, int dim, float eps, dsv4_numerics num)
{
    if (!dsv4_cuda_enabled) { ref_rmsnorm_head(x, n_rows, dim, eps, num); return; }
    if (cuda_rmsnorm_head(x, n_rows, dim, eps, num)) fatal("rmsnorm_head");
}

/* [HAD-1] sizes the kernel does not take (and bad sizes) go to the reference */
extern "C" void hadamard(float *x, int64_t n_rows, int n, dsv4_numerics num)
{
    if (!dsv4_cuda_enabled || n <= 0 || n > 4096 || (n & (n - 1)) != 0) {
        ref_hadamard(x, n_rows, n, num);   /* also the bad-size error of the reference */
        return;
    }
    if (cuda_hadamard(x, n_rows, n, num)) fatal("hadamard");
}

/* [SPA-1..SPA-4] the CUDA-core kernel (the reference's block order; both modes) */
extern "C" int sparse_attention(const float *q, int64_t H, int64_t D, const float *kv,
                                int64_t n_kv, const int64_t *idx, int64_t n_idx,
                                const float *sink, double scale, float *out, dsv4_numerics num)
{
    if (!dsv4_cuda_enabled || D % 32 != 0 || D > 512)
        return ref_sparse_attention(q, H, D, kv, n_kv, idx, n_idx, sink, scale, out, num);
    return cuda_sparse_attention(q, H, D, kv, n_kv, idx, n_idx, sink, scale, out, num);
}

/* [IDX-4] tensor cores in official mode where (H, D) is instantiated, else CUDA cores */
extern "C" void indexer_scores(const v4_indexer *I, const float *q, const float *w,
                               const float *keys, int64_t n, float *score)
{
    if (!dsv4_cuda_enabled || I->n_heads * I->head_dim > 12288) {
        ref_indexer_scores(I, q, w, keys, n, score);
        return;
    }
    if (cuda_indexer_scores(I, q, w, keys, n, score)) fatal("indexer_scores");
}

/* [MHC-4] */
extern "C" void mhc_post(const float *o, const float *res, const float *post, const float *comb,
                         int64_t n, int hc, int64_t dim, float *y, dsv4_numerics num)
{
    if (!dsv4_cuda_enabled) { ref_mhc_post(o, res, post, comb, n, hc, dim, y, num); return; }
    if (cuda_mhc_post(o, res, post, comb, n, hc, dim, y, num)) fatal("mhc_post");
}

/* [MOE-3] */
extern "C" int moe_expert_forward(const moe_expert *e, int64_t dim, int64_t inter,
                                  double swiglu_limit, const float *a, const float *rw, int64_t n,
                                  float *y, dsv4_numerics num)
{
    if (!dsv4_cuda_enabled) return ref_moe_expert_forward(e, dim, inter, swiglu_limit, a, rw, n, y, num);
    return cuda_moe_expert_forward(e, dim, inter, swiglu_limit, a, rw, n, y, num);
}

/* [CMP-8] (compressor_prefill stays on the host; its GEMMs come through linear) */
extern "C" int compressor_decode(v4_compressor *C, const float *x, int64_t B, int64_t t, float *out)
{
    if (!dsv4_cuda_enabled || C->head_dim > 1024) return ref_compressor_decode(C, x, B, t, out);
    return cuda_compressor_decode(C, x, B, t, out);
}
