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
 * sparse_wmma_kernel<D> (official, bf16 q and kv — exact, the values are bf16):
 *   grid (T, H/16), block 128 = 4 warps, 2 blocks per SM (~109 KB shared each for D = 512).
 *   Block (t, g) computes heads 16g..16g+15 of query t; their query rows live in registers
 *   as tensor-core fragments. Per 64-key block: the gathered 64 x D tile (bf16, rows padded
 *   by 16 against bank conflicts) goes to shared memory once; S = Q K^T [16 x 64] (warp w:
 *   keys 16w..16w+15; the tile arrives by cp.async, all 16-byte pieces in flight at once)
 *   and P V [16 x D] (warp w: output tiles w, w+4, ...) on the tensor cores
 *   (wmma m16n16k16, bf16 x bf16 -> fp32 accumulate); the softmax update of the 16 heads
 *   in fp32 between them. The H/16 blocks of one query gather the same rows (L2 hits).
 *   Few queries (T * H/16 < 132 blocks, e.g. batch 1): the key list is split into up to
 *   264 / blocks chunks of whole 64-key blocks (grid.z), each chunk keeps its own (M, den,
 *   acc) and sparse_combine_kernel merges them (flash-decoding). That is a different
 *   rounding order: the bf16 probabilities are relative to the chunk's running max, not the
 *   list's (differences of bf16-rounding size, inside the official-mode limit);
 *   sparse_attention_allow_split(0) turns it off.
 *
 * launch_sparse_attention_bf16 (official, bf16) picks one of four kernels:
 * sparse_attention_variant(-1 default / 0 mma / 1 pipe / 2 wmma / 3 mma2 = the mma kernel's
 * 2-blocks-per-SM configuration); the default is decided in ONE place,
 * sparse_attention_default_variant below (the mma kernel of sparse_attention_mma.cu, 1 block
 * per SM, wherever it applies). */
#include <cstdlib>
#include <cstring>
#include <mma.h>
#include <cuda_pipeline.h>
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

/* [SPA-1..SPA-4] device form (CUDA cores, both modes); D % 32 == 0, D <= 512 */
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

#define WHB 16           /* heads per block */
#define KPAD 16          /* bf16 row padding of the gathered tile */
#define PLD (SPA_BLOCK + 8)

template <int D>
struct wmma_smem {
    __nv_bfloat16 kt[SPA_BLOCK][D + KPAD];   /* gathered rows (key = value) */
    float s[WHB][SPA_BLOCK];                 /* logits of the block */
    __nv_bfloat16 p[WHB][PLD];               /* bf16 probabilities */
    float acc[WHB][D];                       /* running output numerators */
    float scratch[4][16 * 16];               /* one P.V tile per warp */
    float M[WHB], den[WHB], a[WHB];
    int valid[SPA_BLOCK];
    int32_t row[SPA_BLOCK];
};

/* [SPA-1..SPA-4] official, bf16 q: [T, H, D] and kv; block (t, g, s): heads 16g..16g+15 of
 * query t over list entries [s*keys_per_split, ...); part == NULL: writes out, else the
 * chunk's (M, den, acc) to part: [T, H, splits, D + 2]. */
