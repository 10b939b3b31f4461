/* test_mla.c — Multi-head Latent Attention of V2/V3 (spec/mla.md): naive vs absorbed, decode
 * vs prefill, the YaRN mscale^2 softmax factor, q_lora_rank = 0, reset, config parsing.
 * Tiny config of lineage_fixture.h (all dims distinct, YaRN on). */
#include "lineage_fixture.h"

/* Builds a layer over fresh random weights (seed) and runs x through `schedule(p)`. */
static void run_mla(const mla_config *c, uint64_t seed, dsv4_numerics num, mla_path path,
                    const float *x, float *out, int64_t B, int64_t T, int64_t p)
{
    fixture f;
    fx_init(&f, seed);
    fx_mla_weights(&f, c, "attn", 0);
    dsv4_wlookup w = wtable_lookup(f.t);
    mla_layer *L = mla_layer_new(c, &w, "attn", B, c->max_seq_len, num, path, 0);
    if (!L) fail_msg("%s", dsv4_last_error());
    fx_mla_schedule(L, x, out, B, T, c->dim, p, NULL, 0);
    mla_layer_free(L);
    fx_free(&f);
}

static float *make_input(int64_t n, uint64_t seed)
{
    float *x = calloc((size_t)n, sizeof(float));
    test_rng r = { seed };
    assert_non_null(x);
    fx_input(&r, x, n, 1.0f);
    return x;
}

/* ---- an independent oracle ---------------------------------------------------------------- */

static double bw(const dsv4_weight *w, int64_t r, int64_t c)
{
    return (double)bf16_to_float(((const uint16_t *)w->data)[r * w->cols + c]);
}

/* y[rows] = W x (double) */
static void omatvec(const dsv4_weight *w, const double *x, double *y)
{
    for (int64_t r = 0; r < w->rows; r++) {
        double a = 0.0;
        for (int64_t c = 0; c < w->cols; c++) a += bw(w, r, c) * x[c];
        y[r] = a;
    }
}

static void ormsnorm(double *x, const float *g, int64_t n)
{
    double ms = 0.0;
    for (int64_t i = 0; i < n; i++) ms += x[i] * x[i];
    ms = 1.0 / sqrt(ms / (double)n + 1e-6);
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * ms * (double)g[i];
}

/* interleaved pairs (2i, 2i+1), omega_i = theta^(-2i/r), no YaRN */
static void orope(double *v, int64_t r, double theta, int64_t t)
{
    for (int64_t i = 0; i < r / 2; i++) {
        double ph = (double)t * pow(theta, -2.0 * (double)i / (double)r);
        double a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cos(ph) - b * sin(ph);
        v[2 * i + 1] = a * sin(ph) + b * cos(ph);
    }
}

/* MLA straight from the equations ([MLA-1..3], [MLA-6n], [MLA-7]) in double, causal, one
 * sequence x: [T, d] -> out: [T, d]. Written from spec/mla.md, sharing no code with ref/. */
