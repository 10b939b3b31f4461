/* cmd_bench.c — `dsv4ref bench`: the reference and the OpenMP kernel sets side by side, in one
 * run, on real-size DeepSeek-V4 layers (spec/backends.md [BK-5]).
 *
 * What runs: the kernel sequence of one CSA layer (ratio 4: indexer + top-k + sparse
 * attention) and one HCA layer (ratio 128: every compressed entry), attention + MoE, with
 * V4-Flash dimensions and random weights generated in memory (FP8 attention projections,
 * bf16 wo_a / compressor / router / index-head weights, FP4 routed experts, FP8 shared
 * expert), every kernel called through a backend table (ref/backend.h). Only 8 routed
 * experts are allocated (memory): a token's 6 picks go round-robin over them, so the
 * per-token expert work is the real one. The per-call orchestration between kernels (RoPE,
 * FP8/FP4 simulation, compressor pooling, list building) is left out: it is the same code
 * for every backend.
 *
 * Times: a decode step (n = 1 GEMMs, one query) and a short prefill chunk of S queries at the
 * end of a context of L tokens (S-row GEMMs, S queries), against a cache and indexer keys
 * pre-filled synthetically for L. The context-independent part (projections + MoE) is timed
 * once per phase; the attention part (indexer scores + top-k + sparse attention) per context.
 * Per-token time at L = (projections + MoE + attention at L) / S.
 * Bandwidth: decode attention reads the indexer keys (CSA) and the listed KV rows; its
 * achieved bandwidth (those bytes / its time) is set against a parallel memcpy measured in
 * the same run at the same thread count (bytes read + written / time). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cli.h"
#include "backend.h"
#include "kernels_omp.h"
#include "numerics.h"
#include "topk.h"

/* ---- dimensions ---- */

typedef struct {
    const char *name;
    int64_t dim, H, D, rq, G, R, HI, DI, topk, win, inter, n_act, n_exp, n_experts;
} bench_dims;

static const bench_dims k_flash = { "V4-Flash", 4096, 64, 512, 1024, 8, 1024, 64, 128, 512, 128,
                                    2048, 6, 8, 256 };
static const bench_dims k_quick = { "quick (V4-Flash / 8)", 512, 8, 128, 256, 2, 256, 8, 128, 64,
                                    128, 256, 6, 8, 64 };

/* ---- random weights ---- */

typedef struct { uint64_t s; } brng;

/* xorshift64*: the bench's deterministic random numbers. */
static uint64_t brng_next(brng *r)
{
    r->s ^= r->s >> 12; r->s ^= r->s << 25; r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}

