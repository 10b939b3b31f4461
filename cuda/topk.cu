/* topk.cu — top-k of score rows with the project's tie rule (spec/topk.md [TOPK-1]; the
 * reference is ref/topk.c: topk_desc). score: [T, n] fp32 -> idx: [T, k] int32, the k
 * entries that rank first under (score desc, index asc), in that order; k <= 2048.
 *
 * Every path works on the order-preserving 32-bit image of the score (order_key: larger key
 * = ranks first; -0 and +0 map to one key, as they compare equal in topk_desc; -inf is the
 * smallest finite-or-infinite key; NaN is never passed — a +NaN would rank first here).
 * Two kernel sets; the choice is made in ONE place, topk_variant() below (TOPK_DEFAULT, env
 * DSV4_CUDA_TOPK=old|radix, topk_use_variant()):
 *
 * radix (default): per row, two launches.
 *   topk_radix_hist_kernel: grid (G, T), block 512; a block histograms the top 12 bits of
 *     the keys of its chunk of the row in shared memory and adds the non-zero bins to the
 *     row's global histogram (atomics); the last block of the row to finish (a counter)
 *     finds the threshold bin b*: the bins above b* hold n_above < k entries (all taken),
 *     b* holds n_b >= k - n_above (the candidates). It zeroes the histogram and the counter
 *     for the next call.
 *   topk_radix_compact_kernel: grid (G, T), block 512; the blocks re-read their chunks and
 *     append the entries of bins > b* to the row's "sure" list and those of b* to its
 *     candidate list (warp-aggregated atomics; order nondeterministic), each as the 64-bit
 *     composite (key << 32) | ~index, which orders exactly like (score desc, index asc).
 *     The last block of the row finishes: radix select (8-bit digits below the 12 fixed
 *     bits, stopping as soon as a digit's bin is taken whole) of the k - n_above largest
 *     composites among the candidates — from shared memory (n_b <= 4096), the global list
 *     (<= 65536) or, beyond that, the row itself filtered to b* —, gather, append the sure
 *     list, bitonic sort descending (strides < 32 in registers by warp shuffles). Composites
 *     are unique, so the set and its order are deterministic whatever the atomics did.
 * old: topk_kernel: grid T, block 1024. Radix select on the key (4 passes of 8 bits, shared
 *   256-bin histogram, warp-aggregated atomics) finds the k-th largest value v; then every
 *   score > v is taken, and the first (k - #greater) scores == v in index order (the tie
 *   rule: index ascending); a bitonic sort orders the k picks by (score desc, index asc).
 *   Rows longer than 8192: two stages (below) so that many SMs work on one row, each pass
 *   over shared memory. */
#include <cstdlib>
#include <cstring>
#include "cuda_common.cuh"
#include "kernels.h"

/* ---- top-k ---- */

#define TOPK_THREADS 1024
#define TOPK_MAX 2048

/* order-preserving image of an fp32 score: a > b (as floats) <=> key(a) > key(b); -0 is
 * taken as +0 (they are equal for topk_desc, so the index decides between them) */
