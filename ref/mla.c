/* mla.c — Multi-head Latent Attention (V2/V3) and its DSA form (V3.2-Exp): spec/mla.md,
 * spec/dsa.md.
 *
 * Forward order of one call (x: [B, S, d] -> out: [B, S, d]):
 *   [MLA-1] query:  c_Q = RMSNorm(wq_a x), q = wq_b c_Q    (or q = wq x when q_lora_rank = 0)
 *                   q[h] = [q_C (nope) | q_R (rope)]
 *   [MLA-2] RoPE, interleaved pairs, on every q_R[h] and on the shared rope key k_R
 *   [MLA-3] kv:     [c~ | k_R] = wkv_a x,  c = RMSNorm(c~)
 *   [MLA-4] V3.2 official: FP8 round trip of c; cache c and k_R (before attention)
 *   [DSA-8] with the indexer: the selected set T_t of each query row
 *   [MLA-6n] naive:    k[h] = [W_UK[h] c | k_R], v[h] = W_UV[h] c cached; l = (q.k) lambda
 *   [MLA-6a] absorbed: q~[h] = W_UK[h]^T q_C[h]; l = (q~.c + q_R.k_R) lambda;
 *                      o~ = sum p c; o[h] = W_UV[h] o~
 *   [MLA-5] lambda = d_qk^-1/2 m^2 (YaRN mscale, iff max_seq_len > original_seq_len)
 *   [MLA-9] softmax over the causal (and selected) keys; a row without keys gives 0
 *   [MLA-7] out = wo concat_h o[h]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mla.h"
#include "backend.h"
#include "counters.h"
#include "mha.h"
#include "dsa_indexer.h"
#include "json.h"
#include "linear.h"
#include "norm.h"
#include "numerics.h"
#include "rope.h"

/* ---- configuration [MLA-0] ---- */

/* [MLA-0] The official V3.2 ModelArgs defaults (norm_eps 1e-6; v32 = 0). */
void mla_config_defaults(mla_config *c)
{
    memset(c, 0, sizeof *c);
    c->dim = 2048; c->n_heads = 16;
    c->q_lora_rank = 0; c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 128; c->qk_rope_head_dim = 64; c->v_head_dim = 128;
    c->max_seq_len = 16384; c->original_seq_len = 4096; c->max_batch_size = 8;
    c->rope_theta = 10000.0; c->rope_factor = 40.0; c->beta_fast = 32.0; c->beta_slow = 1.0;
    c->mscale = 1.0;
    c->index_n_heads = 64; c->index_head_dim = 128; c->index_topk = 2048;
    c->norm_eps = 1e-6;
    c->v32 = 0;
}

/* [MLA-0] json: [len] bytes of one JSON object with official ModelArgs names; integers must be
 * integers; unknown fields are ignored; v32 = 1 iff index_topk is present (a V3.2 config). */
int mla_config_from_json(mla_config *c, const char *json, size_t len, const char *what)
{
    static const char *const ints[] = {
        "dim", "n_heads", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
        "v_head_dim", "max_seq_len", "original_seq_len", "max_batch_size", "index_n_heads",
        "index_head_dim", "index_topk"
    };
    int64_t *const iptr[] = {
        &c->dim, &c->n_heads, &c->q_lora_rank, &c->kv_lora_rank, &c->qk_nope_head_dim,
        &c->qk_rope_head_dim, &c->v_head_dim, &c->max_seq_len, &c->original_seq_len,
        &c->max_batch_size, &c->index_n_heads, &c->index_head_dim, &c->index_topk
    };
    static const char *const dbls[] = { "rope_theta", "rope_factor", "beta_fast", "beta_slow", "mscale" };
    double *const dptr[] = { &c->rope_theta, &c->rope_factor, &c->beta_fast, &c->beta_slow, &c->mscale };
    char err[256];
    mla_config_defaults(c);
    json_value *v = json_parse(json, len, err, sizeof err);
    if (!v) return dsv4_set_error("%s: config is not valid JSON: %s", what, err);
    if (v->type != JSON_OBJECT) { json_free(v); return dsv4_set_error("%s: config is not a JSON object", what); }
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        const json_value *f = json_get(v, ints[i]);
        if (f && json_int64(f, iptr[i])) {
            json_free(v);
            return dsv4_set_error("%s: config field %s must be an integer", what, ints[i]);
        }
    }
    for (size_t i = 0; i < sizeof dbls / sizeof dbls[0]; i++) {
        const json_value *f = json_get(v, dbls[i]);
        if (f && json_double(f, dptr[i])) {
            json_free(v);
            return dsv4_set_error("%s: config field %s must be a number", what, dbls[i]);
        }
    }
    c->v32 = json_get(v, "index_topk") != NULL;
    json_free(v);
    return 0;
}

