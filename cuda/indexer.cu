/* indexer.cu — lightning-indexer scores (spec/indexer.md [IDX-4] [IDX-5]; the reference is
 * ref/indexer.c: indexer_scores).
 *
 * score_j = sum_h w_h ReLU(q_h . k_j); official: d = bf16(q_h . k_j), t = bf16(relu(d) w_h),
 * score = bf16(sum_h t) with the head sum in fp32 in ascending h (as ref); exact: double.
 *
 * scores_f32_kernel (both modes, fp32 keys): grid (ceil(n/128), T), block 128, one key per
 *   thread; q of the query in shared memory; heads in chunks of 16 register accumulators
 *   (fmaf over d; ref sums the dot exactly in double: last-bit fp32 differences before the
 *   bf16 rounding).
 * scores_wmma_kernel<H, D> (official, bf16 q and keys: both are bf16 values after the FP4
 *   simulation, so the conversion is exact): grid (ceil(n/512), T), block 128; q^T is held
 *   in registers as tensor-core fragments; each warp takes 8 tiles of 16 keys (keys
 *   warp*16 + 64 i of the block's 512); a tile's [16 x D] keys (contiguous) are copied to
 *   the warp's shared stage by cp.async in 16-byte pieces, two tiles in flight ahead of the
 *   arithmetic (dynamic shared memory ~51 KB for H = 64, D = 128); the warp loads the tile
 *   as fragments, computes the [16 x H] dot products on the tensor cores (wmma m16n16k16,
 *   bf16 x bf16 -> fp32), stages them in shared memory, and lanes 0..15 run the epilogue of
 *   one key each in ascending h. The key buffer must be readable up to a multiple of 16
 *   rows. Variant 0 of the bf16 path (indexer_scores_variant below).
 * scores_mma_kernel<H> (indexer_mma.cu, official, bf16, D = 128): mma.sync + ldmatrix, keys
 *   streamed through a 4-stage cp.async ring, head sum on the tensor cores; variant 1, the
 *   default where it applies.
 * Top-k: cuda/topk.cu. */
#include <cstdlib>
#include <cstring>
#include <mma.h>
#include <cuda_pipeline.h>
#include "cuda_common.cuh"
#include "kernels.h"

using namespace nvcuda;

#define IDX_HCHUNK 16

/* ---- scores, CUDA cores ---- */

__global__ void scores_f32_kernel(const float *q, const float *w, const float *keys,
                                  int64_t key_stride, int64_t n, int H, int D, float *score,
                                  int official)
{
    extern __shared__ float qs[];   /* [H * D] */
    int64_t t = blockIdx.y;
    for (int i = threadIdx.x; i < H * D; i += blockDim.x) qs[i] = q[t * H * D + i];
    __syncthreads();
    int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    const float *k = keys + t * key_stride + j * D;
    const float *wt = w + t * H;
    float totf = 0.0f;
    double tot = 0.0;
    for (int h0 = 0; h0 < H; h0 += IDX_HCHUNK) {
        float acc[IDX_HCHUNK];
        for (int hh = 0; hh < IDX_HCHUNK; hh++) acc[hh] = 0.0f;
        for (int d = 0; d < D; d++) {
            float kd = k[d];
            for (int hh = 0; hh < IDX_HCHUNK; hh++)
                if (h0 + hh < H) acc[hh] = fmaf(qs[(h0 + hh) * D + d], kd, acc[hh]);
        }
        for (int hh = 0; hh < IDX_HCHUNK && h0 + hh < H; hh++) {
            if (official) {
                float dh = d_round_bf16(acc[hh]);
                if (dh < 0.0f) dh = 0.0f;
                totf += d_round_bf16(dh * wt[h0 + hh]);
            } else {
                double s = acc[hh];
                tot += (s > 0.0 ? s : 0.0) * (double)wt[h0 + hh];
            }
        }
    }
    score[t * n + j] = official ? d_round_bf16(totf) : (float)tot;
}

/* ---- scores, tensor cores ---- */

#define IDX_TPW 8        /* 16-key tiles per warp: a block covers 4 * 8 * 16 = 512 keys */

template <int H, int D>
struct idx_smem {
    __nv_bfloat16 k[4][2][16][D + 8];   /* per warp: two stages of a 16-key tile, rows padded */
    float s[4][16 * (H + 4)];           /* per warp: [16 keys][H heads], rows padded */
};

/* One warp's asynchronous copy of the contiguous [16 x D] key tile at kb into dst (16-byte
 * pieces), committed as one group. */
template <int D>
__device__ void idx_stage(__nv_bfloat16 (*dst)[D + 8], const __nv_bfloat16 *kb, int lane)
{
    for (int i = lane; i < 16 * (D / 8); i += 32) {
        int r = i / (D / 8), c8 = i % (D / 8);
        __pipeline_memcpy_async(&dst[r][c8 * 8], kb + (int64_t)r * D + c8 * 8, 16);
    }
    __pipeline_commit();
}

