/* check_unit.c — the unit-level golden cases (tools/check_case.h, spec/golden-suite.md
 * [GLD-4]): one V4 sub-module run on the inputs the file stores, its weights and taps named
 * by the module path it has inside Block 0 (or 1) of the full model:
 *   unit compressor  layers.0.attn.compressor.*  inputs.x [B,T,d]          taps.k.layers.0.attn.compressor
 *   unit indexer     layers.0.attn.indexer.*     inputs.x, inputs.qr       taps.k.layers.0.attn.indexer (+ .compressor)
 *   unit mhc         layers.0.hc_attn_*, hc_head_*  inputs.x [B,T,hc,d], inputs.o [B,T,d]
 *                    taps.0.layers.0.hc_pre.{0,1,2}, taps.0.layers.0.hc_post, taps.0.hc_head
 *   unit moe         layers.{0,1}.ffn.*          inputs.x [B,T,d], inputs.tokens [B,T]
 *                    taps.0.layers.i.ffn, .ffn.gate.0, .ffn.gate.1 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check_attn.h"
#include "check_case.h"
#include "compressor.h"
#include "config.h"
#include "indexer.h"
#include "json.h"
#include "mhc.h"
#include "moe.h"
#include "rope.h"

/* [GLD-2] full model / attention only / unit, by metadata `scope`. */
int check_case(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, int teacher, dsv4_taps *taps)
{
    const char *scope = st_meta(f, "scope");
    if (scope && strncmp(scope, "attention only", 14) == 0) return check_attention_only(src, f, num, taps);
    if (scope && strncmp(scope, "unit ", 5) == 0) return check_unit(src, f, num, taps);
    return check_full_model(src, f, num, teacher, taps);
}

/* ---- what every unit needs ---- */

typedef struct { int64_t start, len; } ucall;

typedef struct {
    dsv4_config c;
    ucall *calls;
    int n_calls;
    int64_t B, T;
    dsv4_dtype fdt;   /* float tap dtype: BF16 official (the module's bf16 output), F32 exact */
} unit_ctx;

/* [GLD-4] config, schedule (calls inside inputs.x), B, T and the float tap dtype of a unit file */
static int unit_setup(unit_ctx *u, const st_file *f, dsv4_numerics num)
{
    const char *cj = st_meta(f, "config"), *sj = st_meta(f, "schedule");
    char err[256];
    memset(u, 0, sizeof *u);
    if (!cj || !sj) return dsv4_set_error("%s: metadata `config` and `schedule` are required", st_path(f));
    dsv4_config_defaults(&u->c);
    if (dsv4_config_from_json(&u->c, cj, strlen(cj), st_path(f))) return -1;
    const st_tensor *x = st_find(f, "inputs.x");
    if (!x || x->ndim < 3) return dsv4_set_error("%s: inputs.x [B, T, ...] is missing", st_path(f));
    u->B = x->shape[0];
    u->T = x->shape[1];
    json_value *v = json_parse(sj, strlen(sj), err, sizeof err);
    if (!v) return dsv4_set_error("%s: metadata `schedule` is not valid JSON: %s", st_path(f), err);
    int rc = 0;
    if (v->type != JSON_ARRAY || v->n == 0 || !(u->calls = dsv4_calloc(v->n, sizeof *u->calls, "schedule")))
        rc = dsv4_set_error("%s: metadata `schedule` must be a non-empty list", st_path(f));
    for (size_t i = 0; rc == 0 && i < v->n; i++) {
        const json_value *a = v->items[i]->type == JSON_OBJECT ? json_get(v->items[i], "start_pos") : NULL;
        const json_value *b = v->items[i]->type == JSON_OBJECT ? json_get(v->items[i], "len") : NULL;
        if (!a || !b || json_int64(a, &u->calls[i].start) || json_int64(b, &u->calls[i].len) ||
            u->calls[i].start < 0 || u->calls[i].len < 1 || u->calls[i].start + u->calls[i].len > u->T)
            rc = dsv4_set_error("%s: schedule entry %zu must be {start_pos, len} inside inputs.x", st_path(f), i);
    }
    u->n_calls = rc ? 0 : (int)v->n;
    json_free(v);
    u->fdt = num == DSV4_OFFICIAL ? DSV4_BF16 : DSV4_F32;
    return rc;
}

/* rows [start, start+len) of every batch row of a [B, T, w] input as floats [B, len, w] */
static float *slice(const st_file *f, const char *name, int64_t B, int64_t T, int64_t w, int64_t start, int64_t len)
{
    const st_tensor *t = st_find(f, name);
    if (!t || t->numel != B * T * w) {
        dsv4_set_error("%s: %s must hold [%lld, %lld, %lld] values", st_path(f), name, (long long)B, (long long)T,
                       (long long)w);
        return NULL;
    }
    float *x = dsv4_calloc((size_t)(B * len * w), sizeof *x, name);
    if (!x) return NULL;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < len * w; i++) x[b * len * w + i] = (float)st_get_f64(t, (b * T + start) * w + i);
    return x;
}

