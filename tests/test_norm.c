/* test_norm.c — RMSNorm, the V4 per-head query norm, LayerNorm (spec/norm.md). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "testutil.h"
#include "numerics.h"
#include "norm.h"

enum { ROWS = 5, DIM = 96 };

static void fill_rows(float *x, int64_t n, uint64_t seed, float offset)
{
    test_rng rng = { seed };
    for (int64_t i = 0; i < n; i++) x[i] = round_bf16(offset + 3.0f * test_rng_uniform(&rng));
}

/* fp64 RMSNorm reference, written from the formula w * x / sqrt(mean(x^2) + eps). */
static void rms_ref(const float *x, const float *w, double *y, int rows, int dim, double eps)
{
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += (double)x[r * dim + j] * x[r * dim + j];
        double inv = 1.0 / sqrt(ss / dim + eps);
        for (int j = 0; j < dim; j++) y[r * dim + j] = (w ? w[j] : 1.0) * x[r * dim + j] * inv;
    }
}

/* RMSNorm exact mode = the fp64 formula to 1e-6; official mode within one bf16 rounding
 * of it per element: bf16 has 8 significant bits, so RNE moves a value by at most half an
 * ulp = 2^-8 relative; |y - y64| <= 2^-8 |y64| + fp32 slack 2^-20 |y64|.
 * Traps: eps outside the sqrt; mean over dim - 1; weight ignored. */
static void test_rmsnorm_vs_fp64(void **state)
{
    (void)state;
    float x[ROWS * DIM], w[DIM], ye[ROWS * DIM], yo[ROWS * DIM], y64f[ROWS * DIM];
    double y64[ROWS * DIM];
    fill_rows(x, ROWS * DIM, 1, 0.0f);
    fill_rows(w, DIM, 2, 1.0f);
    rms_ref(x, w, y64, ROWS, DIM, 1e-6);
    for (int i = 0; i < ROWS * DIM; i++) y64f[i] = (float)y64[i];
    rmsnorm(x, w, ye, ROWS, DIM, 1e-6f, DSV4_EXACT);
    expect_close("rmsnorm exact vs fp64", ye, y64f, ROWS * DIM, 1e-6,
                 "eps outside the square root, wrong mean denominator, or w not applied");
    rmsnorm(x, w, yo, ROWS, DIM, 1e-6f, DSV4_OFFICIAL);
    for (int i = 0; i < ROWS * DIM; i++) {
        assert_true(round_bf16(yo[i]) == yo[i]);
        if (fabs(yo[i] - y64[i]) > (0x1p-8 + 0x1p-20) * fabs(y64[i]))
            fail_msg("rmsnorm official element %d = %.9g vs fp64 %.9g: more than one bf16 "
                     "rounding (likely bug: an extra bf16 rounding before * w)", i, yo[i], y64[i]);
    }
    /* in place (x and y alias) gives the same */
    float xi[ROWS * DIM];
    memcpy(xi, x, sizeof x);
    rmsnorm(xi, w, xi, ROWS, DIM, 1e-6f, DSV4_OFFICIAL);
    assert_memory_equal(xi, yo, sizeof yo);
}

/* The HF-V2 style two-rounding form bf16(bf16(x * r) * w) differs from the official
 * single rounding on some elements: the test shows the official form is the one built.
 * Trap: rounding between the normalisation and the weight. */
static void test_rmsnorm_single_rounding(void **state)
{
    (void)state;
    enum { N = 4096 };
    static float x[N], w[N], y[N];
    fill_rows(x, N, 9, 0.0f);
    fill_rows(w, N, 10, 1.0f);
    rmsnorm(x, w, y, 1, N, 1e-6f, DSV4_OFFICIAL);
    double ss = 0;
    for (int j = 0; j < N; j++) ss += (double)(x[j] * x[j]);
    float r = 1.0f / sqrtf((float)ss / (float)N + 1e-6f);
    int same_single = 0, diff_double = 0;
    for (int j = 0; j < N; j++) {
        float single = round_bf16(w[j] * (x[j] * r));
        float twice = round_bf16(w[j] * round_bf16(x[j] * r));
        same_single += single == y[j];
        diff_double += twice != y[j];
    }
    assert_int_equal(same_single, N);
    assert_true(diff_double > 10);
}

