/* test_official_v32.c — the done criterion of the lineage: in official numerics the MLA + DSA
 * reference reproduces DeepSeek's official V3.2-Exp code (87e509a2, after the 2025-11-17
 * indexer fix) on ../shared/official-golden/v32_mla_dsa_bf16.safetensors.gz.
 *
 * The file holds one official MLA module with its Indexer ("layers.0.attn"), bf16 weights,
 * inputs.x [B, total_len, dim] and the schedule prefill 96 + 8 decode calls, batch 2. We run
 * the same schedule through mla_forward (path MLA_V32: the naive/MHA path for the prefill,
 * the absorbed/MQA path for the decode calls, exactly as the official graph) and judge our
 * taps as ../shared/tools/official_compare.py does in teacher mode:
 *   float taps  per token row rel-L2; pooled over the rows <= 1e-2; at most 1% of the rows
 *               above 5e-2 (none with < 20 rows); rows whose top-k set differs are excused;
 *   index taps  per row Jaccard of the sets (-1 dropped), mean >= 0.98.
 * The achieved numbers are printed. Calibration of the official code against itself (fp64
 * instead of fp32 accumulation) is 1e-4..1e-3 — a faithful reference lands there.
 * Our taps are also saved to $TMPDIR/dsv4ref_v32_taps.safetensors so the Python judge can be
 * run by hand:  ../shared/tools/official_compare.py GOLDEN $TMPDIR/dsv4ref_v32_taps.safetensors
 *
 * Pitfalls trapped (peers-and-style.md §1e): 1 (mscale^2 in the softmax scale: this case has
 * max_seq_len 256 > original_seq_len 128), 2 (interleaved MLA RoPE on the LAST dims of q/k),
 * 3 (half-split indexer RoPE on the FIRST 64 dims), 4 (LayerNorm with bias, Hadamard, FP8 q/k,
 * head weights of both signs), 5 (top-k 12 of up to 104), 12 (ties: compared as sets). */
/* the installed cmocka.h declares print_error, not cm_print_error (used by testutil.h) */
#ifndef cm_print_error
#define cm_print_error print_error
#endif
#include "testutil.h"
#include "dsv4ref.h"
#include "json.h"
#include "mla.h"
#include "numerics.h"
#include "rope.h"
#include "safetensors.h"
#include "taps.h"
#include "wtable.h"

static char g_golden[1024];
static st_file *g_file;

static int setup(void **state)
{
    (void)state;
    snprintf(g_golden, sizeof g_golden, "%s/v32_mla_dsa_bf16.safetensors.gz", official_golden_dir());
    g_file = st_open(g_golden);
    if (!g_file) {
        print_error("cannot open the official golden file: %s\n", dsv4_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    st_close(g_file);
    return 0;
}

static void load_config(mla_config *c)
{
    const char *cj = st_meta(g_file, "config");
    assert_non_null(cj);
    if (mla_config_from_json(c, cj, strlen(cj), g_golden)) fail_msg("%s", dsv4_last_error());
    assert_true(c->v32);
}

/* The softmax scale of the file (what the official code used) must be ours (pitfall 1). */
static void test_softmax_scale(void **state)
{
    (void)state;
    mla_config c;
    load_config(&c);
    double want = atof(st_meta(g_file, "softmax_scale"));
    double got = mla_softmax_scale(&c);
    double no_mscale = pow((double)(c.qk_nope_head_dim + c.qk_rope_head_dim), -0.5);
    if (fabs(got - want) > 1e-15 * want)
        fail_msg("softmax scale %.17g, official %.17g; likely bug: pitfall 1, the YaRN mscale^2 "
                 "factor (applies iff max_seq_len > original_seq_len) missing or not squared", got, want);
    assert_true(fabs(no_mscale - want) > 0.1 * want);   /* the case can tell the two apart */
}

/* Our official-mode RoPE table equals the official one (aux.freqs_cis) to the last bits. */
static void test_rope_table(void **state)
{
    (void)state;
    mla_config c;
    load_config(&c);
    const st_tensor *t = st_find(g_file, "aux.freqs_cis");
    assert_non_null(t);
    rope_freqs f;
    assert_int_equal(rope_freqs_init(&f, (int)c.qk_rope_head_dim, c.rope_theta,
                                     c.max_seq_len > c.original_seq_len, c.rope_factor,
                                     c.original_seq_len, c.beta_fast, c.beta_slow, DSV4_OFFICIAL), 0);
    const int64_t P = t->shape[0], half = t->shape[1];
    double worst = 0.0;
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < half; i++) {
            float cs, sn;
            rope_cos_sin(&f, p, (int)i, &cs, &sn);
            double dc = fabs(cs - st_get_f64(t, (p * half + i) * 2));
            double ds = fabs(sn - st_get_f64(t, (p * half + i) * 2 + 1));
            if (dc > worst) worst = dc;
            if (ds > worst) worst = ds;
        }
    rope_freqs_free(&f);
    print_message("      RoPE table vs official aux.freqs_cis: max abs diff %.3e\n", worst);
    if (worst > 1e-6)
        fail_msg("RoPE table differs from the official one by %.3e; likely bug: YaRN ramp, fp32 "
                 "angle or frequency order", worst);
}

/* ---- the schedule ---- */

typedef struct { int64_t start, len; } call_t;

static int parse_schedule(call_t *calls, int max_calls)
{
    const char *s = st_meta(g_file, "schedule");
    char err[128];
    json_value *v = json_parse(s, strlen(s), err, sizeof err);
    if (!v || v->type != JSON_ARRAY) fail_msg("schedule: %s", err);
    int n = (int)v->n;
    assert_true(n <= max_calls);
    for (int i = 0; i < n; i++) {
        assert_int_equal(json_int64(json_get(v->items[i], "start_pos"), &calls[i].start), 0);
        assert_int_equal(json_int64(json_get(v->items[i], "len"), &calls[i].len), 0);
    }
    json_free(v);
    return n;
}

/* Jaccard of two index rows as sets (-1 dropped). */
static double jaccard(const int64_t *a, const st_tensor *g, int64_t off, int64_t k)
{
    int64_t inter = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < k; i++) {
        if (a[i] >= 0) na++;
        int64_t gi = st_get_i64(g, off + i);
        if (gi >= 0) nb++;
    }
    for (int64_t i = 0; i < k; i++) {
        if (a[i] < 0) continue;
        for (int64_t j = 0; j < k; j++)
            if (st_get_i64(g, off + j) == a[i]) { inter++; break; }
    }
    int64_t uni = na + nb - inter;
    return uni == 0 ? 1.0 : (double)inter / (double)uni;
}