/* the compressor weights under pre (ape, wkv, wgate, norm) [CMP-1] */
static int load_comp(v4_compressor *C, const dsv4_wsrc *src, const char *pre)
{
    char n[256];
    int64_t kc = (int64_t)(1 + C->overlap) * C->head_dim;
    snprintf(n, sizeof n, "%s.ape", pre);
    if (wsrc_floats(src, n, C->ratio * kc, &C->ape)) return -1;
    snprintf(n, sizeof n, "%s.wkv.weight", pre);
    if (wsrc_weight(src, n, kc, C->dim, &C->wkv)) return -1;
    snprintf(n, sizeof n, "%s.wgate.weight", pre);
    if (wsrc_weight(src, n, kc, C->dim, &C->wgate)) return -1;
    snprintf(n, sizeof n, "%s.norm.weight", pre);
    return wsrc_floats(src, n, C->head_dim, &C->norm_w);
}

/* the RoPE table of a compressed layer: compress_rope_theta with YaRN [ROPE-1] (pitfall 6) */
static int comp_rope(rope_freqs *r, const dsv4_config *c, int rope_dim, dsv4_numerics num)
{
    return rope_freqs_init(r, rope_dim, c->compress_rope_theta, c->original_seq_len > 0, c->rope_factor,
                           c->original_seq_len, c->beta_fast, c->beta_slow, num);
}

/* ---- unit compressor ---- */

/* [GLD-4] [CMP-7] [CMP-8] the main KV compressor of ratio compress_ratios[0] over the schedule */
static int unit_compressor(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, dsv4_taps *taps)
{
    unit_ctx u;
    rope_freqs rope;
    v4_compressor C;
    int rc = -1, rope_ok = 0, comp_ok = 0;
    float *x = NULL, *ent = NULL;
    memset(&C, 0, sizeof C);
    if (unit_setup(&u, f, num)) goto done;
    const int m = (int)u.c.compress_ratios[0], D = (int)u.c.head_dim, rd = (int)u.c.rope_head_dim;
    if (m < 1) { dsv4_set_error("%s: compress_ratios[0] must be >= 1", st_path(f)); goto done; }
    if (comp_rope(&rope, &u.c, rd, num)) goto done;
    rope_ok = 1;
    if (compressor_init(&C, m, D, rd, u.c.dim, COMPRESSOR_MAIN, (float)u.c.norm_eps, &rope, u.B, num)) goto done;
    comp_ok = 1;
    if (load_comp(&C, src, "layers.0.attn.compressor")) goto done;
    compressor_reset(&C);
    for (int k = 0; k < u.n_calls; k++) {
        int64_t S = u.calls[k].len, sp = u.calls[k].start, n;
        free(x); free(ent);
        x = slice(f, "inputs.x", u.B, u.T, u.c.dim, sp, S);
        ent = dsv4_calloc((size_t)(u.B * (S / m + 1) * D), sizeof *ent, "entries");
        if (!x || !ent) goto done;
        if (sp == 0) n = compressor_prefill(&C, x, u.B, S, ent);
        else if (S == 1) n = compressor_decode(&C, x, u.B, sp, ent);
        else { dsv4_set_error("%s: call %d: decode calls have len 1", st_path(f), k); goto done; }
        if (n < 0) goto done;
        int64_t shape[3] = { u.B, n, D };
        if (n > 0 && dsv4_tap(taps, u.fdt, 3, shape, ent, "taps.%d.layers.0.attn.compressor", k)) goto done;
    }
    rc = 0;
done:
    if (comp_ok) compressor_free(&C);
    if (rope_ok) rope_freqs_free(&rope);
    free(x); free(ent); free(u.calls);
    return rc;
}

/* ---- unit indexer ---- */

/* [GLD-4] [IDX-1..IDX-6] the V4 lightning indexer (its own compressor, ratio 4) over the schedule;
 * taps: the selected entry numbers (not shifted: there is no KV buffer), the emitted keys */
