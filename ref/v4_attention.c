/* v4_attention.c — one DeepSeek-V4 attention layer (ref/attention.h; spec/v4-attention.md,
 * spec/csa-hca.md, spec/cache-and-state.md).
 *
 * Forward-pass order of one call (official Attention.forward):
 *   query path [V4Q-1..3] -> window KV [WIN-1..2] -> window index list [CSA-2]
 *   -> (CSA) indexer top-k / (HCA) all visible entries [CSA-3] -> window ring write and
 *   compressor (entries appended) [CSA-4] -> sparse attention with sinks [SPA-1]
 *   -> inverse RoPE of the output [OUT-1] -> grouped low-rank output projection [OUT-2..3]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "attention.h"
#include "backend.h"
#include "compressor.h"
#include "counters.h"
#include "indexer.h"
#include "linear.h"
#include "norm.h"
#include "numerics.h"
#include "rope.h"
#include "sparse_attention.h"

struct v4_attn_layer {
    int ratio;                        /* 0 SWA, 4 CSA, other HCA */
    dsv4_numerics num;
    int64_t dim, H, D, rd, rq, G, R, win, max_batch, max_seq_len;
    float eps;
    rope_freqs rope;
    dsv4_weight wq_a, wq_b, wkv, wo_a, wo_b;
    float *q_norm, *kv_norm, *sink;
    int has_comp, has_indexer;
    v4_compressor comp;
    v4_indexer indexer;
    int64_t cache_rows;               /* win + max_seq_len / ratio */
    float *kv_cache;                  /* [max_batch, cache_rows, D]: ring, then entries */
    int64_t n_entries;                /* compressed entries emitted so far */
    int64_t next_pos;                 /* tokens processed so far in this sequence */
};

/* ---- construction ---- */

/* A 2-D weight `<prefix>.<name>` of shape [rows, cols] (F32 / BF16 / FP8 + scale / FP4) through
 * the weight source; the error names the tensor. */
static int load_weight(const dsv4_wsrc *src, const char *prefix, const char *name, int64_t rows,
                       int64_t cols, dsv4_weight *w)
{
    char full[512];
    snprintf(full, sizeof full, "%s.%s", prefix, name);
    if (wsrc_weight(src, full, rows, cols, w)) return -1;
    if (w->dtype == DSV4_F8_E4M3 && w->scale == NULL)
        return dsv4_set_error("%s: FP8 weight without a scale", full);
    return 0;
}

/* A float vector `<prefix>.<name>` of n values (norm weights, sinks, ape), copied. */
static int load_floats(const dsv4_wsrc *src, const char *prefix, const char *name, int64_t n,
                       float **out)
{
    char full[512];
    snprintf(full, sizeof full, "%s.%s", prefix, name);
    return wsrc_floats(src, full, n, out);
}

/* Compressor weights under `pre` (e.g. "layers.1.attn.compressor"): ape [m, kappa c],
 * wkv / wgate [kappa c, d], norm [c] [CMP-1]. */
static int load_compressor(v4_compressor *C, const dsv4_wsrc *src, const char *pre)
{
    int64_t kc = (int64_t)(1 + C->overlap) * C->head_dim;
    if (load_floats(src, pre, "ape", C->ratio * kc, &C->ape)) return -1;
    if (load_weight(src, pre, "wkv.weight", kc, C->dim, &C->wkv)) return -1;
    if (load_weight(src, pre, "wgate.weight", kc, C->dim, &C->wgate)) return -1;
    if (load_floats(src, pre, "norm.weight", C->head_dim, &C->norm_w)) return -1;
    return 0;
}


/* [V4A-1] [V4Q-3] [CACHE-1] The layer of ratio m under `prefix`: validates the config and every
 * weight (names, dtypes, shapes of spec/v4-attention.md), builds the layer's RoPE table
 * (pitfalls 6, 7), the compressor(s), the indexer (m = 4) and the cache
 * [max_batch, w + max_seq_len/m, D]. NULL with a one-line error naming the tensor. */
