/* test_sparse_attention.c — V4 sparse attention with sinks (spec/sparse-attention.md).
 * Tiny shapes: H = 3 heads, D = 40, up to 150 listed keys (three 64-key blocks). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "testutil.h"
#include "numerics.h"
#include "sparse_attention.h"

enum { H = 3, D = 40, NKV = 150 };

/* Independent double oracle of [SPA-1]: o_h = sum_i e^{l_i} k_i / (sum_i e^{l_i} + e^{z_h}),
 * l_i = scale q_h.k_i over the unmasked list entries; written without a running max. */
static void oracle(const float *q, const float *kv, const int64_t *idx, int64_t n,
                   const float *sink, double scale, float *out)
{
    for (int h = 0; h < H; h++) {
        double num[D] = {0}, den = exp((double)sink[h]);
        int any = 0;
        for (int64_t i = 0; i < n; i++) {
            if (idx[i] < 0) continue;
            any = 1;
            double l = 0;
            for (int d = 0; d < D; d++) l += (double)q[h * D + d] * kv[idx[i] * D + d];
            double p = exp(l * scale);
            den += p;
            for (int d = 0; d < D; d++) num[d] += p * kv[idx[i] * D + d];
        }
        for (int d = 0; d < D; d++) out[h * D + d] = any ? (float)(num[d] / den) : 0.0f;
    }
}

static void fill(float *q, float *kv, float *sink, uint64_t seed)
{
    test_rng r = { seed };
    test_fill(&r, q, H * D, 2.0f);
    test_fill(&r, kv, NKV * D, 1.0f);
    round_bf16_n(q, H * D, DSV4_OFFICIAL);      /* the kernel's inputs are bf16 */
    round_bf16_n(kv, NKV * D, DSV4_OFFICIAL);
    sink[0] = 1.5f; sink[1] = -2.0f; sink[2] = 0.25f;   /* both signs (pitfall 13) */
}

/* exact mode = the oracle; official within the bf16 budget of P and of the output. */
static void test_matches_oracle(void **s)
{
    (void)s;
    float q[H * D], kv[NKV * D], sink[H], got[H * D], want[H * D], off[H * D];
    int64_t idx[NKV];
    fill(q, kv, sink, 11);
    for (int i = 0; i < NKV; i++) idx[i] = (i * 37) % NKV;
    idx[5] = -1; idx[70] = -1; idx[140] = -1;
    double scale = 1.0 / sqrt((double)D);
    oracle(q, kv, idx, NKV, sink, scale, want);
    assert_int_equal(sparse_attention(q, H, D, kv, NKV, idx, NKV, sink, scale, got, DSV4_EXACT), 0);
    expect_close("exact vs oracle", got, want, H * D, 1e-6,
                 "pitfall 13: sink not in the denominator, or -1 entries not masked");
    assert_int_equal(sparse_attention(q, H, D, kv, NKV, idx, NKV, sink, scale, off, DSV4_OFFICIAL), 0);
    /* bf16 P (2^-9 relative each, averaging down) and a bf16 output (2^-9): a few 2^-9 */
    expect_close("official vs oracle", off, want, H * D, 4 * 0.001953125,
                 "online-softmax rescaling wrong across the 64-key blocks");
}

/* Pitfall 13: the sink is an unscaled logit in the denominator only. The wrong readings
 * (sink scaled by D^-1/2, or the sink taking part in the max / numerator) must be visible. */
static void test_sink_denominator_only(void **s)
{
    (void)s;
    float q[H * D], kv[NKV * D], sink[H], got[H * D], wrong[H * D], sink_scaled[H];
    int64_t idx[20];
    fill(q, kv, sink, 12);
    for (int i = 0; i < 20; i++) idx[i] = i;
    double scale = 1.0 / sqrt((double)D);
    assert_int_equal(sparse_attention(q, H, D, kv, NKV, idx, 20, sink, scale, got, DSV4_EXACT), 0);
    for (int h = 0; h < H; h++) sink_scaled[h] = (float)(sink[h] * scale);
    oracle(q, kv, idx, 20, sink_scaled, scale, wrong);
    expect_distinguishable("sink scaled vs unscaled", got, wrong, H * D, 1e-3);
    float no_sink[H] = { -INFINITY, -INFINITY, -INFINITY };
    oracle(q, kv, idx, 20, no_sink, scale, wrong);
    expect_distinguishable("sink vs no sink", got, wrong, H * D, 1e-3);
    /* a very negative sink vanishes; a very positive one drives the output to 0 */
    float big[H] = { 80.0f, 80.0f, 80.0f };
    assert_int_equal(sparse_attention(q, H, D, kv, NKV, idx, 20, big, scale, got, DSV4_EXACT), 0);
    for (int i = 0; i < H * D; i++) assert_true(fabsf(got[i]) < 1e-20f);
}

