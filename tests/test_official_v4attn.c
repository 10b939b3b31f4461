/* test_official_v4attn.c — the V4 attention layer (official numerics) against the golden files
 * made by DeepSeek's official code (../shared/official-golden/, teacher-forced).
 *
 * Every attention layer of every V4 golden file is driven with its golden input
 * taps.k.layers.i.attn.in for every call k of the file's schedule (so the decode state is built
 * from the golden inputs), and its outputs are judged like ../shared/tools/official_compare.py
 * in teacher mode: per path (layers.i.attn, .attn.compressor, .attn.indexer,
 * .attn.indexer.compressor) pooled over calls, one token row at a time: float rows by
 * relative L2 (pooled over rows <= 1e-2, at most 1% outlier rows > 5e-2, none when fewer than
 * 20 rows); index rows as sets, mean Jaccard >= 0.98; attention rows whose index set differs
 * from golden are excused. The achieved numbers are printed for every file / layer / tap.
 *
 * Env: DSV4REF_OFFICIAL_MAX_CALLS=n runs only the first n calls of each schedule (for slow
 * sanitizer builds); default: all. DSV4REF_OFFICIAL_VERBOSE=1 prints the attention error of
 * every call, DSV4REF_OFFICIAL_ROWS=1 of every token row. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "testutil.h"
#include "attention.h"
#include "config.h"
#include "json.h"
#include "numerics.h"
#include "safetensors.h"
#include "taps.h"
#include "wsrc.h"

/* ---- per-path statistics (official_compare.py teacher mode) ---- */

typedef struct {
    double num, den;        /* pooled over inlier rows */
    int64_t rows, outliers, excused, missing, extra;
    double worst;
    double jac_sum;         /* index paths */
    int64_t jac_rows;
    int is_index, present;
} path_stat;

static void float_rows(path_stat *p, const float *got, const float *want, int64_t n_rows,
                       int64_t row, const unsigned char *excuse)
{
    p->present = 1;
    for (int64_t r = 0; r < n_rows; r++) {
        if (excuse && excuse[r]) { p->excused++; continue; }
        double num = 0.0, den = 0.0;
        int finite_ok = 1;
        for (int64_t j = 0; j < row; j++) {
            double g = want[r * row + j], d = got[r * row + j];
            if (!isfinite(g) || !isfinite(d)) {
                if (!(g == d || (isnan(g) && isnan(d)))) finite_ok = 0;
                continue;
            }
            num += (d - g) * (d - g);
            den += g * g;
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        if (!finite_ok) rel = INFINITY;
        p->rows++;
        if (rel > p->worst) p->worst = rel;
        if (rel > 5e-2) { p->outliers++; continue; }
        p->num += num;
        p->den += den;
    }
}

/* Jaccard of two index rows (-1 dropped); returns 1 when the sets are equal. */
static double jaccard(const int64_t *a, const int64_t *b, int64_t k, int *same)
{
    int64_t inter = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < k; i++) {
        if (a[i] < 0) continue;
        int dup = 0;
        for (int64_t j = 0; j < i; j++) if (a[j] == a[i]) dup = 1;
        if (dup) continue;
        na++;
        for (int64_t j = 0; j < k; j++) if (b[j] == a[i]) { inter++; break; }
    }
    for (int64_t i = 0; i < k; i++) {
        if (b[i] < 0) continue;
        int dup = 0;
        for (int64_t j = 0; j < i; j++) if (b[j] == b[i]) dup = 1;
        if (!dup) nb++;
    }
    int64_t uni = na + nb - inter;
    *same = inter == na && inter == nb;
    return uni ? (double)inter / (double)uni : 1.0;
}

static int stat_pass(const path_stat *p, char *text, size_t len)
{
    if (p->is_index) {
        double mean = p->jac_rows ? p->jac_sum / (double)p->jac_rows : 1.0;
        snprintf(text, len, "%lld rows, mean Jaccard %.4f", (long long)p->jac_rows, mean);
        return mean >= 0.98 && !p->missing && !p->extra;
    }
    double bulk = p->den > 0 ? sqrt(p->num / p->den) : sqrt(p->num);
    int64_t allowed = p->rows < 20 ? 0 : (p->rows / 100 > 1 ? p->rows / 100 : 1);
    snprintf(text, len, "%lld rows, rel-L2 %.2e, worst row %.2e, outliers %lld (allowed %lld)%s%s",
             (long long)p->rows, bulk, p->worst, (long long)p->outliers, (long long)allowed,
             p->excused ? ", some excused" : "", p->missing || p->extra ? ", MISSING/EXTRA taps" : "");
    return bulk <= 1e-2 && p->outliers <= allowed && !p->missing && !p->extra;
}

