/* test_v4_attention.c — one V4 attention layer (spec/v4-attention.md, spec/csa-hca.md,
 * spec/cache-and-state.md) through the public contract ref/attention.h.
 *
 * Tiny config, all dims distinct: dim 24, 4 heads of 80 (rope 16, nope 64 = one FP8 block),
 * q_lora_rank 20, 2 output groups of rank 12 (wo_a has H*D/G = 160 columns, not dim: pitfall
 * 18), window 6, indexer 3 heads of 32, top-k 3; ratios 0 (SWA), 4 (CSA), 8 (HCA); batch 2.
 * Weights are written under their official names to a temporary safetensors file and read
 * back through the weight source, exactly as a checkpoint is. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <unistd.h>
#include "testutil.h"
#include "norm.h"
#include "attention.h"
#include "numerics.h"
#include "safetensors.h"
#include "taps.h"
#include "wsrc.h"

enum { DIM = 24, H = 4, D = 80, RD = 16, RQ = 20, G = 2, RANK = 12, WIN = 6, HI = 3, DI = 32,
       TOPK = 3, B = 2, MAXLEN = 400 };

static void config(dsv4_config *c, int64_t topk, int64_t orig)
{
    memset(c, 0, sizeof *c);
    c->dim = DIM; c->n_heads = H; c->head_dim = D; c->rope_head_dim = RD; c->q_lora_rank = RQ;
    c->o_groups = G; c->o_lora_rank = RANK; c->window_size = WIN; c->norm_eps = 1e-6;
    c->index_n_heads = HI; c->index_head_dim = DI; c->index_topk = topk;
    c->compress_rope_theta = 160000.0; c->rope_theta = 10000.0; c->rope_factor = 16.0;
    c->original_seq_len = orig; c->beta_fast = 32; c->beta_slow = 1;
    c->n_layers = 3; c->n_ratios = 3;
    c->compress_ratios[0] = 0; c->compress_ratios[1] = 4; c->compress_ratios[2] = 8;
    c->max_seq_len = MAXLEN; c->max_batch_size = B;
}

/* ---- a weight file under the official names ---- */

static void add(st_writer *w, const char *name, dsv4_dtype dt, int64_t rows, int64_t cols,
                test_rng *r, float scale, float bias)
{
    int64_t n = cols ? rows * cols : rows;
    float *v = malloc(sizeof(float) * (size_t)n);
    test_fill(r, v, n, scale);
    for (int64_t i = 0; i < n; i++) v[i] += bias;
    int64_t shape[2] = { rows, cols };
    assert_int_equal(st_writer_add_f32(w, name, dt, cols ? 2 : 1, shape, v), 0);
    free(v);
}

/* idx_seed seeds the indexer weights alone, so two CSA layers can share every other weight. */
static void add_layer(st_writer *w, int layer, int ratio, uint64_t seed, uint64_t idx_seed)
{
    test_rng r = { seed };
    char p[64], n[128];
    snprintf(p, sizeof p, "layers.%d.attn", layer);
#define NAME(s) (snprintf(n, sizeof n, "%s.%s", p, s), n)
    add(w, NAME("wq_a.weight"), DSV4_BF16, RQ, DIM, &r, 0.4f, 0);
    add(w, NAME("q_norm.weight"), DSV4_F32, RQ, 0, &r, 0.3f, 1.0f);
    add(w, NAME("wq_b.weight"), DSV4_BF16, H * D, RQ, &r, 0.4f, 0);
    add(w, NAME("wkv.weight"), DSV4_BF16, D, DIM, &r, 0.4f, 0);
    add(w, NAME("kv_norm.weight"), DSV4_F32, D, 0, &r, 0.3f, 1.0f);
    add(w, NAME("wo_a.weight"), DSV4_BF16, G * RANK, H * D / G, &r, 0.2f, 0);
    add(w, NAME("wo_b.weight"), DSV4_BF16, DIM, G * RANK, &r, 0.3f, 0);
    add(w, NAME("attn_sink"), DSV4_F32, H, 0, &r, 2.0f, 0);     /* both signs */
    if (ratio) {
        int k = ratio == 4 ? 2 : 1;
        add(w, NAME("compressor.ape"), DSV4_F32, ratio, k * D, &r, 1.0f, 0);
        add(w, NAME("compressor.wkv.weight"), DSV4_F32, k * D, DIM, &r, 0.4f, 0);
        add(w, NAME("compressor.wgate.weight"), DSV4_F32, k * D, DIM, &r, 0.6f, 0);
        add(w, NAME("compressor.norm.weight"), DSV4_F32, D, 0, &r, 0.3f, 1.0f);
    }
    if (ratio == 4) {
        r.s = idx_seed;
        add(w, NAME("indexer.wq_b.weight"), DSV4_BF16, HI * DI, RQ, &r, 0.5f, 0);
        add(w, NAME("indexer.weights_proj.weight"), DSV4_BF16, HI, DIM, &r, 0.6f, 0);
        add(w, NAME("indexer.compressor.ape"), DSV4_F32, 4, 2 * DI, &r, 1.0f, 0);
        add(w, NAME("indexer.compressor.wkv.weight"), DSV4_F32, 2 * DI, DIM, &r, 0.4f, 0);
        add(w, NAME("indexer.compressor.wgate.weight"), DSV4_F32, 2 * DI, DIM, &r, 0.6f, 0);
        add(w, NAME("indexer.compressor.norm.weight"), DSV4_F32, DI, 0, &r, 0.3f, 1.0f);
    }
#undef NAME
}

