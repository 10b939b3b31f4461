/* sparse_attention_pipe.cu — V4 gathered sparse attention on the tensor cores, pipelined
 * (spec/sparse-attention.md [SPA-1..SPA-4]; spec/cuda.md "Sparse attention, pipelined";
 * the reference is ref/sparse_attention.c: sparse_attention; the plain tensor-core kernel
 * this one replaces by default is sparse_wmma_kernel in sparse_attention.cu).
 *
 * The same arithmetic as sparse_wmma_kernel, official numerics, bf16 q and kv (exact: the
 * official graph holds both in bf16): 64-key blocks in list order; per block
 * M' = max(M, max l), a = e^{M - M'} (1 while M = -inf, pitfall 13), p = e^{l - M'},
 * den = den a + sum p (fp32, unrounded), acc = acc a + sum bf16(p) k (fp32);
 * end: out = bf16(acc / (den + e^{z - M})); all masked -> exactly 0.
 * One accumulation-order difference from sparse_wmma_kernel: the tensor cores add the
 * block's bf16(p) k products straight onto the rescaled acc a (one fp32 accumulation)
 * instead of summing them first and adding the sum; spec/tolerances.md allows it.
 *
 * sparse_pipe_kernel<D>: grid (T, H/32, splits), block 256 = 8 warps, 1 block per SM
 *   (~179 KB shared for D = 512). Block (t, g) computes heads 32g..32g+31 of query t.
 *   Shared memory: the 32 query rows (bf16), TWO gathered 64 x D tiles (bf16, rows padded
 *   by 16), the block's logits and bf16 probabilities, (M, den, a) per head.
 *   Pipeline: the gather of key block b+1 (cp.async, 16-byte pieces, all in flight) is issued
 *   before the arithmetic of block b, so the random-row reads overlap the tensor cores.
 *   Per block: S = Q K^T [32 x 64] — warp w: head tile w/4 x key tile w%4, k over D in
 *   four interleaved partial sums; softmax of 4 heads per warp (lanes over the 64 keys,
 *   the 4 heads' reductions interleaved); acc = acc a + P V — warp w owns
 *   head tile w/4 and output tiles (w%4) + 4j, j < D/64, as tensor-core accumulator
 *   fragments held in REGISTERS for the whole key list (D/64 x 8 floats per thread). The
 *   per-head factor a reaches a fragment element through a row map: a fragment loaded from
 *   a 16 x 16 matrix holding its row numbers (documented wmma calls only; the element ->
 *   row layout itself is not documented and is not assumed).
 *   Few queries (T * H/32 < 66 blocks, e.g. batch 1): the key list is split into chunks of
 *   whole 64-key blocks (grid.z), merged by sparse_combine (sparse_attention.cu), the same
 *   flash-decoding split as sparse_wmma_kernel. */
#include <mma.h>
#include <cuda_pipeline.h>
#include "cuda_common.cuh"
#include "kernels.h"

using namespace nvcuda;

#define PIPE_KEYS 64        /* keys per block: the reference's online-softmax block */
#define PIPE_HEADS 32       /* heads per thread block */
#define PIPE_THREADS 256    /* 8 warps */
#define PIPE_PAD 16         /* bf16 padding of each shared row (bank spread) */
#define PIPE_PLD (PIPE_KEYS + 8)

template <int D>
struct pipe_smem {
    __nv_bfloat16 kt[2][PIPE_KEYS][D + PIPE_PAD];  /* gathered rows, double buffered */
    __nv_bfloat16 q[PIPE_HEADS][D + PIPE_PAD];     /* the block's query rows */
    float s[PIPE_HEADS][PIPE_KEYS];                /* logits of the current block */
    __nv_bfloat16 p[PIPE_HEADS][PIPE_PLD];         /* its bf16 probabilities */
    float rowid[16 * 16];                          /* rowid[r][c] = r: the fragment row map */
    float M[PIPE_HEADS], den[PIPE_HEADS], a[PIPE_HEADS];
};

/* Issues the asynchronous gather of list entries [b0, b0 + 64) ∩ [.., k_end) into tile;
 * masked (-1) and missing rows are zero-filled. it: the query's list, kvt: its kv rows. */
