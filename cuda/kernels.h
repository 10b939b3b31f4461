/* kernels.h — the C interface of cuda/ (spec/cuda.md).
 *
 * Two layers:
 *   cuda_<name>(...)   the ref/ function <name> with the SAME arguments (host float arrays in
 *                      and out): upload, launch, download. Weights are uploaded once (cached by
 *                      their host pointer). Returns 0, or -1 with dsv4_set_error().
 *   launch_<name>(...) the kernel on device pointers (what the benchmarks time); stream 0.
 * Every function is callable from C (the test program, the CLI hooks). */
#ifndef DSV4_CUDA_KERNELS_H
#define DSV4_CUDA_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "dsv4ref.h"
#include "compressor.h"
#include "indexer.h"
#include "moe.h"
#include "rope.h"
#include "norm.h"

/* ---- common.cu ---- */
/* 1 when a CUDA device is usable (cudaGetDeviceCount succeeds and returns > 0); *why gets a
 * one-line reason otherwise. */
int cuda_available(const char **why);
/* device name, SM count, memory (for the benchmark header) */
void cuda_describe(char *buf, size_t n);
/* prints the per-wrapper call counts on stderr */
void cuda_print_counts(void);
/* frees every cached weight and scratch buffer */
void cuda_release(void);

/* ---- linear.cu  [LIN-1..LIN-4] ---- */
int cuda_linear(const dsv4_weight *w, const float *x, float *y, int64_t n, int out_f32,
                dsv4_numerics num);
/* device form: x, y device [n, cols] / [n, rows]; the weight is looked up in the cache */
int launch_linear(const dsv4_weight *w, const float *dx, float *dy, int64_t n, int out_f32,
                  dsv4_numerics num);
/* which kernel official bf16 / FP8 / FP4 GEMMs (K % 128 == 0) run: DSV4_GEMM_SIMT
 * (linear_kernel), DSV4_GEMM_TC (wmma linear_tc_kernel), DSV4_GEMM_MMA (mma.sync
 * linear_mma_kernel, the default); the fp32-form GEMMs run the tiled linear_tiled_kernel at
 * n >= 16 unless SIMT (linear_kernel everywhere); DSV4_GEMM_TILED: the tiled kernel for the
 * fp32 forms at every n; -1 = DSV4_CUDA_GEMM=simt|tc|mma|tiled or the default
 * (cuda/linear.cu: gemm_variant) */
#define DSV4_GEMM_SIMT 0
#define DSV4_GEMM_TC 1
#define DSV4_GEMM_MMA 2
#define DSV4_GEMM_TILED 3
void linear_use_tensor_cores(int variant);

/* ---- norm.cu  [NORM-1] [NORM-2] ---- */
int cuda_rmsnorm(const float *x, const float *w, float *y, int64_t n_rows, int dim, float eps,
                 dsv4_numerics num);
int cuda_rmsnorm_head(float *x, int64_t n_rows, int dim, float eps, dsv4_numerics num);
int launch_rmsnorm(const float *dx, const float *dw, float *dy, int64_t n_rows, int dim,
                   float eps, dsv4_numerics num);
int launch_rmsnorm_head(float *dx, int64_t n_rows, int dim, float eps, dsv4_numerics num);

/* ---- rope.cu  [ROPE-5] ---- */
/* x: [n_rows, stride] rows, the rope part at offset `off` of each row (rope_dim = f->rope_dim);
 * row i rotated by position pos[i]. Same arithmetic as rope_apply, the cos/sin table made on
 * the host with rope_cos_sin (bit-identical angles). */
int cuda_rope_rows(const rope_freqs *f, float *x, int64_t n_rows, int64_t stride, int64_t off,
                   const int64_t *pos, rope_layout layout, int inverse);
/* device form: dcs: [n_rows, rope_dim/2, 2] (cos, sin) made by rope_table() */
int launch_rope_rows(float *dx, int64_t n_rows, int64_t stride, int64_t off, int rope_dim,
                     const float *dcs, rope_layout layout, int inverse, dsv4_numerics num);
/* host: cs: [n_rows, rope_dim/2, 2] */
void rope_table(const rope_freqs *f, const int64_t *pos, int64_t n_rows, float *cs);

