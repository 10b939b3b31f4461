/* test_kernels.cu — the CUDA kernel lab (spec/cuda.md).
 *
 *   build/cuda/test_kernels            every kernel against its ref/ function on fresh random
 *                                      inputs; prints one line per check with the metric and
 *                                      the limit of spec/tolerances.md; exit 1 on a failure.
 *                                      No GPU: prints why and exits 0 (skipped).
 *   build/cuda/test_kernels --bench    per-kernel time, GB/s and FLOP/s at V4-Flash decode
 *                                      shapes, batch 1 and 64 (tools/bench_cuda.sh).
 *
 * Metrics: rel-L2 = ||got - want|| / ||want|| over the tensor; official-mode limit 1e-2
 * ("CUDA vs reference, official mode" = the golden rows), exact mode 1e-5; index sets by
 * mean Jaccard >= 0.98; the bit-exact kernels (number formats, Hadamard, mHC post) are
 * checked for identity. Outputs are poisoned (NaN) before each GPU call. */
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <algorithm>
#include "cuda_common.cuh"
#include "kernels.h"

extern "C" {
#include "linear.h"
#include "norm.h"
#include "numerics.h"
#include "hadamard.h"
#include "topk.h"
#include "sparse_attention.h"
#include "mhc.h"
void sparse_attention_allow_split(int on);
void linear_use_tensor_cores(int on);
}

/* ---- helpers ---- */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd_u64(void)
{
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return g_rng;
}
static float rnd_uniform(void) { return (float)((rnd_u64() >> 11) * (1.0 / 9007199254740992.0)); }
static float rnd_normal(void)
{
    float u1 = rnd_uniform() + 1e-12f, u2 = rnd_uniform();
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}
static std::vector<float> randn(size_t n, float scale = 1.0f)
{
    std::vector<float> v(n);
    for (auto &x : v) x = rnd_normal() * scale;
    return v;
}
static void to_bf16(std::vector<float> &v) { for (auto &x : v) x = round_bf16(x); }
static void poison(std::vector<float> &v) { for (auto &x : v) x = NAN; }

static int g_fail = 0, g_checks = 0;
static int g_quick = 0;   /* --quick: smaller cases (compute-sanitizer runs) */

static double rel_l2(const float *got, const float *want, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)want[i];
        if (std::isnan(got[i]) != std::isnan(want[i])) return INFINITY;
        if (!std::isnan(got[i])) { num += d * d; den += (double)want[i] * want[i]; }
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void check_rel(const char *what, const float *got, const float *want, size_t n, double limit)
{
    double e = rel_l2(got, want, n);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) same += memcmp(&got[i], &want[i], 4) == 0;
    bool ok = e <= limit;
    g_checks++;
    if (!ok) g_fail++;
    printf("%s %-46s rel-L2 %.2e (limit %.0e)  bit-identical %5.1f%%\n", ok ? "ok  " : "FAIL", what, e,
           limit, 100.0 * same / (n ? n : 1));
}

static void check_true(const char *what, bool ok, const char *detail)
{
    g_checks++;
    if (!ok) g_fail++;
    printf("%s %-46s %s\n", ok ? "ok  " : "FAIL", what, detail);
}

static double lim_of(dsv4_numerics num) { return num == DSV4_OFFICIAL ? 1e-2 : 1e-5; }
static const char *nm(dsv4_numerics num) { return num == DSV4_OFFICIAL ? "official" : "exact"; }

/* ---- number formats: bit-identical ---- */

__global__ void formats_kernel(const float *x, int n, uint8_t *e4, uint8_t *e2, float *s8, float *s4)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    e4[i] = d_e4m3_from_float(x[i]);
    e2[i] = d_e2m1_from_float(x[i]);
    s8[i] = d_fp8_pow2_scale(fabsf(x[i]));
    s4[i] = d_fp4_pow2_scale(fabsf(x[i]));
}

