/* mha.c — dense causal multi-head attention with RoPE (spec/mha.md).
 *
 * Forward order of one call (x: [B, S, d] -> out: [B, S, d]):
 *   [MHA-1] q = wq x, k = wk x, v = wv x            per head [H, D], [H, D], [H, Dv]
 *   [MHA-2] RoPE (interleaved pairs) on every q[h] and k[h] at the token's position
 *   [MHA-3] k, v appended to the per-sequence cache (a token sees itself)
 *   [MHA-4] l[t,s,h] = q[t,h] . k[s,h] / sqrt(D) for s <= t (causal)
 *   [MHA-5] p = softmax_s(l)
 *   [MHA-6] o[t,h] = sum_s p[t,s,h] v[s,h]
 *   [MHA-7] out = wo concat_h o[t,h]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mha.h"
#include "backend.h"
#include "counters.h"
#include "linear.h"
#include "numerics.h"
#include "rope.h"

/* ---- [MHA-5] softmax ---- */

/* l, p: [n] (may alias). official: m = max, e = expf(l - m), fp32 sum, p = bf16(e / sum);
 * exact: double. */
void attn_softmax(const float *l, float *p, int64_t n, dsv4_numerics num)
{
    if (n <= 0) return;
    if (num == DSV4_OFFICIAL) {
        float m = l[0], sum = 0.0f;
        for (int64_t i = 1; i < n; i++) if (l[i] > m) m = l[i];
        for (int64_t i = 0; i < n; i++) { p[i] = expf(l[i] - m); sum += p[i]; }
        for (int64_t i = 0; i < n; i++) p[i] = round_bf16(p[i] / sum);
    } else {
        double m = l[0], sum = 0.0;
        for (int64_t i = 1; i < n; i++) if (l[i] > m) m = l[i];
        for (int64_t i = 0; i < n; i++) sum += exp((double)l[i] - m);
        for (int64_t i = 0; i < n; i++) p[i] = (float)(exp((double)l[i] - m) / sum);
    }
}

/* ---- [MHA-4..MHA-6] one query row ---- */

/* See mha.h. q: [D], K/V strided rows, keys: [nk] (-1 masked), o: [Dv], scratch: [nk].
 * Pitfall 13: masked keys are skipped; with none left o = 0 exactly. */
void mha_attend_row(const float *q, const float *K, int64_t kstride, const float *V,
                    int64_t vstride, const int64_t *keys, int64_t nk, int64_t D, int64_t Dv,
                    double scale, dsv4_numerics num, float *scratch, float *o)
{
    const float scale_f = (float)scale;
    int64_t n = 0;
    for (int64_t j = 0; j < nk; j++) {
        if (keys[j] < 0) continue;
        dsv4_count(DSV4_COMP_CORE_ATTN, D + Dv);                      /* [COST-2]: q.k, p.v */
        const float *k = K + keys[j] * kstride;
        double dot = 0.0;
        for (int64_t d = 0; d < D; d++) dot += (double)q[d] * (double)k[d];
        if (num == DSV4_OFFICIAL) scratch[n++] = round_bf16(round_bf16((float)dot) * scale_f);
        else scratch[n++] = (float)(dot * scale);
    }
    attn_softmax(scratch, scratch, n, num);
    for (int64_t d = 0; d < Dv; d++) {
        double acc = 0.0;
        int64_t i = 0;
        for (int64_t j = 0; j < nk; j++) {
            if (keys[j] < 0) continue;
            acc += (double)scratch[i++] * (double)V[keys[j] * vstride + d];
        }
        o[d] = num == DSV4_OFFICIAL ? round_bf16((float)acc) : (float)acc;
    }
}

/* ---- the layer ---- */

struct mha_layer {
    mha_config c;
    dsv4_numerics num;
    rope_freqs rope;
    int rope_ok;
    dsv4_weight wq, wk, wv, wo;
    int64_t max_batch, max_seq_len;
    float *k_cache;   /* [max_batch, max_seq_len, H, D]  rotated keys */
    float *v_cache;   /* [max_batch, max_seq_len, H, Dv] */
};