template <int H, int D>
__global__ void __launch_bounds__(128)
scores_wmma_kernel(const __nv_bfloat16 *q, const float *w, const __nv_bfloat16 *keys,
                   int64_t key_stride, int64_t n, float *score)
{
    extern __shared__ __align__(128) unsigned char smraw[];
    idx_smem<H, D> &sm = *reinterpret_cast<idx_smem<H, D> *>(smraw);
    float *s = sm.s[0];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t t = blockIdx.y;
    const __nv_bfloat16 *qt = q + t * (int64_t)H * D;
    const __nv_bfloat16 *kt = keys + t * key_stride;
    const float *wt = w + t * H;
    /* the warp's tiles: keys jb + 64 i .. + 15, i < IDX_TPW; the first two go out at once */
    int64_t jb = (int64_t)blockIdx.x * (64 * IDX_TPW) + warp * 16;
    for (int st = 0; st < 2; st++) {
        if (jb + st * 64 < n) idx_stage<D>(sm.k[warp][st], kt + (jb + st * 64) * D, lane);
        else __pipeline_commit();   /* empty group: one group per tile, always */
    }
    /* q^T as tensor-core B fragments (column = head), loaded once per block into registers */
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> qb[H / 16][D / 16];
#pragma unroll
    for (int nt = 0; nt < H / 16; nt++)
#pragma unroll
        for (int k = 0; k < D / 16; k++) wmma::load_matrix_sync(qb[nt][k], qt + nt * 16 * D + k * 16, D);
    for (int tile = 0; tile < IDX_TPW; tile++) {
        int64_t j0 = jb + tile * 64;
        if (j0 >= n) break;
        __pipeline_wait_prior(1);   /* this tile's group has landed (the next may be in flight) */
        __syncwarp();
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> ka[D / 16];
#pragma unroll
        for (int k = 0; k < D / 16; k++) wmma::load_matrix_sync(ka[k], &sm.k[warp][tile & 1][0][k * 16], D + 8);
        __syncwarp();               /* the stage is free: the tile after next goes into it */
        if (tile + 2 < IDX_TPW && j0 + 128 < n) idx_stage<D>(sm.k[warp][tile & 1], kt + (j0 + 128) * D, lane);
        else __pipeline_commit();
#pragma unroll
        for (int nt = 0; nt < H / 16; nt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int k = 0; k < D / 16; k++) wmma::mma_sync(acc, ka[k], qb[nt][k], acc);
            wmma::store_matrix_sync(&s[warp * 16 * (H + 4) + nt * 16], acc, H + 4, wmma::mem_row_major);
        }
        __syncwarp();
        if (lane < 16 && j0 + lane < n) {
            float totf = 0.0f;
            for (int h = 0; h < H; h++) {
                float dh = d_round_bf16(s[warp * 16 * (H + 4) + lane * (H + 4) + h]);
                if (dh < 0.0f) dh = 0.0f;
                totf += d_round_bf16(dh * wt[h]);
            }
            score[t * n + j0 + lane] = d_round_bf16(totf);
        }
        __syncwarp();
    }
    __pipeline_wait_prior(0);
}

template <int H, int D>
static int launch_scores_wmma(dim3 grid, const __nv_bfloat16 *q, const float *w, const __nv_bfloat16 *k,
                              int64_t key_stride, int64_t n, float *score)
{
    static int attr_set = 0;
    if (!attr_set) {
        CK(cudaFuncSetAttribute(scores_wmma_kernel<H, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)sizeof(idx_smem<H, D>)));
        attr_set = 1;
    }
    scores_wmma_kernel<H, D><<<grid, 128, sizeof(idx_smem<H, D>)>>>(q, w, k, key_stride, n, score);
    CK_LAUNCH("indexer_scores_wmma");
    return 0;
}

/* [IDX-4] device q: [T, H, D], w: [T, H], keys at dkeys + t*key_stride: [n, D] -> score: [T, n];
 * both modes; H*D <= 12288 (q in shared memory) */
extern "C" int launch_indexer_scores_f32(const float *dq, const float *dw, const float *dkeys,
                                         int64_t key_stride, int64_t T, int64_t n, int H, int D,
                                         float *dscore, dsv4_numerics num)
{
    if (T <= 0 || n <= 0) return 0;
    size_t smem = (size_t)(H * D) * sizeof(float);
    if (smem > 48 * 1024) return dsv4_set_error("cuda indexer: H*D = %d too large (max 12288)", H * D);
    scores_f32_kernel<<<dim3((unsigned)((n + 127) / 128), (unsigned)T), 128, smem>>>(
        dq, dw, dkeys, key_stride, n, H, D, dscore, num == DSV4_OFFICIAL);
    CK_LAUNCH("indexer_scores_f32");
    return 0;
}

/* ---- the choice of the tensor-core scores kernel (the ONE place) ----
 * 1 = scores_mma_kernel (indexer_mma.cu; the default where it applies: D = 128, H in
 * {16, 32, 48, 64}, 16-byte aligned keys), 0 = scores_wmma_kernel (below). Environment
 * DSV4_CUDA_INDEXER=wmma|mma overrides the default; indexer_scores_variant(0|1) overrides
 * both, indexer_scores_variant(-1) returns to them. Shapes the chosen kernel does not take
 * go to the other one. */