/* [MLA-0] One clear error per violated range; the indexer needs the query latent (r_q > 0). */
int mla_config_validate(const mla_config *c, int use_indexer, const char *what)
{
    if (c->dim <= 0) return dsv4_set_error("%s: dim must be > 0", what);
    if (c->n_heads <= 0) return dsv4_set_error("%s: n_heads must be > 0", what);
    if (c->q_lora_rank < 0) return dsv4_set_error("%s: q_lora_rank must be >= 0", what);
    if (c->kv_lora_rank <= 0) return dsv4_set_error("%s: kv_lora_rank must be > 0", what);
    if (c->qk_nope_head_dim <= 0) return dsv4_set_error("%s: qk_nope_head_dim must be > 0", what);
    if (c->qk_rope_head_dim <= 0 || c->qk_rope_head_dim % 2)
        return dsv4_set_error("%s: qk_rope_head_dim must be even and > 0", what);
    if (c->v_head_dim <= 0) return dsv4_set_error("%s: v_head_dim must be > 0", what);
    if (c->rope_theta <= 1.0) return dsv4_set_error("%s: rope_theta must be > 1", what);
    if (c->max_seq_len > c->original_seq_len && c->rope_factor <= 1.0)
        return dsv4_set_error("%s: rope_factor must be > 1 when YaRN applies (max_seq_len > "
                              "original_seq_len)", what);
    if (use_indexer) {
        if (c->q_lora_rank == 0)
            return dsv4_set_error("%s: the DSA indexer needs q_lora_rank > 0 (its q input is the "
                                  "query latent)", what);
        if (c->index_n_heads <= 0 || c->index_head_dim <= 0 || c->index_topk <= 0)
            return dsv4_set_error("%s: index_n_heads, index_head_dim, index_topk must be > 0", what);
    }
    return 0;
}

/* [MLA-5]  lambda in double, in the official order: (d_qk^-1/2 * m) * m. Pitfall 1. */
double mla_softmax_scale(const mla_config *c)
{
    double s = pow((double)(c->qk_nope_head_dim + c->qk_rope_head_dim), -0.5);
    if (c->max_seq_len > c->original_seq_len) {
        double m = 0.1 * c->mscale * log(c->rope_factor) + 1.0;
        s = s * m * m;
    }
    return s;
}

/* [MLA-6] the official demo's path for this config (see mla.h) */
mla_path mla_official_path(const mla_config *c)
{
    return c->v32 ? MLA_V32 : MLA_ABSORBED;
}

/* ---- the layer ---- */

struct mla_layer {
    mla_config c;
    dsv4_numerics num;
    mla_path path;
    int64_t H, dn, dr, dv, dqk, rkv, rq, dim;
    double lambda;               /* exact mode */
    float lambda_f;              /* official mode: the Python float as the fp32 operand */
    rope_freqs rope;
    int rope_ok;
    dsv4_weight wq, wq_a, wq_b, wkv_a, wkv_b, wo;
    float *q_norm_w, *kv_norm_w;
    float *wkv_b_f;              /* [H, dn + dv, rkv] dequantized (official: bf16 values) */
    uint16_t *owned[6];          /* V3 official: FP8 weights dequantized to bf16 [LIN-1] */
    int n_owned;
    int64_t max_batch, max_seq_len;
    float *kv_cache;             /* [max_batch, max_seq_len, rkv]  latent c */
    float *pe_cache;             /* [max_batch, max_seq_len, dr]   rope key k_R (rotated) */
    float *k_cache;              /* [max_batch, max_seq_len, H, dqk]  naive paths only */
    float *v_cache;              /* [max_batch, max_seq_len, H, dv]   naive paths only */
    dsa_indexer *idx;
    int64_t *topk;               /* [B, S, k] of the last call */
    int64_t topk_k;
};

