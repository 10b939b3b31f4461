/* sparse_attention_mma.cu — V4 gathered sparse attention decode on raw tensor-core
 * instructions (mma.sync m16n8k16 bf16 + ldmatrix), official numerics
 * (spec/sparse-attention.md [SPA-1..SPA-4], [SPA-2] [SPA-3]; spec/cuda.md "Sparse attention,
 * mma kernel"; the reference is ref/sparse_attention.c: head_official).
 *
 * Arithmetic (as ref, per head h, list in 64-key blocks): l = f32(q.k) * scale (-inf for a
 * masked entry -1 or past the list end); M' = max(M, max l); a = e^{M - M'} (1 while
 * M = -inf, pitfall 13); p = e^{l - M'} (0 while M' = -inf); den = den a + sum p (fp32,
 * unrounded p); acc = acc a + sum bf16(p) v (fp32); end: out = bf16(acc / (den + e^{z - M})),
 * all masked -> exactly 0. MQA: one KV row is both key and value. Accumulation-order
 * differences from ref (spec/tolerances.md "CUDA vs reference"): q.k summed by the tensor
 * cores in four partial sums over D/4 each, added ((s0 + s1) + (s2 + s3)); sum p as a tree;
 * the tensor cores add bf16(p) v straight onto acc a (as sparse_attention_pipe.cu).
 *
 * sparse_mma_kernel<D, HT, HALF = 0>: grid (T * H/(16 HT), 1, splits), block 128 HT threads
 *   (HT = 2: 8 warps, 32 heads; HT = 1: 4 warps, 16 heads, for H % 32 == 16),
 *   1 block per SM (~226 KB shared for D = 512, HT = 2).
 * Warp w = (head tile ht = w / 4, quarter dq = w % 4): heads h0 = 16 ht .. +15 of the block,
 *   output dims dq D/4 .. +D/4-1. Per thread: the warp's Q A-fragments for its D/4 dims
 *   (D/16 registers, loaded once from global memory), the output accumulator
 *   16 x D/4 fp32 (D/8 registers), the running (M, den) of its two heads (rows g, g+8).
 * Shared memory: THREE stages of the gathered 64-key tile (64 rows x D bf16, 16-byte chunks
 *   XOR-swizzled by row: chunk c of row r at c ^ (r & 7), so the 8 rows an ldmatrix phase
 *   reads hit 8 different bank groups without padding — padding would not leave room for a
 *   third stage), the partial-S exchange [warps][8 n-tiles][32 lanes] float4 (reused within
 *   each head tile for the P fragments and row sums), row maxima, and a ring of four
 *   64-entry row-number slots.
 * Per 64-key tile kb (stage kb % 3, row slot kb % 4):
 *   1. wait for tile kb (cp.async group), __syncthreads; issue the gather of tile kb + 2
 *      (16-byte cp.async pieces, masked rows zero-filled with src-size 0; the row numbers
 *      were loaded into shared memory two tiles earlier, a plain global load per tile whose
 *      latency hides behind the arithmetic).
 *   2. S partial [16 heads x 64 keys] over the warp's D/4 dims: D/64 x 4 ldmatrix.x4 (K
 *      tile, non-transposed: a stored row = one key's 8 dims = a B column) and 2 mma each.
 *      Stored to shared memory in fragment order; bar.sync of the 4 warps of the head tile.
 *   3. Reduce-scatter: warp dq takes keys 16dq .. 16dq+15 (n-tiles 2dq, 2dq+1), sums the
 *      four partials (fixed order, so the 4 warps see identical bits), scale, mask; row max
 *      over its 16 keys (2 shuffles), exchanged (bar.sync) -> block max M' (max is exact).
 *   4. p = e^{l - M'} for the warp's 16 keys only (8 expf per thread, no redundancy);
 *      bf16(p) packed straight into the A fragment of P.V key step dq (the m16n8 C layout of
 *      two adjacent n-tiles IS the m16n8k16 A layout); the fragment and the row sums of p
 *      exchanged (bar.sync); den = den a + ((s0 + s1) + (s2 + s3)); acc *= a.
 *   5. acc += P V over the warp's D/4 dims: 4 key steps x D/64 ldmatrix.x4.trans (V tile
 *      = the same rows; the transposed load gives the B fragment k = key, n = dim) and
 *      2 mma each.
 *   ~ (D/32) x 8 mma + D/16 x 4 ldmatrix + ~250 other instructions per warp per tile, vs
 *   ~4000 per warp for sparse_pipe_kernel (spec/cuda.md "Why still below").
 * sparse_mma_kernel<D, 1, HALF = 1> ("mma2", cfg 1, sparse_attention_variant(3)): the same
 *   arithmetic with 2 blocks resident per SM (__launch_bounds__(128, 2); D = 512: 225
 *   registers, 115488 bytes of shared memory, so that 2 x (115488 + 1024 reserved) <= 228 KB).
 *   HT = 1 (4 warps, 16 heads: 4 blocks per query at H = 64, each gathering the same rows,
 *   the repeats L2 hits); the ring holds 3 HALF tiles (32 rows each, half tile u in slot
 *   u % 3, the same swizzle since a half starts at key 0 or 32); the softmax block stays 64
 *   keys. Per tile kb (halves 2kb, 2kb + 1 in slots sa, sa + 1; one cp.async group per half):
 *   wait half 2kb, __syncthreads, gather half 2kb + 2 into the third slot (freed by P.V of
 *   tile kb - 1); S over keys 0..31; wait half 2kb + 1, __syncthreads; S over keys 32..63;
 *   steps 3-4 as above (the head-tile barrier = __syncthreads); P.V key steps 0, 1;
 *   __syncthreads (half 2kb read by all); gather half 2kb + 3 into its slot; key steps 2, 3.
 *   Each s / o accumulator sees the same mma in the same order as the full-tile kernel, so
 *   one-pass results are bit-identical to it. Validity comes from 64-bit masks (ballot of
 *   the row numbers, ring of 4) so that 2 row-number slots suffice (the 256 bytes that make
 *   2 blocks fit). Key split as below with 2 x SMs block slots (the occupancy API).
 * Few queries (T * H/(16 HT) <= SMs / 2, e.g. batch 1): the key list is split into chunks
 * of whole 64-key blocks (grid.z) merged by launch_sparse_combine (sparse_attention.cu):
 * part [T, H, splits, D + 2] = (M, den, acc) per split — the same flash-decoding split and
 * rounding-order caveat as the other tensor-core kernels.
 * Requirements: H % 16 == 0, D in {64, 128, 512}; kv 16-byte aligned with kv_stride % 8 == 0
 * (16-byte row pieces), q 4-byte aligned. */