__device__ __forceinline__ uint32_t order_key(float f)
{
    uint32_t u = f == 0.0f ? 0u : (uint32_t)__float_as_int(f);
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

/* [TOPK-1] the old path: device score: [T, n] -> idx: [T, k] (arguments checked by launch_topk) */
static int launch_topk_old(const float *dscore, int64_t T, int64_t n, int64_t k, int32_t *didx)
{
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

/* ---- radix path: histogram, threshold bin, compaction, one finishing block per row ---- */

#define TR_THREADS 512                 /* block of both radix kernels */
#define TR_BLOCKS_PER_SM 4             /* resident blocks per SM (<= 32 registers, <= 57 KB shared) */
#define TR_BITS 12                     /* the coarse digit: the top 12 bits of the key */
#define TR_BINS (1 << TR_BITS)
#define TR_LOW (64 - TR_BITS)          /* composite bits below the coarse digit */
#define TR_SCAP 4096                   /* candidates the finishing block holds in shared memory */
#define TR_GCAP 65536                  /* candidates kept per row in global scratch */
#define TR_MIN_CHUNK 2048              /* entries per block at least (4 per thread) */
#define TR_R (TOPK_MAX / TR_THREADS)   /* sort: register slots per thread */
#define FULLMASK 0xffffffffu

/* per-row control words (zero between calls: each call leaves them so) */
enum { TC_DONE1, TC_DONE2, TC_BSTAR, TC_NABOVE, TC_NBIN, TC_SUREPOS, TC_CANDPOS, TC_WORDS = 8 };

typedef unsigned long long u64;

/* (key desc, index asc) as one unsigned number: larger = ranks first; unique per entry */
__device__ __forceinline__ u64 tr_comp(uint32_t key, uint32_t id)
{
    return ((u64)key << 32) | (u64)(~id);
}

/* the four entries base + u TR_THREADS + tid (u < 4) of a row chunk ending at c1, all loads
 * issued before any is used (0 past the end: the caller masks those entries) */
__device__ __forceinline__ void tr_load4(const float *row, int64_t base, int64_t c1, int tid, float (&v)[4])
{
#pragma unroll
    for (int u = 0; u < 4; u++) {
        int64_t i = base + u * TR_THREADS + tid;
        v[u] = i < c1 ? row[i] : 0.0f;
    }
}

/* shared-histogram add of one entry per lane (ok = the lane has an entry); a warp whose
 * entries all fall in one bin (ties, all-equal rows) adds once. Warp-uniform call. */
__device__ __forceinline__ void tr_hist_add(uint32_t *h, uint32_t bin, bool ok, int lane)
{
    uint32_t valid = __ballot_sync(FULLMASK, ok);
    if (!valid) return;
    int first = __ffs(valid) - 1;
    uint32_t b0 = __shfl_sync(FULLMASK, bin, first);
    if (__all_sync(FULLMASK, !ok || bin == b0)) {
        if (lane == first) atomicAdd(&h[b0], (uint32_t)__popc(valid));
    } else if (ok) {
        atomicAdd(&h[bin], 1u);
    }
}

/* pass 1. score: [T, n]; block (x, t) takes entries [x*chunk, min(n, (x+1)*chunk)) of row t.
 * ghist: [T, TR_BINS], ctl: [T, TC_WORDS], both zero on entry (left zero except the
 * results TC_BSTAR / TC_NABOVE / TC_NBIN, which the next kernel reads). */
__global__ void __launch_bounds__(TR_THREADS, TR_BLOCKS_PER_SM)
topk_radix_hist_kernel(const float *score, int64_t n, int k, int64_t chunk, uint32_t *ghist,
                       uint32_t *ctl)
{
    __shared__ uint32_t h[TR_BINS];
    __shared__ uint32_t wsum[TR_THREADS / 32];
    __shared__ int s_last;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int64_t t = blockIdx.y;
    const float *row = score + t * n;
    uint32_t *gh = ghist + t * TR_BINS, *c = ctl + t * TC_WORDS;
    for (int i = tid; i < TR_BINS; i += TR_THREADS) h[i] = 0;
    __syncthreads();
    int64_t c0 = (int64_t)blockIdx.x * chunk, c1 = c0 + chunk < n ? c0 + chunk : n;
    for (int64_t base = c0; base < c1; base += 4 * TR_THREADS) {
        float v[4];
        tr_load4(row, base, c1, tid, v);
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int64_t i = base + u * TR_THREADS + tid;
            tr_hist_add(h, order_key(v[u]) >> (32 - TR_BITS), i < c1, lane);
        }
    }
    __syncthreads();
    for (int i = tid; i < TR_BINS; i += TR_THREADS)
        if (h[i]) atomicAdd(&gh[i], h[i]);
    __threadfence();                  /* our bins are in the row histogram before the ticket */
    __syncthreads();
    if (tid == 0) s_last = atomicAdd(&c[TC_DONE1], 1u) == gridDim.x - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    /* the last block: thread tid holds bins TR_BINS-1 - (tid*PER + j), j < PER (descending);
     * a block scan of their counts in thread order = counts of the bins above */
    const int PER = TR_BINS / TR_THREADS;
    uint32_t sum = 0;
#pragma unroll
    for (int j = 0; j < PER; j++) sum += __ldcg(&gh[TR_BINS - 1 - (tid * PER + j)]);
    uint32_t incl = sum;
    for (int o = 1; o < 32; o <<= 1) {
        uint32_t y = __shfl_up_sync(FULLMASK, incl, o);
        if (lane >= o) incl += y;
    }
    if (lane == 31) wsum[warp] = incl;
    __syncthreads();
    for (int w = 0; w < warp; w++) incl += wsum[w];
    uint32_t excl = incl - sum, kk = (uint32_t)k;
    if (excl < kk && kk <= incl) {    /* exactly one thread: the row holds n >= k entries */
        uint32_t above = excl;
        for (int j = 0; j < PER; j++) {
            uint32_t cj = __ldcg(&gh[TR_BINS - 1 - (tid * PER + j)]);   /* read again: fewer registers */
            if (above + cj >= kk) {
                c[TC_BSTAR] = (uint32_t)(TR_BINS - 1 - (tid * PER + j));
                c[TC_NABOVE] = above;
                c[TC_NBIN] = cj;
                break;
            }
            above += cj;
        }
    }
    __syncthreads();                  /* every bin read before any is cleared */
#pragma unroll
    for (int j = 0; j < PER; j++) gh[TR_BINS - 1 - (tid * PER + j)] = 0;   /* clean for the next call */
    if (tid == 0) c[TC_DONE1] = 0;
}

/* candidate sources of the finishing block: get(i) = composite of entry i, i < m */
struct TrShared {           /* the threshold bin's composites copied to shared memory */
    const u64 *p;
    __device__ u64 get(int64_t i) const { return p[i]; }
};
struct TrGlobal {           /* the threshold bin's composites in global scratch (just written) */
    const u64 *p;
    __device__ u64 get(int64_t i) const { return __ldcg(p + i); }
};
struct TrRow {              /* the whole row (entries outside b* are filtered by prefix) */
    const float *sc;
    __device__ u64 get(int64_t i) const { return tr_comp(order_key(sc[i]), (uint32_t)i); }
};

struct TrSm {
    uint32_t hist[256];
    u64 prefix;
    uint32_t need, done, cnt;
    int last;
};

/* The need-th largest composite among the m source entries whose top TR_BITS bits equal
 * those of prefix (nb of them, need <= nb): radix select, 8-bit digits from bit TR_LOW
 * down, warp-aggregated shared histogram; stops when the chosen digit's bin is taken whole
 * and returns the threshold tk: exactly `need` of those entries have composite >= tk.
 * Every thread of the block calls it. */
template <typename Src>
__device__ u64 tr_select(Src src, int64_t m, uint32_t nb, uint32_t need, u64 prefix, TrSm *sm)
{
    if (nb == need) return prefix;    /* the whole bin */
    int tid = threadIdx.x, lane = tid & 31;
    int hi = TR_LOW;                  /* bits [0, hi) still open */
    for (;;) {
        int width = hi < 8 ? hi : 8, shift = hi - width;
        for (int i = tid; i < 256; i += TR_THREADS) sm->hist[i] = 0;
        __syncthreads();
        for (int64_t base = 0; base < m; base += TR_THREADS) {
            int64_t i = base + tid;
            uint32_t bin = 256u;
            if (i < m) {
                u64 K = src.get(i);
                if ((K >> hi) == (prefix >> hi)) bin = (uint32_t)(K >> shift) & ((1u << width) - 1u);
            }
            uint32_t peers = __match_any_sync(FULLMASK, bin);
            if (bin < 256u && lane == __ffs(peers) - 1) atomicAdd(&sm->hist[bin], (uint32_t)__popc(peers));
        }
        __syncthreads();
        if (tid < 32) {               /* warp 0: lane holds digits 255 - (8 lane + j) */
            uint32_t cnt[8], sum = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) { cnt[j] = sm->hist[255 - (8 * lane + j)]; sum += cnt[j]; }
            uint32_t incl = sum;
            for (int o = 1; o < 32; o <<= 1) {
                uint32_t y = __shfl_up_sync(FULLMASK, incl, o);
                if (lane >= o) incl += y;
            }
            uint32_t excl = incl - sum;
            if (excl < need && need <= incl) {
                uint32_t above = excl;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    if (above + cnt[j] >= need) {
                        sm->prefix = prefix | ((u64)(255 - (8 * lane + j)) << shift);
                        sm->need = need - above;
                        sm->done = cnt[j] == need - above;
                        break;
                    }
                    above += cnt[j];
                }
            }
        }
        __syncthreads();
        prefix = sm->prefix;
        need = sm->need;
        hi = shift;
        if (sm->done || hi == 0) break;   /* hi == 0: a single composite (they are unique) */
    }
    return prefix;
}