/* ---- golden access ---- */

static float *golden_floats(const st_file *f, const char *name, int64_t *n_out, int64_t *shape)
{
    const st_tensor *t = st_find(f, name);
    if (!t) return NULL;
    float *v = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    for (int64_t i = 0; i < t->numel; i++) v[i] = (float)st_get_f64(t, i);
    if (n_out) *n_out = t->numel;
    if (shape) for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
    return v;
}

/* ---- one golden file ---- */

static int run_file(const char *file, int *n_fail)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", official_golden_dir(), file);
    st_file *f = st_open(path);
    if (!f) { print_error("cannot open %s: %s\n", path, dsv4_last_error()); return -1; }
    dsv4_wsrc *src = wsrc_open_file(path);
    if (!src) { print_error("%s: %s\n", path, dsv4_last_error()); st_close(f); return -1; }
    dsv4_config cfg;
    dsv4_config_defaults(&cfg);
    const char *cj = st_meta(f, "config"), *sj = st_meta(f, "schedule");
    assert_non_null(cj);
    assert_non_null(sj);
    assert_int_equal(dsv4_config_from_json(&cfg, cj, strlen(cj), file), 0);
    char err[256];
    json_value *sched = json_parse(sj, strlen(sj), err, sizeof err);
    assert_non_null(sched);
    int64_t n_calls = (int64_t)sched->n;
    const char *lim = getenv("DSV4REF_OFFICIAL_MAX_CALLS");
    if (lim && atoll(lim) > 0 && atoll(lim) < n_calls) n_calls = atoll(lim);

    const st_tensor *t0 = st_find(f, "taps.0.layers.0.attn.in");
    assert_non_null(t0);
    int64_t B = t0->shape[0], dim = cfg.dim;
    printf("== %s: %lld layers, %lld calls, batch %lld\n", file, (long long)cfg.n_layers,
           (long long)n_calls, (long long)B);

    for (int64_t layer = 0; layer < cfg.n_layers; layer++) {
        int ratio = (int)cfg.compress_ratios[layer];
        char prefix[64];
        snprintf(prefix, sizeof prefix, "layers.%lld.attn", (long long)layer);
        v4_attn_layer *L = v4_attn_layer_new(&cfg, ratio, src, prefix, B, cfg.max_seq_len, DSV4_OFFICIAL);
        if (!L) { print_error("%s %s: %s\n", file, prefix, dsv4_last_error()); (*n_fail)++; continue; }
        path_stat st_attn = {0}, st_comp = {0}, st_icomp = {0}, st_idx = {0};
        st_idx.is_index = 1;
        for (int64_t k = 0; k < n_calls; k++) {
            const json_value *call = sched->items[k];
            int64_t sp = 0, S = 0;
            json_int64(json_get(call, "start_pos"), &sp);
            json_int64(json_get(call, "len"), &S);
            char name[256];
            snprintf(name, sizeof name, "taps.%lld.layers.%lld.attn.in", (long long)k, (long long)layer);
            float *x = golden_floats(f, name, NULL, NULL);
            assert_non_null(x);
            float *out = calloc((size_t)(B * S * dim), sizeof(float));
            dsv4_taps *taps = dsv4_taps_new();
            char tp[64];
            snprintf(tp, sizeof tp, "taps.%lld.layers.%lld", (long long)k, (long long)layer);
            if (v4_attn_forward(L, x, out, B, S, sp, taps, tp)) {
                print_error("%s %s call %lld: %s\n", file, prefix, (long long)k, dsv4_last_error());
                (*n_fail)++;
                free(x); free(out); dsv4_taps_free(taps);
                break;
            }
            /* indexer sets first: they excuse attention rows */
            unsigned char *excuse = calloc((size_t)(B * S), 1);
            snprintf(name, sizeof name, "%s.attn.indexer", tp);
            const st_tensor *gi = st_find(f, name);
            int nd = 0;
            const int64_t *shp = NULL;
            const int64_t *di = dsv4_taps_find_i64(taps, name, &nd, &shp);
            if (gi) {
                st_idx.present = 1;
                if (!di || nd != 3 || shp[0] != gi->shape[0] || shp[1] != gi->shape[1] || shp[2] != gi->shape[2]) st_idx.missing++;
                else {
                    int64_t kk = gi->shape[2];
                    int64_t *g = malloc(sizeof(int64_t) * (size_t)(gi->numel + 1));
                    for (int64_t i = 0; i < gi->numel; i++) g[i] = st_get_i64(gi, i);
                    for (int64_t r = 0; r < B * S; r++) {
                        int same = 1;
                        st_idx.jac_sum += jaccard(g + r * kk, di + r * kk, kk, &same);
                        st_idx.jac_rows++;
                        if (!same) excuse[r] = 1;
                    }
                    free(g);
                }
            } else if (di) st_idx.extra++;
            /* attention output */
            snprintf(name, sizeof name, "%s.attn", tp);
            float *want = golden_floats(f, name, NULL, NULL);
            assert_non_null(want);
            if (getenv("DSV4REF_OFFICIAL_VERBOSE")) {
                path_stat one = {0};
                float_rows(&one, out, want, B * S, dim, excuse);
                printf("    call %lld layer %lld: rows %lld rel-L2 %.2e worst %.2e\n", (long long)k,
                       (long long)layer, (long long)one.rows,
                       one.den > 0 ? sqrt(one.num / one.den) : 0.0, one.worst);
            }
            float_rows(&st_attn, out, want, B * S, dim, excuse);
            if (getenv("DSV4REF_OFFICIAL_ROWS"))
                for (int64_t r = 0; r < B * S; r++) {
                    path_stat one = {0};
                    float_rows(&one, out + r * dim, want + r * dim, 1, dim, NULL);
                    printf("    call %lld layer %lld row %lld: rel-L2 %.2e\n", (long long)k, (long long)layer,
                           (long long)r, one.den > 0 ? sqrt(one.num / one.den) : 0.0);
                }
            free(want);
            /* compressor taps */
            const char *tails[2] = { "attn.compressor", "attn.indexer.compressor" };
            path_stat *ps[2] = { &st_comp, &st_icomp };
            for (int c = 0; c < 2; c++) {
                snprintf(name, sizeof name, "%s.%s", tp, tails[c]);
                int64_t gshape[8] = {0}, gn = 0;
                float *g = golden_floats(f, name, &gn, gshape);
                const float *d = dsv4_taps_find_f32(taps, name, &nd, &shp);
                if (g && !d) ps[c]->missing++;
                else if (!g && d) ps[c]->extra++;
                else if (g && d) {
                    if (nd != 3 || shp[0] != gshape[0] || shp[1] != gshape[1] || shp[2] != gshape[2])
                        ps[c]->missing++;
                    else float_rows(ps[c], d, g, gshape[0] * gshape[1], gshape[2], NULL);
                }
                free(g);
            }
            free(excuse); free(x); free(out);
            dsv4_taps_free(taps);
        }
        const char *names[4] = { "attn", "attn.compressor", "attn.indexer", "attn.indexer.compressor" };
        path_stat *all[4] = { &st_attn, &st_comp, &st_idx, &st_icomp };
        for (int p = 0; p < 4; p++) {
            if (!all[p]->present && !all[p]->missing && !all[p]->extra) continue;
            char text[256];
            int ok = stat_pass(all[p], text, sizeof text);
            printf("  %s layers.%lld.%s (ratio %d): %s\n", ok ? "ok  " : "FAIL", (long long)layer,
                   names[p], ratio, text);
            if (!ok) (*n_fail)++;
        }
        v4_attn_layer_free(L);
    }
    json_free(sched);
    wsrc_close(src);
    st_close(f);
    return 0;
}

static void official_file(void **state)
{
    const char *file = *state;
    int n_fail = 0;
    assert_int_equal(run_file(file, &n_fail), 0);
    if (n_fail)
        fail_msg("%s: %d attention paths outside the official_compare limits\n"
                 "  likely bug: a rounding point, key list or state transition of spec/v4-attention.md "
                 "differs from the official graph (see the per-path numbers above)", file, n_fail);
}

int main(void)
{
    static const char *files[] = {
        "short_boundaries_s4.safetensors",
        "fp8_fp4_weights.safetensors.gz",
        "pro_schedule_batch2.safetensors.gz",
        "flash_bf16_prefill_decode.safetensors.gz",
    };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(official_file, (void *)files[0]),
        cmocka_unit_test_prestate(official_file, (void *)files[1]),
        cmocka_unit_test_prestate(official_file, (void *)files[2]),
        cmocka_unit_test_prestate(official_file, (void *)files[3]),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
