/* linear.cu — y = x W^T for every weight storage (spec/linear.md [LIN-1..LIN-4]; the
 * reference is ref/linear.c: linear).
 *
 * Kernels:
 *   act_quant_kernel   [LIN-3] x: [n, K] -> xq: [n, K] (e4m3 values as float), sx: [n, K/128]
 *                      grid (K/128, n), block 32: one warp per 128-wide block of one row.
 *                      (act_quant_kernel<__half>: the same with f16 codes, for the mma kernel.)
 *   linear_kernel<M>   grid (ceil(R/8), ceil(n/8)), block 256: each warp owns one output
 *                      feature r and 8 tokens; lane l reads weight elements k0+4l..k0+4l+3 of
 *                      each 128-wide K step (coalesced), dequantizes them in registers
 *                      (bf16 / e4m3 x 128x128 block scale / e2m1 x 32-group scale) and
 *                      accumulates in fp32. The fp32 forms at n < 16 (and every GEMM under
 *                      DSV4_CUDA_GEMM=simt).
 *   linear_tiled_kernel<KIND,BN>  (the fp32 forms at n >= 16: exact mode for every dtype,
 *                      official out_f32, f32 weights, bf16 with K % 128 != 0)
 *                      grid (ceil(n/BM), ceil(R/BN), nsplit), block 256: 64 x 64 (or 32 x 128
 *                      for n <= 32) output tile per block, 4 x 4 per thread, 32-wide K steps
 *                      staged in shared memory (weights dequantized once per element to their
 *                      exact fp32 value, activations fp32, both k-major), fmaf in ascending k;
 *                      K split over blocks when the tile grid is small, the slices added in
 *                      fixed order by linear_split_sum_kernel. Details above the kernel.
 *   linear_tc_kernel<M>  wmma, weights staged in shared memory (DSV4_CUDA_GEMM=tc; slow at
 *                      decode shapes, kept as a variant).
 *   linear_mma_kernel<M,MT,NT>  (the default for official bf16 / FP8 / FP4 with K % 128 == 0)
 *                      grid (ceil(n/(8 NT)), ceil(R/(16 MT WM))), block 256: mma.sync
 *                      m16n8k16 with the weight rows as M and the tokens as N, weights read
 *                      straight from global memory in 4/8/16-byte loads per lane (K order
 *                      permuted inside each 32-chunk, identically in A and B), decoded in
 *                      registers, K split over the warps of a block and summed in fixed
 *                      order. Details above the kernel.
 * Numerics per mode (same rounding points as ref/linear.c):
 *   DEQ_F32 / DEQ_BF16: y = f32(sum x*W) (fmaf; linear_kernel: warp-tree order; tiled:
 *                       ascending k per K slice, slices added in order; ref sums in double),
 *                       then bf16 for DEQ_BF16.
 *   FP8: per 128-block b = f32(sum xq*wq) (products exact in fp32; ref's block sum is exact,
 *        ours is rounded per add: last-bit differences), acc = acc + b * f32(sx*sw) in
 *        ascending block order, y = bf16(acc).
 *   FP4: per 32-chunk b = f32(sum xq*e2m1), acc = acc + f32(b*sx) * sw in ascending chunk
 *        order, y = bf16(acc).
 * Exact mode: the fp32 form (DEQ_F32) for every dtype; tolerance 1e-5 (spec/tolerances.md).
 * Kernel choice: gemm_variant() (env DSV4_CUDA_GEMM=simt|tc|mma|tiled, TILED_MIN_N,
 * linear_use_tensor_cores()); all four are checked on every run of the kernel lab
 * (spec/cuda.md). */
#include <cstdlib>
#include <cstring>
#include <mma.h>
#include <cuda_fp16.h>
#include "cuda_common.cuh"
#include "kernels.h"
#include "mma.cuh"

using namespace nvcuda;

extern "C" {
#include "linear.h"
}

#define LIN_BLOCK 128
#define LIN_TOK 8      /* tokens per warp */
#define LIN_WARPS 8    /* output features per block */

enum { W_F32 = 0, W_BF16, W_FP8_E8M0, W_FP8_F32S, W_FP4 };
enum { MODE_DEQ_F32 = 0, MODE_DEQ_BF16, MODE_FP8, MODE_FP4 };

struct dweight {
    int kind;
    int64_t rows, cols;
    const void *data;
    const void *scale;
};

/* ---- activation quantization [LIN-3] ---- */

/* the stored form of one quantized activation: the e4m3 value as float (the CUDA-core GEMMs)
 * or as f16 (the mma kernel's operand; every e4m3 value is an f16 normal: exact) */
