/* sparse_attention.cu — V4 gathered sparse attention with per-head sinks and online softmax
 * (spec/sparse-attention.md [SPA-1..SPA-4]; the reference is ref/sparse_attention.c:
 * sparse_attention).
 *
 * o_h = sum_i e^{l_i - M} k_i / (sum_i e^{l_i - M} + e^{z_h - M}), l_i = scale q_h . k_i, over
 * the listed rows (-1 = masked), value = key (MQA). Official order (as ref): 64-key blocks in
 * list order; per block M' = max(M, max l), a = e^{M - M'} (1 while M = -inf, pitfall 13),
 * p = e^{l - M'}, den = den a + sum p (unrounded), acc = acc a + f32(sum bf16(p) k);
 * end: out = bf16(acc / (den + e^{z - M})); all masked -> exactly 0.
 *
 * sparse_f32_kernel<ACC> (both modes; ACC = float official, double exact):
 *   grid (T, ceil(H/8)), block 256, dynamic shared memory (64 + 8) * D floats.
 *   Per 64-key block: the gathered rows go to shared memory once for 8 heads; warp w computes
 *   logits of head w (lanes over d, fmaf, warp sum), then its softmax update; then every
 *   thread updates D*8/256 outputs (h, d) with the bf16 probabilities.
 * sparse_wmma_kernel<D, SPLIT> (official, bf16 q and kv — exact, the values are bf16):
 *   grid (T, SPLIT), block 128 = 4 warps, warp w owns heads 16w..16w+15 (H = 64).
 *   Shared: the gathered 64 x D tile (bf16, rows padded by 16), S [64 x 64] fp32, P bf16,
 *   acc [64 x D/SPLIT] fp32. S = Q K^T and block PV = P V on the tensor cores (wmma
 *   m16n16k16 bf16 -> fp32); block SPLIT computes output dims [s D/SPLIT, (s+1) D/SPLIT)
 *   (it recomputes S: SPLIT x the QK work, for SPLIT x the blocks in flight). */
#include <cstdlib>
#include <mma.h>
#include "cuda_common.cuh"
#include "kernels.h"

using namespace nvcuda;

#define SPA_BLOCK 64
#define SPA_HG 8          /* heads per block (f32 kernel) */
#define SPA_THREADS 256
#define SPA_MAXACC 16     /* outputs per thread: SPA_HG * D / 256 <= 16 -> D <= 512 */

/* ---- CUDA-core kernel ---- */