static char g_path[256];

static int setup(void **s)
{
    (void)s;
    snprintf(g_path, sizeof g_path, "/tmp/dsv4ref_test_v4attn_%ld.safetensors", (long)getpid());
    st_writer *w = st_writer_new();
    add_layer(w, 0, 0, 1, 0);
    add_layer(w, 1, 4, 2, 5);
    add_layer(w, 2, 8, 3, 0);
    add_layer(w, 3, 4, 2, 6);   /* layer 1's weights with another indexer */
    int rc = st_writer_save(w, g_path, 0);
    st_writer_free(w);
    return rc;
}

static int teardown(void **s)
{
    (void)s;
    unlink(g_path);
    return 0;
}

static v4_attn_layer *layer(const dsv4_config *c, int idx, int ratio, dsv4_numerics num, dsv4_wsrc **src)
{
    *src = wsrc_open_file(g_path);
    assert_non_null(*src);
    char p[32];
    snprintf(p, sizeof p, "layers.%d.attn", idx);
    v4_attn_layer *L = v4_attn_layer_new(c, ratio, *src, p, B, MAXLEN, num);
    if (!L) fail_msg("layer %d: %s", idx, dsv4_last_error());
    return L;
}

static void inputs(float *x, int64_t T, uint64_t seed)
{
    test_rng r = { seed };
    test_fill(&r, x, B * T * DIM, 1.0f);
    round_bf16_n(x, B * T * DIM, DSV4_OFFICIAL);
}

/* ---- runs ---- */

typedef struct {
    float *out;          /* [B, T, DIM] */
    float *ent;          /* [B, T/m, D] main compressor entries by entry number */
    int64_t *sel;        /* [B, T, TOPK] selected entry numbers (offset removed), -1 pad */
    int64_t n_ent;
} run_out;

/* Prefill of n0 tokens then decode one token at a time to T, collecting the output rows, the
 * emitted entries and the indexer picks (entry numbers) per position. */
static void run(v4_attn_layer *L, int ratio, const float *x, int64_t T, int64_t n0, run_out *o)
{
    o->out = calloc((size_t)(B * T * DIM), sizeof(float));
    o->n_ent = ratio ? T / ratio : 0;
    o->ent = calloc((size_t)(B * (o->n_ent + 1) * D), sizeof(float));
    o->sel = malloc(sizeof(int64_t) * (size_t)(B * T * TOPK));
    for (int64_t i = 0; i < B * T * TOPK; i++) o->sel[i] = -1;
    int64_t done = 0;
    while (done < T) {
        int64_t S = done == 0 ? n0 : 1;
        float *xs = malloc(sizeof(float) * (size_t)(B * S * DIM)), *os = malloc(sizeof(float) * (size_t)(B * S * DIM));
        for (int b = 0; b < B; b++) memcpy(xs + b * S * DIM, x + (b * T + done) * DIM, sizeof(float) * (size_t)(S * DIM));
        dsv4_taps *taps = dsv4_taps_new();
        if (v4_attn_forward(L, xs, os, B, S, done, taps, "t"))
            fail_msg("forward at %lld: %s", (long long)done, dsv4_last_error());
        for (int b = 0; b < B; b++) memcpy(o->out + (b * T + done) * DIM, os + b * S * DIM, sizeof(float) * (size_t)(S * DIM));
        int nd;
        const int64_t *sh;
        const float *e = dsv4_taps_find_f32(taps, "t.attn.compressor", &nd, &sh);
        if (e) {
            int64_t j0 = done == 0 ? 0 : (done + 1) / ratio - 1;
            for (int b = 0; b < B; b++)
                memcpy(o->ent + (b * (o->n_ent + 1) + j0) * D, e + b * sh[1] * D, sizeof(float) * (size_t)(sh[1] * D));
        }
        const int64_t *ix = dsv4_taps_find_i64(taps, "t.attn.indexer", &nd, &sh);
        if (ix) {
            int64_t off = done == 0 ? S : WIN;
            for (int b = 0; b < B; b++)
                for (int64_t s = 0; s < S; s++)
                    for (int64_t k = 0; k < sh[2]; k++) {
                        int64_t v = ix[(b * S + s) * sh[2] + k];
                        o->sel[(b * T + done + s) * TOPK + k] = v < 0 ? -1 : v - off;
                    }
        }
        dsv4_taps_free(taps);
        free(xs); free(os);
        done += S;
    }
}