static int unit_indexer(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, dsv4_taps *taps)
{
    unit_ctx u;
    rope_freqs rope;
    v4_indexer I;
    int rc = -1, rope_ok = 0, idx_ok = 0;
    float *x = NULL, *qr = NULL, *keys = NULL;
    int64_t *idx = NULL;
    memset(&I, 0, sizeof I);
    if (unit_setup(&u, f, num)) goto done;
    const int rd = (int)u.c.rope_head_dim, DI = (int)u.c.index_head_dim, IH = (int)u.c.index_n_heads;
    if (comp_rope(&rope, &u.c, rd, num)) goto done;
    rope_ok = 1;
    if (indexer_init(&I, IH, DI, rd, u.c.index_topk, u.c.dim, u.c.q_lora_rank, (float)u.c.norm_eps, &rope, u.B,
                     u.T, num)) goto done;
    idx_ok = 1;
    if (wsrc_weight(src, "layers.0.attn.indexer.wq_b.weight", (int64_t)IH * DI, u.c.q_lora_rank, &I.wq_b)) goto done;
    if (wsrc_weight(src, "layers.0.attn.indexer.weights_proj.weight", IH, u.c.dim, &I.weights_proj)) goto done;
    if (load_comp(&I.comp, src, "layers.0.attn.indexer.compressor")) goto done;
    indexer_reset(&I);
    for (int k = 0; k < u.n_calls; k++) {
        int64_t S = u.calls[k].len, sp = u.calls[k].start, n_new = 0, kk = indexer_k(&I, sp + S);
        free(x); free(qr); free(idx); free(keys);
        keys = NULL;
        x = slice(f, "inputs.x", u.B, u.T, u.c.dim, sp, S);
        qr = slice(f, "inputs.qr", u.B, u.T, u.c.q_lora_rank, sp, S);
        idx = dsv4_calloc((size_t)(u.B * S * kk + 1), sizeof *idx, "index list");
        if (!x || !qr || !idx) goto done;
        if (indexer_forward(&I, x, qr, u.B, S, sp, idx, &n_new)) goto done;
        int64_t shape[3] = { u.B, S, kk };
        if (dsv4_tap(taps, DSV4_I64, 3, shape, idx, "taps.%d.layers.0.attn.indexer", k)) goto done;
        if (n_new > 0) {
            int64_t j0 = I.n_keys - n_new, ks[3] = { u.B, n_new, DI };
            keys = dsv4_calloc((size_t)(u.B * n_new * DI), sizeof *keys, "keys");
            if (!keys) goto done;
            for (int64_t b = 0; b < u.B; b++)
                memcpy(keys + b * n_new * DI, I.keys + (b * I.max_entries + j0) * DI, sizeof(float) * (size_t)(n_new * DI));
            if (dsv4_tap(taps, u.fdt, 3, ks, keys, "taps.%d.layers.0.attn.indexer.compressor", k)) goto done;
        }
    }
    rc = 0;
done:
    if (idx_ok) indexer_free(&I);
    if (rope_ok) rope_freqs_free(&rope);
    free(x); free(qr); free(idx); free(keys); free(u.calls);
    return rc;
}

/* ---- unit mhc ---- */

/* [GLD-4] [MHC-1] [MHC-4] [MHC-5] HCPre of Block 0's attention, HCPost of inputs.o with it, and
 * the HCHead, on every token of inputs.x (one call: mHC keeps no state) */
static int unit_mhc(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, dsv4_taps *taps)
{
    unit_ctx u;
    mhc_params p;
    dsv4_weight head_fn;
    float *scale = NULL, *base = NULL, *hscale = NULL, *hbase = NULL, *x = NULL, *o = NULL;
    float *a = NULL, *post = NULL, *comb = NULL, *y = NULL, *h = NULL;
    int rc = -1;
    memset(&p, 0, sizeof p);
    if (unit_setup(&u, f, num)) goto done;
    const int64_t hc = u.c.hc_mult, d = u.c.dim, nmix = (2 + hc) * hc, n = u.B * u.T;
    p.hc = (int)hc; p.dim = d; p.sinkhorn_iters = (int)u.c.hc_sinkhorn_iters;
    p.hc_eps = u.c.hc_eps; p.norm_eps = u.c.norm_eps;
    if (wsrc_weight(src, "layers.0.hc_attn_fn", nmix, hc * d, &p.fn)) goto done;
    if (wsrc_floats(src, "layers.0.hc_attn_scale", 3, &scale)) goto done;
    if (wsrc_floats(src, "layers.0.hc_attn_base", nmix, &base)) goto done;
    if (wsrc_weight(src, "hc_head_fn", hc, hc * d, &head_fn)) goto done;
    if (wsrc_floats(src, "hc_head_scale", 1, &hscale)) goto done;
    if (wsrc_floats(src, "hc_head_base", hc, &hbase)) goto done;
    p.scale = scale; p.base = base;
    x = slice(f, "inputs.x", u.B, u.T, hc * d, 0, u.T);
    o = slice(f, "inputs.o", u.B, u.T, d, 0, u.T);
    a = dsv4_calloc((size_t)(n * d), sizeof *a, "a");
    post = dsv4_calloc((size_t)(n * hc), sizeof *post, "post");
    comb = dsv4_calloc((size_t)(n * hc * hc), sizeof *comb, "comb");
    y = dsv4_calloc((size_t)(n * hc * d), sizeof *y, "y");
    h = dsv4_calloc((size_t)(n * d), sizeof *h, "h");
    if (!x || !o || !a || !post || !comb || !y || !h) goto done;
    if (mhc_pre(&p, x, n, a, post, comb, num)) goto done;
    mhc_post(o, x, post, comb, n, (int)hc, d, y, num);
    if (mhc_head(&head_fn, hscale, hbase, x, n, (int)hc, d, u.c.norm_eps, u.c.hc_eps, h, num)) goto done;
    int64_t s3[3] = { u.B, u.T, d }, sp[3] = { u.B, u.T, hc }, sc[4] = { u.B, u.T, hc, hc }, sy[4] = { u.B, u.T, hc, d };
    if (dsv4_tap(taps, u.fdt, 3, s3, a, "taps.0.layers.0.hc_pre.0") ||
        dsv4_tap(taps, DSV4_F32, 3, sp, post, "taps.0.layers.0.hc_pre.1") ||
        dsv4_tap(taps, DSV4_F32, 4, sc, comb, "taps.0.layers.0.hc_pre.2") ||
        dsv4_tap(taps, u.fdt, 4, sy, y, "taps.0.layers.0.hc_post") ||
        dsv4_tap(taps, u.fdt, 3, s3, h, "taps.0.hc_head")) goto done;
    rc = 0;
done:
    free(scale); free(base); free(hscale); free(hbase); free(x); free(o);
    free(a); free(post); free(comb); free(y); free(h); free(u.calls);
    return rc;
}

