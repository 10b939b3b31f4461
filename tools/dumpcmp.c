/* dumpcmp.c — tensor-by-tensor comparison of two dumps (tools/dumpcmp.h, spec/tolerances.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "dumpcmp.h"
#include "tolerance.h"

/* integer dtypes: their tensors are index sets [TOL-CMP] */
static int is_int_dtype(dsv4_dtype d)
{
    return d == DSV4_I64 || d == DSV4_I32 || d == DSV4_I8 || d == DSV4_U8 || d == DSV4_BOOL;
}

/* s ends with suf */
static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* the tensors that are compared: taps.* when the file holds any, else all but aux.* */
static const char *module_path(const char *name);

/* [TOL-CMP] only: a prefix of the full name (taps.0.layers.2.) or of the module path
 * (layers.2.attn: every call) */
static int selected(const char *name, const char *only, int has_taps)
{
    if (only && strncmp(name, only, strlen(only)) != 0 && strncmp(module_path(name), only, strlen(only)) != 0)
        return 0;
    if (has_taps) return strncmp(name, "taps.", 5) == 0;
    return strncmp(name, "aux.", 4) != 0;
}

/* flat index -> "[i, j, k]" */
static void pos_str(const st_tensor *t, int64_t flat, char *buf, size_t n)
{
    int64_t idx[ST_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = t->shape[d] ? flat % t->shape[d] : 0;
        flat = t->shape[d] ? flat / t->shape[d] : 0;
    }
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ", %lld" : "%lld", (long long)idx[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* ---- per-tensor statistics, pooled per module path ---- */

/* [TOL-CMP] the module path of a tap: "taps.<k>.<path>" -> "<path>"; other names: themselves */
static const char *module_path(const char *name)
{
    if (strncmp(name, "taps.", 5) != 0) return name;
    const char *p = name + 5;
    while (*p >= '0' && *p <= '9') p++;
    return *p == '.' ? p + 1 : name;
}

typedef struct {
    const st_tensor *e, *a;
    int kind;                 /* 0 missing / bad shape, 1 float, 2 index */
    char problem[160];
    /* float */
    double max_abs, rel, cosv, worst_e, worst_a;
    int64_t worst, bad_nf, rows, n_out, n_exc;
    double bulk_num, bulk_den;
    /* index */
    double jac_sum, jac_worst;
    int64_t n_diff, worst_row, k;
} tstat;

typedef struct {
    const char *path;
    int kind;
    int64_t rows, n_out;
    double bulk_num, bulk_den, jac_sum;
    int ok;
} pstat;

/* [TOL-CMP] Jaccard of row r of a and b (last dim), -1 (any negative) dropped; two empty sets: 1. */
static double row_jaccard(const st_tensor *a, const st_tensor *b, int64_t r, int64_t k)
{
    int64_t inter = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < k; i++) {
        int64_t v = st_get_i64(a, r * k + i);
        int dup = 0;
        if (v < 0) continue;
        for (int64_t j = 0; j < i; j++) if (st_get_i64(a, r * k + j) == v) dup = 1;
        if (dup) continue;
        na++;
        for (int64_t j = 0; j < k; j++)
            if (st_get_i64(b, r * k + j) == v) { inter++; break; }
    }
    for (int64_t i = 0; i < k; i++) {
        int64_t v = st_get_i64(b, r * k + i);
        int dup = 0;
        if (v < 0) continue;
        for (int64_t j = 0; j < i; j++) if (st_get_i64(b, r * k + j) == v) dup = 1;
        if (!dup) nb++;
    }
    int64_t uni = na + nb - inter;
    return uni == 0 ? 1.0 : (double)inter / (double)uni;
}

/* [TOL-CMP] per-row Jaccard of an index tensor (rows = the last dim) */
static void stat_index(tstat *t)
{
    const st_tensor *e = t->e, *a = t->a;
    t->k = e->ndim ? e->shape[e->ndim - 1] : 1;
    t->rows = t->k ? e->numel / t->k : 0;
    t->jac_worst = 2.0;
    for (int64_t r = 0; r < t->rows; r++) {
        double j = row_jaccard(e, a, r, t->k);
        t->jac_sum += j;
        if (j < 1.0) t->n_diff++;
        if (j < t->jac_worst) { t->jac_worst = j; t->worst_row = r; }
    }
}

/* ---- excused rows (official numerics: the teacher-mode rule of official_compare.py) ---- */

typedef struct { char path[96]; int call; int64_t row; } excuse;
typedef struct { excuse *e; int64_t n, cap; } excuses;

/* records (path, call, row) once */
static int excuse_add(excuses *x, const char *path, int call, int64_t row)
{
    for (int64_t i = 0; i < x->n; i++)
        if (x->e[i].call == call && x->e[i].row == row && strcmp(x->e[i].path, path) == 0) return 0;
    if (x->n == x->cap) {
        int64_t nc = x->cap ? 2 * x->cap : 64;
        excuse *ne = realloc(x->e, (size_t)nc * sizeof *ne);
        if (!ne) return -1;
        x->e = ne;
        x->cap = nc;
    }
    snprintf(x->e[x->n].path, sizeof x->e[x->n].path, "%s", path);
    x->e[x->n].call = call;
    x->e[x->n].row = row;
    x->n++;
    return 0;
}

/* "taps.<call>.layers.<layer>.<tail>" -> 1 with call, layer and tail */
static int parse_layer_tap(const char *name, int *call, int *layer, const char **tail)
{
    char *end;
    if (strncmp(name, "taps.", 5) != 0) return 0;
    long c = strtol(name + 5, &end, 10);
    if (end == name + 5 || strncmp(end, ".layers.", 8) != 0) return 0;
    const char *q = end + 8;
    long l = strtol(q, &end, 10);
    if (end == q) return 0;
    *call = (int)c;
    *layer = (int)l;
    *tail = *end == '.' ? end + 1 : end;
    return 1;
}

/* [TOL-CMP] Rows whose discrete choice differs from the expected one: the indexer's top-k set
 * excuses that layer's attn, ffn.in, ffn, ffn.gate.0 and Block rows of that call; the routed
 * experts excuse its ffn, ffn.gate.0 and Block rows; in the last layer, the logits row of the
 * sequence's last position (official_compare.py, teacher mode). The choices are judged
 * themselves as index tensors. */
static int build_excuses(const st_file *e, const st_file *a, excuses *x)
{
    int last = -1, call, layer;
    const char *tail;
    for (size_t i = 0; i < st_count(e); i++)
        if (parse_layer_tap(st_get(e, i)->name, &call, &layer, &tail) && layer > last) last = layer;
    for (size_t i = 0; i < st_count(e); i++) {
        const st_tensor *g = st_get(e, i);
        if (!parse_layer_tap(g->name, &call, &layer, &tail)) continue;
        int is_idx = strcmp(tail, "attn.indexer") == 0;
        if (!is_idx && strcmp(tail, "ffn.gate.1") != 0) continue;
        const st_tensor *d = st_find(a, g->name);
        if (!d || d->ndim != g->ndim || memcmp(d->shape, g->shape, (size_t)g->ndim * sizeof g->shape[0]) != 0) continue;
        int64_t k = g->ndim ? g->shape[g->ndim - 1] : 0;
        if (k == 0) continue;
        char attn[96];
        snprintf(attn, sizeof attn, "taps.%d.layers.%d.attn", call, layer);
        const st_tensor *at = st_find(e, attn);
        for (int64_t r = 0; r < g->numel / k; r++) {
            if (row_jaccard(g, d, r, k) >= 1.0) continue;
            static const char *const both[] = { "", ".ffn", ".ffn.gate.0" }, *const idx_only[] = { ".attn", ".ffn.in" };
            char p[96];
            for (int h = 0; h < 3; h++) {
                snprintf(p, sizeof p, "layers.%d%s", layer, both[h]);
                if (excuse_add(x, p, call, r)) return -1;
            }
            for (int h = 0; is_idx && h < 2; h++) {
                snprintf(p, sizeof p, "layers.%d%s", layer, idx_only[h]);
                if (excuse_add(x, p, call, r)) return -1;
            }
            if (layer == last && at && at->ndim == 3 && at->shape[1] > 0 && r % at->shape[1] == at->shape[1] - 1)
                if (excuse_add(x, "logits", call, r / at->shape[1])) return -1;
        }
    }
    return 0;
}

/* (path, call, row) was excused by build_excuses */
static int is_excused(const excuses *x, const char *path, int call, int64_t row)
{
    for (int64_t i = 0; i < x->n; i++)
        if (x->e[i].call == call && x->e[i].row == row && strcmp(x->e[i].path, path) == 0) return 1;
    return 0;
}

/* rows: one token = the dims after [B, S] for ndim >= 3, the last dim for ndim 2, else all */
static void stat_float(tstat *t, const excuses *exc, const char *path, int call)
{
    const st_tensor *e = t->e, *a = t->a;
    int64_t n = e->numel;
    int64_t lead = e->ndim >= 3 ? e->shape[0] * e->shape[1] : 0;
    int64_t row = e->ndim >= 3 ? (lead > 0 ? n / lead : 1) : e->ndim == 2 ? e->shape[1] : n;
    double dd = 0.0, gg = 0.0, dot = 0.0, aa = 0.0;
    if (row <= 0) row = 1;
    t->rows = n / row;
    t->worst = t->bad_nf = -1;
    for (int64_t r = 0; r < t->rows; r++) {
        double rn = 0.0, rd = 0.0;
        if (exc && exc->n && call >= 0 && is_excused(exc, path, call, r)) { t->n_exc++; continue; }
        for (int64_t i = r * row; i < (r + 1) * row; i++) {
            double g = st_get_f64(e, i), x = st_get_f64(a, i);
            if (!isfinite(g) || !isfinite(x)) {
                if (!(g == x || (isnan(g) && isnan(x))) && t->bad_nf < 0) t->bad_nf = i;
                continue;
            }
            double d = x - g;
            rn += d * d; rd += g * g;
            dot += g * x; aa += x * x;
            if (t->worst < 0 || fabs(d) > t->max_abs) { t->max_abs = fabs(d); t->worst = i; }
        }
        dd += rn; gg += rd;
        double rel = rd > 0 ? sqrt(rn) / sqrt(rd) : sqrt(rn);
        if (rel > DSV4_TOL.outlier_row) t->n_out++;
        else { t->bulk_num += rn; t->bulk_den += rd; }
    }
    t->rel = gg > 0 ? sqrt(dd) / sqrt(gg) : sqrt(dd);
    t->cosv = (gg > 0 && aa > 0) ? dot / sqrt(gg * aa) : (gg == aa ? 1.0 : 0.0);
    if (t->worst >= 0) { t->worst_e = st_get_f64(e, t->worst); t->worst_a = st_get_f64(a, t->worst); }
}

/* row r of an index tensor as a set "{a, b, ...}" (-1 dropped) */
static void print_sets(FILE *out, const st_tensor *t, int64_t r, int64_t k)
{
    fprintf(out, "{");
    for (int64_t i = 0, f = 0; i < k; i++) {
        int64_t v = st_get_i64(t, r * k + i);
        if (v >= 0) fprintf(out, f++ ? ", %lld" : "%lld", (long long)v);
    }
    fprintf(out, "}");
}

/* one report line per tensor: its own statistics; ok/FAIL = its own check (exact) or the
 * verdict of its module path (official: pooled rows) */
static void report(FILE *out, const tstat *t, int ok, dsv4_numerics num)
{
    const st_tensor *e = t->e;
    if (t->kind == 0) {
        fprintf(out, "FAIL %-44s %s\n", e->name, t->problem);
        return;
    }
    if (t->kind == 2) {
        double mean = t->rows ? t->jac_sum / (double)t->rows : 1.0;
        fprintf(out, "%s %-44s index sets  %lld rows  mean Jaccard %.4f (limit %.2f)  rows differing %lld",
                ok ? "ok  " : "FAIL", e->name, (long long)t->rows, mean, DSV4_TOL.jaccard_min, (long long)t->n_diff);
        if (t->n_diff) {
            fprintf(out, "  worst row %lld: expected ", (long long)t->worst_row);
            print_sets(out, e, t->worst_row, t->k);
            fprintf(out, " actual ");
            print_sets(out, t->a, t->worst_row, t->k);
        }
        fprintf(out, "\n");
        return;
    }
    int logits = ends_with(e->name, "logits");
    double limit = num == DSV4_EXACT ? DSV4_TOL.exact_rel_l2 : logits ? DSV4_TOL.logits_rel_l2 : DSV4_TOL.row_rel_l2;
    fprintf(out, "%s %-44s max abs %.3g  rel-L2 %.2e (limit %.0e)  cos %.7f", ok ? "ok  " : "FAIL", e->name,
            t->max_abs, t->rel, limit, t->cosv);
    if (num == DSV4_OFFICIAL)
        fprintf(out, "  rows %lld  outlier rows %lld", (long long)t->rows, (long long)t->n_out);
    if (t->n_exc) fprintf(out, "  %lld rows excused", (long long)t->n_exc);
    char p[96];
    if (t->bad_nf >= 0) {
        pos_str(e, t->bad_nf, p, sizeof p);
        fprintf(out, "  non-finite mismatch at %s: expected %.9g actual %.9g", p, st_get_f64(e, t->bad_nf),
                st_get_f64(t->a, t->bad_nf));
    } else if (t->worst >= 0 && t->max_abs > 0) {
        pos_str(e, t->worst, p, sizeof p);
        fprintf(out, "  worst %s: expected %.9g actual %.9g", p, t->worst_e, t->worst_a);
    }
    fprintf(out, "\n");
}

/* [TOL-CMP] tools/dumpcmp.h */
int dumpcmp_run(const st_file *expected, const st_file *actual, dsv4_numerics num, const char *only, FILE *out)
{
    int has_taps = 0, n_pass = 0, n_fail = 0, n_t = 0, n_p = 0, rc = 2;
    excuses ex = { NULL, 0, 0 };
    size_t n = st_count(expected);
    tstat *ts = dsv4_calloc(n + 1, sizeof *ts, "compare");
    pstat *ps = dsv4_calloc(n + 1, sizeof *ps, "compare");
    int *tp = dsv4_calloc(n + 1, sizeof *tp, "compare");
    if (!ts || !ps || !tp) { fprintf(out, "compare: out of memory\n"); goto done; }
    for (size_t i = 0; i < n; i++)
        if (strncmp(st_get(expected, i)->name, "taps.", 5) == 0) has_taps = 1;
    if (num == DSV4_OFFICIAL && build_excuses(expected, actual, &ex)) { fprintf(out, "compare: out of memory\n"); goto done; }
    /* statistics of every selected tensor, pooled per module path */
    for (size_t i = 0; i < n; i++) {
        const st_tensor *e = st_get(expected, i);
        if (!selected(e->name, only, has_taps)) continue;
        tstat *t = &ts[n_t];
        t->e = e;
        t->a = st_find(actual, e->name);
        if (!t->a) snprintf(t->problem, sizeof t->problem, "missing from %.120s", st_path(actual));
        else if (t->a->ndim != e->ndim || memcmp(t->a->shape, e->shape, (size_t)e->ndim * sizeof e->shape[0]) != 0) {
            char se[64], sa[64];
            size_t k = 0;
            se[0] = sa[0] = 0;
            for (int d = 0; d < e->ndim && k < sizeof se; d++)
                k += (size_t)snprintf(se + k, sizeof se - k, d ? ", %lld" : "%lld", (long long)e->shape[d]);
            k = 0;
            for (int d = 0; d < t->a->ndim && k < sizeof sa; d++)
                k += (size_t)snprintf(sa + k, sizeof sa - k, d ? ", %lld" : "%lld", (long long)t->a->shape[d]);
            snprintf(t->problem, sizeof t->problem, "shape [%s] expected, [%s] actual", se, sa);
        } else if (is_int_dtype(e->dtype) || is_int_dtype(t->a->dtype) || ends_with(e->name, "attn.indexer") ||
                   ends_with(e->name, "gate.1")) {
            t->kind = 2;
            stat_index(t);
        } else {
            t->kind = 1;
            stat_float(t, &ex, module_path(e->name),
                       strncmp(e->name, "taps.", 5) == 0 ? atoi(e->name + 5) : -1);
        }
        const char *path = module_path(e->name);
        int j;
        for (j = 0; j < n_p; j++) if (strcmp(ps[j].path, path) == 0) break;
        if (j == n_p) { ps[n_p].path = path; ps[n_p].kind = t->kind; ps[n_p].ok = 1; n_p++; }
        tp[n_t] = j;
        if (t->kind == 0) ps[j].ok = 0;
        ps[j].rows += t->rows;
        ps[j].n_out += t->n_out;
        ps[j].bulk_num += t->bulk_num;
        ps[j].bulk_den += t->bulk_den;
        ps[j].jac_sum += t->jac_sum;
        if (t->kind == 1 && t->bad_nf >= 0) ps[j].ok = 0;
        n_t++;
    }
    /* [TOL] the verdict of each path (official) */
    for (int j = 0; j < n_p; j++) {
        pstat *p = &ps[j];
        if (p->kind == 2) p->ok = p->ok && (p->rows ? p->jac_sum / (double)p->rows : 1.0) >= DSV4_TOL.jaccard_min;
        else if (p->kind == 1 && num == DSV4_OFFICIAL) {
            double bulk = p->bulk_den > 0 ? sqrt(p->bulk_num) / sqrt(p->bulk_den) : sqrt(p->bulk_num);
            double limit = ends_with(p->path, "logits") ? DSV4_TOL.logits_rel_l2 : DSV4_TOL.row_rel_l2;
            p->ok = p->ok && bulk <= limit && p->n_out <= dsv4_tol_outliers_allowed(p->rows);
        }
    }
    for (int i = 0; i < n_t; i++) {
        const tstat *t = &ts[i];
        int ok;
        if (t->kind == 0) ok = 0;
        else if (t->kind == 1 && num == DSV4_EXACT) ok = t->bad_nf < 0 && t->rel <= DSV4_TOL.exact_rel_l2;
        else ok = ps[tp[i]].ok;
        report(out, t, ok, num);
        if (ok) n_pass++; else n_fail++;
    }
    /* official: the pooled figure of every path that gates */
    if (num == DSV4_OFFICIAL)
        for (int j = 0; j < n_p; j++) {
            const pstat *p = &ps[j];
            if (p->kind != 1) continue;
            double bulk = p->bulk_den > 0 ? sqrt(p->bulk_num) / sqrt(p->bulk_den) : sqrt(p->bulk_num);
            fprintf(out, "%s path %-39s %lld rows over all calls  pooled row rel-L2 %.2e (limit %.0e)  outliers %lld/%lld\n",
                    p->ok ? "ok  " : "FAIL", p->path, (long long)p->rows, bulk,
                    ends_with(p->path, "logits") ? DSV4_TOL.logits_rel_l2 : DSV4_TOL.row_rel_l2, (long long)p->n_out,
                    (long long)dsv4_tol_outliers_allowed(p->rows));
        }
    fprintf(out, "%d passed, %d failed\n", n_pass, n_fail);
    rc = n_pass + n_fail == 0 ? 2 : n_fail ? 1 : 0;
done:
    free(ts); free(ps); free(tp); free(ex.e);
    return rc;
}