#include <cuda_bf16.h>
#include "cuda_common.cuh"
#include "kernels.h"
#include "mma.cuh"

#define MMA_KEYS 64      /* keys per tile = the reference's online-softmax block */
#define MMA_STAGES 3     /* gathered tiles in flight / in use */
#define MMA_SLOTS 4      /* row-number slots (tiles kb .. kb + 3) */

#define MMA_HALF_SLOTS 2 /* HALF: row-number slots (tiles kb + 1, kb + 2) */
#define MMA_SM_SMEM 233472   /* sm_90 shared memory per SM (228 KB) */
#define MMA_SM_RESERVED 1024 /* reserved by the system per resident block */

/* compile-time shape of one instantiation; byte offsets into dynamic shared memory.
 * HALF = 0: ring of MMA_STAGES full 64-row tiles, MMA_SLOTS row-number slots, masks read
 * from the row numbers (1 block per SM at D = 512). HALF = 1: ring of 3 half tiles (32
 * rows), MMA_HALF_SLOTS row-number slots, validity as 64-bit masks in a 4-entry ring
 * ([4][2] uint32); sized so that BPS = 2 blocks fit one SM (D = 512, HT = 1: 3 x 32 KB +
 * 16 KB exchange + 256 + 512 + 32 = 115488 bytes <= (233472 / 2) - 1024 = 115712). */
template <int D, int HT, int HALF>
struct mma_cfg {
    static constexpr int NT = 128 * HT;                 /* threads */
    static constexpr int NW = 4 * HT;                   /* warps */
    static constexpr int DQ = D / 4;                    /* dims per warp */
    static constexpr int KS = DQ / 16;                  /* k16 steps of S = n16 pairs of P.V */
    static constexpr int ROWB = D * 2;                  /* bytes per tile row */
    static constexpr int TILEB = MMA_KEYS * ROWB;
    static constexpr int CH = D / 8;                    /* 16-byte chunks per row */
    static constexpr int SROWS = HALF ? MMA_KEYS / 2 : MMA_KEYS;   /* rows per ring slot */
    static constexpr int SLOTB = SROWS * ROWB;          /* bytes per ring slot */
    static constexpr int RSLOTS = HALF ? MMA_HALF_SLOTS : MMA_SLOTS;
    static constexpr int BPS = HALF ? 2 : 1;            /* blocks per SM the size aims at */
    static constexpr int OFF_PART = MMA_STAGES * SLOTB; /* [NW][8][32] float4 */
    static constexpr int OFF_RMAX = OFF_PART + NW * 8 * 32 * 16;   /* [NW][16] float */
    static constexpr int OFF_ROWS = OFF_RMAX + NW * 16 * 4;        /* [RSLOTS][64] int32 */
    static constexpr int OFF_VMASK = OFF_ROWS + RSLOTS * MMA_KEYS * 4;   /* HALF: [4][2] uint32 */
    static constexpr int SMEM = OFF_VMASK + (HALF ? 4 * 2 * 4 : 0);
    static_assert(D % 64 == 0 && D >= 64, "D/4 must be a multiple of 16");
    static_assert(NT % CH == 0 && (SROWS * CH) % NT == 0, "gather mapping");
    static_assert(CH % 8 == 0, "the XOR swizzle needs 8 chunks per row");
    static_assert(!HALF || HT == 1, "HALF: one head tile (the block barrier is __syncthreads)");
    static_assert(SMEM <= 232448, "shared memory over the sm_90 per-block limit");
    static_assert(BPS * (SMEM + MMA_SM_RESERVED) <= MMA_SM_SMEM, "BPS blocks do not fit one SM");
};


