/* lineage_fixture.h — random tiny weights for the lineage runners (test_mha, test_mla,
 * test_dsa): an in-memory weight table (ref/wtable.h) filled with deterministic bf16 weights
 * (bf16 values are exact in both numerics modes, so exact and official runs read the same
 * numbers), plus small helpers shared by the three runners. */
#ifndef DSV4_LINEAGE_FIXTURE_H
#define DSV4_LINEAGE_FIXTURE_H

/* the installed cmocka.h declares print_error, not cm_print_error (used by testutil.h) */
#ifndef cm_print_error
#define cm_print_error print_error
#endif
#include "testutil.h"
#include "dsv4ref.h"
#include "numerics.h"
#include "wtable.h"
#include "mla.h"

#define FX_MAX_BUFS 64

typedef struct {
    wtable *t;
    void *bufs[FX_MAX_BUFS];
    int nb;
    test_rng rng;
} fixture;

static inline void fx_init(fixture *f, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->t = wtable_new();
    assert_non_null(f->t);
    f->rng.s = seed * 0x9E3779B97F4A7C15ULL + 1;
}

static inline void fx_free(fixture *f)
{
    for (int i = 0; i < f->nb; i++) free(f->bufs[i]);
    wtable_free(f->t);
    f->t = NULL;
    f->nb = 0;
}

/* A bf16 weight [rows, cols] uniform in [-scale, scale) (scale 0: all zero). */
static inline void fx_weight(fixture *f, const char *name, int64_t rows, int64_t cols, float scale)
{
    uint16_t *d = calloc((size_t)(rows * cols), sizeof(uint16_t));
    assert_non_null(d);
    assert_true(f->nb < FX_MAX_BUFS);
    f->bufs[f->nb++] = d;
    for (int64_t i = 0; i < rows * cols; i++) d[i] = bf16_from_float(scale * test_rng_uniform(&f->rng));
    dsv4_weight w;
    memset(&w, 0, sizeof w);
    w.dtype = DSV4_BF16;
    w.rows = rows;
    w.cols = cols;
    w.data = d;
    assert_int_equal(wtable_add_weight(f->t, name, &w), 0);
}

/* A 1-D parameter base + uniform [-scale, scale), rounded to bf16 (checkpoint values). */
static inline void fx_floats(fixture *f, const char *name, int64_t n, float base, float scale)
{
    float *v = calloc((size_t)n, sizeof(float));
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++) v[i] = round_bf16(base + scale * test_rng_uniform(&f->rng));
    assert_int_equal(wtable_add_floats(f->t, name, v, n), 0);
    free(v);
}

/* Input activations [n] as bf16 values (what attn_norm would hand over). */
static inline void fx_input(test_rng *r, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) x[i] = round_bf16(scale * test_rng_uniform(r));
}

/* Largest relative L2 error over rows of width w of got vs want. */
static inline double max_row_rel(const float *got, const float *want, int64_t rows, int64_t w)
{
    double worst = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        double e = rel_l2(got + r * w, want + r * w, w);
        if (e > worst) worst = e;
    }
    return worst;
}

/* The tiny MLA / DSA test configuration: every dimension distinct (pitfall 18), YaRN on
 * (max_seq_len 512 > original_seq_len 64, so the mscale^2 factor applies), indexer top-k 4
 * far below the candidate count (pitfall 5). kv_lora_rank 28 (the V3.2 FP8 latent needs a
 * multiple of 128: fx_mla_config_v32 uses 128). */
static inline mla_config fx_mla_config(void)
{
    mla_config c;
    mla_config_defaults(&c);
    c.dim = 40; c.n_heads = 3; c.q_lora_rank = 24; c.kv_lora_rank = 28;
    c.qk_nope_head_dim = 12; c.qk_rope_head_dim = 8; c.v_head_dim = 10;
    c.max_seq_len = 512; c.original_seq_len = 64; c.max_batch_size = 2;
    c.rope_theta = 10000.0; c.rope_factor = 40.0; c.beta_fast = 32.0; c.beta_slow = 1.0;
    c.mscale = 1.0;
    c.index_n_heads = 5; c.index_head_dim = 16; c.index_topk = 4;
    c.v32 = 0;
    return c;
}

static inline mla_config fx_mla_config_v32(void)
{
    mla_config c = fx_mla_config();
    c.kv_lora_rank = 128;
    c.v32 = 1;
    return c;
}

/* Random weights of an MLA module (and its indexer) under prefix, scaled so that the
 * activations stay O(1) and the attention is far from uniform. */