static void run_free(run_out *o) { free(o->out); free(o->ent); free(o->sel); }

/* [CSA-2..CSA-4] [CACHE-2] chunking invariance: prefill of n0 tokens then decode gives the
 * same output rows, the same compressed entries and the same indexer picks as one prefill of
 * the whole sequence (prompts of m-1, m, m+1 tokens and more; decode across several emission
 * boundaries; the window ring wrapping). Same operations in the same order in both schedules,
 * so the tolerance is 0 in both modes (pitfall 10: state after prefill; visibility rule
 * identical in prefill and decode). The official graph itself is NOT chunking-invariant in
 * one detail: PyTorch's CPU rsqrt rounds twice in the scalar tail of its vector loop
 * [NORM-2b], and which rows fall in the tail depends on the call's row count. The invariance
 * is a property of the mathematics, so it is checked with that emulation off (one rounding
 * everywhere, as the GPU kernel does); test_tail_rows_differ shows the emulation is live. */
static void check_chunking(int idx, int ratio, int64_t T, const int64_t *n0s, int nn, dsv4_numerics num)
{
    int saved_vec_loop = rmsnorm_head_torch_vec_loop();
    rmsnorm_head_set_torch_vec_loop(0);
    dsv4_config c;
    config(&c, TOPK, 256);
    dsv4_wsrc *src;
    v4_attn_layer *L = layer(&c, idx, ratio, num, &src);
    float *x = malloc(sizeof(float) * (size_t)(B * T * DIM));
    inputs(x, T, 50 + idx);
    run_out ref, got;
    run(L, ratio, x, T, T, &ref);
    for (int i = 0; i < nn; i++) {
        run(L, ratio, x, T, n0s[i], &got);
        char what[128];
        snprintf(what, sizeof what, "ratio %d, prefill %lld then decode to %lld (mode %d): output",
                 ratio, (long long)n0s[i], (long long)T, (int)num);
        expect_close(what, got.out, ref.out, B * T * DIM, 0.0,
                     "pitfall 10 / [CSA-2]: decode key list, ring order or compressor state differs from prefill");
        snprintf(what, sizeof what, "ratio %d, prefill %lld: entries", ratio, (long long)n0s[i]);
        expect_close(what, got.ent, ref.ent, B * (ref.n_ent + 1) * D, 0.0,
                     "pitfall 9/10: compressed entry position or decode state");
        for (int64_t k = 0; k < B * T * TOPK; k++)
            if (got.sel[k] != ref.sel[k])
                fail_msg("ratio %d prefill %lld: indexer pick %lld differs (%lld vs %lld)\n"
                         "  likely bug: visibility j < floor((t+1)/4) not the same in prefill and decode",
                         ratio, (long long)n0s[i], (long long)k, (long long)got.sel[k], (long long)ref.sel[k]);
        run_free(&got);
    }
    run_free(&ref);
    free(x);
    v4_attn_layer_free(L);
    wsrc_close(src);
    rmsnorm_head_set_torch_vec_loop(saved_vec_loop);
}

/* [NORM-2b] With the CPU emulation on (official default), a one-token decode takes the scalar
 * path for all its heads while the same token inside a long prefill takes the vector path:
 * the two schedules then differ, by design of the official graph on the CPU. If they did not,
 * the emulation would be dead code. */