/* Pitfall 13: a row whose list is all -1 gives exactly 0 in both modes (official: no
 * exp(-inf - -inf) NaN); a leading all-masked 64-block followed by valid keys stays finite. */
static void test_all_masked(void **s)
{
    (void)s;
    float q[H * D], kv[NKV * D], sink[H], got[H * D], want[H * D];
    int64_t idx[NKV];
    fill(q, kv, sink, 13);
    for (int i = 0; i < NKV; i++) idx[i] = -1;
    for (int m = 0; m < 2; m++) {
        assert_int_equal(sparse_attention(q, H, D, kv, NKV, idx, NKV, sink, 0.15, got, (dsv4_numerics)m), 0);
        for (int i = 0; i < H * D; i++)
            if (got[i] != 0.0f || signbit(got[i]))
                fail_msg("all-masked row gives %g at %d (mode %d), expected exactly +0\n"
                         "  likely bug: pitfall 13, exp(-inf - -inf) not guarded", got[i], i, m);
    }
    for (int i = 100; i < 120; i++) idx[i] = i;   /* first block (0..63) all masked */
    double scale = 1.0 / sqrt((double)D);
    oracle(q, kv, idx, NKV, sink, scale, want);
    assert_int_equal(sparse_attention(q, H, D, kv, NKV, idx, NKV, sink, scale, got, DSV4_OFFICIAL), 0);
    expect_close("leading masked block", got, want, H * D, 4 * 0.001953125,
                 "pitfall 13: NaN from a leading all-masked block (running max still -inf)");
}

/* -1 entries are the same as absent ones; in exact mode the list order does not matter. */
static void test_mask_and_order(void **s)
{
    (void)s;
    float q[H * D], kv[NKV * D], sink[H], a[H * D], b[H * D];
    int64_t with[30], without[20], rev[20];
    fill(q, kv, sink, 14);
    int n = 0;
    for (int i = 0; i < 30; i++) with[i] = (i % 3 == 2) ? -1 : (i * 7) % NKV;
    for (int i = 0; i < 30; i++) if (with[i] >= 0) without[n++] = with[i];
    for (int i = 0; i < n; i++) rev[i] = without[n - 1 - i];
    assert_int_equal(sparse_attention(q, H, D, kv, NKV, with, 30, sink, 0.2, a, DSV4_EXACT), 0);
    assert_int_equal(sparse_attention(q, H, D, kv, NKV, without, n, sink, 0.2, b, DSV4_EXACT), 0);
    expect_close("-1 vs omitted", a, b, H * D, 1e-6, "pitfall 13: -1 entries contribute");
    assert_int_equal(sparse_attention(q, H, D, kv, NKV, rev, n, sink, 0.2, b, DSV4_EXACT), 0);
    expect_close("list order (exact)", a, b, H * D, 1e-6, "exact mode depends on the list order");
}

/* Bad input: an index outside [-1, n_kv) is an error naming the list position. */
static void test_bad_index(void **s)
{
    (void)s;
    float q[H * D], kv[NKV * D], sink[H], o[H * D];
    int64_t idx[3] = { 0, NKV, 1 };
    fill(q, kv, sink, 15);
    assert_int_equal(sparse_attention(q, H, D, kv, NKV, idx, 3, sink, 0.2, o, DSV4_EXACT), -1);
    assert_non_null(strstr(dsv4_last_error(), "list position 1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_oracle),
        cmocka_unit_test(test_sink_denominator_only),
        cmocka_unit_test(test_all_masked),
        cmocka_unit_test(test_mask_and_order),
        cmocka_unit_test(test_bad_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
