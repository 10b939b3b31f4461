/* mhc.cu — HCPost of the manifold-constrained hyper-connections (spec/mhc.md [MHC-4]; the
 * reference is ref/mhc.c: mhc_post). HCPre's mixes are an fp32 GEMM (cuda/linear.cu through
 * mhc_mixes) followed by a per-token Sinkhorn of a 4x4 matrix, which stays on the host.
 *
 * y_k = bf16( f32(post_k * o) + sum_j f32(comb[j][k] * res_j) )   (contraction over the ROW
 * index j of comb: pitfall 15), every step one fp32 operation in ref's order (official), or
 * double (exact). Bit-identical to ref: same operations, same order, no FMA (-fmad=false).
 * Launch shape: grid (ceil(dim/256), hc, n), block 256: thread -> one (token, k, d). */
#include "cuda_common.cuh"
#include "kernels.h"

template <typename T>
__global__ void mhc_post_kernel(const float *o, const float *res, const float *post,
                                const float *comb, int hc, int64_t dim, float *y, int official)
{
    int64_t d = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int k = blockIdx.y;
    int64_t t = blockIdx.z;
    if (d >= dim) return;
    const float *rt = res + t * hc * dim, *ct = comb + t * hc * hc;
    T s = 0;
    for (int j = 0; j < hc; j++) s = s + (T)ct[j * hc + k] * (T)rt[j * dim + d];
    T v = (T)post[t * hc + k] * (T)o[t * dim + d] + s;
    y[(t * hc + k) * dim + d] = official ? d_round_bf16((float)v) : (float)v;
}

/* [MHC-4] device o: [n, dim], res: [n, hc, dim], post: [n, hc], comb: [n, hc, hc] -> y */
extern "C" int launch_mhc_post(const float *o, const float *res, const float *post,
                               const float *comb, int64_t n, int hc, int64_t dim, float *y,
                               dsv4_numerics num)
{
    if (n <= 0) return 0;
    dim3 grid((unsigned)((dim + 255) / 256), (unsigned)hc, (unsigned)n);
    if (num == DSV4_OFFICIAL) mhc_post_kernel<float><<<grid, 256>>>(o, res, post, comb, hc, dim, y, 1);
    else mhc_post_kernel<double><<<grid, 256>>>(o, res, post, comb, hc, dim, y, 0);
    CK_LAUNCH("mhc_post");
    return 0;
}

/* [MHC-4] ref/mhc.c: mhc_post on the GPU. o: [n, dim]; res: [n, hc, dim]; post: [n, hc];
 * comb: [n, hc, hc] host -> y: [n, hc, dim]. */
extern "C" int cuda_mhc_post(const float *o, const float *res, const float *post,
                             const float *comb, int64_t n, int hc, int64_t dim, float *y,
                             dsv4_numerics num)
{
    cuda_count("mhc_post");
    size_t ob = (size_t)(n * dim) * 4, rb = (size_t)(n * hc * dim) * 4;
    size_t pb = (size_t)(n * hc) * 4, cb = (size_t)(n * hc * hc) * 4;
    float *d_o = (float *)cuda_scratch(0, ob), *d_r = (float *)cuda_scratch(1, rb);
    float *d_p = (float *)cuda_scratch(2, pb), *d_c = (float *)cuda_scratch(3, cb);
    float *d_y = (float *)cuda_scratch(4, rb);
    if (!d_o || !d_r || !d_p || !d_c || !d_y) return -1;
    if (cuda_up(d_o, o, ob) || cuda_up(d_r, res, rb) || cuda_up(d_p, post, pb) || cuda_up(d_c, comb, cb))
        return -1;
    if (launch_mhc_post(d_o, d_r, d_p, d_c, n, hc, dim, d_y, num)) return -1;
    return cuda_down(y, d_y, rb);
}