static void test_tail_rows_differ(void **s)
{
    (void)s;
    dsv4_config c;
    config(&c, TOPK, 256);
    dsv4_wsrc *src;
    v4_attn_layer *L = layer(&c, 0, 0, DSV4_OFFICIAL, &src);
    int64_t T = 40;
    float *x = malloc(sizeof(float) * (size_t)(B * T * DIM));
    inputs(x, T, 77);
    run_out ref, got;
    run(L, 0, x, T, T, &ref);
    run(L, 0, x, T, 8, &got);
    if (rel_l2(got.out, ref.out, B * T * DIM) == 0.0)
        fail_msg("[NORM-2b]: decode rows equal the prefill rows bit for bit with the CPU rsqrt "
                 "emulation on; likely bug: rmsnorm_head ignores the scalar tail");
    run_free(&ref); run_free(&got);
    free(x);
    v4_attn_layer_free(L);
    wsrc_close(src);
}

static void test_chunking(void **s)
{
    (void)s;
    const int64_t n_csa[5] = { 3, 4, 5, 9, 17 }, n_hca[5] = { 7, 8, 9, 1, 17 }, n_swa[3] = { 1, 5, 7 };
    for (int m = 0; m < 2; m++) {
        check_chunking(0, 0, 19, n_swa, 3, (dsv4_numerics)m);
        check_chunking(1, 4, 23, n_csa, 5, (dsv4_numerics)m);
        check_chunking(2, 8, 27, n_hca, 5, (dsv4_numerics)m);
    }
}

/* Positions of several hundred (pitfall 6: RoPE errors grow with position): a CSA layer,
 * prefill 300 then decode 301..315 = one prefill of 316, in official mode. */
static void test_long_positions(void **s)
{
    (void)s;
    const int64_t n0[1] = { 300 };
    check_chunking(1, 4, 316, n0, 1, DSV4_OFFICIAL);
}

/* [CACHE-2] state reset: a sequence run after another one (with a prompt shorter than the
 * ratio, so a stale "previous block" would leak into entry 0) equals a fresh layer; both via
 * the prefill's own reset and via v4_attn_layer_reset. */
static void test_reset_between_sequences(void **s)
{
    (void)s;
    dsv4_config c;
    config(&c, TOPK, 256);
    dsv4_wsrc *s1, *s2;
    v4_attn_layer *fresh = layer(&c, 1, 4, DSV4_OFFICIAL, &s1), *used = layer(&c, 1, 4, DSV4_OFFICIAL, &s2);
    enum { T = 14 };
    float xa[B * T * DIM], xb[B * T * DIM];
    inputs(xa, T, 60);
    inputs(xb, T, 61);
    run_out a, ref, got;
    run(used, 4, xa, T, 6, &a);
    run(fresh, 4, xb, T, 3, &ref);
    run(used, 4, xb, T, 3, &got);
    expect_close("sequence after sequence", got.out, ref.out, B * T * DIM, 0.0,
                 "stale compressor / ring state leaks into the next sequence");
    run_free(&got);
    v4_attn_layer_reset(used);
    run(used, 4, xb, T, 3, &got);
    expect_close("after v4_attn_layer_reset", got.out, ref.out, B * T * DIM, 0.0,
                 "v4_attn_layer_reset leaves state behind");
    run_free(&a); run_free(&ref); run_free(&got);
    v4_attn_layer_free(fresh); v4_attn_layer_free(used);
    wsrc_close(s1); wsrc_close(s2);
}

/* [CSA-3] CSA with top-k >= the entries attends to every visible entry: the picks are exactly
 * {j < floor((t+1)/4)}, and (exact mode: the softmax does not depend on the list order) the
 * output no longer depends on the indexer — layer 3 (layer 1's weights, another indexer)
 * gives the same output. With top-k 3 of up to 5 entries it must not (the test's teeth). */
