/* check_attn.c — attention-only golden cases (tools/check_attn.h): one official MLA module
 * (with its DSA indexer for a V3.2 config) named layers.0.attn, run on inputs.x over the
 * file's schedule exactly as tests/test_official_v32.c does (spec/mla.md, spec/dsa.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check_attn.h"
#include "json.h"
#include "attention.h"
#include "config.h"
#include "mha.h"
#include "mla.h"
#include "wtable.h"

/* The schedule [{start_pos, len}, ...] of the metadata; n calls into calls[0..n). */
static int attn_schedule(const st_file *f, int64_t T, int64_t **start, int64_t **len, int *n)
{
    const char *s = st_meta(f, "schedule");
    char err[256];
    if (!s) return dsv4_set_error("%s: no metadata `schedule`", st_path(f));
    json_value *v = json_parse(s, strlen(s), err, sizeof err);
    if (!v) return dsv4_set_error("%s: metadata `schedule` is not valid JSON: %s", st_path(f), err);
    int rc = 0;
    *start = *len = NULL;
    if (v->type != JSON_ARRAY || v->n == 0) {
        rc = dsv4_set_error("%s: metadata `schedule` must be a non-empty list", st_path(f));
        goto done;
    }
    *start = dsv4_calloc(v->n, sizeof(int64_t), "schedule");
    *len = dsv4_calloc(v->n, sizeof(int64_t), "schedule");
    if (!*start || !*len) { rc = -1; goto done; }
    for (size_t i = 0; i < v->n; i++) {
        const json_value *e = v->items[i];
        const json_value *a = e->type == JSON_OBJECT ? json_get(e, "start_pos") : NULL;
        const json_value *b = e->type == JSON_OBJECT ? json_get(e, "len") : NULL;
        if (!a || !b || json_int64(a, &(*start)[i]) || json_int64(b, &(*len)[i]) ||
            (*start)[i] < 0 || (*len)[i] < 1 || (*start)[i] + (*len)[i] > T) {
            rc = dsv4_set_error("%s: schedule entry %zu must be {start_pos >= 0, len >= 1} inside "
                                "inputs.x (%lld positions)", st_path(f), i, (long long)T);
            goto done;
        }
    }
    *n = (int)v->n;
done:
    json_free(v);
    if (rc) { free(*start); free(*len); *start = *len = NULL; }
    return rc;
}

/* [GLD-3] The attention kind of an attention-only file: metadata `attention` = "mha",
 * "mla_naive", "mla_absorbed" or "dsa" (golden suite, spec/golden-suite.md); absent: the
 * official path of the config (V3.2 config: DSA, else absorbed MLA). */
static int attn_kind(const st_file *f, const mla_config *c, int *is_mha, mla_path *path, int *use_idx)
{
    const char *k = st_meta(f, "attention");
    *is_mha = 0;
    *path = mla_official_path(c);
    *use_idx = c->v32;
    if (!k) return 0;
    if (strcmp(k, "mha") == 0) *is_mha = 1;
    else if (strcmp(k, "mla_naive") == 0) { *path = MLA_NAIVE; *use_idx = 0; }
    else if (strcmp(k, "mla_absorbed") == 0) { *path = MLA_ABSORBED; *use_idx = 0; }
    else if (strcmp(k, "dsa") == 0) {
        if (!c->v32) return dsv4_set_error("%s: attention \"dsa\" needs a V3.2 config (index_* fields)", st_path(f));
    } else return dsv4_set_error("%s: metadata `attention` = '%s' is not mha, mla_naive, mla_absorbed, dsa or v4",
                                 st_path(f), k);
    return 0;
}

/* The MHA config of the metadata: dim, n_heads, head_dim, v_head_dim, rope_theta. */
static int mha_config_json(const char *text, const char *what, mha_config *c)
{
    char err[256];
    json_value *v = json_parse(text, strlen(text), err, sizeof err);
    if (!v) return dsv4_set_error("%s: metadata `config` is not valid JSON: %s", what, err);
    const json_value *a = json_get(v, "dim"), *b = json_get(v, "n_heads"), *d = json_get(v, "head_dim");
    const json_value *e = json_get(v, "v_head_dim"), *t = json_get(v, "rope_theta");
    int rc = 0;
    if (!a || !b || !d || !e || !t || json_int64(a, &c->dim) || json_int64(b, &c->n_heads) ||
        json_int64(d, &c->head_dim) || json_int64(e, &c->v_head_dim) || json_double(t, &c->rope_theta))
        rc = dsv4_set_error("%s: an MHA config needs dim, n_heads, head_dim, v_head_dim, rope_theta", what);
    json_free(v);
    return rc;
}

/* Builds the layer from the metadata config (official ModelArgs names) and runs every call:
 * x = inputs.x[:, start_pos : start_pos + len] -> taps.<k>.layers.0.attn (BF16 [B, len, dim])
 * and, with the indexer, taps.<k>.layers.0.attn.indexer (I64 [B, len, k]). */