/* Partial S of key groups JP0 .. JP1-1 (group jp = keys 16jp .. +15 = n-tiles 2jp, 2jp+1),
 * group jp's rows at tb + (jp - JP0) 16 rows: per k16 step kk (the warp's dims) one
 * ldmatrix.x4 per group (keys +0..7 / +8..15 x dims lo, the same x dims hi) and two mma. The
 * per-n-tile sums run in ascending kk whatever the group range, so splitting a tile's groups
 * over several calls gives identical bits. s: [8 n-tiles][4], qa: [KS][4] Q A-fragments,
 * coff: [KS] swizzled byte offsets. */
/* O += P V for key steps KK0 .. KK1-1 (step kk = keys 16kk .. +15), step kk's rows at tb +
 * (kk - KK0) 16 rows: per 16-dim pair np of the warp's dims one ldmatrix.x4.trans (keys +0..7
 * / +8..15 x dims lo, the same x dims hi: the B fragments k = key, n = dim) and two mma. Each
 * o[n] gets its steps in ascending kk whatever the range, so splitting a tile's steps over
 * several calls gives identical bits. o: [2 KS][4], pa: [4 steps][4] bf16(P) A-fragments. */
template <int KS, int ROWB, int KK0, int KK1>
__device__ __forceinline__ void mma_pv_steps(float (&o)[2 * KS][4], const uint32_t (&pa)[4][4], uint32_t tb,
                                             const uint32_t (&coff)[KS])
{
#pragma unroll
    for (int kk = KK0; kk < KK1; kk++) {
#pragma unroll
        for (int np = 0; np < KS; np++) {
            uint32_t v0, v1, v2, v3;
            ldsm_x4_t(tb + (uint32_t)((kk - KK0) * 16 * ROWB) + coff[np], v0, v1, v2, v3);
            mma_bf16_16816(o[2 * np], pa[kk], v0, v1);
            mma_bf16_16816(o[2 * np + 1], pa[kk], v2, v3);
        }
    }
}
template <int KS, int ROWB, int JP0, int JP1>
__device__ __forceinline__ void mma_qk_groups(float (&s)[8][4], const uint32_t (&qa)[KS][4], uint32_t tb,
                                              const uint32_t (&coff)[KS])
{
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
#pragma unroll
        for (int jp = JP0; jp < JP1; jp++) {
            uint32_t b0, b1, b2, b3;
            ldsm_x4(tb + (uint32_t)((jp - JP0) * 16 * ROWB) + coff[kk], b0, b1, b2, b3);
            mma_bf16_16816(s[2 * jp], qa[kk], b0, b2);
            mma_bf16_16816(s[2 * jp + 1], qa[kk], b1, b3);
        }
    }
}
/* barrier of the `count` threads (whole warps) that use barrier `id` (1.., 0 = __syncthreads) */
__device__ __forceinline__ void mma_bar(int id, int count)
{
    asm volatile("bar.sync %0, %1;\n" :: "r"(id), "r"(count) : "memory");
}
/* [NUM-2] two floats -> bf16x2 (RNE, = round_bf16 each), lo in the low half */
__device__ __forceinline__ uint32_t mma_pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return (uint32_t)__bfloat16_as_ushort(v.x) | ((uint32_t)__bfloat16_as_ushort(v.y) << 16);
}

/* [SPA-1..SPA-4] official, bf16 q: [T, H, D], kv rows of query t at kv + (t / q_per_kv) *
 * kv_stride (bf16, [n_kv, D]), idx: [T, n_idx] int32 (-1 masked), sink: [H] fp32 ->
 * block (t * G + g, 0, s): heads (16 HT) g .. +16 HT - 1 of query t over list entries
 * [s * keys_per_split, ...); part == NULL: out: [T, H, D] (bf16 values as float), else
 * part: [T, H, splits, D + 2] = (M, den, acc) for launch_sparse_combine. */