/* [MLA-0] V3 official graph (not v32): a weight stored in FP8 is dequantized to bf16,
 * W = bf16(f32(e4m3) * block scale) (the V3 weight_dequant), and multiplied by a bf16 GEMM
 * (gemm_impl = "bf16"), instead of V3.2's FP8 GEMM with activation quantization. w is
 * replaced by a BF16 view of an owned copy. Other dtypes and modes: unchanged. */
static int v3_bf16_weight(mla_layer *L, dsv4_weight *w)
{
    if (L->num != DSV4_OFFICIAL || L->c.v32 || w->dtype != DSV4_F8_E4M3) return 0;
    if (weight_check(w)) return -1;
    uint16_t *b = dsv4_calloc((size_t)(w->rows * w->cols), sizeof(uint16_t), w->name);
    if (!b) return -1;
    for (int64_t r = 0; r < w->rows; r++)
        for (int64_t k = 0; k < w->cols; k++) b[r * w->cols + k] = bf16_from_float(weight_at(w, r, k));
    L->owned[L->n_owned++] = b;
    w->dtype = DSV4_BF16;
    w->data = b;
    w->scale = NULL;
    return 0;
}

/* "<prefix>.<leaf>.weight" as a [rows, cols] view (error names the tensor). */
static int get_w(const dsv4_wlookup *w, const char *prefix, const char *leaf, int64_t rows,
                 int64_t cols, dsv4_weight *out)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s.weight", prefix, leaf);
    return w->weight(w->ctx, name, rows, cols, out);
}

/* "<prefix>.<leaf>.weight" as a fresh float copy of n values. */
static int get_f(const dsv4_wlookup *w, const char *prefix, const char *leaf, int64_t n, float **out)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s.weight", prefix, leaf);
    return w->floats(w->ctx, name, n, out);
}

/* [MLA-0] Validates the config, reads every weight (views; norms copied), builds the RoPE
 * table [MLA-2] (YaRN iff max_seq_len > original_seq_len), the dequantized wkv_b of the
 * absorbed path (official: bf16 values, as the official weight_dequant), the caches
 * [MLA-8] and the indexer [DSA-1..7]. Caches: kv/pe [max_batch, max_seq_len, r_kv / d_r];
 * naive paths also k/v [max_batch, max_seq_len, H, d_qk / d_v]. */
