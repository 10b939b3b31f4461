/* tapcmp.c — the tap comparison of `dsv4ref check` (tools/tapcmp.h). It restates the rules of
 * ../shared/tools/official_compare.py (its docstring is the authority) in C, so that `check`
 * and the Python judge agree row for row:
 *   float row error = ||ours - golden|| / ||golden|| over one token row (non-finite values must
 *   sit at the same places); a path passes when the pooled error of its non-outlier rows is
 *   <= 1e-2 (logits 2e-2) and at most 1% of rows (none below 20 rows) exceed 5e-2;
 *   index taps (attn.indexer, ffn.gate.1, any integer tap) compare per row as sets, mean
 *   Jaccard >= 0.98; in teacher mode rows downstream of a differing set are excused;
 *   free mode judges only the logits: median row error <= 5e-2, same argmax in >= 75% rows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tapcmp.h"

#include "tolerance.h"

/* the limits of spec/tolerances.md [TOL] (ref/tolerance.c) */
#define ROW_LIMIT      DSV4_TOL.row_rel_l2
#define LOGITS_LIMIT   DSV4_TOL.logits_rel_l2
#define OUTLIER_LIMIT  DSV4_TOL.outlier_row
#define JACCARD_MIN    DSV4_TOL.jaccard_min
#define FREE_MEDIAN    DSV4_TOL.free_median
#define FREE_ARGMAX    DSV4_TOL.free_argmax

typedef struct { int call; int64_t row; double num, den, jac; int finite_ok, am_same; } row_stat;
typedef struct { int call; int64_t row; } row_id;

typedef struct {
    char path[160];
    int is_int, n_problems;
    char problem[320];
    row_stat *rows; int64_t n_rows, cap_rows;
    row_id *excused; int64_t n_exc, cap_exc;
    double max_abs, dot, gg, dd;
    int worst_call; int64_t worst_flat; double worst_g, worst_d;
} group;

typedef struct { group *g; int n, cap; } groups;

static int is_int_dtype(dsv4_dtype d)
{
    return d == DSV4_I64 || d == DSV4_I32 || d == DSV4_I8 || d == DSV4_U8 || d == DSV4_BOOL;
}

static group *group_get(groups *gs, const char *path)
{
    for (int i = 0; i < gs->n; i++)
        if (strcmp(gs->g[i].path, path) == 0) return &gs->g[i];
    if (gs->n == gs->cap) {
        int nc = gs->cap ? 2 * gs->cap : 64;
        group *ng = realloc(gs->g, (size_t)nc * sizeof *ng);
        if (!ng) return NULL;
        gs->g = ng;
        gs->cap = nc;
    }
    group *g = &gs->g[gs->n++];
    memset(g, 0, sizeof *g);
    snprintf(g->path, sizeof g->path, "%s", path);
    g->worst_call = -1;
    return g;
}

static int push_row(group *g, const row_stat *r)
{
    if (g->n_rows == g->cap_rows) {
        int64_t nc = g->cap_rows ? 2 * g->cap_rows : 256;
        row_stat *nr = realloc(g->rows, (size_t)nc * sizeof *nr);
        if (!nr) return -1;
        g->rows = nr;
        g->cap_rows = nc;
    }
    g->rows[g->n_rows++] = *r;
    return 0;
}

static int push_excused(group *g, int call, int64_t row)
{
    for (int64_t i = 0; i < g->n_exc; i++)
        if (g->excused[i].call == call && g->excused[i].row == row) return 0;
    if (g->n_exc == g->cap_exc) {
        int64_t nc = g->cap_exc ? 2 * g->cap_exc : 64;
        row_id *ne = realloc(g->excused, (size_t)nc * sizeof *ne);
        if (!ne) return -1;
        g->excused = ne;
        g->cap_exc = nc;
    }
    g->excused[g->n_exc].call = call;
    g->excused[g->n_exc].row = row;
    g->n_exc++;
    return 0;
}

static int is_excused(const group *g, int call, int64_t row)
{
    for (int64_t i = 0; i < g->n_exc; i++)
        if (g->excused[i].call == call && g->excused[i].row == row) return 1;
    return 0;
}