__device__ __forceinline__ void store_code(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_code(__half *p, float v) { *p = __float2half_rn(v); }

template <typename T>
__global__ void act_quant_kernel(const float *x, int64_t K, T *xq, float *sx)
{
    int64_t m = blockIdx.y, kb = blockIdx.x;
    const float *xb = x + m * K + kb * LIN_BLOCK;
    float v[4], amax = 0.0f;
    for (int i = 0; i < 4; i++) {
        v[i] = xb[threadIdx.x * 4 + i];
        amax = fmaxf(amax, fabsf(v[i]));
    }
    amax = warp_max(amax);
    float s = d_fp8_pow2_scale(amax);
    for (int i = 0; i < 4; i++)
        store_code(&xq[m * K + kb * LIN_BLOCK + threadIdx.x * 4 + i],
                   d_e4m3_to_float(d_e4m3_from_float(d_clampf(v[i] / s, -448.0f, 448.0f))));
    if (threadIdx.x == 0) sx[m * (K / LIN_BLOCK) + kb] = s;
}

/* ---- dequantization of one weight element ---- */

__device__ __forceinline__ float w_elem(const dweight &W, int64_t r, int64_t k)
{
    switch (W.kind) {
    case W_F32: return ((const float *)W.data)[r * W.cols + k];
    case W_BF16:
        return __bfloat162float(((const __nv_bfloat16 *)W.data)[r * W.cols + k]);
    case W_FP8_E8M0:
    case W_FP8_F32S: {
        /* the e4m3 code alone; the block scale is applied per 128-block (FP8 mode) or here */
        return d_e4m3_to_float(((const uint8_t *)W.data)[r * W.cols + k]);
    }
    default: {
        uint8_t b = ((const uint8_t *)W.data)[(r * W.cols + k) / 2];
        return d_e2m1_to_float((k % 2 == 0) ? (b & 0xF) : (b >> 4));
    }
    }
}

__device__ __forceinline__ float w_fp8_scale(const dweight &W, int64_t r, int64_t k)
{
    int64_t ncb = (W.cols + LIN_BLOCK - 1) / LIN_BLOCK;
    int64_t i = (r / LIN_BLOCK) * ncb + k / LIN_BLOCK;
    if (W.kind == W_FP8_F32S) return ((const float *)W.scale)[i];
    return d_e8m0_to_float(((const uint8_t *)W.scale)[i]);
}

__device__ __forceinline__ float w_fp4_scale(const dweight &W, int64_t r, int64_t k)
{
    return d_e8m0_to_float(((const uint8_t *)W.scale)[r * (W.cols / 32) + k / 32]);
}

/* the dequantized value (fp32 GEMM form [LIN-2]): code x scale, exact as in weight_at */
__device__ __forceinline__ float w_deq(const dweight &W, int64_t r, int64_t k)
{
    float v = w_elem(W, r, k);
    if (W.kind == W_FP8_E8M0 || W.kind == W_FP8_F32S) return v * w_fp8_scale(W, r, k);
    if (W.kind == W_FP4) return v * w_fp4_scale(W, r, k);
    return v;
}

/* ---- the GEMM ---- */

template <int MODE>
__global__ void __launch_bounds__(LIN_WARPS * 32)
linear_kernel(dweight W, const float *x, const float *xq, const float *sx, float *y, int64_t n)
{
    int lane = threadIdx.x & 31;
    int64_t r = (int64_t)blockIdx.x * LIN_WARPS + (threadIdx.x >> 5);
    int64_t m0 = (int64_t)blockIdx.y * LIN_TOK;
    int64_t K = W.cols, R = W.rows;
    if (r >= R) return;
    int nt = (int)(n - m0 < LIN_TOK ? n - m0 : LIN_TOK);
    float acc[LIN_TOK];
    for (int t = 0; t < LIN_TOK; t++) acc[t] = 0.0f;

    for (int64_t k0 = 0; k0 < K; k0 += LIN_BLOCK) {
        float w[4];
        int64_t kl = k0 + lane * 4;
        for (int i = 0; i < 4; i++)
            w[i] = (kl + i < K) ? (MODE == MODE_FP8 || MODE == MODE_FP4 ? w_elem(W, r, kl + i)
                                                                         : w_deq(W, r, kl + i))
                                : 0.0f;
        if (MODE == MODE_DEQ_F32 || MODE == MODE_DEQ_BF16) {
            for (int t = 0; t < LIN_TOK; t++) {
                if (t >= nt) break;
                const float *xr = x + (m0 + t) * K;
                for (int i = 0; i < 4; i++)
                    if (kl + i < K) acc[t] = fmaf(xr[kl + i], w[i], acc[t]);
            }
        } else if (MODE == MODE_FP8) {
            float sw = w_fp8_scale(W, r, k0);
            for (int t = 0; t < LIN_TOK; t++) {
                if (t >= nt) break;
                const float *xr = xq + (m0 + t) * K;
                float b = 0.0f;
                for (int i = 0; i < 4; i++) b += xr[kl + i] * w[i];   /* exact products */
                b = warp_sum(b);
                float sc = sx[(m0 + t) * (K / LIN_BLOCK) + k0 / LIN_BLOCK] * sw;
                acc[t] = acc[t] + b * sc;
            }
        } else { /* MODE_FP4: lanes 8c..8c+7 hold 32-chunk c of this 128-step */
            float sw = w_fp4_scale(W, r, kl);
            for (int t = 0; t < LIN_TOK; t++) {
                if (t >= nt) break;
                const float *xr = xq + (m0 + t) * K;
                float b = 0.0f;
                for (int i = 0; i < 4; i++) b += xr[kl + i] * w[i];
                for (int o = 4; o > 0; o >>= 1) b += __shfl_xor_sync(0xffffffffu, b, o);
                float s_x = sx[(m0 + t) * (K / LIN_BLOCK) + k0 / LIN_BLOCK];
                float term = (b * s_x) * sw;                          /* on lanes 8c */
                for (int c = 0; c < 4; c++)                           /* ascending chunks */
                    acc[t] = acc[t] + __shfl_sync(0xffffffffu, term, 8 * c);
            }
        }
    }
    for (int t = 0; t < nt; t++) {
        float v = acc[t];
        if (MODE == MODE_DEQ_F32 || MODE == MODE_DEQ_BF16) v = warp_sum(v);
        if (lane == 0) y[(m0 + t) * R + r] = (MODE == MODE_DEQ_F32) ? v : d_round_bf16(v);
    }
}

/* ---- the tiled fp32 GEMM (the fp32 form [LIN-2] at n >= TILED_MIN_N) ----
 *
 * linear_tiled_kernel<KIND, BN>: block 256 = 8 warps; the block owns BM = 4096 / BN tokens x
 * BN features (BN = 64: 64 x 64; BN = 128: 32 x 128) and K slice blockIdx.z of nsplit;
 * grid (ceil(n / BM), ceil(R / BN), nsplit) — the token tiles of one feature tile are
 * neighbours in launch order (the second read of those weight rows hits L2). KIND is the
 * weight storage (W_F32 .. W_FP4, compile time: the loads are straight-line code, all in
 * flight together); bf16_out = 1 rounds the fp32 result to bf16 (MODE_DEQ_BF16).
 * Arguments: W: [R, K] (device view), x: [n, K] fp32, out: y [n, R] (nsplit = 1) or the
 * partials part [nsplit, n, R] fp32; accumulation fp32 (fmaf).
 *
 * Per 32-wide K step the block stages the weight tile W[r0 .. r0+BN) [k0 .. k0+32), each
 * element dequantized ONCE to its exact fp32 value (as w_deq / ref's weight_at: f32; bf16;
 * e4m3 x its 128x128 block scale; e2m1 x its per-32 scale — one fp32 product, exact for e8m0
 * scales), and the activation tile x[m0 .. m0+BM) [k0 .. k0+32) (fp32) in shared memory,
 * transposed to k-major rows (Ws[k][feature], Xs[k][token]) padded to BN + 4 / BM + 4 floats:
 *   staging: thread (warp w, lane l) loads rows 4g .. 4g+3 (g = w + 8 p) at k = k0 + l (each
 *     warp-wide load reads 32 consecutive k of one row: coalesced) and stores them as ONE
 *     float4 at [l][4g]: row stride = 4 (mod 32) banks, so the 8 lanes of each quarter-warp
 *     phase hit 8 distinct 4-bank groups (no conflict);
 *   compute: warp w owns tokens 16 (w / WN) .. +16 and features 32 (w % WN) .. +32 (WN = BN
 *     / 32 warps along the features); lane l the 4 x 4 register tile of tokens t0 .. t0+3
 *     (t0 = 16 (w / WN) + 4 (l >> 3)) and features f0 .. f0+3 (f0 = 32 (w % WN) + 4 (l & 7)).
 *     Per k: one float4 of Xs (4 distinct addresses per warp: 64 bytes, broadcast) and one
 *     float4 of Ws (8 distinct, 128 contiguous bytes) feed 16 fmaf: one shared wavefront
 *     each, no conflict.
 * Double buffering: the next step's raw codes / values are loaded to registers before the
 * current step's fmaf loop and decoded into the other shared buffer after it; one
 * __syncthreads per step.
 * Order: one fp32 accumulator per output, fmaf in ascending k within the slice; tails
 * (k >= K, rows >= R, tokens >= n) are zero-filled in the tiles (0 * 0 adds +0) and never
 * read from global memory or written.
 * Split K (nsplit > 1, when the tile grid alone is too small for the GPU): slice s covers the
 * K steps [S s / nsplit, S (s+1) / nsplit) (S = ceil(K / 32); an empty slice writes zeros)
 * and writes its fp32 partials to part[s][n][R]; linear_split_sum_kernel adds the slices in
 * ascending s (deterministic) and rounds to bf16 if bf16_out. With nsplit = 1 the kernel
 * writes y itself. */

#define TL_K 32

/* e2m1 code (4 bits) -> float without a table: e = bits 1..2, m = bit 0; e = 0: m / 2, else
 * (1 + m / 2) 2^(e-1); bit 3 the sign (same values as d_e2m1_to_float) */
__device__ __forceinline__ float tl_e2m1(uint32_t c)
{
    const uint32_t e = (c >> 1) & 3u, m = c & 1u;
    const float v = e ? __uint_as_float(((e + 126u) << 23) | (m << 22)) : (m ? 0.5f : 0.0f);
    return (c & 8u) ? -v : v;
}

template <int KIND, int BN>
__global__ void __launch_bounds__(256)
linear_tiled_kernel(dweight W, const float *__restrict__ x, float *__restrict__ out, int64_t n,
                    int nsplit, int bf16_out)
{
    constexpr int BM = 4096 / BN, WN = BN / 32, WP = BN / 32, XP = BM / 32;
    constexpr int LDW = BN + 4, LDX = BM + 4;
    constexpr bool FP8 = KIND == W_FP8_E8M0 || KIND == W_FP8_F32S;
    static_assert(BN == 64 || BN == 128, "tile shapes: 64 x 64 or 32 x 128");
    __shared__ __align__(16) float Ws[2][TL_K * LDW];
    __shared__ __align__(16) float Xs[2][TL_K * LDX];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t K = W.cols, R = W.rows;
    const int64_t m0 = (int64_t)blockIdx.x * BM, r0 = (int64_t)blockIdx.y * BN;
    const int s = (int)blockIdx.z;
    const int64_t nsteps = (K + TL_K - 1) / TL_K;
    const int64_t st0 = nsteps * s / nsplit, st1 = nsteps * (s + 1) / nsplit;
    const int f0 = (warp % WN) * 32 + (lane & 7) * 4;
    const int t0 = (warp / WN) * 16 + (lane >> 3) * 4;
    const int64_t ncb = (K + LIN_BLOCK - 1) / LIN_BLOCK;   /* FP8 scale blocks per row block */

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    /* the next step in flight: raw weight bits (f32 bits / bf16 / e4m3 / the byte holding the
     * e2m1 nibble), raw scale bits (FP8: one per 4-row group, all in one 128-row block; FP4:
     * one per row), activations */
    uint32_t wr[WP][4], sr[WP][4];
    float xr[XP][4];

    /* global -> registers: step st (k = 32 st + lane); nothing is decoded here */
    auto load = [&](int64_t st) {
        const int64_t k0 = st * TL_K, k = k0 + lane;
        const bool kin = k < K;
#pragma unroll
        for (int p = 0; p < WP; p++) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int64_t r = r0 + (p * 8 + warp) * 4 + i;
                const bool ok = kin && r < R;
                uint32_t v = 0;
                if (KIND == W_F32) v = ok ? __float_as_uint(__ldg((const float *)W.data + r * K + k)) : 0u;
                else if (KIND == W_BF16) v = ok ? (uint32_t)__ldg((const unsigned short *)W.data + r * K + k) : 0u;
                else if (FP8) v = ok ? (uint32_t)__ldg((const unsigned char *)W.data + r * K + k) : 0u;
                else v = ok ? (uint32_t)__ldg((const unsigned char *)W.data + ((r * K + k) >> 1)) : 0u;
                wr[p][i] = v;
                uint32_t sv = 0;
                if (FP8 && i == 0) {
                    const int64_t si = (r / LIN_BLOCK) * ncb + k0 / LIN_BLOCK;
                    if (r < R) sv = KIND == W_FP8_F32S ? __float_as_uint(__ldg((const float *)W.scale + si))
                                                       : (uint32_t)__ldg((const unsigned char *)W.scale + si);
                } else if (KIND == W_FP4) {
                    if (r < R) sv = __ldg((const unsigned char *)W.scale + r * (K / 32) + k0 / 32);
                }
                sr[p][i] = sv;
            }
        }
#pragma unroll
        for (int p = 0; p < XP; p++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int64_t m = m0 + (p * 8 + warp) * 4 + i;
                xr[p][i] = (kin && m < n) ? __ldg(x + m * K + k) : 0.0f;
            }
    };
    /* registers -> shared buffer b: decode (exact fp32 values), transpose (k-major), one
     * float4 per 4 rows / 4 tokens */
    auto store = [&](int b, int64_t st) {
        const int64_t k = st * TL_K + lane;
        const bool kin = k < K;
#pragma unroll
        for (int p = 0; p < WP; p++) {
            float v[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const uint32_t c = wr[p][i];
                if (KIND == W_F32) v[i] = __uint_as_float(c);
                else if (KIND == W_BF16) v[i] = __uint_as_float(c << 16);
                else if (FP8) {
                    const float sc = KIND == W_FP8_F32S ? __uint_as_float(sr[p][0]) : d_e8m0_to_float((uint8_t)sr[p][0]);
                    v[i] = d_e4m3_to_float((uint8_t)c) * sc;
                } else {
                    const uint32_t code = (lane & 1) ? (c >> 4) : (c & 0xFu);   /* k odd: high nibble */
                    v[i] = tl_e2m1(code) * d_e8m0_to_float((uint8_t)sr[p][i]);
                }
                /* tails: exactly 0 (a NaN / Inf scale must not leak into them) */
                if (!(kin && r0 + (p * 8 + warp) * 4 + i < R)) v[i] = 0.0f;
            }
            *(float4 *)&Ws[b][lane * LDW + (p * 8 + warp) * 4] = make_float4(v[0], v[1], v[2], v[3]);
        }
#pragma unroll
        for (int p = 0; p < XP; p++)
            *(float4 *)&Xs[b][lane * LDX + (p * 8 + warp) * 4] = make_float4(xr[p][0], xr[p][1], xr[p][2], xr[p][3]);
    };

    if (st0 < st1) {
        load(st0);
        store(0, st0);
    }
    __syncthreads();
    for (int64_t st = st0; st < st1; st++) {
        const int b = (int)((st - st0) & 1);
        const bool more = st + 1 < st1;
        if (more) load(st + 1);
        const float *xs = Xs[b] + t0, *ws = Ws[b] + f0;
#pragma unroll 8
        for (int kk = 0; kk < TL_K; kk++) {
            const float4 a = *(const float4 *)(xs + kk * LDX);
            const float4 w = *(const float4 *)(ws + kk * LDW);
            const float av[4] = { a.x, a.y, a.z, a.w }, wv[4] = { w.x, w.y, w.z, w.w };
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(av[i], wv[j], acc[i][j]);
        }
        if (more) store(b ^ 1, st + 1);
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t m = m0 + t0 + i;
        if (m >= n) continue;
        float *o = (nsplit == 1) ? out + m * R : out + ((int64_t)s * n + m) * R;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t r = r0 + f0 + j;
            if (r >= R) continue;
            const float v = acc[i][j];
            o[r] = (nsplit == 1 && bf16_out) ? d_round_bf16(v) : v;
        }
    }
}

