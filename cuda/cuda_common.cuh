/* cuda_common.cuh — what every kernel file of cuda/ shares: error checks, the device copies
 * of the official number formats (spec/numerics.md, the same rules as ref/numerics.c), warp
 * reductions, and the host-side helpers of common.cu (scratch buffers, the weight cache).
 *
 * Numerics contract (spec/cuda.md): every official rounding point of ref/ happens at the same
 * place here, with the same rule: bf16 via __float2bfloat16_rn, e4m3 via the same RNE-with-
 * saturation as e4m3_from_float, power-of-two scales from the fp32 bits. Only accumulation
 * ORDER differs (fp32 sums in a different order, fmaf in dot products), which
 * spec/tolerances.md allows ("CUDA vs reference"). The build uses -fmad=false, so no
 * multiply-add is contracted unless a kernel writes fmaf() itself (dot products only). */
#ifndef DSV4_CUDA_COMMON_CUH
#define DSV4_CUDA_COMMON_CUH

#include <cstdint>
#include <cstdio>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>

extern "C" {
#include "dsv4ref.h"
}

/* ---- error checks ---- */

/* Every CUDA call goes through CK: on failure it records a one-line error and returns -1
 * from the calling host function (functions of cuda/ return 0 ok / -1 error like ref/). */
#define CK(call)                                                                            \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        if (e_ != cudaSuccess)                                                              \
            return dsv4_set_error("cuda: %s failed: %s (%s:%d)", #call,                    \
                                  cudaGetErrorString(e_), __FILE__, __LINE__);             \
    } while (0)
/* after a launch: the launch error, then (debug builds: DSV4_CUDA_SYNC) the kernel's */
#define CK_LAUNCH(what) CK(cuda_check_launch(what))

/* ---- host helpers (common.cu) ---- */
cudaError_t cuda_check_launch(const char *what);
/* grow-only device scratch buffer number `slot` (0..15) of at least `bytes` */
void *cuda_scratch(int slot, size_t bytes);
/* the device copy of `bytes` bytes at host address `host` (uploaded on first use; weights
 * are immutable views into the weight source, so the host pointer is the key) */
const void *cuda_cached(const void *host, size_t bytes);
/* upload / download helpers returning 0 / -1 */
int cuda_up(void *dev, const void *host, size_t bytes);
int cuda_down(void *host, const void *dev, size_t bytes);
/* the current device's multiprocessor count (queried once; 132, the H200's, if the query
 * fails): grid sizing of the one-wave and split-K launches */
int cuda_sm_count(void);
/* counts calls of each ref-interface wrapper (printed by the CLI with DSV4_CUDA_STATS=1) */
void cuda_count(const char *name);

/* ---- bf16 [NUM-2] ---- */
__device__ __forceinline__ float d_round_bf16(float x)
{
    return __bfloat162float(__float2bfloat16_rn(x));
}

/* ---- e4m3fn [NUM-3]: RNE, |x| > 448 saturates, NaN -> 0x7F (as e4m3_from_float) ---- */
__device__ __forceinline__ uint8_t d_e4m3_from_float(float x)
{
    return (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
}
__device__ __forceinline__ float d_e4m3_to_float(uint8_t c)
{
    __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)c, __NV_E4M3);
    return __half2float(__half(h));
}

/* ---- e8m0 [NUM-4] ---- */
__device__ __forceinline__ float d_e8m0_to_float(uint8_t e)
{
    if (e == 0xFF) return __int_as_float(0x7FC00000);
    if (e == 0) return __int_as_float(0x00400000);   /* 2^-127, an fp32 subnormal */
    return __int_as_float((int)e << 23);
}

/* ---- e2m1 [NUM-5]: nearest grid value of |x| clamped to 6, ties to the even code ---- */
__device__ __forceinline__ float d_e2m1_to_float(uint8_t code)
{
    const float grid[8] = { 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f };
    float v = grid[code & 7];
    return (code & 8) ? -v : v;
}
__device__ __forceinline__ uint8_t d_e2m1_from_float(float x)
{
    if (x != x) return 0;
    uint8_t sign = signbit(x) ? 8 : 0;
    float a = fabsf(x);
    uint8_t c;
    if (a <= 0.25f) c = 0;          /* tie 0.25 -> code 0 (even) */
    else if (a < 0.75f) c = 1;
    else if (a <= 1.25f) c = 2;     /* ties 0.75, 1.25 -> code 2 */
    else if (a < 1.75f) c = 3;
    else if (a <= 2.5f) c = 4;      /* ties 1.75, 2.5 -> code 4 */
    else if (a < 3.5f) c = 5;
    else if (a <= 5.0f) c = 6;      /* ties 3.5, 5 -> code 6 */
    else c = 7;
    return (uint8_t)(sign | c);
}

/* ---- power-of-two scales [NUM-6] ---- */
__device__ __forceinline__ int d_ceil_log2_bits(float v)
{
    uint32_t u = (uint32_t)__float_as_int(v) & 0x7FFFFFFFu;
    int ex = (int)(u >> 23);
    uint32_t man = u & 0x7FFFFFu;
    if (ex == 0) {
        if (man == 0) return -150;
        int k = 0;
        while (((uint32_t)1 << k) < man) k++;
        return -149 + k;
    }
    return ex - 127 + (man != 0 ? 1 : 0);
}
__device__ __forceinline__ float d_pow2f(int k)
{
    return (float)ldexp(1.0, k);
}
__device__ __forceinline__ float d_fp8_pow2_scale(float amax)
{
    const float floor_ = 1e-4f;
    const float inv = (float)(1.0 / 448.0);
    float a = amax > floor_ ? amax : floor_;
    return d_pow2f(d_ceil_log2_bits(__fmul_rn(a, inv)));
}
__device__ __forceinline__ float d_fp4_pow2_scale(float amax)
{
    const float floor_ = 6.0f * 0x1p-126f;
    const float inv = (float)(1.0 / 6.0);
    float a = amax > floor_ ? amax : floor_;
    return d_pow2f(d_ceil_log2_bits(__fmul_rn(a, inv)));
}
__device__ __forceinline__ float d_clampf(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* ---- warp reductions (all lanes get the result) ---- */
__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

#endif
