/* norm.cu — RMSNorm and the V4 per-head query norm (spec/norm.md [NORM-1] [NORM-2]; the
 * reference is ref/norm.c: rmsnorm, rmsnorm_head).
 *
 * Launch shape: grid n_rows, block 256; one block per row: each thread sums the squares of
 * dims j = tid, tid+256, ..., a block tree reduction gives the row's sum, then each thread
 * writes its dims.
 * Numerics (official): squares f32 (rmsnorm) or bf16(x^2) (rmsnorm_head), summed by thread 0
 * in PyTorch's CPU order [NUM-8] (d_torch_sum_squares, ref/numerics.c: torch_cpu_sum_squares,
 * the order the official golden files carry; the row sum is a tiny part of the run), then the
 * same fp32 / bf16 steps as ref: v = f32(ss) / dim, r = 1 / sqrtf(v + eps),
 * y = bf16(w * (x * r)).
 * Exact: double sum, double r, fp32 out (as ref). */
#include "cuda_common.cuh"
#include "kernels.h"

#define NORM_THREADS 256

/* block-wide sum of a double (every thread gets it) */
__device__ double block_sum_d(double v)
{
    __shared__ double part[NORM_THREADS / 32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    double s = 0.0;
    for (int i = 0; i < NORM_THREADS / 32; i++) s += part[i];
    return s;
}

/* [NUM-8] ref/numerics.c: torch_cpu_sum_squares, step for step (one thread; fp32 adds,
 * -fmad=false keeps every multiply and add separately rounded). */
__device__ float d_torch_sum_squares(const float *x, int64_t n, int bf16sq)
{
    const int L = 8, ILP = 4, LEVELS = 4;
    int64_t nvec = n / L, rows = nvec / ILP;
    float acc[4][4][8];
    for (int a = 0; a < LEVELS; a++)
        for (int k = 0; k < ILP; k++)
            for (int c = 0; c < L; c++) acc[a][k][c] = 0.0f;
    int lp = 0;
    while (((int64_t)1 << lp) < rows) lp++;
    int level_power = lp / LEVELS < 4 ? 4 : lp / LEVELS;
    int64_t level_step = (int64_t)1 << level_power, level_mask = level_step - 1;
#define SQ(v) (bf16sq ? d_round_bf16((v) * (v)) : (v) * (v))
    int64_t i = 0;
    while (i + level_step <= rows) {
        for (int64_t j = 0; j < level_step; j++, i++)
            for (int k = 0; k < ILP; k++)
                for (int c = 0; c < L; c++) acc[0][k][c] += SQ(x[(i * ILP + k) * L + c]);
        for (int lv = 1; lv < LEVELS; lv++) {
            for (int k = 0; k < ILP; k++)
                for (int c = 0; c < L; c++) { acc[lv][k][c] += acc[lv - 1][k][c]; acc[lv - 1][k][c] = 0.0f; }
            if ((i & (level_mask << (lv * level_power))) != 0) break;
        }
    }
    for (; i < rows; i++)
        for (int k = 0; k < ILP; k++)
            for (int c = 0; c < L; c++) acc[0][k][c] += SQ(x[(i * ILP + k) * L + c]);
    for (int lv = 1; lv < LEVELS; lv++)
        for (int k = 0; k < ILP; k++)
            for (int c = 0; c < L; c++) acc[0][k][c] += acc[lv][k][c];
    for (int64_t v = rows * ILP; v < nvec; v++)
        for (int c = 0; c < L; c++) acc[0][0][c] += SQ(x[v * L + c]);
    for (int k = 1; k < ILP; k++)
        for (int c = 0; c < L; c++) acc[0][0][c] += acc[0][k][c];
    float total = 0.0f;
    for (int64_t t = nvec * L; t < n; t++) total += SQ(x[t]);
    for (int c = 0; c < L; c++) total += acc[0][0][c];
#undef SQ
    return total;
}

/* one thread computes it, every thread of the block gets it */
__device__ float block_torch_sum_squares(const float *x, int64_t n, int bf16sq)
{
    __shared__ float tot;
    if (threadIdx.x == 0) tot = d_torch_sum_squares(x, n, bf16sq);
    __syncthreads();
    return tot;
}

/* [NORM-1] x, y: [n_rows, dim] (may alias); w: [dim] or NULL */
__global__ void rmsnorm_kernel(const float *x, const float *w, float *y, int dim, float eps,
                               int official)
{
    const float *xr = x + (int64_t)blockIdx.x * dim;
    float *yr = y + (int64_t)blockIdx.x * dim;
    if (official) {
        float tot = block_torch_sum_squares(xr, dim, 0);   /* [NUM-8] */
        float v = tot / (float)dim;
        float r = 1.0f / sqrtf(v + eps);
        for (int j = threadIdx.x; j < dim; j += NORM_THREADS) {
            float t = xr[j] * r;
            if (w) t = w[j] * t;
            yr[j] = d_round_bf16(t);
        }
    } else {
        double ss = 0.0;
        for (int j = threadIdx.x; j < dim; j += NORM_THREADS) ss += (double)xr[j] * (double)xr[j];
        ss = block_sum_d(ss);
        double r = 1.0 / sqrt(ss / (double)dim + (double)eps);
        for (int j = threadIdx.x; j < dim; j += NORM_THREADS) {
            double t = (double)xr[j] * r;
            if (w) t *= (double)w[j];
            yr[j] = (float)t;
        }
    }
}

/* [NORM-2] x: [n_rows, dim] in place, no weight; official: every step a bf16 tensor op.
 * [NORM-2b] rows >= body take PyTorch's CPU scalar-tail rsqrt: sqrt rounded to bf16 first. */
__global__ void rmsnorm_head_kernel(float *x, int dim, float eps, int official, int64_t body)
{
    float *xr = x + (int64_t)blockIdx.x * dim;
    if (official) {
        float tot = block_torch_sum_squares(xr, dim, 1);   /* [NUM-8], bf16 squares */
        float m = d_round_bf16(tot / (float)dim);
        m = d_round_bf16(m + eps);
        float sq = sqrtf(m);
        if ((int64_t)blockIdx.x >= body) sq = d_round_bf16(sq);
        float r = d_round_bf16(1.0f / sq);
        __syncthreads();
        for (int j = threadIdx.x; j < dim; j += NORM_THREADS) xr[j] = d_round_bf16(xr[j] * r);
    } else {
        double ss = 0.0;
        for (int j = threadIdx.x; j < dim; j += NORM_THREADS) ss += (double)xr[j] * (double)xr[j];
        ss = block_sum_d(ss);
        double r = 1.0 / sqrt(ss / (double)dim + (double)eps);
        __syncthreads();
        for (int j = threadIdx.x; j < dim; j += NORM_THREADS) xr[j] = (float)((double)xr[j] * r);
    }
}

/* [NORM-1] device x, y: [n_rows, dim] (may alias), w: [dim] or NULL */
extern "C" int launch_rmsnorm(const float *dx, const float *dw, float *dy, int64_t n_rows,
                              int dim, float eps, dsv4_numerics num)
{
    if (n_rows <= 0) return 0;
    rmsnorm_kernel<<<(unsigned)n_rows, NORM_THREADS>>>(dx, dw, dy, dim, eps, num == DSV4_OFFICIAL);
    CK_LAUNCH("rmsnorm");
    return 0;
}

/* [NORM-2] device x: [n_rows, dim] in place */
extern "C" int launch_rmsnorm_head(float *dx, int64_t n_rows, int dim, float eps, dsv4_numerics num)
{
    if (n_rows <= 0) return 0;
    int64_t body = rmsnorm_head_body(n_rows);                 /* [NORM-2b], ref/norm.c */
    rmsnorm_head_kernel<<<(unsigned)n_rows, NORM_THREADS>>>(dx, dim, eps, num == DSV4_OFFICIAL, body);
    CK_LAUNCH("rmsnorm_head");
    return 0;
}

/* [NORM-1] ref/norm.c: rmsnorm on the GPU. x, y: [n_rows, dim] host (may alias). */
extern "C" int cuda_rmsnorm(const float *x, const float *w, float *y, int64_t n_rows, int dim,
                            float eps, dsv4_numerics num)
{
    cuda_count("rmsnorm");
    size_t bytes = (size_t)(n_rows * dim) * sizeof(float);
    float *dx = (float *)cuda_scratch(0, bytes);
    float *dw = w ? (float *)cuda_scratch(1, (size_t)dim * sizeof(float)) : NULL;
    if (!dx || (w && !dw)) return -1;
    if (cuda_up(dx, x, bytes) || (w && cuda_up(dw, w, (size_t)dim * sizeof(float)))) return -1;
    if (launch_rmsnorm(dx, dw, dx, n_rows, dim, eps, num)) return -1;
    return cuda_down(y, dx, bytes);
}

/* [NORM-2] ref/norm.c: rmsnorm_head on the GPU. x: [n_rows, dim] host, in place. */
extern "C" int cuda_rmsnorm_head(float *x, int64_t n_rows, int dim, float eps, dsv4_numerics num)
{
    cuda_count("rmsnorm_head");
    size_t bytes = (size_t)(n_rows * dim) * sizeof(float);
    float *dx = (float *)cuda_scratch(0, bytes);
    if (!dx) return -1;
    if (cuda_up(dx, x, bytes)) return -1;
    if (launch_rmsnorm_head(dx, n_rows, dim, eps, num)) return -1;
    return cuda_down(x, dx, bytes);
}