/* the source entries of bin bstar with composite >= tk -> sel[atomic slot < need] */
template <typename Src>
__device__ void tr_gather(Src src, int64_t m, u64 tk, uint32_t bstar, uint32_t need, u64 *sel, TrSm *sm)
{
    for (int64_t i = threadIdx.x; i < m; i += TR_THREADS) {
        u64 K = src.get(i);
        if ((uint32_t)(K >> TR_LOW) == bstar && K >= tk) {
            uint32_t p = atomicAdd(&sm->cnt, 1u);
            if (p < need) sel[p] = K;
        }
    }
}

/* bitonic sort, descending, of s[0..P) (P a power of two, 32 <= P <= TOPK_MAX): element
 * e = r*TR_THREADS + tid lives in register v[r]; strides < 32 are warp shuffles, larger
 * strides go through shared memory. Every thread of the block calls it; s is read after a
 * barrier and complete after the return. */
__device__ __forceinline__ void tr_reg_stage(u64 *v, int P, int size, int stride)
{
#pragma unroll
    for (int r = 0; r < TR_R; r++) {
        if (r * TR_THREADS >= P) break;   /* block-uniform */
        int e = r * TR_THREADS + threadIdx.x;
        u64 o = __shfl_xor_sync(FULLMASK, v[r], stride);
        bool keep_max = ((e & stride) == 0) == ((e & size) == 0);
        v[r] = keep_max ? (v[r] > o ? v[r] : o) : (v[r] < o ? v[r] : o);
    }
}

