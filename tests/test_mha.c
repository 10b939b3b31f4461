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

/* [MHA-1..MHA-7] in double straight from the equations (shares no code with ref/):
 * x: [T, d] one sequence -> out: [T, d]. */
static void oracle_mha(const fixture *f, const float *x, int64_t T, double *out)
{
    const int64_t H = k_cfg.n_heads, D = k_cfg.head_dim, Dv = k_cfg.v_head_dim, d = k_cfg.dim;
    dsv4_wlookup w = wtable_lookup(f->t);
    dsv4_weight W[4];
    const char *names[4] = { "mha.wq.weight", "mha.wk.weight", "mha.wv.weight", "mha.wo.weight" };
    const int64_t rows[4] = { H * D, H * D, H * Dv, d }, cols[4] = { d, d, d, H * Dv };
    for (int i = 0; i < 4; i++) assert_int_equal(w.weight(w.ctx, names[i], rows[i], cols[i], &W[i]), 0);
    double *q = calloc((size_t)(T * H * D), sizeof(double)), *k = calloc((size_t)(T * H * D), sizeof(double));
    double *v = calloc((size_t)(T * H * Dv), sizeof(double)), *o = calloc((size_t)(H * Dv), sizeof(double));
    double *p = calloc((size_t)T, sizeof(double));
    for (int64_t t = 0; t < T; t++)
        for (int m = 0; m < 3; m++) {
            double *dst = m == 0 ? q + t * H * D : m == 1 ? k + t * H * D : v + t * H * Dv;
            for (int64_t r = 0; r < rows[m]; r++) {
                double a = 0.0;
                for (int64_t c = 0; c < d; c++)
                    a += (double)bf16_to_float(((const uint16_t *)W[m].data)[r * d + c]) * (double)x[t * d + c];
                dst[r] = a;
            }
            if (m == 2) continue;
            for (int64_t h = 0; h < H; h++)          /* interleaved pairs over the whole head */
                for (int64_t i = 0; i < D / 2; i++) {
                    double ph = (double)t * pow(k_cfg.rope_theta, -2.0 * (double)i / (double)D);
                    double *e = dst + h * D + 2 * i, a = e[0], b = e[1];
                    e[0] = a * cos(ph) - b * sin(ph);
                    e[1] = a * sin(ph) + b * cos(ph);
                }
        }
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < H; h++) {
            double mx = -INFINITY, sum = 0.0;
            for (int64_t s = 0; s <= t; s++) {
                double l = 0.0;
                for (int64_t i = 0; i < D; i++) l += q[(t * H + h) * D + i] * k[(s * H + h) * D + i];
                p[s] = l / sqrt((double)D);
                if (p[s] > mx) mx = p[s];
            }
            for (int64_t s = 0; s <= t; s++) { p[s] = exp(p[s] - mx); sum += p[s]; }
            for (int64_t i = 0; i < Dv; i++) {
                double a = 0.0;
                for (int64_t s = 0; s <= t; s++) a += p[s] / sum * v[(s * H + h) * Dv + i];
                o[h * Dv + i] = a;
            }
        }
        for (int64_t r = 0; r < d; r++) {
            double a = 0.0;
            for (int64_t c = 0; c < H * Dv; c++)
                a += (double)bf16_to_float(((const uint16_t *)W[3].data)[r * H * Dv + c]) * o[c];
            out[t * d + r] = a;
        }
    }
    free(q); free(k); free(v); free(o); free(p);
}

/* Exact mode vs the oracle, prefill 50 + 30 decode calls (positions to 79), <= 1e-6
 * (spec/tolerances.md: fp32 storage of a handful of intermediates). Traps pitfall 2 (RoPE
 * pairs / position), the 1/sqrt(D) scale, causality. */
static void test_mha_exact_vs_oracle(void **state)
{
    (void)state;
    const int64_t T = 80, d = k_cfg.dim;
    fixture f;
    fx_init(&f, 15);
    mha_weights(&f);
    dsv4_wlookup w = wtable_lookup(f.t);
    mha_layer *L = mha_layer_new(&k_cfg, &w, "mha", 1, T, DSV4_EXACT);
    assert_non_null(L);
    float *x = calloc((size_t)(T * d), sizeof(float)), *got = calloc((size_t)(T * d), sizeof(float));
    float *wantf = calloc((size_t)(T * d), sizeof(float));
    double *want = calloc((size_t)(T * d), sizeof(double));
    fx_input(&f.rng, x, T * d, 1.0f);
    run_schedule(L, x, got, 1, T, 50);
    oracle_mha(&f, x, T, want);
    for (int64_t i = 0; i < T * d; i++) wantf[i] = (float)want[i];
    expect_close("MHA (exact) vs oracle", got, wantf, T * d, 1e-6,
                 "pitfall 2: RoPE pairs must be interleaved (2i, 2i+1) at the absolute position; "
                 "or the softmax scale is not head_dim^-1/2, or the mask is not causal");
    free(x); free(got); free(wantf); free(want);
    mha_layer_free(L);
    fx_free(&f);
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
        cmocka_unit_test(test_mha_exact_vs_oracle),
        cmocka_unit_test(test_mha_decode_equals_prefill),
        cmocka_unit_test(test_mha_causal),
        cmocka_unit_test(test_mha_all_masked_row),
        cmocka_unit_test(test_mha_reset),
        cmocka_unit_test(test_mha_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