template <int D, int HT, int HALF>
__global__ void __launch_bounds__(128 * HT, HALF ? 2 : 1)
sparse_mma_kernel(const __nv_bfloat16 *q, int64_t H, const __nv_bfloat16 *kv, int64_t kv_stride,
                  int64_t q_per_kv, const int32_t *idx, int64_t n_idx, const float *sink,
                  float scale, float *out, int64_t keys_per_split, float *part)
{
    typedef mma_cfg<D, HT, HALF> C;
    extern __shared__ __align__(128) unsigned char smraw[];
    float4 *partS = reinterpret_cast<float4 *>(smraw + C::OFF_PART);
    float *rmax = reinterpret_cast<float *>(smraw + C::OFF_RMAX);
    int32_t *rows = reinterpret_cast<int32_t *>(smraw + C::OFF_ROWS);
    uint32_t *vmask = reinterpret_cast<uint32_t *>(smraw + C::OFF_VMASK);   /* HALF only */
    const uint32_t kv_s = smem_addr(smraw);

    const int64_t G = H / (16 * HT);
    const int64_t t = (int64_t)blockIdx.x / G;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int ht = warp >> 2, dq = warp & 3;
    const int gr = lane >> 2, tg = lane & 3;         /* fragment row group, column pair */
    const int64_t h0 = ((int64_t)blockIdx.x % G) * (16 * HT) + ht * 16;   /* warp's first head */
    const __nv_bfloat16 *kvt = kv + (t / q_per_kv) * kv_stride;
    const int32_t *it = idx + t * n_idx;
    const int64_t k_begin = (int64_t)blockIdx.z * keys_per_split;
    const int64_t k_end = k_begin + keys_per_split < n_idx ? k_begin + keys_per_split : n_idx;
    const int nkb = k_begin < k_end ? (int)((k_end - k_begin + MMA_KEYS - 1) / MMA_KEYS) : 0;
    const int bar_id = 1 + ht;                        /* the head tile's 4 warps */
    /* barrier of the head tile; HALF (HT = 1): the whole block, barrier 0 */
    auto hbar = [&]() {
        if constexpr (HALF) __syncthreads();
        else mma_bar(bar_id, 128);
    };

    /* list entry j of tile kb: its row number, -1 when masked or past the chunk */
    auto row_of = [&](int kb, int j) -> int32_t {
        int64_t pos = k_begin + (int64_t)kb * MMA_KEYS + j;
        return pos < k_end ? it[pos] : -1;
    };
    /* issues the gather of ring unit u (HALF = 0: tile u from row slot u % 4; HALF = 1:
     * half tile u = rows 32 (u & 1) .. +31 of tile u / 2, from row slot (u / 2) % 2) into
     * ring slot `slot` (u % 3). Thread: chunk c = tid % CH of rows r0 + i RSTEP of the slot
     * (a warp reads 32 consecutive chunks of one row: coalesced). RSTEP is a power of two
     * > r0, so r & 7 = (r0 & 7) ^ ((i RSTEP) & 7) and the swizzled chunk is
     * (c ^ (r0 & 7)) ^ (compile-time constant); a half tile starts at key 0 or 32, so the
     * slot row's r & 7 is the key's & 7 as in a full tile. */
    constexpr int RSTEP = C::NT / C::CH;
    static_assert((RSTEP & (RSTEP - 1)) == 0, "RSTEP must be a power of two");
    const int g_r0 = tid / C::CH;
    const uint32_t g_dst0 = kv_s + (uint32_t)(g_r0 * C::ROWB);
    const uint32_t g_cx = (uint32_t)(((tid % C::CH) ^ (g_r0 & 7)) << 4);
    const char *g_src0 = reinterpret_cast<const char *>(kvt) + (tid % C::CH) * 16;
    auto gather = [&](int u, int slot) {
        const int32_t *rs = HALF ? rows + ((u >> 1) & (MMA_HALF_SLOTS - 1)) * MMA_KEYS + (u & 1) * C::SROWS + g_r0
                                 : rows + (u & (MMA_SLOTS - 1)) * MMA_KEYS + g_r0;
        const uint32_t dst = g_dst0 + (uint32_t)(slot * C::SLOTB);
#pragma unroll
        for (int i = 0; i < C::SROWS / RSTEP; i++) {
            int32_t g = rs[i * RSTEP];
            const char *src = g_src0 + (int64_t)(g >= 0 ? g : 0) * C::ROWB;   /* masked: unread */
            cp_async16(dst + (uint32_t)(i * RSTEP * C::ROWB) + (g_cx ^ (uint32_t)(((i * RSTEP) & 7) << 4)),
                     src, g >= 0 ? 16u : 0u);
        }
    };

    if constexpr (!HALF) {
        /* prologue: row numbers of tiles 0..2, gathers of tiles 0 and 1 (always two groups) */
        if (tid < MMA_KEYS)
            for (int s = 0; s < 3; s++) rows[s * MMA_KEYS + tid] = row_of(s, tid);
        __syncthreads();
        if (nkb > 0) gather(0, 0);
        cp_async_commit();
        if (nkb > 1) gather(1, 1);
        cp_async_commit();
    } else {
        /* prologue: row numbers and validity masks of tiles 0, 1 (threads 0..63 = warps 0, 1:
         * whole warps, so the ballot is uniform), gathers of half tiles 0 and 1 (= tile 0;
         * always two groups) */
        if (warp < 2)
            for (int s = 0; s < 2; s++) {
                int32_t r = row_of(s, tid);
                rows[s * MMA_KEYS + tid] = r;
                uint32_t b = __ballot_sync(0xffffffffu, r >= 0);
                if (lane == 0) vmask[s * 2 + warp] = b;
            }
        __syncthreads();
        if (nkb > 0) gather(0, 0);
        cp_async_commit();
        if (nkb > 0) gather(1, 1);
        cp_async_commit();
    }

    /* the warp's Q A-fragments: rows h0 + gr (+8), dims dq DQ + 16 kk + 2 tg (+8) */
    uint32_t qa[C::KS][4];
    {
        const __nv_bfloat16 *q0 = q + ((t * H) + h0 + gr) * D + dq * C::DQ + 2 * tg;
        const __nv_bfloat16 *q1 = q0 + 8 * D;
#pragma unroll
        for (int kk = 0; kk < C::KS; kk++) {
            qa[kk][0] = __ldg(reinterpret_cast<const unsigned int *>(q0 + 16 * kk));
            qa[kk][1] = __ldg(reinterpret_cast<const unsigned int *>(q1 + 16 * kk));
            qa[kk][2] = __ldg(reinterpret_cast<const unsigned int *>(q0 + 16 * kk + 8));
            qa[kk][3] = __ldg(reinterpret_cast<const unsigned int *>(q1 + 16 * kk + 8));
        }
    }
    /* ldmatrix lane addressing, shared by K (S) and V (P.V): lane l -> matrix mi = l / 8,
     * row ri = l % 8; matrix mi covers keys 8 (mi & 1) .. +7 of a 16-key group and the
     * 8-dim chunk (mi >> 1) of a 16-dim pair. Row key & 7 == ri, hence the swizzle. */
    const int mi = lane >> 3, ri = lane & 7;
    const uint32_t lofs = (uint32_t)((8 * (mi & 1) + ri) * C::ROWB);
    uint32_t coff[C::KS];   /* swizzled byte offset of 16-dim pair u of the warp's dims */
#pragma unroll
    for (int u = 0; u < C::KS; u++)
        coff[u] = (uint32_t)((((dq * C::DQ) / 8 + (mi >> 1) + 2 * u) ^ ri) << 4);

    float o[2 * C::KS][4];
#pragma unroll
    for (int n = 0; n < 2 * C::KS; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float M0 = -INFINITY, M1 = -INFINITY, den0 = 0.0f, den1 = 0.0f;   /* rows gr, gr + 8 */

    /* HALF: ring slot of half tile 2kb (the first half of tile kb); 2kb + 1 is in (sa + 1) % 3,
     * the free slot (half 2kb + 2) is (sa + 2) % 3 = the next iteration's sa */
    int sa = 0;
    for (int kb = 0; kb < nkb; kb++) {
        /* row numbers of tile kb + 3 (HALF: kb + 2), stored at the end of this iteration */
        int32_t rnext = tid < MMA_KEYS ? row_of(kb + (HALF ? 2 : 3), tid) : -1;
        const int sb = sa == 2 ? 0 : sa + 1, sc = sb == 2 ? 0 : sb + 1;
        /* full: this thread's pieces of tile kb have landed (committed: tiles .. kb + 1);
         * HALF: those of half 2kb (committed: halves .. 2kb + 1) */
        cp_async_wait<1>();
        __syncthreads();    /* everyone's; and iteration kb - 1 is over (stage, slot, exchange free) */
        if constexpr (!HALF) {
            if (kb + 2 < nkb) gather(kb + 2, (kb + 2) % MMA_STAGES);
        } else {
            if (kb + 1 < nkb) gather(2 * kb + 2, sc);   /* into the slot of half 2kb - 1 */
        }
        cp_async_commit();

        /* key group jp (keys 16jp .. +15) of tile kb at tb0 + jp 16 rows (jp < 2), tb1 +
         * (jp - 2) 16 rows (jp >= 2); full tile: tb1 = tb0 + 32 rows */
        const uint32_t tb0 = kv_s + (uint32_t)((HALF ? sa : kb % MMA_STAGES) * C::SLOTB) + lofs;
        const uint32_t tb1 = HALF ? kv_s + (uint32_t)(sb * C::SLOTB) + lofs : tb0 + (uint32_t)(32 * C::ROWB);
        const int32_t *rs = rows + (kb & (MMA_SLOTS - 1)) * MMA_KEYS;   /* !HALF */

        /* 2. partial S over the warp's dims: n-tile j = keys 8j .. 8j+7 */
        {
            float s[8][4];
#pragma unroll
            for (int j = 0; j < 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            if constexpr (!HALF) {
                mma_qk_groups<C::KS, C::ROWB, 0, 4>(s, qa, tb0, coff);
            } else {
                /* half by half: keys 0..31 while half 2kb + 1 may still be landing */
                mma_qk_groups<C::KS, C::ROWB, 0, 2>(s, qa, tb0, coff);
                cp_async_wait<1>();   /* half 2kb + 1 (committed: halves .. 2kb + 2) */
                __syncthreads();    /* everyone's pieces of it */
                mma_qk_groups<C::KS, C::ROWB, 2, 4>(s, qa, tb1, coff);
            }
            float4 *mine = partS + warp * 256;
#pragma unroll
            for (int j = 0; j < 8; j++) mine[j * 32 + lane] = make_float4(s[j][0], s[j][1], s[j][2], s[j][3]);
        }
        hbar();

        /* 3. full logits of keys 16dq .. 16dq+15: l[u][e], n-tile 2dq + u, element e
         * (row gr + 8 (e >> 1), key 8 (2dq + u) + 2tg + (e & 1)) */
        float l[2][4];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int j = 2 * dq + u;
            float4 p0 = partS[((ht * 4 + 0) * 8 + j) * 32 + lane];
            float4 p1 = partS[((ht * 4 + 1) * 8 + j) * 32 + lane];
            float4 p2 = partS[((ht * 4 + 2) * 8 + j) * 32 + lane];
            float4 p3 = partS[((ht * 4 + 3) * 8 + j) * 32 + lane];
            bool v0, v1;
            if constexpr (!HALF) {
                int2 rr = *reinterpret_cast<const int2 *>(rs + 8 * j + 2 * tg);
                v0 = rr.x >= 0; v1 = rr.y >= 0;
            } else {
                /* bit k % 32 of word k / 32 of tile kb's mask: key k = 8j + 2tg valid */
                uint32_t w = vmask[(kb & 3) * 2 + (j >> 2)] >> ((8 * j + 2 * tg) & 31);
                v0 = (w & 1u) != 0; v1 = (w & 2u) != 0;
            }
            l[u][0] = v0 ? ((p0.x + p1.x) + (p2.x + p3.x)) * scale : -INFINITY;
            l[u][1] = v1 ? ((p0.y + p1.y) + (p2.y + p3.y)) * scale : -INFINITY;
            l[u][2] = v0 ? ((p0.z + p1.z) + (p2.z + p3.z)) * scale : -INFINITY;
            l[u][3] = v1 ? ((p0.w + p1.w) + (p2.w + p3.w)) * scale : -INFINITY;
        }
        float mx0 = fmaxf(fmaxf(l[0][0], l[0][1]), fmaxf(l[1][0], l[1][1]));
        float mx1 = fmaxf(fmaxf(l[0][2], l[0][3]), fmaxf(l[1][2], l[1][3]));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        if (tg == 0) { rmax[warp * 16 + gr] = mx0; rmax[warp * 16 + gr + 8] = mx1; }
        hbar();   /* also: every partial of this head tile has been read */
        float bm0 = M0, bm1 = M1;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            bm0 = fmaxf(bm0, rmax[(ht * 4 + w) * 16 + gr]);
            bm1 = fmaxf(bm1, rmax[(ht * 4 + w) * 16 + gr + 8]);
        }

        /* 4. probabilities of the warp's 16 keys; P fragment of key step dq; row sums */
        float a0 = (M0 == -INFINITY) ? 1.0f : expf(M0 - bm0);
        float a1 = (M1 == -INFINITY) ? 1.0f : expf(M1 - bm1);
        float p[2][4];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            p[u][0] = (bm0 == -INFINITY) ? 0.0f : expf(l[u][0] - bm0);
            p[u][1] = (bm0 == -INFINITY) ? 0.0f : expf(l[u][1] - bm0);
            p[u][2] = (bm1 == -INFINITY) ? 0.0f : expf(l[u][2] - bm1);
            p[u][3] = (bm1 == -INFINITY) ? 0.0f : expf(l[u][3] - bm1);
        }
        float ps0 = (p[0][0] + p[0][1]) + (p[1][0] + p[1][1]);
        float ps1 = (p[0][2] + p[0][3]) + (p[1][2] + p[1][3]);
        ps0 += __shfl_xor_sync(0xffffffffu, ps0, 1);
        ps1 += __shfl_xor_sync(0xffffffffu, ps1, 1);
        ps0 += __shfl_xor_sync(0xffffffffu, ps0, 2);
        ps1 += __shfl_xor_sync(0xffffffffu, ps1, 2);
        {
            /* into this warp's own partial slot (its readers passed the last barrier) */
            uint4 *pf = reinterpret_cast<uint4 *>(partS + warp * 256);
            float *psum = reinterpret_cast<float *>(partS + warp * 256 + 32);
            pf[lane] = make_uint4(mma_pack_bf16(p[0][0], p[0][1]), mma_pack_bf16(p[0][2], p[0][3]),
                                  mma_pack_bf16(p[1][0], p[1][1]), mma_pack_bf16(p[1][2], p[1][3]));
            if (tg == 0) { psum[gr] = ps0; psum[gr + 8] = ps1; }
        }
        hbar();
        uint32_t pa[4][4];
        float bs[2][4];
#pragma unroll
        for (int w = 0; w < 4; w++) {
            uint4 v = reinterpret_cast<const uint4 *>(partS + (ht * 4 + w) * 256)[lane];
            pa[w][0] = v.x; pa[w][1] = v.y; pa[w][2] = v.z; pa[w][3] = v.w;
            const float *psum = reinterpret_cast<const float *>(partS + (ht * 4 + w) * 256 + 32);
            bs[0][w] = psum[gr];
            bs[1][w] = psum[gr + 8];
        }
        den0 = den0 * a0 + ((bs[0][0] + bs[0][1]) + (bs[0][2] + bs[0][3]));
        den1 = den1 * a1 + ((bs[1][0] + bs[1][1]) + (bs[1][2] + bs[1][3]));
        M0 = bm0;
        M1 = bm1;

        /* 5. acc = acc a + P V over the warp's dims (n-tile n = dims dq DQ + 8n .. +7) */
#pragma unroll
        for (int n = 0; n < 2 * C::KS; n++) {
            o[n][0] *= a0; o[n][1] *= a0;
            o[n][2] *= a1; o[n][3] *= a1;
        }
        if constexpr (!HALF) {
            mma_pv_steps<C::KS, C::ROWB, 0, 4>(o, pa, tb0, coff);
            if (tid < MMA_KEYS) rows[((kb + 3) & (MMA_SLOTS - 1)) * MMA_KEYS + tid] = rnext;
        } else {
            /* key steps 0, 1 from half 2kb, then its slot is free: gather half 2kb + 3 into
             * it; key steps 2, 3 from half 2kb + 1 (the same mma order into o as above) */
            mma_pv_steps<C::KS, C::ROWB, 0, 2>(o, pa, tb0, coff);
            __syncthreads();   /* every warp is done with half 2kb (S and P.V) */
            if (kb + 1 < nkb) gather(2 * kb + 3, sa);
            cp_async_commit();
            mma_pv_steps<C::KS, C::ROWB, 2, 4>(o, pa, tb1, coff);
            /* tile kb + 2: row numbers into the slot of tile kb (its halves were gathered in
             * iteration kb - 1 / the prologue; every thread has passed this iteration's top
             * barrier since), validity mask into entry (kb + 2) % 4 (tile kb - 2's, last read
             * in iteration kb - 2) */
            if (warp < 2) {
                rows[((kb + 2) & (MMA_HALF_SLOTS - 1)) * MMA_KEYS + tid] = rnext;
                uint32_t b = __ballot_sync(0xffffffffu, rnext >= 0);
                if (lane == 0) vmask[((kb + 2) & 3) * 2 + warp] = b;
            }
            sa = sc;
        }
    }
    cp_async_wait<0>();   /* no copy may outlive the block (only empty groups remain) */

    const int64_t hA = h0 + gr, hB = h0 + gr + 8;
    if (part) {   /* split over keys: this chunk's (M, den, acc) */
        const int64_t ns = gridDim.z;
        float *pA = part + ((t * H + hA) * ns + blockIdx.z) * (D + 2);
        float *pB = part + ((t * H + hB) * ns + blockIdx.z) * (D + 2);
        if (dq == 0 && tg == 0) { pA[0] = M0; pA[1] = den0; pB[0] = M1; pB[1] = den1; }
#pragma unroll
        for (int n = 0; n < 2 * C::KS; n++) {
            int e = dq * C::DQ + 8 * n + 2 * tg;
            *reinterpret_cast<float2 *>(pA + 2 + e) = make_float2(o[n][0], o[n][1]);
            *reinterpret_cast<float2 *>(pB + 2 + e) = make_float2(o[n][2], o[n][3]);
        }
        return;
    }
    const bool zA = M0 == -INFINITY, zB = M1 == -INFINITY;   /* all masked -> exactly 0 */
    const float dA = zA ? 1.0f : den0 + expf(sink[hA] - M0);
    const float dB = zB ? 1.0f : den1 + expf(sink[hB] - M1);
    float *oA = out + (t * H + hA) * D, *oB = out + (t * H + hB) * D;