v4_attn_layer *v4_attn_layer_new(const dsv4_config *c, int ratio, const dsv4_wsrc *src,
                                  const char *prefix, int64_t max_batch, int64_t max_seq_len,
                                  dsv4_numerics num)
{
    if (ratio < 0) { dsv4_set_error("%s: negative compress ratio %d", prefix, ratio); return NULL; }
    if (c->n_heads < 1 || c->head_dim < 1 || c->rope_head_dim < 0 || c->rope_head_dim > c->head_dim ||
        c->rope_head_dim % 2 || c->o_groups < 1 || c->n_heads % c->o_groups || c->window_size < 1 ||
        max_batch < 1 || max_seq_len < 1) {
        dsv4_set_error("%s: bad attention config (n_heads %lld, head_dim %lld, rope_head_dim %lld, "
                       "o_groups %lld, window %lld)", prefix, (long long)c->n_heads, (long long)c->head_dim,
                       (long long)c->rope_head_dim, (long long)c->o_groups, (long long)c->window_size);
        return NULL;
    }
    if (num == DSV4_OFFICIAL && (c->head_dim - c->rope_head_dim) % 64) {
        dsv4_set_error("%s: head_dim - rope_head_dim = %lld is not a multiple of the FP8 block 64",
                       prefix, (long long)(c->head_dim - c->rope_head_dim));
        return NULL;
    }
    v4_attn_layer *L = dsv4_calloc(1, sizeof *L, "attention layer");
    if (!L) return NULL;
    L->ratio = ratio;
    L->num = num;
    L->dim = c->dim; L->H = c->n_heads; L->D = c->head_dim; L->rd = c->rope_head_dim;
    L->rq = c->q_lora_rank; L->G = c->o_groups; L->R = c->o_lora_rank; L->win = c->window_size;
    L->max_batch = max_batch; L->max_seq_len = max_seq_len;
    L->eps = (float)c->norm_eps;
    /* [V4Q-3] per-layer RoPE: compressed layers theta_c + YaRN (when original_seq_len > 0),
     * SWA layers rope_theta without YaRN; no mscale anywhere (pitfalls 6, 7). */
    if (ratio) {
        if (rope_freqs_init(&L->rope, (int)L->rd, c->compress_rope_theta, c->original_seq_len > 0,
                            c->rope_factor, c->original_seq_len, c->beta_fast, c->beta_slow, num))
            goto fail;
    } else {
        if (rope_freqs_init(&L->rope, (int)L->rd, c->rope_theta, 0, c->rope_factor, 0,
                            c->beta_fast, c->beta_slow, num))
            goto fail;
    }
    int64_t HD = L->H * L->D;
    if (load_weight(src, prefix, "wq_a.weight", L->rq, L->dim, &L->wq_a)) goto fail;
    if (load_floats(src, prefix, "q_norm.weight", L->rq, &L->q_norm)) goto fail;
    if (load_weight(src, prefix, "wq_b.weight", HD, L->rq, &L->wq_b)) goto fail;
    if (load_weight(src, prefix, "wkv.weight", L->D, L->dim, &L->wkv)) goto fail;
    if (load_floats(src, prefix, "kv_norm.weight", L->D, &L->kv_norm)) goto fail;
    if (load_weight(src, prefix, "wo_a.weight", L->G * L->R, HD / L->G, &L->wo_a)) goto fail;
    if (load_weight(src, prefix, "wo_b.weight", L->dim, L->G * L->R, &L->wo_b)) goto fail;
    if (load_floats(src, prefix, "attn_sink", L->H, &L->sink)) goto fail;
    if (ratio) {
        char pre[512];
        L->has_comp = 1;
        if (compressor_init(&L->comp, ratio, (int)L->D, (int)L->rd, L->dim, COMPRESSOR_MAIN, L->eps,
                            &L->rope, max_batch, num)) { L->has_comp = 0; goto fail; }
        snprintf(pre, sizeof pre, "%s.compressor", prefix);
        if (load_compressor(&L->comp, src, pre)) goto fail;
    }
    if (ratio == 4) {
        char pre[512];
        if (c->index_head_dim < c->rope_head_dim) {
            dsv4_set_error("%s: index_head_dim %lld < rope_head_dim %lld", prefix,
                           (long long)c->index_head_dim, (long long)c->rope_head_dim);
            goto fail;
        }
        if (indexer_init(&L->indexer, (int)c->index_n_heads, (int)c->index_head_dim, (int)L->rd,
                         c->index_topk, L->dim, L->rq, L->eps, &L->rope, max_batch, max_seq_len, num))
            goto fail;
        L->has_indexer = 1;
        snprintf(pre, sizeof pre, "%s.indexer", prefix);
        if (load_weight(src, pre, "wq_b.weight", c->index_n_heads * c->index_head_dim, L->rq,
                        &L->indexer.wq_b)) goto fail;
        if (load_weight(src, pre, "weights_proj.weight", c->index_n_heads, L->dim,
                        &L->indexer.weights_proj)) goto fail;
        snprintf(pre, sizeof pre, "%s.indexer.compressor", prefix);
        if (load_compressor(&L->indexer.comp, src, pre)) goto fail;
    }
    L->cache_rows = L->win + (ratio ? max_seq_len / ratio : 0);
    L->kv_cache = dsv4_calloc((size_t)(max_batch * L->cache_rows * L->D), sizeof(float), "attention kv cache");
    if (!L->kv_cache) goto fail;
    v4_attn_layer_reset(L);
    return L;
fail:
    v4_attn_layer_free(L);
    return NULL;
}