static void oracle_mla(const mla_config *c, const fixture *f, const float *x, int64_t T, double *out)
{
    dsv4_wlookup w = wtable_lookup(f->t);
    const int64_t H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int64_t dv = c->v_head_dim, dqk = dn + dr, rkv = c->kv_lora_rank, rq = c->q_lora_rank, d = c->dim;
    dsv4_weight wqa, wqb, wkva, wkvb, wo;
    float *gq, *gkv;
    assert_int_equal(w.weight(w.ctx, "attn.wq_a.weight", rq, d, &wqa), 0);
    assert_int_equal(w.weight(w.ctx, "attn.wq_b.weight", H * dqk, rq, &wqb), 0);
    assert_int_equal(w.weight(w.ctx, "attn.wkv_a.weight", rkv + dr, d, &wkva), 0);
    assert_int_equal(w.weight(w.ctx, "attn.wkv_b.weight", H * (dn + dv), rkv, &wkvb), 0);
    assert_int_equal(w.weight(w.ctx, "attn.wo.weight", d, H * dv, &wo), 0);
    assert_int_equal(w.floats(w.ctx, "attn.q_norm.weight", rq, &gq), 0);
    assert_int_equal(w.floats(w.ctx, "attn.kv_norm.weight", rkv, &gkv), 0);
    double *q = calloc((size_t)(T * H * dqk), sizeof(double)), *k = calloc((size_t)(T * H * dqk), sizeof(double));
    double *v = calloc((size_t)(T * H * dv), sizeof(double)), *xd = calloc((size_t)d, sizeof(double));
    double *cq = calloc((size_t)rq, sizeof(double)), *kva = calloc((size_t)(rkv + dr), sizeof(double));
    double *kvb = calloc((size_t)(H * (dn + dv)), sizeof(double)), *o = calloc((size_t)(H * dv), sizeof(double));
    double *p = calloc((size_t)T, sizeof(double));
    const double lambda = 1.0 / sqrt((double)dqk);   /* no YaRN in this configuration */
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < d; i++) xd[i] = x[t * d + i];
        omatvec(&wqa, xd, cq);
        ormsnorm(cq, gq, rq);
        omatvec(&wqb, cq, q + t * H * dqk);
        for (int64_t h = 0; h < H; h++) orope(q + (t * H + h) * dqk + dn, dr, c->rope_theta, t);
        omatvec(&wkva, xd, kva);
        ormsnorm(kva, gkv, rkv);
        orope(kva + rkv, dr, c->rope_theta, t);
        omatvec(&wkvb, kva, kvb);
        for (int64_t h = 0; h < H; h++) {
            for (int64_t i = 0; i < dn; i++) k[(t * H + h) * dqk + i] = kvb[h * (dn + dv) + i];
            for (int64_t i = 0; i < dr; i++) k[(t * H + h) * dqk + dn + i] = kva[rkv + i];
            for (int64_t i = 0; i < dv; i++) v[(t * H + h) * dv + i] = kvb[h * (dn + dv) + dn + i];
        }
    }
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < H; h++) {
            double m = -INFINITY, sum = 0.0;
            for (int64_t s = 0; s <= t; s++) {
                double l = 0.0;
                for (int64_t i = 0; i < dqk; i++) l += q[(t * H + h) * dqk + i] * k[(s * H + h) * dqk + i];
                p[s] = l * lambda;
                if (p[s] > m) m = p[s];
            }
            for (int64_t s = 0; s <= t; s++) { p[s] = exp(p[s] - m); sum += p[s]; }
            for (int64_t i = 0; i < dv; i++) {
                double a = 0.0;
                for (int64_t s = 0; s <= t; s++) a += p[s] / sum * v[(s * H + h) * dv + i];
                o[h * dv + i] = a;
            }
        }
        omatvec(&wo, o, out + t * d);
    }
    free(q); free(k); free(v); free(xd); free(cq); free(kva); free(kvb); free(o); free(p);
    free(gq); free(gkv);
}

/* Exact mode against the oracle, both paths, prefill 40 + 24 decode calls (positions to 63),
 * <= 1e-6 (spec/tolerances.md: exact vs an fp64 oracle; fp32 storage of ~10 intermediates).
 * Traps pitfall 2 without any golden file: RoPE pairs (interleaved), rope dims LAST in each
 * query head ([nope | rope]), one shared rope key, W_UK rows before W_UV rows per head. */