#pragma unroll
    for (int n = 0; n < 2 * C::KS; n++) {
        int e = dq * C::DQ + 8 * n + 2 * tg;
        *reinterpret_cast<float2 *>(oA + e) = zA ? make_float2(0.0f, 0.0f)
            : make_float2(d_round_bf16(o[n][0] / dA), d_round_bf16(o[n][1] / dA));
        *reinterpret_cast<float2 *>(oB + e) = zB ? make_float2(0.0f, 0.0f)
            : make_float2(d_round_bf16(o[n][2] / dB), d_round_bf16(o[n][3] / dB));
    }
}

/* resident blocks per SM of one instantiation (the occupancy API; sets the dynamic shared
 * memory attribute first, and for HALF the carveout to all shared memory); < 0 (error set)
 * when an attribute cannot be set */
template <int D, int HT, int HALF>
static int mma_blocks_per_sm()
{
    typedef mma_cfg<D, HT, HALF> C;
    static int bps = 0;
    if (bps <= 0) {
        CK(cudaFuncSetAttribute(sparse_mma_kernel<D, HT, HALF>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM));
        if (HALF)
            CK(cudaFuncSetAttribute(sparse_mma_kernel<D, HT, HALF>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                    (int)cudaSharedmemCarveoutMaxShared));
        int n = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, sparse_mma_kernel<D, HT, HALF>, C::NT, C::SMEM) != cudaSuccess)
            cudaGetLastError(), n = 0;
        bps = n > 0 ? n : 1;
    }
    return bps;
}