/* y[i] = sum over s ascending of part[s][i] (i < cnt = n R), bf16-rounded if bf16_out */
__global__ void linear_split_sum_kernel(const float *__restrict__ part, int nsplit, int64_t cnt,
                                        int bf16_out, float *__restrict__ y)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < cnt; i += (int64_t)gridDim.x * blockDim.x) {
        float v = part[i];
        for (int s = 1; s < nsplit; s++) v = v + part[(int64_t)s * cnt + i];
        y[i] = bf16_out ? d_round_bf16(v) : v;
    }
}

/* ---- the GEMM on the tensor cores (official mode, K % 128 == 0) ----
 * linear_tc_kernel<M>: grid (ceil(R/64), ceil(n/16)), block 128 = 4 warps; the block owns 16
 * tokens x 64 features, warp w the 16 x 16 output tile of features 16w..16w+15. Per 128-wide
 * K step the block stages the activations (bf16: for FP8 / FP4 modes the e4m3 codes of
 * act_quant, exact in bf16; for the bf16 mode x itself, which the official graph holds in
 * bf16) and the weights decoded to bf16 (e4m3 / e2m1 codes, exact in bf16; scales stay out)
 * in shared memory, then wmma m16n16k16 (bf16 x bf16 -> fp32):
 *   BF16: one accumulator over all of K (fp32), y = bf16.
 *   FP8 : per 128-block a fresh accumulator b (the exact products summed in fp32), then
 *         acc = acc + b * f32(sx * sw) elementwise in ascending block order (as ref).
 *   FP4 : per 32-chunk b, acc = acc + f32(b * sx) * sw.
 * The per-block update goes through a per-warp 16 x 16 shared tile, each lane owning 8 fixed
 * elements of it; acc lives in those registers. */

#define TC_KC 128
#define TC_LD (TC_KC + 8)