template <typename ACC>
__global__ void __launch_bounds__(SPA_THREADS)
sparse_f32_kernel(const float *q, int64_t H, int D, const float *kv, int64_t kv_stride,
                  int64_t q_per_kv, const int32_t *idx, int64_t n_idx, const float *sink,
                  float scale, float *out)
{
    extern __shared__ float sm[];
    float *kt = sm;                          /* [64][D] gathered rows */
    float *qs = sm + SPA_BLOCK * D;          /* [8][D] */
    __shared__ float lg[SPA_HG][SPA_BLOCK];  /* logits, then bf16 probabilities */
    __shared__ ACC s_M[SPA_HG], s_den[SPA_HG], s_a[SPA_HG];
    int64_t t = blockIdx.x;
    int h0 = blockIdx.y * SPA_HG;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float *kvt = kv + (t / q_per_kv) * kv_stride;
    const int32_t *it = idx + t * n_idx;
    const bool official = sizeof(ACC) == sizeof(float);
    for (int i = tid; i < SPA_HG * D; i += SPA_THREADS) {
        int h = h0 + i / D;
        qs[i] = h < H ? q[(t * H + h) * D + i % D] : 0.0f;
    }
    if (tid < SPA_HG) { s_M[tid] = -INFINITY; s_den[tid] = 0; }
    int nacc = SPA_HG * D / SPA_THREADS;
    ACC acc[SPA_MAXACC];
    for (int u = 0; u < SPA_MAXACC; u++) acc[u] = 0;
    __syncthreads();

    for (int64_t b0 = 0; b0 < n_idx; b0 += SPA_BLOCK) {
        int nb = (int)(n_idx - b0 < SPA_BLOCK ? n_idx - b0 : SPA_BLOCK);
        /* gather */
        for (int i = tid; i < SPA_BLOCK * D; i += SPA_THREADS) {
            int row = i / D;
            int32_t r = row < nb ? it[b0 + row] : -1;
            kt[i] = r >= 0 ? kvt[(int64_t)r * D + i % D] : 0.0f;
        }
        __syncthreads();
        /* logits of head `warp`, then its softmax update */
        int h = warp;
        for (int i = 0; i < SPA_BLOCK; i++) {
            float s = 0.0f;
            for (int d = lane; d < D; d += 32) s = fmaf(qs[h * D + d], kt[i * D + d], s);
            s = warp_sum(s);
            if (lane == 0) {
                bool valid = i < nb && it[b0 + i] >= 0;
                lg[h][i] = valid ? (official ? s * scale : (float)((double)s * (double)scale)) : -INFINITY;
            }
        }
        __syncwarp();
        ACC M = s_M[h];
        ACC l0 = lg[h][lane], l1 = lg[h][lane + 32];
        ACC bmax = M;
        bmax = l0 > bmax ? l0 : bmax;
        bmax = l1 > bmax ? l1 : bmax;
        for (int o = 16; o > 0; o >>= 1) {
            ACC other = __shfl_xor_sync(0xffffffffu, bmax, o);
            bmax = other > bmax ? other : bmax;
        }
        ACC a, p0, p1;
        if (official) {
            a = (M == -INFINITY) ? 1.0f : expf((float)(M - bmax));
            p0 = (bmax == -INFINITY) ? 0.0f : expf((float)(l0 - bmax));
            p1 = (bmax == -INFINITY) ? 0.0f : expf((float)(l1 - bmax));
        } else {
            a = (M == -INFINITY) ? 1.0 : exp((double)(M - bmax));
            p0 = (bmax == -INFINITY) ? 0.0 : exp((double)(l0 - bmax));
            p1 = (bmax == -INFINITY) ? 0.0 : exp((double)(l1 - bmax));
        }
        ACC bsum = p0 + p1;
        for (int o = 16; o > 0; o >>= 1) bsum += __shfl_xor_sync(0xffffffffu, bsum, o);
        __syncwarp();
        /* probabilities for P.V: bf16 in official mode; exact mode keeps them in lg as fp32
         * of a double (the exact path's P.V then runs in double below) */
        lg[h][lane] = official ? d_round_bf16((float)p0) : (float)p0;
        lg[h][lane + 32] = official ? d_round_bf16((float)p1) : (float)p1;
        if (lane == 0) {
            s_den[h] = s_den[h] * a + bsum;
            s_a[h] = a;
            s_M[h] = bmax;
        }
        __syncthreads();
        /* P.V for this thread's outputs */
        for (int u = 0; u < nacc; u++) {
            int o = tid + u * SPA_THREADS, hh = o / D, d = o % D;
            ACC bs = 0;
            for (int i = 0; i < nb; i++) {
                if (official) bs = fmaf(lg[hh][i], kt[i * D + d], (float)bs);
                else bs += (ACC)lg[hh][i] * (ACC)kt[i * D + d];
            }
            acc[u] = acc[u] * s_a[hh] + bs;
        }
        __syncthreads();
    }
    for (int u = 0; u < nacc; u++) {
        int o = tid + u * SPA_THREADS, hh = o / D, d = o % D, h = h0 + hh;
        if (h >= H) continue;
        float v;
        if (s_M[hh] == -INFINITY) v = 0.0f;
        else if (official) v = d_round_bf16((float)acc[u] / ((float)s_den[hh] + expf(sink[h] - (float)s_M[hh])));
        else v = (float)((double)acc[u] / ((double)s_den[hh] + exp((double)sink[h] - (double)s_M[hh])));
        out[(t * H + h) * D + d] = v;
    }
}