/* ---- unit moe ---- */

/* [GLD-4] [MOE-2] [MOE-4] the MoE of Block 0 (hash-routed) and Block 1 (score-routed) on the
 * same inputs (one call: the MoE keeps no state) */
static int unit_moe(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, dsv4_taps *taps)
{
    unit_ctx u;
    moe_layer L[2];
    int loaded = 0, rc = -1;
    float *x = NULL, *y = NULL, *w = NULL;
    int64_t *ids = NULL, *tok = NULL;
    memset(L, 0, sizeof L);
    if (unit_setup(&u, f, num)) goto done;
    const int64_t n = u.B * u.T, d = u.c.dim, k = u.c.n_activated_experts;
    const st_tensor *tt = st_find(f, "inputs.tokens");
    if (!tt || tt->numel != n) { dsv4_set_error("%s: inputs.tokens [B, T] is missing", st_path(f)); goto done; }
    x = slice(f, "inputs.x", u.B, u.T, d, 0, u.T);
    y = dsv4_calloc((size_t)(n * d), sizeof *y, "y");
    w = dsv4_calloc((size_t)(n * k), sizeof *w, "weights");
    ids = dsv4_calloc((size_t)(n * k), sizeof *ids, "ids");
    tok = dsv4_calloc((size_t)n, sizeof *tok, "tokens");
    if (!x || !y || !w || !ids || !tok) goto done;
    for (int64_t i = 0; i < n; i++) tok[i] = st_get_i64(tt, i);
    for (int64_t i = 0; i < 2; i++) {
        char pre[32];
        snprintf(pre, sizeof pre, "layers.%lld.ffn", (long long)i);
        loaded = (int)i + 1;
        if (moe_layer_load(&L[i], &u.c, i, src, pre)) goto done;
        if (moe_forward(&L[i], x, tok, n, y, w, ids, num)) goto done;
        int64_t s3[3] = { u.B, u.T, d }, s2[2] = { n, k };
        if (dsv4_tap(taps, u.fdt, 3, s3, y, "taps.0.layers.%lld.ffn", (long long)i) ||
            dsv4_tap(taps, DSV4_F32, 2, s2, w, "taps.0.layers.%lld.ffn.gate.0", (long long)i) ||
            dsv4_tap(taps, DSV4_I64, 2, s2, ids, "taps.0.layers.%lld.ffn.gate.1", (long long)i)) goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < loaded; i++) moe_layer_free(&L[i]);
    free(x); free(y); free(w); free(ids); free(tok); free(u.calls);
    return rc;
}

/* [GLD-4] dispatch on the module named after "unit " */
int check_unit(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, dsv4_taps *taps)
{
    const char *scope = st_meta(f, "scope");
    const char *m = scope + 5;
    if (strncmp(m, "compressor", 10) == 0) return unit_compressor(src, f, num, taps);
    if (strncmp(m, "indexer", 7) == 0) return unit_indexer(src, f, num, taps);
    if (strncmp(m, "mhc", 3) == 0) return unit_mhc(src, f, num, taps);
    if (strncmp(m, "moe", 3) == 0) return unit_moe(src, f, num, taps);
    return dsv4_set_error("%s: scope '%s' names no unit this version knows (compressor, indexer, mhc, moe)",
                          st_path(f), scope);
}