template <int MODE>
__global__ void __launch_bounds__(128)
linear_tc_kernel(dweight W, const float *x, const float *xq, const float *sx, float *y, int64_t n)
{
    __shared__ __align__(32) __nv_bfloat16 As[16][TC_LD];
    __shared__ __align__(32) __nv_bfloat16 Bs[64][TC_LD];
    __shared__ __align__(32) float Cs[4][16 * 16];
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int64_t K = W.cols, R = W.rows, nkb = K / TC_KC;
    int64_t r0 = (int64_t)blockIdx.x * 64, m0 = (int64_t)blockIdx.y * 16;
    const float *xs = (MODE == MODE_DEQ_BF16) ? x : xq;
    float acc[8];
    for (int e = 0; e < 8; e++) acc[e] = 0.0f;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> cb;
    wmma::fill_fragment(cb, 0.0f);
    for (int64_t kb = 0; kb < nkb; kb++) {
        int64_t k0 = kb * TC_KC;
        __syncthreads();
        for (int i = tid; i < 16 * TC_KC; i += 128) {
            int mi = i / TC_KC, kk = i % TC_KC;
            float v = (m0 + mi < n) ? xs[(m0 + mi) * K + k0 + kk] : 0.0f;
            As[mi][kk] = __float2bfloat16_rn(v);
        }
        for (int i = tid; i < 64 * TC_KC; i += 128) {
            int ri = i / TC_KC, kk = i % TC_KC;
            float v = (r0 + ri < R) ? w_elem(W, r0 + ri, k0 + kk) : 0.0f;
            Bs[ri][kk] = __float2bfloat16_rn(v);
        }
        __syncthreads();
        if (MODE == MODE_DEQ_BF16) {
            for (int k = 0; k < TC_KC; k += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
                wmma::load_matrix_sync(a, &As[0][k], TC_LD);
                wmma::load_matrix_sync(b, &Bs[warp * 16][k], TC_LD);
                wmma::mma_sync(cb, a, b, cb);
            }
            continue;
        }
        const int CH = (MODE == MODE_FP8) ? 128 : 32;
        for (int c0 = 0; c0 < TC_KC; c0 += CH) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
            wmma::fill_fragment(c, 0.0f);
            for (int k = c0; k < c0 + CH; k += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
                wmma::load_matrix_sync(a, &As[0][k], TC_LD);
                wmma::load_matrix_sync(b, &Bs[warp * 16][k], TC_LD);
                wmma::mma_sync(c, a, b, c);
            }
            wmma::store_matrix_sync(Cs[warp], c, 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = 0; e < 8; e++) {
                int el = lane + 32 * e, mi = el / 16, rj = el % 16;
                int64_t m = m0 + mi, r = r0 + warp * 16 + rj;
                if (m >= n || r >= R) continue;
                float b = Cs[warp][el];
                float s_x = sx[m * nkb + kb];
                if (MODE == MODE_FP8) {
                    float sc = s_x * w_fp8_scale(W, r, k0);
                    acc[e] = acc[e] + b * sc;
                } else {
                    float term = (b * s_x) * w_fp4_scale(W, r, k0 + c0);
                    acc[e] = acc[e] + term;
                }
            }
            __syncwarp();
        }
    }
    if (MODE == MODE_DEQ_BF16) {
        wmma::store_matrix_sync(Cs[warp], cb, 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = 0; e < 8; e++) acc[e] = Cs[warp][lane + 32 * e];
    }
    for (int e = 0; e < 8; e++) {
        int el = lane + 32 * e, mi = el / 16, rj = el % 16;
        int64_t m = m0 + mi, r = r0 + warp * 16 + rj;
        if (m < n && r < R) y[m * R + r] = d_round_bf16(acc[e]);
    }
}

/* ---- the GEMM on the tensor cores with mma.sync (the default for official bf16 / FP8 / FP4
 * GEMMs with K % 128 == 0; DSV4_CUDA_GEMM=mma) ----
 *
 * linear_mma_kernel<MODE, MT, NT>: block 256 = 8 warps; grid (ceil(n / (8 NT)), ceil(R / (16 MT WM)))
 * (the token tiles of one row block are neighbours in launch order: the second read of those
 * weight rows hits L2).
 * The weight rows are the M dimension of mma.m16n8k16 (A operand, row-major), the tokens the N
 * dimension (B operand, 8 tokens per n-tile), so n = 1 wastes at most 7/8 of one n-tile. Warp
 * (wm, wk) of the block (WM = 8 / WK warps along the rows, WK along K) owns MT m-tiles
 * (16 MT rows) x NT n-tiles (8 NT tokens) and the K units (128 wide) [wk U / WK, (wk+1) U / WK),
 * U = K / 128; the WK partial sums of a tile meet in shared memory and are added in wk order
 * (deterministic), then rounded to bf16. WK, MT, NT come from mma_config() (host).
 *
 * K permutation: a dot product's k order is free inside a block sum, so each 32-wide K chunk
 * is fed to two m16n8k16 mmas with the physical k = 8q..8q+7 of lane q = lane % 4 as its
 * logical slots {2q, 2q+1, 2q+8, 2q+9} (first mma: k 8q..8q+3, second: 8q+4..8q+7), the
 * same map in A and B. A lane then reads 8 consecutive elements of a weight row per chunk in
 * ONE load (FP8 8 bytes, bf16 16 bytes, FP4 4 bytes), straight from global memory into
 * registers (no shared-memory staging), decodes them there, and reads 8 consecutive
 * activations (16 bytes) per token. Fragment layouts (PTX ISA, mma.m16n8k16 .f16/.bf16,
 * g = lane >> 2, q = lane % 4, each .b32 register low half first):
 *   A: reg0 (row g, cols 2q, 2q+1), reg1 (row g+8, cols 2q, 2q+1), reg2 (row g, cols 2q+8,
 *      2q+9), reg3 (row g+8, cols 2q+8, 2q+9);
 *   B: reg0 (k 2q, 2q+1; token g), reg1 (k 2q+8, 2q+9; token g);
 *   C: c0, c1 (row g, tokens 2q, 2q+1), c2, c3 (row g+8, tokens 2q, 2q+1).
 * Operand types: FP8 and FP4 modes multiply in f16 (.f16 mma): the e4m3 and e2m1 codes and the
 * activation's e4m3 codes are exact in f16 (e4m3 spans 2^-9 .. 448, all f16 normals), e4m3
 * decodes with ONE cvt.rn.f16x2.e4m3x2 per pair, e2m1 with one byte permute of an 8-entry
 * table (f16 of an e2m1 value has a zero low byte). bf16 mode multiplies bf16 x bf16 (the
 * official graph holds x in bf16; x is rounded to bf16 as in linear_tc_kernel). Products of two
 * such values are exact in fp32; what differs from ref is the order (and the tensor core's
 * internal alignment) of the fp32 block sums: the tolerance contract (spec/cuda.md).
 * Numerics per mode (ref's rounding points):
 *   BF16: one fp32 accumulator per warp K slice; y = bf16(sum of slices in wk order).
 *   FP8 : per 128-block a fresh accumulator b (8 mmas per m/n tile; n-tiles in groups of 2 so
 *         the block sums stay few registers), then
 *         acc = acc + b * f32(sx[token][kb] * sw[r/128][kb]) on the C registers (the 16 rows
 *         of an m-tile share one 128-row scale block), ascending kb within a slice.
 *   FP4 : per 32-chunk b (2 mmas), acc = acc + f32(b * sx[token][kb]) * sw[r][chunk].
 * Bounds: rows >= R load zeros and are not stored; tokens >= n read zeros and are not
 * stored. Alignment: K % 128 == 0 makes every row start 64-byte aligned (FP4) or better,
 * the per-lane offsets are multiples of 8 elements, and the buffers come from cudaMalloc. */