static void test_official_v32_taps(void **state)
{
    (void)state;
    mla_config c;
    load_config(&c);
    const st_tensor *xin = st_find(g_file, "inputs.x");
    assert_non_null(xin);
    const int64_t B = xin->shape[0], T = xin->shape[1], dim = xin->shape[2];
    assert_int_equal(dim, c.dim);
    call_t calls[64];
    const int ncalls = parse_schedule(calls, 64);

    dsv4_wlookup w = wlookup_st(g_file);
    assert_int_equal(mla_official_path(&c), MLA_V32);
    mla_layer *L = mla_layer_new(&c, &w, "layers.0.attn", B, c.max_seq_len, DSV4_OFFICIAL,
                                 mla_official_path(&c), c.v32);
    if (!L) fail_msg("%s", dsv4_last_error());
    dsv4_taps *taps = dsv4_taps_new();
    assert_non_null(taps);

    double num_in = 0.0, den_in = 0.0, worst = 0.0, jac_sum = 0.0;
    int64_t rows = 0, outliers = 0, excused = 0, irows = 0, worst_call = -1, worst_row = -1;
    for (int ci = 0; ci < ncalls; ci++) {
        const int64_t S = calls[ci].len, sp = calls[ci].start;
        float *x = calloc((size_t)(B * S * dim), sizeof(float));
        float *out = calloc((size_t)(B * S * dim), sizeof(float));
        assert_non_null(x); assert_non_null(out);
        for (int64_t b = 0; b < B; b++)
            for (int64_t s = 0; s < S; s++)
                for (int64_t d = 0; d < dim; d++)
                    x[(b * S + s) * dim + d] = (float)st_get_f64(xin, (b * T + sp + s) * dim + d);
        char pre[64], name[96];
        snprintf(pre, sizeof pre, "taps.%d.layers.0", ci);
        if (mla_forward(L, x, out, B, S, sp, taps, pre)) fail_msg("%s", dsv4_last_error());
        int64_t shape[3] = { B, S, dim };
        assert_int_equal(dsv4_tap(taps, DSV4_BF16, 3, shape, out, "%s.attn", pre), 0);

        /* index taps as sets; rows with a different set are excused downstream */
        int64_t k;
        const int64_t *tk = mla_last_topk(L, &k);
        snprintf(name, sizeof name, "%s.attn.indexer", pre);
        const st_tensor *gi = st_find(g_file, name);
        assert_non_null(gi);
        assert_int_equal(gi->shape[2], k);
        char *bad = calloc((size_t)(B * S), 1);
        for (int64_t r = 0; r < B * S; r++) {
            double j = jaccard(tk + r * k, gi, r * k, k);
            jac_sum += j;
            irows++;
            bad[r] = j < 1.0;
        }
        /* attention output rows */
        snprintf(name, sizeof name, "%s.attn", pre);
        const st_tensor *ga = st_find(g_file, name);
        assert_non_null(ga);
        const float *ours = dsv4_taps_find_f32(taps, name, NULL, NULL);   /* bf16-rounded copy */
        assert_non_null(ours);
        for (int64_t r = 0; r < B * S; r++) {
            if (bad[r]) { excused++; continue; }
            double nn = 0.0, dd = 0.0;
            for (int64_t d = 0; d < dim; d++) {
                double gv = st_get_f64(ga, r * dim + d), e = (double)ours[r * dim + d] - gv;
                nn += e * e;
                dd += gv * gv;
            }
            double rel = dd > 0.0 ? sqrt(nn / dd) : sqrt(nn);
            rows++;
            if (rel > worst) { worst = rel; worst_call = ci; worst_row = r; }
            if (rel > 5e-2) outliers++;
            else { num_in += nn; den_in += dd; }
        }
        free(bad); free(x); free(out);
    }
    const double pooled = den_in > 0.0 ? sqrt(num_in / den_in) : 0.0;
    const double mean_j = jac_sum / (double)irows;
    const int64_t allowed = rows < 20 ? 0 : (rows / 100 > 1 ? rows / 100 : 1);
    print_message("      layers.0.attn: %lld rows, pooled rel-L2 %.3e (limit 1e-2), outliers %lld "
                  "(allowed %lld), %lld excused, worst row %.3e (call %lld row %lld)\n",
                  (long long)rows, pooled, (long long)outliers, (long long)allowed,
                  (long long)excused, worst, (long long)worst_call, (long long)worst_row);
    print_message("      layers.0.attn.indexer: %lld rows, mean Jaccard %.4f (limit 0.98)\n",
                  (long long)irows, mean_j);

    char path[1024];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/dsv4ref_v32_taps.safetensors", tmp && *tmp ? tmp : "/tmp");
    const char *meta[] = { "case", "v32_mla_dsa_bf16", "numerics", "official", "source",
                           "dsv4ref " DSV4REF_VERSION " test_official_v32", NULL };
    if (dsv4_taps_save(taps, path, meta)) fail_msg("%s", dsv4_last_error());
    print_message("      taps saved to %s\n", path);

    if (mean_j < 0.98)
        fail_msg("index sets: mean Jaccard %.4f < 0.98; likely bug: pitfall 3 (indexer RoPE must be "
                 "half-split on the FIRST qk_rope_head_dim dims), pitfall 4 (LayerNorm with bias, "
                 "Hadamard, FP8 q/k scales, head-weight scale), or the causal mask", mean_j);
    if (!(pooled <= 1e-2) || outliers > allowed)
        fail_msg("attention output: pooled rel-L2 %.3e (limit 1e-2), %lld outlier rows (allowed "
                 "%lld); likely bug: pitfall 1 (mscale^2), pitfall 2 (MLA RoPE interleaved on "
                 "the last dims, shared k_R), the FP8 latent round trip, or a bf16 rounding point",
                 pooled, (long long)outliers, (long long)allowed);
    /* Stricter tier (spec/tolerances.md may be stricter than the judge, never looser): the
     * official code rerun with another accumulation order lands at 1e-4..1e-3; our sums are
     * formed like the golden generator's stand-ins (exact, rounded once), so only libm
     * (exp, cos, sin) and the fp32 softmax sum order can differ: a handful of 1-ulp bf16
     * flips, far below 1e-4. A missing or extra bf16 rounding point lands at ~1e-3 (e.g. the
     * two partial logits of the decode path summed before rounding: 1.5e-3) and fails here
     * while still passing the 1e-2 judge. */
    if (!(pooled <= 1e-4))
        fail_msg("attention output: pooled rel-L2 %.3e passes the judge but exceeds 1e-4: a "
                 "rounding point differs from the official graph (bf16 after each einsum, the two "
                 "partial logits of the decode path rounded before their sum, lambda applied to "
                 "the bf16 sum, bf16 probabilities)", pooled);
    dsv4_taps_free(taps);
    mla_layer_free(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_scale),
        cmocka_unit_test(test_rope_table),
        cmocka_unit_test(test_official_v32_taps),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
