/* test_mha.c — dense causal MHA with RoPE, the baseline of the lineage (spec/mha.md).
 * Config: dim 36, 3 heads, head_dim 10, v_head_dim 14 (all distinct). */
#include "lineage_fixture.h"
#include "mha.h"

static const mha_config k_cfg = { 36, 3, 10, 14, 10000.0 };

static void mha_weights(fixture *f)
{
    fx_weight(f, "mha.wq.weight", 3 * 10, 36, 0.4f);
    fx_weight(f, "mha.wk.weight", 3 * 10, 36, 0.4f);
    fx_weight(f, "mha.wv.weight", 3 * 14, 36, 0.3f);
    fx_weight(f, "mha.wo.weight", 36, 3 * 14, 0.25f);
}

/* Runs x: [B, T, dim] as one prefill of p tokens then T - p decode calls into out. */
static void run_schedule(mha_layer *L, const float *x, float *out, int64_t B, int64_t T, int64_t p)
{
    const int64_t d = k_cfg.dim;
    float *xs = calloc((size_t)(B * T * d), sizeof(float)), *os = calloc((size_t)(B * T * d), sizeof(float));
    assert_non_null(xs); assert_non_null(os);
    for (int64_t start = 0; start < T; ) {
        const int64_t S = start == 0 ? p : 1;
        for (int64_t b = 0; b < B; b++)
            memcpy(xs + b * S * d, x + (b * T + start) * d, (size_t)(S * d) * sizeof(float));
        if (mha_forward(L, xs, os, B, S, start)) fail_msg("%s", dsv4_last_error());
        for (int64_t b = 0; b < B; b++)
            memcpy(out + (b * T + start) * d, os + b * S * d, (size_t)(S * d) * sizeof(float));
        start += S;
    }
    free(xs); free(os);
}

/* Decode token by token must equal one prefill, at positions of several hundred (pitfall 6's
 * lesson: position errors grow with position). exact: <= 1e-6 (the same arithmetic in
 * another grouping of tokens; only fp32 storage can differ). official: every output row is
 * produced by the same operations on the same operands whatever the call size (GEMMs and
 * RoPE are row-wise, attention reads the same cache), so the rows are bit-identical: 0. */
static void test_mha_decode_equals_prefill(void **state)
{
    (void)state;
    const int64_t B = 2, T = 300, d = k_cfg.dim;
    for (int m = 0; m < 2; m++) {
        const dsv4_numerics num = m ? DSV4_OFFICIAL : DSV4_EXACT;
        fixture f;
        fx_init(&f, 11);
        mha_weights(&f);
        dsv4_wlookup w = wtable_lookup(f.t);
        mha_layer *L = mha_layer_new(&k_cfg, &w, "mha", B, T, num);
        if (!L) fail_msg("%s", dsv4_last_error());
        float *x = calloc((size_t)(B * T * d), sizeof(float));
        float *a = calloc((size_t)(B * T * d), sizeof(float)), *b = calloc((size_t)(B * T * d), sizeof(float));
        fx_input(&f.rng, x, B * T * d, 1.0f);
        run_schedule(L, x, a, B, T, T);
        mha_layer_reset(L);
        run_schedule(L, x, b, B, T, 1);
        expect_close(m ? "MHA official: decode vs prefill" : "MHA exact: decode vs prefill", b, a,
                     B * T * d, m ? 0.0 : 1e-6,
                     "decode reads a stale or misplaced cache row, or RoPE uses the call-relative "
                     "instead of the absolute position");
        free(x); free(a); free(b);
        mha_layer_free(L);
        fx_free(&f);
    }
}

/* Causality: changing tokens 20.. leaves the outputs of tokens 0..19 bit-identical (the
 * causal mask) and changes the later ones (the test can see a difference). */
static void test_mha_causal(void **state)
{
    (void)state;
    const int64_t T = 40, d = k_cfg.dim;
    fixture f;
    fx_init(&f, 12);
    mha_weights(&f);
    dsv4_wlookup w = wtable_lookup(f.t);
    mha_layer *L = mha_layer_new(&k_cfg, &w, "mha", 1, T, DSV4_EXACT);
    assert_non_null(L);
    float *x = calloc((size_t)(T * d), sizeof(float)), *a = calloc((size_t)(T * d), sizeof(float));
    float *b = calloc((size_t)(T * d), sizeof(float));
    fx_input(&f.rng, x, T * d, 1.0f);
    assert_int_equal(mha_forward(L, x, a, 1, T, 0), 0);
    for (int64_t i = 20 * d; i < T * d; i++) x[i] = -x[i];
    mha_layer_reset(L);
    assert_int_equal(mha_forward(L, x, b, 1, T, 0), 0);
    expect_close("MHA: rows before the change", b, a, 20 * d, 0.0,
                 "the causal mask lets a query see later tokens");
    expect_distinguishable("MHA: rows after the change", b + 20 * d, a + 20 * d, (T - 20) * d, 1e-2);
    free(x); free(a); free(b);
    mha_layer_free(L);
    fx_free(&f);
}