#define MMA_WARPS 8
#define MMA_UNIT 128

/* 16-byte read-only load, volatile: kept after the mmas before it in program order (the
 * compiler would otherwise hoist every n-group's activation loads to the top of the unit and
 * run out of registers) */
__device__ __forceinline__ uint4 ld_nc_v4(const void *p)
{
    uint4 v;
    asm volatile("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

/* two e4m3 codes (low 16 bits of v, element of the lower address in the low byte) -> f16x2
 * (that element in the low half); exact */
__device__ __forceinline__ uint32_t e4m3x2_to_f16x2(uint32_t v)
{
    uint32_t r;
    unsigned short h = (unsigned short)(v & 0xFFFFu);
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;\n" : "=r"(r) : "h"(h));
    return r;
}

/* two e2m1 codes (low byte of v: element 2j in the low nibble, 2j+1 in the high nibble) ->
 * f16x2 (element 2j in the low half); exact. |e2m1| = 0, .5, 1, 1.5, 2, 3, 4, 6 are the f16
 * values 0x0000, 0x3800, 0x3C00, 0x3E00, 0x4000, 0x4200, 0x4400, 0x4600: the high byte comes
 * from an 8-entry byte table (index 0 also gives the zero low bytes), the sign is bit 3. */
__device__ __forceinline__ uint32_t e2m1x2_to_f16x2(uint32_t v)
{
    uint32_t sel = ((v & 0x7u) << 4) | ((v & 0x70u) << 8);
    uint32_t sgn = ((v & 0x8u) << 12) | ((v & 0x80u) << 24);
    return __byte_perm(0x3E3C3800u, 0x46444240u, sel) | sgn;
}


/* x: [cnt] float -> bf16 (round to nearest even; exact for the bf16-valued inputs of the
 * official bf16 GEMMs). grid-stride, block 256 */
__global__ void to_bf16_kernel(const float *x, int64_t cnt, __nv_bfloat16 *xb)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < cnt;
         i += (int64_t)gridDim.x * blockDim.x)
        xb[i] = __float2bfloat16_rn(x[i]);
}

/* 32-bit words per lane per weight row per 32-wide chunk: 8 elements */
template <int MODE> struct mma_words { enum { AW = MODE == MODE_DEQ_BF16 ? 4 : (MODE == MODE_FP8 ? 2 : 1) }; };

template <int MODE, int MT, int NT>
__global__ void __launch_bounds__(MMA_WARPS * 32)
linear_mma_kernel(dweight W, const uint16_t *xh, const float *sx, float *y, int64_t n, int wk_n)
{
    constexpr int AW = mma_words<MODE>::AW;
    constexpr int NG = NT < 2 ? NT : 2;   /* n-tiles per group */
    extern __shared__ float mma_red[];   /* [(wk_n - 1) * wm_n][MT * NT * 4][32] */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm_n = MMA_WARPS / wk_n, wm = warp % wm_n, wk = warp / wm_n;
    const int g = lane >> 2, q = lane & 3;
    const int64_t K = W.cols, R = W.rows, nunits = K / MMA_UNIT;
    const int64_t rbase = ((int64_t)blockIdx.y * wm_n + wm) * (16 * MT);
    const int64_t m0 = (int64_t)blockIdx.x * (8 * NT);
    const int64_t u0 = nunits * wk / wk_n, u1 = nunits * (wk + 1) / wk_n;

    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[mt][nt][i] = 0.0f;

    /* the A words of one K unit: [mt][h: row g / g+8][chunk][word], and its weight scales */
    uint32_t cur[MT][2][4][AW], nxt[MT][2][4][AW];
    float swf_cur[MT], swf_nxt[MT];          /* FP8: sw[r/128][u] per m-tile */
    uint32_t sw4_cur[MT][2], sw4_nxt[MT][2]; /* FP4: the 4 e8m0 chunk scales of the unit per row */
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        swf_cur[mt] = swf_nxt[mt] = 0.0f;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            sw4_cur[mt][h] = sw4_nxt[mt][h] = 0u;
#pragma unroll
            for (int c = 0; c < 4; c++)
#pragma unroll
                for (int w = 0; w < AW; w++) cur[mt][h][c][w] = nxt[mt][h][c][w] = 0u;
        }
    }

    /* per-lane base pointers (64-bit arithmetic once; the loops add small offsets) */
    const uint8_t *arow[MT][2];   /* weight row g / g+8 of each m-tile at element 8q (NULL: row >= R) */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int64_t r = rbase + 16 * mt + g + 8 * h;
            const int64_t ebytes = MODE == MODE_DEQ_BF16 ? 2 : 1;
            arow[mt][h] = r >= R ? NULL
                        : MODE == MODE_FP4 ? (const uint8_t *)W.data + (r * K + 8 * q) / 2
                                           : (const uint8_t *)W.data + (r * K + 8 * q) * ebytes;
        }
    const uint16_t *xrow[NT];     /* activation row of token g of each n-tile at 8q (NULL: >= n) */
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        const int64_t tok = m0 + 8 * nt + g;
        xrow[nt] = tok < n ? xh + tok * K + 8 * q : NULL;
    }

    auto load_unit = [&](int64_t u, uint32_t (&a)[MT][2][4][AW], float (&swf)[MT], uint32_t (&sw4)[MT][2]) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            const int64_t rt = rbase + 16 * mt;
            if (MODE == MODE_FP8) swf[mt] = rt < R ? w_fp8_scale(W, rt, u * MMA_UNIT) : 0.0f;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int64_t r = rt + g + 8 * h;
                const bool ok = r < R;
                if (MODE == MODE_FP4)
                    sw4[mt][h] = ok ? __ldg((const uint32_t *)((const uint8_t *)W.scale + r * (K / 32) + u * 4)) : 0u;
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    if constexpr (MODE == MODE_DEQ_BF16) {
                        uint4 v = ok ? __ldg((const uint4 *)(arow[mt][h] + 2 * (u * MMA_UNIT + 32 * c))) : make_uint4(0, 0, 0, 0);
                        a[mt][h][c][0] = v.x; a[mt][h][c][1] = v.y; a[mt][h][c][2] = v.z; a[mt][h][c][3] = v.w;
                    } else if constexpr (MODE == MODE_FP8) {
                        uint2 v = ok ? __ldg((const uint2 *)(arow[mt][h] + u * MMA_UNIT + 32 * c)) : make_uint2(0, 0);
                        a[mt][h][c][0] = v.x; a[mt][h][c][1] = v.y;
                    } else {
                        a[mt][h][c][0] = ok ? __ldg((const uint32_t *)(arow[mt][h] + (u * MMA_UNIT + 32 * c) / 2)) : 0u;
                    }
                }
            }
        }
    };

    if (u0 < u1) load_unit(u0, cur, swf_cur, sw4_cur);
