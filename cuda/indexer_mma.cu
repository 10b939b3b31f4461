/* indexer_mma.cu — lightning-indexer scores on raw tensor-core instructions (spec/indexer.md
 * [IDX-4], official numerics; the reference is ref/indexer.c: indexer_scores; spec/cuda.md
 * "Indexer scores"). The default bf16 scores kernel for D = 128 and H a multiple of 16 up to
 * 64 (the choice: indexer_scores_variant in indexer.cu; scores_wmma_kernel stays variant 0).
 *
 *   score_j = bf16( sum_h bf16( relu(bf16(q_h . k_j)) * w_h ) )
 *
 * scores_mma_kernel<H>: grid G = min(#tiles, SMs x resident blocks), block 256 (8 warps),
 *   dynamic shared memory IM_STAGES x 16 KB + 256 B, two blocks per SM (<= 128 registers).
 *
 * Work split. The keys of each of the T sequences are cut into tiles of 64 keys (16 KB; a
 *   sequence's last tile may be partial: its missing rows are zero-filled by cp.async and
 *   their scores are not written). The flattened list of T x ceil(n/64) tiles is cut into G
 *   contiguous ranges of equal length (+-1), one per block: every SM streams the same number
 *   of bytes at batch 1 and at batch 64, and a block reloads q and w only where its range
 *   enters the next sequence.
 * Pipeline. A block's tiles stream through IM_STAGES shared stages (cp.async.cg, 16-byte
 *   pieces, 4 per thread per tile, coalesced), IM_STAGES - 1 tiles in flight while one is
 *   computed: 2 blocks x 3 x 16 KB = 96 KB requested per SM. One __syncthreads per tile
 *   (the tile has landed for every thread's pieces; the stage computed last is free).
 *   Rows are 256 B; the 16-byte piece c of row r sits at piece position c ^ (r & 7), so the
 *   8 row addresses of every ldmatrix 8x8 load fall in 8 different bank quads.
 * Layout. D[key][head] = sum_k K[key][k] q[head][k] as mma.m16n8k16 (bf16 x bf16 -> fp32):
 *   keys are M (the A operand, row-major = the key rows as stored, one ldmatrix.x4 per 16x16
 *   fragment), heads are N (the B operand, "col" = q rows as stored). Warp w: key group
 *   kg = w / 2 (rows 16 kg .. 16 kg + 15 of the tile) and head half hp = w % 2 (heads
 *   hp H/2 .. hp H/2 + H/2 - 1). The warp's q B-fragments stay in registers for the whole
 *   range: H/16 n-tiles x 8 k-steps x 2 = 64 registers at H = 64. Per tile and warp: 8
 *   ldmatrix.x4 + 8 x H/16 mma; each key fragment is read by the 2 warps of its pair (512 B
 *   of shared reads per key; q from shared memory instead would cost 768 B per key and a
 *   warp holding all 64 heads would need 128 registers of q).
 * Epilogue, on the accumulator registers. Thread (g = lane/4, t = lane%4) holds, per n-tile,
 *   the dots of keys g and g+8 with heads 2t, 2t+1: packed to bf16 pairs by one cvt.rn.bf16x2
 *   (the round_bf16 of the dot), ReLU by max.NaN.bf16x2, the head weight by mul.rn.bf16x2
 *   (= round_bf16 of the fp32 product: the product of two bf16 values is exact in fp32; used
 *   when every w_h is a bf16 value, as the official graph's [IDX-3]; otherwise the fp32 form
 *   of ref, per element). Those bf16 pairs of two n-tiles are exactly an m16n8k16 A fragment
 *   (keys x 16 heads), so the head sum is one more mma against a B of ones: fp32 sums of
 *   the rounded terms, accumulated by the tensor cores (no shuffles; the terms keep ref's
 *   rounding points, only the order / accumulation of the fp32 sum differs — the tolerance
 *   contract of spec/tolerances.md, as for the dots). The two head halves meet through 64
 *   floats of shared memory and a named barrier of the warp pair; each warp finishes 8 keys:
 *   score = bf16(half0 + half1).
 * Measured (H200, standalone run of this kernel): 27.9 us at T = 1 and 1197 us at T = 64 for
 *   262,144 keys (57% / 85.5% of the 4261 GB/s copy roofline; the wmma kernel 58.7 / 2862 us);
 *   3 or 6 stages measure the same, 8 (one block per SM) slower.
 * Pitfalls guarded: tail rows past n (zero-fill, no store); NaN propagates as in ref (the
 *   .NaN ReLU); no fused multiply-add is formed (-fmad=false; the products are explicit);
 *   keys and key_stride must allow 16-byte copies (checked by the launcher). */
#include <cstdint>
#include "cuda_common.cuh"
#include "kernels.h"
#include "mma.cuh"