/* Pitfall 13: -1 keys are masked; a row whose keys are all masked gives exactly 0 (not NaN
 * from 0/0, not a uniform average); masking equals dropping the key. */
static void test_mha_all_masked_row(void **state)
{
    (void)state;
    enum { D = 6, DV = 5, N = 4 };
    float q[D], K[N * D], V[N * DV], o[DV], o2[DV], scratch[N];
    test_rng r = { 77 };
    test_fill(&r, q, D, 1.0f);
    test_fill(&r, K, N * D, 1.0f);
    test_fill(&r, V, N * DV, 1.0f);
    for (int m = 0; m < 2; m++) {
        const dsv4_numerics num = m ? DSV4_OFFICIAL : DSV4_EXACT;
        const int64_t none[N] = { -1, -1, -1, -1 };
        for (int i = 0; i < DV; i++) o[i] = 12345.0f;
        mha_attend_row(q, K, D, V, DV, none, N, D, DV, 0.5, num, scratch, o);
        for (int i = 0; i < DV; i++)
            if (o[i] != 0.0f || signbit(o[i]))
                fail_msg("all-masked row: o[%d] = %g, expected exactly +0; likely bug: pitfall 13, "
                         "softmax over an empty set (0/0 = NaN or -inf - -inf)", i, o[i]);
        const int64_t some[N] = { 2, -1, 0, -1 }, kept[2] = { 2, 0 };
        mha_attend_row(q, K, D, V, DV, some, N, D, DV, 0.5, num, scratch, o);
        mha_attend_row(q, K, D, V, DV, kept, 2, D, DV, 0.5, num, scratch, o2);
        expect_close("masked key == dropped key", o, o2, DV, 0.0,
                     "pitfall 13: a -1 index is read as key 0 or key -1 instead of being skipped");
    }
}

/* State reset between sequences: a layer reused after mha_layer_reset gives exactly what a
 * fresh layer gives on the second sequence (nothing of the first sequence leaks). */
static void test_mha_reset(void **state)
{
    (void)state;
    const int64_t T = 24, d = k_cfg.dim;
    fixture f;
    fx_init(&f, 13);
    mha_weights(&f);
    dsv4_wlookup w = wtable_lookup(f.t);
    mha_layer *L = mha_layer_new(&k_cfg, &w, "mha", 1, 64, DSV4_OFFICIAL);
    mha_layer *F = mha_layer_new(&k_cfg, &w, "mha", 1, 64, DSV4_OFFICIAL);
    assert_non_null(L); assert_non_null(F);
    float *x1 = calloc((size_t)(60 * d), sizeof(float)), *x2 = calloc((size_t)(T * d), sizeof(float));
    float *a = calloc((size_t)(60 * d), sizeof(float)), *b = calloc((size_t)(T * d), sizeof(float));
    fx_input(&f.rng, x1, 60 * d, 1.0f);
    fx_input(&f.rng, x2, T * d, 1.0f);
    assert_int_equal(mha_forward(L, x1, a, 1, 60, 0), 0);
    mha_layer_reset(L);
    run_schedule(L, x2, a, 1, T, 5);
    run_schedule(F, x2, b, 1, T, 5);
    expect_close("MHA: reused layer after reset vs fresh layer", a, b, T * d, 0.0,
                 "reset leaves state of the previous sequence behind");
    assert_int_equal(mha_cache_bytes_per_token(L), 2 * 3 * (10 + 14));
    free(x1); free(x2); free(a); free(b);
    mha_layer_free(L); mha_layer_free(F);
    fx_free(&f);
}

/* Bad input: a missing weight fails with a message naming the tensor; a call past the cache
 * fails cleanly. */
static void test_mha_errors(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, 14);
    fx_weight(&f, "mha.wq.weight", 30, 36, 0.1f);
    dsv4_wlookup w = wtable_lookup(f.t);
    mha_layer *L = mha_layer_new(&k_cfg, &w, "mha", 1, 8, DSV4_EXACT);
    assert_null(L);
    assert_non_null(strstr(dsv4_last_error(), "mha.wk.weight"));
    fx_free(&f);
    fx_init(&f, 14);
    mha_weights(&f);
    w = wtable_lookup(f.t);
    L = mha_layer_new(&k_cfg, &w, "mha", 1, 8, DSV4_EXACT);
    assert_non_null(L);
    float x[36 * 9] = { 0 }, o[36 * 9];
    assert_int_equal(mha_forward(L, x, o, 1, 9, 0), -1);
    assert_non_null(strstr(dsv4_last_error(), "max_seq_len"));
    mha_layer_free(L);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mha_decode_equals_prefill),
        cmocka_unit_test(test_mha_causal),
        cmocka_unit_test(test_mha_all_masked_row),
        cmocka_unit_test(test_mha_reset),
        cmocka_unit_test(test_mha_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
