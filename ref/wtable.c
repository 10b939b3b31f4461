/* wtable.c — weight lookups for the lineage layers (ref/wtable.h). */
#include <stdlib.h>
#include <string.h>
#include "wtable.h"

/* ---- in-memory table ---- */

typedef struct {
    char *name;
    int is_vec;
    dsv4_weight w;   /* is_vec = 0 */
    float *v;        /* is_vec = 1 */
    int64_t n;
} wtable_entry;

struct wtable {
    wtable_entry *e;
    size_t n, cap;
};

/* An empty table (no weight is copied in: 2-D entries are views). */
wtable *wtable_new(void)
{
    return dsv4_calloc(1, sizeof(wtable), "weight table");
}

/* Frees names and 1-D copies; never the viewed 2-D data. */
void wtable_free(wtable *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) { free(t->e[i].name); free(t->e[i].v); }
    free(t->e);
    free(t);
}

/* A malloc'd copy of s (NULL with an error on allocation failure). */
static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = dsv4_calloc(n, 1, "weight name");
    if (p) memcpy(p, s, n);
    return p;
}

/* A new zeroed entry named name; duplicates are an error. */
static wtable_entry *wtable_push(wtable *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->e[i].name, name) == 0) {
            dsv4_set_error("weight table: duplicate tensor %s", name);
            return NULL;
        }
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        wtable_entry *e = realloc(t->e, cap * sizeof *e);
        if (!e) { dsv4_set_error("weight table: out of memory"); return NULL; }
        t->e = e; t->cap = cap;
    }
    wtable_entry *x = &t->e[t->n];
    memset(x, 0, sizeof *x);
    x->name = dup_str(name);
    if (!x->name) return NULL;
    t->n++;
    return x;
}

/* A 2-D view under name (see wtable.h). */
int wtable_add_weight(wtable *t, const char *name, const dsv4_weight *w)
{
    wtable_entry *x = wtable_push(t, name);
    if (!x) return -1;
    x->w = *w;
    x->w.name = x->name;
    return 0;
}

/* A 1-D parameter v: [n], copied. */
int wtable_add_floats(wtable *t, const char *name, const float *v, int64_t n)
{
    wtable_entry *x = wtable_push(t, name);
    if (!x) return -1;
    x->is_vec = 1;
    x->n = n;
    x->v = dsv4_calloc((size_t)n, sizeof(float), name);
    if (!x->v) return -1;
    memcpy(x->v, v, (size_t)n * sizeof(float));
    return 0;
}

/* Linear search by name (tables hold a few dozen entries). */
static const wtable_entry *wtable_find(const wtable *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->e[i].name, name) == 0) return &t->e[i];
    return NULL;
}

/* dsv4_wlookup.weight over the table: checks presence and [rows, cols]. */
static int wtable_weight_cb(void *ctx, const char *name, int64_t rows, int64_t cols, dsv4_weight *out)
{
    const wtable_entry *x = wtable_find(ctx, name);
    if (!x || x->is_vec) return dsv4_set_error("weights: missing 2-D tensor %s", name);
    if (x->w.rows != rows || x->w.cols != cols)
        return dsv4_set_error("weights: %s has shape [%lld, %lld], expected [%lld, %lld]", name,
                              (long long)x->w.rows, (long long)x->w.cols, (long long)rows, (long long)cols);
    *out = x->w;
    return 0;
}

/* dsv4_wlookup.floats over the table: checks presence and n; returns a copy. */
static int wtable_floats_cb(void *ctx, const char *name, int64_t n, float **out)
{
    const wtable_entry *x = wtable_find(ctx, name);
    if (!x || !x->is_vec) return dsv4_set_error("weights: missing 1-D tensor %s", name);
    if (x->n != n)
        return dsv4_set_error("weights: %s has %lld values, expected %lld", name, (long long)x->n, (long long)n);
    *out = dsv4_calloc((size_t)n, sizeof(float), name);
    if (!*out) return -1;
    memcpy(*out, x->v, (size_t)n * sizeof(float));
    return 0;
}

/* The lookup interface of a table. */
dsv4_wlookup wtable_lookup(wtable *t)
{
    dsv4_wlookup l;
    l.ctx = t;
    l.weight = wtable_weight_cb;
    l.floats = wtable_floats_cb;
    return l;
}

/* ---- one safetensors file ---- */

/* dsv4_wlookup.weight over a safetensors file: F32/BF16 views, or F8_E4M3 with its
 * "<base>.scale" block scales [ceil(rows/128), ceil(cols/128)] (F8_E8M0 or F32). */
static int st_weight_cb(void *ctx, const char *name, int64_t rows, int64_t cols, dsv4_weight *out)
{
    const st_file *f = ctx;
    const st_tensor *t = st_find(f, name);
    if (!t) return dsv4_set_error("%s: missing tensor %s", st_path(f), name);
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
        return dsv4_set_error("%s: tensor %s must be [%lld, %lld]", st_path(f), name,
                              (long long)rows, (long long)cols);
    memset(out, 0, sizeof *out);
    out->dtype = t->dtype;
    out->rows = rows;
    out->cols = cols;
    out->data = t->data;
    out->name = t->name;
    if (t->dtype == DSV4_F8_E4M3) {
        char sname[512];
        size_t L = strlen(name);
        const char *suffix = ".weight";
        size_t ls = strlen(suffix);
        if (L > ls && strcmp(name + L - ls, suffix) == 0) L -= ls;
        if (L + 7 >= sizeof sname) return dsv4_set_error("%s: tensor name too long", name);
        memcpy(sname, name, L);
        memcpy(sname + L, ".scale", 7);
        const st_tensor *s = st_find(f, sname);
        int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
        if (!s) return dsv4_set_error("%s: FP8 tensor %s has no %s", st_path(f), name, sname);
        if (s->ndim != 2 || s->shape[0] != sr || s->shape[1] != sc ||
            (s->dtype != DSV4_F8_E8M0 && s->dtype != DSV4_F32))
            return dsv4_set_error("%s: %s must be F8_E8M0 or F32 [%lld, %lld]", st_path(f), sname,
                                  (long long)sr, (long long)sc);
        out->scale = s->data;
        out->scale_dtype = s->dtype;
    } else if (t->dtype != DSV4_F32 && t->dtype != DSV4_BF16) {
        return dsv4_set_error("%s: tensor %s has dtype %s (expected F32, BF16 or F8_E4M3)",
                              st_path(f), name, dsv4_dtype_name(t->dtype));
    }
    return 0;
}

/* dsv4_wlookup.floats over a safetensors file: an F32/BF16 tensor of n values, converted. */
static int st_floats_cb(void *ctx, const char *name, int64_t n, float **out)
{
    const st_file *f = ctx;
    const st_tensor *t = st_find(f, name);
    if (!t) return dsv4_set_error("%s: missing tensor %s", st_path(f), name);
    if (t->numel != n || (t->dtype != DSV4_F32 && t->dtype != DSV4_BF16))
        return dsv4_set_error("%s: tensor %s must be F32 or BF16 with %lld values", st_path(f), name,
                              (long long)n);
    *out = dsv4_calloc((size_t)n, sizeof(float), name);
    if (!*out) return -1;
    for (int64_t i = 0; i < n; i++) (*out)[i] = (float)st_get_f64(t, i);
    return 0;
}

/* The lookup interface of an opened safetensors file. */
dsv4_wlookup wlookup_st(const st_file *f)
{
    dsv4_wlookup l;
    l.ctx = (void *)f;
    l.weight = st_weight_cb;
    l.floats = st_floats_cb;
    return l;
}
