/* common.cu — host-side plumbing of cuda/: device discovery, grow-only scratch buffers, the
 * weight cache (device copies keyed by host pointer), call counters, and the float <-> bf16
 * conversion kernel the tensor-core paths use.
 * Launch shape (f32_to_bf16): grid ceil(n/256), block 256, one element per thread. */
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include "cuda_common.cuh"
#include "kernels.h"

/* ---- device discovery ---- */

extern "C" int cuda_available(const char **why)
{
    static int known = -1;
    static char reason[160];
    if (known < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) {
            snprintf(reason, sizeof reason, "no usable CUDA device (cudaGetDeviceCount: %s)",
                     cudaGetErrorString(e));
            known = 0;
        } else if (n == 0) {
            snprintf(reason, sizeof reason, "no CUDA device (cudaGetDeviceCount returned 0)");
            known = 0;
        } else {
            known = 1;
            reason[0] = 0;
        }
    }
    if (why) *why = reason;
    return known;
}

/* device name, compute capability, SM count, memory and L2 size into buf: [n] */
extern "C" void cuda_describe(char *buf, size_t n)
{
    cudaDeviceProp p;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) {
        snprintf(buf, n, "unknown device");
        return;
    }
    snprintf(buf, n, "%s, sm_%d%d, %d SMs, %.1f GiB, L2 %.0f MB", p.name, p.major, p.minor,
             p.multiProcessorCount, (double)p.totalGlobalMem / (1 << 30),
             (double)p.l2CacheSize / 1e6);
}

/* the launch error of the last kernel (and, built with DSV4_CUDA_SYNC, its run-time error) */
cudaError_t cuda_check_launch(const char *what)
{
    cudaError_t e = cudaGetLastError();
#ifdef DSV4_CUDA_SYNC
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
#endif
    if (e != cudaSuccess) fprintf(stderr, "cuda: kernel %s: %s\n", what, cudaGetErrorString(e));
    return e;
}

/* ---- scratch ---- */

static void *g_scratch[16];
static size_t g_scratch_bytes[16];

/* grow-only device buffer `slot` (0..15) of at least `bytes` (25% headroom); NULL + error */
void *cuda_scratch(int slot, size_t bytes)
{
    if (slot < 0 || slot >= 16) return NULL;
    if (bytes == 0) bytes = 16;
    if (g_scratch_bytes[slot] < bytes) {
        if (g_scratch[slot]) cudaFree(g_scratch[slot]);
        g_scratch[slot] = NULL;
        g_scratch_bytes[slot] = 0;
        size_t want = bytes + bytes / 4;   /* some headroom: fewer re-allocations */
        if (cudaMalloc(&g_scratch[slot], want) != cudaSuccess) {
            dsv4_set_error("cuda: cannot allocate %zu bytes of scratch", want);
            return NULL;
        }
        g_scratch_bytes[slot] = want;
    }
    return g_scratch[slot];
}

/* ---- weight cache ---- */

struct cached { void *dev; size_t bytes; };
static std::map<const void *, cached> g_cache;

/* the device copy of host[0..bytes) keyed by the host address; uploaded on first use (a
 * larger view of the same address re-uploads). Weights only: their host memory never changes. */
const void *cuda_cached(const void *host, size_t bytes)
{
    auto it = g_cache.find(host);
    if (it != g_cache.end() && it->second.bytes >= bytes) return it->second.dev;
    if (it != g_cache.end()) {                 /* same address, larger view: re-upload */
        cudaFree(it->second.dev);
        g_cache.erase(it);
    }
    void *d = NULL;
    if (cudaMalloc(&d, bytes) != cudaSuccess) {
        dsv4_set_error("cuda: cannot allocate %zu bytes for a weight", bytes);
        return NULL;
    }
    if (cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
        cudaFree(d);
        dsv4_set_error("cuda: weight upload of %zu bytes failed", bytes);
        return NULL;
    }
    g_cache[host] = cached{ d, bytes };
    return d;
}

/* host -> device copy of `bytes` bytes; 0 / -1 */
int cuda_sm_count(void)
{
    static int c = 0;
    if (c <= 0) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || c <= 0)
            c = 132;
    }
    return c;
}

int cuda_up(void *dev, const void *host, size_t bytes)
{
    if (bytes == 0) return 0;
    CK(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
    return 0;
}

/* device -> host copy of `bytes` bytes; 0 / -1 (also where a kernel error surfaces) */
int cuda_down(void *host, const void *dev, size_t bytes)
{
    if (bytes == 0) return 0;
    CK(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost));
    return 0;
}

/* frees every cached weight and scratch buffer (tests: before host addresses are reused) */
extern "C" void cuda_release(void)
{
    for (auto &kv : g_cache) cudaFree(kv.second.dev);
    g_cache.clear();
    for (int i = 0; i < 16; i++) {
        if (g_scratch[i]) cudaFree(g_scratch[i]);
        g_scratch[i] = NULL;
        g_scratch_bytes[i] = 0;
    }
}

/* ---- call counters ---- */

static std::map<std::string, long> g_counts;

/* one more call of the wrapper `name` */
void cuda_count(const char *name)
{
    g_counts[name]++;
}

/* "cuda backend calls: name=count ..." on stderr */
extern "C" void cuda_print_counts(void)
{
    fprintf(stderr, "cuda backend calls:");
    for (auto &kv : g_counts) fprintf(stderr, " %s=%ld", kv.first.c_str(), kv.second);
    fprintf(stderr, "\n");
}

/* ---- float -> bf16 (exact for values that are already bf16) ---- */

__global__ void f32_to_bf16_kernel(const float *x, __nv_bfloat16 *y, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __float2bfloat16_rn(x[i]);
}

/* x: [n] float (bf16 values) -> y: [n] bf16, device pointers */
extern "C" int launch_f32_to_bf16(const float *dx, void *dy_bf16, int64_t n)
{
    if (n == 0) return 0;
    f32_to_bf16_kernel<<<(unsigned)((n + 255) / 256), 256>>>(dx, (__nv_bfloat16 *)dy_bf16, n);
    CK_LAUNCH("f32_to_bf16");
    return 0;
}