__device__ void tr_sort_desc(u64 *s, int P)
{
    int tid = threadIdx.x;
    u64 v[TR_R];
#pragma unroll
    for (int r = 0; r < TR_R; r++) {
        int e = r * TR_THREADS + tid;
        v[r] = e < P ? s[e] : 0ull;
    }
    for (int size = 2; size <= P && size <= 32; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) tr_reg_stage(v, P, size, stride);
    for (int size = 64; size <= P; size <<= 1) {
#pragma unroll
        for (int r = 0; r < TR_R; r++) {
            int e = r * TR_THREADS + tid;
            if (e < P) s[e] = v[r];
        }
        __syncthreads();
        for (int stride = size >> 1; stride >= 32; stride >>= 1) {
            for (int i = tid; i < P; i += TR_THREADS) {
                int j = i ^ stride;
                if (j > i) {
                    u64 a = s[i], b = s[j];
                    if ((i & size) == 0 ? a < b : a > b) { s[i] = b; s[j] = a; }
                }
            }
            __syncthreads();
        }
#pragma unroll
        for (int r = 0; r < TR_R; r++) {
            int e = r * TR_THREADS + tid;
            if (e < P) v[r] = s[e];
        }
        for (int stride = 16; stride > 0; stride >>= 1) tr_reg_stage(v, P, size, stride);
    }
#pragma unroll
    for (int r = 0; r < TR_R; r++) {
        int e = r * TR_THREADS + tid;
        if (e < P) s[e] = v[r];
    }
    __syncthreads();
}

/* pass 2 + finish. sure: [T, k], cand: [T, gcap] composites; out: [T, k]. P = max(32, the
 * power of two >= k). Dynamic shared memory: (P + TR_SCAP) composites. */