static void test_csa_all_entries(void **s)
{
    (void)s;
    enum { T = 21 };
    float x[B * T * DIM], out1[B * T * DIM], out3[B * T * DIM];
    inputs(x, T, 70);
    for (int pass = 0; pass < 2; pass++) {
        dsv4_config c;
        config(&c, pass == 0 ? 100 : TOPK, 256);
        dsv4_wsrc *s1, *s3;
        v4_attn_layer *L1 = layer(&c, 1, 4, DSV4_EXACT, &s1), *L3 = layer(&c, 3, 4, DSV4_EXACT, &s3);
        dsv4_taps *taps = dsv4_taps_new();
        assert_int_equal(v4_attn_forward(L1, x, out1, B, T, 0, taps, "t"), 0);
        assert_int_equal(v4_attn_forward(L3, x, out3, B, T, 0, NULL, "t"), 0);
        if (pass == 0) {
            int nd;
            const int64_t *sh;
            const int64_t *ix = dsv4_taps_find_i64(taps, "t.attn.indexer", &nd, &sh);
            assert_non_null(ix);
            assert_int_equal(sh[2], T / 4);
            for (int b = 0; b < B; b++)
                for (int64_t t = 0; t < T; t++) {
                    int64_t vis = (t + 1) / 4, cnt = 0;
                    for (int64_t k = 0; k < sh[2]; k++) {
                        int64_t v = ix[(b * T + t) * sh[2] + k];
                        if (v >= 0) { cnt++; assert_true(v - T >= 0 && v - T < vis); }
                    }
                    if (cnt != vis)
                        fail_msg("row %d t %lld: %lld picks, %lld visible entries\n  likely bug: [CSA-1] "
                                 "visibility or -1 padding", b, (long long)t, (long long)cnt, (long long)vis);
                }
            expect_close("top-k >= entries: output independent of the indexer", out3, out1, B * T * DIM, 1e-6,
                         "CSA with every entry selected differs from attention over all entries");
        } else {
            expect_distinguishable("top-k 3: the indexer matters", out3, out1, B * T * DIM, 1e-3);
        }
        dsv4_taps_free(taps);
        v4_attn_layer_free(L1); v4_attn_layer_free(L3);
        wsrc_close(s1); wsrc_close(s3);
    }
}

/* [V4Q-3] pitfalls 6, 7: SWA layers use rope_theta without YaRN — their output ignores
 * compress_rope_theta / original_seq_len; compressed layers use theta_c with YaRN — at
 * positions of a few hundred the YaRN ramp changes their output. */
static void test_rope_choice(void **s)
{
    (void)s;
    enum { T = 300 };
    float *x = malloc(sizeof(float) * B * T * DIM), *a = malloc(sizeof(float) * B * T * DIM),
          *b = malloc(sizeof(float) * B * T * DIM);
    inputs(x, T, 80);
    dsv4_config c1, c2;
    config(&c1, TOPK, 256);
    config(&c2, TOPK, 0);
    c2.compress_rope_theta = 40000.0;
    dsv4_wsrc *s1, *s2;
    v4_attn_layer *L1 = layer(&c1, 0, 0, DSV4_EXACT, &s1), *L2 = layer(&c2, 0, 0, DSV4_EXACT, &s2);
    assert_int_equal(v4_attn_forward(L1, x, a, B, T, 0, NULL, "t"), 0);
    assert_int_equal(v4_attn_forward(L2, x, b, B, T, 0, NULL, "t"), 0);
    expect_close("SWA ignores the compressed-layer RoPE", a, b, B * T * DIM, 0.0,
                 "pitfall 6: SWA layer uses compress_rope_theta / YaRN");
    v4_attn_layer_free(L1); v4_attn_layer_free(L2);
    wsrc_close(s1); wsrc_close(s2);
    c2.compress_rope_theta = 160000.0;            /* only YaRN differs now */
    L1 = layer(&c1, 2, 8, DSV4_EXACT, &s1);
    L2 = layer(&c2, 2, 8, DSV4_EXACT, &s2);
    assert_int_equal(v4_attn_forward(L1, x, a, B, T, 0, NULL, "t"), 0);
    assert_int_equal(v4_attn_forward(L2, x, b, B, T, 0, NULL, "t"), 0);
    expect_distinguishable("HCA with vs without YaRN", a, b, B * T * DIM, 1e-3);
    v4_attn_layer_free(L1); v4_attn_layer_free(L2);
    wsrc_close(s1); wsrc_close(s2);
    free(x); free(a); free(b);
}

/* official vs exact: the same layer within the FP8 (KV nope dims, 3 mantissa bits) and bf16
 * budget: a few percent; and the two modes must differ (the simulation is really on). */