template <int D>
__global__ void __launch_bounds__(128, 2)
sparse_wmma_kernel(const __nv_bfloat16 *q, int64_t H, const __nv_bfloat16 *kv, int64_t kv_stride,
                   int64_t q_per_kv, const int32_t *idx, int64_t n_idx, const float *sink,
                   float scale, float *out, int64_t keys_per_split, float *part)
{
    extern __shared__ __align__(128) unsigned char smraw[];
    wmma_smem<D> &sm = *reinterpret_cast<wmma_smem<D> *>(smraw);
    int64_t t = blockIdx.x;
    int h0 = blockIdx.y * WHB;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const __nv_bfloat16 *kvt = kv + (t / q_per_kv) * kv_stride;
    const int32_t *it = idx + t * n_idx;
    /* the block's 16 query rows, as tensor-core A fragments held in registers */
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qa[D / 16];
#pragma unroll
    for (int k = 0; k < D / 16; k++) wmma::load_matrix_sync(qa[k], q + (t * H + h0) * D + k * 16, D);
    for (int i = tid; i < WHB * D; i += 128) sm.acc[i / D][i % D] = 0.0f;
    if (tid < WHB) { sm.M[tid] = -INFINITY; sm.den[tid] = 0.0f; }

    int64_t k_begin = (int64_t)blockIdx.z * keys_per_split;
    int64_t k_end = k_begin + keys_per_split < n_idx ? k_begin + keys_per_split : n_idx;
    for (int64_t b0 = k_begin; b0 < k_end; b0 += SPA_BLOCK) {
        int nb = (int)(k_end - b0 < SPA_BLOCK ? k_end - b0 : SPA_BLOCK);
        __syncthreads();   /* the previous block's tile and probabilities are consumed */
        /* gather: the block's 64 row numbers first, then every 16-byte piece of the tile as
         * an asynchronous copy (all in flight at once); masked / missing rows are zero */
        if (tid < SPA_BLOCK) sm.row[tid] = tid < nb ? it[b0 + tid] : -1;
        __syncthreads();
        if (tid < SPA_BLOCK) sm.valid[tid] = sm.row[tid] >= 0;
        for (int i = tid; i < SPA_BLOCK * (D / 8); i += 128) {
            int row = i / (D / 8), c8 = i % (D / 8);
            int32_t r = sm.row[row];
            if (r >= 0) __pipeline_memcpy_async(&sm.kt[row][c8 * 8], kvt + (int64_t)r * D + c8 * 8, 16);
            else *reinterpret_cast<uint4 *>(&sm.kt[row][c8 * 8]) = make_uint4(0, 0, 0, 0);
        }
        __pipeline_commit();
        __pipeline_wait_prior(0);
        __syncthreads();
        /* S[16 heads][keys 16w..16w+15] = Q K^T */
        {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
            wmma::fill_fragment(c, 0.0f);
#pragma unroll
            for (int k = 0; k < D / 16; k++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
                wmma::load_matrix_sync(b, &sm.kt[warp * 16][k * 16], D + KPAD);
                wmma::mma_sync(c, qa[k], b, c);
            }
            wmma::store_matrix_sync(&sm.s[0][warp * 16], c, SPA_BLOCK, wmma::mem_row_major);
        }
        __syncthreads();
        /* softmax update: warp w owns heads 4w..4w+3, lanes own keys lane, lane + 32 */
        for (int hh = 0; hh < 4; hh++) {
            int h = warp * 4 + hh;
            float l0 = sm.valid[lane] ? sm.s[h][lane] * scale : -INFINITY;
            float l1 = sm.valid[lane + 32] ? sm.s[h][lane + 32] * scale : -INFINITY;
            float M = sm.M[h], den = sm.den[h];
            float bmax = warp_max(fmaxf(M, fmaxf(l0, l1)));
            float a = (M == -INFINITY) ? 1.0f : expf(M - bmax);
            float p0 = (bmax == -INFINITY) ? 0.0f : expf(l0 - bmax);
            float p1 = (bmax == -INFINITY) ? 0.0f : expf(l1 - bmax);
            float bsum = warp_sum(p0 + p1);
            sm.p[h][lane] = __float2bfloat16_rn(p0);
            sm.p[h][lane + 32] = __float2bfloat16_rn(p1);
            __syncwarp();
            if (lane == 0) {
                sm.den[h] = den * a + bsum;
                sm.a[h] = a;
                sm.M[h] = bmax;
            }
        }
        __syncthreads();
        /* acc = acc a + P V: warp w takes output tiles w, w+4, ... of the D/16 */
        for (int nt = warp; nt < D / 16; nt += 4) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
            wmma::fill_fragment(c, 0.0f);
#pragma unroll
            for (int k0 = 0; k0 < SPA_BLOCK; k0 += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vb;
                wmma::load_matrix_sync(pa, &sm.p[0][k0], PLD);
                wmma::load_matrix_sync(vb, &sm.kt[k0][nt * 16], D + KPAD);
                wmma::mma_sync(c, pa, vb, c);
            }
            wmma::store_matrix_sync(sm.scratch[warp], c, 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                int r = e / 16, col = e % 16;
                sm.acc[r][nt * 16 + col] = sm.acc[r][nt * 16 + col] * sm.a[r] + sm.scratch[warp][e];
            }
            __syncwarp();
        }
    }
    __syncthreads();
    if (part) {   /* split over keys: this split's (M, den, acc) for sparse_combine_kernel */
        int64_t ns = gridDim.z;
        for (int i = tid; i < WHB * (D + 2); i += 128) {
            int hh = i / (D + 2), e = i % (D + 2);
            float *pp = part + (((t * H + h0 + hh) * ns) + blockIdx.z) * (D + 2);
            pp[e] = e == 0 ? sm.M[hh] : (e == 1 ? sm.den[hh] : sm.acc[hh][e - 2]);
        }
        return;
    }
    for (int i = tid; i < WHB * D; i += 128) {
        int hh = i / D, d = i % D, h = h0 + hh;
        float v = sm.M[hh] == -INFINITY ? 0.0f
                : d_round_bf16(sm.acc[hh][d] / (sm.den[hh] + expf(sink[h] - sm.M[hh])));
        out[(t * H + h) * D + d] = v;
    }
}