/* Frees the layer, its state and its copies of small weights (NULL is a no-op). */
void v4_attn_layer_free(v4_attn_layer *L)
{
    if (!L) return;
    rope_freqs_free(&L->rope);
    free(L->q_norm); free(L->kv_norm); free(L->sink);
    if (L->has_comp) compressor_free(&L->comp);
    if (L->has_indexer) indexer_free(&L->indexer);
    free(L->kv_cache);
    free(L);
}

/* [CACHE-2] New sequences: empty ring and entries, compressor states back to value 0 /
 * score -inf (the official buffers are never reset; a per-sequence reset is the fix). */
void v4_attn_layer_reset(v4_attn_layer *L)
{
    memset(L->kv_cache, 0, sizeof(float) * (size_t)(L->max_batch * L->cache_rows * L->D));
    if (L->has_comp) compressor_reset(&L->comp);
    if (L->has_indexer) indexer_reset(&L->indexer);
    L->n_entries = 0;
    L->next_pos = 0;
}

/* [CACHE-1] Decode-cache bytes per sequence at context length `context`, as this
 * implementation stores them (fp32): window ring min(w, L) rows of D, compressed entries
 * floor(L/m) rows of D, indexer keys floor(L/4) rows of D_I, compressor states
 * 2 x (kappa m) x (kappa c) each. */
int64_t v4_attn_cache_bytes(const v4_attn_layer *L, int64_t context)
{
    int64_t f = (int64_t)sizeof(float);
    int64_t rows = context < L->win ? context : L->win;
    int64_t bytes = rows * L->D * f;
    if (L->has_comp) {
        int64_t k = 1 + L->comp.overlap;
        bytes += (context / L->ratio) * L->D * f;
        bytes += 2 * (k * L->comp.ratio) * (k * L->comp.head_dim) * f;
    }
    if (L->has_indexer) {
        bytes += (context / 4) * L->indexer.head_dim * f;
        bytes += 2 * (2 * 4) * (2 * L->indexer.head_dim) * f;
    }
    return bytes;
}

/* ---- query and window KV paths ---- */