static void test_official_vs_exact(void **s)
{
    (void)s;
    enum { T = 17 };
    dsv4_config c;
    config(&c, TOPK, 256);
    float x[B * T * DIM], a[B * T * DIM], e[B * T * DIM];
    inputs(x, T, 90);
    for (int idx = 0; idx < 3; idx++) {
        int ratio = idx == 0 ? 0 : idx == 1 ? 4 : 8;
        dsv4_wsrc *s1, *s2;
        v4_attn_layer *Lo = layer(&c, idx, ratio, DSV4_OFFICIAL, &s1), *Le = layer(&c, idx, ratio, DSV4_EXACT, &s2);
        assert_int_equal(v4_attn_forward(Lo, x, a, B, T, 0, NULL, "t"), 0);
        assert_int_equal(v4_attn_forward(Le, x, e, B, T, 0, NULL, "t"), 0);
        expect_close("official vs exact", a, e, B * T * DIM, 0.08,
                     "a rounding point far outside the FP8/bf16 budget (wrong formula in one mode)");
        expect_distinguishable("official differs from exact", a, e, B * T * DIM, 1e-4);
        v4_attn_layer_free(Lo); v4_attn_layer_free(Le);
        wsrc_close(s1); wsrc_close(s2);
    }
}

/* Bad input: one-line errors, never a crash. */
static void test_errors(void **s)
{
    (void)s;
    dsv4_config c;
    config(&c, TOPK, 256);
    dsv4_wsrc *src;
    v4_attn_layer *L = layer(&c, 1, 4, DSV4_OFFICIAL, &src);
    float x[3 * 5 * DIM], o[3 * 5 * DIM];
    inputs(x, 5, 91);
    assert_int_equal(v4_attn_forward(L, x, o, 3, 5, 0, NULL, "t"), -1);          /* batch > max */
    assert_non_null(strstr(dsv4_last_error(), "batch"));
    assert_int_equal(v4_attn_forward(L, x, o, B, 5, 0, NULL, "t"), 0);
    assert_int_equal(v4_attn_forward(L, x, o, B, 1, 7, NULL, "t"), -1);          /* gap in positions */
    assert_non_null(strstr(dsv4_last_error(), "position"));
    assert_int_equal(v4_attn_forward(L, x, o, B, 2, 5, NULL, "t"), -1);          /* chunked prefill */
    x[3] = NAN;
    assert_int_equal(v4_attn_forward(L, x, o, B, 1, 5, NULL, "t"), -1);          /* non-finite */
    assert_non_null(strstr(dsv4_last_error(), "non-finite"));
    v4_attn_layer_free(L);
    /* a missing tensor and a wrong shape are named */
    assert_null(v4_attn_layer_new(&c, 4, src, "layers.0.attn", B, MAXLEN, DSV4_OFFICIAL));
    assert_non_null(strstr(dsv4_last_error(), "layers.0.attn.compressor"));
    c.q_lora_rank = RQ + 1;
    assert_null(v4_attn_layer_new(&c, 0, src, "layers.0.attn", B, MAXLEN, DSV4_OFFICIAL));
    assert_non_null(strstr(dsv4_last_error(), "layers.0.attn.wq_a"));
    wsrc_close(src);
}

/* [CACHE-1] bytes per sequence grow by D floats per m tokens (+ D_I per 4 for CSA). */
static void test_cache_bytes(void **s)
{
    (void)s;
    dsv4_config c;
    config(&c, TOPK, 256);
    dsv4_wsrc *src;
    v4_attn_layer *L = layer(&c, 1, 4, DSV4_OFFICIAL, &src);
    int64_t a = v4_attn_cache_bytes(L, 100), b = v4_attn_cache_bytes(L, 200);
    assert_int_equal(b - a, (int64_t)sizeof(float) * (25 * D + 25 * DI));
    v4_attn_layer_free(L);
    wsrc_close(src);
    L = layer(&c, 0, 0, DSV4_OFFICIAL, &src);
    assert_int_equal(v4_attn_cache_bytes(L, 1000), (int64_t)sizeof(float) * WIN * D);
    v4_attn_layer_free(L);
    wsrc_close(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunking),
        cmocka_unit_test(test_long_positions),
        cmocka_unit_test(test_tail_rows_differ),
        cmocka_unit_test(test_reset_between_sequences),
        cmocka_unit_test(test_csa_all_entries),
        cmocka_unit_test(test_rope_choice),
        cmocka_unit_test(test_official_vs_exact),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_cache_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