/* Merges the key splits of each (t, h): M = max M_s, num = sum acc_s e^{M_s - M},
 * den = sum den_s e^{M_s - M} + e^{z - M}; out = bf16(num / den). grid T*H, block 256. */
__global__ void sparse_combine_kernel(const float *part, int64_t H, int D, int ns,
                                      const float *sink, float *out)
{
    int64_t th = blockIdx.x;
    const float *pp = part + th * ns * (D + 2);
    float M = -INFINITY;
    for (int s = 0; s < ns; s++) M = fmaxf(M, pp[s * (D + 2)]);
    float den = 0.0f;
    for (int s = 0; s < ns; s++) {
        float m = pp[s * (D + 2)];
        if (m != -INFINITY) den += pp[s * (D + 2) + 1] * expf(m - M);
    }
    if (M != -INFINITY) den += expf(sink[th % H] - M);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float num = 0.0f;
        for (int s = 0; s < ns; s++) {
            float m = pp[s * (D + 2)];
            if (m != -INFINITY) num += pp[s * (D + 2) + 2 + d] * expf(m - M);
        }
        out[th * D + d] = M == -INFINITY ? 0.0f : d_round_bf16(num / den);
    }
}

/* [SPA-4] merge of the key splits: part: [T, H, ns, D + 2] -> out: [T, H, D] (launcher shared
 * with sparse_attention_pipe.cu) */
extern "C" int launch_sparse_combine(const float *part, int64_t T, int64_t H, int64_t D, int64_t ns,
                                     const float *dsink, float *dout)
{
    sparse_combine_kernel<<<(unsigned)(T * H), 256>>>(part, H, (int)D, (int)ns, dsink, dout);
    CK_LAUNCH("sparse_attention_combine");
    return 0;
}

static int g_allow_split = 1;
/* the official bf16 kernel variants (sparse_attention_variant); -1 = the default below */
#define SPA_VARIANT_DEFAULT (-1)
#define SPA_VARIANT_MMA 0    /* sparse_attention_mma.cu: mma.sync + ldmatrix, 3-stage gather */
#define SPA_VARIANT_PIPE 1   /* sparse_attention_pipe.cu: wmma, 2-stage gather */
#define SPA_VARIANT_WMMA 2   /* sparse_wmma_kernel below */
#define SPA_VARIANT_MMA2 3   /* sparse_attention_mma.cu cfg 1: HT = 1, 3 half-tile ring, 2 blocks/SM */
static int g_variant = SPA_VARIANT_DEFAULT;
/* -1: the default (sparse_attention_default_variant), 0: mma, 1: pipelined wmma, 2: plain
 * wmma, 3: mma2; for the kernel lab, the benchmark, and flipping the default after a GPU run */
extern "C" void sparse_attention_variant(int v) { g_variant = v < -1 || v > 3 ? SPA_VARIANT_DEFAULT : v; }
/* 0: the plain tensor-core kernel (sparse_wmma_kernel), 1: the pipelined one
 * (sparse_attention_pipe.cu); an explicit choice like sparse_attention_variant(2 / 1) */
extern "C" void sparse_attention_use_pipe(int on) { g_variant = on ? SPA_VARIANT_PIPE : SPA_VARIANT_WMMA; }
/* 0: never split the key list (the official kernel's exact block order, one pass per query) */
extern "C" void sparse_attention_allow_split(int on) { g_allow_split = on; }

/* THE default choice of the official bf16 kernel for a shape: the mma kernel wherever it
 * applies (H % 16 == 0, D in {64, 128, 512}, 16-byte kv rows), else the pipelined kernel
 * (H % 32 == 0), else the plain wmma one. To go back to the pipelined kernel by default,
 * return SPA_VARIANT_PIPE first here; for the 2-blocks-per-SM configuration of the mma
 * kernel, return SPA_VARIANT_MMA2 where it returns SPA_VARIANT_MMA. The environment variable
 * DSV4_CUDA_ATTN=mma|mma2|pipe|wmma picks one for a run (golden checks of a variant). */
