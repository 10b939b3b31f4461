/* norm.cu — RMSNorm and the V4 per-head query norm (spec/norm.md [NORM-1] [NORM-2]; the
 * reference is ref/norm.c: rmsnorm, rmsnorm_head).
 *
 * Launch shape: grid n_rows, block 256; one block per row: each thread sums the squares of
 * dims j = tid, tid+256, ..., a block tree reduction gives the row's sum, then each thread
 * writes its dims.
 * Numerics (official): squares f32 (rmsnorm) or bf16(x^2) (rmsnorm_head), summed in double
 * in tree order and rounded once to fp32 (as ref; only the double order differs); then the same fp32 / bf16 steps as
 * ref: v = f32(ss) / dim, r = 1 / sqrtf(v + eps), y = bf16(w * (x * r)).
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

/* [NORM-1] x, y: [n_rows, dim] (may alias); w: [dim] or NULL */
__global__ void rmsnorm_kernel(const float *x, const float *w, float *y, int dim, float eps,
                               int official)
{
    const float *xr = x + (int64_t)blockIdx.x * dim;
    float *yr = y + (int64_t)blockIdx.x * dim;
    if (official) {
        double ss = 0.0;   /* f32 squares summed in double: ~exact, one fp32 rounding */
        for (int j = threadIdx.x; j < dim; j += NORM_THREADS) ss += (double)(xr[j] * xr[j]);
        float tot = (float)block_sum_d(ss);
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
        double ss = 0.0;
        for (int j = threadIdx.x; j < dim; j += NORM_THREADS) ss += (double)d_round_bf16(xr[j] * xr[j]);
        float tot = (float)block_sum_d(ss);
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