__global__ void __launch_bounds__(TR_THREADS, TR_BLOCKS_PER_SM)
topk_radix_compact_kernel(const float *score, int64_t n, int k, int P, int64_t chunk,
                          uint32_t *ctl, u64 *sure, u64 *cand, int64_t gcap, int32_t *out)
{
    extern __shared__ u64 tr_dyn[];
    u64 *sel = tr_dyn, *cs = tr_dyn + P;   /* [P] the picks, [TR_SCAP] candidates */
    __shared__ TrSm sm;
    int tid = threadIdx.x, lane = tid & 31;
    int64_t t = blockIdx.y;
    const float *row = score + t * n;
    uint32_t *c = ctl + t * TC_WORDS;
    u64 *sr = sure + t * k, *cr = cand + t * gcap;
    uint32_t bstar = c[TC_BSTAR];      /* written by topk_radix_hist_kernel */
    uint32_t lt = (1u << lane) - 1u;
    int64_t c0 = (int64_t)blockIdx.x * chunk, c1 = c0 + chunk < n ? c0 + chunk : n;
    for (int64_t base = c0; base < c1; base += 4 * TR_THREADS) {
        float v[4];
        tr_load4(row, base, c1, tid, v);
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int64_t i = base + u * TR_THREADS + tid;
            uint32_t key = order_key(v[u]), bin = key >> (32 - TR_BITS);
            bool is_s = i < c1 && bin > bstar, is_c = i < c1 && bin == bstar;
            u64 K = tr_comp(key, (uint32_t)i);
            uint32_t ms = __ballot_sync(FULLMASK, is_s), mc = __ballot_sync(FULLMASK, is_c);
            if (ms) {
                int first = __ffs(ms) - 1;
                uint32_t b = 0;
                if (lane == first) b = atomicAdd(&c[TC_SUREPOS], (uint32_t)__popc(ms));
                b = __shfl_sync(FULLMASK, b, first);
                uint32_t p = b + (uint32_t)__popc(ms & lt);
                if (is_s && p < (uint32_t)k) sr[p] = K;
            }
            if (mc) {
                int first = __ffs(mc) - 1;
                uint32_t b = 0;
                if (lane == first) b = atomicAdd(&c[TC_CANDPOS], (uint32_t)__popc(mc));
                b = __shfl_sync(FULLMASK, b, first);
                uint32_t p = b + (uint32_t)__popc(mc & lt);
                if (is_c && p < (uint64_t)gcap) cr[p] = K;
            }
        }
    }
    __threadfence();                  /* our lists are written before the ticket */
    __syncthreads();
    if (tid == 0) sm.last = atomicAdd(&c[TC_DONE2], 1u) == gridDim.x - 1;
    __syncthreads();
    if (!sm.last) return;
    __threadfence();
    /* the last block of the row: select the rest of the top k from bin b* */
    uint32_t n_above = c[TC_NABOVE], nb = c[TC_NBIN], need = (uint32_t)k - n_above;
    u64 prefix = (u64)bstar << TR_LOW, tk;
    if (tid == 0) {
        sm.cnt = 0;
        c[TC_DONE2] = 0; c[TC_SUREPOS] = 0; c[TC_CANDPOS] = 0;   /* clean for the next call */
    }
    if (nb <= TR_SCAP) {
        for (uint32_t i = tid; i < nb; i += TR_THREADS) cs[i] = __ldcg(cr + i);
        __syncthreads();
        tk = tr_select(TrShared{ cs }, nb, nb, need, prefix, &sm);
        __syncthreads();
        tr_gather(TrShared{ cs }, nb, tk, bstar, need, sel, &sm);
    } else if ((int64_t)nb <= gcap) {
        tk = tr_select(TrGlobal{ cr }, nb, nb, need, prefix, &sm);
        __syncthreads();
        tr_gather(TrGlobal{ cr }, nb, tk, bstar, need, sel, &sm);
    } else {
        tk = tr_select(TrRow{ row }, n, nb, need, prefix, &sm);
        __syncthreads();
        tr_gather(TrRow{ row }, n, tk, bstar, need, sel, &sm);
    }
    for (uint32_t j = tid; j < n_above; j += TR_THREADS) sel[need + j] = __ldcg(sr + j);
    for (int i = k + tid; i < P; i += TR_THREADS) sel[i] = 0ull;   /* below every composite */
    __syncthreads();
    tr_sort_desc(sel, P);
    for (int i = tid; i < k; i += TR_THREADS) out[t * k + i] = (int32_t)(~(uint32_t)sel[i]);
}

/* the histograms and control words: our own allocation (not cuda_scratch, whose contents
 * cuda_release may drop), zeroed when (re)allocated or after a failed call, and left zero
 * by every completed call */
static uint32_t *g_tr_state = NULL;
static int64_t g_tr_rows = 0;
static int g_tr_dirty = 1;