static void test_formats(void)
{
    int n = g_quick ? 1 << 17 : 1 << 20;
    std::vector<float> x(n);
    for (int i = 0; i < n; i++) {
        uint32_t u = (uint32_t)rnd_u64();
        float v;
        if (i < 65536) { u = (uint32_t)i << 16; }                 /* every bf16 */
        memcpy(&v, &u, 4);
        if (i >= 65536) v = rnd_normal() * powf(2.0f, (float)(int)(rnd_u64() % 40) - 20.0f);
        if (std::isnan(v)) v = 1.0f;
        x[i] = v;
    }
    float *dx, *ds8, *ds4; uint8_t *de4, *de2;
    cudaMalloc(&dx, n * 4); cudaMalloc(&ds8, n * 4); cudaMalloc(&ds4, n * 4);
    cudaMalloc(&de4, n); cudaMalloc(&de2, n);
    cudaMemcpy(dx, x.data(), n * 4, cudaMemcpyHostToDevice);
    formats_kernel<<<(n + 255) / 256, 256>>>(dx, n, de4, de2, ds8, ds4);
    std::vector<uint8_t> e4(n), e2(n); std::vector<float> s8(n), s4(n);
    cudaMemcpy(e4.data(), de4, n, cudaMemcpyDeviceToHost);
    cudaMemcpy(e2.data(), de2, n, cudaMemcpyDeviceToHost);
    cudaMemcpy(s8.data(), ds8, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(s4.data(), ds4, n * 4, cudaMemcpyDeviceToHost);
    long bad4 = 0, bad2 = 0, bads = 0;
    for (int i = 0; i < n; i++) {
        if (e4[i] != e4m3_from_float(x[i])) bad4++;
        if (std::isfinite(x[i]) && e2[i] != e2m1_from_float(x[i]) &&
            !(fabsf(x[i]) <= 0.25f && (e2[i] & 7) == 0 && (e2m1_from_float(x[i]) & 7) == 0)) bad2++;
        if (std::isfinite(x[i]) && (s8[i] != fp8_pow2_scale(fabsf(x[i])) || s4[i] != fp4_pow2_scale(fabsf(x[i])))) bads++;
    }
    char buf[160];
    snprintf(buf, sizeof buf, "%d values (all bf16 + random): e4m3 %ld, e2m1 %ld, scales %ld differ", n, bad4, bad2, bads);
    check_true("formats: e4m3 / e2m1 / pow2 scales", bad4 == 0 && bad2 == 0 && bads == 0, buf);
    cudaFree(dx); cudaFree(ds8); cudaFree(ds4); cudaFree(de4); cudaFree(de2);
}

/* ---- linear ---- */

struct wstore {
    dsv4_weight w;
    std::vector<uint8_t> data, scale;
};

/* kind: 0 F32, 1 BF16, 2 FP8 + e8m0 128x128 block scales, 3 FP4 + e8m0 per 32, 4 FP8 with
 * F32 block scales (the e8m0 scales of kind 2 times a random factor in [1, 1.5): not powers of 2) */
static void make_weight(wstore &s, int kind, int64_t R, int64_t K)
{
    if (kind == 4) {
        make_weight(s, 2, R, K);
        std::vector<uint8_t> f32s(s.scale.size() * 4);
        for (size_t i = 0; i < s.scale.size(); i++) {
            float v = e8m0_to_float(s.scale[i]) * (1.0f + 0.5f * rnd_uniform());
            memcpy(&f32s[i * 4], &v, 4);
        }
        s.scale.swap(f32s);
        s.w.scale = s.scale.data();
        s.w.scale_dtype = DSV4_F32;
        return;
    }
    memset(&s.w, 0, sizeof s.w);
    s.w.rows = R; s.w.cols = K; s.w.name = "test weight";
    if (kind == 0 || kind == 1) {           /* F32 / BF16 */
        s.data.resize((size_t)(R * K) * (kind == 0 ? 4 : 2));
        for (int64_t i = 0; i < R * K; i++) {
            float v = rnd_normal() * 0.05f;
            if (kind == 0) memcpy(&s.data[i * 4], &v, 4);
            else { uint16_t b = bf16_from_float(v); memcpy(&s.data[i * 2], &b, 2); }
        }
        s.w.dtype = kind == 0 ? DSV4_F32 : DSV4_BF16;
    } else if (kind == 2) {                 /* FP8 + e8m0 128x128 */
        s.data.resize((size_t)(R * K));
        for (auto &b : s.data) { do b = (uint8_t)rnd_u64(); while ((b & 0x7F) == 0x7F); }
        int64_t nb = ((R + 127) / 128) * ((K + 127) / 128);
        s.scale.resize((size_t)nb);
        for (auto &b : s.scale) b = (uint8_t)(118 + rnd_u64() % 4);
        s.w.dtype = DSV4_F8_E4M3; s.w.scale_dtype = DSV4_F8_E8M0;
    } else {                                /* FP4 + e8m0 per 32 */
        s.data.resize((size_t)(R * K / 2));
        for (auto &b : s.data) b = (uint8_t)rnd_u64();
        s.scale.resize((size_t)(R * K / 32));
        for (auto &b : s.scale) b = (uint8_t)(121 + rnd_u64() % 4);
        s.w.dtype = DSV4_U8; s.w.fp4 = 1; s.w.scale_dtype = DSV4_F8_E8M0;
    }
    s.w.data = s.data.data();
    s.w.scale = s.scale.empty() ? NULL : s.scale.data();
}

/* One GEMM case: ref `linear` against cuda_linear with GEMM variant `variant`
 * (linear_use_tensor_cores) on fresh random x (bf16-valued when bf16_x: what the official graph
 * feeds), judged by check_rel at lim_of(num); `what` names the case. */
static void check_linear_case(const char *what, wstore &s, int64_t n, int out_f32, dsv4_numerics num,
                              int variant, bool bf16_x)
{
    int64_t R = s.w.rows, K = s.w.cols;
    std::vector<float> x = randn((size_t)(n * K)), want((size_t)(n * R)), got((size_t)(n * R));
    if (bf16_x) to_bf16(x);
    poison(got);
    linear(&s.w, x.data(), want.data(), n, out_f32, num);
    linear_use_tensor_cores(variant);
    int rc = cuda_linear(&s.w, x.data(), got.data(), n, out_f32, num);
    linear_use_tensor_cores(-1);
    if (rc) check_true(what, false, dsv4_last_error());
    else check_rel(what, got.data(), want.data(), got.size(), lim_of(num));
    cuda_release();   /* the next case's weights may reuse these host addresses */
}

static void test_linear(void)
{
    const char *kn[4] = { "f32", "bf16", "fp8", "fp4" };
    const char *vn[3] = { "", " tc", " mma" };   /* DSV4_GEMM_SIMT, _TC, _MMA */
    for (int kind = 0; kind < 4; kind++)
        for (int out_f32 = 0; out_f32 < 2; out_f32++)
            for (int mi = 0; mi < 2; mi++)
                for (int tc = 0; tc < 3; tc++)
                    for (int64_t n : { (int64_t)11, (int64_t)70 }) {
                        dsv4_numerics num = mi ? DSV4_EXACT : DSV4_OFFICIAL;
                        if (num == DSV4_EXACT && out_f32) continue;
                        /* the tensor-core paths exist for official bf16 / FP8 / FP4 GEMMs */
                        if (tc && (num == DSV4_EXACT || out_f32 || kind == 0)) continue;
                        if (g_quick && n == 70 && !tc) continue;
                        int64_t R = 200, K = 384;
                        wstore s;
                        make_weight(s, kind, R, K);
                        char what[96];
                        snprintf(what, sizeof what, "linear %s out_f32=%d %s%s [%lldx%lld]x%lld", kn[kind], out_f32,
                                 nm(num), vn[tc], (long long)R, (long long)K, (long long)n);
                        check_linear_case(what, s, n, out_f32, num, tc, true);
                    }
}

/* the mma.sync GEMM (linear_mma_kernel) at decode and odd shapes: n = 1, 8, 11, 64, 70 (one,
 * two and four n-tiles per warp, token tails), R not a multiple of 16 / 128 (partial m-tiles
 * and a partial last FP8 scale block), K = 384 (3 units: uneven K slices) and 1024 / 1152
 * (8 / 9 units: eight K slices per block), FP8 with F32 block scales, and K slices forced to 8
 * on 3 units (warps with empty slices: DSV4_CUDA_MMA_WK=8). Against ref `linear`, official. */
static void test_linear_mma(void)
{
    const char *kn[4] = { "f32", "bf16", "fp8", "fp4" };
    struct { int64_t R, K; } shp[3] = { { 200, 384 }, { 200, 1024 }, { 37, 1152 } };
    for (int kind = 1; kind <= 4; kind++)          /* 4: FP8 with F32 block scales */
        for (auto &sh : shp)
            for (int64_t n : { (int64_t)1, (int64_t)8, (int64_t)11, (int64_t)64, (int64_t)70 }) {
                if (g_quick && (n == 8 || n == 70)) continue;
                if (kind == 4 && sh.K != 1024) continue;
                int64_t R = sh.R, K = sh.K;
                wstore s;
                make_weight(s, kind, R, K);
                char what[96];
                snprintf(what, sizeof what, "linear mma %s%s [%lldx%lld]x%lld", kn[kind == 4 ? 2 : kind],
                         kind == 4 ? " f32-scale" : "", (long long)R, (long long)K, (long long)n);
                check_linear_case(what, s, n, 0, DSV4_OFFICIAL, DSV4_GEMM_MMA, true);
            }
    /* eight K slices over three 128-units: five warps of each block have empty slices */
    for (int kind = 1; kind <= 3; kind++) {
        int64_t R = 200, K = 384, n = 11;
        wstore s;
        make_weight(s, kind, R, K);
        char what[96];
        snprintf(what, sizeof what, "linear mma %s WK=8 [%lldx%lld]x%lld", kn[kind], (long long)R, (long long)K, (long long)n);
        setenv("DSV4_CUDA_MMA_WK", "8", 1);
        check_linear_case(what, s, n, 0, DSV4_OFFICIAL, DSV4_GEMM_MMA, true);
        unsetenv("DSV4_CUDA_MMA_WK");
    }
}

/* the tiled fp32 GEMM (linear_tiled_kernel, forced with DSV4_GEMM_TILED): exact mode and
 * official out_f32 for f32 / bf16 / FP8 (e8m0 and F32 block scales) / FP4 weights, official
 * bf16-output fp32 form (f32 and bf16 weights), n = 16 (32 x 128 tiles: a token tail), 64, 70,
 * 130 (64 x 64 tiles: one to three token tiles, tails), R = 200 / 37 (feature tails, a
 * partial 128-row FP8 scale block), K = 384 and 1000 (a K tail inside a 32-step; FP4: 992,
 * K must be a multiple of 32 there), the automatic K split (2 .. 8 slices here), then the
 * split forced to 1 (results written by the kernel itself, bf16 rounding there) and to 16
 * over 12 steps (four empty slices). Against ref `linear`. */
static void test_linear_tiled(void)
{
    const char *kn[5] = { "f32", "bf16", "fp8", "fp4", "fp8 f32-scale" };
    struct { int64_t R, K; } shp[2] = { { 200, 384 }, { 37, 1000 } };
    /* c = 0: exact; 1: official out_f32 = 1; 2: official bf16 output (f32 / bf16 weights) */
    for (int kind = 0; kind <= 4; kind++)
        for (int c = 0; c < 3; c++)
            for (auto &sh : shp)
                for (int64_t n : { (int64_t)16, (int64_t)64, (int64_t)70, (int64_t)130 }) {
                    if (c == 2 && kind >= 2) continue;
                    if (kind == 4 && (sh.R != 200 || n == 16 || n == 130)) continue;
                    if (g_quick && (n == 64 || n == 130)) continue;
                    dsv4_numerics num = c == 0 ? DSV4_EXACT : DSV4_OFFICIAL;
                    int out_f32 = c == 1;
                    int64_t R = sh.R, K = (kind == 3 && sh.K == 1000) ? 992 : sh.K;
                    wstore s;
                    make_weight(s, kind, R, K);
                    char what[96];
                    snprintf(what, sizeof what, "linear tiled %s %s%s [%lldx%lld]x%lld", kn[kind], nm(num),
                             c == 1 ? " out_f32" : (c == 2 ? " bf16-out" : ""), (long long)R, (long long)K, (long long)n);
                    check_linear_case(what, s, n, out_f32, num, DSV4_GEMM_TILED, num == DSV4_OFFICIAL);
                }
    /* the split forced: 1 (no partials) and 16 over 12 K steps (empty slices) */
    for (const char *sp : { "1", "16" })
        for (int kind = 0; kind <= 3; kind++)
            for (int c = 0; c < 2; c++) {
                int64_t R = 200, K = 384, n = 70;
                dsv4_numerics num = c == 0 ? DSV4_EXACT : DSV4_OFFICIAL;
                if (c == 1 && kind >= 2) continue;   /* official bf16-output form: f32 / bf16 */
                wstore s;
                make_weight(s, kind, R, K);
                char what[96];
                snprintf(what, sizeof what, "linear tiled %s %s%s split=%s [%lldx%lld]x%lld", kn[kind], nm(num),
                         c == 1 ? " bf16-out" : "", sp, (long long)R, (long long)K, (long long)n);
                setenv("DSV4_CUDA_TILED_SPLIT", sp, 1);
                check_linear_case(what, s, n, 0, num, DSV4_GEMM_TILED, num == DSV4_OFFICIAL);
                unsetenv("DSV4_CUDA_TILED_SPLIT");
            }
}

/* ---- norms, RoPE, Hadamard, block simulations ---- */

static void test_norm_rope_hadamard(void)
{
    for (int mi = 0; mi < 2; mi++) {
        dsv4_numerics num = mi ? DSV4_EXACT : DSV4_OFFICIAL;
        int64_t rows = 37; int dim = 1000;
        std::vector<float> x = randn((size_t)(rows * dim), 3.0f), w = randn((size_t)dim, 0.5f);
        to_bf16(x);
        std::vector<float> want(x.size()), got(x.size());
        poison(got);
        rmsnorm(x.data(), w.data(), want.data(), rows, dim, 1e-6f, num);
        cuda_rmsnorm(x.data(), w.data(), got.data(), rows, dim, 1e-6f, num);
        check_rel(num == DSV4_OFFICIAL ? "rmsnorm official" : "rmsnorm exact", got.data(), want.data(), got.size(), lim_of(num));
        want = x; got = x;
        rmsnorm_head(want.data(), rows, 512, 1e-6f, num);
        cuda_rmsnorm_head(got.data(), rows, 512, 1e-6f, num);
        check_rel(num == DSV4_OFFICIAL ? "rmsnorm_head official" : "rmsnorm_head exact", got.data(), want.data(), (size_t)(rows * 512), lim_of(num));

        rope_freqs f;
        rope_freqs_init(&f, 64, 160000.0, 1, 16.0, 65536, 32.0, 1.0, num);
        int64_t stride = 512, off = 448;
        std::vector<int64_t> pos((size_t)rows);
        for (auto &p : pos) p = (int64_t)(rnd_u64() % 1000000);
        std::vector<float> y = randn((size_t)(rows * stride));
        to_bf16(y);
        want = y; got = y;
        for (int64_t r = 0; r < rows; r++) rope_apply(&f, want.data() + r * stride + off, pos[(size_t)r], ROPE_INTERLEAVED, r % 2);
        /* the GPU call takes one direction per call: do the inverse rows separately */
        std::vector<float> got2 = y;
        cuda_rope_rows(&f, got.data(), rows, stride, off, pos.data(), ROPE_INTERLEAVED, 0);
        cuda_rope_rows(&f, got2.data(), rows, stride, off, pos.data(), ROPE_INTERLEAVED, 1);
        for (int64_t r = 1; r < rows; r += 2) memcpy(got.data() + r * stride, got2.data() + r * stride, (size_t)stride * 4);
        check_rel(num == DSV4_OFFICIAL ? "rope rows (yarn, pos<1e6, fwd+inv) official" : "rope rows exact", got.data(), want.data(), got.size(), lim_of(num));
        rope_freqs_free(&f);

        std::vector<float> h = randn((size_t)(rows * 128));
        to_bf16(h);
        want = h; got = h;
        hadamard(want.data(), rows, 128, num);
        cuda_hadamard(got.data(), rows, 128, num);
        bool same = memcmp(got.data(), want.data(), got.size() * 4) == 0;
        check_true(num == DSV4_OFFICIAL ? "hadamard 128 official (bit-identical)" : "hadamard 128 exact (bit-identical)", same, same ? "identical" : "differs");
    }
    /* block simulations */
    int64_t rows = 50; int n = 448;
    std::vector<float> x = randn((size_t)(rows * n), 2.0f);
    to_bf16(x);
    for (int fp4 = 0; fp4 < 2; fp4++) {
        std::vector<float> want = x, got = x;
        for (int64_t r = 0; r < rows; r++) {
            if (fp4) fp4_sim_block(want.data() + r * n, n, 32);
            else fp8_sim_block(want.data() + r * n, n, 64);
        }
        float *d; cudaMalloc(&d, got.size() * 4);
        cudaMemcpy(d, got.data(), got.size() * 4, cudaMemcpyHostToDevice);
        if (fp4) launch_fp4_sim(d, rows, n, n, 32); else launch_fp8_sim(d, rows, n, n, 64);
        cudaMemcpy(got.data(), d, got.size() * 4, cudaMemcpyDeviceToHost);
        cudaFree(d);
        bool same = memcmp(got.data(), want.data(), got.size() * 4) == 0;
        check_true(fp4 ? "fp4_sim block 32 (bit-identical)" : "fp8_sim block 64 (bit-identical)", same, same ? "identical" : "differs");
    }
}

/* ---- compressor ---- */

static void test_compressor(void)
{
    for (int kind = 0; kind < 2; kind++)
        for (int mi = 0; mi < 2; mi++) {
            dsv4_numerics num = mi ? DSV4_EXACT : DSV4_OFFICIAL;
            int ratio = kind == 0 ? 4 : 4, c = kind == 0 ? 192 : 128, r = 64;
            int64_t d = 256, B = 3;
            rope_freqs f;
            rope_freqs_init(&f, r, 160000.0, 1, 16.0, 65536, 32.0, 1.0, num);
            v4_compressor A, G;
            compressor_kind ck = kind == 0 ? COMPRESSOR_MAIN : COMPRESSOR_INDEXER;
            compressor_init(&A, ratio, c, r, d, ck, 1e-6f, &f, B, num);
            compressor_init(&G, ratio, c, r, d, ck, 1e-6f, &f, B, num);
            int64_t kc = (int64_t)(1 + A.overlap) * c;
            wstore wkv, wg;
            make_weight(wkv, 0, kc, d);
            make_weight(wg, 0, kc, d);
            std::vector<float> ape = randn((size_t)(ratio * kc), 0.5f), nw = randn((size_t)c, 0.3f);
            for (v4_compressor *C : { &A, &G }) {
                C->wkv = wkv.w; C->wgate = wg.w;
                C->ape = (float *)malloc(ape.size() * 4); memcpy(C->ape, ape.data(), ape.size() * 4);
                C->norm_w = (float *)malloc(nw.size() * 4); memcpy(C->norm_w, nw.data(), nw.size() * 4);
            }
            double worst = 0; int emits = 0; bool ok_ret = true;
            for (int64_t t = 0; t < 13; t++) {
                std::vector<float> x = randn((size_t)(B * d));
                to_bf16(x);
                std::vector<float> want((size_t)(B * c)), got((size_t)(B * c));
                poison(got);
                int ea = compressor_decode(&A, x.data(), B, t, want.data());
                int eg = cuda_compressor_decode(&G, x.data(), B, t, got.data());
                if (ea != eg) ok_ret = false;
                if (ea == 1) { worst = std::max(worst, rel_l2(got.data(), want.data(), got.size())); emits++; }
            }
            char what[96], det[128];
            snprintf(what, sizeof what, "compressor decode %s m=4 c=%d %s", kind ? "indexer" : "main", c, nm(num));
            snprintf(det, sizeof det, "worst entry rel-L2 %.2e over %d emissions (limit %.0e)", worst, emits, lim_of(num));
            check_true(what, ok_ret && emits == 3 && worst <= lim_of(num), det);
            compressor_free(&A); compressor_free(&G);
            cuda_release();
            rope_freqs_free(&f);
        }
}

/* ---- indexer scores and top-k ---- */

static double jaccard(const int64_t *a, const int64_t *b, int64_t k)
{
    std::vector<int64_t> x(a, a + k), y(b, b + k);
    std::sort(x.begin(), x.end()); std::sort(y.begin(), y.end());
    std::vector<int64_t> in;
    std::set_intersection(x.begin(), x.end(), y.begin(), y.end(), std::back_inserter(in));
    return (double)in.size() / (double)(2 * k - (int64_t)in.size());
}

static void test_indexer(void)
{
    /* variant: the bf16 scores kernel (0 wmma, 1 mma; -1 not a tensor-core shape) */
    struct { int H, D; dsv4_numerics num; int variant; } cases[4] = {
        { 64, 128, DSV4_OFFICIAL, 0 }, { 64, 128, DSV4_OFFICIAL, 1 }, { 4, 32, DSV4_OFFICIAL, -1 }, { 64, 128, DSV4_EXACT, -1 } };
    for (auto &cs : cases) {
        indexer_scores_variant(cs.variant);
        const char *vn = cs.variant == 0 ? " (wmma)" : (cs.variant == 1 ? " (mma)" : "");
        v4_indexer I;
        memset(&I, 0, sizeof I);
        I.n_heads = cs.H; I.head_dim = cs.D; I.num = cs.num;
        int64_t n = 5000, k = 512;
        std::vector<float> q = randn((size_t)(cs.H * cs.D)), w = randn((size_t)cs.H, 0.2f), keys = randn((size_t)(n * cs.D));
        if (cs.num == DSV4_OFFICIAL) {
            fp4_sim_block(q.data(), (int64_t)q.size(), 32);
            fp4_sim_block(keys.data(), (int64_t)keys.size(), 32);
            to_bf16(w);
        }
        std::vector<float> want((size_t)n), got((size_t)n);
        poison(got);
        indexer_scores(&I, q.data(), w.data(), keys.data(), n, want.data());
        if (cuda_indexer_scores(&I, q.data(), w.data(), keys.data(), n, got.data())) {
            check_true("indexer scores", false, dsv4_last_error());
            continue;
        }
        char what[96];
        snprintf(what, sizeof what, "indexer scores H=%d D=%d %s%s", cs.H, cs.D, nm(cs.num), vn);
        check_rel(what, got.data(), want.data(), got.size(), lim_of(cs.num));
        std::vector<int64_t> ia((size_t)k), ib((size_t)k);
        topk_desc(want.data(), n, k, ia.data());
        topk_desc(got.data(), n, k, ib.data());
        double jac = jaccard(ia.data(), ib.data(), k);
        char det[96];
        snprintf(det, sizeof det, "Jaccard %.4f (limit 0.98)", jac);
        snprintf(what, sizeof what, "indexer top-%lld set H=%d %s%s", (long long)k, cs.H, nm(cs.num), vn);
        check_true(what, jac >= 0.98, det);
    }
    indexer_scores_variant(-1);
    /* top-k kernel: exactly topk_desc (order included), on bf16 scores full of ties */
    for (int rep = 0; rep < 4; rep++) {
        if (g_quick && rep == 1) continue;
        int64_t n = rep == 0 ? 5000 : (rep == 1 ? 262144 : (rep == 2 ? 700 : 16684)), k = rep == 2 ? 700 : 512;
        std::vector<float> s = randn((size_t)n);
        for (auto &v : s) v = round_bf16(v * 0.05f);
        if (rep == 0 || rep == 3) for (int i = 0; i < 100; i++) s[(size_t)(rnd_u64() % n)] = -INFINITY;
        std::vector<int64_t> want((size_t)k), got((size_t)k, -7);
        topk_desc(s.data(), n, k, want.data());
        cuda_topk(s.data(), n, k, got.data());
        bool same = want == got;
        char what[64], det[64];
        snprintf(what, sizeof what, "topk n=%lld k=%lld (ties, order)", (long long)n, (long long)k);
        snprintf(det, sizeof det, same ? "identical to topk_desc" : "differs from topk_desc");
        check_true(what, same, det);
    }
}

/* ---- top-k, both paths (topk_use_variant): T rows at once, each row exactly topk_desc
 * (index set and order). Row kinds: fp32 normal; bf16 with heavy ties; bf16 + 1% -inf;
 * all equal (the threshold bin holds the whole row); mostly -inf (the cut falls inside the
 * -inf ties); +-0 mixed with a few positives (-0 == +0); narrow fp32 around 100 (one coarse
 * bin holds almost every entry). The radix finish reads its candidates from shared memory,
 * the global list or the row depending on the threshold bin's size: the cases cover all
 * three (all equal at n = 8193 > 4096, n = 65536 <= 65536, n = 262144 > 65536). ---- */

static void topk_fill_row(float *s, int64_t n, int kind)
{
    for (int64_t i = 0; i < n; i++) {
        float v = rnd_normal();
        switch (kind) {
        case 0: s[i] = v; break;
        case 1: s[i] = round_bf16(v * 0.05f); break;
        case 2: s[i] = rnd_u64() % 100 == 0 ? -INFINITY : round_bf16(v * 0.05f); break;
        case 3: s[i] = 0.25f; break;
        case 4: s[i] = rnd_u64() % 512 == 0 ? round_bf16(v) : -INFINITY; break;
        case 5: s[i] = rnd_u64() % 8 == 0 ? round_bf16(fabsf(v)) : (rnd_u64() & 1 ? 0.0f : -0.0f); break;
        default: s[i] = 100.0f + 0.5f * v; break;
        }
    }
}

static void check_topk_rows(int variant, int64_t n, int64_t k, std::vector<int> kinds)
{
    int64_t T = (int64_t)kinds.size();
    std::vector<float> s((size_t)(T * n));
    for (int64_t t = 0; t < T; t++) topk_fill_row(&s[(size_t)(t * n)], n, kinds[(size_t)t]);
    float *ds = NULL; int32_t *di = NULL;
    cudaMalloc(&ds, (size_t)(T * n) * 4);
    cudaMalloc(&di, (size_t)(T * k) * 4);
    cudaMemcpy(ds, s.data(), (size_t)(T * n) * 4, cudaMemcpyHostToDevice);
    cudaMemset(di, 0xFF, (size_t)(T * k) * 4);   /* poison: -1 */
    topk_use_variant(variant);
    int rc = launch_topk(ds, T, n, k, di);
    topk_use_variant(-1);
    std::vector<int32_t> got((size_t)(T * k), -7);
    cudaError_t e = cudaMemcpy(got.data(), di, (size_t)(T * k) * 4, cudaMemcpyDeviceToHost);
    cudaFree(ds); cudaFree(di);
    char what[96], det[160], kl[32] = "";
    for (size_t t = 0; t < kinds.size(); t++) snprintf(kl + strlen(kl), sizeof kl - strlen(kl), "%d", kinds[t]);
    snprintf(what, sizeof what, "topk %s n=%lld k=%lld T=%lld rows %s", variant == DSV4_TOPK_OLD ? "old" : "radix",
             (long long)n, (long long)k, (long long)T, kl);
    if (rc || e != cudaSuccess) {
        snprintf(det, sizeof det, "error: %s", rc ? dsv4_last_error() : cudaGetErrorString(e));
        check_true(what, false, det);
        return;
    }
    std::vector<int64_t> want((size_t)k);
    int64_t bad_rows = 0, first_t = -1, first_i = -1;
    for (int64_t t = 0; t < T; t++) {
        topk_desc(&s[(size_t)(t * n)], n, k, want.data());
        for (int64_t i = 0; i < k; i++)
            if (got[(size_t)(t * k + i)] != want[(size_t)i]) {
                if (first_t < 0) { first_t = t; first_i = i; }
                bad_rows++;
                break;
            }
    }
    if (bad_rows == 0) snprintf(det, sizeof det, "identical to topk_desc (set and order)");
    else snprintf(det, sizeof det, "%lld rows differ; first: row %lld pos %lld got %d want %lld", (long long)bad_rows,
                  (long long)first_t, (long long)first_i, got[(size_t)(first_t * k + first_i)], (long long)want[(size_t)first_i]);
    check_true(what, bad_rows == 0, det);
}

static void test_topk_paths(void)
{
    for (int variant : { DSV4_TOPK_RADIX, DSV4_TOPK_OLD }) {
        check_topk_rows(variant, 100, 1, { 0 });
        check_topk_rows(variant, 100, 100, { 1, 3, 5 });             /* k = n */
        check_topk_rows(variant, 100, 37, { 2, 4, 6 });
        check_topk_rows(variant, 4096, 512, { 0, 1, 2, 3 });
        check_topk_rows(variant, 4096, 2048, { 3, 4, 5 });
        check_topk_rows(variant, 8193, 2048, { 3, 1, 5 });           /* all equal: 8193 > 4096 candidates */
        check_topk_rows(variant, 8193, 8, { 0, 6, 4 });
        check_topk_rows(variant, 65536, 2048, { 3 });                /* all equal: the global list, full */
        check_topk_rows(variant, 65536, 512, { 0, 1, 2, 4, 5, 6 });
        check_topk_rows(variant, 262144, 512, { 1 });                /* the indexer shape, T = 1 */
        if (g_quick) continue;
        check_topk_rows(variant, 262144, 512, { 0, 1, 2, 3, 6 });    /* all equal / narrow: the row itself */
        check_topk_rows(variant, 262144, 2048, { 2, 5, 4 });
        check_topk_rows(variant, 262144, 1, { 0, 3, 1 });
    }
}

/* batched bf16 scores (launch_indexer_scores_bf16): T sequences, each with its own keys at a
 * stride with a gap, n not a multiple of the 64-key tile; the mma kernel also with few blocks
 * (a block's tile range spanning sequences: q/w reload), with w that is not bf16-valued (its
 * fp32 term path) and at H = 16, 32, 48. Pitfalls: a sequence's scores from another's keys or
 * q, tail rows written past n (the guard after the last row stays NaN), a stage read before
 * its copy landed. */
static void test_indexer_batched(void)
{
    const int64_t T = 3, n = 1000, stride_rows = 1024, D = 128;
    struct { int H, variant, max_blocks, wround; } bc[] = {
        { 64, 0, 0, 1 }, { 64, 1, 0, 1 }, { 64, 1, 7, 1 }, { 64, 1, 0, 0 }, { 32, 0, 0, 1 }, { 32, 1, 5, 1 },
        { 16, 1, 0, 1 }, { 48, 1, 4, 1 } };
    for (auto &c : bc) {
        int64_t H = c.H;
        std::vector<float> q = randn((size_t)(T * H * D)), keys = randn((size_t)(T * stride_rows * D)),
                           w = randn((size_t)(T * H), 0.2f);
        fp4_sim_block(q.data(), (int64_t)q.size(), 32);
        fp4_sim_block(keys.data(), (int64_t)keys.size(), 32);
        if (c.wround) to_bf16(w);
        v4_indexer I;
        memset(&I, 0, sizeof I);
        I.n_heads = (int)H; I.head_dim = (int)D; I.num = DSV4_OFFICIAL;
        const int64_t guard = 64;
        std::vector<float> want((size_t)(T * n)), got((size_t)(T * n + guard));
        for (int64_t t = 0; t < T; t++)
            indexer_scores(&I, q.data() + t * H * D, w.data() + t * H, keys.data() + t * stride_rows * D, n,
                           want.data() + t * n);
        std::vector<__nv_bfloat16> qb(q.size()), kb(keys.size());
        for (size_t i = 0; i < q.size(); i++) qb[i] = __float2bfloat16_rn(q[i]);
        for (size_t i = 0; i < keys.size(); i++) kb[i] = __float2bfloat16_rn(keys[i]);
        void *dq, *dk; float *dw, *ds;
        cudaMalloc(&dq, qb.size() * 2); cudaMalloc(&dk, kb.size() * 2);
        cudaMalloc(&dw, w.size() * 4); cudaMalloc(&ds, got.size() * 4);
        cudaMemcpy(dq, qb.data(), qb.size() * 2, cudaMemcpyHostToDevice);
        cudaMemcpy(dk, kb.data(), kb.size() * 2, cudaMemcpyHostToDevice);
        cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
        cudaMemset(ds, 0xFF, got.size() * 4);   /* NaN everywhere, the guard included */
        indexer_scores_variant(c.variant);
        indexer_scores_mma_max_blocks(c.max_blocks);
        int rc = launch_indexer_scores_bf16(dq, dw, dk, stride_rows * D, T, n, (int)H, (int)D, ds);
        cudaDeviceSynchronize();
        indexer_scores_mma_max_blocks(0);
        indexer_scores_variant(-1);
        poison(got);
        cudaMemcpy(got.data(), ds, got.size() * 4, cudaMemcpyDeviceToHost);
        bool guard_ok = true;
        for (int64_t i = T * n; i < T * n + guard; i++) guard_ok = guard_ok && std::isnan(got[(size_t)i]);
        char what[96];
        snprintf(what, sizeof what, "indexer scores T=3 n=1000 H=%d %s%s%s", c.H, c.variant ? "mma" : "wmma",
                 c.max_blocks ? " few blocks" : "", c.wround ? "" : " f32 w");
        if (rc) check_true(what, false, dsv4_last_error());
        else if (!guard_ok) check_true(what, false, "wrote past the last score");
        else check_rel(what, got.data(), want.data(), want.size(), lim_of(DSV4_OFFICIAL));
        cudaFree(dq); cudaFree(dk); cudaFree(dw); cudaFree(ds);
    }
}

/* ---- sparse attention ---- */

/* the official bf16 kernels by sparse_attention_variant number: lab and bench names */
static const char *const spa_variant_name[4] = { "mma", "pipelined", "wmma", "mma2" };
#define SPA_NVAR 4

static void test_sparse_attention(void)
{
    for (int mi = 0; mi < 2; mi++) {
        dsv4_numerics num = mi ? DSV4_EXACT : DSV4_OFFICIAL;
        int64_t H = 64, D = 512, n_kv = 900, n_idx = 640 + 37;
        std::vector<float> q = randn((size_t)(H * D)), kv = randn((size_t)(n_kv * D)), sink = randn((size_t)H);
        to_bf16(q); to_bf16(kv);
        std::vector<int64_t> idx((size_t)n_idx);
        for (int64_t i = 0; i < n_idx; i++) idx[(size_t)i] = (i < 64 || rnd_u64() % 9 == 0) ? -1 : (int64_t)(rnd_u64() % n_kv);
        double scale = num == DSV4_OFFICIAL ? (double)(float)pow((double)D, -0.5) : 1.0 / sqrt((double)D);
        std::vector<float> want((size_t)(H * D)), got((size_t)(H * D));
        poison(got);
        sparse_attention(q.data(), H, D, kv.data(), n_kv, idx.data(), n_idx, sink.data(), scale, want.data(), num);
        cuda_sparse_attention(q.data(), H, D, kv.data(), n_kv, idx.data(), n_idx, sink.data(), scale, got.data(), num);
        check_rel(num == DSV4_OFFICIAL ? "sparse_attention H64 D512 677 idx official" : "sparse_attention exact", got.data(), want.data(), got.size(), lim_of(num));
        if (num == DSV4_OFFICIAL) {
            /* the tensor-core kernel on the same inputs (bf16 exact) */
            std::vector<__nv_bfloat16> qb(q.size()), kb(kv.size());
            for (size_t i = 0; i < q.size(); i++) qb[i] = __float2bfloat16_rn(q[i]);
            for (size_t i = 0; i < kv.size(); i++) kb[i] = __float2bfloat16_rn(kv[i]);
            std::vector<int32_t> i32(idx.begin(), idx.end());
            void *dq, *dk; int32_t *di; float *ds, *dout;
            cudaMalloc(&dq, qb.size() * 2); cudaMalloc(&dk, kb.size() * 2); cudaMalloc(&di, i32.size() * 4);
            cudaMalloc(&ds, H * 4); cudaMalloc(&dout, H * D * 4);
            cudaMemcpy(dq, qb.data(), qb.size() * 2, cudaMemcpyHostToDevice);
            cudaMemcpy(dk, kb.data(), kb.size() * 2, cudaMemcpyHostToDevice);
            cudaMemcpy(di, i32.data(), i32.size() * 4, cudaMemcpyHostToDevice);
            cudaMemcpy(ds, sink.data(), H * 4, cudaMemcpyHostToDevice);
            for (int var = 0; var < SPA_NVAR; var++)
            for (int split = 0; split < 2; split++) {
                sparse_attention_variant(var);
                sparse_attention_allow_split(split);
                cudaMemset(dout, 0xFF, H * D * 4);
                int rc = launch_sparse_attention_bf16(dq, 1, H, D, dk, 0, 1, di, n_idx, ds, (float)scale, (float *)dout);
                cudaDeviceSynchronize();
                poison(got);
                cudaMemcpy(got.data(), dout, H * D * 4, cudaMemcpyDeviceToHost);
                char what[96];
                snprintf(what, sizeof what, "sparse_attention %s official (%s)", spa_variant_name[var],
                         split ? "key split" : "one pass");
                if (rc) check_true(what, false, dsv4_last_error());
                else check_rel(what, got.data(), want.data(), got.size(), 1e-2);
            }
            /* all masked (100 entries of -1, two blocks): exactly 0 from every tensor-core
             * kernel, one pass and split (pitfall 13: e^{-inf - -inf}) */
            {
                std::vector<int32_t> none32(100, -1);
                cudaMemcpy(di, none32.data(), none32.size() * 4, cudaMemcpyHostToDevice);
                for (int var = 0; var < SPA_NVAR; var++)
                for (int split = 0; split < 2; split++) {
                    sparse_attention_variant(var);
                    sparse_attention_allow_split(split);
                    cudaMemset(dout, 0xFF, H * D * 4);
                    int rc = launch_sparse_attention_bf16(dq, 1, H, D, dk, 0, 1, di, 100, ds, (float)scale, (float *)dout);
                    cudaDeviceSynchronize();
                    poison(got);
                    cudaMemcpy(got.data(), dout, H * D * 4, cudaMemcpyDeviceToHost);
                    bool zero = rc == 0;
                    for (float v : got) zero = zero && v == 0.0f;
                    char what[96];
                    snprintf(what, sizeof what, "sparse_attention all masked -> 0 %s (%s)", spa_variant_name[var],
                             split ? "key split" : "one pass");
                    check_true(what, zero, rc ? dsv4_last_error() : zero ? "exactly 0" : "not 0");
                }
            }
            sparse_attention_allow_split(1);
            sparse_attention_variant(-1);
            cudaFree(dq); cudaFree(dk); cudaFree(di); cudaFree(ds); cudaFree(dout);
            /* the mma2 configuration exists to keep 2 blocks resident per SM (D = 512) */
            {
                int b1 = sparse_attention_mma_blocks_per_sm(512, 0), b2 = sparse_attention_mma_blocks_per_sm(512, 1);
                char msg[96];
                snprintf(msg, sizeof msg, "%d blocks/SM (mma: %d)", b2, b1);
                check_true("sparse_attention mma2 D=512 occupancy >= 2 blocks/SM", b2 >= 2, msg);
            }
        }
        /* all masked: exactly zero */
        std::vector<int64_t> none(100, -1);
        poison(got);
        cuda_sparse_attention(q.data(), H, D, kv.data(), n_kv, none.data(), 100, sink.data(), scale, got.data(), num);
        bool zero = true;
        for (float v : got) zero = zero && v == 0.0f;
        check_true(num == DSV4_OFFICIAL ? "sparse_attention all masked -> 0 official" : "sparse_attention all masked -> 0 exact", zero, zero ? "exactly 0" : "not 0");
    }
}

/* ---- mHC post, MoE expert ---- */

/* batched decode through the tensor-core kernels: T queries, each with its own kv rows
 * (kv_stride), list lengths that end in a partial block, query 3's list all masked (its
 * heads exactly 0); H = 48 takes the 16-head paths (mma HT = 1, wmma; pipe needs H % 32).
 * Long list (T = 1, 5000 entries, 79 blocks): key-split chunks of several blocks, the
 * three-stage ring wrapping many times. Pitfalls: a query reading another query's rows, a
 * pipelined tile read before its gather landed or overwritten while still read. */
static void test_sparse_attention_batched(void)
{
    struct { int64_t T, H, D, n_kv, n_idx; } cases[] = {
        { 5, 64, 128, 300, 3 * 64 + 21 }, { 5, 64, 512, 300, 3 * 64 + 21 }, { 5, 48, 512, 300, 3 * 64 + 21 },
        { 1, 64, 512, 6000, 5000 },
    };
    for (auto &cs : cases) {
        int64_t T = cs.T, H = cs.H, D = cs.D, n_kv = cs.n_kv, n_idx = cs.n_idx;
        if (g_quick && n_idx > 1000) continue;
        std::vector<float> q = randn((size_t)(T * H * D)), kv = randn((size_t)(T * n_kv * D)), sink = randn((size_t)H);
        to_bf16(q); to_bf16(kv);
        std::vector<int32_t> i32((size_t)(T * n_idx));
        std::vector<float> want((size_t)(T * H * D)), got(want.size());
        float scale = (float)pow((double)D, -0.5);
        for (int64_t t = 0; t < T; t++) {
            std::vector<int64_t> idx((size_t)n_idx);
            for (int64_t i = 0; i < n_idx; i++) {
                idx[(size_t)i] = (t == 3 || rnd_u64() % 7 == 0) ? -1 : (int64_t)(rnd_u64() % n_kv);
                i32[(size_t)(t * n_idx + i)] = (int32_t)idx[(size_t)i];
            }
            sparse_attention(q.data() + t * H * D, H, D, kv.data() + t * n_kv * D, n_kv, idx.data(), n_idx,
                             sink.data(), (double)scale, want.data() + t * H * D, DSV4_OFFICIAL);
        }
        std::vector<__nv_bfloat16> qb(q.size()), kb(kv.size());
        for (size_t i = 0; i < q.size(); i++) qb[i] = __float2bfloat16_rn(q[i]);
        for (size_t i = 0; i < kv.size(); i++) kb[i] = __float2bfloat16_rn(kv[i]);
        void *dq, *dk; int32_t *di; float *ds, *dout;
        cudaMalloc(&dq, qb.size() * 2); cudaMalloc(&dk, kb.size() * 2); cudaMalloc(&di, i32.size() * 4);
        cudaMalloc(&ds, H * 4); cudaMalloc(&dout, got.size() * 4);
        cudaMemcpy(dq, qb.data(), qb.size() * 2, cudaMemcpyHostToDevice);
        cudaMemcpy(dk, kb.data(), kb.size() * 2, cudaMemcpyHostToDevice);
        cudaMemcpy(di, i32.data(), i32.size() * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(ds, sink.data(), H * 4, cudaMemcpyHostToDevice);
        std::vector<float> mma_one_pass;   /* mma2 one pass must equal mma one pass bit for bit */
        for (int var = 0; var < SPA_NVAR; var++)
        for (int split = 0; split < 2; split++) {
            if (var == 1 && H % 32 != 0) continue;         /* the pipelined kernel needs H % 32 */
            if (var == 2 && n_idx > 1000) continue;        /* the plain kernel: short lists only */
            sparse_attention_variant(var);
            sparse_attention_allow_split(split);
            cudaMemset(dout, 0xFF, got.size() * 4);
            int rc = launch_sparse_attention_bf16(dq, T, H, D, dk, n_kv * D, 1, di, n_idx, ds, scale, dout);
            cudaDeviceSynchronize();
            poison(got);
            cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost);
            char what[96];
            if (T > 1)
                snprintf(what, sizeof what, "sparse_attention T=%lld%s D=%lld %s (%s)", (long long)T,
                         H == 64 ? "" : (H == 48 ? " H=48" : " H=?"), (long long)D, spa_variant_name[var],
                         split ? "key split" : "one pass");
            else
                snprintf(what, sizeof what, "sparse_attention %lld idx D=%lld %s (%s)", (long long)n_idx,
                         (long long)D, spa_variant_name[var], split ? "key split" : "one pass");
            if (rc) { check_true(what, false, dsv4_last_error()); continue; }
            check_rel(what, got.data(), want.data(), got.size(), 1e-2);
            if (var == 0 && split == 0) mma_one_pass = got;
            if (var == 3 && split == 0 && mma_one_pass.size() == got.size()) {
                size_t ndiff = 0;
                for (size_t i = 0; i < got.size(); i++) ndiff += memcmp(&got[i], &mma_one_pass[i], 4) != 0;
                char w2[128], d2[64];
                snprintf(w2, sizeof w2, "%.96s == mma bitwise", what);
                snprintf(d2, sizeof d2, "%zu of %zu outputs differ", ndiff, got.size());
                check_true(w2, ndiff == 0, d2);
            }
            if (T > 3) {   /* query 3: every entry masked -> exactly 0 */
                bool zero = true;
                for (int64_t i = 3 * H * D; i < 4 * H * D; i++) zero = zero && got[(size_t)i] == 0.0f;
                char w2[128];
                snprintf(w2, sizeof w2, "%.96s masked query -> 0", what);
                check_true(w2, zero, zero ? "exactly 0" : "not 0");
            }
        }
        sparse_attention_allow_split(1);
        sparse_attention_variant(-1);
        cudaFree(dq); cudaFree(dk); cudaFree(di); cudaFree(ds); cudaFree(dout);
    }
}

static void test_mhc_moe(void)
{
    for (int mi = 0; mi < 2; mi++) {
        dsv4_numerics num = mi ? DSV4_EXACT : DSV4_OFFICIAL;
        int64_t n = 5, dim = 300; int hc = 4;
        std::vector<float> o = randn((size_t)(n * dim)), res = randn((size_t)(n * hc * dim)), post = randn((size_t)(n * hc)), comb = randn((size_t)(n * hc * hc));
        to_bf16(o); to_bf16(res);
        std::vector<float> want(res.size()), got(res.size());
        poison(got);
        mhc_post(o.data(), res.data(), post.data(), comb.data(), n, hc, dim, want.data(), num);
        cuda_mhc_post(o.data(), res.data(), post.data(), comb.data(), n, hc, dim, got.data(), num);
        bool same = memcmp(got.data(), want.data(), got.size() * 4) == 0;
        check_true(num == DSV4_OFFICIAL ? "mhc_post official (bit-identical)" : "mhc_post exact (bit-identical)", same, same ? "identical" : "differs");

        for (int wk = 1; wk < 4; wk++) {
            int64_t d2 = 256, inter = 384, m = 6;
            moe_expert e;
            wstore w1, w2, w3;
            make_weight(w1, wk, inter, d2); make_weight(w3, wk, inter, d2); make_weight(w2, wk, d2, inter);
            e.w1 = w1.w; e.w2 = w2.w; e.w3 = w3.w;
            std::vector<float> a = randn((size_t)(m * d2)), rw = randn((size_t)m, 0.3f);
            to_bf16(a);
            std::vector<float> ye((size_t)(m * d2)), yg((size_t)(m * d2));
            poison(yg);
            moe_expert_forward(&e, d2, inter, 10.0, a.data(), rw.data(), m, ye.data(), num);
            cuda_moe_expert_forward(&e, d2, inter, 10.0, a.data(), rw.data(), m, yg.data(), num);
            char what[80];
            snprintf(what, sizeof what, "moe expert %s weights %s", wk == 1 ? "bf16" : (wk == 2 ? "fp8" : "fp4"), nm(num));
            check_rel(what, yg.data(), ye.data(), yg.size(), lim_of(num));
            cuda_release();
        }
    }
}

/* ---- benchmarks ---- */

__global__ void fill_bf16_kernel(__nv_bfloat16 *x, size_t n, uint64_t seed, float scale)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        h ^= h >> 31; h *= 0xBF58476D1CE4E5B9ull; h ^= h >> 29;
        float u = (float)(h & 0xFFFFFF) / 16777216.0f - 0.5f;
        x[i] = __float2bfloat16_rn(u * scale);
    }
}
__global__ void fill_f32_kernel(float *x, size_t n, uint64_t seed, float scale)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        h ^= h >> 31; h *= 0xBF58476D1CE4E5B9ull; h ^= h >> 29;
        x[i] = d_round_bf16(((float)(h & 0xFFFFFF) / 16777216.0f - 0.5f) * scale);
    }
}
static void fill_bf16(void *p, size_t n, float scale) { fill_bf16_kernel<<<4096, 256>>>((__nv_bfloat16 *)p, n, rnd_u64(), scale); }
static void fill_f32(float *p, size_t n, float scale) { fill_f32_kernel<<<4096, 256>>>(p, n, rnd_u64(), scale); }