mla_layer *mla_layer_new(const mla_config *c, const dsv4_wlookup *w, const char *prefix,
                         int64_t max_batch, int64_t max_seq_len, dsv4_numerics num,
                         mla_path path, int use_indexer)
{
    if (mla_config_validate(c, use_indexer, prefix)) return NULL;
    if (max_batch <= 0 || max_seq_len <= 0) {
        dsv4_set_error("%s: max_batch and max_seq_len must be > 0", prefix);
        return NULL;
    }
    if (num == DSV4_OFFICIAL && c->v32 && c->kv_lora_rank % 128) {
        dsv4_set_error("%s: kv_lora_rank %lld is not a multiple of 128: the V3.2 FP8 latent "
                       "simulation quantizes 128-wide blocks", prefix, (long long)c->kv_lora_rank);
        return NULL;
    }
    mla_layer *L = dsv4_calloc(1, sizeof *L, "MLA layer");
    if (!L) return NULL;
    L->c = *c; L->num = num; L->path = path;
    L->H = c->n_heads; L->dn = c->qk_nope_head_dim; L->dr = c->qk_rope_head_dim;
    L->dv = c->v_head_dim; L->dqk = L->dn + L->dr; L->rkv = c->kv_lora_rank;
    L->rq = c->q_lora_rank; L->dim = c->dim;
    L->lambda = mla_softmax_scale(c);
    L->lambda_f = (float)L->lambda;
    L->max_batch = max_batch; L->max_seq_len = max_seq_len;

    if (rope_freqs_init(&L->rope, (int)L->dr, c->rope_theta, c->max_seq_len > c->original_seq_len,
                        c->rope_factor, c->original_seq_len, c->beta_fast, c->beta_slow, num))
        goto fail;
    L->rope_ok = 1;

    if (L->rq == 0) {
        if (get_w(w, prefix, "wq", L->H * L->dqk, L->dim, &L->wq)) goto fail;
    } else {
        if (get_w(w, prefix, "wq_a", L->rq, L->dim, &L->wq_a)) goto fail;
        if (get_f(w, prefix, "q_norm", L->rq, &L->q_norm_w)) goto fail;
        if (get_w(w, prefix, "wq_b", L->H * L->dqk, L->rq, &L->wq_b)) goto fail;
    }
    if (get_w(w, prefix, "wkv_a", L->rkv + L->dr, L->dim, &L->wkv_a)) goto fail;
    if (get_f(w, prefix, "kv_norm", L->rkv, &L->kv_norm_w)) goto fail;
    if (get_w(w, prefix, "wkv_b", L->H * (L->dn + L->dv), L->rkv, &L->wkv_b)) goto fail;
    if (get_w(w, prefix, "wo", L->dim, L->H * L->dv, &L->wo)) goto fail;
    {
        dsv4_weight *all[6] = { &L->wq, &L->wq_a, &L->wq_b, &L->wkv_a, &L->wkv_b, &L->wo };
        for (int i = 0; i < 6; i++)
            if (all[i]->data && v3_bf16_weight(L, all[i])) goto fail;
    }

    /* the absorbed path reads W_UK / W_UV element-wise: dequantize once (official: to bf16,
     * as the official weight_dequant; bf16 weights are used as they are) */
    L->wkv_b_f = dsv4_calloc((size_t)(L->H * (L->dn + L->dv) * L->rkv), sizeof(float), "wkv_b dequantized");
    if (!L->wkv_b_f) goto fail;
    for (int64_t r = 0; r < L->H * (L->dn + L->dv); r++)
        for (int64_t k = 0; k < L->rkv; k++) {
            float v = weight_at(&L->wkv_b, r, k);
            L->wkv_b_f[r * L->rkv + k] = num == DSV4_OFFICIAL ? round_bf16(v) : v;
        }

    L->kv_cache = dsv4_calloc((size_t)(max_batch * max_seq_len * L->rkv), sizeof(float), "MLA latent cache");
    L->pe_cache = dsv4_calloc((size_t)(max_batch * max_seq_len * L->dr), sizeof(float), "MLA rope-key cache");
    if (!L->kv_cache || !L->pe_cache) goto fail;
    if (path != MLA_ABSORBED) {
        L->k_cache = dsv4_calloc((size_t)(max_batch * max_seq_len * L->H * L->dqk), sizeof(float), "MLA k cache");
        L->v_cache = dsv4_calloc((size_t)(max_batch * max_seq_len * L->H * L->dv), sizeof(float), "MLA v cache");
        if (!L->k_cache || !L->v_cache) goto fail;
    }
    if (use_indexer) {
        char ip[256];
        snprintf(ip, sizeof ip, "%s.indexer", prefix);
        L->idx = dsa_indexer_new(L->dim, L->rq, c->index_n_heads, c->index_head_dim, c->index_topk,
                                 c->norm_eps, &L->rope, w, ip, max_batch, max_seq_len, num);
        if (!L->idx) goto fail;
    }
    return L;
fail:
    mla_layer_free(L);
    return NULL;
}