extern "C" int launch_sparse_attention_f32(const float *dq, int64_t T, int64_t H, int64_t D,
                                           const float *dkv, int64_t kv_stride, int64_t q_per_kv,
                                           const int32_t *didx, int64_t n_idx, const float *dsink,
                                           float scale, float *dout, dsv4_numerics num)
{
    if (T <= 0) return 0;
    if (D % 32 != 0 || D > 512)
        return dsv4_set_error("cuda sparse_attention: D = %lld must be a multiple of 32, <= 512", (long long)D);
    size_t smem = (size_t)((SPA_BLOCK + SPA_HG) * D) * sizeof(float);
    dim3 grid((unsigned)T, (unsigned)((H + SPA_HG - 1) / SPA_HG));
    if (num == DSV4_OFFICIAL) {
        CK(cudaFuncSetAttribute(sparse_f32_kernel<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        sparse_f32_kernel<float><<<grid, SPA_THREADS, smem>>>(dq, H, (int)D, dkv, kv_stride, q_per_kv,
                                                             didx, n_idx, dsink, scale, dout);
    } else {
        CK(cudaFuncSetAttribute(sparse_f32_kernel<double>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        sparse_f32_kernel<double><<<grid, SPA_THREADS, smem>>>(dq, H, (int)D, dkv, kv_stride, q_per_kv,
                                                              didx, n_idx, dsink, scale, dout);
    }
    CK_LAUNCH("sparse_attention_f32");
    return 0;
}

/* ---- tensor-core kernel (official, bf16) ---- */

#define WH 64            /* heads */
#define KPAD 16          /* bf16 row padding of the gathered tile */
#define PLD (SPA_BLOCK + 8)

template <int D, int SPLIT>
struct wmma_smem {
    __nv_bfloat16 kt[SPA_BLOCK][D + KPAD];
    float s[WH][SPA_BLOCK];
    __nv_bfloat16 p[WH][PLD];
    float acc[WH][D / SPLIT];
    float scratch[4][16 * 16];
    float M[WH], den[WH], a[WH];
};

template <int D, int SPLIT>
__global__ void __launch_bounds__(128)
sparse_wmma_kernel(const __nv_bfloat16 *q, const __nv_bfloat16 *kv, int64_t kv_stride,
                   int64_t q_per_kv, const int32_t *idx, int64_t n_idx, const float *sink,
                   float scale, float *out)
{
    extern __shared__ __align__(128) unsigned char smraw[];
    wmma_smem<D, SPLIT> &sm = *reinterpret_cast<wmma_smem<D, SPLIT> *>(smraw);
    const int DV = D / SPLIT;
    int64_t t = blockIdx.x;
    int part = blockIdx.y;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const __nv_bfloat16 *kvt = kv + (t / q_per_kv) * kv_stride;
    const __nv_bfloat16 *qt = q + t * WH * D;
    const int32_t *it = idx + t * n_idx;
    for (int i = tid; i < WH * DV; i += 128) sm.acc[i / DV][i % DV] = 0.0f;
    if (tid < WH) { sm.M[tid] = -INFINITY; sm.den[tid] = 0.0f; }
    __syncthreads();

    for (int64_t b0 = 0; b0 < n_idx; b0 += SPA_BLOCK) {
        int nb = (int)(n_idx - b0 < SPA_BLOCK ? n_idx - b0 : SPA_BLOCK);
        /* gather: 16-byte copies, 8 bf16 each */
        for (int i = tid; i < SPA_BLOCK * (D / 8); i += 128) {
            int row = i / (D / 8), c8 = i % (D / 8);
            int32_t r = row < nb ? it[b0 + row] : -1;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (r >= 0) v = *reinterpret_cast<const uint4 *>(kvt + (int64_t)r * D + c8 * 8);
            *reinterpret_cast<uint4 *>(&sm.kt[row][c8 * 8]) = v;
        }
        __syncthreads();
        /* S = Q K^T for heads 16w..16w+15 */
        for (int nt = 0; nt < SPA_BLOCK / 16; nt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
            wmma::fill_fragment(c, 0.0f);
            for (int k0 = 0; k0 < D; k0 += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
                wmma::load_matrix_sync(a, qt + warp * 16 * D + k0, D);
                wmma::load_matrix_sync(b, &sm.kt[nt * 16][k0], D + KPAD);
                wmma::mma_sync(c, a, b, c);
            }
            wmma::store_matrix_sync(&sm.s[warp * 16][nt * 16], c, SPA_BLOCK, wmma::mem_row_major);
        }
        __syncwarp();
        /* softmax update of the warp's 16 heads (lanes over keys: 2 keys each) */
        for (int hh = 0; hh < 16; hh++) {
            int h = warp * 16 + hh;
            bool v0 = lane < nb && it[b0 + lane] >= 0, v1 = lane + 32 < nb && it[b0 + lane + 32] >= 0;
            float l0 = v0 ? sm.s[h][lane] * scale : -INFINITY;
            float l1 = v1 ? sm.s[h][lane + 32] * scale : -INFINITY;
            float M = sm.M[h];
            float bmax = warp_max(fmaxf(M, fmaxf(l0, l1)));
            float a = (M == -INFINITY) ? 1.0f : expf(M - bmax);
            float p0 = (bmax == -INFINITY) ? 0.0f : expf(l0 - bmax);
            float p1 = (bmax == -INFINITY) ? 0.0f : expf(l1 - bmax);
            float bsum = warp_sum(p0 + p1);
            sm.p[h][lane] = __float2bfloat16_rn(p0);
            sm.p[h][lane + 32] = __float2bfloat16_rn(p1);
            if (lane == 0) {
                sm.den[h] = sm.den[h] * a + bsum;
                sm.a[h] = a;
                sm.M[h] = bmax;
            }
        }
        __syncwarp();
        /* acc = acc a + P V for the block's output dims */
        for (int nt = 0; nt < DV / 16; nt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
            wmma::fill_fragment(c, 0.0f);
            for (int k0 = 0; k0 < SPA_BLOCK; k0 += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
                wmma::load_matrix_sync(a, &sm.p[warp * 16][k0], PLD);
                wmma::load_matrix_sync(b, &sm.kt[k0][part * DV + nt * 16], D + KPAD);
                wmma::mma_sync(c, a, b, c);
            }
            wmma::store_matrix_sync(sm.scratch[warp], c, 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                int r = e / 16, col = e % 16, h = warp * 16 + r;
                float &o = sm.acc[h][nt * 16 + col];
                o = o * sm.a[h] + sm.scratch[warp][e];
            }
            __syncwarp();
        }
        __syncthreads();   /* the tile is rewritten by the next gather */
    }
    for (int i = tid; i < WH * DV; i += 128) {
        int h = i / DV, d = i % DV;
        float v = sm.M[h] == -INFINITY ? 0.0f
                : d_round_bf16(sm.acc[h][d] / (sm.den[h] + expf(sink[h] - sm.M[h])));
        out[(t * WH + h) * D + part * DV + d] = v;
    }
}

template <int D, int SPLIT>
static int launch_wmma(const void *dq, int64_t T, const void *dkv, int64_t kv_stride,
                       int64_t q_per_kv, const int32_t *didx, int64_t n_idx, const float *dsink,
                       float scale, float *dout)
{
    size_t smem = sizeof(wmma_smem<D, SPLIT>);
    CK(cudaFuncSetAttribute(sparse_wmma_kernel<D, SPLIT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    sparse_wmma_kernel<D, SPLIT><<<dim3((unsigned)T, SPLIT), 128, smem>>>(
        (const __nv_bfloat16 *)dq, (const __nv_bfloat16 *)dkv, kv_stride, q_per_kv, didx, n_idx,
        dsink, scale, dout);
    CK_LAUNCH("sparse_attention_wmma");
    return 0;
}

static int g_wmma_split = 2;
extern "C" void sparse_attention_set_split(int s) { g_wmma_split = s; }

extern "C" int launch_sparse_attention_bf16(const void *dq, int64_t T, int64_t H, int64_t D,
                                            const void *dkv, int64_t kv_stride, int64_t q_per_kv,
                                            const int32_t *didx, int64_t n_idx, const float *dsink,
                                            float scale, float *dout)
{
    if (T <= 0) return 0;
    if (H != WH) return dsv4_set_error("cuda sparse_attention (wmma): H = %lld, needs 64", (long long)H);
    if (D == 512) {
        if (g_wmma_split == 1) return launch_wmma<512, 1>(dq, T, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout);
        if (g_wmma_split == 4) return launch_wmma<512, 4>(dq, T, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout);
        return launch_wmma<512, 2>(dq, T, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout);
    }
    if (D == 128) return launch_wmma<128, 1>(dq, T, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout);
    if (D == 64) return launch_wmma<64, 1>(dq, T, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout);
    return dsv4_set_error("cuda sparse_attention (wmma): D = %lld not in {64, 128, 512}", (long long)D);
}

/* [SPA-1..SPA-4] ref/sparse_attention.c: sparse_attention on the GPU (one query position).
 * q: [H, D], kv: [n_kv, D], idx: [n_idx] (int64, -1 masked), sink: [H] host -> out: [H, D]. */
extern "C" int cuda_sparse_attention(const float *q, int64_t H, int64_t D, const float *kv,
                                     int64_t n_kv, const int64_t *idx, int64_t n_idx,
                                     const float *sink, double scale, float *out,
                                     dsv4_numerics num)
{
    cuda_count("sparse_attention");
    for (int64_t i = 0; i < n_idx; i++)
        if (idx[i] < -1 || idx[i] >= n_kv)
            return dsv4_set_error("sparse_attention: index %lld at list position %lld is outside [-1, %lld)",
                                  (long long)idx[i], (long long)i, (long long)n_kv);
    int32_t *hidx = (int32_t *)malloc(sizeof(int32_t) * (size_t)(n_idx > 0 ? n_idx : 1));
    if (!hidx) return dsv4_set_error("cuda sparse_attention: out of memory");
    for (int64_t i = 0; i < n_idx; i++) hidx[i] = (int32_t)idx[i];
    float *dq = (float *)cuda_scratch(0, (size_t)(H * D) * sizeof(float));
    float *dkv = (float *)cuda_scratch(1, (size_t)((n_kv > 0 ? n_kv : 1) * D) * sizeof(float));
    int32_t *di = (int32_t *)cuda_scratch(2, sizeof(int32_t) * (size_t)(n_idx > 0 ? n_idx : 1));
    float *ds = (float *)cuda_scratch(3, (size_t)H * sizeof(float));
    float *dout = (float *)cuda_scratch(4, (size_t)(H * D) * sizeof(float));
    int rc = -1;
    if (!dq || !dkv || !di || !ds || !dout) goto done;
    if (cuda_up(dq, q, (size_t)(H * D) * sizeof(float)) || cuda_up(dkv, kv, (size_t)(n_kv * D) * sizeof(float)) ||
        cuda_up(di, hidx, sizeof(int32_t) * (size_t)n_idx) || cuda_up(ds, sink, (size_t)H * sizeof(float)))
        goto done;
    if (launch_sparse_attention_f32(dq, 1, H, D, dkv, 0, 1, di, n_idx, ds, (float)scale, dout, num)) goto done;
    rc = cuda_down(out, dout, (size_t)(H * D) * sizeof(float));
done:
    free(hidx);
    return rc;
}