/* ---- hadamard.cu  [HAD-1] ---- */
int cuda_hadamard(float *x, int64_t n_rows, int n, dsv4_numerics num);
int launch_hadamard(float *dx, int64_t n_rows, int n, dsv4_numerics num);
/* [NUM-7] in-place FP8 / FP4 block simulation of each row's first n values (row stride) */
int launch_fp8_sim(float *dx, int64_t n_rows, int64_t stride, int n, int block);
int launch_fp4_sim(float *dx, int64_t n_rows, int64_t stride, int n, int block);

/* ---- compressor.cu  [CMP-2..CMP-8] ---- */
int cuda_compressor_decode(v4_compressor *C, const float *x, int64_t B, int64_t t, float *out);
/* device form of the emission: pooled state rows -> entries. kv, sc: [B, km, kc] device;
 * out: [B, c]; cs: [rope_dim/2, 2] for position j*m (or NULL when rope_dim == 0) */
int launch_compressor_emit(const v4_compressor *C, const float *dkv, const float *dsc,
                           int64_t B, const float *dnorm_w, const float *dcs, float *dout);

/* ---- indexer.cu  [IDX-4] [IDX-5] ---- */
int cuda_indexer_scores(const v4_indexer *I, const float *q, const float *w, const float *keys,
                        int64_t n, float *score);
/* scores of T queries, each against its own key set: q: [T, H, D]; w: [T, H];
 * keys: [T][n, D] at dkeys + t * key_stride (elements); score: [T, n].
 * bf16 keys: tensor-core path (mma or wmma: indexer_scores_variant), official numerics only. */
int launch_indexer_scores_f32(const float *dq, const float *dw, const float *dkeys,
                              int64_t key_stride, int64_t T, int64_t n, int H, int D,
                              float *dscore, dsv4_numerics num);
int launch_indexer_scores_bf16(const void *dq_bf16, const float *dw, const void *dkeys_bf16,
                               int64_t key_stride, int64_t T, int64_t n, int H, int D,
                               float *dscore);
/* the bf16 scores kernel: 1 = mma (indexer_mma.cu, default), 0 = wmma, -1 = the default
 * (env DSV4_CUDA_INDEXER=wmma|mma, else mma); _now: the variant in effect */
void indexer_scores_variant(int v);
int indexer_scores_variant_now(void);

/* ---- indexer_mma.cu  [IDX-4] ---- */
/* official, bf16 q: [T, H, 128], keys [T][n, 128] (16-byte aligned, key_stride % 8 == 0,
 * only rows < n read); H in {16, 32, 48, 64} */
int indexer_scores_mma_supported(int H, int D);
int launch_indexer_scores_mma(const void *dq_bf16, const float *dw, const void *dkeys_bf16,
                              int64_t key_stride, int64_t T, int64_t n, int H, int D,
                              float *dscore);
/* test hook: at most m thread blocks (0 = as many as are resident at once) */
void indexer_scores_mma_max_blocks(int m);

/* ---- topk.cu  [TOPK-1] ---- */
/* top-k of each row: score: [T, n] -> idx: [T, k] (score descending, ties index ascending) */
int launch_topk(const float *dscore, int64_t T, int64_t n, int64_t k, int32_t *didx);
int cuda_topk(const float *score, int64_t n, int64_t k, int64_t *idx);
/* which kernels launch_topk runs: DSV4_TOPK_RADIX (histogram + compaction + one finishing
 * block per row, the default) or DSV4_TOPK_OLD (per-chunk select + sort, then a merge);
 * -1 = env DSV4_CUDA_TOPK=old|radix or the default (TOPK_DEFAULT in topk.cu) */
#define DSV4_TOPK_OLD 0
#define DSV4_TOPK_RADIX 1
void topk_use_variant(int variant);

/* ---- sparse_attention.cu  [SPA-1..SPA-4] ---- */
int cuda_sparse_attention(const float *q, int64_t H, int64_t D, const float *kv, int64_t n_kv,
                          const int64_t *idx, int64_t n_idx, const float *sink, double scale,
                          float *out, dsv4_numerics num);
/* T queries; query t reads kv rows at dkv + (t / q_per_kv) * kv_stride; idx: [T, n_idx] int32;
 * q, out: [T, H, D]; sink: [H]. */
int launch_sparse_attention_f32(const float *dq, int64_t T, int64_t H, int64_t D,
                                const float *dkv, int64_t kv_stride, int64_t q_per_kv,
                                const int32_t *didx, int64_t n_idx, const float *dsink,
                                float scale, float *dout, dsv4_numerics num);