template <typename F>
static float time_ms(F f, int reps = 20)
{
    f(); f();
    cudaDeviceSynchronize();
    std::vector<float> ts;
    cudaEvent_t a, b;
    cudaEventCreate(&a); cudaEventCreate(&b);
    for (int r = 0; r < reps; r++) {
        cudaEventRecord(a);
        f();
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float ms; cudaEventElapsedTime(&ms, a, b);
        ts.push_back(ms);
    }
    cudaEventDestroy(a); cudaEventDestroy(b);
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
}

static double g_bw = 4.3e12;   /* measured below */

static void row(const char *name, int B, float ms, double bytes, double flops)
{
    double s = ms * 1e-3;
    double floor_s = bytes / g_bw;
    printf("%-34s B=%-3d %9.1f us %8.1f GB/s %8.2f TFLOP/s  %5.1f%% of HBM roofline\n", name, B, ms * 1e3,
           bytes / s / 1e9, flops / s / 1e12, 100.0 * floor_s / s);
    fflush(stdout);
}

/* ---- the full CSA layer decode row (bench only): stand-ins for the steps that have no
 * launch_ function in cuda/kernels.h. HCPre's RMS factor, Sinkhorn and pre-weighted sum, the
 * router's sqrt-softplus + top-6, the expert gather / scatter-add and the final combine run
 * on the host or inside moe.cu / mhc.cu's C wrappers in the CUDA path (the SwiGLU step is
 * moe.cu's own kernel, launch_swiglu); these
 * kernels do the same arithmetic (spec/mhc.md [MHC-1..3], spec/moe.md [MOE-2..4]) in plain
 * fp32 so the row times a whole layer on the device. Not checked against ref (timing only). */