/* [V4Q-1..3] x: [N, d] -> qr: [N, r_q] (the query latent c_q, also the indexer's input),
 * q: [N, H, D]. qr = RMSNorm_q(wq_a x); q = wq_b qr; per-head weightless RMS norm with the
 * bf16 tensor steps (rmsnorm_head); RoPE on the last r dims at position pos0 + (i mod S)
 * (interleaved: pitfall 2). */
static int query_path(v4_attn_layer *L, const float *x, int64_t N, int64_t S, int64_t pos0,
                      float *qr, float *q)
{
    if (dsv4_backend()->linear(&L->wq_a, x, qr, N, 0, L->num)) return -1;
    dsv4_count_linear(DSV4_COMP_Q_PROJ, &L->wq_a, N);                 /* [COST-5] */
    dsv4_backend()->rmsnorm(qr, L->q_norm, qr, N, (int)L->rq, L->eps, L->num);
    if (dsv4_backend()->linear(&L->wq_b, qr, q, N, 0, L->num)) return -1;
    dsv4_count_linear(DSV4_COMP_Q_PROJ, &L->wq_b, N);                 /* [COST-5] */
    dsv4_backend()->rmsnorm_head(q, N * L->H, (int)L->D, L->eps, L->num);
    if (L->rd > 0)
        for (int64_t i = 0; i < N; i++)
            for (int64_t h = 0; h < L->H; h++)
                rope_apply(&L->rope, q + (i * L->H + h) * L->D + (L->D - L->rd), pos0 + i % S,
                           ROPE_INTERLEAVED, 0);
    return 0;
}

/* [WIN-1] [WIN-2] x: [N, d] -> kv: [N, D] raw window rows: RMSNorm_kv(wkv x), RoPE on the
 * last r dims at the token's position, FP8 simulation of the first D - r dims in 64-blocks
 * (official only; rope dims stay bf16). */
static int window_kv(v4_attn_layer *L, const float *x, int64_t N, int64_t S, int64_t pos0, float *kv)
{
    if (dsv4_backend()->linear(&L->wkv, x, kv, N, 0, L->num)) return -1;
    dsv4_count_linear(DSV4_COMP_KV_PROJ, &L->wkv, N);                 /* [COST-5] */
    dsv4_backend()->rmsnorm(kv, L->kv_norm, kv, N, (int)L->D, L->eps, L->num);
    for (int64_t i = 0; i < N; i++) {
        float *row = kv + i * L->D;
        if (L->rd > 0) rope_apply(&L->rope, row + (L->D - L->rd), pos0 + i % S, ROPE_INTERLEAVED, 0);
        if (L->num == DSV4_OFFICIAL) fp8_sim_block(row, L->D - L->rd, 64);
    }
    return 0;
}

/* ---- key lists ---- */

/* [CSA-2] Window part of the key list of query position t, width w_list, into out.
 * prefill (S tokens, rows = positions): max(0, t-w+1) + i for i < min(S, w), -1 where > t.
 * decode (ring slots = position mod w): chronological slots oldest -> newest, -1 padding
 * while t < w - 1. */
static void window_list(const v4_attn_layer *L, int prefill, int64_t t, int64_t w_list, int64_t *out)
{
    int64_t w = L->win;
    if (prefill) {
        int64_t base = t - w + 1 > 0 ? t - w + 1 : 0;
        for (int64_t i = 0; i < w_list; i++) out[i] = base + i > t ? -1 : base + i;
    } else if (t >= w - 1) {
        int64_t s = t % w;
        for (int64_t i = 0; i < w; i++) out[i] = (s + 1 + i) % w;
    } else {
        for (int64_t i = 0; i < w; i++) out[i] = i <= t ? i : -1;
    }
}

/* ---- output projection ---- */