static int sparse_attention_default_variant(int64_t H, int64_t D, const void *dkv, int64_t kv_stride)
{
    /* env DSV4_CUDA_ATTN=mma|mma2|pipe|wmma overrides (where the chosen kernel applies) */
    const char *e = getenv("DSV4_CUDA_ATTN");
    int mma_ok = sparse_attention_mma_supports(H, D, dkv, kv_stride);
    if (e && mma_ok && strcmp(e, "mma2") == 0) return SPA_VARIANT_MMA2;
    if (e && strcmp(e, "wmma") == 0) return SPA_VARIANT_WMMA;
    if (e && strcmp(e, "pipe") == 0 && H % 32 == 0 && (D == 512 || D == 128 || D == 64)) return SPA_VARIANT_PIPE;
    if (mma_ok) return SPA_VARIANT_MMA;
    if (H % 32 == 0 && (D == 512 || D == 128 || D == 64)) return SPA_VARIANT_PIPE;
    return SPA_VARIANT_WMMA;
}

template <int D>
static int launch_wmma(const void *dq, int64_t T, int64_t H, const void *dkv, int64_t kv_stride,
                       int64_t q_per_kv, const int32_t *didx, int64_t n_idx, const float *dsink,
                       float scale, float *dout)
{
    size_t smem = sizeof(wmma_smem<D>);
    static int attr_set = 0;
    if (!attr_set) {
        CK(cudaFuncSetAttribute(sparse_wmma_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_set = 1;
    }
    /* few queries: split the key list so that >= 2 blocks per SM are in flight */
    int64_t blocks = T * (H / WHB), nkb = (n_idx + SPA_BLOCK - 1) / SPA_BLOCK;
    int64_t ns = g_allow_split && blocks < 132 ? (264 + blocks - 1) / blocks : 1;
    if (ns > nkb) ns = nkb > 0 ? nkb : 1;
    int64_t kps = ((nkb + ns - 1) / ns) * SPA_BLOCK;
    ns = (n_idx + kps - 1) / kps > 0 ? (n_idx + kps - 1) / kps : 1;
    float *part = NULL;
    if (ns > 1) {
        part = (float *)cuda_scratch(12, (size_t)(T * H * ns * (D + 2)) * sizeof(float));
        if (!part) return -1;
    }
    sparse_wmma_kernel<D><<<dim3((unsigned)T, (unsigned)(H / WHB), (unsigned)ns), 128, smem>>>(
        (const __nv_bfloat16 *)dq, H, (const __nv_bfloat16 *)dkv, kv_stride, q_per_kv, didx, n_idx,
        dsink, scale, dout, ns > 1 ? kps : (n_idx > 0 ? n_idx : 1), part);
    CK_LAUNCH("sparse_attention_wmma");
    if (ns > 1) {
        sparse_combine_kernel<<<(unsigned)(T * H), 256>>>(part, H, D, (int)ns, dsink, dout);
        CK_LAUNCH("sparse_attention_combine");
    }
    return 0;
}

/* [SPA-1..SPA-4] device form on the tensor cores (official); H % 16 == 0, D in {64, 128, 512}.
 * Kernel: sparse_attention_variant's choice, else sparse_attention_default_variant; a variant
 * that does not take the shape falls back to pipe (H % 32 == 0), then wmma. */
extern "C" int launch_sparse_attention_bf16(const void *dq, int64_t T, int64_t H, int64_t D,
                                            const void *dkv, int64_t kv_stride, int64_t q_per_kv,
                                            const int32_t *didx, int64_t n_idx, const float *dsink,
                                            float scale, float *dout)
{
    if (T <= 0) return 0;
    int v = g_variant == SPA_VARIANT_DEFAULT ? sparse_attention_default_variant(H, D, dkv, kv_stride) : g_variant;
    if ((v == SPA_VARIANT_MMA || v == SPA_VARIANT_MMA2) && sparse_attention_mma_supports(H, D, dkv, kv_stride))
        return launch_sparse_attention_mma_cfg(dq, T, H, D, dkv, kv_stride, q_per_kv, didx, n_idx, dsink,
                                               scale, dout, g_allow_split, v == SPA_VARIANT_MMA2 ? 1 : 0);
    if (v != SPA_VARIANT_WMMA && H % 32 == 0 && (D == 512 || D == 128 || D == 64))
        return launch_sparse_attention_pipe(dq, T, H, D, dkv, kv_stride, q_per_kv, didx, n_idx, dsink,
                                            scale, dout, g_allow_split);
    if (H % WHB != 0) return dsv4_set_error("cuda sparse_attention (wmma): H = %lld is not a multiple of 16", (long long)H);
    if (D == 512) return launch_wmma<512>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout);
    if (D == 128) return launch_wmma<128>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout);
    if (D == 64) return launch_wmma<64>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout);
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