/* [TOPK-1] the radix path: device score: [T, n] -> idx: [T, k] (arguments checked by launch_topk) */
static int launch_topk_radix(const float *dscore, int64_t T, int64_t n, int64_t k, int32_t *didx)
{
    if (T > 65535) return dsv4_set_error("cuda topk: T = %lld rows > 65535", (long long)T);
    if (T > g_tr_rows) {
        if (g_tr_state) cudaFree(g_tr_state);
        g_tr_state = NULL;
        g_tr_rows = 0;
        CK(cudaMalloc(&g_tr_state, (size_t)T * (TR_BINS + TC_WORDS) * sizeof(uint32_t)));
        g_tr_rows = T;
        g_tr_dirty = 1;
    }
    if (g_tr_dirty) {
        CK(cudaMemset(g_tr_state, 0, (size_t)g_tr_rows * (TR_BINS + TC_WORDS) * sizeof(uint32_t)));
        g_tr_dirty = 0;
    }
    uint32_t *ghist = g_tr_state, *ctl = g_tr_state + g_tr_rows * TR_BINS;
    int64_t gcap = n < TR_GCAP ? n : TR_GCAP;
    u64 *sure = (u64 *)cuda_scratch(14, (size_t)(T * k + T * gcap) * sizeof(u64));
    if (!sure) return -1;
    u64 *cand = sure + T * k;
    const int sms = cuda_sm_count();
    /* one wave: at most TR_BLOCKS_PER_SM blocks per SM in all (rows of G blocks); at least
     * TR_MIN_CHUNK entries per block */
    int64_t G = TR_BLOCKS_PER_SM * (int64_t)sms / T, gmax = (n + TR_MIN_CHUNK - 1) / TR_MIN_CHUNK;
    if (G > gmax) G = gmax;
    if (G < 1) G = 1;
    int64_t chunk = (n + G - 1) / G;
    chunk = (chunk + TR_THREADS - 1) / TR_THREADS * TR_THREADS;
    G = (n + chunk - 1) / chunk;
    int P = 32;
    while (P < k) P <<= 1;
    size_t smem = (size_t)(P + TR_SCAP) * sizeof(u64);
    static int attr = 0;
    if (!attr) {
        CK(cudaFuncSetAttribute(topk_radix_compact_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)((TOPK_MAX + TR_SCAP) * sizeof(u64))));
        attr = 1;
    }
    g_tr_dirty = 1;   /* until both launches are in */
    topk_radix_hist_kernel<<<dim3((unsigned)G, (unsigned)T), TR_THREADS>>>(dscore, n, (int)k, chunk, ghist, ctl);
    CK_LAUNCH("topk_radix_hist");
    topk_radix_compact_kernel<<<dim3((unsigned)G, (unsigned)T), TR_THREADS, smem>>>(
        dscore, n, (int)k, P, chunk, ctl, sure, cand, gcap, didx);
    CK_LAUNCH("topk_radix_compact");
    g_tr_dirty = 0;
    return 0;
}

/* ---- the choice of path: the one place ---- */

#define TOPK_DEFAULT DSV4_TOPK_RADIX

static int g_topk_variant = -1;
extern "C" void topk_use_variant(int variant) { g_topk_variant = variant; }

static int topk_variant(void)
{
    int v = g_topk_variant;
    if (v < 0) {
        const char *e = getenv("DSV4_CUDA_TOPK");
        v = TOPK_DEFAULT;
        if (e && strcmp(e, "old") == 0) v = DSV4_TOPK_OLD;
        else if (e && strcmp(e, "radix") == 0) v = DSV4_TOPK_RADIX;
    }
    return v == DSV4_TOPK_OLD ? DSV4_TOPK_OLD : DSV4_TOPK_RADIX;
}

/* [TOPK-1] device score: [T, n] -> idx: [T, k] int32 (score desc, index asc); k <= 2048 */
extern "C" int launch_topk(const float *dscore, int64_t T, int64_t n, int64_t k, int32_t *didx)
{
    if (T <= 0 || k <= 0) return 0;
    if (k > n) return dsv4_set_error("cuda topk: k = %lld > n = %lld", (long long)k, (long long)n);
    if (k > TOPK_MAX) return dsv4_set_error("cuda topk: k = %lld > %d", (long long)k, TOPK_MAX);
    if (n > 0x7FFFFFFF) return dsv4_set_error("cuda topk: n too large");
    if (topk_variant() == DSV4_TOPK_OLD) return launch_topk_old(dscore, T, n, k, didx);
    return launch_topk_radix(dscore, T, n, k, didx);
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