/* official numerics with bf16 q and kv: the tensor-core kernels (sparse_attention_variant) */
int launch_sparse_attention_bf16(const void *dq_bf16, int64_t T, int64_t H, int64_t D,
                                 const void *dkv_bf16, int64_t kv_stride, int64_t q_per_kv,
                                 const int32_t *didx, int64_t n_idx, const float *dsink,
                                 float scale, float *dout);

/* 0: never split the key list over blocks; 0: the plain wmma kernel instead of the pipelined */
void sparse_attention_allow_split(int on);
void sparse_attention_use_pipe(int on);
/* kernel of launch_sparse_attention_bf16: -1 default (sparse_attention_default_variant in
 * sparse_attention.cu: mma where it applies), 0 mma, 1 pipelined wmma, 2 plain wmma,
 * 3 mma2 (the mma kernel at HT = 1 with a 3-half-tile ring: 2 blocks per SM) */
void sparse_attention_variant(int v);
/* merge of key splits (both tensor-core kernels): part: [T, H, ns, D + 2] -> out: [T, H, D] */
int launch_sparse_combine(const float *part, int64_t T, int64_t H, int64_t D, int64_t ns,
                          const float *dsink, float *dout);

/* ---- sparse_attention_pipe.cu  [SPA-1..SPA-4] ---- */
/* pipelined tensor-core kernel, official, bf16 q and kv; H % 32 == 0, D in {64, 128, 512} */
int launch_sparse_attention_pipe(const void *dq_bf16, int64_t T, int64_t H, int64_t D,
                                 const void *dkv_bf16, int64_t kv_stride, int64_t q_per_kv,
                                 const int32_t *didx, int64_t n_idx, const float *dsink,
                                 float scale, float *dout, int allow_split);

/* ---- sparse_attention_mma.cu  [SPA-1..SPA-4] ---- */
/* mma.sync + ldmatrix kernel, official, bf16 q and kv; H % 16 == 0, D in {64, 128, 512},
 * kv 16-byte aligned with kv_stride % 8 == 0 (sparse_attention_mma_supports) */
int sparse_attention_mma_supports(int64_t H, int64_t D, const void *dkv_bf16, int64_t kv_stride);
int launch_sparse_attention_mma(const void *dq_bf16, int64_t T, int64_t H, int64_t D,
                                const void *dkv_bf16, int64_t kv_stride, int64_t q_per_kv,
                                const int32_t *didx, int64_t n_idx, const float *dsink,
                                float scale, float *dout, int allow_split);
/* the same with the configuration: cfg 0 = the above (3 full-tile stages, 1 block per SM),
 * cfg 1 = mma2 (HT = 1, a ring of 3 half tiles, 2 blocks per SM; same numerics) */
int launch_sparse_attention_mma_cfg(const void *dq_bf16, int64_t T, int64_t H, int64_t D,
                                    const void *dkv_bf16, int64_t kv_stride, int64_t q_per_kv,
                                    const int32_t *didx, int64_t n_idx, const float *dsink,
                                    float scale, float *dout, int allow_split, int cfg);
/* resident blocks per SM of cfg (0 at HT = 2, or 1) for D in {64, 128, 512} (occupancy API) */
int sparse_attention_mma_blocks_per_sm(int64_t D, int cfg);

/* ---- mhc.cu  [MHC-4] ---- */
int cuda_mhc_post(const float *o, const float *res, const float *post, const float *comb,
                  int64_t n, int hc, int64_t dim, float *y, dsv4_numerics num);
int launch_mhc_post(const float *o, const float *res, const float *post, const float *comb,
                    int64_t n, int hc, int64_t dim, float *y, dsv4_numerics num);

/* ---- moe.cu  [MOE-3] ---- */
int cuda_moe_expert_forward(const moe_expert *e, int64_t dim, int64_t inter, double swiglu_limit,
                            const float *a, const float *rw, int64_t n, float *y,
                            dsv4_numerics num);
/* the SwiGLU step alone on device rows (g = bf16(rw * silu(min(g, l)) * clamp(u, -l, l))) */
int launch_swiglu(float *dg, const float *du, const float *drw, int64_t n, int64_t inter,
                  double swiglu_limit, dsv4_numerics num);

/* ---- convert.cu: float <-> bf16 on the device (exact for bf16-valued floats) ---- */
int launch_f32_to_bf16(const float *dx, void *dy_bf16, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