static int64_t row_size(const st_tensor *t)
{
    if (t->ndim >= 3) {
        int64_t n = 1;
        for (int i = 2; i < t->ndim; i++) n *= t->shape[i];
        return n;
    }
    return t->ndim ? t->shape[t->ndim - 1] : 1;
}

/* "taps.<k>.<path>" -> k and path; 0 when the name is not a tap */
static int split_tap(const char *name, int *call, const char **path)
{
    if (strncmp(name, "taps.", 5) != 0) return 0;
    const char *p = name + 5;
    char *end;
    long k = strtol(p, &end, 10);
    if (end == p || *end != '.' || k < 0) return 0;
    *call = (int)k;
    *path = end + 1;
    return 1;
}

/* Jaccard similarity of two rows of indices as sets, -1 entries dropped. */
static double jaccard(const st_tensor *a, const st_tensor *b, int64_t off, int64_t k)
{
    int64_t inter = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < k; i++) {
        int64_t x = st_get_i64(a, off + i);
        int dup = 0;
        if (x < 0) continue;
        for (int64_t j = 0; j < i; j++) if (st_get_i64(a, off + j) == x) dup = 1;
        if (dup) continue;
        na++;
        for (int64_t j = 0; j < k; j++) if (st_get_i64(b, off + j) == x) { inter++; break; }
    }
    for (int64_t i = 0; i < k; i++) {
        int64_t x = st_get_i64(b, off + i);
        int dup = 0;
        if (x < 0) continue;
        for (int64_t j = 0; j < i; j++) if (st_get_i64(b, off + j) == x) dup = 1;
        if (!dup) nb++;
    }
    int64_t uni = na + nb - inter;
    return uni == 0 ? 1.0 : (double)inter / (double)uni;
}

static int add_pair(group *g, int call, const st_tensor *gt, const st_tensor *dt)
{
    int64_t k = row_size(gt);
    g->is_int = is_int_dtype(gt->dtype);
    if (k == 0) return 0;
    for (int64_t off = 0; off < gt->numel; off += k) {
        row_stat r;
        memset(&r, 0, sizeof r);
        r.call = call;
        r.row = off / k;
        if (g->is_int) {
            r.jac = jaccard(gt, dt, off, k);
            if (push_row(g, &r)) return -1;
            continue;
        }
        r.finite_ok = 1;
        int64_t ag = 0, ad = 0;
        double bg = -INFINITY, bd = -INFINITY;
        for (int64_t i = 0; i < k; i++) {
            double x = st_get_f64(gt, off + i), y = st_get_f64(dt, off + i);
            if (x > bg) { bg = x; ag = i; }
            if (y > bd) { bd = y; ad = i; }
            if (!isfinite(x) || !isfinite(y)) {
                int same = (isnan(x) && isnan(y)) || x == y;
                r.finite_ok = r.finite_ok && same;
                continue;
            }
            r.num += (y - x) * (y - x);
            r.den += x * x;
            g->dot += x * y; g->gg += x * x; g->dd += y * y;
            if (fabs(y - x) > g->max_abs) {
                g->max_abs = fabs(y - x);
                g->worst_call = call; g->worst_flat = off + i; g->worst_g = x; g->worst_d = y;
            }
        }
        r.am_same = ag == ad;
        if (push_row(g, &r)) return -1;
    }
    return 0;
}

static int cmp_group(const void *a, const void *b)
{
    return strcmp(((const group *)a)->path, ((const group *)b)->path);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* [MDL-8] Teacher mode: rows whose discrete choice (attn.indexer top-k set, ffn.gate.1 expert
 * ids) differs from the golden one excuse that layer's downstream rows (block, ffn,
 * ffn.gate.0; for the indexer also attn and ffn.in; for the last layer the logits row). */
