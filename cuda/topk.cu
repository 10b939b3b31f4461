/* topk.cu — top-k of score rows with the project's tie rule (spec/topk.md [TOPK-1]; the
 * reference is ref/topk.c: topk_desc).
 *
 * topk_kernel: grid T, block 1024. Radix select on the order-preserving 32-bit image of the
 *   fp32 score (4 passes of 8 bits, shared 256-bin histogram, warp-aggregated atomics) finds the k-th largest value v;
 *   then every score > v is taken, and the first (k - #greater) scores == v in index order
 *   (the tie rule: index ascending); a bitonic sort orders the k picks by (score desc, index
 *   asc), the order of topk_desc. Rows longer than 8192: two stages (below) so that many
 *   SMs work on one row, each pass over shared memory. */
#include <cstdlib>
#include "cuda_common.cuh"
#include "kernels.h"

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
