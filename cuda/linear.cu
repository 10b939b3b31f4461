/* linear.cu — y = x W^T for every weight storage (spec/linear.md [LIN-1..LIN-4]; the
 * reference is ref/linear.c: linear).
 *
 * Kernels:
 *   act_quant_kernel   [LIN-3] x: [n, K] -> xq: [n, K] (e4m3 values as float), sx: [n, K/128]
 *                      grid (K/128, n), block 32: one warp per 128-wide block of one row.
 *   linear_kernel<M>   grid (ceil(R/8), ceil(n/8)), block 256: each warp owns one output
 *                      feature r and 8 tokens; lane l reads weight elements k0+4l..k0+4l+3 of
 *                      each 128-wide K step (coalesced), dequantizes them in registers
 *                      (bf16 / e4m3 x 128x128 block scale / e2m1 x 32-group scale) and
 *                      accumulates in fp32.
 * Numerics per mode (same rounding points as ref/linear.c):
 *   DEQ_F32 / DEQ_BF16: y = f32(sum x*W) (fmaf, warp-tree order; ref sums in double), then
 *                       bf16 for DEQ_BF16.
 *   FP8: per 128-block b = f32(sum xq*wq) (products exact in fp32; ref's block sum is exact,
 *        ours is rounded per add: last-bit differences), acc = acc + b * f32(sx*sw) in
 *        ascending block order, y = bf16(acc).
 *   FP4: per 32-chunk b = f32(sum xq*e2m1), acc = acc + f32(b*sx) * sw in ascending chunk
 *        order, y = bf16(acc).
 * Exact mode: the fp32 form (DEQ_F32) for every dtype; tolerance 1e-5 (spec/tolerances.md).
 * Official bf16 / FP8 / FP4 GEMMs with K % 128 == 0 can run on the tensor cores
 * (linear_tc_kernel below, DSV4_CUDA_GEMM=tc); both kernels are checked on every run of the
 * kernel lab and of the golden checks (spec/cuda.md). */
#include <cstdlib>
#include <cstring>
#include <mma.h>
#include "cuda_common.cuh"
#include "kernels.h"

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

__global__ void act_quant_kernel(const float *x, int64_t K, float *xq, float *sx)
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
        xq[m * K + kb * LIN_BLOCK + threadIdx.x * 4 + i] =
            d_e4m3_to_float(d_e4m3_from_float(d_clampf(v[i] / s, -448.0f, 448.0f)));
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

/* Which GEMM kernel official bf16 / FP8 / FP4 GEMMs use: -1 = from the environment
 * (DSV4_CUDA_GEMM=tc selects linear_tc_kernel; default linear_kernel, which measured faster
 * on the H200 at decode shapes except FP8 at batch 64: spec/cuda.md). */
static int g_gemm_tc = -1;
extern "C" void linear_use_tensor_cores(int on) { g_gemm_tc = on; }

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
        xq = (float *)cuda_scratch(8, (size_t)(n * K) * sizeof(float));
        sx = (float *)cuda_scratch(9, (size_t)(n * (K / LIN_BLOCK)) * sizeof(float));
        if (!xq || !sx) return -1;
        act_quant_kernel<<<dim3((unsigned)(K / LIN_BLOCK), (unsigned)n), 32>>>(dx, K, xq, sx);
        CK_LAUNCH("act_quant");
    }
    int use_tc = g_gemm_tc;
    if (use_tc < 0) {
        const char *e = getenv("DSV4_CUDA_GEMM");
        use_tc = e && strcmp(e, "tc") == 0;
    }
    if (use_tc && K % LIN_BLOCK == 0 &&
        (mode == MODE_FP8 || mode == MODE_FP4 || (mode == MODE_DEQ_BF16 && w->dtype == DSV4_BF16))) {
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