static void test_mla_exact_vs_oracle(void **state)
{
    (void)state;
    mla_config c = fx_mla_config();
    c.max_seq_len = 64;   /* == original_seq_len: no YaRN, lambda = d_qk^-1/2 (oracle stays simple) */
    const int64_t T = 64, n = T * c.dim;
    float *x = make_input(n, 27);
    double *want = calloc((size_t)n, sizeof(double));
    float *wantf = calloc((size_t)n, sizeof(float)), *got = calloc((size_t)n, sizeof(float));
    fixture f;
    fx_init(&f, 28);
    fx_mla_weights(&f, &c, "attn", 0);
    oracle_mla(&c, &f, x, T, want);
    for (int64_t i = 0; i < n; i++) wantf[i] = (float)want[i];
    dsv4_wlookup w = wtable_lookup(f.t);
    for (int path = 0; path < 2; path++) {
        mla_layer *L = mla_layer_new(&c, &w, "attn", 1, T, DSV4_EXACT, (mla_path)path, 0);
        assert_non_null(L);
        fx_mla_schedule(L, x, got, 1, T, c.dim, 40, NULL, 0);
        expect_close(path ? "MLA absorbed (exact) vs oracle" : "MLA naive (exact) vs oracle", got, wantf, n, 1e-6,
                     "pitfall 2: MLA RoPE must rotate interleaved pairs of the LAST qk_rope_head_dim "
                     "dims of each query head and the one shared k_R; or W_UK/W_UV rows swapped, "
                     "or the kv_norm applied to the rope part");
        mla_layer_free(L);
    }
    fx_free(&f);
    free(x); free(want); free(wantf); free(got);
}

/* [MLA-10] naive == absorbed in exact arithmetic (associativity: q.(W_UK c) = (W_UK^T q).c and
 * linearity: sum p W_UV c = W_UV sum p c). exact mode <= 1e-6 (fp32 storage of q~ and o~ is
 * the only difference). Traps pitfall 2: RoPE applied to the latent (or to k_C) instead of the
 * decoupled shared k_R breaks the absorption; so does a per-head instead of shared rope key.
 * Run for both the low-rank query and the direct wq (q_lora_rank = 0, V2-Lite). */
static void test_mla_naive_equals_absorbed_exact(void **state)
{
    (void)state;
    const int64_t B = 2, T = 70;
    for (int direct = 0; direct < 2; direct++) {
        mla_config c = fx_mla_config();
        if (direct) c.q_lora_rank = 0;
        float *x = make_input(B * T * c.dim, 21);
        float *a = calloc((size_t)(B * T * c.dim), sizeof(float)), *b = calloc((size_t)(B * T * c.dim), sizeof(float));
        run_mla(&c, 5, DSV4_EXACT, MLA_NAIVE, x, a, B, T, 60);
        run_mla(&c, 5, DSV4_EXACT, MLA_ABSORBED, x, b, B, T, 60);
        expect_close(direct ? "MLA (wq direct) absorbed vs naive" : "MLA absorbed vs naive", b, a,
                     B * T * c.dim, 1e-6,
                     "pitfall 2: RoPE on the latent / per-head rope key instead of the shared k_R, "
                     "or W_UK / W_UV rows mixed up (rows 0..nope-1 of each head are W_UK)");
        free(x); free(a); free(b);
    }
}

/* Decode token by token == one prefill, at positions up to 300 (errors of position handling
 * grow with the position). exact: <= 1e-6 for both paths. official, same path: every row is
 * computed by the same operations on the same operands (row-wise GEMMs and RoPE, attention
 * over the same cache), so bit-identical: 0. */
static void test_mla_decode_equals_prefill(void **state)
{
    (void)state;
    const mla_config c = fx_mla_config();
    const int64_t B = 2, T = 300, n = B * T * c.dim;
    float *x = make_input(n, 22);
    float *a = calloc((size_t)n, sizeof(float)), *b = calloc((size_t)n, sizeof(float));
    for (int m = 0; m < 2; m++)
        for (int path = 0; path < 2; path++) {
            const dsv4_numerics num = m ? DSV4_OFFICIAL : DSV4_EXACT;
            run_mla(&c, 6, num, (mla_path)path, x, a, B, T, T);
            run_mla(&c, 6, num, (mla_path)path, x, b, B, T, 1);
            char what[96];
            snprintf(what, sizeof what, "MLA %s %s: decode vs prefill", m ? "official" : "exact",
                     path ? "absorbed" : "naive");
            expect_close(what, b, a, n, m ? 0.0 : 1e-6,
                         "the decode call reads a stale/misplaced cache row, rotates with the "
                         "call-relative position, or caches k_R before RoPE");
        }
    free(x); free(a); free(b);
}

