/* dumpcmp.c — tensor-by-tensor comparison of two dumps (tools/dumpcmp.h, spec/tolerances.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "dumpcmp.h"
#include "tolerance.h"

static int is_int_dtype(dsv4_dtype d)
{
    return d == DSV4_I64 || d == DSV4_I32 || d == DSV4_I8 || d == DSV4_U8 || d == DSV4_BOOL;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* the tensors that are compared: taps.* when the file holds any, else all but aux.* */
static int selected(const char *name, const char *only, int has_taps)
{
    if (only && strncmp(name, only, strlen(only)) != 0) return 0;
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

/* ---- index tensors: rows as sets ---- */

/* [CMP-TOL] Jaccard of row r of a and b (last dim), -1 (any negative) dropped; two empty sets: 1. */
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

static int cmp_index(const st_tensor *e, const st_tensor *a, FILE *out)
{
    int64_t k = e->ndim ? e->shape[e->ndim - 1] : 1;
    int64_t rows = k ? e->numel / k : 0;
    double sum = 0.0, worst = 2.0;
    int64_t worst_r = 0, n_diff = 0;
    for (int64_t r = 0; r < rows; r++) {
        double j = row_jaccard(e, a, r, k);
        sum += j;
        if (j < 1.0) n_diff++;
        if (j < worst) { worst = j; worst_r = r; }
    }
    double mean = rows ? sum / (double)rows : 1.0;
    int ok = mean >= DSV4_TOL.jaccard_min;
    fprintf(out, "%s %-44s index sets  %lld rows  mean Jaccard %.4f (limit %.2f)  rows differing %lld",
            ok ? "ok  " : "FAIL", e->name, (long long)rows, mean, DSV4_TOL.jaccard_min, (long long)n_diff);
    if (n_diff) {
        fprintf(out, "  worst row %lld: expected {", (long long)worst_r);
        for (int64_t i = 0, f = 0; i < k; i++) {
            int64_t v = st_get_i64(e, worst_r * k + i);
            if (v >= 0) fprintf(out, f++ ? ", %lld" : "%lld", (long long)v);
        }
        fprintf(out, "} actual {");
        for (int64_t i = 0, f = 0; i < k; i++) {
            int64_t v = st_get_i64(a, worst_r * k + i);
            if (v >= 0) fprintf(out, f++ ? ", %lld" : "%lld", (long long)v);
        }
        fprintf(out, "}");
    }
    fprintf(out, "\n");
    return ok;
}

/* ---- float tensors ---- */

/* [CMP-TOL] one float tensor: exact -> whole-tensor rel-L2; official -> pooled per-row rule */
static int cmp_float(const st_tensor *e, const st_tensor *a, dsv4_numerics num, FILE *out)
{
    int64_t n = e->numel;
    int64_t lead = e->ndim >= 3 ? e->shape[0] * e->shape[1] : 0;
    int64_t row = e->ndim >= 3 ? (lead > 0 ? n / lead : 1) : e->ndim == 2 ? e->shape[1] : n;
    if (row <= 0) row = 1;
    int64_t rows = n / row;
    double dd = 0.0, gg = 0.0, dot = 0.0, aa = 0.0, max_abs = 0.0;
    double bulk_num = 0.0, bulk_den = 0.0;
    int64_t worst = -1, n_out = 0, bad_nf = -1;
    for (int64_t r = 0; r < rows; r++) {
        double rn = 0.0, rd = 0.0;
        for (int64_t i = r * row; i < (r + 1) * row; i++) {
            double g = st_get_f64(e, i), x = st_get_f64(a, i);
            if (!isfinite(g) || !isfinite(x)) {
                if (!(g == x || (isnan(g) && isnan(x))) && bad_nf < 0) bad_nf = i;
                continue;
            }
            double d = x - g;
            rn += d * d; rd += g * g;
            dot += g * x; aa += x * x;
            if (worst < 0 || fabs(d) > max_abs) { max_abs = fabs(d); worst = i; }
        }
        dd += rn; gg += rd;
        double rel = sqrt(rn) / (rd > 0 ? sqrt(rd) : 1.0);
        if (rd == 0.0 && rn == 0.0) rel = 0.0;
        if (rel > DSV4_TOL.outlier_row) n_out++;
        else { bulk_num += rn; bulk_den += rd; }
    }
    double rel = sqrt(dd) / (gg > 0 ? sqrt(gg) : 1.0);
    double cosv = (gg > 0 && aa > 0) ? dot / sqrt(gg * aa) : (gg == aa ? 1.0 : 0.0);
    double limit;
    int ok;
    char extra[96] = "";
    if (num == DSV4_EXACT) {
        limit = DSV4_TOL.exact_rel_l2;
        ok = rel <= limit;
    } else {
        int logits = ends_with(e->name, "logits");
        limit = logits ? DSV4_TOL.logits_rel_l2 : DSV4_TOL.row_rel_l2;
        double bulk = sqrt(bulk_num) / (bulk_den > 0 ? sqrt(bulk_den) : 1.0);
        int64_t allowed = dsv4_tol_outliers_allowed(rows);
        ok = bulk <= limit && n_out <= allowed;
        snprintf(extra, sizeof extra, "  rows %lld  pooled row rel-L2 %.2e  outliers %lld/%lld", (long long)rows, bulk,
                 (long long)n_out, (long long)allowed);
    }
    if (bad_nf >= 0) ok = 0;
    fprintf(out, "%s %-44s max abs %.3g  rel-L2 %.2e (limit %.0e)  cos %.7f%s", ok ? "ok  " : "FAIL", e->name, max_abs,
            rel, limit, cosv, extra);
    if (bad_nf >= 0) {
        char p[96];
        pos_str(e, bad_nf, p, sizeof p);
        fprintf(out, "  non-finite mismatch at %s: expected %.9g actual %.9g", p, st_get_f64(e, bad_nf),
                st_get_f64(a, bad_nf));
    } else if (worst >= 0 && max_abs > 0) {
        char p[96];
        pos_str(e, worst, p, sizeof p);
        fprintf(out, "  worst %s: expected %.9g actual %.9g", p, st_get_f64(e, worst), st_get_f64(a, worst));
    }
    fprintf(out, "\n");
    return ok;
}

int dumpcmp_run(const st_file *expected, const st_file *actual, dsv4_numerics num, const char *only, FILE *out)
{
    int has_taps = 0, n_pass = 0, n_fail = 0;
    for (size_t i = 0; i < st_count(expected); i++)
        if (strncmp(st_get(expected, i)->name, "taps.", 5) == 0) has_taps = 1;
    for (size_t i = 0; i < st_count(expected); i++) {
        const st_tensor *e = st_get(expected, i);
        if (!selected(e->name, only, has_taps)) continue;
        const st_tensor *a = st_find(actual, e->name);
        int ok;
        if (!a) {
            fprintf(out, "FAIL %-44s missing from %s\n", e->name, st_path(actual));
            ok = 0;
        } else if (a->ndim != e->ndim || memcmp(a->shape, e->shape, (size_t)e->ndim * sizeof e->shape[0]) != 0) {
            char se[96], sa[96];
            size_t k = 0;
            se[0] = sa[0] = 0;
            for (int d = 0; d < e->ndim; d++) k += (size_t)snprintf(se + k, sizeof se - k, d ? ", %lld" : "%lld", (long long)e->shape[d]);
            k = 0;
            for (int d = 0; d < a->ndim; d++) k += (size_t)snprintf(sa + k, sizeof sa - k, d ? ", %lld" : "%lld", (long long)a->shape[d]);
            fprintf(out, "FAIL %-44s shape [%s] expected, [%s] actual\n", e->name, se, sa);
            ok = 0;
        } else if (is_int_dtype(e->dtype) || is_int_dtype(a->dtype) || ends_with(e->name, "attn.indexer") ||
                   ends_with(e->name, "gate.1")) {
            ok = cmp_index(e, a, out);
        } else {
            ok = cmp_float(e, a, num, out);
        }
        if (ok) n_pass++; else n_fail++;
    }
    fprintf(out, "%d passed, %d failed\n", n_pass, n_fail);
    if (n_pass + n_fail == 0) return 2;
    return n_fail ? 1 : 0;
}