template <int D>
__device__ void pipe_gather(__nv_bfloat16 (*tile)[D + PIPE_PAD], const __nv_bfloat16 *kvt,
                            const int32_t *it, int64_t b0, int64_t k_end, int tid)
{
    for (int i = tid; i < PIPE_KEYS * (D / 8); i += PIPE_THREADS) {
        int row = i / (D / 8), c8 = i % (D / 8);
        int32_t r = b0 + row < k_end ? it[b0 + row] : -1;
        if (r >= 0) __pipeline_memcpy_async(&tile[row][c8 * 8], kvt + (int64_t)r * D + c8 * 8, 16);
        else *reinterpret_cast<uint4 *>(&tile[row][c8 * 8]) = make_uint4(0, 0, 0, 0);
    }
    __pipeline_commit();
}

/* [SPA-1..SPA-4] official, bf16 q: [T, H, D], kv rows of query t at kv + (t / q_per_kv) *
 * kv_stride, idx: [T, n_idx] int32 (-1 masked), sink: [H] -> block (t, g, s): heads
 * 32g..32g+31 of query t over list entries [s * keys_per_split, ...); part == NULL: writes
 * out: [T, H, D] (bf16 values as float), else the chunk's (M, den, acc) to
 * part: [T, H, splits, D + 2] for sparse_combine. */