/* Official numerics, path MLA_V32 as the official V3.2 graph: prefill through the naive (MHA)
 * form, decode through the absorbed (MQA) form. The two forms round at different points:
 *   naive    k_C and v per head -> bf16; one bf16 dot product over d_qk, bf16(. lambda);
 *   absorbed q~ (kv_lora_rank values) -> bf16; two bf16 partial logits, a bf16 sum,
 *            bf16(. lambda); o~ -> bf16; o = bf16(W_UV o~).
 * Derived limit for a decode row vs the prefill row of the same token, two parts:
 *  (a) value side: about n = 4 differing roundings on the path to o (v or o~, o, k_C or q~,
 *      the output), each a relative 2^-8 where they disagree: sqrt(4) 2^-8 = 7.8e-3;
 *  (b) logit side: a rounding of a logit partial of magnitude |l| moves it by up to 2^-9 |l|
 *      and p_j by the same RELATIVE amount (dp/p = dl): it scales with the logit size. Here
 *      lambda = 20^-1/2 m^2 = 0.419 and q.k has std ~ sqrt(20) (unit-variance q, k), so
 *      |l| has std ~ 1.9 and max ~ 6 over the keys; the absorbed path rounds 3 partials where
 *      the naive rounds 1: RMS 2 * 2^-9 * 1.9 = 7.4e-3, worst row ~ 3 * 2^-9 * 6 = 3.5e-2.
 * Pooled: sqrt(7.8e-3^2 + 7.4e-3^2) = 1.1e-2 -> limit 1.5e-2; worst row 7.8e-3 + 3.5e-2
 * -> limit 6e-2. (The real judge of the official path is test_official_v32, at 1e-7.)
 * The rows must also differ at all: the paths really are different. */
static void test_mla_official_v32_schedule(void **state)
{
    (void)state;
    const mla_config c = fx_mla_config();
    const int64_t B = 2, T = 120, n = B * T * c.dim;
    float *x = make_input(n, 23);
    float *a = calloc((size_t)n, sizeof(float)), *b = calloc((size_t)n, sizeof(float));
    run_mla(&c, 7, DSV4_OFFICIAL, MLA_V32, x, a, B, T, T);
    run_mla(&c, 7, DSV4_OFFICIAL, MLA_V32, x, b, B, T, 2);
    const double worst = max_row_rel(b, a, B * T, c.dim), pooled = rel_l2(b, a, n);
    print_message("      official MLA_V32 decode vs prefill: pooled rel-L2 %.3e, worst row %.3e\n",
                  pooled, worst);
    if (pooled > 1.5e-2 || worst > 6e-2)
        fail_msg("official decode (absorbed) vs prefill (naive): pooled %.3e (limit 1.5e-2), worst "
                 "row %.3e (limit 6e-2); likely bug: a missing or extra bf16 rounding in one path, "
                 "or lambda applied to each partial logit instead of their sum", pooled, worst);
    assert_true(pooled > 0.0);
    free(x); free(a); free(b);
}

/* Pitfall 1: lambda = d_qk^-1/2 * m^2, m = 0.1 mscale ln(rope_factor) + 1, iff
 * max_seq_len > original_seq_len. The official constants (mla-dsa.md §1.5): V3 0.1352337788608801,
 * V2-Lite (mscale 0.707) 0.1147213867929261; without YaRN 192^-1/2. The factor must change the
 * output of the tiny layer visibly. */
