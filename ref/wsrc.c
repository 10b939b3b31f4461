/* wsrc.c — a weight source over one safetensors file or an official checkpoint directory
 * (spec/checkpoint.md [CKPT-1]..[CKPT-4]). Files are memory-mapped by st_open; nothing is
 * copied except by wsrc_floats / wsrc_ints. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "wsrc.h"
#include "json.h"

typedef struct {
    char *name;     /* tensor name */
    int file;       /* index into files[] */
} wsrc_entry;

struct dsv4_wsrc {
    char *where;         /* the file or directory, for messages */
    int n_files;
    st_file **files;
    char **file_names;   /* shard file names (directory sources) */
    int n_entries;       /* index.json weight_map, sorted by name (0 = search every file) */
    wsrc_entry *entries;
};

/* ---- opening ---- */

static char *dup_str(const char *s)
{
    char *p = malloc(strlen(s) + 1);
    if (p) strcpy(p, s);
    return p;
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static dsv4_wsrc *wsrc_alloc(const char *where)
{
    dsv4_wsrc *s = dsv4_calloc(1, sizeof *s, "weight source");
    if (!s) return NULL;
    s->where = dup_str(where);
    return s;
}

void wsrc_close(dsv4_wsrc *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_files; i++) {
        st_close(s->files[i]);
        if (s->file_names) free(s->file_names[i]);
    }
    free(s->files);
    free(s->file_names);
    for (int i = 0; i < s->n_entries; i++) free(s->entries[i].name);
    free(s->entries);
    free(s->where);
    free(s);
}

/* [CKPT-1] One safetensors file (a golden file, or one shard). */
dsv4_wsrc *wsrc_open_file(const char *path)
{
    st_file *f = st_open(path);
    if (!f) return NULL;
    dsv4_wsrc *s = wsrc_alloc(path);
    if (!s) { st_close(f); return NULL; }
    s->files = dsv4_calloc(1, sizeof *s->files, "weight source");
    if (!s->files) { st_close(f); wsrc_close(s); return NULL; }
    s->files[0] = f;
    s->n_files = 1;
    return s;
}

static int add_shard(dsv4_wsrc *s, const char *dir, const char *fname)
{
    for (int i = 0; i < s->n_files; i++)
        if (strcmp(s->file_names[i], fname) == 0) return i;
    char *p = path_join(dir, fname);
    if (!p) return dsv4_set_error("%s: out of memory", dir);
    struct stat sb;
    if (stat(p, &sb) != 0) {
        dsv4_set_error("%s: shard %s listed in model.safetensors.index.json is missing", dir, fname);
        free(p);
        return -1;
    }
    st_file *f = st_open(p);
    free(p);
    if (!f) return -1;
    st_file **nf = realloc(s->files, (size_t)(s->n_files + 1) * sizeof *nf);
    char **nn = realloc(s->file_names, (size_t)(s->n_files + 1) * sizeof *nn);
    if (nf) s->files = nf;
    if (nn) s->file_names = nn;
    if (!nf || !nn) { st_close(f); return dsv4_set_error("%s: out of memory", dir); }
    s->files[s->n_files] = f;
    s->file_names[s->n_files] = dup_str(fname);
    return s->n_files++;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const wsrc_entry *)a)->name, ((const wsrc_entry *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && n < (1L << 28)) {
            rewind(f);
            buf = malloc((size_t)n + 1);
            if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
            if (buf) { buf[n] = 0; *len = (size_t)n; }
        }
    }
    fclose(f);
    return buf;
}

/* [CKPT-2] model.safetensors.index.json: {"weight_map": {tensor: shard file}}; every shard
 * it names is opened (a missing one is an error naming it). */
static int open_indexed(dsv4_wsrc *s, const char *dir, const char *index_path)
{
    size_t len = 0;
    char *text = read_text(index_path, &len);
    if (!text) return dsv4_set_error("%s: cannot read", index_path);
    char err[256];
    json_value *v = json_parse(text, len, err, sizeof err);
    free(text);
    if (!v) return dsv4_set_error("%s: invalid JSON: %s", index_path, err);
    const json_value *wm = v->type == JSON_OBJECT ? json_get(v, "weight_map") : NULL;
    int rc = 0;
    if (!wm || wm->type != JSON_OBJECT) {
        rc = dsv4_set_error("%s: no \"weight_map\" object", index_path);
        goto done;
    }
    s->entries = dsv4_calloc(wm->n, sizeof *s->entries, index_path);
    if (!s->entries) { rc = -1; goto done; }
    for (size_t i = 0; i < wm->n; i++) {
        const json_value *fv = wm->items[i];
        if (fv->type != JSON_STRING || strchr(fv->string, '/') != NULL) {
            rc = dsv4_set_error("%s: weight_map[\"%s\"] must be a shard file name", index_path, wm->keys[i]);
            goto done;
        }
        int fi = add_shard(s, dir, fv->string);
        if (fi < 0) { rc = -1; goto done; }
        s->entries[s->n_entries].name = dup_str(wm->keys[i]);
        s->entries[s->n_entries].file = fi;
        s->n_entries++;
    }
    qsort(s->entries, (size_t)s->n_entries, sizeof *s->entries, cmp_entry);
done:
    json_free(v);
    return rc;
}