template <int D, int HT, int HALF>
static int launch_mma(const void *dq, int64_t T, int64_t H, const void *dkv, int64_t kv_stride,
                      int64_t q_per_kv, const int32_t *didx, int64_t n_idx, const float *dsink,
                      float scale, float *dout, int allow_split)
{
    typedef mma_cfg<D, HT, HALF> C;
    /* HALF = 0 keeps its split as before (1 block per SM assumed, whatever D) */
    const int bps_real = mma_blocks_per_sm<D, HT, HALF>();   /* < 0: an attribute failed */
    if (bps_real < 0) return -1;
    const int bps = HALF ? bps_real : 1;
    const int n_sm = cuda_sm_count();
    /* bps resident blocks per SM (1 for HALF = 0): few queries (at most half the slots
     * busy) -> split the key list so that about bps blocks per SM run */
    const int64_t slots = (int64_t)n_sm * bps;
    int64_t G = H / (16 * HT), blocks = T * G, nkb = (n_idx + MMA_KEYS - 1) / MMA_KEYS;
    int64_t ns = allow_split && 2 * blocks <= slots ? slots / blocks : 1;
    if (ns > nkb) ns = nkb > 0 ? nkb : 1;
    if (ns > 65535) ns = 65535;
    int64_t kps = ((nkb + ns - 1) / ns) * MMA_KEYS;
    if (kps <= 0) kps = MMA_KEYS;
    ns = (n_idx + kps - 1) / kps > 0 ? (n_idx + kps - 1) / kps : 1;
    float *part = NULL;
    if (ns > 1) {
        part = (float *)cuda_scratch(12, (size_t)(T * H * ns * (D + 2)) * sizeof(float));
        if (!part) return -1;
    }
    sparse_mma_kernel<D, HT, HALF><<<dim3((unsigned)blocks, 1, (unsigned)ns), C::NT, C::SMEM>>>(
        (const __nv_bfloat16 *)dq, H, (const __nv_bfloat16 *)dkv, kv_stride, q_per_kv, didx, n_idx,
        dsink, scale, dout, ns > 1 ? kps : (n_idx > 0 ? n_idx : 1), part);
    CK_LAUNCH(HALF ? "sparse_attention_mma2" : "sparse_attention_mma");
    if (ns > 1) return launch_sparse_combine(part, T, H, D, ns, dsink, dout);
    return 0;
}