template <int D>
__global__ void __launch_bounds__(PIPE_THREADS, 1)
sparse_pipe_kernel(const __nv_bfloat16 *q, int64_t H, const __nv_bfloat16 *kv, int64_t kv_stride,
                   int64_t q_per_kv, const int32_t *idx, int64_t n_idx, const float *sink,
                   float scale, float *out, int64_t keys_per_split, float *part)
{
    extern __shared__ __align__(128) unsigned char smraw[];
    pipe_smem<D> &sm = *reinterpret_cast<pipe_smem<D> *>(smraw);
    const int NT = D / 64;   /* output tiles per warp */
    int64_t t = blockIdx.x;
    int h0 = blockIdx.y * PIPE_HEADS;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int ht = warp >> 2, wq = warp & 3;   /* head tile, quarter */
    const __nv_bfloat16 *kvt = kv + (t / q_per_kv) * kv_stride;
    const int32_t *it = idx + t * n_idx;
    int64_t k_begin = (int64_t)blockIdx.z * keys_per_split;
    int64_t k_end = k_begin + keys_per_split < n_idx ? k_begin + keys_per_split : n_idx;

    /* prologue: the first tile's gather in flight while q, the row map and the state load */
    if (k_begin < k_end) pipe_gather<D>(sm.kt[0], kvt, it, k_begin, k_end, tid);
    for (int i = tid; i < PIPE_HEADS * (D / 8); i += PIPE_THREADS) {
        int h = i / (D / 8), c8 = i % (D / 8);
        *reinterpret_cast<uint4 *>(&sm.q[h][c8 * 8]) =
            *reinterpret_cast<const uint4 *>(q + (t * H + h0 + h) * D + c8 * 8);
    }
    for (int i = tid; i < 256; i += PIPE_THREADS) sm.rowid[i] = (float)(i / 16);
    if (tid < PIPE_HEADS) { sm.M[tid] = -INFINITY; sm.den[tid] = 0.0f; }
    __syncthreads();
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> rowmap, acc[NT];
    wmma::load_matrix_sync(rowmap, sm.rowid, 16, wmma::mem_row_major);
#pragma unroll
    for (int j = 0; j < NT; j++) wmma::fill_fragment(acc[j], 0.0f);

    int buf = 0;
    for (int64_t b0 = k_begin; b0 < k_end; b0 += PIPE_KEYS, buf ^= 1) {
        /* next tile's gather goes out first; then wait for this tile's */
        if (b0 + PIPE_KEYS < k_end) {
            pipe_gather<D>(sm.kt[buf ^ 1], kvt, it, b0 + PIPE_KEYS, k_end, tid);
            __pipeline_wait_prior(1);
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();
        /* S[head tile ht][key tile wq] = Q K^T; four partial sums over k (k mod 4), four
         * chains of tensor-core operations in flight, added at the end (order only) */
        {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c[4];
#pragma unroll
            for (int u = 0; u < 4; u++) wmma::fill_fragment(c[u], 0.0f);
#pragma unroll 2
            for (int k = 0; k < D / 16; k += 4) {
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qa;
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kb;
                    wmma::load_matrix_sync(qa, &sm.q[ht * 16][(k + u) * 16], D + PIPE_PAD);
                    wmma::load_matrix_sync(kb, &sm.kt[buf][wq * 16][(k + u) * 16], D + PIPE_PAD);
                    wmma::mma_sync(c[u], qa, kb, c[u]);
                }
            }
#pragma unroll
            for (int e = 0; e < c[0].num_elements; e++) c[0].x[e] = (c[0].x[e] + c[1].x[e]) + (c[2].x[e] + c[3].x[e]);
            wmma::store_matrix_sync(&sm.s[ht * 16][wq * 16], c[0], PIPE_KEYS, wmma::mem_row_major);
        }
        __syncthreads();
        /* softmax update: warp w owns heads 4w..4w+3, lanes own keys lane, lane + 32; the
         * four heads' reductions interleaved (four independent shuffle chains) */
        {
            bool v0 = b0 + lane < k_end && it[b0 + lane] >= 0;
            bool v1 = b0 + lane + 32 < k_end && it[b0 + lane + 32] >= 0;
            float l0[4], l1[4], M[4], bmax[4], p0[4], p1[4], bsum[4];
#pragma unroll
            for (int hh = 0; hh < 4; hh++) {
                int h = warp * 4 + hh;
                l0[hh] = v0 ? sm.s[h][lane] * scale : -INFINITY;
                l1[hh] = v1 ? sm.s[h][lane + 32] * scale : -INFINITY;
                M[hh] = sm.M[h];
                bmax[hh] = fmaxf(M[hh], fmaxf(l0[hh], l1[hh]));
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
#pragma unroll
                for (int hh = 0; hh < 4; hh++) bmax[hh] = fmaxf(bmax[hh], __shfl_xor_sync(0xffffffffu, bmax[hh], o));
#pragma unroll
            for (int hh = 0; hh < 4; hh++) {
                p0[hh] = (bmax[hh] == -INFINITY) ? 0.0f : expf(l0[hh] - bmax[hh]);
                p1[hh] = (bmax[hh] == -INFINITY) ? 0.0f : expf(l1[hh] - bmax[hh]);
                bsum[hh] = p0[hh] + p1[hh];
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
#pragma unroll
                for (int hh = 0; hh < 4; hh++) bsum[hh] += __shfl_xor_sync(0xffffffffu, bsum[hh], o);
            __syncwarp();   /* every lane has read sm.M before lane 0 replaces it */
#pragma unroll
            for (int hh = 0; hh < 4; hh++) {
                int h = warp * 4 + hh;
                sm.p[h][lane] = __float2bfloat16_rn(p0[hh]);
                sm.p[h][lane + 32] = __float2bfloat16_rn(p1[hh]);
                if (lane == 0) {
                    float a = (M[hh] == -INFINITY) ? 1.0f : expf(M[hh] - bmax[hh]);
                    sm.den[h] = sm.den[h] * a + bsum[hh];
                    sm.a[h] = a;
                    sm.M[h] = bmax[hh];
                }
            }
        }
        __syncthreads();
        /* acc = acc a + P V on this warp's register tiles */
        {
            float ar[8];
#pragma unroll
            for (int e = 0; e < rowmap.num_elements; e++) ar[e] = sm.a[ht * 16 + (int)rowmap.x[e]];
#pragma unroll
            for (int j = 0; j < NT; j++) {
#pragma unroll
                for (int e = 0; e < acc[j].num_elements; e++) acc[j].x[e] = acc[j].x[e] * ar[e];
                int nt = wq + 4 * j;
#pragma unroll
                for (int k0 = 0; k0 < PIPE_KEYS; k0 += 16) {
                    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pa;
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vb;
                    wmma::load_matrix_sync(pa, &sm.p[ht * 16][k0], PIPE_PLD);
                    wmma::load_matrix_sync(vb, &sm.kt[buf][k0][nt * 16], D + PIPE_PAD);
                    wmma::mma_sync(acc[j], pa, vb, acc[j]);
                }
            }
        }
        __syncthreads();   /* tile buf and the probabilities are consumed */
    }

    /* epilogue: the accumulators through shared memory (tile 0 reused as fp32 [32][D]) */
    float *fin = reinterpret_cast<float *>(&sm.kt[0][0][0]);
#pragma unroll
    for (int j = 0; j < NT; j++)
        wmma::store_matrix_sync(fin + ht * 16 * D + (wq + 4 * j) * 16, acc[j], D, wmma::mem_row_major);
    __syncthreads();
    if (part) {   /* split over keys: this split's (M, den, acc) for sparse_combine */
        int64_t ns = gridDim.z;
        for (int i = tid; i < PIPE_HEADS * (D + 2); i += PIPE_THREADS) {
            int hh = i / (D + 2), e = i % (D + 2);
            float *pp = part + (((t * H + h0 + hh) * ns) + blockIdx.z) * (D + 2);
            pp[e] = e == 0 ? sm.M[hh] : (e == 1 ? sm.den[hh] : fin[hh * D + e - 2]);
        }
        return;
    }
    for (int i = tid; i < PIPE_HEADS * D; i += PIPE_THREADS) {
        int hh = i / D, d = i % D, h = h0 + hh;
        float v = sm.M[hh] == -INFINITY ? 0.0f
                : d_round_bf16(fin[hh * D + d] / (sm.den[hh] + expf(sink[h] - sm.M[hh])));
        out[(t * H + h) * D + d] = v;
    }
}

template <int D>
static int launch_pipe(const void *dq, int64_t T, int64_t H, const void *dkv, int64_t kv_stride,
                       int64_t q_per_kv, const int32_t *didx, int64_t n_idx, const float *dsink,
                       float scale, float *dout, int allow_split)
{
    size_t smem = sizeof(pipe_smem<D>);
    static int attr_set = 0;
    if (!attr_set) {
        CK(cudaFuncSetAttribute(sparse_pipe_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_set = 1;
    }
    /* few queries (under half the 132 SMs busy): split the key list, ~1 block per SM */
    int64_t blocks = T * (H / PIPE_HEADS), nkb = (n_idx + PIPE_KEYS - 1) / PIPE_KEYS;
    int64_t ns = allow_split && blocks < 66 ? (132 + blocks - 1) / blocks : 1;
    if (ns > nkb) ns = nkb > 0 ? nkb : 1;
    int64_t kps = ((nkb + ns - 1) / ns) * PIPE_KEYS;
    if (kps <= 0) kps = PIPE_KEYS;
    ns = (n_idx + kps - 1) / kps > 0 ? (n_idx + kps - 1) / kps : 1;
    float *part = NULL;
    if (ns > 1) {
        part = (float *)cuda_scratch(12, (size_t)(T * H * ns * (D + 2)) * sizeof(float));
        if (!part) return -1;
    }
    sparse_pipe_kernel<D><<<dim3((unsigned)T, (unsigned)(H / PIPE_HEADS), (unsigned)ns), PIPE_THREADS, smem>>>(
        (const __nv_bfloat16 *)dq, H, (const __nv_bfloat16 *)dkv, kv_stride, q_per_kv, didx, n_idx,
        dsink, scale, dout, ns > 1 ? kps : (n_idx > 0 ? n_idx : 1), part);
    CK_LAUNCH("sparse_attention_pipe");
    if (ns > 1) return launch_sparse_combine(part, T, H, D, ns, dsink, dout);
    return 0;
}

/* [SPA-1..SPA-4] device form, pipelined tensor-core kernel (official); H % 32 == 0,
 * D in {64, 128, 512}; allow_split: 0 = one pass over the key list per query. */
extern "C" int launch_sparse_attention_pipe(const void *dq, int64_t T, int64_t H, int64_t D,
                                            const void *dkv, int64_t kv_stride, int64_t q_per_kv,
                                            const int32_t *didx, int64_t n_idx, const float *dsink,
                                            float scale, float *dout, int allow_split)
{
    if (T <= 0) return 0;
    if (H % PIPE_HEADS != 0) return dsv4_set_error("cuda sparse_attention (pipe): H = %lld is not a multiple of 32", (long long)H);
    if (D == 512) return launch_pipe<512>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout, allow_split);
    if (D == 128) return launch_pipe<128>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout, allow_split);
    if (D == 64) return launch_pipe<64>(dq, T, H, dkv, kv_stride, q_per_kv, didx, n_idx, dsink, scale, dout, allow_split);
    return dsv4_set_error("cuda sparse_attention (pipe): D = %lld not in {64, 128, 512}", (long long)D);
}