/* Frees the layer, its caches and its indexer (weights are views: not freed). */
void mla_layer_free(mla_layer *L)
{
    if (!L) return;
    if (L->rope_ok) rope_freqs_free(&L->rope);
    free(L->q_norm_w); free(L->kv_norm_w); free(L->wkv_b_f);
    for (int i = 0; i < L->n_owned; i++) free(L->owned[i]);
    free(L->kv_cache); free(L->pe_cache); free(L->k_cache); free(L->v_cache);
    dsa_indexer_free(L->idx);
    free(L->topk);
    free(L);
}

/* [MLA-8] New sequences: every cache entry back to 0 (latent, rope key, k/v, indexer keys). */
void mla_layer_reset(mla_layer *L)
{
    const size_t BT = (size_t)(L->max_batch * L->max_seq_len);
    memset(L->kv_cache, 0, BT * (size_t)L->rkv * sizeof(float));
    memset(L->pe_cache, 0, BT * (size_t)L->dr * sizeof(float));
    if (L->k_cache) memset(L->k_cache, 0, BT * (size_t)(L->H * L->dqk) * sizeof(float));
    if (L->v_cache) memset(L->v_cache, 0, BT * (size_t)(L->H * L->dv) * sizeof(float));
    if (L->idx) dsa_indexer_reset(L->idx);
    free(L->topk);
    L->topk = NULL;
    L->topk_k = 0;
}

/* [DSA-7] The last call's index rows [B, S, k] (NULL without the indexer). */
const int64_t *mla_last_topk(const mla_layer *L, int64_t *k)
{
    if (k) *k = L->topk_k;
    return L->topk;
}

/* [MLA-8] / [DSA-9] bytes per token of one sequence, in the official storage dtypes */
int64_t mla_cache_bytes_per_token(const mla_layer *L)
{
    int64_t b = 0;
    if (L->path == MLA_NAIVE) b = 2 * L->H * (L->dqk + L->dv);       /* bf16 k and v */
    else b = 2 * (L->rkv + L->dr);                                   /* bf16 latent + rope key */
    if (L->idx) b += dsa_indexer_cache_bytes_per_token(L->idx);
    return b;
}

/* A reduction result v (summed in double): official: rounded once to fp32 then to bf16 (the
 * einsum output dtype); exact: rounded to fp32 storage. */
static float rnd(double v, dsv4_numerics num)
{
    return num == DSV4_OFFICIAL ? round_bf16((float)v) : (float)v;
}

/* ---- [MLA-6a] absorbed attention of one query row ---- */

/* qc: [dn] nope query, qr: [dr] rotated rope query of head h; keys: [nk]; C: kv_cache of
 * batch row b ([max_seq_len, rkv]), R: pe_cache ([max_seq_len, dr]) -> o: [dv].
 * qt (scratch [rkv]) = W_UK[h]^T qc; ot (scratch [rkv]) = sum p C.
 * official: every einsum output bf16; l = bf16(bf16(bf16(qt.C) + bf16(qr.R)) * lambda_f).
 * Pitfall 2: RoPE is on the shared k_R only, never on the latent. */