/* [SPA-1..SPA-4] does the mma kernel take this shape (H % 16 == 0, D in {64, 128, 512},
 * kv 16-byte aligned rows)? (both configurations) */
extern "C" int sparse_attention_mma_supports(int64_t H, int64_t D, const void *dkv, int64_t kv_stride)
{
    return H > 0 && H % 16 == 0 && (D == 512 || D == 128 || D == 64) &&
           ((uintptr_t)dkv % 16) == 0 && kv_stride % 8 == 0;
}

/* resident blocks per SM of configuration cfg (0: the 1-block kernel at HT = 2, 1: mma2)
 * for D in {64, 128, 512} (the occupancy API; for the kernel lab); 0 for another D */
extern "C" int sparse_attention_mma_blocks_per_sm(int64_t D, int cfg)
{
    if (D == 512) return cfg ? mma_blocks_per_sm<512, 1, 1>() : mma_blocks_per_sm<512, 2, 0>();
    if (D == 128) return cfg ? mma_blocks_per_sm<128, 1, 1>() : mma_blocks_per_sm<128, 2, 0>();
    if (D == 64) return cfg ? mma_blocks_per_sm<64, 1, 1>() : mma_blocks_per_sm<64, 2, 0>();
    return 0;
}

/* [SPA-1..SPA-4] device form on mma.sync + ldmatrix (official, bf16 q and kv);
 * allow_split: 0 = one pass over the key list per query (ref's block order);
 * cfg: 0 = 3 full-tile stages, 1 block per SM (HT = 2 where H % 32 == 0, else 1);
 *      1 = mma2: HT = 1, a ring of 3 half tiles, 2 blocks per SM (HALF = 1). */