/* Uniform in [-1, 1). */
static float brng_unif(brng *r)
{
    return (float)((double)(brng_next(r) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

typedef enum { W_BF16, W_FP8, W_FP4 } wkind;

#define MAX_ALLOC 256
typedef struct { void *p[MAX_ALLOC]; int n; brng r; } arena;

/* Zeroed n bytes, freed with the arena; NULL with an error. */
static void *arena_alloc(arena *a, size_t n)
{
    if (a->n == MAX_ALLOC) { dsv4_set_error("bench: too many buffers"); return NULL; }
    void *p = dsv4_calloc(n ? n : 1, 1, "bench buffer");
    if (p) a->p[a->n++] = p;
    return p;
}

/* Frees every buffer of the arena. */
static void arena_free(arena *a)
{
    for (int i = 0; i < a->n; i++) free(a->p[i]);
    a->n = 0;
}

/* n bf16-valued floats uniform in [-scale, scale). */
static float *arena_floats(arena *a, int64_t n, float scale)
{
    float *x = arena_alloc(a, sizeof(float) * (size_t)n);
    if (x) for (int64_t i = 0; i < n; i++) x[i] = round_bf16(scale * brng_unif(&a->r));
    return x;
}

/* A weight [rows, cols] of kind k, values scaled so activations stay O(1). */
static int mk_weight(arena *a, dsv4_weight *w, wkind k, int64_t rows, int64_t cols, const char *name)
{
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->cols = cols;
    w->name = name;
    if (k == W_BF16) {
        uint16_t *d = arena_alloc(a, sizeof(uint16_t) * (size_t)(rows * cols));
        if (!d) return -1;
        float sc = 1.0f / sqrtf((float)cols);
        for (int64_t i = 0; i < rows * cols; i++) d[i] = bf16_from_float(sc * brng_unif(&a->r));
        w->dtype = DSV4_BF16;
        w->data = d;
        return 0;
    }
    if (k == W_FP8) {
        int64_t nrb = (rows + 127) / 128, ncb = (cols + 127) / 128;
        uint8_t *d = arena_alloc(a, (size_t)(rows * cols)), *s = arena_alloc(a, (size_t)(nrb * ncb));
        if (!d || !s) return -1;
        for (int64_t i = 0; i < rows * cols; i++) {
            uint8_t c = (uint8_t)(brng_next(&a->r) >> 56);
            d[i] = (c & 0x7F) == 0x7F ? (uint8_t)(c ^ 1) : c;
        }
        for (int64_t i = 0; i < nrb * ncb; i++) s[i] = 127 - 14;   /* 2^-14: e4m3 up to 448 */
        w->dtype = DSV4_F8_E4M3;
        w->data = d;
        w->scale_dtype = DSV4_F8_E8M0;
        w->scale = s;
        return 0;
    }
    uint8_t *d = arena_alloc(a, (size_t)(rows * cols / 2)), *s = arena_alloc(a, (size_t)(rows * cols / 32));
    if (!d || !s) return -1;
    for (int64_t i = 0; i < rows * cols / 2; i++) d[i] = (uint8_t)(brng_next(&a->r) >> 56);
    for (int64_t i = 0; i < rows * cols / 32; i++) s[i] = 127 - 8;
    w->dtype = DSV4_U8;
    w->fp4 = 1;
    w->data = d;
    w->scale_dtype = DSV4_F8_E8M0;
    w->scale = s;
    return 0;
}

/* ---- one layer ---- */

typedef struct { dsv4_weight w1, w2, w3; } bexpert;

typedef struct {
    int ratio;                         /* 4 CSA, 128 HCA */
    dsv4_weight wq_a, wq_b, wkv, wo_a, wo_b, cwkv, cwg;
    dsv4_weight iwq_b, iwp, icwkv, icwg; /* CSA only */
    dsv4_weight gate;
    bexpert ex[16], shared;
    float *q_norm, *kv_norm, *sink;
    /* cache for the largest context */
    float *kvc, *keys;
} blayer;

/* The weights of one layer (ratio 4: CSA with the indexer; 128: HCA) and its cache for a
 * context of max_ctx tokens: window rows + compressed entries [win + max_ctx/ratio, D], indexer
 * keys [max_ctx/4, D_I]. */
static int layer_init(arena *a, blayer *L, const bench_dims *d, int ratio, int64_t max_ctx)
{
    memset(L, 0, sizeof *L);
    L->ratio = ratio;
    int64_t kap = ratio == 4 ? 2 : 1;
    if (mk_weight(a, &L->wq_a, W_FP8, d->rq, d->dim, "wq_a") ||
        mk_weight(a, &L->wq_b, W_FP8, d->H * d->D, d->rq, "wq_b") ||
        mk_weight(a, &L->wkv, W_FP8, d->D, d->dim, "wkv") ||
        mk_weight(a, &L->wo_a, W_BF16, d->G * d->R, d->H * d->D / d->G, "wo_a") ||
        mk_weight(a, &L->wo_b, W_FP8, d->dim, d->G * d->R, "wo_b") ||
        mk_weight(a, &L->cwkv, W_BF16, kap * d->D, d->dim, "compressor.wkv") ||
        mk_weight(a, &L->cwg, W_BF16, kap * d->D, d->dim, "compressor.wgate") ||
        mk_weight(a, &L->gate, W_BF16, d->n_experts, d->dim, "gate"))
        return -1;
    if (ratio == 4 &&
        (mk_weight(a, &L->iwq_b, W_FP8, d->HI * d->DI, d->rq, "indexer.wq_b") ||
         mk_weight(a, &L->iwp, W_BF16, d->HI, d->dim, "indexer.weights_proj") ||
         mk_weight(a, &L->icwkv, W_BF16, 2 * d->DI, d->dim, "indexer.compressor.wkv") ||
         mk_weight(a, &L->icwg, W_BF16, 2 * d->DI, d->dim, "indexer.compressor.wgate")))
        return -1;
    for (int64_t e = 0; e < d->n_exp; e++)
        if (mk_weight(a, &L->ex[e].w1, W_FP4, d->inter, d->dim, "expert.w1") ||
            mk_weight(a, &L->ex[e].w3, W_FP4, d->inter, d->dim, "expert.w3") ||
            mk_weight(a, &L->ex[e].w2, W_FP4, d->dim, d->inter, "expert.w2"))
            return -1;
    if (mk_weight(a, &L->shared.w1, W_FP8, d->inter, d->dim, "shared.w1") ||
        mk_weight(a, &L->shared.w3, W_FP8, d->inter, d->dim, "shared.w3") ||
        mk_weight(a, &L->shared.w2, W_FP8, d->dim, d->inter, "shared.w2"))
        return -1;
    L->q_norm = arena_floats(a, d->rq, 1.0f);
    L->kv_norm = arena_floats(a, d->D, 1.0f);
    L->sink = arena_floats(a, d->H, 2.0f);
    L->kvc = arena_floats(a, (d->win + max_ctx / ratio) * d->D, 1.0f);
    if (ratio == 4) L->keys = arena_floats(a, (max_ctx / 4) * d->DI, 1.0f);
    if (!L->q_norm || !L->kv_norm || !L->sink || !L->kvc || (ratio == 4 && !L->keys)) return -1;
    return 0;
}

/* activations of S rows */
typedef struct {
    float *x, *qr, *q, *kv, *cu, *cg, *qi, *wts, *icu, *icg, *o, *oatt, *og, *zg, *z, *out;
    float *logit, *xa, *g, *u, *y, *acc, *score;
    int64_t *pick, *list;
} bbuf;

/* The activations of S rows. */
static int buf_init(arena *a, bbuf *b, const bench_dims *d, int64_t S, int64_t max_ctx)
{
    int64_t n_pairs = S * d->n_act;
    b->x = arena_floats(a, S * d->dim, 1.0f);
    b->qr = arena_floats(a, S * d->rq, 0.0f);
    b->q = arena_floats(a, S * d->H * d->D, 0.0f);
    b->kv = arena_floats(a, S * d->D, 0.0f);
    b->cu = arena_floats(a, S * 2 * d->D, 0.0f);
    b->cg = arena_floats(a, S * 2 * d->D, 0.0f);
    b->qi = arena_floats(a, S * d->HI * d->DI, 0.0f);
    b->wts = arena_floats(a, S * d->HI, 0.0f);
    b->icu = arena_floats(a, S * 2 * d->DI, 0.0f);
    b->icg = arena_floats(a, S * 2 * d->DI, 0.0f);
    b->o = arena_floats(a, S * d->H * d->D, 1.0f);
    b->oatt = arena_floats(a, S * d->H * d->D, 0.0f);
    b->og = arena_floats(a, S * d->H * d->D / d->G, 0.0f);
    b->zg = arena_floats(a, S * d->R, 0.0f);
    b->z = arena_floats(a, S * d->G * d->R, 0.0f);
    b->out = arena_floats(a, S * d->dim, 0.0f);
    b->logit = arena_floats(a, S * d->n_experts, 0.0f);
    b->xa = arena_floats(a, n_pairs * d->dim, 0.0f);
    b->g = arena_floats(a, n_pairs * d->inter, 0.0f);
    b->u = arena_floats(a, n_pairs * d->inter, 0.0f);
    b->y = arena_floats(a, n_pairs * d->dim, 0.0f);
    b->acc = arena_floats(a, S * d->dim, 0.0f);
    b->score = arena_floats(a, max_ctx / 4 + 1, 0.0f);
    b->pick = arena_alloc(a, sizeof(int64_t) * (size_t)(d->topk + 1));
    b->list = arena_alloc(a, sizeof(int64_t) * (size_t)(d->win + d->topk + max_ctx / 128 + 1));
    return b->list && b->pick && b->score && b->acc && b->y && b->x ? 0 : -1;
}

/* Monotonic seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- per-kernel breakdown (--breakdown) ---- */

/* A kernel table that times every call of an inner table and adds the time to a slot named
 * after the call: a GEMM by its weight's name (the 8 routed experts' w1 share one slot), the
 * other kernels by their own name; the attention kernels and top-k also by the context. */
#define MAX_SLOT 48
typedef struct { char name[48]; double t; } bslot;
typedef struct { bslot s[MAX_SLOT]; int n; } bslots;

static const dsv4_kernels *g_inner;   /* the table timed */
static bslots *g_slots;               /* where the times go (NULL: not timing) */
static int64_t g_ctx;                 /* the context of the attention calls, for the slot name */

/* Adds t seconds to the slot `name` (+ " 64K" when ctx > 0), creating it. */
static void slot_add(const char *name, int64_t ctx, double t)
{
    char full[48];
    if (!g_slots) return;
    if (ctx > 0) snprintf(full, sizeof full, "%s %lldK", name, (long long)(ctx / 1024));
    else snprintf(full, sizeof full, "%s", name);
    for (int i = 0; i < g_slots->n; i++)
        if (strcmp(g_slots->s[i].name, full) == 0) { g_slots->s[i].t += t; return; }
    if (g_slots->n == MAX_SLOT) return;
    snprintf(g_slots->s[g_slots->n].name, sizeof g_slots->s[0].name, "%s", full);
    g_slots->s[g_slots->n++].t = t;
}

static int t_linear(const dsv4_weight *w, const float *x, float *y, int64_t n, int out_f32,
                    dsv4_numerics num)
{
    double t0 = now_s();
    int rc = g_inner->linear(w, x, y, n, out_f32, num);
    slot_add(w->name ? w->name : "linear", 0, now_s() - t0);
    return rc;
}

static void t_rmsnorm(const float *x, const float *w, float *y, int64_t n_rows, int dim,
                      float eps, dsv4_numerics num)
{
    double t0 = now_s();
    g_inner->rmsnorm(x, w, y, n_rows, dim, eps, num);
    slot_add("rmsnorm", 0, now_s() - t0);
}

static void t_rmsnorm_head(float *x, int64_t n_rows, int dim, float eps, dsv4_numerics num)
{
    double t0 = now_s();
    g_inner->rmsnorm_head(x, n_rows, dim, eps, num);
    slot_add("rmsnorm_head", 0, now_s() - t0);
}

static void t_hadamard(float *x, int64_t n_rows, int n, dsv4_numerics num)
{
    double t0 = now_s();
    g_inner->hadamard(x, n_rows, n, num);
    slot_add("hadamard", 0, now_s() - t0);
}

static int t_sparse_attention(const float *q, int64_t H, int64_t D, const float *kv, int64_t n_kv,
                              const int64_t *idx, int64_t n_idx, const float *sink, double scale,
                              float *out, dsv4_numerics num)
{
    double t0 = now_s();
    int rc = g_inner->sparse_attention(q, H, D, kv, n_kv, idx, n_idx, sink, scale, out, num);
    slot_add("sparse_attention", g_ctx, now_s() - t0);
    return rc;
}

static void t_indexer_scores(const v4_indexer *I, const float *q, const float *w,
                             const float *keys, int64_t n, float *score)
{
    double t0 = now_s();
    g_inner->indexer_scores(I, q, w, keys, n, score);
    slot_add("indexer_scores", g_ctx, now_s() - t0);
}

static const dsv4_kernels k_timed = { "timed", t_linear, t_rmsnorm, t_rmsnorm_head, t_hadamard,
                                      t_sparse_attention, t_indexer_scores };

/* [MOE-3] one SwiGLU expert on n rows through the table: h = bf16(silu(min(g, 10)) *
 * clamp(u, +-10)); y = w2 h. */
static int expert(const dsv4_kernels *K, const bexpert *e, const bench_dims *d, const float *xa,
                  int64_t n, bbuf *b, dsv4_numerics num)
{
    if (K->linear(&e->w1, xa, b->g, n, 0, num) || K->linear(&e->w3, xa, b->u, n, 0, num)) return -1;
    for (int64_t i = 0; i < n * d->inter; i++) {
        float gv = b->g[i] > 10.0f ? 10.0f : b->g[i];
        float uv = b->u[i] > 10.0f ? 10.0f : b->u[i] < -10.0f ? -10.0f : b->u[i];
        b->g[i] = round_bf16(gv / (1.0f + expf(-gv)) * uv);
    }
    return K->linear(&e->w2, b->g, b->y, n, 0, num);
}

/* Projections (query, window KV, compressor, indexer queries / weights / compressor), output
 * projection, router and experts for S rows: the context-independent part. */
static int step_proj(const dsv4_kernels *K, const blayer *L, const bench_dims *d, int64_t S,
                     bbuf *b, dsv4_numerics num)
{
    float eps = 1e-6f;
    int64_t cols = d->H * d->D / d->G;
    if (K->linear(&L->wq_a, b->x, b->qr, S, 0, num)) return -1;
    K->rmsnorm(b->qr, L->q_norm, b->qr, S, (int)d->rq, eps, num);
    if (K->linear(&L->wq_b, b->qr, b->q, S, 0, num)) return -1;
    K->rmsnorm_head(b->q, S * d->H, (int)d->D, eps, num);
    if (K->linear(&L->wkv, b->x, b->kv, S, 0, num)) return -1;
    K->rmsnorm(b->kv, L->kv_norm, b->kv, S, (int)d->D, eps, num);
    if (K->linear(&L->cwkv, b->x, b->cu, S, 1, num) || K->linear(&L->cwg, b->x, b->cg, S, 1, num))
        return -1;
    if (L->ratio == 4) {
        if (K->linear(&L->iwq_b, b->qr, b->qi, S, 0, num)) return -1;
        K->hadamard(b->qi, S * d->HI, (int)d->DI, num);
        if (K->linear(&L->iwp, b->x, b->wts, S, 0, num)) return -1;
        if (K->linear(&L->icwkv, b->x, b->icu, S, 1, num) || K->linear(&L->icwg, b->x, b->icg, S, 1, num))
            return -1;
    }
    for (int64_t g = 0; g < d->G; g++) {
        dsv4_weight wg = L->wo_a;
        wg.rows = d->R;
        wg.data = (const uint16_t *)L->wo_a.data + g * d->R * cols;
        for (int64_t i = 0; i < S; i++)
            memcpy(b->og + i * cols, b->o + i * d->H * d->D + g * cols, sizeof(float) * (size_t)cols);
        if (K->linear(&wg, b->og, b->zg, S, 0, num)) return -1;
        for (int64_t i = 0; i < S; i++)
            memcpy(b->z + i * d->G * d->R + g * d->R, b->zg + i * d->R, sizeof(float) * (size_t)d->R);
    }
    if (K->linear(&L->wo_b, b->z, b->out, S, 0, num)) return -1;
    /* MoE: router, routed experts (pairs round-robin over the allocated experts), shared */
    if (K->linear(&L->gate, b->out, b->logit, S, 1, num)) return -1;
    for (int64_t i = 0; i < S * d->dim; i++) b->acc[i] = 0.0f;
    for (int64_t e = 0; e < d->n_exp; e++) {
        int64_t n = 0;
        for (int64_t p = e; p < S * d->n_act; p += d->n_exp, n++)
            memcpy(b->xa + n * d->dim, b->out + (p / d->n_act) * d->dim, sizeof(float) * (size_t)d->dim);
        if (n == 0) continue;
        if (expert(K, &L->ex[e], d, b->xa, n, b, num)) return -1;
        n = 0;
        for (int64_t p = e; p < S * d->n_act; p += d->n_exp, n++)
            for (int64_t j = 0; j < d->dim; j++) b->acc[(p / d->n_act) * d->dim + j] += b->y[n * d->dim + j];
    }
    return expert(K, &L->shared, d, b->out, S, b, num);
}

typedef struct { double index, attn; } attn_times;

/* Attention of S queries at the end of a context of ctx tokens: CSA: indexer scores over
 * ctx/4 keys, top-k, sparse attention over window + k picks; HCA: over window + ctx/128. */
static int step_attn(const dsv4_kernels *K, const blayer *L, const bench_dims *d, int64_t S,
                     int64_t ctx, bbuf *b, dsv4_numerics num, attn_times *t)
{
    int64_t n_ent = ctx / L->ratio, width;
    double scale = (double)(float)pow((double)d->D, -0.5);
    v4_indexer I;
    memset(&I, 0, sizeof I);
    I.n_heads = (int)d->HI;
    I.head_dim = (int)d->DI;
    I.num = num;
    for (int64_t s = 0; s < S; s++) {
        for (int64_t i = 0; i < d->win; i++) b->list[i] = i;
        if (L->ratio == 4) {
            int64_t k = d->topk < n_ent ? d->topk : n_ent;
            double t0 = now_s();
            K->indexer_scores(&I, b->qi + s * d->HI * d->DI, b->wts + s * d->HI, L->keys, n_ent, b->score);
            double t1 = now_s();
            topk_desc(b->score, n_ent, k, b->pick);
            t->index += now_s() - t0;
            slot_add("top-k (serial, not a kernel)", g_ctx, now_s() - t1);
            for (int64_t j = 0; j < k; j++) b->list[d->win + j] = d->win + b->pick[j];
            width = d->win + k;
        } else {
            for (int64_t j = 0; j < n_ent; j++) b->list[d->win + j] = d->win + j;
            width = d->win + n_ent;
        }
        double t0 = now_s();
        if (K->sparse_attention(b->q + s * d->H * d->D, d->H, d->D, L->kvc, d->win + n_ent, b->list,
                                width, L->sink, scale, b->oatt + s * d->H * d->D, num))
            return -1;
        t->attn += now_s() - t0;
    }
    return 0;
}

/* ---- the report ---- */

#define MAX_CFG 12
#define MAX_CTX 8

typedef struct { const char *label; const dsv4_kernels *K; int threads; } bcfg;

/* [BK-5] Copy bandwidth at `threads` threads: 2 * bytes / best time of copy_omp (GB/s). */
static double copy_bw(size_t bytes, int threads)
{
    char *a = malloc(bytes), *b = malloc(bytes);
    double best = 1e30;
    if (!a || !b) { free(a); free(b); return 0.0; }
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    dsv4_omp_set_threads(threads);
    for (int r = 0; r < 6; r++) {
        double t0 = now_s();
        copy_omp(b, a, bytes);
        double t = now_s() - t0;
        if (r > 0 && t < best) best = t;   /* the first run pays the page faults */
    }
    free(a);
    free(b);
    return 2.0 * (double)bytes / best / 1e9;
}

/* [BK-5] Double-precision arithmetic peak at `threads` threads: the best rate of madd_omp
 * (omp/flops.c: separate mul and add, L1-resident) over 8, 16 and 32 independent sums per
 * thread, best of 3 each, in G multiply-adds per second (GFLOP/s = 2x). */
static double madd_peak(int threads, int64_t madds_per_thread)
{
    static const int lanes[3] = { 8, 16, 32 };
    double best = 0.0, sink = 0.0;
    dsv4_omp_set_threads(threads);
    for (int l = 0; l < 3; l++)
        for (int r = 0; r < 3; r++) {
            double t0 = now_s(), s;
            int64_t n = madd_omp(lanes[l], madds_per_thread, &s);
            double t = now_s() - t0;
            sink += s;
            if (t > 0.0 && (double)n / t / 1e9 > best) best = (double)n / t / 1e9;
        }
    return sink == -1.0 ? 0.0 : best;   /* (sink: keeps the sums live) */
}

/* One phase (decode or prefill: n rows, S queries) of one layer with the timed table: per
 * kernel ms per token at each omp thread count (the best of `reps` sequences per slot), and
 * the speed-up over the first omp thread count; "rest" = the sequence's time outside the
 * kernels (SwiGLU, copies; the per-context lines: list building). */
static int breakdown(const blayer *L, const bench_dims *d, int64_t n, bbuf *b, const int64_t *ctxs,
                     int n_ctx, const int64_t *thr, int n_thr, dsv4_numerics num)
{
    static bslots best[MAX_CFG], cur;
    const int reps = 3;
    for (int i = 0; i < n_thr; i++) {
        dsv4_omp_set_threads((int)thr[i]);
        g_inner = dsv4_kernels_omp();
        best[i].n = 0;
        for (int r = 0; r < reps; r++) {
            cur.n = 0;
            g_slots = &cur;
            g_ctx = 0;
            double t0 = now_s();
            int rc = step_proj(&k_timed, L, d, n, b, num);
            double tp = now_s() - t0, tk = 0.0;
            for (int k = 0; k < cur.n; k++) tk += cur.s[k].t;
            slot_add("rest of the projections + MoE", 0, tp - tk);
            for (int c = 0; c < n_ctx && !rc; c++) {
                attn_times at = { 0.0, 0.0 };
                g_ctx = ctxs[c];
                rc = step_attn(&k_timed, L, d, n, ctxs[c], b, num, &at);
            }
            g_slots = NULL;
            g_ctx = 0;
            if (rc) return -1;
            for (int k = 0; k < cur.n; k++) {   /* per slot: the best of the reps */
                int j = 0;
                while (j < best[i].n && strcmp(best[i].s[j].name, cur.s[k].name) != 0) j++;
                if (j == best[i].n) { if (j == MAX_SLOT) continue; best[i].s[best[i].n++] = cur.s[k]; }
                else if (cur.s[k].t < best[i].s[j].t) best[i].s[j].t = cur.s[k].t;
            }
        }
    }
    printf("  breakdown, %s: ms per token per kernel (best of %d), speed-up vs omp x%d:\n",
           n == 1 ? "decode" : "prefill", reps, (int)thr[0]);
    printf("    %-36s", "kernel");
    for (int i = 0; i < n_thr; i++) printf("   omp x%-3d", (int)thr[i]);
    printf("   speed-up\n");
    double tot[MAX_CFG] = { 0.0 };
    for (int k = 0; k < best[0].n; k++) {
        printf("    %-36s", best[0].s[k].name);
        double t1 = best[0].s[k].t, tl = t1;
        for (int i = 0; i < n_thr; i++) {
            double t = 0.0;
            for (int j = 0; j < best[i].n; j++)
                if (strcmp(best[i].s[j].name, best[0].s[k].name) == 0) t = best[i].s[j].t;
            tot[i] += t;
            tl = t;
            printf("  %9.3f", 1e3 * t / (double)n);
        }
        if (n_thr > 1 && tl > 0.0)
            printf("   x%d: %.2f (%.0f%%)", (int)thr[n_thr - 1], t1 / tl,
                   100.0 * t1 / tl / ((double)thr[n_thr - 1] / (double)thr[0]));
        printf("\n");
    }
    printf("    %-36s", "sum (all contexts)");
    for (int i = 0; i < n_thr; i++) printf("  %9.3f", 1e3 * tot[i] / (double)n);
    printf("\n");
    return 0;
}

/* "4K,64K,256K" or "1,2,4" -> out; the count, or -1. */
static int parse_list(const char *s, int64_t *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v <= 0) return -1;
        if (*end == 'K' || *end == 'k') { v *= 1024; end++; }
        out[n++] = v;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return n;
}

/* The command's help. */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: dsv4ref bench [--quick] [--threads 1,2,4] [--contexts 4K,64K,256K]\n"
            "                     [--prefill-tokens S] [--numerics official|exact] [--no-ref]\n"
            "                     [--breakdown]\n"
            "  ref vs omp kernels on one CSA and one HCA layer of V4-Flash size (random weights),\n"
            "  per prefill token (an S-token chunk at the end of the context) and per decode token,\n"
            "  with the cache pre-filled synthetically; speed-up per thread count; decode attention\n"
            "  bandwidth against a parallel memcpy, and its arithmetic rate against the measured\n"
            "  double-precision multiply-add peak, both measured in the same run.\n"
            "  --quick           dims / 8, context 4K, S = 4: a few seconds\n"
            "  --threads         omp thread counts (default 1, 2, 4, ... up to the OpenMP maximum)\n"
            "  --contexts        default 4K,64K,256K\n"
            "  --prefill-tokens  S (default 16)\n"
            "  --no-ref          omp only (the reference is the slowest part)\n"
            "  --breakdown       also ms per token per kernel (each GEMM by weight name, the\n"
            "                    attention kernels and top-k per context) at each omp thread count\n");
}