#pragma unroll 1
    for (int64_t u = u0; u < u1; u++) {
        if (u + 1 < u1) load_unit(u + 1, nxt, swf_nxt, sw4_nxt);   /* in flight during unit u */

        /* the unit's A fragments, decoded once: [mt][chunk][mma][reg] */
        uint32_t af[MT][4][2][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const uint32_t *lo = cur[mt][0][c], *hi = cur[mt][1][c];
                uint32_t *a0 = af[mt][c][0], *a1 = af[mt][c][1];
                if constexpr (MODE == MODE_DEQ_BF16) {
                    a0[0] = lo[0]; a0[1] = hi[0]; a0[2] = lo[1]; a0[3] = hi[1];
                    a1[0] = lo[2]; a1[1] = hi[2]; a1[2] = lo[3]; a1[3] = hi[3];
                } else if constexpr (MODE == MODE_FP8) {
                    a0[0] = e4m3x2_to_f16x2(lo[0]); a0[1] = e4m3x2_to_f16x2(hi[0]);
                    a0[2] = e4m3x2_to_f16x2(lo[0] >> 16); a0[3] = e4m3x2_to_f16x2(hi[0] >> 16);
                    a1[0] = e4m3x2_to_f16x2(lo[1]); a1[1] = e4m3x2_to_f16x2(hi[1]);
                    a1[2] = e4m3x2_to_f16x2(lo[1] >> 16); a1[3] = e4m3x2_to_f16x2(hi[1] >> 16);
                } else {
                    a0[0] = e2m1x2_to_f16x2(lo[0]); a0[1] = e2m1x2_to_f16x2(hi[0]);
                    a0[2] = e2m1x2_to_f16x2(lo[0] >> 8); a0[3] = e2m1x2_to_f16x2(hi[0] >> 8);
                    a1[0] = e2m1x2_to_f16x2(lo[0] >> 16); a1[1] = e2m1x2_to_f16x2(hi[0] >> 16);
                    a1[2] = e2m1x2_to_f16x2(lo[0] >> 24); a1[3] = e2m1x2_to_f16x2(hi[0] >> 24);
                }
            }

        /* n-tiles in groups of NG: fresh block sums per group keep the registers bounded */
#pragma unroll
        for (int ng = 0; ng < NT / NG; ng++) {
            /* activation scales of the group's C columns: tokens m0 + 8 nt + 2q + j */
            float sxv[NG][2];
#pragma unroll
            for (int j = 0; j < NG; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int64_t tok = m0 + 8 * (ng * NG + j) + 2 * q + e;
                    sxv[j][e] = (MODE != MODE_DEQ_BF16 && tok < n) ? __ldg(sx + tok * nunits + u) : 0.0f;
                }
            float bs[MT][NG][4];   /* FP8: the 128-block sums */
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int j = 0; j < NG; j++)
#pragma unroll
                    for (int i = 0; i < 4; i++) bs[mt][j][i] = 0.0f;
#pragma unroll
            for (int c = 0; c < 4; c++) {
                uint4 bv[NG];   /* token g of each n-tile, k .. k+7 */
#pragma unroll
                for (int j = 0; j < NG; j++) {
                    bv[j] = make_uint4(0, 0, 0, 0);
                    if (xrow[ng * NG + j]) bv[j] = ld_nc_v4(xrow[ng * NG + j] + u * MMA_UNIT + 32 * c);
                }
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    float sw_lo = 0.0f, sw_hi = 0.0f;   /* FP4: chunk scales of rows g, g+8 */
                    if constexpr (MODE == MODE_FP4) {
                        sw_lo = d_e8m0_to_float((uint8_t)(sw4_cur[mt][0] >> (8 * c)));
                        sw_hi = d_e8m0_to_float((uint8_t)(sw4_cur[mt][1] >> (8 * c)));
                    }
#pragma unroll
                    for (int j = 0; j < NG; j++) {
                        float (&ac)[4] = acc[mt][ng * NG + j];
                        if constexpr (MODE == MODE_DEQ_BF16) {
                            mma_bf16_16816(ac, af[mt][c][0], bv[j].x, bv[j].y);
                            mma_bf16_16816(ac, af[mt][c][1], bv[j].z, bv[j].w);
                        } else if constexpr (MODE == MODE_FP8) {
                            mma_f16_16816(bs[mt][j], af[mt][c][0], bv[j].x, bv[j].y);
                            mma_f16_16816(bs[mt][j], af[mt][c][1], bv[j].z, bv[j].w);
                        } else {
                            float b[4] = { 0.0f, 0.0f, 0.0f, 0.0f };   /* the 32-chunk sum */
                            mma_f16_16816(b, af[mt][c][0], bv[j].x, bv[j].y);
                            mma_f16_16816(b, af[mt][c][1], bv[j].z, bv[j].w);
#pragma unroll
                            for (int i = 0; i < 4; i++) {
                                const float term = (b[i] * sxv[j][i & 1]) * (i < 2 ? sw_lo : sw_hi);
                                ac[i] = ac[i] + term;
                            }
                        }
                    }
                }
            }
            if constexpr (MODE == MODE_FP8) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int j = 0; j < NG; j++)
#pragma unroll
                        for (int i = 0; i < 4; i++) {
                            const float sc = sxv[j][i & 1] * swf_cur[mt];
                            acc[mt][ng * NG + j][i] = acc[mt][ng * NG + j][i] + bs[mt][j][i] * sc;
                        }
            }
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            swf_cur[mt] = swf_nxt[mt];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                sw4_cur[mt][h] = sw4_nxt[mt][h];
#pragma unroll
                for (int c = 0; c < 4; c++)
#pragma unroll
                    for (int w = 0; w < AW; w++) cur[mt][h][c][w] = nxt[mt][h][c][w];
            }
        }
    }

    /* the WK slices of each tile, added in wk order */
    constexpr int TE = MT * NT * 4;
    if (wk_n > 1) {
        if (wk > 0) {
            float *dst = mma_red + (size_t)((wk - 1) * wm_n + wm) * TE * 32;
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int i = 0; i < 4; i++) dst[((mt * NT + nt) * 4 + i) * 32 + lane] = acc[mt][nt][i];
        }
        __syncthreads();
        if (wk == 0)
            for (int w = 1; w < wk_n; w++) {
                const float *src = mma_red + (size_t)((w - 1) * wm_n + wm) * TE * 32;
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int nt = 0; nt < NT; nt++)
#pragma unroll
                        for (int i = 0; i < 4; i++)
                            acc[mt][nt][i] = acc[mt][nt][i] + src[((mt * NT + nt) * 4 + i) * 32 + lane];
            }
    }
    if (wk != 0) return;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int64_t r = rbase + 16 * mt + g + 8 * (i >> 1);
                const int64_t tok = m0 + 8 * nt + 2 * q + (i & 1);
                if (r < R && tok < n) y[tok * R + r] = d_round_bf16(acc[mt][nt][i]);
            }
}

/* ---- which GEMM kernel (THE one place the default is chosen) ----
 * linear_use_tensor_cores(v): v = DSV4_GEMM_SIMT (0) linear_kernel, DSV4_GEMM_TC (1) the wmma
 * linear_tc_kernel, DSV4_GEMM_MMA (2) linear_mma_kernel, DSV4_GEMM_TILED (3) the tiled fp32
 * linear_tiled_kernel at every n; -1 = from the environment: DSV4_CUDA_GEMM=simt|tc|mma|tiled,
 * else GEMM_DEFAULT.
 *   official bf16 / FP8 / FP4 with K % 128 == 0: tc / mma as asked (tiled: bf16 runs tiled,
 *     FP8 / FP4 the default);
 *   the fp32 forms (exact mode for every dtype, out_f32, official f32 weights, bf16 with K %
 *     128 != 0, and bf16 under simt): linear_tiled_kernel for n >= TILED_MIN_N, linear_kernel
 *     below; `simt` means linear_kernel for every GEMM (the previous CUDA-core path), `tiled`
 *     the tiled kernel at every n;
 *   FP8 / FP4 on CUDA cores: linear_kernel. */
#define GEMM_DEFAULT DSV4_GEMM_MMA
#define TILED_MIN_N 16
static int g_gemm_variant = -1;
extern "C" void linear_use_tensor_cores(int variant) { g_gemm_variant = variant; }