static inline void fx_mla_weights(fixture *f, const mla_config *c, const char *p, int indexer)
{
    char n[256];
    const int64_t H = c->n_heads, dqk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    const float sd = 1.7f / sqrtf((float)c->dim);
    if (c->q_lora_rank == 0) {
        snprintf(n, sizeof n, "%s.wq.weight", p); fx_weight(f, n, H * dqk, c->dim, 2.0f * sd);
    } else {
        snprintf(n, sizeof n, "%s.wq_a.weight", p); fx_weight(f, n, c->q_lora_rank, c->dim, sd);
        snprintf(n, sizeof n, "%s.q_norm.weight", p); fx_floats(f, n, c->q_lora_rank, 1.0f, 0.3f);
        snprintf(n, sizeof n, "%s.wq_b.weight", p);
        fx_weight(f, n, H * dqk, c->q_lora_rank, 2.0f / sqrtf((float)c->q_lora_rank));
    }
    snprintf(n, sizeof n, "%s.wkv_a.weight", p); fx_weight(f, n, c->kv_lora_rank + c->qk_rope_head_dim, c->dim, 2.0f * sd);
    snprintf(n, sizeof n, "%s.kv_norm.weight", p); fx_floats(f, n, c->kv_lora_rank, 1.0f, 0.3f);
    snprintf(n, sizeof n, "%s.wkv_b.weight", p);
    fx_weight(f, n, H * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank, 2.0f / sqrtf((float)c->kv_lora_rank));
    snprintf(n, sizeof n, "%s.wo.weight", p); fx_weight(f, n, c->dim, H * c->v_head_dim, 1.7f / sqrtf((float)(H * c->v_head_dim)));
    if (indexer) {
        const int64_t HI = c->index_n_heads, DI = c->index_head_dim;
        snprintf(n, sizeof n, "%s.indexer.wq_b.weight", p);
        fx_weight(f, n, HI * DI, c->q_lora_rank, 2.0f / sqrtf((float)c->q_lora_rank));
        snprintf(n, sizeof n, "%s.indexer.wk.weight", p); fx_weight(f, n, DI, c->dim, sd);
        snprintf(n, sizeof n, "%s.indexer.k_norm.weight", p); fx_floats(f, n, DI, 1.0f, 0.4f);
        snprintf(n, sizeof n, "%s.indexer.k_norm.bias", p); fx_floats(f, n, DI, 0.0f, 0.6f);
        snprintf(n, sizeof n, "%s.indexer.weights_proj.weight", p); fx_weight(f, n, HI, c->dim, 2.0f * sd);
    }
}

/* Runs x: [B, T, dim] through the layer as one prefill of p tokens then T - p decode calls
 * (the official schedule); out: [B, T, dim]; topk (may be NULL): [B, T, kmax] the index rows
 * of every call padded with -1 to kmax. */
static inline void fx_mla_schedule(mla_layer *L, const float *x, float *out, int64_t B, int64_t T,
                                   int64_t d, int64_t p, int64_t *topk, int64_t kmax)
{
    float *xs = calloc((size_t)(B * T * d), sizeof(float)), *os = calloc((size_t)(B * T * d), sizeof(float));
    assert_non_null(xs); assert_non_null(os);
    for (int64_t start = 0; start < T; ) {
        const int64_t S = start == 0 ? p : 1;
        for (int64_t b = 0; b < B; b++)
            memcpy(xs + b * S * d, x + (b * T + start) * d, (size_t)(S * d) * sizeof(float));
        if (mla_forward(L, xs, os, B, S, start, NULL, "")) fail_msg("%s", dsv4_last_error());
        for (int64_t b = 0; b < B; b++)
            memcpy(out + (b * T + start) * d, os + b * S * d, (size_t)(S * d) * sizeof(float));
        if (topk) {
            int64_t k;
            const int64_t *tk = mla_last_topk(L, &k);
            assert_non_null(tk);
            assert_true(k <= kmax);
            for (int64_t b = 0; b < B; b++)
                for (int64_t s = 0; s < S; s++)
                    for (int64_t j = 0; j < kmax; j++)
                        topk[(b * T + start + s) * kmax + j] = j < k ? tk[(b * S + s) * k + j] : -1;
        }
        start += S;
    }
    free(xs); free(os);
}

/* 1 when the two index rows hold the same set (-1 dropped). */
static inline int same_set(const int64_t *a, const int64_t *b, int64_t k)
{
    for (int pass = 0; pass < 2; pass++) {
        const int64_t *u = pass ? b : a, *v = pass ? a : b;
        for (int64_t i = 0; i < k; i++) {
            if (u[i] < 0) continue;
            int found = 0;
            for (int64_t j = 0; j < k; j++) found |= v[j] == u[i];
            if (!found) return 0;
        }
    }
    return 1;
}

#endif