static void attend_absorbed(const mla_layer *L, const float *qc, const float *qr,
                            const int64_t *keys, int64_t nk, const float *C, const float *R,
                            int64_t h, float *lg, float *qt, float *ot, float *o)
{
    const dsv4_numerics num = L->num;
    const int64_t rkv = L->rkv, dn = L->dn, dv = L->dv;
    const float *Wh = L->wkv_b_f + h * (dn + dv) * rkv;   /* [dn + dv, rkv] */
    dsv4_count(DSV4_COMP_Q_PROJ, dn * rkv);                           /* [COST-3] absorb W^UK */
    dsv4_count(DSV4_COMP_CORE_ATTN, nk * (2 * rkv + L->dr));          /* [COST-3] q.c, q_R.k_R, p.c */
    dsv4_count(DSV4_COMP_O_PROJ, dv * rkv);                           /* [COST-3] W^UV */
    for (int64_t c = 0; c < rkv; c++) {
        double acc = 0.0;
        for (int64_t d = 0; d < dn; d++) acc += (double)qc[d] * (double)Wh[d * rkv + c];
        qt[c] = rnd(acc, num);
    }
    for (int64_t j = 0; j < nk; j++) {
        const float *cj = C + keys[j] * rkv, *rj = R + keys[j] * L->dr;
        double a = 0.0, b = 0.0;
        for (int64_t c = 0; c < rkv; c++) a += (double)qt[c] * (double)cj[c];
        for (int64_t d = 0; d < L->dr; d++) b += (double)qr[d] * (double)rj[d];
        if (num == DSV4_OFFICIAL)
            lg[j] = round_bf16(round_bf16(round_bf16((float)a) + round_bf16((float)b)) * L->lambda_f);
        else
            lg[j] = (float)((a + b) * L->lambda);
    }
    attn_softmax(lg, lg, nk, num);   /* [MLA-9] = [MHA-5]; nk = 0: no probabilities, o = 0 */
    for (int64_t c = 0; c < rkv; c++) {
        double acc = 0.0;
        for (int64_t j = 0; j < nk; j++) acc += (double)lg[j] * (double)C[keys[j] * rkv + c];
        ot[c] = rnd(acc, num);
    }
    for (int64_t d = 0; d < dv; d++) {
        double acc = 0.0;
        for (int64_t c = 0; c < rkv; c++) acc += (double)ot[c] * (double)Wh[(dn + d) * rkv + c];
        o[d] = rnd(acc, num);
    }
}

/* ---- [DSA-8] the keys a query row attends to ---- */

/* Causal keys 0..t, or with the indexer the row's picks (already <= t; -1 dropped), sorted
 * ascending so that a selection of every visible key gives exactly the dense order. */
static int64_t row_keys(const int64_t *picks, int64_t k, int64_t t, int64_t *keys)
{
    int64_t n = 0;
    if (!picks) {
        for (int64_t j = 0; j <= t; j++) keys[n++] = j;
        return n;
    }
    for (int64_t j = 0; j < k; j++)
        if (picks[j] >= 0 && picks[j] <= t) keys[n++] = picks[j];
    for (int64_t i = 1; i < n; i++) {           /* insertion sort: k is small */
        int64_t v = keys[i], j = i;
        while (j > 0 && keys[j - 1] > v) { keys[j] = keys[j - 1]; j--; }
        keys[j] = v;
    }
    return n;
}

/* ---- the forward call ---- */

/* [MLA-1..MLA-9], [DSA-8]  x: [B, S, d] -> out: [B, S, d]; see mla.h. sel: [B, S, sel_k]
 * an external selection (NULL: the indexer's, or causal without it). Pitfalls 1 (mscale^2
 * in lambda), 2 (interleaved RoPE on the decoupled shared key), 5, 13 (no valid key -> 0). */