static int gemm_variant(int mode, const dsv4_weight *w, int64_t n)
{
    int v = g_gemm_variant;
    if (v < 0) {
        const char *e = getenv("DSV4_CUDA_GEMM");
        v = GEMM_DEFAULT;
        if (e && strcmp(e, "simt") == 0) v = DSV4_GEMM_SIMT;
        else if (e && strcmp(e, "tc") == 0) v = DSV4_GEMM_TC;
        else if (e && strcmp(e, "mma") == 0) v = DSV4_GEMM_MMA;
        else if (e && strcmp(e, "tiled") == 0) v = DSV4_GEMM_TILED;
    }
    if (v != DSV4_GEMM_TC && v != DSV4_GEMM_MMA && v != DSV4_GEMM_TILED) v = DSV4_GEMM_SIMT;
    int tensor_ok = w->cols % LIN_BLOCK == 0 &&
                    (mode == MODE_FP8 || mode == MODE_FP4 || (mode == MODE_DEQ_BF16 && w->dtype == DSV4_BF16));
    int f32_form = mode == MODE_DEQ_F32 || mode == MODE_DEQ_BF16;
    if (tensor_ok && (v == DSV4_GEMM_TC || v == DSV4_GEMM_MMA)) return v;
    if (f32_form && v == DSV4_GEMM_TILED) return DSV4_GEMM_TILED;
    if (f32_form && v != DSV4_GEMM_SIMT && n >= TILED_MIN_N) return DSV4_GEMM_TILED;
    if (tensor_ok && v == DSV4_GEMM_TILED) return GEMM_DEFAULT;   /* FP8 / FP4 asked for tiled */
    return DSV4_GEMM_SIMT;
}

/* linear_mma_kernel's tiling for R x K and n tokens: NT n-tiles of 8 tokens per warp (n = 1
 * uses one; at most 4 — with 8 the A fragments, block sums and activation fragments exceed
 * 255 registers and spill), MT = 1 m-tile of 16 rows (MT = 2 compiles but spills at NT = 4),
 * WK warps of a block along K: the smallest power of two giving >= `target` warps in the grid
 * with at least one 128-unit per warp. DSV4_CUDA_MMA_WK=1|2|4|8 overrides WK (tuning; the
 * same results up to the fp32 order of the slice sums). */
static void mma_config(int64_t R, int64_t K, int64_t n, int *mt_out, int *nt_out, int *wk_out)
{
    const int MT = 1, NT = n <= 8 ? 1 : (n <= 16 ? 2 : 4);
    const int64_t nunits = K / LIN_BLOCK, ntt = (n + 8 * NT - 1) / (8 * NT);
    const int64_t target = NT >= 4 ? 2048 : 4096;
    auto warps = [&](int wk) { return (R + 16 * MT * (8 / wk) - 1) / (16 * MT * (8 / wk)) * ntt * 8; };
    int WK = 1;
    while (WK < 8 && 2 * WK <= nunits && warps(WK) < target) WK *= 2;
    const char *e = getenv("DSV4_CUDA_MMA_WK");
    if (e) {
        int v = atoi(e);
        if (v == 1 || v == 2 || v == 4 || v == 8) WK = v;
    }
    *mt_out = MT; *nt_out = NT; *wk_out = WK;
}

template <int MODE, int MT>
static void launch_mma_nt(int NT, dim3 g, size_t smem, const dweight &W, const uint16_t *xh,
                          const float *sx, float *y, int64_t n, int WK)
{
    switch (NT) {
    case 1: linear_mma_kernel<MODE, MT, 1><<<g, MMA_WARPS * 32, smem>>>(W, xh, sx, y, n, WK); break;
    case 2: linear_mma_kernel<MODE, MT, 2><<<g, MMA_WARPS * 32, smem>>>(W, xh, sx, y, n, WK); break;
    default: linear_mma_kernel<MODE, MT, 4><<<g, MMA_WARPS * 32, smem>>>(W, xh, sx, y, n, WK); break;
    }
}

/* [LIN-2..LIN-4] official bf16 / FP8 / FP4 on linear_mma_kernel. dx: [n, K] device */
static int launch_linear_mma(const dweight &W, int mode, const float *dx, float *dy, int64_t n)
{
    int64_t K = W.cols, R = W.rows;
    uint16_t *xh = (uint16_t *)cuda_scratch(10, (size_t)(n * K) * 2);
    float *sx = NULL;
    if (!xh) return -1;
    if (mode == MODE_DEQ_BF16) {
        int64_t cnt = n * K, nb = (cnt + 255) / 256;
        to_bf16_kernel<<<(unsigned)(nb < 4096 ? nb : 4096), 256>>>(dx, cnt, (__nv_bfloat16 *)xh);
        CK_LAUNCH("to_bf16");
    } else {
        sx = (float *)cuda_scratch(9, (size_t)(n * (K / LIN_BLOCK)) * sizeof(float));
        if (!sx) return -1;
        act_quant_kernel<__half><<<dim3((unsigned)(K / LIN_BLOCK), (unsigned)n), 32>>>(dx, K, (__half *)xh, sx);
        CK_LAUNCH("act_quant_h");
    }
    int MT, NT, WK;
    mma_config(R, K, n, &MT, &NT, &WK);
    int WM = MMA_WARPS / WK;
    int64_t rblocks = (R + 16 * MT * WM - 1) / (16 * MT * WM);
    if (rblocks > 65535)
        return dsv4_set_error("%s: %lld output features exceed the mma GEMM's grid (%lld row blocks)",
                              "linear", (long long)R, (long long)rblocks);
    dim3 g((unsigned)((n + 8 * NT - 1) / (8 * NT)), (unsigned)rblocks);
    size_t smem = (size_t)(MMA_WARPS - WM) * MT * NT * 4 * 32 * sizeof(float);
    if (mode == MODE_FP8) launch_mma_nt<MODE_FP8, 1>(NT, g, smem, W, xh, sx, dy, n, WK);
    else if (mode == MODE_FP4) launch_mma_nt<MODE_FP4, 1>(NT, g, smem, W, xh, sx, dy, n, WK);
    else launch_mma_nt<MODE_DEQ_BF16, 1>(NT, g, smem, W, xh, sx, dy, n, WK);
    CK_LAUNCH("linear_mma");
    return 0;
}

template <int BN>
static void launch_tiled_bn(const dweight &W, dim3 g, const float *dx, float *out, int64_t n, int S, int bf)
{
    switch (W.kind) {
    case W_F32: linear_tiled_kernel<W_F32, BN><<<g, 256>>>(W, dx, out, n, S, bf); break;
    case W_BF16: linear_tiled_kernel<W_BF16, BN><<<g, 256>>>(W, dx, out, n, S, bf); break;
    case W_FP8_E8M0: linear_tiled_kernel<W_FP8_E8M0, BN><<<g, 256>>>(W, dx, out, n, S, bf); break;
    case W_FP8_F32S: linear_tiled_kernel<W_FP8_F32S, BN><<<g, 256>>>(W, dx, out, n, S, bf); break;
    default: linear_tiled_kernel<W_FP4, BN><<<g, 256>>>(W, dx, out, n, S, bf); break;
    }
}

/* [LIN-2] the fp32 form on linear_tiled_kernel: y = f32(x W_deq^T) (bf16-rounded for
 * MODE_DEQ_BF16). dx: [n, K], dy: [n, R] device. Tile: 32 x 128 for n <= 32 (less padding at
 * n = 16 .. 32), else 64 x 64. nsplit: the smallest power of two (<= 64) giving >= 2 blocks
 * per multiprocessor while every slice keeps >= 4 K steps (128 k); DSV4_CUDA_TILED_SPLIT=1..64
 * overrides (tuning and the lab's split checks; slices may then be empty). The partials of a
 * split live in scratch slot 11: nsplit x n x R floats. */