static void test_mla_mscale(void **state)
{
    (void)state;
    mla_config v3;
    mla_config_defaults(&v3);
    v3.qk_nope_head_dim = 128; v3.qk_rope_head_dim = 64;
    double l = mla_softmax_scale(&v3);
    if (fabs(l - 0.1352337788608801) > 1e-15)
        fail_msg("V3 softmax scale %.17g != 0.1352337788608801; likely bug: pitfall 1, mscale "
                 "missing or not squared", l);
    v3.mscale = 0.707;
    l = mla_softmax_scale(&v3);
    if (fabs(l - 0.1147213867929261) > 1e-15)
        fail_msg("V2-Lite softmax scale %.17g != 0.1147213867929261; likely bug: mscale not read "
                 "from the config", l);
    v3.max_seq_len = 4096;   /* == original_seq_len: no YaRN, no mscale */
    l = mla_softmax_scale(&v3);
    if (fabs(l - pow(192.0, -0.5)) > 1e-17)
        fail_msg("softmax scale without YaRN %.17g != 192^-1/2; likely bug: mscale applied when "
                 "max_seq_len <= original_seq_len", l);

    mla_config c = fx_mla_config(), c0 = fx_mla_config();
    c0.mscale = 0.0;   /* m = 1: the same YaRN frequencies, lambda without the m^2 factor */
    const int64_t B = 1, T = 50, n = B * T * c.dim;
    float *x = make_input(n, 24);
    float *a = calloc((size_t)n, sizeof(float)), *b = calloc((size_t)n, sizeof(float));
    for (int m = 0; m < 2; m++) {
        run_mla(&c, 8, m ? DSV4_OFFICIAL : DSV4_EXACT, MLA_ABSORBED, x, a, B, T, T);
        run_mla(&c0, 8, m ? DSV4_OFFICIAL : DSV4_EXACT, MLA_ABSORBED, x, b, B, T, T);
        expect_distinguishable("MLA output with vs without the mscale^2 factor", a, b, n, 1e-2);
    }
    free(x); free(a); free(b);
}

/* State reset between sequences: reuse after mla_layer_reset == a fresh layer (all paths). */
static void test_mla_reset(void **state)
{
    (void)state;
    const mla_config c = fx_mla_config();
    const int64_t T = 30, n = T * c.dim;
    float *x1 = make_input(3 * n, 25), *x2 = make_input(n, 26);
    float *a = calloc((size_t)(3 * n), sizeof(float)), *b = calloc((size_t)n, sizeof(float));
    for (int path = 0; path < 3; path++) {
        fixture f;
        fx_init(&f, 9);
        fx_mla_weights(&f, &c, "attn", 0);
        dsv4_wlookup w = wtable_lookup(f.t);
        mla_layer *L = mla_layer_new(&c, &w, "attn", 1, 128, DSV4_OFFICIAL, (mla_path)path, 0);
        assert_non_null(L);
        fx_mla_schedule(L, x1, a, 1, 3 * T, c.dim, 3 * T - 4, NULL, 0);
        mla_layer_reset(L);
        fx_mla_schedule(L, x2, a, 1, T, c.dim, 7, NULL, 0);
        mla_layer_free(L);
        fx_free(&f);
        run_mla(&c, 9, DSV4_OFFICIAL, (mla_path)path, x2, b, 1, T, 7);
        expect_close("MLA: reused layer after reset vs fresh layer", a, b, n, 0.0,
                     "reset leaves cache entries of the previous sequence behind");
    }
    free(x1); free(x2); free(a); free(b);
}

/* V3 graph with FP8 weights: the official V3 demo (gemm_impl "bf16") dequantizes an FP8
 * weight to bf16, bf16(f32(e4m3) * scale), and runs a bf16 GEMM; a V3 layer reading an FP8
 * wo must equal, bit for bit, a layer reading those bf16 values. (The V3.2 graph would run
 * the FP8 GEMM with activation quantization instead; it needs K % 128 == 0.) */
