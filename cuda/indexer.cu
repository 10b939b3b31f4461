/* indexer.cu — lightning-indexer scores and top-k (spec/indexer.md [IDX-4] [IDX-5],
 * spec/topk.md [TOPK-1]; the references are ref/indexer.c: indexer_scores and
 * ref/topk.c: topk_desc).
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
 * topk_kernel: grid T, block 1024. Radix select on the order-preserving 32-bit image of the
 *   fp32 score (4 passes of 8 bits, shared 256-bin histogram, warp-aggregated atomics) finds the k-th largest value v;
 *   then every score > v is taken, and the first (k - #greater) scores == v in index order
 *   (the tie rule: index ascending); a bitonic sort orders the k picks by (score desc, index
 *   asc), the order of topk_desc. Rows longer than 8192: two stages (below) so that many
 *   SMs work on one row, each pass over shared memory. */
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

/* ---- top-k ---- */

#define TOPK_THREADS 1024
#define TOPK_MAX 2048

__device__ __forceinline__ uint32_t order_key(float f)
{
    uint32_t u = (uint32_t)__float_as_int(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* (key desc, idx asc): true when a comes before b */
__device__ __forceinline__ bool before(uint32_t ka, int32_t ia, uint32_t kb, int32_t ib)
{
    return ka > kb || (ka == kb && ia < ib);
}

/* bitonic sort of P (a power of two) picks in shared memory by (key desc, idx asc); every
 * thread of the block calls it (block-wide barriers inside). */
__device__ void bitonic_sort_picks(uint32_t *skey, int32_t *sidx, int P, int tid)
{
    for (int size = 2; size <= P; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = tid; i < P; i += TOPK_THREADS) {
                int jx = i ^ stride;
                if (jx > i) {
                    bool asc = (i & size) == 0;   /* "asc" = in (desc key, asc idx) order */
                    bool swap = asc ? before(skey[jx], sidx[jx], skey[i], sidx[i])
                                    : before(skey[i], sidx[i], skey[jx], sidx[jx]);
                    if (swap) {
                        uint32_t tk = skey[i]; skey[i] = skey[jx]; skey[jx] = tk;
                        int32_t ti = sidx[i]; sidx[i] = sidx[jx]; sidx[jx] = ti;
                    }
                }
            }
            __syncthreads();
        }
}

/* The candidates of one block-wide selection: element i has order key key(i) and id id(i). */
struct PairsInShared {      /* (key, id) pairs already in shared memory */
    const uint32_t *k; const int32_t *d;
    __device__ uint32_t key(int64_t i) const { return k[i]; }
    __device__ int32_t id(int64_t i) const { return d[i]; }
};
struct ScoreRow {           /* one row of scores in global memory, id = position */
    const float *sc;
    __device__ uint32_t key(int64_t i) const { return order_key(sc[i]); }
    __device__ int32_t id(int64_t i) const { return (int32_t)i; }
};

/* top-k of m candidates -> skey/sidx[0..k) sorted (key desc, id asc): 1. radix select of the
 * k-th largest key (4 passes of 8 bits, warp-aggregated shared histogram), 2. gather every key
 * above it and the first ties in order, 3. bitonic sort. Every thread of the block calls it;
 * P = power of two >= k. */
template <typename Cand>
__device__ void block_select(Cand c, int64_t m, int k, int P, uint32_t *skey, int32_t *sidx)
{
    __shared__ uint32_t hist[256];
    __shared__ uint32_t s_prefix, s_need, s_cnt_gt, s_cnt_eq_taken;
    __shared__ uint32_t warp_eq[TOPK_THREADS / 32];
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    if (tid == 0) { s_prefix = 0; s_need = (uint32_t)k; }
    for (int pass = 0; pass < 4; pass++) {
        int shift = 24 - 8 * pass;
        uint32_t mask_hi = pass == 0 ? 0u : (0xFFFFFFFFu << (32 - 8 * pass));
        for (int i = tid; i < 256; i += TOPK_THREADS) hist[i] = 0;
        __syncthreads();
        uint32_t prefix = s_prefix;
        for (int64_t base = 0; base < m; base += TOPK_THREADS) {
            int64_t i = base + tid;
            uint32_t kk = i < m ? c.key(i) : 0u;
            uint32_t bin = (i < m && (kk & mask_hi) == prefix) ? ((kk >> shift) & 0xFF) : 256u;
            uint32_t peers = __match_any_sync(0xffffffffu, bin);
            if (bin < 256u && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (uint32_t)__popc(peers));
        }
        __syncthreads();
        if (tid == 0) {
            uint32_t need = s_need;
            int bin = 255;
            for (; bin > 0; bin--) {
                if (hist[bin] >= need) break;
                need -= hist[bin];
            }
            s_prefix = prefix | ((uint32_t)bin << shift);
            s_need = need;
        }
        __syncthreads();
    }
    uint32_t kth = s_prefix;
    if (tid == 0) { s_cnt_gt = 0; s_cnt_eq_taken = 0; }
    __syncthreads();
    uint32_t n_eq_take = s_need, n_gt = (uint32_t)k - n_eq_take;
    for (int64_t base = 0; base < m; base += TOPK_THREADS) {
        int64_t i = base + tid;
        uint32_t kk = i < m ? c.key(i) : 0u;
        bool gt = i < m && kk > kth, eq = i < m && kk == kth;
        if (gt) {
            uint32_t p = atomicAdd(&s_cnt_gt, 1u);
            skey[p] = kk;
            sidx[p] = c.id(i);
        }
        uint32_t ball = __ballot_sync(0xffffffffu, eq);
        if (lane == 0) warp_eq[warp] = __popc(ball);
        __syncthreads();
        uint32_t before_w = 0;
        for (int wv = 0; wv < warp; wv++) before_w += warp_eq[wv];
        uint32_t rank = s_cnt_eq_taken + before_w + __popc(ball & ((1u << lane) - 1u));
        if (eq && rank < n_eq_take) {
            skey[n_gt + rank] = kk;
            sidx[n_gt + rank] = c.id(i);
        }
        __syncthreads();
        if (tid == 0) {
            uint32_t tot = 0;
            for (int wv = 0; wv < TOPK_THREADS / 32; wv++) tot += warp_eq[wv];
            s_cnt_eq_taken += tot;
        }
        __syncthreads();
    }
    for (int i = k + tid; i < P; i += TOPK_THREADS) { skey[i] = 0u; sidx[i] = 0x7FFFFFFF; }
    __syncthreads();
    bitonic_sort_picks(skey, sidx, P, tid);
}

__global__ void __launch_bounds__(TOPK_THREADS)
topk_kernel(const float *score, int64_t n, int k, int P, int32_t *out)
{
    __shared__ uint32_t skey[TOPK_MAX];
    __shared__ int32_t sidx[TOPK_MAX];
    block_select(ScoreRow{ score + (int64_t)blockIdx.x * n }, n, k, P, skey, sidx);
    for (int i = threadIdx.x; i < k; i += TOPK_THREADS) out[(int64_t)blockIdx.x * k + i] = sidx[i];
}

/* ---- two-stage top-k for long rows ----
 * Stage 1: grid (ceil(n/8192), T): each block takes 8192 consecutive scores into shared
 * memory and keeps its own top-k (same rule); stage 2: grid T: one block selects the top-k
 * of the chunks' candidates. Exact: an element of the row's top-k has fewer than k elements
 * before it in the whole row, so also in its chunk; candidates of equal score keep
 * ascending index order (chunks in index order, each sorted index-ascending within a score),
 * so the tie rule is the same as the single pass. */

#define TOPK_CHUNK 8192
#define TOPK_CAND_MAX 16384


/* stage 1: cand: [T, nchunks, k] (-1 where a short last chunk has fewer than k) */
__global__ void __launch_bounds__(TOPK_THREADS)
topk_stage1_kernel(const float *score, int64_t n, int k, int32_t *cand)
{
    extern __shared__ uint32_t smk[];
    uint32_t *key = smk;                                  /* [TOPK_CHUNK] */
    int32_t *id = (int32_t *)(smk + TOPK_CHUNK);          /* [TOPK_CHUNK] */
    __shared__ uint32_t skey[TOPK_MAX];
    __shared__ int32_t sidx[TOPK_MAX];
    int64_t t = blockIdx.y, c0 = (int64_t)blockIdx.x * TOPK_CHUNK;
    int m = (int)(n - c0 < TOPK_CHUNK ? n - c0 : TOPK_CHUNK);
    int kk = m < k ? m : k, P = 1;
    while (P < kk) P <<= 1;
    for (int i = threadIdx.x; i < m; i += TOPK_THREADS) {
        key[i] = order_key(score[t * n + c0 + i]);
        id[i] = (int32_t)(c0 + i);
    }
    __syncthreads();
    block_select(PairsInShared{ key, id }, m, kk, P, skey, sidx);
    int32_t *out = cand + (t * gridDim.x + blockIdx.x) * k;
    for (int i = threadIdx.x; i < k; i += TOPK_THREADS) out[i] = i < kk ? sidx[i] : -1;
}

/* stage 2: the top-k of T rows of nc candidates (indices into score rows) */
__global__ void __launch_bounds__(TOPK_THREADS)
topk_stage2_kernel(const float *score, int64_t n, const int32_t *cand, int nc, int k, int P,
                   int32_t *out)
{
    extern __shared__ uint32_t smk[];
    uint32_t *key = smk;                                  /* [nc] */
    int32_t *id = (int32_t *)(smk + nc);                  /* [nc] */
    __shared__ uint32_t skey[TOPK_MAX];
    __shared__ int32_t sidx[TOPK_MAX];
    int64_t t = blockIdx.x;
    for (int i = threadIdx.x; i < nc; i += TOPK_THREADS) {
        int32_t j = cand[t * nc + i];
        key[i] = j >= 0 ? order_key(score[t * n + j]) : 0u;   /* padding sorts last */
        id[i] = j >= 0 ? j : 0x7FFFFFFF;
    }
    __syncthreads();
    block_select(PairsInShared{ key, id }, nc, k, P, skey, sidx);
    for (int i = threadIdx.x; i < k; i += TOPK_THREADS) out[t * k + i] = sidx[i];
}

/* [TOPK-1] device score: [T, n] -> idx: [T, k] int32 (score desc, index asc); k <= 2048 */
extern "C" int launch_topk(const float *dscore, int64_t T, int64_t n, int64_t k, int32_t *didx)
{
    if (T <= 0 || k <= 0) return 0;
    if (k > n) return dsv4_set_error("cuda topk: k = %lld > n = %lld", (long long)k, (long long)n);
    if (k > TOPK_MAX) return dsv4_set_error("cuda topk: k = %lld > %d", (long long)k, TOPK_MAX);
    if (n > 0x7FFFFFFF) return dsv4_set_error("cuda topk: n too large");
    int P = 1;
    while (P < k) P <<= 1;
    int64_t nch = (n + TOPK_CHUNK - 1) / TOPK_CHUNK;
    if (n > TOPK_CHUNK && nch * k <= TOPK_CAND_MAX) {
        int32_t *cand = (int32_t *)cuda_scratch(13, (size_t)(T * nch * k) * sizeof(int32_t));
        if (!cand) return -1;
        size_t sm1 = (size_t)TOPK_CHUNK * 8, sm2 = (size_t)(nch * k) * 8;
        static int attr = 0;
        if (!attr) {
            CK(cudaFuncSetAttribute(topk_stage1_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm1));
            CK(cudaFuncSetAttribute(topk_stage2_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, TOPK_CAND_MAX * 8));
            attr = 1;
        }
        topk_stage1_kernel<<<dim3((unsigned)nch, (unsigned)T), TOPK_THREADS, sm1>>>(dscore, n, (int)k, cand);
        CK_LAUNCH("topk_stage1");
        topk_stage2_kernel<<<(unsigned)T, TOPK_THREADS, sm2>>>(dscore, n, cand, (int)(nch * k), (int)k, P, didx);
        CK_LAUNCH("topk_stage2");
        return 0;
    }
    topk_kernel<<<(unsigned)T, TOPK_THREADS>>>(dscore, n, (int)k, P, didx);
    CK_LAUNCH("topk");
    return 0;
}

/* [TOPK-1] ref/topk.c: topk_desc on the GPU. score: [n] host -> idx: [k]. */
extern "C" int cuda_topk(const float *score, int64_t n, int64_t k, int64_t *idx)
{
    cuda_count("topk");
    if (k <= 0) return 0;
    float *ds = (float *)cuda_scratch(0, (size_t)n * sizeof(float));
    int32_t *di = (int32_t *)cuda_scratch(1, (size_t)k * sizeof(int32_t));
    int32_t *hi = (int32_t *)malloc((size_t)k * sizeof(int32_t));
    if (!ds || !di || !hi) { free(hi); return -1; }
    int rc = cuda_up(ds, score, (size_t)n * sizeof(float)) || launch_topk(ds, 1, n, k, di) ||
             cuda_down(hi, di, (size_t)k * sizeof(int32_t));
    if (!rc) for (int64_t i = 0; i < k; i++) idx[i] = hi[i];
    free(hi);
    return rc ? -1 : 0;
}