/* The V4 q per-head norm in official mode is a chain of bf16 tensor ops. Hand case
 * x = [1, 1, 1, 7]: squares 1, 1, 1, 49 (bf16-exact); mean 52/4 = 13; 13 + 1e-6 -> bf16 13;
 * rsqrt(13) = 0.2773500... -> bf16 0.27734375 (71/256); 7 * 71/256 = 1.94140625, a bf16
 * tie (248.5/128) -> 1.9375. The fp32 form (one rounding) gives 7 * 0.27735007 =
 * 1.94145 -> 1.9453125. Exact mode = 1/sqrt(13 + 1e-6) scaling in double.
 * Trap: implementing the per-head norm as an fp32 RMSNorm (checklist item 2). */
static void test_rmsnorm_head_hand(void **state)
{
    (void)state;
    float x[4] = { 1, 1, 1, 7 }, y[4] = { 1, 1, 1, 7 }, z[4] = { 1, 1, 1, 7 };
    rmsnorm_head(x, 1, 4, 1e-6f, DSV4_OFFICIAL);
    assert_true(x[0] == 0.27734375f && x[1] == 0.27734375f && x[3] == 1.9375f);
    rmsnorm(y, NULL, y, 1, 4, 1e-6f, DSV4_OFFICIAL);
    assert_true(y[3] == 1.9453125f);
    rmsnorm_head(z, 1, 4, 1e-6f, DSV4_EXACT);
    assert_true(fabs(z[3] - 7.0 / sqrt(13.000001)) <= 1e-7);
}

/* On random rows the bf16 chain and the fp32 form differ measurably (the chain moves the
 * scale factor by up to ~2 bf16 ulps), and both stay within a few bf16 ulps of fp64.
 * Trap: same as above, at scale. */
/* [NORM-2b] PyTorch's CPU rsqrt on a bf16 tensor: the vector body rounds 1/sqrt once, the
 * scalar tail (the last n mod 32 elements) rounds sqrt to bf16 first. A row constant c whose
 * mean m = bf16(c^2) makes the two differ shows it: rows 0..31 of a 33-row call take the
 * single rounding, row 32 the double one; with the width set to 0 every row is single. */
static void test_rmsnorm_head_torch_tail(void **state)
{
    (void)state;
    enum { D = 8, N = 33 };
    float c = 0.0f, r1 = 0.0f, r2 = 0.0f;
    for (uint16_t b = 0x3f00; b < 0x4080; b++) {          /* bf16 values in [0.5, 4) */
        float v = bf16_to_float(b);
        float m = round_bf16(round_bf16(round_bf16(v * v)) + 1e-6f);
        float s1 = round_bf16(1.0f / sqrtf(m)), s2 = round_bf16(1.0f / round_bf16(sqrtf(m)));
        if (s1 != s2 && round_bf16(v * s1) != round_bf16(v * s2)) { c = v; r1 = s1; r2 = s2; break; }
    }
    assert_true(c != 0.0f);
    static float x[N * D];
    int saved = rmsnorm_head_torch_vec_loop();
    for (int w = 32; w >= 0; w -= 32) {
        rmsnorm_head_set_torch_vec_loop(w);
        for (int i = 0; i < N * D; i++) x[i] = c;
        rmsnorm_head(x, N, D, 1e-6f, DSV4_OFFICIAL);
        for (int row = 0; row < N; row++) {
            float want = round_bf16(c * ((w > 0 && row >= 32) ? r2 : r1));
            if (x[row * D] != want)
                fail_msg("[NORM-2b] width %d row %d: got %.9g want %.9g\n  likely bug: the scalar-tail "
                         "double rounding of rsqrt applied to the wrong rows (or not at all)",
                         w, row, (double)x[row * D], (double)want);
        }
    }
    rmsnorm_head_set_torch_vec_loop(saved);
}