#define IM_D 128                                  /* head dim (the V4 indexer) */
#define IM_KEYS 64                                /* keys per tile = per pipeline stage */
#define IM_STAGES 4
#define IM_THREADS 256
#define IM_STAGE_BYTES (IM_KEYS * IM_D * 2)       /* 16 KB */
#define IM_SMEM (IM_STAGES * IM_STAGE_BYTES + 4 * 16 * 4)

/* ---- PTX wrappers (the mma / ldmatrix / cp.async ones: mma.cuh) ---- */

/* (round_bf16(lo), round_bf16(hi)) packed, lo in the low half (cvt's first source goes high) */
__device__ __forceinline__ uint32_t im_pack(float lo, float hi)
{
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
/* ReLU of both halves; a NaN stays NaN (ref: `if (dh < 0) dh = 0` keeps it) */
__device__ __forceinline__ uint32_t im_relu(uint32_t x)
{
    uint32_t r;
    asm("max.NaN.bf16x2 %0, %1, %2;\n" : "=r"(r) : "r"(x), "r"(0u));
    return r;
}
/* round_bf16(a * b) per half (one rounding of the exact product) */
__device__ __forceinline__ uint32_t im_mul(uint32_t a, uint32_t b)
{
    uint32_t r;
    asm("mul.rn.bf16x2 %0, %1, %2;\n" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* named barrier 1 + kg of the two warps of key group kg (immediate ids: a register id would
 * make ptxas reserve all 16 barriers) */
__device__ __forceinline__ void im_pair_barrier(int kg)
{
    switch (kg) {
    case 0: asm volatile("bar.sync 1, 64;\n" ::: "memory"); break;
    case 1: asm volatile("bar.sync 2, 64;\n" ::: "memory"); break;
    case 2: asm volatile("bar.sync 3, 64;\n" ::: "memory"); break;
    default: asm volatile("bar.sync 4, 64;\n" ::: "memory"); break;
    }
}

/* rows row0 .. row0 + 63 of one sequence's keys kt: [n, 128] into the stage at shared address
 * sdst, swizzled (piece c of row r at position c ^ (r & 7)); rows >= n zero-filled. */
__device__ __forceinline__ void im_issue(uint32_t sdst, const __nv_bfloat16 *kt, int64_t row0, int64_t n, int tid)
{
    int64_t nvalid = n - row0;   /* >= 1 */
#pragma unroll
    for (int j = 0; j < IM_KEYS * IM_D / 8 / IM_THREADS; j++) {
        int p = tid + j * IM_THREADS, r = p >> 4, c = p & 15;
        bool ok = r < nvalid;
        const __nv_bfloat16 *src = kt + (row0 + (ok ? r : 0)) * IM_D + c * 8;
        cp_async16(sdst + (uint32_t)(r * 256 + ((c ^ (r & 7)) << 4)), src, ok ? 16u : 0u);
    }
}

/* [IDX-4] official. q: [T, H, 128] bf16, w: [T, H] fp32, keys of sequence t at
 * keys + t key_stride: [n, 128] bf16 -> score: [T, n] (bf16 values in fp32). tps = ceil(n/64)
 * tiles per sequence, ntiles = T tps. */
template <int H>
__global__ void __launch_bounds__(IM_THREADS, 2)
scores_mma_kernel(const __nv_bfloat16 *__restrict__ q, const float *__restrict__ w,
                  const __nv_bfloat16 *__restrict__ keys, int64_t key_stride, int64_t n, int64_t tps,
                  int64_t ntiles, float *__restrict__ score)
{
    constexpr int NTW = H / 16;              /* n-tiles (8 heads each) of the warp's H/2 heads */
    extern __shared__ __align__(128) unsigned char im_smem[];
    float *red = (float *)(im_smem + IM_STAGES * IM_STAGE_BYTES);   /* [4 key groups][16 keys] */
    const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(im_smem);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int kg = warp >> 1, hp = warp & 1, g = lane >> 2, t4 = lane & 3;

    /* the block's tiles [f0, f1) of the flattened (sequence, tile) list */
    const int64_t f0 = ntiles * blockIdx.x / gridDim.x, f1 = ntiles * (blockIdx.x + 1) / gridDim.x;
    const int64_t nf = f1 - f0;
    int64_t iss_seq = f0 / tps, iss_tile = f0 - iss_seq * tps;   /* the next tile to issue */
    for (int s = 0; s < IM_STAGES - 1; s++) {
        if (s < nf) {
            im_issue(sbase + s * IM_STAGE_BYTES, keys + iss_seq * key_stride, iss_tile * IM_KEYS, n, tid);
            if (++iss_tile == tps) { iss_tile = 0; iss_seq++; }
        }
        cp_async_commit();                          /* one group per tile, empty or not */
    }

    /* ldmatrix.x4 address of the A fragment (16 keys x k 16): lane l points at row
     * (l & 7) + 8 ((l >> 3) & 1) of the warp's 16 rows, logical piece 2 ks + (l >> 4); the
     * swizzled position ((2 ks + (l >> 4)) ^ (l & 7)) splits into the bit-0 part (fixed per
     * lane) and (2 ks) ^ (l & 6) (the xor with ks below). */
    const uint32_t a_off = (uint32_t)((kg * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * 256 +
                                      (((lane >> 4) ^ (lane & 1)) << 4));
    const uint32_t a_xor = (uint32_t)((lane & 6) << 4);

    uint32_t qf[NTW][8][2];   /* B fragments: head hp H/2 + 8 nt + g, dims 16 ks + 2 t (+1), + 8 */
    uint32_t wp[NTW];         /* bf16 (w_h0, w_h0+1), h0 = hp H/2 + 8 nt + 2 t */
    const float *ws = w;
    bool wbf = true;
    int64_t seq = f0 / tps, tile = f0 - seq * tps, cur_seq = -1;
    int slot = 0;
    for (int64_t i = 0; i < nf; i++) {
        if (seq != cur_seq) {                 /* block-uniform: this range enters sequence seq */
            cur_seq = seq;
            const __nv_bfloat16 *qs = q + seq * (int64_t)(H * IM_D);
#pragma unroll
            for (int nt = 0; nt < NTW; nt++) {
                const uint32_t *qr = (const uint32_t *)(qs + (hp * (H / 2) + nt * 8 + g) * IM_D) + t4;
#pragma unroll
                for (int ks = 0; ks < 8; ks++) {
                    qf[nt][ks][0] = __ldg(qr + ks * 8);
                    qf[nt][ks][1] = __ldg(qr + ks * 8 + 4);
                }
            }
            ws = w + seq * H;
            bool ok = true;
#pragma unroll
            for (int nt = 0; nt < NTW; nt++) {
                int h0 = hp * (H / 2) + nt * 8 + 2 * t4;
                float w0 = __ldg(ws + h0), w1 = __ldg(ws + h0 + 1);
                wp[nt] = im_pack(w0, w1);
                ok = ok && d_round_bf16(w0) == w0 && d_round_bf16(w1) == w1;
            }
            wbf = __all_sync(0xffffffffu, ok);
        }
        cp_async_wait<IM_STAGES - 2>();             /* this thread's pieces of tile i have landed */
        __syncthreads();                      /* everyone's; and tile i-1's stage is free */
        {
            int nslot = slot == 0 ? IM_STAGES - 1 : slot - 1;   /* (i + IM_STAGES - 1) % IM_STAGES */
            if (i + IM_STAGES - 1 < nf) {
                im_issue(sbase + nslot * IM_STAGE_BYTES, keys + iss_seq * key_stride, iss_tile * IM_KEYS, n, tid);
                if (++iss_tile == tps) { iss_tile = 0; iss_seq++; }
            }
            cp_async_commit();
        }

        /* dots: acc[nt] = keys (16 kg .. +15) x heads (hp H/2 + 8 nt ..), k over 128 */
        const uint32_t abase = sbase + (uint32_t)slot * IM_STAGE_BYTES + a_off;
        float acc[NTW][4];
#pragma unroll
        for (int nt = 0; nt < NTW; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < 8; ks++) {
            uint32_t a0, a1, a2, a3;
            ldsm_x4(abase + (((uint32_t)ks * 32u) ^ a_xor), a0, a1, a2, a3);
#pragma unroll
            for (int nt = 0; nt < NTW; nt++) mma_bf16_16816(acc[nt], a0, a1, a2, a3, qf[nt][ks][0], qf[nt][ks][1]);
        }

        /* terms bf16(relu(bf16(dot)) * w_h): pk[nt][0] = key g, pk[nt][1] = key g + 8, each the
         * heads (h0, h0 + 1) of n-tile nt */
        uint32_t pk[NTW][2];
        if (wbf) {
#pragma unroll
            for (int nt = 0; nt < NTW; nt++) {
                pk[nt][0] = im_mul(im_relu(im_pack(acc[nt][0], acc[nt][1])), wp[nt]);
                pk[nt][1] = im_mul(im_relu(im_pack(acc[nt][2], acc[nt][3])), wp[nt]);
            }
        } else {                              /* w not bf16-valued: ref's fp32 form */
#pragma unroll
            for (int nt = 0; nt < NTW; nt++) {
                int h0 = hp * (H / 2) + nt * 8 + 2 * t4;
                float w0 = __ldg(ws + h0), w1 = __ldg(ws + h0 + 1), d[4];
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    d[e] = d_round_bf16(acc[nt][e]);
                    if (d[e] < 0.0f) d[e] = 0.0f;
                }
                pk[nt][0] = im_pack(d[0] * w0, d[1] * w1);
                pk[nt][1] = im_pack(d[2] * w0, d[3] * w1);
            }
        }
        /* head sum on the tensor cores: A = the terms (16 keys x 16 heads of n-tiles j, j+1),
         * B = ones -> hs[0] = key g, hs[2] = key g + 8, summed over the warp's H/2 heads */
        float hs[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
        const uint32_t ones = 0x3F803F80u;   /* bf16 (1, 1) */
#pragma unroll
        for (int j = 0; j < NTW; j += 2) {
            uint32_t x0 = j + 1 < NTW ? pk[j + 1][0] : 0u, x1 = j + 1 < NTW ? pk[j + 1][1] : 0u;
            mma_bf16_16816(hs, pk[j][0], pk[j][1], x0, x1, ones, ones);
        }
        /* the pair: warp hp finishes keys 8 hp + g with the other half's sum from shared */
        if (t4 == 0) red[kg * 16 + (hp ? g : 8 + g)] = hp ? hs[0] : hs[2];
        im_pair_barrier(kg);
        if (t4 == 0) {
            int r = g + 8 * hp;
            float other = red[kg * 16 + r];
            float tot = hp ? other + hs[2] : hs[0] + other;   /* half 0 + half 1 */
            int64_t row = tile * IM_KEYS + kg * 16 + r;
            if (row < n) score[seq * n + row] = d_round_bf16(tot);
        }

        slot = slot + 1 == IM_STAGES ? 0 : slot + 1;
        if (++tile == tps) { tile = 0; seq++; }
    }
    cp_async_wait<0>();
}

/* test hook: at most m blocks (0: as many as are resident at once) */
static int g_mma_max_blocks = 0;
extern "C" void indexer_scores_mma_max_blocks(int m) { g_mma_max_blocks = m > 0 ? m : 0; }

extern "C" int indexer_scores_mma_supported(int H, int D)
{
    return D == IM_D && (H == 16 || H == 32 || H == 48 || H == 64);
}

template <int H>
static int launch_scores_mma(const __nv_bfloat16 *q, const float *w, const __nv_bfloat16 *k,
                             int64_t key_stride, int64_t T, int64_t n, float *score)
{
    static int per_sm = 0;
    const int n_sm = cuda_sm_count();
    if (!per_sm) {
        CK(cudaFuncSetAttribute(scores_mma_kernel<H>, cudaFuncAttributeMaxDynamicSharedMemorySize, IM_SMEM));
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, scores_mma_kernel<H>, IM_THREADS, IM_SMEM));
        if (per_sm < 1) per_sm = 1;
    }
    int64_t tps = (n + IM_KEYS - 1) / IM_KEYS, ntiles = T * tps;
    int64_t G = (int64_t)n_sm * per_sm;
    if (g_mma_max_blocks > 0 && G > g_mma_max_blocks) G = g_mma_max_blocks;
    if (G > ntiles) G = ntiles;
    scores_mma_kernel<H><<<(unsigned)G, IM_THREADS, IM_SMEM>>>(q, w, k, key_stride, n, tps, ntiles, score);
    CK_LAUNCH("indexer_scores_mma");
    return 0;
}

/* [IDX-4] official, bf16 q: [T, H, 128], w: [T, H], keys at dkeys + t key_stride: [n, 128]
 * (only rows < n are read) -> score: [T, n]; H in {16, 32, 48, 64}; keys 16-byte aligned,
 * key_stride a multiple of 8 elements */
extern "C" int launch_indexer_scores_mma(const void *dq, const float *dw, const void *dkeys,
                                         int64_t key_stride, int64_t T, int64_t n, int H, int D,
                                         float *dscore)
{
    if (T <= 0 || n <= 0) return 0;
    if (!indexer_scores_mma_supported(H, D))
        return dsv4_set_error("cuda indexer (mma): (H, D) = (%d, %d) not supported", H, D);
    if (((uintptr_t)dkeys & 15) || (key_stride & 7) || ((uintptr_t)dq & 3))
        return dsv4_set_error("cuda indexer (mma): keys must be 16-byte aligned with key_stride %% 8 == 0");
    const __nv_bfloat16 *q = (const __nv_bfloat16 *)dq, *k = (const __nv_bfloat16 *)dkeys;
    switch (H) {
    case 16: return launch_scores_mma<16>(q, dw, k, key_stride, T, n, dscore);
    case 32: return launch_scores_mma<32>(q, dw, k, key_stride, T, n, dscore);
    case 48: return launch_scores_mma<48>(q, dw, k, key_stride, T, n, dscore);
    default: return launch_scores_mma<64>(q, dw, k, key_stride, T, n, dscore);
    }
}
