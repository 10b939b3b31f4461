/* taps.c — the tap sink: named copies of intermediate tensors, saved as safetensors
 * (spec/io.md [IO-TAP]; names in golden-format.md).
 *
 * The forward pass calls dsv4_tap(sink, dtype, ndim, shape, data, "taps.%d.layers.%d.attn",
 * k, i) at each point the spec names. A NULL sink makes that a no-op, so the forward pass
 * never tests for it. Names are kept in insertion order (that is the order count/name
 * report) and in a small open-addressing hash table for duplicate checks and lookups.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "safetensors.h"
#include "taps.h"

typedef struct {
    char *name;
    dsv4_dtype dtype;       /* the target dtype in the saved file */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    float *f;               /* float taps (F32 / BF16 / F64 targets) */
    int64_t *i;             /* integer taps (I64 / I32 targets) */
} tap_entry;

struct dsv4_taps {
    tap_entry *e;
    size_t n, cap;
    size_t *slot;           /* hash table of entry index + 1 (0 = empty), hcap a power of 2 */
    size_t hcap;
};

/* ---- sink ---- */

/* [IO-TAP] An empty sink (NULL with an error on OOM). */
dsv4_taps *dsv4_taps_new(void)
{
    return dsv4_calloc(1, sizeof(dsv4_taps), "tap sink");
}

/* [IO-TAP] Frees the sink and every copy; NULL is allowed. */
void dsv4_taps_free(dsv4_taps *t)
{
    if (!t) return;
    for (size_t k = 0; k < t->n; k++) { free(t->e[k].name); free(t->e[k].f); free(t->e[k].i); }
    free(t->e);
    free(t->slot);
    free(t);
}

/* [IO-TAP] Taps in tap order; out of range gives NULL / DSV4_DTYPE_COUNT. */
size_t dsv4_taps_count(const dsv4_taps *t) { return t ? t->n : 0; }
const char *dsv4_taps_name(const dsv4_taps *t, size_t i) { return t && i < t->n ? t->e[i].name : NULL; }
dsv4_dtype dsv4_taps_dtype(const dsv4_taps *t, size_t i) { return t && i < t->n ? t->e[i].dtype : DSV4_DTYPE_COUNT; }

/* ---- name table ---- */

/* FNV-1a 64-bit hash of a name. */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ULL; }
    return h;
}

/* Index of the entry called name, or -1. */
static long tap_lookup(const dsv4_taps *t, const char *name)
{
    if (!t || !name || t->hcap == 0) return -1;
    for (size_t h = (size_t)fnv1a(name) & (t->hcap - 1);; h = (h + 1) & (t->hcap - 1)) {
        size_t s = t->slot[h];
        if (s == 0) return -1;
        if (strcmp(t->e[s - 1].name, name) == 0) return (long)(s - 1);
    }
}

/* Puts entry index k into the table, growing it to keep the load factor <= 1/2. */
static int tap_index(dsv4_taps *t, size_t k)
{
    if (2 * (t->n + 1) > t->hcap) {
        size_t nc = t->hcap ? t->hcap * 2 : 64;
        size_t *ns = dsv4_calloc(nc, sizeof *ns, "tap name table");
        if (!ns) return -1;
        for (size_t j = 0; j < t->hcap; j++)
            if (t->slot[j]) {
                size_t h = (size_t)fnv1a(t->e[t->slot[j] - 1].name) & (nc - 1);
                while (ns[h]) h = (h + 1) & (nc - 1);
                ns[h] = t->slot[j];
            }
        free(t->slot);
        t->slot = ns;
        t->hcap = nc;
    }
    size_t h = (size_t)fnv1a(t->e[k].name) & (t->hcap - 1);
    while (t->slot[h]) h = (h + 1) & (t->hcap - 1);
    t->slot[h] = k + 1;
    return 0;
}

/* [IO-TAP] float -> the float of its bf16 rounding (round to nearest even; NaN stays NaN).
 * Private, so this file does not depend on numerics.c; same rule as bf16_from_float [NUM-2]. */
static float tap_round_bf16(float x)
{
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) b |= 0x00400000u;
    else b = (b + 0x7FFFu + ((b >> 16) & 1u));
    b &= 0xFFFF0000u;
    memcpy(&x, &b, 4);
    return x;
}

/* ---- tapping ---- */

/* [IO-TAP] Records a copy of data under the printf-formatted name.
 *   data: float[numel] for F32 / BF16 / F64 targets (BF16 keeps the bf16-rounded values),
 *         int64_t[numel] for I64 / I32 targets (I32 values must fit int32);
 *   shape: [ndim], 0 <= ndim <= ST_MAX_DIMS.
 * NULL sink: no-op, returns 0. A name tapped twice is an error (a forward pass that taps one
 * module twice in one call would silently overwrite a comparison). */