/* [MHC-1..3] one block per token, 256 threads. X: [n, hc, dim] (bf16 values); mix: [n, nmix]
 * (the fp32 GEMM fn . x, unnormalized); scale: [3]; base: [nmix] -> a: [n, dim] (bf16 values),
 * post: [n, hc], comb: [n, hc, hc]. hc <= 4. */
__global__ void layer_mhc_pre_kernel(const float *X, const float *mix, const float *scale,
                                     const float *base, int hc, int64_t dim, int iters,
                                     float hc_eps, float norm_eps, float *a, float *post,
                                     float *comb)
{
    __shared__ float red[256];
    __shared__ float pre_s[4];
    int64_t t = blockIdx.x, hd = (int64_t)hc * dim;
    int nmix = (2 + hc) * hc;
    const float *xt = X + t * hd;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) ss = ss + xt[i] * xt[i];
    red[threadIdx.x] = ss;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) red[threadIdx.x] = red[threadIdx.x] + red[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        float r = rsqrtf(red[0] / (float)hd + norm_eps);
        float m[24], c[16], rs[4], cs[4];
        for (int i = 0; i < nmix; i++) m[i] = mix[t * nmix + i] * r;
        for (int j = 0; j < hc; j++) {
            pre_s[j] = 1.0f / (1.0f + expf(-(m[j] * scale[0] + base[j]))) + hc_eps;
            post[t * hc + j] = 2.0f / (1.0f + expf(-(m[hc + j] * scale[1] + base[hc + j])));
        }
        for (int j = 0; j < hc; j++) {               /* row softmax + eps */
            float mx = -INFINITY, s = 0.0f;
            for (int k = 0; k < hc; k++) {
                int i = 2 * hc + j * hc + k;
                c[j * hc + k] = m[i] * scale[2] + base[i];
                mx = fmaxf(mx, c[j * hc + k]);
            }
            for (int k = 0; k < hc; k++) { c[j * hc + k] = expf(c[j * hc + k] - mx); s = s + c[j * hc + k]; }
            for (int k = 0; k < hc; k++) c[j * hc + k] = c[j * hc + k] / s + hc_eps;
        }
        for (int it = 0; it < iters; it++) {
            if (it > 0) {
                for (int j = 0; j < hc; j++) {
                    rs[j] = 0.0f;
                    for (int k = 0; k < hc; k++) rs[j] = rs[j] + c[j * hc + k];
                    for (int k = 0; k < hc; k++) c[j * hc + k] = c[j * hc + k] / (rs[j] + hc_eps);
                }
            }
            for (int k = 0; k < hc; k++) {
                cs[k] = 0.0f;
                for (int j = 0; j < hc; j++) cs[k] = cs[k] + c[j * hc + k];
            }
            for (int j = 0; j < hc; j++)
                for (int k = 0; k < hc; k++) c[j * hc + k] = c[j * hc + k] / (cs[k] + hc_eps);
        }
        for (int i = 0; i < hc * hc; i++) comb[t * hc * hc + i] = c[i];
    }
    __syncthreads();
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
        float s = 0.0f;
        for (int j = 0; j < hc; j++) s = s + pre_s[j] * xt[j * dim + d];
        a[t * dim + d] = d_round_bf16(s);
    }
}