/* [CKPT-2] Without an index: every model*.safetensors of the directory, in name order. */
static int open_glob(dsv4_wsrc *s, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return dsv4_set_error("%s: cannot open directory", dir);
    char **names = NULL;
    int n = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "model", 5) != 0 || l < 12 || strcmp(e->d_name + l - 12, ".safetensors") != 0)
            continue;
        char **nn = realloc(names, (size_t)(n + 1) * sizeof *nn);
        if (!nn) { rc = dsv4_set_error("%s: out of memory", dir); break; }
        names = nn;
        names[n++] = dup_str(e->d_name);
    }
    closedir(d);
    if (rc == 0 && n == 0)
        rc = dsv4_set_error("%s: no model.safetensors.index.json and no model*.safetensors files", dir);
    if (rc == 0) qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; rc == 0 && i < n; i++)
        if (add_shard(s, dir, names[i]) < 0) rc = -1;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

dsv4_wsrc *wsrc_open_dir(const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        dsv4_set_error("%s: not a directory", dir);
        return NULL;
    }
    dsv4_wsrc *s = wsrc_alloc(dir);
    if (!s) return NULL;
    char *index = path_join(dir, "model.safetensors.index.json");
    int rc = (index && stat(index, &sb) == 0) ? open_indexed(s, dir, index) : open_glob(s, dir);
    free(index);
    if (rc) { wsrc_close(s); return NULL; }
    return s;
}

/* ---- lookup ---- */

const st_tensor *wsrc_find(const dsv4_wsrc *s, const char *name)
{
    if (s->n_entries > 0) {
        wsrc_entry key;
        key.name = (char *)name;
        key.file = 0;
        const wsrc_entry *e = bsearch(&key, s->entries, (size_t)s->n_entries, sizeof key, cmp_entry);
        return e ? st_find(s->files[e->file], name) : NULL;
    }
    for (int i = 0; i < s->n_files; i++) {
        const st_tensor *t = st_find(s->files[i], name);
        if (t) return t;
    }
    return NULL;
}

const char *wsrc_where(const dsv4_wsrc *s) { return s->where; }

const st_file *wsrc_file(const dsv4_wsrc *s)
{
    return (s->n_files == 1 && s->n_entries == 0) ? s->files[0] : NULL;
}

static int shape_is(const st_tensor *t, int64_t a, int64_t b)
{
    return t->ndim == 2 && t->shape[0] == a && t->shape[1] == b;
}

static void shape_text(const st_tensor *t, char *buf, size_t cap)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < t->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* [CKPT-3] A 2-D weight in any of its stored layouts, checked against [rows, cols]. */
int wsrc_weight(const dsv4_wsrc *s, const char *name, int64_t rows, int64_t cols, dsv4_weight *out)
{
    char sh[96], base[512], sname[520];
    const st_tensor *t = wsrc_find(s, name);
    memset(out, 0, sizeof *out);
    if (!t) return dsv4_set_error("%s: tensor %s is missing", s->where, name);
    shape_text(t, sh, sizeof sh);
    size_t bl = strlen(name);
    if (bl >= sizeof base) return dsv4_set_error("%s: tensor name too long", name);
    strcpy(base, name);
    if (bl > 7 && strcmp(base + bl - 7, ".weight") == 0) base[bl - 7] = 0;
    snprintf(sname, sizeof sname, "%s.scale", base);
    out->name = t->name;
    out->rows = rows;
    out->cols = cols;
    out->data = t->data;
    out->dtype = t->dtype;
    switch (t->dtype) {
    case DSV4_F32:
    case DSV4_BF16:
        if (!shape_is(t, rows, cols))
            return dsv4_set_error("%s: tensor %s has shape %s, expected [%lld, %lld]", s->where, name, sh,
                                  (long long)rows, (long long)cols);
        return 0;
    case DSV4_F8_E4M3: {
        if (!shape_is(t, rows, cols))
            return dsv4_set_error("%s: tensor %s (F8_E4M3) has shape %s, expected [%lld, %lld]", s->where,
                                  name, sh, (long long)rows, (long long)cols);
        const st_tensor *sc = wsrc_find(s, sname);
        if (!sc) return dsv4_set_error("%s: FP8 tensor %s has no block scale %s", s->where, name, sname);
        int64_t br = (rows + 127) / 128, bc = (cols + 127) / 128;
        if (sc->dtype != DSV4_F8_E8M0 && sc->dtype != DSV4_F32)
            return dsv4_set_error("%s: scale %s has dtype %s, expected F8_E8M0 or F32", s->where, sname,
                                  dsv4_dtype_name(sc->dtype));
        if (!shape_is(sc, br, bc)) {
            shape_text(sc, sh, sizeof sh);
            return dsv4_set_error("%s: scale %s has shape %s, expected [%lld, %lld] (128x128 blocks of [%lld, %lld])",
                                  s->where, sname, sh, (long long)br, (long long)bc, (long long)rows, (long long)cols);
        }
        out->scale = sc->data;
        out->scale_dtype = sc->dtype;
        return 0;
    }
    case DSV4_I8:
    case DSV4_U8: {
        if (cols % 32 != 0)
            return dsv4_set_error("%s: FP4 tensor %s: %lld input columns are not a multiple of 32", s->where,
                                  name, (long long)cols);
        if (!shape_is(t, rows, cols / 2))
            return dsv4_set_error("%s: FP4 tensor %s (packed %s) has shape %s, expected [%lld, %lld] (two e2m1 per byte of [%lld, %lld])",
                                  s->where, name, dsv4_dtype_name(t->dtype), sh, (long long)rows,
                                  (long long)(cols / 2), (long long)rows, (long long)cols);
        const st_tensor *sc = wsrc_find(s, sname);
        if (!sc) return dsv4_set_error("%s: FP4 tensor %s has no scale %s", s->where, name, sname);
        if (sc->dtype != DSV4_F8_E8M0)
            return dsv4_set_error("%s: scale %s has dtype %s, expected F8_E8M0", s->where, sname,
                                  dsv4_dtype_name(sc->dtype));
        if (!shape_is(sc, rows, cols / 32)) {
            shape_text(sc, sh, sizeof sh);
            return dsv4_set_error("%s: scale %s has shape %s, expected [%lld, %lld] (one per 32 of a row)",
                                  s->where, sname, sh, (long long)rows, (long long)(cols / 32));
        }
        out->fp4 = 1;
        out->scale = sc->data;
        out->scale_dtype = sc->dtype;
        return 0;
    }
    default:
        return dsv4_set_error("%s: tensor %s has dtype %s, expected F32, BF16, F8_E4M3 (+ scale) or packed FP4 I8/U8 (+ scale)",
                              s->where, name, dsv4_dtype_name(t->dtype));
    }
}