static void test_mla_v3_fp8_weights(void **state)
{
    (void)state;
    const mla_config c = fx_mla_config();
    const int64_t T = 12, n = T * c.dim, R = c.dim, C = c.n_heads * c.v_head_dim;
    const int64_t dqk = c.qk_nope_head_dim + c.qk_rope_head_dim;
    fixture f;
    fx_init(&f, 29);
    fx_mla_weights(&f, &c, "attn", 0);
    uint8_t *codes = calloc((size_t)(R * C), 1), scale = e8m0_from_float(0.0078125f);
    uint16_t *deq = calloc((size_t)(R * C), sizeof(uint16_t));
    test_rng r = { 30 };
    for (int64_t i = 0; i < R * C; i++) {
        codes[i] = e4m3_from_float(40.0f * test_rng_uniform(&r));
        deq[i] = bf16_from_float(e4m3_to_float(codes[i]) * e8m0_to_float(scale));
    }
    dsv4_weight w8, wb;
    memset(&w8, 0, sizeof w8);
    memset(&wb, 0, sizeof wb);
    w8.dtype = DSV4_F8_E4M3; w8.rows = R; w8.cols = C; w8.data = codes;
    w8.scale_dtype = DSV4_F8_E8M0; w8.scale = &scale;
    wb.dtype = DSV4_BF16; wb.rows = R; wb.cols = C; wb.data = deq;
    /* two tables sharing every weight but wo */
    wtable *t[2] = { wtable_new(), wtable_new() };
    dsv4_wlookup src = wtable_lookup(f.t);
    const char *leaves[4] = { "wq_a", "wq_b", "wkv_a", "wkv_b" };
    const int64_t rows[4] = { c.q_lora_rank, c.n_heads * dqk, c.kv_lora_rank + c.qk_rope_head_dim,
                              c.n_heads * (c.qk_nope_head_dim + c.v_head_dim) };
    const int64_t cols[4] = { c.dim, c.q_lora_rank, c.dim, c.kv_lora_rank };
    const char *norms[2] = { "attn.q_norm.weight", "attn.kv_norm.weight" };
    const int64_t nn[2] = { c.q_lora_rank, c.kv_lora_rank };
    for (int j = 0; j < 2; j++) {
        for (int i = 0; i < 4; i++) {
            char nm[64];
            dsv4_weight x;
            snprintf(nm, sizeof nm, "attn.%s.weight", leaves[i]);
            assert_int_equal(src.weight(src.ctx, nm, rows[i], cols[i], &x), 0);
            assert_int_equal(wtable_add_weight(t[j], nm, &x), 0);
        }
        for (int i = 0; i < 2; i++) {
            float *g;
            assert_int_equal(src.floats(src.ctx, norms[i], nn[i], &g), 0);
            assert_int_equal(wtable_add_floats(t[j], norms[i], g, nn[i]), 0);
            free(g);
        }
        assert_int_equal(wtable_add_weight(t[j], "attn.wo.weight", j ? &wb : &w8), 0);
    }
    float *x = make_input(n, 31), *o[2];
    for (int j = 0; j < 2; j++) {
        dsv4_wlookup w = wtable_lookup(t[j]);
        mla_layer *L = mla_layer_new(&c, &w, "attn", 1, 64, DSV4_OFFICIAL, MLA_ABSORBED, 0);
        if (!L) fail_msg("%s", dsv4_last_error());
        o[j] = calloc((size_t)n, sizeof(float));
        fx_mla_schedule(L, x, o[j], 1, T, c.dim, T, NULL, 0);
        mla_layer_free(L);
    }
    expect_close("V3: FP8 wo vs its bf16 dequantization", o[0], o[1], n, 0.0,
                 "the V3 graph (gemm_impl bf16) must dequantize FP8 weights to bf16 and run a bf16 "
                 "GEMM, not the V3.2 FP8 GEMM with activation quantization");
    wtable_free(t[0]); wtable_free(t[1]);
    free(x); free(o[0]); free(o[1]); free(codes); free(deq);
    fx_free(&f);
}