/* [MOE-2] one block of E = 256 threads per token. logit: [n, E] (fp32 GEMM); bias: [E] ->
 * ids: [n, k], w: [n, k]. s = sqrt(softplus(l)); top-k of s + bias (ties: lower id);
 * w = s[ids] / sum * route_scale. k <= 8. */
__global__ void layer_route_kernel(const float *logit, const float *bias, int k,
                                   float route_scale, int32_t *ids, float *w)
{
    __shared__ float s_s[256];
    __shared__ float wv[8];
    __shared__ int wi[8];
    __shared__ int sel[8];
    int64_t t = blockIdx.x;
    int e = threadIdx.x, lane = e & 31, warp = e >> 5;
    float l = logit[t * 256 + e];
    float s = sqrtf(l > 20.0f ? l : log1pf(expf(l)));
    s_s[e] = s;
    float v = s + bias[e];
    for (int r = 0; r < k; r++) {
        float bv = v; int bi = e;
        for (int off = 16; off > 0; off >>= 1) {
            float ov = __shfl_down_sync(0xffffffffu, bv, off);
            int oi = __shfl_down_sync(0xffffffffu, bi, off);
            if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
        }
        if (lane == 0) { wv[warp] = bv; wi[warp] = bi; }
        __syncthreads();
        if (e == 0) {
            float b = wv[0]; int bj = wi[0];
            for (int q = 1; q < 8; q++)
                if (wv[q] > b || (wv[q] == b && wi[q] < bj)) { b = wv[q]; bj = wi[q]; }
            sel[r] = bj;
        }
        __syncthreads();
        if (e == sel[r]) v = -INFINITY;
    }
    if (e == 0) {
        float sum = 0.0f;
        for (int i = 0; i < k; i++) sum = sum + s_s[sel[i]];
        for (int i = 0; i < k; i++) {
            ids[t * k + i] = sel[i];
            w[t * k + i] = s_s[sel[i]] / sum * route_scale;
        }
    }
}

