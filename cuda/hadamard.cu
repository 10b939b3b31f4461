/* hadamard.cu — the Walsh-Hadamard rotation (spec/hadamard.md [HAD-1]; the reference is
 * ref/hadamard.c: hadamard) and the FP8 / FP4 block simulations applied after it
 * (spec/numerics.md [NUM-7]; ref/numerics.c: fp8_sim_block, fp4_sim_block).
 *
 * hadamard_kernel: grid n_rows, block min(n/2, 512); the row lives in shared memory as double;
 *   stage h pairs (j, j+h) exactly as the reference's loops (thread p -> pair p of the stage),
 *   so every element sees the same additions in the same order: bit-identical to ref.
 *   official: out = bf16(f32(t) * f32(n^-1/2)); exact: f32(t * n^-1/2). n <= 4096.
 * block_sim_kernel<FP4>: grid n_rows, block = number of sim blocks in a row (<= 1024); one
 *   thread per block: amax, power-of-two scale from the fp32 bits, encode, decode, bf16. */
#include "cuda_common.cuh"
#include "kernels.h"

#define HAD_MAX 4096

/* [HAD-1] x: [n_rows, n] in place; one block per row; t: the row in shared double */
__global__ void hadamard_kernel(float *x, int n, float scale32, double scale64, int official)
{
    __shared__ double t[HAD_MAX];
    float *xr = x + (int64_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) t[i] = (double)xr[i];
    __syncthreads();
    for (int h = 1; h < n; h *= 2) {
        for (int p = threadIdx.x; p < n / 2; p += blockDim.x) {
            int j = (p / h) * 2 * h + p % h;
            double a = t[j], b = t[j + h];
            t[j] = a + b;
            t[j + h] = a - b;
        }
        __syncthreads();
    }
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        xr[i] = official ? d_round_bf16((float)t[i] * scale32) : (float)(t[i] * scale64);
}

template <int FP4>
/* [NUM-7] x: [n_rows, stride], the first n values of each row in blocks of `block`: one
 * thread per block: amax, power-of-two scale, encode (clamped), decode, bf16 */
__global__ void block_sim_kernel(float *x, int64_t stride, int n, int block)
{
    int b0 = threadIdx.x * block;
    if (b0 >= n) return;
    float *xb = x + (int64_t)blockIdx.x * stride + b0;
    int len = n - b0 < block ? n - b0 : block;
    float amax = 0.0f;
    for (int i = 0; i < len; i++) amax = fmaxf(amax, fabsf(xb[i]));
    float s = FP4 ? d_fp4_pow2_scale(amax) : d_fp8_pow2_scale(amax);
    for (int i = 0; i < len; i++) {
        float v = xb[i] / s;
        float q = FP4 ? d_e2m1_to_float(d_e2m1_from_float(d_clampf(v, -6.0f, 6.0f)))
                      : d_e4m3_to_float(d_e4m3_from_float(d_clampf(v, -448.0f, 448.0f)));
        xb[i] = d_round_bf16(q * s);
    }
}

/* [HAD-1] device x: [n_rows, n]; n a power of two <= 4096 (else an error) */
extern "C" int launch_hadamard(float *dx, int64_t n_rows, int n, dsv4_numerics num)
{
    if (n <= 0 || n > HAD_MAX || (n & (n - 1)) != 0)
        return dsv4_set_error("cuda hadamard: size %d is not a power of two <= %d", n, HAD_MAX);
    if (n_rows <= 0) return 0;
    int threads = n / 2 < 512 ? (n / 2 > 0 ? n / 2 : 1) : 512;
    hadamard_kernel<<<(unsigned)n_rows, threads>>>(dx, n, (float)(1.0 / sqrt((double)n)),
                                                   1.0 / sqrt((double)n), num == DSV4_OFFICIAL);
    CK_LAUNCH("hadamard");
    return 0;
}

/* [NUM-7] FP8 e4m3 round trip of x[:, 0:n] in blocks (<= 1024 blocks per row) */
extern "C" int launch_fp8_sim(float *dx, int64_t n_rows, int64_t stride, int n, int block)
{
    int nb = (n + block - 1) / block;
    if (n_rows <= 0 || n <= 0) return 0;
    if (nb > 1024) return dsv4_set_error("cuda fp8_sim: %d blocks per row > 1024", nb);
    block_sim_kernel<0><<<(unsigned)n_rows, nb>>>(dx, stride, n, block);
    CK_LAUNCH("fp8_sim");
    return 0;
}

/* [NUM-7] FP4 e2m1 round trip of x[:, 0:n] in blocks (<= 1024 blocks per row) */
extern "C" int launch_fp4_sim(float *dx, int64_t n_rows, int64_t stride, int n, int block)
{
    int nb = (n + block - 1) / block;
    if (n_rows <= 0 || n <= 0) return 0;
    if (nb > 1024) return dsv4_set_error("cuda fp4_sim: %d blocks per row > 1024", nb);
    block_sim_kernel<1><<<(unsigned)n_rows, nb>>>(dx, stride, n, block);
    CK_LAUNCH("fp4_sim");
    return 0;
}

/* [HAD-1] ref/hadamard.c: hadamard on the GPU. x: [n_rows, n] host, in place. */
extern "C" int cuda_hadamard(float *x, int64_t n_rows, int n, dsv4_numerics num)
{
    cuda_count("hadamard");
    size_t bytes = (size_t)(n_rows * n) * sizeof(float);
    float *dx = (float *)cuda_scratch(0, bytes);
    if (!dx) return -1;
    if (cuda_up(dx, x, bytes) || launch_hadamard(dx, n_rows, n, num)) return -1;
    return cuda_down(x, dx, bytes);
}