static int compute_excuses(groups *gs, const st_file *golden, const st_file *ours)
{
    int last = -1;
    for (size_t i = 0; i < st_count(golden); i++) {
        const char *path; int call;
        const st_tensor *t = st_get(golden, i);
        if (!split_tap(t->name, &call, &path) || strncmp(path, "layers.", 7) != 0) continue;
        int l = atoi(path + 7);
        if (l > last) last = l;
    }
    for (size_t i = 0; i < st_count(golden); i++) {
        const st_tensor *gt = st_get(golden, i);
        const char *path; int call;
        if (!split_tap(gt->name, &call, &path) || strncmp(path, "layers.", 7) != 0) continue;
        const char *tail = strchr(path + 7, '.');
        if (!tail) continue;
        tail++;
        int is_idx = strcmp(tail, "attn.indexer") == 0;
        if (!is_idx && strcmp(tail, "ffn.gate.1") != 0) continue;
        const st_tensor *dt = st_find(ours, gt->name);
        if (!dt || dt->ndim != gt->ndim || gt->ndim == 0 || gt->shape[gt->ndim - 1] == 0) continue;
        int same_shape = 1;
        for (int d = 0; d < gt->ndim; d++) if (dt->shape[d] != gt->shape[d]) same_shape = 0;
        if (!same_shape) continue;
        int layer = atoi(path + 7);
        int64_t k = gt->shape[gt->ndim - 1];
        char name[200];
        snprintf(name, sizeof name, "taps.%d.layers.%d.attn", call, layer);
        const st_tensor *attn = st_find(golden, name);
        for (int64_t off = 0; off < gt->numel; off += k) {
            if (jaccard(gt, dt, off, k) == 1.0) continue;
            int64_t row = off / k;
            static const char *const k_down[] = { "", ".ffn", ".ffn.gate.0", ".attn", ".ffn.in" };
            int n_down = is_idx ? 5 : 3;
            for (int h = 0; h < n_down; h++) {
                char p[200];
                snprintf(p, sizeof p, "layers.%d%s", layer, k_down[h]);
                group *g = group_get(gs, p);
                if (!g || push_excused(g, call, row)) return -1;
            }
            if (layer == last && attn && attn->ndim == 3) {
                int64_t seq = attn->shape[1];
                if (row % seq == seq - 1) {
                    group *g = group_get(gs, "logits");
                    if (!g || push_excused(g, call, row / seq)) return -1;
                }
            }
        }
    }
    return 0;
}

/* [MDL-8] [TOL] Judges one module path pooled over calls; returns 1 pass / 0 fail, sets
 * *gating (free mode gates only the logits; index taps gate only in teacher mode). */
static int judge(const group *g, tapcmp_mode mode, int *gating, FILE *out)
{
    int logits = strcmp(g->path, "logits") == 0;
    double cosv = (g->gg > 0 && g->dd > 0) ? g->dot / sqrt(g->gg * g->dd) : 1.0;
    if (g->n_problems) {
        *gating = 1;
        fprintf(out, "FAIL %-34s %s\n", g->path, g->problem);
        return 0;
    }
    if (g->n_rows == 0) { *gating = 0; fprintf(out, "info %-34s no rows\n", g->path); return 1; }
    if (g->is_int) {
        double sum = 0.0, worst = 2.0;
        int wc = 0; int64_t wr = 0;
        for (int64_t i = 0; i < g->n_rows; i++) {
            sum += g->rows[i].jac;
            if (g->rows[i].jac < worst) { worst = g->rows[i].jac; wc = g->rows[i].call; wr = g->rows[i].row; }
        }
        double mean = sum / (double)g->n_rows;
        int ok = mean >= JACCARD_MIN;
        *gating = mode == TAPCMP_TEACHER;
        fprintf(out, "%s %-34s %6lld rows  Jaccard mean %.4f (worst %.3f at call %d row %lld)\n",
                !*gating ? "info" : ok ? "ok  " : "FAIL", g->path, (long long)g->n_rows, mean, worst, wc,
                (long long)wr);
        return ok;
    }
    int64_t n = 0, skipped = 0, n_out = 0;
    double *errs = malloc((size_t)g->n_rows * sizeof *errs);
    double num = 0.0, den = 0.0, same = 0.0;
    if (!errs) { *gating = 1; fprintf(out, "FAIL %s out of memory\n", g->path); return 0; }
    for (int64_t i = 0; i < g->n_rows; i++) {
        const row_stat *r = &g->rows[i];
        if (mode == TAPCMP_TEACHER && is_excused(g, r->call, r->row)) { skipped++; continue; }
        double rel = r->den > 0 ? sqrt(r->num / r->den) : sqrt(r->num);
        if (!r->finite_ok) rel = INFINITY;
        errs[n++] = rel;
        same += r->am_same;
        if (rel > OUTLIER_LIMIT) n_out++;
        else { num += r->num; den += r->den; }
    }
    int ok;
    if (n == 0) {
        *gating = 1;
        fprintf(out, "ok   %-34s all %lld rows excused by differing discrete choices\n", g->path, (long long)skipped);
        free(errs);
        return 1;
    }
    double bulk = den > 0 ? sqrt(num / den) : sqrt(num);
    char worst[160] = "";
    if (g->worst_call >= 0)
        snprintf(worst, sizeof worst, "worst call %d elem %lld: ours %.6g golden %.6g", g->worst_call,
                 (long long)g->worst_flat, g->worst_d, g->worst_g);
    if (mode == TAPCMP_FREE) {
        qsort(errs, (size_t)n, sizeof *errs, cmp_double);
        double med = errs[n / 2];
        double frac = same / (double)n;
        *gating = logits;
        ok = med <= FREE_MEDIAN && frac >= FREE_ARGMAX;
        fprintf(out, "%s %-34s %6lld rows  median row err %.2e  same argmax %3.0f%%  max abs %.3g  cos %.6f  %s\n",
                !*gating ? "info" : ok ? "ok  " : "FAIL", g->path, (long long)n, med, 100.0 * frac, g->max_abs,
                cosv, worst);
        free(errs);
        return ok;
    }
    double limit = logits ? LOGITS_LIMIT : ROW_LIMIT;
    int64_t allowed = dsv4_tol_outliers_allowed(n);
    ok = bulk <= limit && n_out <= allowed;
    *gating = 1;
    fprintf(out, "%s %-34s %6lld rows  rel-L2 %.2e (limit %.0e)  outliers %lld/%lld  max abs %.3g  cos %.6f",
            ok ? "ok  " : "FAIL", g->path, (long long)n, bulk, limit, (long long)n_out, (long long)allowed,
            g->max_abs, cosv);
    if (skipped) fprintf(out, "  %lld excused", (long long)skipped);
    fprintf(out, "  %s\n", worst);
    free(errs);
    return ok;
}

