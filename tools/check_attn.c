/* check_attn.c — attention-only golden cases (tools/check_attn.h): the V3.2 MLA module with
 * its DSA indexer (ref/mla.h), run on inputs.x over the file's schedule (spec/model.md
 * [MDL-8]). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check_attn.h"
#include "json.h"
#include "mla.h"
#include "wtable.h"

/* [MDL-8] the attention-only case: config (official V3.2 ModelArgs names), softmax scale
 * cross-checked with the file's `softmax_scale`, the official V3.2 graph path (prefill MHA,
 * decode absorbed), taps taps.<k>.layers.0.attn and .attn.indexer. */
int check_attention_only(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, dsv4_taps *taps)
{
    const char *path = st_path(f);
    const char *cfg = st_meta(f, "config"), *sched = st_meta(f, "schedule"), *sc = st_meta(f, "softmax_scale");
    if (!cfg || !sched) return dsv4_set_error("%s: metadata `config` or `schedule` is missing", path);
    mla_config c;
    mla_config_defaults(&c);
    if (mla_config_from_json(&c, cfg, strlen(cfg), path)) return -1;
    if (!c.v32) return dsv4_set_error("%s: attention-only case without the V3.2 indexer fields: not supported", path);
    if (mla_config_validate(&c, 1, path)) return -1;
    if (sc) {
        double want = atof(sc), got = mla_softmax_scale(&c);
        if (fabs(got - want) > 1e-12 * fabs(want))
            return dsv4_set_error("%s: softmax scale from the config %.17g differs from the file's softmax_scale %s",
                                  path, got, sc);
    }
    const st_tensor *xt = st_find(f, "inputs.x");
    if (!xt || xt->ndim != 3 || xt->shape[2] != c.dim)
        return dsv4_set_error("%s: inputs.x ([B, total_len, dim = %lld]) is missing or malformed", path, (long long)c.dim);
    int64_t B = xt->shape[0], T = xt->shape[1], D = c.dim;
    char err[256];
    json_value *sv = json_parse(sched, strlen(sched), err, sizeof err);
    if (!sv || sv->type != JSON_ARRAY) {
        json_free(sv);
        return dsv4_set_error("%s: metadata `schedule` is not a JSON list", path);
    }
    dsv4_wlookup w = wlookup_wsrc(src);
    int64_t max_seq = c.max_seq_len > T ? c.max_seq_len : T;
    mla_layer *L = mla_layer_new(&c, &w, "layers.0.attn", B, max_seq, num, MLA_V32, 1);
    float *x = dsv4_calloc((size_t)(B * T * D), sizeof *x, "inputs.x");
    float *out = dsv4_calloc((size_t)(B * T * D), sizeof *out, "attention output");
    int rc = -1;
    if (!L || !x || !out) goto done;
    for (size_t k = 0; k < sv->n; k++) {
        const json_value *e = sv->items[k];
        int64_t sp, len;
        if (e->type != JSON_OBJECT || !json_get(e, "start_pos") || !json_get(e, "len") ||
            json_int64(json_get(e, "start_pos"), &sp) || json_int64(json_get(e, "len"), &len) ||
            sp < 0 || len < 1 || sp + len > T) {
            dsv4_set_error("%s: schedule entry %zu is malformed or runs past inputs.x", path, k);
            goto done;
        }
        for (int64_t b = 0; b < B; b++)
            for (int64_t s = 0; s < len; s++)
                for (int64_t d = 0; d < D; d++)
                    x[(b * len + s) * D + d] = (float)st_get_f64(xt, (b * T + sp + s) * D + d);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "taps.%zu.layers.0", k);
        if (mla_forward(L, x, out, B, len, sp, taps, prefix)) goto done;
        int64_t shape[3] = { B, len, D };
        if (dsv4_tap(taps, num == DSV4_OFFICIAL ? DSV4_BF16 : DSV4_F32, 3, shape, out, "%s.attn", prefix)) goto done;
    }
    rc = 0;
done:
    json_free(sv);
    if (L) mla_layer_free(L);
    free(x);
    free(out);
    return rc;
}