/* one block per routed row r: xa[r] = a[slot[r] / k]; rw[r] = wts[slot[r]] */
__global__ void layer_gather_kernel(const float *a, const int32_t *slot, const float *wts, int k,
                                    int64_t dim, float *xa, float *rw)
{
    int64_t r = blockIdx.x;
    int64_t t = slot[r] / k;
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) xa[r * dim + d] = a[t * dim + d];
    if (threadIdx.x == 0) rw[r] = wts[slot[r]];
}

/* [MOE-4] one block per routed row r: acc[slot[r] / k] += ye[r] (one expert at a time, so the
 * rows of one launch are distinct tokens: no race) */
__global__ void layer_scatter_add_kernel(float *acc, const float *ye, const int32_t *slot, int k,
                                         int64_t dim)
{
    int64_t r = blockIdx.x;
    int64_t t = slot[r] / k;
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) acc[t * dim + d] = acc[t * dim + d] + ye[r * dim + d];
}

/* [MOE-4] y = bf16(acc + shared) */
__global__ void layer_moe_out_kernel(const float *acc, const float *ys, float *y, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = d_round_bf16(acc[i] + ys[i]);
}

static int bench(void)
{
    char desc[256];
    cuda_describe(desc, sizeof desc);
    printf("device: %s\n", desc);
    cudaError_t err = cudaSuccess;
    /* copy bandwidth */
    {
        size_t n = (size_t)4 << 30;
        void *a, *b;
        cudaMalloc(&a, n); cudaMalloc(&b, n);
        cudaMemset(a, 1, n);
        float ms = time_ms([&] { cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice); }, 10);
        g_bw = 2.0 * n / (ms * 1e-3);
        printf("copy bandwidth (D2D 4 GiB, read+write): %.0f GB/s  (used as the HBM roofline)\n", g_bw / 1e9);
        cudaFree(a); cudaFree(b);
    }
    printf("%-34s %-5s %12s %13s %16s\n", "kernel", "batch", "time", "bandwidth", "rate");
    const int64_t H = 64, D = 512, WIN = 128;
    for (int B : { 1, 64 }) {
        /* CSA decode: window 128 + top-512 of N/4 = 262144 entries */
        for (int csa = 1; csa >= 0; csa--) {
            int64_t n_pool = csa ? 262144 + WIN : 8192 + WIN, n_idx = csa ? WIN + 512 : WIN + 8192;
            void *kv, *q; float *qf, *kvf = NULL, *out, *sink; int32_t *idx;
            cudaMalloc(&kv, (size_t)(B * n_pool * D) * 2);
            cudaMalloc(&q, (size_t)(B * H * D) * 2);
            cudaMalloc(&qf, (size_t)(B * H * D) * 4);
            cudaMalloc(&out, (size_t)(B * H * D) * 4);
            cudaMalloc(&sink, H * 4);
            cudaMalloc(&idx, (size_t)(B * n_idx) * 4);
            fill_bf16(kv, (size_t)(B * n_pool * D), 2.0f);
            fill_bf16(q, (size_t)(B * H * D), 2.0f);
            fill_f32(qf, (size_t)(B * H * D), 2.0f);
            fill_f32(sink, H, 1.0f);
            std::vector<int32_t> hidx((size_t)(B * n_idx));
            for (int b = 0; b < B; b++)
                for (int64_t i = 0; i < n_idx; i++)
                    hidx[(size_t)(b * n_idx + i)] = i < WIN ? (int32_t)i : (int32_t)(WIN + (csa ? rnd_u64() % 262144 : i - WIN));
            cudaMemcpy(idx, hidx.data(), hidx.size() * 4, cudaMemcpyHostToDevice);
            double bytes = (double)B * (H * D * 2 + n_idx * D * 2 + n_idx * 4 + H * D * 4);
            double flops = (double)B * 4.0 * H * n_idx * D;
            const char *nmk = csa ? "CSA decode (128+512 of 262144)" : "HCA decode 1M (128+8192)";
            /* the official bf16 kernels: mma (sparse_attention_mma.cu), its 2-blocks-per-SM
             * configuration mma2 (variant 3, next to it), pipe, wmma */
            for (int var : { 0, 3, 1, 2 })
            for (int split = 1; split >= 0; split--) {
                static const char *const vname[4] = { "mma", "pipe", "wmma", "mma2" };
                sparse_attention_variant(var);
                sparse_attention_allow_split(split);
                float ms = time_ms([&] { launch_sparse_attention_bf16(q, B, H, D, kv, n_pool * D, 1, idx, n_idx, sink, 0.0441941738f, out); });
                char name[80]; snprintf(name, sizeof name, "%s %s%s", nmk, vname[var], split ? "" : " 1-pass");
                if (split || B < 64) row(name, B, ms, bytes, flops);
            }
            sparse_attention_allow_split(1);
            sparse_attention_variant(-1);
            /* CUDA-core kernel on an fp32 copy of the pool (same byte count as fp32 gathers) */
            if (cudaMalloc(&kvf, (size_t)(B * n_pool * D) * 4) == cudaSuccess) {
                fill_f32(kvf, (size_t)(B * n_pool * D), 2.0f);
                float ms = time_ms([&] { launch_sparse_attention_f32(qf, B, H, D, kvf, n_pool * D, 1, idx, n_idx, sink, 0.0441941738f, out, DSV4_OFFICIAL); }, 5);
                char name[80]; snprintf(name, sizeof name, "%s f32", nmk);
                row(name, B, ms, (double)B * (H * D * 4 + n_idx * D * 4 + n_idx * 4 + H * D * 4), flops);
                cudaFree(kvf);
            } else cudaGetLastError();
            cudaFree(kv); cudaFree(q); cudaFree(qf); cudaFree(out); cudaFree(sink); cudaFree(idx);
        }
        /* indexer at 1M: 262144 keys x 128, 64 heads */
        {
            int64_t n = 262144, HI = 64, DI = 128;
            void *keys, *q; float *w, *score, *keysf = NULL; int32_t *top;
            cudaMalloc(&keys, (size_t)(B * n * DI) * 2);
            cudaMalloc(&q, (size_t)(B * HI * DI) * 2);
            cudaMalloc(&w, (size_t)(B * HI) * 4);
            cudaMalloc(&score, (size_t)(B * n) * 4);
            cudaMalloc(&top, (size_t)(B * 512) * 4);
            fill_bf16(keys, (size_t)(B * n * DI), 4.0f);
            fill_bf16(q, (size_t)(B * HI * DI), 4.0f);
            fill_f32(w, (size_t)(B * HI), 1.0f);
            double bytes = (double)B * (n * DI * 2 + n * 4 + HI * DI * 2);
            double flops = (double)B * 2.0 * n * HI * DI;
            float ms = 0;
            for (int v = 0; v < 2; v++) {   /* the two bf16 scores kernels, then the default */
                indexer_scores_variant(v);
                ms = time_ms([&] { launch_indexer_scores_bf16(q, w, keys, n * DI, B, n, (int)HI, (int)DI, score); });
                row(v ? "indexer scores 1M mma" : "indexer scores 1M wmma", B, ms, bytes, flops);
            }
            indexer_scores_variant(-1);
            topk_use_variant(DSV4_TOPK_OLD);   /* this row: the old path, as in earlier results */
            ms = time_ms([&] { launch_topk(score, B, n, 512, top); });
            row("indexer top-512 of 262144", B, ms, (double)B * (n * 4 + 512 * 4), 0);
            topk_use_variant(DSV4_TOPK_RADIX);
            ms = time_ms([&] { launch_topk(score, B, n, 512, top); });
            row("indexer top-512 of 262144 radix", B, ms, (double)B * (n * 4 + 512 * 4), 0);
            topk_use_variant(-1);              /* the default from here on */
            ms = time_ms([&] { launch_indexer_scores_bf16(q, w, keys, n * DI, B, n, (int)HI, (int)DI, score); launch_topk(score, B, n, 512, top); });
            row(indexer_scores_variant_now() ? "indexer scores+top-512 1M mma" : "indexer scores+top-512 1M wmma", B, ms, bytes, flops);
            if (cudaMalloc(&keysf, (size_t)(B * n * DI) * 4) == cudaSuccess) {
                float *qf; cudaMalloc(&qf, (size_t)(B * HI * DI) * 4);
                fill_f32(keysf, (size_t)(B * n * DI), 4.0f); fill_f32(qf, (size_t)(B * HI * DI), 4.0f);
                ms = time_ms([&] { launch_indexer_scores_f32(qf, w, keysf, n * DI, B, n, (int)HI, (int)DI, score, DSV4_OFFICIAL); }, 3);
                row("indexer scores 1M f32", B, ms, (double)B * (n * DI * 4 + n * 4), flops);
                cudaFree(keysf); cudaFree(qf);
            } else cudaGetLastError();
            cudaFree(keys); cudaFree(q); cudaFree(w); cudaFree(score); cudaFree(top);
        }
        /* compressor (CSA main, m = 4, c = 512, d = 4096): projections + emission */
        {
            int64_t d = 4096, c = 512, kc = 2 * c, km = 8;
            rope_freqs f;
            rope_freqs_init(&f, 64, 160000.0, 1, 16.0, 65536, 32.0, 1.0, DSV4_OFFICIAL);
            v4_compressor C;
            memset(&C, 0, sizeof C);
            C.ratio = 4; C.overlap = 1; C.head_dim = (int)c; C.rope_dim = 64; C.dim = d;
            C.kind = COMPRESSOR_MAIN; C.eps = 1e-6f; C.num = DSV4_OFFICIAL; C.rope = &f;
            wstore wkv, wg;
            make_weight(wkv, 0, kc, d); make_weight(wg, 0, kc, d);
            C.wkv = wkv.w; C.wgate = wg.w;
            float *dx, *du, *dg, *dks, *dss, *dnw, *dcs, *dout;
            cudaMalloc(&dx, B * d * 4); cudaMalloc(&du, B * kc * 4); cudaMalloc(&dg, B * kc * 4);
            cudaMalloc(&dks, B * km * kc * 4); cudaMalloc(&dss, B * km * kc * 4);
            cudaMalloc(&dnw, c * 4); cudaMalloc(&dcs, B * 64 * 4); cudaMalloc(&dout, B * c * 4);
            fill_f32(dx, B * d, 2.0f); fill_f32(dks, B * km * kc, 2.0f); fill_f32(dss, B * km * kc, 2.0f);
            fill_f32(dnw, c, 1.0f); fill_f32(dcs, B * 64, 1.0f);
            float ms = time_ms([&] { launch_linear(&C.wkv, dx, du, B, 1, DSV4_OFFICIAL); launch_linear(&C.wgate, dx, dg, B, 1, DSV4_OFFICIAL); });
            row("compressor projections (fp32 W)", B, ms, 2.0 * kc * d * 4 + B * (d * 4 + 2 * kc * 4), 2.0 * 2 * B * kc * d);
            ms = time_ms([&] { launch_compressor_emit(&C, dks, dss, B, dnw, dcs, dout); });
            row("compressor emit (pool+norm+rope+fp8)", B, ms, (double)B * (2 * km * kc * 4 + c * 4), (double)B * km * c * 8);
            rope_freqs_free(&f);
            cudaFree(dx); cudaFree(du); cudaFree(dg); cudaFree(dks); cudaFree(dss); cudaFree(dnw); cudaFree(dcs); cudaFree(dout);
        }
        /* the fp32-form GEMM (official out_f32, f32 weight [1024 x 4096], as one compressor
         * projection): the tiled kernel next to linear_kernel (simt) */
        {
            wstore w;
            make_weight(w, 0, 1024, 4096);
            float *x, *y;
            cudaMalloc(&x, B * 4096 * 4); cudaMalloc(&y, B * 1024 * 4);
            fill_f32(x, B * 4096, 2.0f);
            for (int v : { DSV4_GEMM_SIMT, DSV4_GEMM_TILED }) {
                linear_use_tensor_cores(v);
                float ms = time_ms([&] { launch_linear(&w.w, x, y, B, 1, DSV4_OFFICIAL); });
                row(v == DSV4_GEMM_TILED ? "linear f32 [1024x4096] tiled" : "linear f32 [1024x4096] simt", B, ms,
                    1024.0 * 4096 * 4 + B * (4096 + 1024) * 4.0, 2.0 * B * 1024 * 4096);
            }
            linear_use_tensor_cores(-1);
            cudaFree(x); cudaFree(y);
            cuda_release();
        }
        /* GEMMs of the layer: FP8 wq_b [32768 x 1024], bf16 [4096 x 4096], FP4 expert [2048 x 4096] */
        {
            struct { int kind; int64_t R, K; const char *nm; } g[3] = {
                { 2, 32768, 1024, "linear FP8 wq_b [32768x1024]" },
                { 1, 4096, 4096, "linear bf16 [4096x4096]" },
                { 3, 2048, 4096, "linear FP4 expert w1 [2048x4096]" } };
            for (auto &c : g) {
                wstore w;
                make_weight(w, c.kind, c.R, c.K);
                float *x, *y;
                cudaMalloc(&x, B * c.K * 4); cudaMalloc(&y, B * c.R * 4);
                fill_f32(x, B * c.K, 2.0f);
                double wb = c.kind == 2 ? 1.0 : (c.kind == 1 ? 2.0 : 0.5);
                for (int tc : { DSV4_GEMM_TC, DSV4_GEMM_SIMT, DSV4_GEMM_MMA }) {
                    linear_use_tensor_cores(tc);
                    float ms = time_ms([&] { launch_linear(&w.w, x, y, B, 0, DSV4_OFFICIAL); });
                    char name[80]; snprintf(name, sizeof name, "%s %s", c.nm, tc == DSV4_GEMM_TC ? "tc" : (tc == DSV4_GEMM_MMA ? "mma" : "simt"));
                    row(name, B, ms, (double)c.R * c.K * wb + B * (c.K + c.R) * 4.0, 2.0 * B * c.R * c.K);
                }
                linear_use_tensor_cores(-1);
                cudaFree(x); cudaFree(y);
                cuda_release();
            }
        }
        /* one CSA layer's decode at 1M (V4-Flash shapes, FP8 weights): the projections, norms,
         * RoPE, compressor, indexer (scores + top-k) and sparse attention, back to back */
        {
            int64_t dim = 4096, rq = 1024, HD = H * D, n = 262144;
            wstore wq_a, wq_b, wkv, wo_a, wo_b, iq_b, iwp, cwkv, cwg, icwkv, icwg;
            make_weight(wq_a, 2, rq, dim); make_weight(wq_b, 2, HD, rq); make_weight(wkv, 2, D, dim);
            make_weight(wo_a, 1, 8 * 1024, HD / 8); make_weight(wo_b, 2, dim, 8 * 1024);
            make_weight(iq_b, 2, 64 * 128, rq); make_weight(iwp, 1, 64, dim);
            make_weight(cwkv, 0, 1024, dim); make_weight(cwg, 0, 1024, dim);
            make_weight(icwkv, 0, 256, dim); make_weight(icwg, 0, 256, dim);
            /* wo_a is grouped (8 groups of [1024, HD/8]); timed as one [8192, HD/8] GEMM per
             * group's input: 8 launches of [1024, 4096] */
            wstore wo_ag[8];
            for (int g = 0; g < 8; g++) make_weight(wo_ag[g], 1, 1024, HD / 8);
            float *x, *qr, *qq, *kvr, *o, *og, *z, *y, *iq, *iw, *u1, *u2, *score; void *qb, *keys, *pool;
            int32_t *top;
            cudaMalloc(&x, B * dim * 4); cudaMalloc(&qr, B * rq * 4); cudaMalloc(&qq, B * HD * 4);
            cudaMalloc(&kvr, B * D * 4); cudaMalloc(&o, B * HD * 4); cudaMalloc(&og, B * HD * 4);
            cudaMalloc(&z, B * 8 * 1024 * 4); cudaMalloc(&y, B * dim * 4); cudaMalloc(&iq, B * 64 * 128 * 4);
            cudaMalloc(&iw, B * 64 * 4); cudaMalloc(&u1, B * 1024 * 4); cudaMalloc(&u2, B * 1024 * 4);
            cudaMalloc(&score, (size_t)B * n * 4); cudaMalloc(&qb, B * HD * 2);
            cudaMalloc(&keys, (size_t)(B * n * 128) * 2); cudaMalloc(&pool, (size_t)(B * (n + WIN) * D) * 2);
            cudaMalloc(&top, B * (WIN + 512) * 4); int32_t *topsel; cudaMalloc(&topsel, B * 512 * 4);
            float *sink; cudaMalloc(&sink, H * 4); fill_f32(sink, H, 1.0f);
            fill_f32(x, B * dim, 2.0f); fill_bf16(keys, (size_t)(B * n * 128), 4.0f); fill_bf16(pool, (size_t)(B * (n + WIN) * D), 2.0f);
            std::vector<int32_t> hidx((size_t)(B * (WIN + 512)));
            for (int b = 0; b < B; b++) for (int i = 0; i < WIN + 512; i++) hidx[(size_t)(b * (WIN + 512) + i)] = i < WIN ? i : (int32_t)(WIN + rnd_u64() % n);
            cudaMemcpy(top, hidx.data(), hidx.size() * 4, cudaMemcpyHostToDevice);
            float *cs; cudaMalloc(&cs, B * H * 64 * 4); fill_f32(cs, B * H * 64, 1.0f);
            auto layer = [&] {
                launch_linear(&wq_a.w, x, qr, B, 0, DSV4_OFFICIAL);
                launch_rmsnorm(qr, NULL, qr, B, (int)rq, 1e-6f, DSV4_OFFICIAL);
                launch_linear(&wq_b.w, qr, qq, B, 0, DSV4_OFFICIAL);
                launch_rmsnorm_head(qq, B * H, (int)D, 1e-6f, DSV4_OFFICIAL);
                launch_rope_rows(qq, B * H, D, D - 64, 64, cs, ROPE_INTERLEAVED, 0, DSV4_OFFICIAL);
                launch_linear(&wkv.w, x, kvr, B, 0, DSV4_OFFICIAL);
                launch_rmsnorm(kvr, NULL, kvr, B, (int)D, 1e-6f, DSV4_OFFICIAL);
                launch_rope_rows(kvr, B, D, D - 64, 64, cs, ROPE_INTERLEAVED, 0, DSV4_OFFICIAL);
                launch_fp8_sim(kvr, B, D, (int)D - 64, 64);
                launch_linear(&cwkv.w, x, u1, B, 1, DSV4_OFFICIAL);
                launch_linear(&cwg.w, x, u2, B, 1, DSV4_OFFICIAL);
                launch_linear(&icwkv.w, x, u1, B, 1, DSV4_OFFICIAL);
                launch_linear(&icwg.w, x, u2, B, 1, DSV4_OFFICIAL);
                launch_linear(&iq_b.w, qr, iq, B, 0, DSV4_OFFICIAL);
                launch_hadamard(iq, B * 64, 128, DSV4_OFFICIAL);
                launch_fp4_sim(iq, B * 64, 128, 128, 32);
                launch_linear(&iwp.w, x, iw, B, 0, DSV4_OFFICIAL);
                launch_f32_to_bf16(iq, qb, B * 64 * 128);
                launch_indexer_scores_bf16(qb, iw, keys, n * 128, B, n, 64, 128, score);
                launch_topk(score, B, n, 512, topsel);   /* [B, 512]; the list below keeps its [B, 640] layout */
                launch_f32_to_bf16(qq, qb, B * HD);
                launch_sparse_attention_bf16(qb, B, H, D, pool, (n + WIN) * D, 1, top, WIN + 512, sink, 0.0441941738f, o);
                launch_rope_rows(o, B * H, D, D - 64, 64, cs, ROPE_INTERLEAVED, 1, DSV4_OFFICIAL);
                for (int g = 0; g < 8; g++) launch_linear(&wo_ag[g].w, o + g * (HD / 8), z + g * 1024, B, 0, DSV4_OFFICIAL);
                launch_linear(&wo_b.w, z, y, B, 0, DSV4_OFFICIAL);
            };
            /* note: the per-group wo_a launches read rows of stride HD as if contiguous: a
             * timing stand-in with the right byte count (B = 1 exact) */
            float ms = time_ms(layer, 10);
            double wbytes = (double)rq * dim + (double)HD * rq + (double)D * dim + 8.0 * 1024 * (HD / 8) * 2 +
                            (double)dim * 8192 + 64.0 * 128 * rq + 64.0 * dim * 2 + 2.0 * (1024 + 256) * dim * 4;
            double abytes = (double)B * ((double)n * 128 * 2 + n * 8 + (WIN + 512) * D * 2);
            double fl = 2.0 * B * (wbytes) + (double)B * (2.0 * n * 64 * 128 + 4.0 * H * (WIN + 512) * D);
            row("CSA layer decode @1M (FP8 weights)", B, ms, wbytes + abytes, fl);
            /* the WHOLE decode layer (V4-Flash Block.forward, spec/model.md [MDL-3]): HCPre_attn
             * (hc 4: fp32 mixes GEMM [24 x 16384] + layer_mhc_pre_kernel), attn_norm, the
             * attention sequence above, HCPost (launch_mhc_post), HCPre_ffn, ffn_norm, the MoE
             * (router: fp32 GEMM of the bf16 gate [256 x 4096] + layer_route_kernel; ids to the
             * host as the official .tolist(); per distinct expert in ascending id: gather its
             * tokens, FP4 w1 / w3 [2048 x 4096], SwiGLU, FP4 w2 [4096 x 2048], scatter-add; the
             * FP8 shared expert; y = bf16(sum)), HCPost. The input streams X stay the same on
             * every call (a timing loop, not a decode). All 256 experts' weights exist (3 x 4.25
             * MB each, ~3.3 GB host and, for those hit, device); which ones run is the router's
             * choice on this random data. */
            {
                const int hc = 4, nmix = (2 + hc) * hc, E = 256, K6 = 6;
                const int64_t inter = 2048, hd = hc * dim;
                static std::vector<wstore> experts;   /* [E][w1, w3, w2], made once for both B */
                if (experts.empty()) {
                    wstore b1, b3, b2;
                    make_weight(b1, 3, inter, dim); make_weight(b3, 3, inter, dim); make_weight(b2, 3, dim, inter);
                    experts.reserve((size_t)E * 3);
                    for (int e = 0; e < E; e++) { experts.push_back(b1); experts.push_back(b3); experts.push_back(b2); }
                    for (auto &w : experts) { w.w.data = w.data.data(); w.w.scale = w.scale.data(); }   /* distinct host copies = distinct device copies */
                }
                wstore hfa, hff, gate, s1, s3, s2;
                make_weight(hfa, 0, nmix, hd); make_weight(hff, 0, nmix, hd); make_weight(gate, 1, E, dim);
                make_weight(s1, 2, inter, dim); make_weight(s3, 2, inter, dim); make_weight(s2, 2, dim, inter);
                float *X, *X2, *X3, *mix, *post, *comb, *hsc, *hba, *nw, *logit, *gb, *rwt, *xa, *rw, *eg, *eu, *ye, *acc, *gs, *us, *ys, *mo;
                int32_t *ids, *slots;
                cudaMalloc(&X, B * hd * 4); cudaMalloc(&X2, B * hd * 4); cudaMalloc(&X3, B * hd * 4);
                cudaMalloc(&mix, B * nmix * 4); cudaMalloc(&post, B * hc * 4); cudaMalloc(&comb, B * hc * hc * 4);
                cudaMalloc(&hsc, 3 * 4); cudaMalloc(&hba, nmix * 4); cudaMalloc(&nw, dim * 4);
                cudaMalloc(&logit, B * E * 4); cudaMalloc(&gb, E * 4); cudaMalloc(&rwt, B * K6 * 4);
                cudaMalloc(&ids, B * K6 * 4); cudaMalloc(&slots, B * K6 * 4);
                cudaMalloc(&xa, B * dim * 4); cudaMalloc(&rw, B * 4); cudaMalloc(&eg, B * inter * 4);
                cudaMalloc(&eu, B * inter * 4); cudaMalloc(&ye, B * dim * 4); cudaMalloc(&acc, B * dim * 4);
                cudaMalloc(&gs, B * inter * 4); cudaMalloc(&us, B * inter * 4); cudaMalloc(&ys, B * dim * 4);
                cudaMalloc(&mo, B * dim * 4);
                fill_f32(X, B * hd, 2.0f); fill_f32(hsc, 3, 1.0f); fill_f32(hba, nmix, 1.0f);
                fill_f32(nw, dim, 2.0f); fill_f32(gb, E, 0.01f);
                std::vector<int32_t> hid((size_t)(B * K6)), hslot((size_t)(B * K6)), cnt(E);
                int distinct = 0;
                auto hc_pre = [&](const wstore &fn, const float *Xin) {
                    launch_linear(&fn.w, Xin, mix, B, 1, DSV4_OFFICIAL);
                    layer_mhc_pre_kernel<<<(unsigned)B, 256>>>(Xin, mix, hsc, hba, hc, dim, 20, 1e-6f, 1e-6f, x, post, comb);
                    launch_rmsnorm(x, nw, x, B, (int)dim, 1e-6f, DSV4_OFFICIAL);   /* attn_norm / ffn_norm */
                };
                auto full = [&] {
                    hc_pre(hfa, X);
                    layer();                                              /* x -> y */
                    launch_mhc_post(y, X, post, comb, B, hc, dim, X2, DSV4_OFFICIAL);
                    hc_pre(hff, X2);
                    launch_linear(&gate.w, x, logit, B, 1, DSV4_OFFICIAL);
                    layer_route_kernel<<<(unsigned)B, E>>>(logit, gb, K6, 1.5f, ids, rwt);
                    cudaMemcpy(hid.data(), ids, hid.size() * 4, cudaMemcpyDeviceToHost);
                    std::fill(cnt.begin(), cnt.end(), 0);
                    for (int32_t v : hid) if (v >= 0 && v < E) cnt[v]++;
                    std::vector<int> off(E + 1, 0);
                    for (int e = 0; e < E; e++) off[e + 1] = off[e] + cnt[e];
                    std::vector<int> fillp(off.begin(), off.end() - 1);
                    for (int i = 0; i < B * K6; i++) if (hid[i] >= 0 && hid[i] < E) hslot[(size_t)fillp[hid[i]]++] = i;
                    cudaMemcpy(slots, hslot.data(), hslot.size() * 4, cudaMemcpyHostToDevice);
                    cudaMemsetAsync(acc, 0, B * dim * 4);
                    distinct = 0;
                    for (int e = 0; e < E; e++) {
                        int m = cnt[e];
                        if (!m) continue;
                        distinct++;
                        const int32_t *sl = slots + off[e];
                        layer_gather_kernel<<<(unsigned)m, 256>>>(x, sl, rwt, K6, dim, xa, rw);
                        launch_linear(&experts[(size_t)e * 3].w, xa, eg, m, 0, DSV4_OFFICIAL);
                        launch_linear(&experts[(size_t)e * 3 + 1].w, xa, eu, m, 0, DSV4_OFFICIAL);
                        launch_swiglu(eg, eu, rw, m, inter, 10.0, DSV4_OFFICIAL);
                        launch_linear(&experts[(size_t)e * 3 + 2].w, eg, ye, m, 0, DSV4_OFFICIAL);
                        layer_scatter_add_kernel<<<(unsigned)m, 256>>>(acc, ye, sl, K6, dim);
                    }
                    launch_linear(&s1.w, x, gs, B, 0, DSV4_OFFICIAL);
                    launch_linear(&s3.w, x, us, B, 0, DSV4_OFFICIAL);
                    launch_swiglu(gs, us, NULL, B, inter, 10.0, DSV4_OFFICIAL);
                    launch_linear(&s2.w, gs, ys, B, 0, DSV4_OFFICIAL);
                    layer_moe_out_kernel<<<(unsigned)((B * dim + 255) / 256), 256>>>(acc, ys, mo, B * dim);
                    launch_mhc_post(mo, X2, post, comb, B, hc, dim, X3, DSV4_OFFICIAL);
                };
                float msf = time_ms(full, 10);
                /* bytes: the attention row's + weights touched (hc fns fp32, norms, bf16 gate, the
                 * distinct FP4 experts hit with their e8m0 scales, the FP8 shared expert) + the
                 * streams (each HCPre reads X twice, each HCPost reads res and writes y) */
                double ebytes = 3.0 * (inter * dim / 2 + inter * dim / 32);
                double mbytes = 2.0 * nmix * hd * 4 + 2.0 * dim * 4 + (double)E * dim * 2 + distinct * ebytes +
                                3.0 * inter * dim + (double)B * 8 * hd * 4;
                double mfl = 2.0 * B * (2.0 * nmix * hd + (double)E * dim + (K6 + 1) * 3.0 * inter * dim);
                printf("layer full: %d distinct routed experts of %d hit at batch %d\n", distinct, E, B);
                row("CSA layer decode @1M full (attn + mHC + MoE)", B, msf, wbytes + abytes + mbytes, fl + mfl);
                cudaFree(X); cudaFree(X2); cudaFree(X3); cudaFree(mix); cudaFree(post); cudaFree(comb);
                cudaFree(hsc); cudaFree(hba); cudaFree(nw); cudaFree(logit); cudaFree(gb); cudaFree(rwt);
                cudaFree(ids); cudaFree(slots); cudaFree(xa); cudaFree(rw); cudaFree(eg); cudaFree(eu);
                cudaFree(ye); cudaFree(acc); cudaFree(gs); cudaFree(us); cudaFree(ys); cudaFree(mo);
            }
            cudaFree(x); cudaFree(qr); cudaFree(qq); cudaFree(kvr); cudaFree(o); cudaFree(og); cudaFree(z); cudaFree(y);
            cudaFree(iq); cudaFree(iw); cudaFree(u1); cudaFree(u2); cudaFree(score); cudaFree(qb); cudaFree(keys);
            cudaFree(pool); cudaFree(top); cudaFree(topsel); cudaFree(sink); cudaFree(cs);
            cuda_release();
        }
    }
    err = cudaDeviceSynchronize();
    if (err != cudaSuccess) { printf("bench: CUDA error %s\n", cudaGetErrorString(err)); return 1; }
    printf("bench: last error: %s\n", dsv4_last_error());
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--probe") == 0) { printf("test_kernels: runs\n"); return 0; }
    const char *why;
    if (!cuda_available(&why)) {
        printf("test_kernels: SKIPPED: %s\n", why);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) return bench();
    g_quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    test_formats();
    test_linear();
    test_linear_mma();
    test_linear_tiled();
    test_norm_rope_hadamard();
    test_compressor();
    test_indexer();
    test_topk_paths();
    test_indexer_batched();
    test_sparse_attention();
    test_sparse_attention_batched();
    test_mhc_moe();
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) { printf("FAIL CUDA error: %s\n", cudaGetErrorString(e)); return 1; }
    cuda_release();
    printf("%d checks, %d failed\n", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