/* [GLD-3] one V4 attention layer (metadata `attention` = "v4"): layers.0.attn of ratio
 * compress_ratios[0] (SWA 0, CSA 4, HCA other), run on inputs.x over the schedule; taps as
 * inside the model: taps.<k>.layers.0.attn (+ .attn.compressor, .attn.indexer(.compressor)). */
static int check_v4_attention(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, dsv4_taps *taps)
{
    const char *cj = st_meta(f, "config");
    dsv4_config c;
    dsv4_config_defaults(&c);
    if (dsv4_config_from_json(&c, cj, strlen(cj), st_path(f))) return -1;
    const st_tensor *xin = st_find(f, "inputs.x");
    if (!xin || xin->ndim != 3 || xin->shape[2] != c.dim)
        return dsv4_set_error("%s: inputs.x must be [B, total_len, dim = %lld]", st_path(f), (long long)c.dim);
    const int64_t B = xin->shape[0], T = xin->shape[1], d = c.dim;
    int64_t *start = NULL, *len = NULL;
    int n = 0, rc = -1;
    if (attn_schedule(f, T, &start, &len, &n)) return -1;
    const int64_t max_seq = c.max_seq_len > T ? c.max_seq_len : T;
    v4_attn_layer *L = v4_attn_layer_new(&c, (int)c.compress_ratios[0], src, "layers.0.attn", B, max_seq, num);
    float *x = dsv4_calloc((size_t)(B * T * d), sizeof(float), "attention input");
    float *out = dsv4_calloc((size_t)(B * T * d), sizeof(float), "attention output");
    if (!L || !x || !out) goto done;
    for (int k = 0; k < n; k++) {
        const int64_t S = len[k], sp = start[k];
        char pre[64];
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < S * d; i++)
                x[b * S * d + i] = (float)st_get_f64(xin, (b * T + sp) * d + i);
        snprintf(pre, sizeof pre, "taps.%d.layers.0", k);
        if (v4_attn_forward(L, x, out, B, S, sp, taps, pre)) goto done;
        const int64_t shape[3] = { B, S, d };
        if (dsv4_tap(taps, num == DSV4_OFFICIAL ? DSV4_BF16 : DSV4_F32, 3, shape, out, "%s.attn", pre)) goto done;
    }
    rc = 0;
done:
    v4_attn_layer_free(L);
    free(x); free(out); free(start); free(len);
    return rc;
}

int check_attention_only(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, dsv4_taps *taps)
{
    const char *cj = st_meta(f, "config");
    if (!cj) return dsv4_set_error("%s: no metadata `config`", st_path(f));
    const char *kind = st_meta(f, "attention");
    if (kind && strcmp(kind, "v4") == 0) return check_v4_attention(src, f, num, taps);
    mla_config c;
    mha_config hc;
    int is_mha, use_idx;
    mla_path path;
    if (mla_config_from_json(&c, cj, strlen(cj), st_path(f))) return -1;
    if (attn_kind(f, &c, &is_mha, &path, &use_idx)) return -1;
    if (is_mha) {
        if (mha_config_json(cj, st_path(f), &hc)) return -1;
        c.dim = hc.dim;
    }
    const st_tensor *xin = st_find(f, "inputs.x");
    if (!xin || xin->ndim != 3 || xin->shape[2] != c.dim)
        return dsv4_set_error("%s: inputs.x must be [B, total_len, dim = %lld]", st_path(f), (long long)c.dim);
    const int64_t B = xin->shape[0], T = xin->shape[1], d = c.dim;
    int64_t *start = NULL, *len = NULL;
    int n = 0, rc = -1;
    if (attn_schedule(f, T, &start, &len, &n)) return -1;
    dsv4_wlookup w = wlookup_wsrc(src);
    const int64_t max_seq = c.max_seq_len > T ? c.max_seq_len : T;
    mla_layer *L = NULL;
    mha_layer *M = NULL;
    if (is_mha) M = mha_layer_new(&hc, &w, "layers.0.attn", B, max_seq, num);
    else L = mla_layer_new(&c, &w, "layers.0.attn", B, max_seq, num, path, use_idx);
    float *x = dsv4_calloc((size_t)(B * T * d), sizeof(float), "attention input");
    float *out = dsv4_calloc((size_t)(B * T * d), sizeof(float), "attention output");
    if ((!L && !M) || !x || !out) goto done;
    for (int k = 0; k < n; k++) {
        const int64_t S = len[k], sp = start[k];
        char pre[64];
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < S * d; i++)
                x[b * S * d + i] = (float)st_get_f64(xin, (b * T + sp) * d + i);
        snprintf(pre, sizeof pre, "taps.%d.layers.0", k);
        if (M ? mha_forward(M, x, out, B, S, sp) : mla_forward(L, x, out, B, S, sp, taps, pre)) goto done;
        const int64_t shape[3] = { B, S, d };
        /* official: the module's bf16 output; exact: fp32 storage */
        if (dsv4_tap(taps, num == DSV4_OFFICIAL ? DSV4_BF16 : DSV4_F32, 3, shape, out, "%s.attn", pre)) goto done;
    }
    rc = 0;
done:
    mla_layer_free(L);
    mha_layer_free(M);
    free(x); free(out); free(start); free(len);
    return rc;
}