/* [MDL-8] golden, ours: safetensors files; every taps.<k>.<path> of golden must be in ours
 * with the same shape. */
int tapcmp_run(const st_file *golden, const st_file *ours, tapcmp_mode mode, FILE *out)
{
    groups gs = { NULL, 0, 0 };
    int rc = 2, passed = 0, failed = 0;
    for (size_t i = 0; i < st_count(golden); i++) {
        const st_tensor *gt = st_get(golden, i);
        const char *path; int call;
        if (!split_tap(gt->name, &call, &path)) continue;
        group *g = group_get(&gs, path);
        if (!g) goto done;
        const st_tensor *dt = st_find(ours, gt->name);
        int same = dt && dt->ndim == gt->ndim;
        for (int d = 0; same && d < gt->ndim; d++) if (dt->shape[d] != gt->shape[d]) same = 0;
        if (!dt) {
            if (!g->n_problems++) snprintf(g->problem, sizeof g->problem, "%s missing from our taps", gt->name);
        } else if (!same) {
            if (!g->n_problems++) snprintf(g->problem, sizeof g->problem, "%s: our shape differs from the golden shape", gt->name);
        } else if (add_pair(g, call, gt, dt)) {
            goto done;
        }
    }
    if (gs.n == 0) { fprintf(out, "no taps to compare\n"); goto done; }
    if (mode == TAPCMP_TEACHER && compute_excuses(&gs, golden, ours)) goto done;
    qsort(gs.g, (size_t)gs.n, sizeof *gs.g, cmp_group);
    for (int i = 0; i < gs.n; i++) {
        /* groups created only by excusal (no golden rows) are not judged */
        if (gs.g[i].n_rows == 0 && gs.g[i].n_problems == 0) continue;
        int gating = 0, ok = judge(&gs.g[i], mode, &gating, out);
        if (gating) { passed += ok; failed += !ok; }
    }
    fprintf(out, "%d passed, %d failed\n", passed, failed);
    rc = failed ? 1 : 0;
done:
    for (int i = 0; i < gs.n; i++) { free(gs.g[i].rows); free(gs.g[i].excused); }
    free(gs.g);
    return rc;
}