extern "C" int launch_sparse_attention_mma_cfg(const void *dq, int64_t T, int64_t H, int64_t D,
                                               const void *dkv, int64_t kv_stride, int64_t q_per_kv,
                                               const int32_t *didx, int64_t n_idx, const float *dsink,
                                               float scale, float *dout, int allow_split, int cfg)
{
    if (T <= 0) return 0;
    if (!sparse_attention_mma_supports(H, D, dkv, kv_stride))
        return dsv4_set_error("cuda sparse_attention (mma): H = %lld, D = %lld not supported "
                              "(H %% 16 == 0, D in {64, 128, 512}, 16-byte kv rows)", (long long)H, (long long)D);
    if (cfg == 1) {
        if (D == 512) return launch_mma<512, 1, 1>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout, allow_split);
        if (D == 128) return launch_mma<128, 1, 1>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout, allow_split);
        return launch_mma<64, 1, 1>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout, allow_split);
    }
    const bool h32 = H % 32 == 0;
    if (D == 512) return h32 ? launch_mma<512, 2, 0>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout, allow_split)
                             : launch_mma<512, 1, 0>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout, allow_split);
    if (D == 128) return h32 ? launch_mma<128, 2, 0>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout, allow_split)
                             : launch_mma<128, 1, 0>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout, allow_split);
    return h32 ? launch_mma<64, 2, 0>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout, allow_split)
               : launch_mma<64, 1, 0>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout, allow_split);
}

/* [SPA-1..SPA-4] the default configuration (cfg 0) */
extern "C" int launch_sparse_attention_mma(const void *dq, int64_t T, int64_t H, int64_t D,
                                           const void *dkv, int64_t kv_stride, int64_t q_per_kv,
                                           const int32_t *didx, int64_t n_idx, const float *dsink,
                                           float scale, float *dout, int allow_split)
{
    return launch_sparse_attention_mma_cfg(dq, T, H, D, dkv, kv_stride, q_per_kv, didx, n_idx, dsink,
                                           scale, dout, allow_split, 0);
}