static void test_rmsnorm_head_vs_fp32_form(void **state)
{
    (void)state;
    enum { R = 64, D = 128 };
    static float x[R * D], a[R * D], b[R * D], c[R * D];
    fill_rows(x, R * D, 21, 0.0f);
    memcpy(a, x, sizeof x);
    rmsnorm_head(a, R, D, 1e-6f, DSV4_OFFICIAL);
    rmsnorm(x, NULL, b, R, D, 1e-6f, DSV4_OFFICIAL);
    memcpy(c, x, sizeof x);
    rmsnorm_head(c, R, D, 1e-6f, DSV4_EXACT);
    expect_distinguishable("rmsnorm_head bf16 chain vs fp32 form", a, b, R * D, 5e-4);
    /* five roundings: s (affects m by <= 2^-9), m, m + eps, r, the product: <= 4 * 2^-8 */
    expect_close("rmsnorm_head official vs exact", a, c, R * D, 4 * 0x1p-8,
                 "per-head norm chain: a missing step or the wrong reduction");
    float d[R * D];
    rmsnorm(x, NULL, d, R, D, 1e-6f, DSV4_EXACT);
    expect_close("rmsnorm_head exact = rmsnorm exact without weight", c, d, R * D, 1e-7,
                 "exact per-head norm must be the weightless RMSNorm");
}

/* LayerNorm: hand case x = [1, 2, 3, 4]: mean 2.5, population variance 1.25, so
 * y = (x - 2.5) / sqrt(1.25 + eps) * g + b; the unbiased variance (5/3) gives another
 * result. RMSNorm and LayerNorm are distinguishable on rows with a non-zero mean.
 * Traps: 4 (LayerNorm vs RMSNorm for the V3.2 indexer k_norm), unbiased variance,
 * bias dropped. */
static void test_layernorm(void **state)
{
    (void)state;
    float x[4] = { 1, 2, 3, 4 }, g[4] = { 1, 2, 0.5f, -1 }, b[4] = { 0.25f, 0, -1, 3 }, y[4];
    layernorm(x, g, b, y, 1, 4, 1e-6f, DSV4_EXACT);
    double rs = 1.0 / sqrt(1.25 + (double)1e-6f);
    for (int j = 0; j < 4; j++) {
        double want = (x[j] - 2.5) * rs * g[j] + b[j];
        double unbiased = (x[j] - 2.5) / sqrt(5.0 / 3.0 + 1e-6) * g[j] + b[j];
        assert_true(fabs(y[j] - want) <= 1e-6 * fabs(want) + 1e-7);
        assert_true(fabs(y[j] - unbiased) > 1e-2);
    }
    float yo[4];
    layernorm(x, g, b, yo, 1, 4, 1e-6f, DSV4_OFFICIAL);
    for (int j = 0; j < 4; j++) {
        assert_true(round_bf16(yo[j]) == yo[j]);
        assert_true(fabs(yo[j] - y[j]) <= 0x1p-8 * fabs(y[j]) + 1e-6);
    }
    enum { R = 8, D = 64 };
    float xr[R * D], ln[R * D], rms[R * D];
    fill_rows(xr, R * D, 33, 1.5f);
    layernorm(xr, NULL, NULL, ln, R, D, 1e-6f, DSV4_OFFICIAL);
    rmsnorm(xr, NULL, rms, R, D, 1e-6f, DSV4_OFFICIAL);
    expect_distinguishable("layernorm vs rmsnorm (non-zero mean rows)", ln, rms, R * D, 0.1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm_vs_fp64),
        cmocka_unit_test(test_rmsnorm_single_rounding),
        cmocka_unit_test(test_rmsnorm_head_hand),
        cmocka_unit_test(test_rmsnorm_head_vs_fp32_form),
        cmocka_unit_test(test_rmsnorm_head_torch_tail),
        cmocka_unit_test(test_layernorm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