#define IDX_DEFAULT_VARIANT 1
static int g_idx_variant = -1;
extern "C" void indexer_scores_variant(int v) { g_idx_variant = v < 0 ? -1 : (v ? 1 : 0); }
extern "C" int indexer_scores_variant_now(void)
{
    if (g_idx_variant >= 0) return g_idx_variant;
    const char *e = getenv("DSV4_CUDA_INDEXER");
    if (e && strcmp(e, "wmma") == 0) return 0;
    if (e && strcmp(e, "mma") == 0) return 1;
    return IDX_DEFAULT_VARIANT;
}

static int wmma_shape(int H, int D) { return (D == 128 && (H == 16 || H == 32 || H == 64)) || (D == 64 && H == 64); }

/* [IDX-4] official, bf16 q: [T, H, D] and keys. wmma: rows readable to a multiple of 16;
 * instantiated (H, D): (16|32|64, 128), (64, 64). mma: (16|32|48|64, 128), rows < n read. */
extern "C" int launch_indexer_scores_bf16(const void *dq, const float *dw, const void *dkeys,
                                          int64_t key_stride, int64_t T, int64_t n, int H, int D,
                                          float *dscore)
{
    if (T <= 0 || n <= 0) return 0;
    int mma_ok = indexer_scores_mma_supported(H, D) && !((uintptr_t)dkeys & 15) && !(key_stride & 7) &&
                 !((uintptr_t)dq & 3);
    if (mma_ok && (indexer_scores_variant_now() == 1 || !wmma_shape(H, D)))
        return launch_indexer_scores_mma(dq, dw, dkeys, key_stride, T, n, H, D, dscore);
    dim3 grid((unsigned)((n + 64 * IDX_TPW - 1) / (64 * IDX_TPW)), (unsigned)T);
    const __nv_bfloat16 *q = (const __nv_bfloat16 *)dq, *k = (const __nv_bfloat16 *)dkeys;
    if (H == 64 && D == 128) return launch_scores_wmma<64, 128>(grid, q, dw, k, key_stride, n, dscore);
    if (H == 32 && D == 128) return launch_scores_wmma<32, 128>(grid, q, dw, k, key_stride, n, dscore);
    if (H == 16 && D == 128) return launch_scores_wmma<16, 128>(grid, q, dw, k, key_stride, n, dscore);
    if (H == 64 && D == 64) return launch_scores_wmma<64, 64>(grid, q, dw, k, key_stride, n, dscore);
    return dsv4_set_error("cuda indexer (wmma): (H, D) = (%d, %d) not instantiated", H, D);
}

/* [IDX-4] ref/indexer.c: indexer_scores on the GPU. q: [H, D], w: [H], keys: [n, D] host ->
 * score: [n]. Official mode with a tensor-core shape (either kernel; launch_indexer_scores_bf16
 * chooses) converts q and keys to bf16 (exact) and uses it; everything else the CUDA-core kernel. */
extern "C" int cuda_indexer_scores(const v4_indexer *I, const float *q, const float *w,
                                   const float *keys, int64_t n, float *score)
{
    cuda_count("indexer_scores");
    int H = I->n_heads, D = I->head_dim;
    if (n <= 0) return 0;
    int64_t npad = (n + 63) / 64 * 64;
    float *dq = (float *)cuda_scratch(0, (size_t)(H * D) * sizeof(float));
    float *dw = (float *)cuda_scratch(1, (size_t)H * sizeof(float));
    float *dk = (float *)cuda_scratch(2, (size_t)(npad * D) * sizeof(float));
    float *ds = (float *)cuda_scratch(3, (size_t)n * sizeof(float));
    if (!dq || !dw || !dk || !ds) return -1;
    if (cuda_up(dq, q, (size_t)(H * D) * sizeof(float)) || cuda_up(dw, w, (size_t)H * sizeof(float)) ||
        cuda_up(dk, keys, (size_t)(n * D) * sizeof(float)))
        return -1;
    int tc_ok = I->num == DSV4_OFFICIAL && (wmma_shape(H, D) || indexer_scores_mma_supported(H, D));
    if (tc_ok) {
        void *qb = cuda_scratch(4, (size_t)(H * D) * 2);
        void *kb = cuda_scratch(5, (size_t)(npad * D) * 2);
        if (!qb || !kb) return -1;
        CK(cudaMemset(dk + n * D, 0, (size_t)((npad - n) * D) * sizeof(float)));
        if (launch_f32_to_bf16(dq, qb, H * D) || launch_f32_to_bf16(dk, kb, npad * D) ||
            launch_indexer_scores_bf16(qb, dw, kb, 0, 1, n, H, D, ds))
            return -1;
    } else if (launch_indexer_scores_f32(dq, dw, dk, 0, 1, n, H, D, ds, I->num)) {
        return -1;
    }
    return cuda_down(score, ds, (size_t)n * sizeof(float));
}