int dsv4_tap(dsv4_taps *t, dsv4_dtype dtype, int ndim, const int64_t *shape, const void *data,
             const char *fmt, ...)
{
    if (!t) return 0;
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len <= 0) { va_end(ap2); return dsv4_set_error("dsv4_tap: empty or invalid tap name"); }
    char *name = malloc((size_t)len + 1);
    if (!name) { va_end(ap2); return dsv4_set_error("dsv4_tap: out of memory"); }
    vsnprintf(name, (size_t)len + 1, fmt, ap2);
    va_end(ap2);

    int is_float = dtype == DSV4_F32 || dtype == DSV4_BF16 || dtype == DSV4_F64;
    int is_int = dtype == DSV4_I64 || dtype == DSV4_I32;
    int64_t numel = 1;
    const char *problem = NULL;
    if (!is_float && !is_int) problem = "target dtype must be F32, BF16, F64, I64 or I32";
    else if (ndim < 0 || ndim > ST_MAX_DIMS || (ndim > 0 && !shape)) problem = "bad number of dims";
    else
        for (int d = 0; d < ndim; d++) {
            if (shape[d] < 0) { problem = "negative dim"; break; }
            if (shape[d] == 0) { numel = 0; continue; }
            if (numel > INT64_MAX / 8 / shape[d]) { problem = "shape overflows"; break; }
            numel *= shape[d];
        }
    if (!problem && numel > 0 && !data) problem = "no data";
    if (!problem && tap_lookup(t, name) >= 0) problem = "tapped twice (names must be unique)";
    if (!problem && is_int && dtype == DSV4_I32)
        for (int64_t k = 0; k < numel; k++) {
            int64_t v = ((const int64_t *)data)[k];
            if (v < INT32_MIN || v > INT32_MAX) { problem = "value does not fit the I32 target"; break; }
        }
    if (problem) {
        dsv4_set_error("tap \"%.200s\": %s", name, problem);
        free(name);
        return -1;
    }
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 64;
        tap_entry *ne = realloc(t->e, nc * sizeof *ne);
        if (!ne) { dsv4_set_error("tap \"%.200s\": out of memory", name); free(name); return -1; }
        t->e = ne;
        t->cap = nc;
    }
    tap_entry *e = &t->e[t->n];
    memset(e, 0, sizeof *e);
    e->name = name;
    e->dtype = dtype;
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++) e->shape[d] = shape[d];
    e->numel = numel;
    if (is_float) {
        e->f = dsv4_calloc((size_t)numel, sizeof(float), name);
        if (!e->f) { free(name); return -1; }
        const float *x = data;
        for (int64_t k = 0; k < numel; k++) e->f[k] = dtype == DSV4_BF16 ? tap_round_bf16(x[k]) : x[k];
    } else {
        e->i = dsv4_calloc((size_t)numel, sizeof(int64_t), name);
        if (!e->i) { free(name); return -1; }
        if (numel) memcpy(e->i, data, (size_t)numel * sizeof(int64_t));
    }
    if (tap_index(t, t->n) != 0) { free(e->f); free(e->i); free(name); return -1; }
    t->n++;
    return 0;
}

/* ---- lookup ---- */

/* [IO-TAP] The stored float copy of a float tap, with its shape; NULL if absent or an integer tap. */
const float *dsv4_taps_find_f32(const dsv4_taps *t, const char *name, int *ndim, const int64_t **shape)
{
    long k = tap_lookup(t, name);
    if (k < 0 || !t->e[k].f) return NULL;
    if (ndim) *ndim = t->e[k].ndim;
    if (shape) *shape = t->e[k].shape;
    return t->e[k].f;
}

/* [IO-TAP] The stored int64 copy of an integer tap, with its shape; NULL if absent or a float tap. */
const int64_t *dsv4_taps_find_i64(const dsv4_taps *t, const char *name, int *ndim, const int64_t **shape)
{
    long k = tap_lookup(t, name);
    if (k < 0 || !t->e[k].i) return NULL;
    if (ndim) *ndim = t->e[k].ndim;
    if (shape) *shape = t->e[k].shape;
    return t->e[k].i;
}

/* ---- saving ---- */

/* [IO-TAP] Every tap into one safetensors file (st_writer: name-sorted, atomic). Float taps
 * are written in their target dtype (BF16 values are already bf16, so the conversion is
 * exact); integer taps as little-endian I64 / I32. */
int dsv4_taps_save(const dsv4_taps *t, const char *path, const char *const *meta_kv)
{
    if (!t) return dsv4_set_error("%s: no tap sink to save", path ? path : "(null)");
    if (!path) return dsv4_set_error("dsv4_taps_save: no path");
    st_writer *w = st_writer_new();
    if (!w) return -1;
    int rc = -1;
    unsigned char *buf = NULL;
    for (size_t k = 0; k < t->n; k++) {
        const tap_entry *e = &t->e[k];
        if (e->f) {
            if (st_writer_add_f32(w, e->name, e->dtype, e->ndim, e->shape, e->f) != 0) goto out;
            continue;
        }
        size_t es = dsv4_dtype_size(e->dtype);
        buf = dsv4_calloc((size_t)e->numel, es, e->name);
        if (!buf) goto out;
        for (int64_t j = 0; j < e->numel; j++) {
            uint64_t v = (uint64_t)e->i[j];
            for (size_t b = 0; b < es; b++) buf[(size_t)j * es + b] = (unsigned char)(v >> (8 * b));
        }
        if (st_writer_add(w, e->name, e->dtype, e->ndim, e->shape, buf, (size_t)e->numel * es) != 0) goto out;
        free(buf);
        buf = NULL;
    }
    if (meta_kv)
        for (size_t k = 0; meta_kv[k]; k += 2) {
            if (!meta_kv[k + 1]) { dsv4_set_error("%s: metadata key \"%.100s\" has no value", path, meta_kv[k]); goto out; }
            if (st_writer_meta(w, meta_kv[k], meta_kv[k + 1]) != 0) goto out;
        }
    size_t pl = strlen(path);
    int gz = pl >= 3 && strcmp(path + pl - 3, ".gz") == 0;
    rc = st_writer_save(w, path, gz ? 6 : 0);
out:
    free(buf);
    st_writer_free(w);
    return rc;
}