/* [BK-5] `dsv4ref bench`: the report (see the file comment). */
int cmd_bench(int argc, char **argv)
{
    const bench_dims *d = &k_flash;
    int64_t ctxs[MAX_CTX] = { 4096, 65536, 262144 }, thr[MAX_CFG];
    int n_ctx = 3, n_thr = 0, with_ref = 1, with_breakdown = 0;
    int64_t S = 16;
    dsv4_numerics num = DSV4_OFFICIAL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) { usage(stdout); return EXIT_OK; }
        else if (strcmp(argv[i], "--quick") == 0) { d = &k_quick; ctxs[0] = 4096; n_ctx = 1; S = 4; }
        else if (strcmp(argv[i], "--no-ref") == 0) with_ref = 0;
        else if (strcmp(argv[i], "--breakdown") == 0) with_breakdown = 1;
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if ((n_thr = parse_list(argv[++i], thr, MAX_CFG - 1)) <= 0) goto bad;
        } else if (strcmp(argv[i], "--contexts") == 0 && i + 1 < argc) {
            if ((n_ctx = parse_list(argv[++i], ctxs, MAX_CTX)) <= 0) goto bad;
        } else if (strcmp(argv[i], "--prefill-tokens") == 0 && i + 1 < argc) {
            S = atoll(argv[++i]);
            if (S < 1 || S > 4096) goto bad;
        } else if (strcmp(argv[i], "--numerics") == 0 && i + 1 < argc) {
            if (dsv4_numerics_parse(argv[++i], &num)) goto bad;
        } else goto bad;
    }
    if (n_thr == 0) {
        int maxt = dsv4_omp_set_threads(0);
        for (int t = 1; t < maxt && n_thr < MAX_CFG - 2; t *= 2) thr[n_thr++] = t;
        thr[n_thr++] = maxt;
    }
    int64_t max_ctx = 0;
    for (int c = 0; c < n_ctx; c++) {
        if (ctxs[c] < 512) goto bad;
        if (ctxs[c] > max_ctx) max_ctx = ctxs[c];
    }
    bcfg cfg[MAX_CFG];
    int n_cfg = 0;
    if (with_ref) cfg[n_cfg++] = (bcfg){ "ref", dsv4_kernels_ref(), 1 };
    for (int i = 0; i < n_thr; i++) cfg[n_cfg++] = (bcfg){ "omp", dsv4_kernels_omp(), (int)thr[i] };
    if (dsv4_kernels_cuda() && n_cfg < MAX_CFG)   /* a CUDA build: its table side by side too */
        cfg[n_cfg++] = (bcfg){ "cuda", dsv4_kernels_cuda(), 1 };

    const char *wait = getenv("OMP_WAIT_POLICY");
    printf("dsv4ref bench: %s dims, numerics %s, prefill chunk S = %lld tokens, omp max threads %d, "
           "OMP_WAIT_POLICY %s\n", d->name, dsv4_numerics_name(num), (long long)S,
           dsv4_omp_set_threads(0), wait ? wait : "unset");
    if (!wait)
        printf("note: OMP_WAIT_POLICY is unset: every short parallel region may pay a thread wake-up;\n"
               "      `make bench` (tools/bench.sh) sets OMP_WAIT_POLICY=active\n");
    /* copy bandwidth and double multiply-add peak per thread count */
    size_t cbytes = d == &k_quick ? (size_t)64 << 20 : (size_t)512 << 20;
    int64_t pmadds = d == &k_quick ? (int64_t)20000000 : (int64_t)100000000;
    double cbw[MAX_CFG], peak[MAX_CFG];   /* GB/s; G multiply-adds / s */
    printf("\ncopy bandwidth (parallel memcpy of %zu MiB, bytes read + written) and double-precision\n"
           "arithmetic peak (omp/flops.c: separate mul + add over L1-resident tiles, the bit-exact\n"
           "kernels' instruction mix; GFLOP/s = 2 per multiply-add):\n", cbytes >> 20);
    for (int i = 0; i < n_cfg; i++) {
        cbw[i] = copy_bw(cbytes, cfg[i].threads);
        peak[i] = madd_peak(cfg[i].threads, pmadds);
        if (cfg[i].K == dsv4_kernels_omp())
            printf("  %2d thread%s %7.2f GB/s  %7.2f GFLOP/s\n", cfg[i].threads,
                   cfg[i].threads > 1 ? "s" : " ", cbw[i], 2.0 * peak[i]);
    }
    arena a;
    memset(&a, 0, sizeof a);
    a.r.s = 0x9E3779B97F4A7C15ULL;
    int rc = EXIT_BAD_INPUT;
    for (int li = 0; li < 2; li++) {
        blayer L;
        bbuf bp, bd;
        int ratio = li == 0 ? 4 : 128;
        if (layer_init(&a, &L, d, ratio, max_ctx) || buf_init(&a, &bp, d, S, max_ctx) ||
            buf_init(&a, &bd, d, 1, max_ctx)) {
            fprintf(stderr, "dsv4ref bench: %s\n", dsv4_last_error());
            goto done;
        }
        printf("\n%s layer (ratio %d): ms per token", ratio == 4 ? "CSA" : "HCA", ratio);
        printf("\n  %-8s %8s", "phase", "context");
        for (int i = 0; i < n_cfg; i++) printf("  %4s x%-3d", cfg[i].label, cfg[i].threads);
        printf("   speed-up omp xN vs omp x1 (efficiency)\n");
        for (int ph = 0; ph < 2; ph++) {
            int64_t n = ph == 0 ? S : 1;
            bbuf *b = ph == 0 ? &bp : &bd;
            int reps = 3;   /* the best of 3 (a shared machine: the minimum is the signal) */
            double tproj[MAX_CFG], tatt[MAX_CFG][MAX_CTX], tidx[MAX_CFG][MAX_CTX];
            attn_times warm = { 0.0, 0.0 };
            /* warm-up (untimed): first touches of the buffers, the thread pool at its largest */
            dsv4_omp_set_threads((int)thr[n_thr - 1]);
            if (step_proj(dsv4_kernels_omp(), &L, d, n, b, num) ||
                step_attn(dsv4_kernels_omp(), &L, d, n, ctxs[0], b, num, &warm)) {
                fprintf(stderr, "dsv4ref bench: %s\n", dsv4_last_error());
                goto done;
            }
            for (int i = 0; i < n_cfg; i++) {
                dsv4_omp_set_threads(cfg[i].threads);
                tproj[i] = 1e30;
                int nrep = cfg[i].K == dsv4_kernels_ref() && ph == 0 ? 1 : reps;  /* ref prefill: slow */
                for (int r = 0; r < nrep; r++) {
                    double t0 = now_s();
                    if (step_proj(cfg[i].K, &L, d, n, b, num)) { fprintf(stderr, "dsv4ref bench: %s\n", dsv4_last_error()); goto done; }
                    double t = now_s() - t0;
                    if (t < tproj[i]) tproj[i] = t;
                }
                for (int c = 0; c < n_ctx; c++) {
                    tatt[i][c] = tidx[i][c] = 1e30;
                    for (int r = 0; r < nrep; r++) {
                        attn_times at = { 0.0, 0.0 };
                        if (step_attn(cfg[i].K, &L, d, n, ctxs[c], b, num, &at)) { fprintf(stderr, "dsv4ref bench: %s\n", dsv4_last_error()); goto done; }
                        if (at.index + at.attn < tatt[i][c] + tidx[i][c]) { tatt[i][c] = at.attn; tidx[i][c] = at.index; }
                    }
                }
            }
            for (int c = 0; c < n_ctx; c++) {
                printf("  %-8s %7lldK", ph == 0 ? "prefill" : "decode", (long long)(ctxs[c] / 1024));
                double t1 = 0.0;
                for (int i = 0; i < n_cfg; i++) {
                    double ms = 1e3 * (tproj[i] + tatt[i][c] + tidx[i][c]) / (double)n;
                    if (cfg[i].K == dsv4_kernels_omp() && cfg[i].threads == 1) t1 = ms;
                    printf("  %10.2f", ms);
                }
                printf("  ");
                for (int i = 0; i < n_cfg; i++) {
                    if (cfg[i].K != dsv4_kernels_omp() || cfg[i].threads == 1 || t1 == 0.0) continue;
                    double ms = 1e3 * (tproj[i] + tatt[i][c] + tidx[i][c]) / (double)n;
                    printf(" x%d: %.2f (%.0f%%)", cfg[i].threads, t1 / ms, 100.0 * t1 / ms / cfg[i].threads);
                }
                printf("\n");
            }
            /* decode bandwidth of the attention part and of the projections (weights) */
            if (ph == 1) {
                int64_t wbytes = 0;
                const dsv4_weight *ws[] = { &L.wq_a, &L.wq_b, &L.wkv, &L.wo_a, &L.wo_b, &L.cwkv, &L.cwg,
                                            &L.iwq_b, &L.iwp, &L.icwkv, &L.icwg, &L.gate };
                for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++)
                    if (ws[k]->rows) wbytes += ws[k]->rows * ws[k]->cols *
                                               (ws[k]->dtype == DSV4_BF16 ? 2 : 1);
                wbytes += (int64_t)d->n_act * 3 * d->inter * d->dim / 2 + 3 * d->inter * d->dim;
                printf("  decode bandwidth, GB/s (%% of the copy bandwidth at that thread count):\n");
                printf("    %-30s", "projections + MoE (weights)");
                for (int i = 0; i < n_cfg; i++)
                    printf("  %5.2f (%2.0f%%)", (double)wbytes / tproj[i] / 1e9,
                           100.0 * (double)wbytes / tproj[i] / 1e9 / cbw[i]);
                printf("   %.0f MB per token\n", (double)wbytes / 1e6);
                double ab[MAX_CTX], am[MAX_CTX];   /* attention bytes, multiply-adds per token */
                for (int c = 0; c < n_ctx; c++) {
                    int64_t n_ent = ctxs[c] / ratio;
                    int64_t rows = d->win + (ratio == 4 ? (d->topk < n_ent ? d->topk : n_ent) : n_ent);
                    double bytes = (double)rows * (double)d->D * 4.0 +
                                   (ratio == 4 ? (double)n_ent * (double)d->DI * 4.0 : 0.0);
                    ab[c] = bytes;
                    am[c] = (double)rows * (double)(d->H * d->D) * 2.0 +
                            (ratio == 4 ? (double)n_ent * (double)(d->HI * d->DI) : 0.0);
                    char lab[64];
                    snprintf(lab, sizeof lab, "attention %lldK%s", (long long)(ctxs[c] / 1024),
                             ratio == 4 ? " (indexer + sparse)" : " (sparse)");
                    printf("    %-30s", lab);
                    for (int i = 0; i < n_cfg; i++) {
                        double t = tatt[i][c] + tidx[i][c];
                        printf("  %5.2f (%2.0f%%)", bytes / t / 1e9, 100.0 * bytes / t / 1e9 / cbw[i]);
                    }
                    printf("   %.1f MB per token\n", bytes / 1e6);
                }
                /* arithmetic: multiply-adds per token / time, against the measured peak */
                double wmadds = (double)(d->n_act + 1) * 3.0 * (double)(d->inter * d->dim);
                for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++)
                    wmadds += (double)(ws[k]->rows * ws[k]->cols);
                printf("  decode arithmetic, GFLOP/s (2 per multiply-add; %% of the measured double peak):\n");
                printf("    %-30s", "projections + MoE (GEMMs)");
                for (int i = 0; i < n_cfg; i++)
                    printf("  %5.2f (%2.0f%%)", 2.0 * wmadds / tproj[i] / 1e9,
                           100.0 * wmadds / tproj[i] / 1e9 / peak[i]);
                printf("   %.0f M multiply-adds per token\n", wmadds / 1e6);
                for (int c = 0; c < n_ctx; c++) {
                    char lab[64];
                    snprintf(lab, sizeof lab, "attention %lldK", (long long)(ctxs[c] / 1024));
                    printf("    %-30s", lab);
                    for (int i = 0; i < n_cfg; i++) {
                        double t = tatt[i][c] + tidx[i][c];
                        printf("  %5.2f (%2.0f%%)", 2.0 * am[c] / t / 1e9, 100.0 * am[c] / t / 1e9 / peak[i]);
                    }
                    printf("   %.1f M multiply-adds per token\n", am[c] / 1e6);
                }
                printf("  decode attention roofline: the bandwidth at 100%% of the double peak, GB/s\n"
                       "  (%% of the copy bandwidth): the ceiling of a bit-exact kernel\n");
                for (int c = 0; c < n_ctx; c++) {
                    char lab[64];
                    snprintf(lab, sizeof lab, "attention %lldK", (long long)(ctxs[c] / 1024));
                    printf("    %-30s", lab);
                    for (int i = 0; i < n_cfg; i++) {
                        double bw = peak[i] * ab[c] / am[c];
                        printf("  %5.2f (%2.0f%%)", bw, 100.0 * bw / cbw[i]);
                    }
                    printf("   %.1f multiply-adds per byte\n", am[c] / ab[c]);
                }
            }
            if (with_breakdown && breakdown(&L, d, n, b, ctxs, n_ctx, thr, n_thr, num)) {
                fprintf(stderr, "dsv4ref bench: %s\n", dsv4_last_error());
                goto done;
            }
        }
        arena_free(&a);
    }
    rc = EXIT_OK;
done:
    arena_free(&a);
    dsv4_omp_set_threads(0);
    return rc;
bad:
    usage(stderr);
    return EXIT_BAD_INPUT;
}