static int mla_forward_impl(mla_layer *L, const float *x, float *out, int64_t B, int64_t S,
                            int64_t start_pos, const int64_t *sel, int64_t sel_k,
                            dsv4_taps *taps, const char *tap_prefix)
{
    const dsv4_numerics num = L->num;
    const int64_t H = L->H, dn = L->dn, dr = L->dr, dv = L->dv, dqk = L->dqk, rkv = L->rkv;
    const int64_t end_pos = start_pos + S;
    const int absorbed = L->path == MLA_ABSORBED || (L->path == MLA_V32 && S == 1);
    int rc = -1;
    if (B < 1 || B > L->max_batch || S < 1 || start_pos < 0 || end_pos > L->max_seq_len)
        return dsv4_set_error("MLA: call [%lld, %lld) x batch %lld outside the cache "
                              "(max_seq_len %lld, max_batch %lld)", (long long)start_pos,
                              (long long)end_pos, (long long)B, (long long)L->max_seq_len,
                              (long long)L->max_batch);
    for (int64_t i = 0; i < B * S * L->dim; i++)
        if (!isfinite(x[i]))
            return dsv4_set_error("MLA: input x has a non-finite value at flat index %lld", (long long)i);

    float *cq = NULL, *q = NULL, *kva = NULL, *c = NULL, *kvb = NULL, *o = NULL;
    float *lg = NULL, *qt = NULL, *ot = NULL;
    int64_t *keys = NULL;
    q = dsv4_calloc((size_t)(B * S * H * dqk), sizeof(float), "MLA q");
    kva = dsv4_calloc((size_t)(B * S * (rkv + dr)), sizeof(float), "MLA wkv_a output");
    c = dsv4_calloc((size_t)(B * S * rkv), sizeof(float), "MLA latent");
    o = dsv4_calloc((size_t)(B * S * H * dv), sizeof(float), "MLA head outputs");
    lg = dsv4_calloc((size_t)end_pos, sizeof(float), "MLA logits");
    keys = dsv4_calloc((size_t)end_pos, sizeof(int64_t), "MLA key list");
    qt = dsv4_calloc((size_t)rkv, sizeof(float), "MLA absorbed query");
    ot = dsv4_calloc((size_t)rkv, sizeof(float), "MLA latent output");
    if (!q || !kva || !c || !o || !lg || !keys || !qt || !ot) goto done;

    /* [MLA-1] query */
    if (L->rq == 0) {
        if (dsv4_backend()->linear(&L->wq, x, q, B * S, 0, num)) goto done;
        dsv4_count_linear(DSV4_COMP_Q_PROJ, &L->wq, B * S);            /* [COST-3] */
    } else {
        cq = dsv4_calloc((size_t)(B * S * L->rq), sizeof(float), "MLA query latent");
        if (!cq) goto done;
        if (dsv4_backend()->linear(&L->wq_a, x, cq, B * S, 0, num)) goto done;
        dsv4_count_linear(DSV4_COMP_Q_PROJ, &L->wq_a, B * S);          /* [COST-3] */
        dsv4_backend()->rmsnorm(cq, L->q_norm_w, cq, B * S, (int)L->rq, (float)L->c.norm_eps, num);
        if (dsv4_backend()->linear(&L->wq_b, cq, q, B * S, 0, num)) goto done;
        dsv4_count_linear(DSV4_COMP_Q_PROJ, &L->wq_b, B * S);
    }
    /* [MLA-3] latent and rope key */
    if (dsv4_backend()->linear(&L->wkv_a, x, kva, B * S, 0, num)) goto done;
    dsv4_count_linear(DSV4_COMP_KV_PROJ, &L->wkv_a, B * S);            /* [COST-3] */
    for (int64_t i = 0; i < B * S; i++)
        memcpy(c + i * rkv, kva + i * (rkv + dr), (size_t)rkv * sizeof(float));
    dsv4_backend()->rmsnorm(c, L->kv_norm_w, c, B * S, (int)rkv, (float)L->c.norm_eps, num);
    /* [MLA-2] interleaved RoPE on q_R (the last dr dims of every head) and on k_R */
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            const int64_t t = start_pos + s, bs = b * S + s;
            for (int64_t h = 0; h < H; h++)
                rope_apply(&L->rope, q + (bs * H + h) * dqk + dn, t, ROPE_INTERLEAVED, 0);
            rope_apply(&L->rope, kva + bs * (rkv + dr) + rkv, t, ROPE_INTERLEAVED, 0);
        }
    /* [MLA-4] V3.2: FP8 round trip of the latent (blocks of 128, ue8m0 scales) */
    if (num == DSV4_OFFICIAL && L->c.v32) fp8_sim_block(c, B * S * rkv, 128);
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            const int64_t bs = b * S + s, slot = b * L->max_seq_len + start_pos + s;
            memcpy(L->kv_cache + slot * rkv, c + bs * rkv, (size_t)rkv * sizeof(float));
            memcpy(L->pe_cache + slot * dr, kva + bs * (rkv + dr) + rkv, (size_t)dr * sizeof(float));
        }
    /* [MLA-6n] naive: per-head keys and values of this call's tokens into the k/v cache */
    if (L->k_cache) {
        kvb = dsv4_calloc((size_t)(B * S * H * (dn + dv)), sizeof(float), "MLA wkv_b output");
        if (!kvb) goto done;
        if (dsv4_backend()->linear(&L->wkv_b, c, kvb, B * S, 0, num)) goto done;
        if (!absorbed)   /* [COST-3]: an absorbed (decode) call never reads these keys */
            dsv4_count_linear(DSV4_COMP_KV_PROJ, &L->wkv_b, B * S);
        for (int64_t b = 0; b < B; b++)
            for (int64_t s = 0; s < S; s++) {
                const int64_t bs = b * S + s, slot = b * L->max_seq_len + start_pos + s;
                for (int64_t h = 0; h < H; h++) {
                    float *kd = L->k_cache + (slot * H + h) * dqk;
                    const float *src = kvb + (bs * H + h) * (dn + dv);
                    memcpy(kd, src, (size_t)dn * sizeof(float));
                    memcpy(kd + dn, L->pe_cache + slot * dr, (size_t)dr * sizeof(float));
                    memcpy(L->v_cache + (slot * H + h) * dv, src + dn, (size_t)dv * sizeof(float));
                }
            }
    }
    /* [DSA-1..DSA-7] the indexer's selection of this call */
    if (L->idx) {
        const int64_t k = dsa_indexer_k(L->idx, end_pos);
        free(L->topk);
        L->topk = dsv4_calloc((size_t)(B * S * k), sizeof(int64_t), "indexer top-k");
        L->topk_k = k;
        if (!L->topk) goto done;
        if (dsa_indexer_forward(L->idx, x, cq, B, S, start_pos, L->topk, NULL)) goto done;
        if (taps) {
            int64_t shape[3] = { B, S, k };
            if (dsv4_tap(taps, DSV4_I64, 3, shape, L->topk, "%s.attn.indexer", tap_prefix)) goto done;
        }
    }
    /* [MLA-6] attention of every (batch row, token, head) over its keys */
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            const int64_t t = start_pos + s, bs = b * S + s;
            const int64_t nk = sel ? row_keys(sel + bs * sel_k, sel_k, t, keys)
                                   : row_keys(L->idx ? L->topk + bs * L->topk_k : NULL, L->topk_k, t, keys);
            for (int64_t h = 0; h < H; h++) {
                const float *qh = q + (bs * H + h) * dqk;
                float *oh = o + (bs * H + h) * dv;
                if (absorbed)
                    attend_absorbed(L, qh, qh + dn, keys, nk, L->kv_cache + b * L->max_seq_len * rkv,
                                    L->pe_cache + b * L->max_seq_len * dr, h, lg, qt, ot, oh);
                else   /* [MLA-6n]: dense MHA over the materialized per-head k and v */
                    mha_attend_row(qh, L->k_cache + (b * L->max_seq_len * H + h) * dqk, H * dqk,
                                   L->v_cache + (b * L->max_seq_len * H + h) * dv, H * dv,
                                   keys, nk, dqk, dv, L->lambda, num, lg, oh);
            }
        }
    /* [MLA-7] output projection */
    if (dsv4_backend()->linear(&L->wo, o, out, B * S, 0, num)) goto done;
    dsv4_count_linear(DSV4_COMP_O_PROJ, &L->wo, B * S);                /* [COST-3] */
    rc = 0;
done:
    free(cq); free(q); free(kva); free(c); free(kvb); free(o); free(lg); free(keys);
    free(qt); free(ot);
    return rc;
}

/* [MLA-1..MLA-9], [DSA-1..DSA-8]: see mla_forward_impl. */
int mla_forward(mla_layer *L, const float *x, float *out, int64_t B, int64_t S,
                int64_t start_pos, dsv4_taps *taps, const char *tap_prefix)
{
    return mla_forward_impl(L, x, out, B, S, start_pos, NULL, 0, taps, tap_prefix);
}

/* [DSA-8] attention restricted to an explicit selection sel: [B, S, sel_k] (pitfall 13). */
int mla_forward_selected(mla_layer *L, const float *x, float *out, int64_t B, int64_t S,
                         int64_t start_pos, const int64_t *sel, int64_t sel_k)
{
    return mla_forward_impl(L, x, out, B, S, start_pos, sel, sel_k, NULL, "");
}