/* "<prefix>.<leaf>.weight" as a [rows, cols] view (error names the tensor). */
static int mha_get(const dsv4_wlookup *w, const char *prefix, const char *leaf, int64_t rows,
                   int64_t cols, dsv4_weight *out)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s.weight", prefix, leaf);
    return w->weight(w->ctx, name, rows, cols, out);
}

/* [MHA-1..MHA-3] Validates the config, reads wq, wk, wv, wo (views), builds the plain RoPE
 * table over the whole head (interleaved, no YaRN) and the caches k: [max_batch,
 * max_seq_len, H, D], v: [max_batch, max_seq_len, H, Dv]. */
mha_layer *mha_layer_new(const mha_config *c, const dsv4_wlookup *w, const char *prefix,
                         int64_t max_batch, int64_t max_seq_len, dsv4_numerics num)
{
    if (c->dim <= 0 || c->n_heads <= 0 || c->head_dim <= 0 || c->v_head_dim <= 0 ||
        c->head_dim % 2 || c->rope_theta <= 1.0 || max_batch <= 0 || max_seq_len <= 0) {
        dsv4_set_error("%s: MHA config needs dim, n_heads, v_head_dim > 0, head_dim even > 0, "
                       "rope_theta > 1, max_batch and max_seq_len > 0", prefix);
        return NULL;
    }
    mha_layer *L = dsv4_calloc(1, sizeof *L, "MHA layer");
    if (!L) return NULL;
    const int64_t H = c->n_heads;
    L->c = *c; L->num = num; L->max_batch = max_batch; L->max_seq_len = max_seq_len;
    if (rope_freqs_init(&L->rope, (int)c->head_dim, c->rope_theta, 0, 1.0, 0, 0.0, 0.0, num)) goto fail;
    L->rope_ok = 1;
    if (mha_get(w, prefix, "wq", H * c->head_dim, c->dim, &L->wq)) goto fail;
    if (mha_get(w, prefix, "wk", H * c->head_dim, c->dim, &L->wk)) goto fail;
    if (mha_get(w, prefix, "wv", H * c->v_head_dim, c->dim, &L->wv)) goto fail;
    if (mha_get(w, prefix, "wo", c->dim, H * c->v_head_dim, &L->wo)) goto fail;
    L->k_cache = dsv4_calloc((size_t)(max_batch * max_seq_len * H * c->head_dim), sizeof(float), "MHA k cache");
    L->v_cache = dsv4_calloc((size_t)(max_batch * max_seq_len * H * c->v_head_dim), sizeof(float), "MHA v cache");
    if (!L->k_cache || !L->v_cache) goto fail;
    return L;
fail:
    mha_layer_free(L);
    return NULL;
}

/* Frees the layer and its cache (weights are views). */
void mha_layer_free(mha_layer *L)
{
    if (!L) return;
    if (L->rope_ok) rope_freqs_free(&L->rope);
    free(L->k_cache); free(L->v_cache);
    free(L);
}

/* [MHA-3] New sequences: the k/v cache back to 0. */
void mha_layer_reset(mha_layer *L)
{
    const size_t BT = (size_t)(L->max_batch * L->max_seq_len), H = (size_t)L->c.n_heads;
    memset(L->k_cache, 0, BT * H * (size_t)L->c.head_dim * sizeof(float));
    memset(L->v_cache, 0, BT * H * (size_t)L->c.v_head_dim * sizeof(float));
}

/* [MHA-7] bf16 k and v of every head. */
int64_t mha_cache_bytes_per_token(const mha_layer *L)
{
    return 2 * L->c.n_heads * (L->c.head_dim + L->c.v_head_dim);
}

/* [MHA-1..MHA-7]  x: [B, S, d] -> out: [B, S, d]. Official: bf16 GEMM outputs and RoPE
 * outputs, then mha_attend_row; exact: double. Causal: row t sees keys 0..t. */