/* [CKPT-3] The tensor `name` with numel n and a dtype among `ok` (DSV4_DTYPE_COUNT-ended),
 * or NULL with an error naming it: the checks shared by wsrc_floats and wsrc_ints. */
static const st_tensor *find_numel(const dsv4_wsrc *s, const char *name, int64_t n,
                                   const dsv4_dtype *ok, const char *expected)
{
    const st_tensor *t = wsrc_find(s, name);
    if (!t) { dsv4_set_error("%s: tensor %s is missing", s->where, name); return NULL; }
    int good = 0;
    for (const dsv4_dtype *d = ok; *d != DSV4_DTYPE_COUNT; d++) good |= t->dtype == *d;
    if (!good) {
        dsv4_set_error("%s: tensor %s has dtype %s, expected %s", s->where, name,
                       dsv4_dtype_name(t->dtype), expected);
        return NULL;
    }
    if (t->numel != n) {
        char sh[96];
        shape_text(t, sh, sizeof sh);
        dsv4_set_error("%s: tensor %s has shape %s (%lld values), expected %lld values", s->where,
                       name, sh, (long long)t->numel, (long long)n);
        return NULL;
    }
    return t;
}

/* [CKPT-3] A float tensor of numel n (F32/BF16/F16/F64), copied into a new float array. */
int wsrc_floats(const dsv4_wsrc *s, const char *name, int64_t n, float **out)
{
    static const dsv4_dtype ok[] = { DSV4_F32, DSV4_BF16, DSV4_F16, DSV4_F64, DSV4_DTYPE_COUNT };
    *out = NULL;
    const st_tensor *t = find_numel(s, name, n, ok, "a float dtype");
    if (!t) return -1;
    float *y = dsv4_calloc((size_t)n, sizeof *y, name);
    if (!y) return -1;
    for (int64_t i = 0; i < n; i++) {
        y[i] = (float)st_get_f64(t, i);
        if (!isfinite(y[i])) {   /* norms, sinks, biases, ape: a non-finite value is bad input */
            const char *what = isnan(y[i]) ? "NaN" : "infinite";
            free(y);
            return dsv4_set_error("%s: tensor %s element %lld is %s", s->where, name, (long long)i, what);
        }
    }
    *out = y;
    return 0;
}

/* [CKPT-3] An integer tensor of numel n (I64/I32), copied into a new int64 array. */
int wsrc_ints(const dsv4_wsrc *s, const char *name, int64_t n, int64_t **out)
{
    static const dsv4_dtype ok[] = { DSV4_I64, DSV4_I32, DSV4_DTYPE_COUNT };
    *out = NULL;
    const st_tensor *t = find_numel(s, name, n, ok, "I64 or I32");
    if (!t) return -1;
    int64_t *y = dsv4_calloc((size_t)n, sizeof *y, name);
    if (!y) return -1;
    for (int64_t i = 0; i < n; i++) y[i] = st_get_i64(t, i);
    *out = y;
    return 0;
}
