/* moe.cu — one SwiGLU expert of the V4 MoE on the GPU (spec/moe.md [MOE-3]; the reference
 * is ref/moe.c: moe_expert_forward). The router (a [n_experts] fp32 GEMM per token, then
 * top-k of a handful of scores) and the combine stay on the host; the experts' GEMMs are
 * cuda/linear.cu (FP8 / FP4 / bf16 weights dequantized in the kernel).
 *
 *   g = GEMM(w1, a), u = GEMM(w3, a)         launch_linear (bf16 outputs in official mode)
 *   swiglu_kernel: grid ceil(n*inter/256), block 256, one element per thread:
 *     u = clamp(u, -lim, lim); g = min(g, lim) (pitfall 17: gate clamped from above only);
 *     h = silu(g) * u; routed: h = rw * h; h = bf16(h)
 *     each step as ref: computed in double and rounded to fp32 (official), or double (exact)
 *   y = GEMM(w2, h)                          launch_linear */
#include "cuda_common.cuh"
#include "kernels.h"

/* the fp32 rounding of one official fp32 operation (identity in exact mode), as ref/moe.c fl() */
__device__ __forceinline__ double d_fl(double x, int official) { return official ? (double)(float)x : x; }

/* [MOE-3] g, u: [n, inter] (GEMM outputs), rw: [n] or NULL -> g = bf16(rw * silu(min(g, l)) *
 * clamp(u, -l, l)) in place (pitfall 17: the gate is clamped from above only) */
__global__ void swiglu_kernel(float *g, const float *u, const float *rw, int64_t n, int64_t inter,
                              double limit, int official)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * inter) return;
    double gv = g[i], uv = u[i];
    if (limit > 0.0) {
        double lim = d_fl(limit, official);
        if (uv > lim) uv = lim;
        if (uv < -lim) uv = -lim;
        if (gv > lim) gv = lim;
    }
    double silu = d_fl(gv / (1.0 + exp(-gv)), official);
    double h = d_fl(silu * uv, official);
    if (rw) h = d_fl((double)rw[i / inter] * h, official);
    g[i] = official ? d_round_bf16((float)h) : (float)h;
}

/* [MOE-3] the SwiGLU step on device rows: g, u: [n, inter], rw: [n] or NULL (device) */
extern "C" int launch_swiglu(float *dg, const float *du, const float *drw, int64_t n, int64_t inter,
                             double swiglu_limit, dsv4_numerics num)
{
    if (n <= 0) return 0;
    swiglu_kernel<<<(unsigned)((n * inter + 255) / 256), 256>>>(dg, du, drw, n, inter, swiglu_limit,
                                                                num == DSV4_OFFICIAL);
    CK_LAUNCH("swiglu");
    return 0;
}

/* [MOE-3] ref/moe.c: moe_expert_forward on the GPU. a: [n, dim]; rw: [n] or NULL;
 * y: [n, dim] host. */
extern "C" int cuda_moe_expert_forward(const moe_expert *e, int64_t dim, int64_t inter,
                                       double swiglu_limit, const float *a, const float *rw,
                                       int64_t n, float *y, dsv4_numerics num)
{
    cuda_count("moe_expert");
    if (n <= 0) return 0;
    float *da = (float *)cuda_scratch(0, (size_t)(n * dim) * 4);
    float *dg = (float *)cuda_scratch(1, (size_t)(n * inter) * 4);
    float *du = (float *)cuda_scratch(2, (size_t)(n * inter) * 4);
    float *drw = rw ? (float *)cuda_scratch(3, (size_t)n * 4) : NULL;
    float *dy = (float *)cuda_scratch(4, (size_t)(n * dim) * 4);
    if (!da || !dg || !du || (rw && !drw) || !dy) return -1;
    if (cuda_up(da, a, (size_t)(n * dim) * 4) || (rw && cuda_up(drw, rw, (size_t)n * 4))) return -1;
    if (launch_linear(&e->w1, da, dg, n, 0, num) || launch_linear(&e->w3, da, du, n, 0, num)) return -1;
    if (launch_swiglu(dg, du, drw, n, inter, swiglu_limit, num)) return -1;
    if (launch_linear(&e->w2, dg, dy, n, 0, num)) return -1;
    return cuda_down(y, dy, (size_t)(n * dim) * 4);
}