/* Config from the official ModelArgs JSON (the golden file's metadata), and bad input. */
static void test_mla_config_and_errors(void **state)
{
    (void)state;
    const char *js = "{\"dim\": 160, \"n_heads\": 4, \"q_lora_rank\": 96, \"kv_lora_rank\": 256,"
                     " \"qk_nope_head_dim\": 48, \"qk_rope_head_dim\": 64, \"v_head_dim\": 56,"
                     " \"original_seq_len\": 128, \"rope_factor\": 40.0, \"mscale\": 1.0,"
                     " \"max_seq_len\": 256, \"index_n_heads\": 6, \"index_head_dim\": 128,"
                     " \"index_topk\": 12, \"score_func\": \"softmax\"}";
    mla_config c;
    assert_int_equal(mla_config_from_json(&c, js, strlen(js), "cfg"), 0);
    assert_int_equal(c.dim, 160); assert_int_equal(c.kv_lora_rank, 256);
    assert_int_equal(c.qk_nope_head_dim, 48); assert_int_equal(c.v_head_dim, 56);
    assert_int_equal(c.index_topk, 12); assert_int_equal(c.v32, 1);
    assert_true(fabs(mla_softmax_scale(&c) - 0.17706257946997198) < 1e-15);
    assert_int_equal(c.rope_theta, 10000.0);   /* default kept */
    const char *bad = "{\"dim\": 1.5}";
    assert_int_equal(mla_config_from_json(&c, bad, strlen(bad), "cfg.json"), -1);
    assert_non_null(strstr(dsv4_last_error(), "dim"));
    const char *odd = "{\"qk_rope_head_dim\": 7}";
    assert_int_equal(mla_config_from_json(&c, odd, strlen(odd), "cfg.json"), 0);
    assert_int_equal(mla_config_validate(&c, 0, "cfg.json"), -1);
    assert_non_null(strstr(dsv4_last_error(), "qk_rope_head_dim"));

    /* a missing weight names the tensor; cache bytes per token */
    mla_config t = fx_mla_config();
    fixture f;
    fx_init(&f, 10);
    fx_mla_weights(&f, &t, "attn", 0);
    dsv4_wlookup w = wtable_lookup(f.t);
    assert_null(mla_layer_new(&t, &w, "attn", 1, 16, DSV4_EXACT, MLA_NAIVE, 1));
    assert_non_null(strstr(dsv4_last_error(), "attn.indexer.wq_b.weight"));
    mla_layer *L = mla_layer_new(&t, &w, "attn", 1, 16, DSV4_EXACT, MLA_NAIVE, 0);
    assert_non_null(L);
    assert_int_equal(mla_cache_bytes_per_token(L), 2 * 3 * (20 + 10));   /* bf16 k and v per head */
    float x[40 * 17] = { 0 }, o[40 * 17];
    x[3] = NAN;
    assert_int_equal(mla_forward(L, x, o, 1, 1, 0, NULL, ""), -1);
    assert_non_null(strstr(dsv4_last_error(), "non-finite"));
    mla_layer_free(L);
    L = mla_layer_new(&t, &w, "attn", 1, 16, DSV4_EXACT, MLA_ABSORBED, 0);
    assert_int_equal(mla_cache_bytes_per_token(L), 2 * (28 + 8));        /* bf16 latent + k_R */
    x[3] = 0.0f;
    assert_int_equal(mla_forward(L, x, o, 1, 17, 0, NULL, ""), -1);
    mla_layer_free(L);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mla_exact_vs_oracle),
        cmocka_unit_test(test_mla_naive_equals_absorbed_exact),
        cmocka_unit_test(test_mla_decode_equals_prefill),
        cmocka_unit_test(test_mla_official_v32_schedule),
        cmocka_unit_test(test_mla_mscale),
        cmocka_unit_test(test_mla_reset),
        cmocka_unit_test(test_mla_v3_fp8_weights),
        cmocka_unit_test(test_mla_config_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