/* [OUT-2] [OUT-3] o: [N, H*D] -> out: [N, d]. Group g (heads g*H/G .. (g+1)*H/G - 1, their
 * (H/G)*D values contiguous) is projected by rows g*R .. (g+1)*R - 1 of wo_a (bf16 einsum:
 * one bf16 rounding; an FP8-stored wo_a is read as the bf16 matrix convert.py makes, [LIN-5]),
 * then out = wo_b(z) (the graph's GEMM). Guards pitfall 18: wo_a has H*D/G columns, not dim. */
static int output_projection(v4_attn_layer *L, const float *o, int64_t N, float *out)
{
    int64_t cols = L->H * L->D / L->G, GR = L->G * L->R;
    float *og = dsv4_calloc((size_t)(N * cols), sizeof(float), "output group");
    float *zg = dsv4_calloc((size_t)(N * L->R), sizeof(float), "output group");
    float *z = dsv4_calloc((size_t)(N * GR), sizeof(float), "output latent");
    int ret = -1;
    if (!og || !zg || !z) goto done;
    for (int64_t g = 0; g < L->G; g++) {
        dsv4_weight wg = L->wo_a;
        size_t esz = dsv4_dtype_size(wg.dtype);
        wg.rows = L->R;
        wg.data = (const char *)L->wo_a.data + (size_t)(g * L->R * cols) * esz;
        for (int64_t i = 0; i < N; i++)
            memcpy(og + i * cols, o + i * L->H * L->D + g * cols, sizeof(float) * (size_t)cols);
        if (wg.dtype == DSV4_BF16 || wg.dtype == DSV4_F32) {
            if (dsv4_backend()->linear(&wg, og, zg, N, 0, L->num)) goto done;
        } else if (linear_dequant_bf16(&L->wo_a, g * L->R, L->R, og, zg, N, L->num)) {
            goto done;   /* FP8 wo_a read as convert.py's bf16, no copy [LIN-5] */
        }
        dsv4_count_linear(DSV4_COMP_O_PROJ, &wg, N);                  /* [COST-5] */
        for (int64_t i = 0; i < N; i++)
            memcpy(z + i * GR + g * L->R, zg + i * L->R, sizeof(float) * (size_t)L->R);
    }
    if (dsv4_backend()->linear(&L->wo_b, z, out, N, 0, L->num)) goto done;
    dsv4_count_linear(DSV4_COMP_O_PROJ, &L->wo_b, N);                 /* [COST-5] */
    ret = 0;
done:
    free(og); free(zg); free(z);
    return ret;
}

/* ---- taps ---- */

/* Entries emitted in this call: [B, n, c], BF16 in official mode (the graph's dtype), F32 in
 * exact mode; nothing when none was emitted (the official taps are absent then). */
static int tap_entries(dsv4_taps *taps, const char *prefix, const char *name, const float *e,
                       int64_t B, int64_t n, int64_t c, dsv4_numerics num)
{
    if (!taps || n <= 0) return 0;
    int64_t shape[3] = { B, n, c };
    return dsv4_tap(taps, num == DSV4_OFFICIAL ? DSV4_BF16 : DSV4_F32, 3, shape, e, "%s.%s", prefix, name);
}

/* ---- one call ---- */

/* [V4A-1] One call of the official schedule (ref/attention.h). x: [B, S, d] -> out: [B, S, d].
 * prefill (start_pos 0): KV buffer per row = [S raw rows; S/m entries] (entry j at row S + j);
 * decode (S = 1, start_pos = tokens so far): KV buffer = the cache [w ring; entries]
 * (entry j at row w + j); the token's raw row and any just-emitted entry are written before
 * attention [CSA-4]. Indexer tap values are shifted by that offset (S or w), as the official
 * graph's. Guards pitfalls 8 (output de-rotation), 9, 10, 13. */