static int launch_linear_tiled(const dweight &W, int mode, const float *dx, float *dy, int64_t n)
{
    int64_t K = W.cols, R = W.rows;
    const int BN = n <= 32 ? 128 : 64, BM = 4096 / BN;
    int64_t mtiles = (n + BM - 1) / BM, rtiles = (R + BN - 1) / BN, nsteps = (K + TL_K - 1) / TL_K;
    if (rtiles > 65535)
        return dsv4_set_error("%s: %lld output features exceed the tiled GEMM's grid (%lld feature tiles)",
                              "linear", (long long)R, (long long)rtiles);
    if (mtiles > 2147483647LL)
        return dsv4_set_error("%s: %lld tokens exceed the tiled GEMM's grid", "linear", (long long)n);
    const int64_t target = 2 * (int64_t)cuda_sm_count();
    int S = 1;
    while (S < 64 && mtiles * rtiles * S < target && nsteps >= 8 * (int64_t)S) S *= 2;
    const char *e = getenv("DSV4_CUDA_TILED_SPLIT");
    if (e) {
        int v = atoi(e);
        if (v >= 1 && v <= 64) S = v;
    }
    float *out = dy;
    if (S > 1) {
        out = (float *)cuda_scratch(11, (size_t)S * (size_t)(n * R) * sizeof(float));
        if (!out) return -1;
    }
    dim3 g((unsigned)mtiles, (unsigned)rtiles, (unsigned)S);
    const int bf = mode == MODE_DEQ_BF16;
    if (BN == 128) launch_tiled_bn<128>(W, g, dx, out, n, S, bf);
    else launch_tiled_bn<64>(W, g, dx, out, n, S, bf);
    CK_LAUNCH("linear_tiled");
    if (S > 1) {
        int64_t cnt = n * R, nb = (cnt + 255) / 256;
        linear_split_sum_kernel<<<(unsigned)(nb < 4096 ? nb : 4096), 256>>>(out, S, cnt, bf, dy);
        CK_LAUNCH("linear_split_sum");
    }
    return 0;
}

/* ---- host side ---- */

/* [LIN-1] the device view of w (uploaded on first use). */
static int device_weight(const dsv4_weight *w, dweight *d)
{
    size_t nel = (size_t)(w->rows * w->cols), dbytes, sbytes = 0;
    if (w->fp4) {
        d->kind = W_FP4;
        dbytes = nel / 2;
        sbytes = (size_t)(w->rows * (w->cols / 32));
    } else if (w->dtype == DSV4_F32) {
        d->kind = W_F32;
        dbytes = nel * 4;
    } else if (w->dtype == DSV4_BF16) {
        d->kind = W_BF16;
        dbytes = nel * 2;
    } else {
        d->kind = w->scale_dtype == DSV4_F32 ? W_FP8_F32S : W_FP8_E8M0;
        dbytes = nel;
        sbytes = (size_t)(((w->rows + 127) / 128) * ((w->cols + 127) / 128)) *
                 (w->scale_dtype == DSV4_F32 ? 4 : 1);
    }
    d->rows = w->rows;
    d->cols = w->cols;
    d->data = cuda_cached(w->data, dbytes);
    d->scale = sbytes ? cuda_cached(w->scale, sbytes) : NULL;
    if (!d->data || (sbytes && !d->scale)) return -1;
    return 0;
}

extern "C" int launch_linear(const dsv4_weight *w, const float *dx, float *dy, int64_t n,
                             int out_f32, dsv4_numerics num)
{
    if (weight_check(w)) return -1;
    if (n <= 0) return 0;
    dweight W;
    if (device_weight(w, &W)) return -1;
    int mode = MODE_DEQ_F32;
    if (num == DSV4_OFFICIAL && !out_f32)
        mode = w->fp4 ? MODE_FP4 : (w->dtype == DSV4_F8_E4M3 ? MODE_FP8 : MODE_DEQ_BF16);
    int64_t K = w->cols;
    float *xq = NULL, *sx = NULL;
    if (mode == MODE_FP8 || mode == MODE_FP4) {
        if (K % LIN_BLOCK != 0)
            return dsv4_set_error("%s: in_features %lld is not a multiple of 128: the official "
                                  "act_quant (block 128) cannot quantize this input",
                                  w->name ? w->name : "weight", (long long)K);
    }
    int variant = gemm_variant(mode, w, n);
    if (variant == DSV4_GEMM_MMA) return launch_linear_mma(W, mode, dx, dy, n);
    if (variant == DSV4_GEMM_TILED) return launch_linear_tiled(W, mode, dx, dy, n);
    if (mode == MODE_FP8 || mode == MODE_FP4) {
        xq = (float *)cuda_scratch(8, (size_t)(n * K) * sizeof(float));
        sx = (float *)cuda_scratch(9, (size_t)(n * (K / LIN_BLOCK)) * sizeof(float));
        if (!xq || !sx) return -1;
        act_quant_kernel<float><<<dim3((unsigned)(K / LIN_BLOCK), (unsigned)n), 32>>>(dx, K, xq, sx);
        CK_LAUNCH("act_quant");
    }
    if (variant == DSV4_GEMM_TC) {
        dim3 g((unsigned)((w->rows + 63) / 64), (unsigned)((n + 15) / 16));
        if (mode == MODE_FP8) linear_tc_kernel<MODE_FP8><<<g, 128>>>(W, dx, xq, sx, dy, n);
        else if (mode == MODE_FP4) linear_tc_kernel<MODE_FP4><<<g, 128>>>(W, dx, xq, sx, dy, n);
        else linear_tc_kernel<MODE_DEQ_BF16><<<g, 128>>>(W, dx, xq, sx, dy, n);
        CK_LAUNCH("linear_tc");
        return 0;
    }
    dim3 grid((unsigned)((w->rows + LIN_WARPS - 1) / LIN_WARPS), (unsigned)((n + LIN_TOK - 1) / LIN_TOK));
    switch (mode) {
    case MODE_DEQ_F32: linear_kernel<MODE_DEQ_F32><<<grid, LIN_WARPS * 32>>>(W, dx, xq, sx, dy, n); break;
    case MODE_DEQ_BF16: linear_kernel<MODE_DEQ_BF16><<<grid, LIN_WARPS * 32>>>(W, dx, xq, sx, dy, n); break;
    case MODE_FP8: linear_kernel<MODE_FP8><<<grid, LIN_WARPS * 32>>>(W, dx, xq, sx, dy, n); break;
    default: linear_kernel<MODE_FP4><<<grid, LIN_WARPS * 32>>>(W, dx, xq, sx, dy, n); break;
    }
    CK_LAUNCH("linear");
    return 0;
}

/* [LIN-1..LIN-4] ref/linear.c: linear, on the GPU. x: [n, cols] -> y: [n, rows]. */
extern "C" int cuda_linear(const dsv4_weight *w, const float *x, float *y, int64_t n,
                           int out_f32, dsv4_numerics num)
{
    cuda_count("linear");
    if (weight_check(w)) return -1;
    if (n < 0) return dsv4_set_error("%s: negative row count %lld", w->name ? w->name : "weight", (long long)n);
    if (n == 0) return 0;
    int64_t K = w->cols, R = w->rows;
    if (num == DSV4_OFFICIAL && !out_f32 && (w->fp4 || w->dtype == DSV4_F8_E4M3))
        for (int64_t i = 0; i < n * K; i++)
            if (!isfinite(x[i]))
                return dsv4_set_error("%s: input x[%lld][%lld] = %g is not finite; the official "
                                      "graph quantizes this input to FP8", w->name ? w->name : "weight",
                                      (long long)(i / K), (long long)(i % K), (double)x[i]);
    float *dx = (float *)cuda_scratch(0, (size_t)(n * K) * sizeof(float));
    float *dy = (float *)cuda_scratch(1, (size_t)(n * R) * sizeof(float));
    if (!dx || !dy) return -1;
    if (cuda_up(dx, x, (size_t)(n * K) * sizeof(float))) return -1;
    if (launch_linear(w, dx, dy, n, out_f32, num)) return -1;
    return cuda_down(y, dy, (size_t)(n * R) * sizeof(float));
}