int mha_forward(mha_layer *L, const float *x, float *out, int64_t B, int64_t S, int64_t start_pos)
{
    const int64_t H = L->c.n_heads, D = L->c.head_dim, Dv = L->c.v_head_dim;
    const int64_t end_pos = start_pos + S;
    const dsv4_numerics num = L->num;
    const double scale = 1.0 / sqrt((double)D);
    int rc = -1;
    if (B < 1 || B > L->max_batch || S < 1 || start_pos < 0 || end_pos > L->max_seq_len)
        return dsv4_set_error("MHA: call [%lld, %lld) x batch %lld outside the cache "
                              "(max_seq_len %lld, max_batch %lld)", (long long)start_pos,
                              (long long)end_pos, (long long)B, (long long)L->max_seq_len,
                              (long long)L->max_batch);
    float *q = dsv4_calloc((size_t)(B * S * H * D), sizeof(float), "MHA q");
    float *k = dsv4_calloc((size_t)(B * S * H * D), sizeof(float), "MHA k");
    float *v = dsv4_calloc((size_t)(B * S * H * Dv), sizeof(float), "MHA v");
    float *o = dsv4_calloc((size_t)(B * S * H * Dv), sizeof(float), "MHA o");
    float *scratch = dsv4_calloc((size_t)end_pos, sizeof(float), "MHA logits");
    int64_t *keys = dsv4_calloc((size_t)end_pos, sizeof(int64_t), "MHA keys");
    if (!q || !k || !v || !o || !scratch || !keys) goto done;

    /* [MHA-1] projections */
    if (dsv4_backend()->linear(&L->wq, x, q, B * S, 0, num)) goto done;
    if (dsv4_backend()->linear(&L->wk, x, k, B * S, 0, num)) goto done;
    if (dsv4_backend()->linear(&L->wv, x, v, B * S, 0, num)) goto done;
    dsv4_count_linear(DSV4_COMP_Q_PROJ, &L->wq, B * S);                /* [COST-2] */
    dsv4_count_linear(DSV4_COMP_KV_PROJ, &L->wk, B * S);
    dsv4_count_linear(DSV4_COMP_KV_PROJ, &L->wv, B * S);
    /* [MHA-2] RoPE; [MHA-3] cache */
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            const int64_t t = start_pos + s, bs = b * S + s, slot = b * L->max_seq_len + t;
            for (int64_t h = 0; h < H; h++) {
                rope_apply(&L->rope, q + (bs * H + h) * D, t, ROPE_INTERLEAVED, 0);
                rope_apply(&L->rope, k + (bs * H + h) * D, t, ROPE_INTERLEAVED, 0);
            }
            memcpy(L->k_cache + slot * H * D, k + bs * H * D, (size_t)(H * D) * sizeof(float));
            memcpy(L->v_cache + slot * H * Dv, v + bs * H * Dv, (size_t)(H * Dv) * sizeof(float));
        }
    /* [MHA-4..MHA-6] causal attention */
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            const int64_t t = start_pos + s, bs = b * S + s;
            for (int64_t j = 0; j <= t; j++) keys[j] = j;
            for (int64_t h = 0; h < H; h++)
                mha_attend_row(q + (bs * H + h) * D,
                               L->k_cache + (b * L->max_seq_len * H + h) * D, H * D,
                               L->v_cache + (b * L->max_seq_len * H + h) * Dv, H * Dv,
                               keys, t + 1, D, Dv, scale, num, scratch, o + (bs * H + h) * Dv);
        }
    /* [MHA-7] output projection */
    if (dsv4_backend()->linear(&L->wo, o, out, B * S, 0, num)) goto done;
    dsv4_count_linear(DSV4_COMP_O_PROJ, &L->wo, B * S);                /* [COST-2] */
    rc = 0;
done:
    free(q); free(k); free(v); free(o); free(scratch); free(keys);
    return rc;
}