int v4_attn_forward(v4_attn_layer *L, const float *x, float *out, int64_t B, int64_t S,
                    int64_t start_pos, dsv4_taps *taps, const char *tap_prefix)
{
    int prefill = start_pos == 0;
    int64_t N = B * S, H = L->H, D = L->D, w = L->win, m = L->ratio;
    int ret = -1;
    if (B < 1 || B > L->max_batch)
        return dsv4_set_error("attention: batch %lld outside [1, %lld]", (long long)B, (long long)L->max_batch);
    if (S < 1 || start_pos < 0 || (!prefill && S != 1))
        return dsv4_set_error("attention: unsupported call (start_pos %lld, S %lld): prefill needs "
                              "start_pos 0, decode S 1", (long long)start_pos, (long long)S);
    if (!prefill && start_pos != L->next_pos)
        return dsv4_set_error("attention: decode at position %lld but the state holds %lld tokens",
                              (long long)start_pos, (long long)L->next_pos);
    if (start_pos + S > L->max_seq_len)
        return dsv4_set_error("attention: position %lld beyond max_seq_len %lld",
                              (long long)(start_pos + S - 1), (long long)L->max_seq_len);
    for (int64_t i = 0; i < N * L->dim; i++)
        if (!isfinite(x[i]))
            return dsv4_set_error("attention: non-finite input at element %lld", (long long)i);
    if (prefill) v4_attn_layer_reset(L);

    int64_t end = start_pos + S;
    int64_t w_list = prefill ? (S < w ? S : w) : w;
    int64_t c_list = 0;                       /* compressed part width */
    if (m == 4) c_list = indexer_k(&L->indexer, end);
    else if (m) c_list = prefill ? S / m : end / m;
    int64_t width = w_list + c_list;
    int64_t n_ent_new = prefill && m ? S / m : 1;
    int64_t kv_rows = prefill ? S + (m ? S / m : 0) : L->cache_rows;

    float *qr = dsv4_calloc((size_t)(N * L->rq), sizeof(float), "attention qr");
    float *q = dsv4_calloc((size_t)(N * H * D), sizeof(float), "attention q");
    float *kv = dsv4_calloc((size_t)(N * D), sizeof(float), "attention kv");
    float *o = dsv4_calloc((size_t)(N * H * D), sizeof(float), "attention o");
    int64_t *list = dsv4_calloc((size_t)(N * width + 1), sizeof(int64_t), "attention key list");
    int64_t *cidx = dsv4_calloc((size_t)(N * c_list + 1), sizeof(int64_t), "attention indexer picks");
    float *ent = dsv4_calloc((size_t)(B * n_ent_new * D + 1), sizeof(float), "attention new entries");
    float *buf = prefill ? dsv4_calloc((size_t)(kv_rows * D), sizeof(float), "attention kv buffer") : NULL;
    if (!qr || !q || !kv || !o || !list || !cidx || !ent || (prefill && !buf)) goto done;

    if (query_path(L, x, N, S, start_pos, qr, q)) goto done;
    if (window_kv(L, x, N, S, start_pos, kv)) goto done;

    /* [CSA-3] compressed part of the key list (entry numbers, shifted below) */
    int64_t offset = prefill ? S : w;
    if (m == 4) {
        int64_t n_new_keys = 0;
        if (indexer_forward(&L->indexer, x, qr, B, S, start_pos, cidx, &n_new_keys)) goto done;
        if (taps && n_new_keys > 0) {
            float *keys = dsv4_calloc((size_t)(B * n_new_keys * L->indexer.head_dim), sizeof(float), "tap");
            if (!keys) goto done;
            int64_t DI = L->indexer.head_dim, j0 = L->indexer.n_keys - n_new_keys;
            for (int64_t b = 0; b < B; b++)
                memcpy(keys + b * n_new_keys * DI, L->indexer.keys + (b * L->indexer.max_entries + j0) * DI,
                       sizeof(float) * (size_t)(n_new_keys * DI));
            int bad = tap_entries(taps, tap_prefix, "attn.indexer.compressor", keys, B, n_new_keys, DI, L->num);
            free(keys);
            if (bad) goto done;
        }
        if (taps) {
            int64_t *shifted = dsv4_calloc((size_t)(N * c_list + 1), sizeof(int64_t), "tap");
            if (!shifted) goto done;
            for (int64_t i = 0; i < N * c_list; i++) shifted[i] = cidx[i] < 0 ? -1 : cidx[i] + offset;
            int64_t shape[3] = { B, S, c_list };
            int bad = dsv4_tap(taps, DSV4_I64, 3, shape, shifted, "%s.attn.indexer", tap_prefix);
            free(shifted);
            if (bad) goto done;
        }
    } else if (m) {
        for (int64_t i = 0; i < N; i++) {
            int64_t t = start_pos + i % S, vis = (t + 1) / m;
            for (int64_t j = 0; j < c_list; j++) cidx[i * c_list + j] = j < vis ? j : -1;
        }
    }
    for (int64_t i = 0; i < N; i++) {
        int64_t t = start_pos + i % S;
        window_list(L, prefill, t, w_list, list + i * width);
        for (int64_t j = 0; j < c_list; j++) {
            int64_t e = cidx[i * c_list + j];
            list[i * width + w_list + j] = e < 0 ? -1 : e + offset;
        }
    }

    /* [CSA-4] window ring and compressed entries, then the KV buffer */
    for (int64_t b = 0; b < B; b++) {
        float *cache = L->kv_cache + b * L->cache_rows * D;
        for (int64_t s = (S > w ? S - w : 0); s < S; s++)
            memcpy(cache + ((start_pos + s) % w) * D, kv + (b * S + s) * D, sizeof(float) * (size_t)D);
    }
    int64_t n_emit = 0;
    if (m) {
        if (prefill) {
            n_emit = compressor_prefill(&L->comp, x, B, S, ent);
            if (n_emit < 0) goto done;
            L->n_entries = 0;
        } else {
            int e = compressor_decode(&L->comp, x, B, start_pos, ent);
            if (e < 0) goto done;
            n_emit = e;
        }
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < n_emit; j++)
                memcpy(L->kv_cache + (b * L->cache_rows + w + L->n_entries + j) * D,
                       ent + (b * n_emit + j) * D, sizeof(float) * (size_t)D);
        L->n_entries += n_emit;
        if (tap_entries(taps, tap_prefix, "attn.compressor", ent, B, n_emit, D, L->num)) goto done;
    }

    /* [SPA-1] attention per query position */
    double scale = 1.0 / sqrt((double)D);
    if (L->num == DSV4_OFFICIAL) scale = (double)(float)pow((double)D, -0.5);
    for (int64_t b = 0; b < B; b++) {
        const float *kvb;
        if (prefill) {
            memcpy(buf, kv + b * S * D, sizeof(float) * (size_t)(S * D));
            if (m) memcpy(buf + S * D, ent + b * n_emit * D, sizeof(float) * (size_t)(n_emit * D));
            kvb = buf;
        } else {
            kvb = L->kv_cache + b * L->cache_rows * D;
        }
        for (int64_t s = 0; s < S; s++) {
            int64_t i = b * S + s;
            if (dsv4_backend()->sparse_attention(q + i * H * D, H, D, kvb, kv_rows, list + i * width,
                                                 width, L->sink, scale, o + i * H * D, L->num))
                goto done;
        }
    }

    /* [OUT-1] inverse RoPE of the output's rope dims at the query position (pitfall 8) */
    if (L->rd > 0)
        for (int64_t i = 0; i < N; i++)
            for (int64_t h = 0; h < H; h++)
                rope_apply(&L->rope, o + (i * H + h) * D + (D - L->rd), start_pos + i % S,
                           ROPE_INTERLEAVED, 1);

    if (output_projection(L, o, N, out)) goto done;
    L->next_pos = end;
    ret = 0;
done:
    free(qr); free(q); free(kv); free(o); free(list); free(cidx); free(ent); free(buf);
    return ret;
}
