/* safetensors.c — read and write safetensors files, plain or gzip (spec/io.md).
 *
 * File = 8-byte little-endian u64 N | N bytes of JSON header | data buffer.
 * Reading ([IO-READ]): plain files are memory-mapped read-only; a file that starts with the
 * gzip magic 1f 8b is inflated into memory with zlib ([IO-GZ]). The whole header is then
 * validated ([IO-VAL-1] .. [IO-VAL-9]) before a single tensor is handed out, so a caller never
 * sees an offset, shape or dtype that does not agree with the bytes.
 * Writing ([IO-WRITE]): name-sorted header padded with spaces to a multiple of 8, data
 * laid out so every tensor is aligned to its element size, written to a temporary file in
 * the target's folder, fsync'ed and renamed (never a half-written output).
 * All multi-byte values are read and written as explicit little-endian bytes, so the code
 * does not depend on the host's byte order.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>
#include "json.h"
#include "safetensors.h"

#define ST_MAX_HEADER   ((uint64_t)100 * 1024 * 1024)   /* [IO-VAL-2] */
#define ST_MAX_INFLATED ((uint64_t)8 << 30)             /* [IO-GZ]: 8 GiB */

struct st_file {
    char *path;
    unsigned char *base;      /* the whole (inflated) file */
    size_t size;
    int mapped;               /* base is an mmap (else malloc'd) */
    st_tensor *t;             /* [n], sorted by data offset */
    size_t n;
    const st_tensor **by_name;/* [n], sorted by name, for st_find */
    void **copies;            /* aligned copies of misaligned tensors ([IO-ALIGN]) */
    size_t ncopies;
    char **mkeys, **mvals;    /* [nmeta] */
    size_t nmeta;
};

/* ---- little-endian bytes ---- */

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t le64(const unsigned char *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }
static void put_le16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* ---- element decoders [IO-DEC] (private: the numerics.h functions live in numerics.c) ---- */

static double st_dec_f32(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static double st_dec_bf16(uint16_t h) { return st_dec_f32((uint32_t)h << 16); }

/* IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits; exponent 0 = subnormal
 * (m * 2^-24), exponent 31 = Inf / NaN. */
static double st_dec_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v;
    if (e == 0) v = ldexp((double)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp((double)(1024 + m), e - 25);
    return s ? -v : v;
}

/* FP8 e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; S.1111.111 = NaN;
 * exponent 0 = subnormal (m * 2^-9); max 448. */
static double st_dec_e4m3(uint8_t c)
{
    int s = c >> 7, e = (c >> 3) & 0xF, m = c & 7;
    double v;
    if (e == 15 && m == 7) return NAN;
    if (e == 0) v = ldexp((double)m, -9);
    else v = ldexp((double)(8 + m), e - 10);
    return s ? -v : v;
}

/* e8m0: an unsigned biased exponent, 2^(e-127); 0xFF = NaN. */
static double st_dec_e8m0(uint8_t e) { return e == 0xFF ? NAN : ldexp(1.0, (int)e - 127); }

/* [IO-DEC] Element i of t as a double. Integer dtypes convert exactly up to 2^53; BOOL is 0/1.
 * An index outside [0, numel) gives NaN. */
double st_get_f64(const st_tensor *t, int64_t i)
{
    if (!t || i < 0 || i >= t->numel) return NAN;
    const unsigned char *p = (const unsigned char *)t->data + (size_t)i * dsv4_dtype_size(t->dtype);
    switch (t->dtype) {
    case DSV4_F64: { uint64_t b = le64(p); double d; memcpy(&d, &b, 8); return d; }
    case DSV4_F32: return st_dec_f32(le32(p));
    case DSV4_F16: return st_dec_f16(le16(p));
    case DSV4_BF16: return st_dec_bf16(le16(p));
    case DSV4_F8_E4M3: return st_dec_e4m3(p[0]);
    case DSV4_F8_E8M0: return st_dec_e8m0(p[0]);
    case DSV4_I64: return (double)(int64_t)le64(p);
    case DSV4_I32: return (double)(int32_t)le32(p);
    case DSV4_I8: return (double)(int8_t)p[0];
    case DSV4_U8: return (double)p[0];
    case DSV4_BOOL: return p[0] ? 1.0 : 0.0;
    default: return NAN;
    }
}

/* [IO-DEC] Element i of t as int64. Integer dtypes are exact; float dtypes are truncated toward
 * zero, NaN gives 0 and values beyond the int64 range saturate. An index outside [0, numel)
 * gives 0. */
int64_t st_get_i64(const st_tensor *t, int64_t i)
{
    if (!t || i < 0 || i >= t->numel) return 0;
    const unsigned char *p = (const unsigned char *)t->data + (size_t)i * dsv4_dtype_size(t->dtype);
    switch (t->dtype) {
    case DSV4_I64: return (int64_t)le64(p);
    case DSV4_I32: return (int32_t)le32(p);
    case DSV4_I8: return (int8_t)p[0];
    case DSV4_U8: return p[0];
    case DSV4_BOOL: return p[0] ? 1 : 0;
    default: {
        double d = st_get_f64(t, i);
        if (d != d) return 0;
        if (d >= 9223372036854775807.0) return INT64_MAX;
        if (d <= -9223372036854775808.0) return INT64_MIN;
        return (int64_t)d;
    }
    }
}

/* ---- gzip [IO-GZ] ---- */

/* The gzip magic 1f 8b. */
static int is_gzip(const unsigned char *p, size_t n) { return n >= 2 && p[0] == 0x1F && p[1] == 0x8B; }

/* [IO-GZ] Inflates the gzip stream in[0..inlen) (one or more members) into a malloc'd buffer.
 * Refused: a corrupt stream (bad header, bad deflate data, CRC-32 or length mismatch), a
 * truncated stream, bytes after the last member that are not another member, and output
 * beyond ST_MAX_INFLATED. The initial buffer follows the trailer's size field (ISIZE) but
 * never trusts it beyond deflate's maximum ratio, so a forged trailer cannot force a huge
 * allocation. */
static int st_gunzip(const char *name, const unsigned char *in, size_t inlen,
                     unsigned char **out, size_t *outlen)
{
    uint64_t limit = ST_MAX_INFLATED;
    if (limit > (uint64_t)SIZE_MAX / 2) limit = (uint64_t)SIZE_MAX / 2;
    size_t cap = inlen >= 4 ? le32(in + inlen - 4) : 0;    /* ISIZE = size mod 2^32 */
    size_t ratio_cap = inlen < ((size_t)-1 - 65536) / 1100 ? inlen * 1100 + 65536 : (size_t)limit;
    if (cap > ratio_cap) cap = ratio_cap;
    if (cap < 65536) cap = 65536;
    if ((uint64_t)cap > limit) cap = (size_t)limit;
    unsigned char *buf = malloc(cap);
    if (!buf) return dsv4_set_error("%s: out of memory inflating the gzip stream (%zu bytes)", name, cap);

    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        free(buf);
        return dsv4_set_error("%s: cannot initialise zlib", name);
    }
    size_t consumed = 0, used = 0;
    const char *problem = NULL;
    for (;;) {
        if (used == cap) {
            if ((uint64_t)cap >= limit) { problem = "inflates to more than the 8 GiB limit"; break; }
            size_t ncap = (uint64_t)cap * 2 > limit ? (size_t)limit : cap * 2;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) { problem = "out of memory while inflating"; break; }
            buf = nb;
            cap = ncap;
        }
        size_t in_left = inlen - consumed, out_left = cap - used;
        zs.next_in = (unsigned char *)(in + consumed);   /* zlib's API is not const-correct */
        zs.avail_in = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
        zs.next_out = buf + used;
        zs.avail_out = out_left > UINT_MAX ? UINT_MAX : (uInt)out_left;
        uInt ai = zs.avail_in, ao = zs.avail_out;
        int ret = inflate(&zs, Z_NO_FLUSH);
        consumed += ai - zs.avail_in;
        used += ao - zs.avail_out;
        if (ret == Z_STREAM_END) {
            if (consumed == inlen) break;
            if (is_gzip(in + consumed, inlen - consumed)) { inflateReset(&zs); continue; }
            problem = "unexpected bytes after the end of the gzip stream";
            break;
        }
        if (ret == Z_OK) continue;
        if (ret == Z_BUF_ERROR && consumed == inlen) { problem = "truncated gzip stream (unexpected end of file)"; break; }
        if (ret == Z_BUF_ERROR && used == cap) continue;
        if (ret == Z_MEM_ERROR) { problem = "out of memory while inflating"; break; }
        problem = zs.msg ? zs.msg : "corrupt gzip stream";
        break;
    }
    inflateEnd(&zs);
    if (problem) {
        free(buf);
        return dsv4_set_error("%s: gzip: %s", name, problem);
    }
    *out = buf;
    *outlen = used;
    return 0;
}

/* ---- validation [IO-VAL] ---- */

/* Frees the tables built by st_parse (not the file bytes). */
static void st_free_parts(st_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free((char *)f->t[i].name);
    free(f->t);
    free(f->by_name);
    for (size_t i = 0; i < f->ncopies; i++) free(f->copies[i]);
    free(f->copies);
    for (size_t i = 0; i < f->nmeta; i++) { free(f->mkeys[i]); free(f->mvals[i]); }
    free(f->mkeys);
    free(f->mvals);
}

/* strdup is not C99. */
static char *st_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Writes "[a, b, c]" into buf (for messages). */
static const char *shape_str(const int64_t *shape, int ndim, char *buf, size_t len)
{
    size_t k = 0;
    k += (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < len) snprintf(buf + k, len - k, "]");
    return buf;
}

/* [IO-VAL-8] __metadata__ must be an object of string -> string. */
static int st_read_meta(st_file *f, const json_value *m)
{
    if (m->type != JSON_OBJECT) return dsv4_set_error("%s: __metadata__ is not a JSON object", f->path);
    f->mkeys = calloc(m->n ? m->n : 1, sizeof *f->mkeys);
    f->mvals = calloc(m->n ? m->n : 1, sizeof *f->mvals);
    if (!f->mkeys || !f->mvals) return dsv4_set_error("%s: out of memory reading __metadata__", f->path);
    for (size_t i = 0; i < m->n; i++) {
        if (m->items[i]->type != JSON_STRING)
            return dsv4_set_error("%s: __metadata__ value of \"%.200s\" is not a string (metadata must map strings to strings)",
                                  f->path, m->keys[i]);
        f->mkeys[i] = st_strdup(m->keys[i]);
        f->mvals[i] = st_strdup(m->items[i]->string);
        f->nmeta = i + 1;
        if (!f->mkeys[i] || !f->mvals[i]) return dsv4_set_error("%s: out of memory reading __metadata__", f->path);
    }
    return 0;
}

/* [IO-VAL-4..7] One tensor entry: exactly {dtype, shape, data_offsets} of the right types, a
 * known dtype, at most ST_MAX_DIMS non-negative dims whose element count and byte count fit
 * int64, and data_offsets [b, e] with b <= e <= data size and e - b = numel * dtype size. */
static int st_read_tensor(st_file *f, const char *name, const json_value *v,
                          const unsigned char *data, size_t dsize, st_tensor *t)
{
    const char *P = f->path;
    char sb[256];
    if (name[0] == 0) return dsv4_set_error("%s: a tensor has an empty name", P);
    if (v->type != JSON_OBJECT)
        return dsv4_set_error("%s: tensor \"%.200s\": entry is not a JSON object", P, name);
    for (size_t k = 0; k < v->n; k++)
        if (strcmp(v->keys[k], "dtype") != 0 && strcmp(v->keys[k], "shape") != 0 &&
            strcmp(v->keys[k], "data_offsets") != 0)
            return dsv4_set_error("%s: tensor \"%.200s\": unexpected field \"%.100s\" (allowed: dtype, shape, data_offsets)",
                                  P, name, v->keys[k]);
    const json_value *jd = json_get(v, "dtype"), *js = json_get(v, "shape"), *jo = json_get(v, "data_offsets");
    if (!jd) return dsv4_set_error("%s: tensor \"%.200s\": missing field \"dtype\"", P, name);
    if (!js) return dsv4_set_error("%s: tensor \"%.200s\": missing field \"shape\"", P, name);
    if (!jo) return dsv4_set_error("%s: tensor \"%.200s\": missing field \"data_offsets\"", P, name);

    /* dtype */
    if (jd->type != JSON_STRING) return dsv4_set_error("%s: tensor \"%.200s\": dtype is not a string", P, name);
    if (dsv4_dtype_parse(jd->string, &t->dtype) != 0)
        return dsv4_set_error("%s: tensor \"%.200s\": unknown dtype \"%.50s\" (known: F64 F32 F16 BF16 F8_E4M3 F8_E8M0 I64 I32 I8 U8 BOOL)",
                              P, name, jd->string);
    /* shape */
    if (js->type != JSON_ARRAY) return dsv4_set_error("%s: tensor \"%.200s\": shape is not an array", P, name);
    if (js->n > ST_MAX_DIMS)
        return dsv4_set_error("%s: tensor \"%.200s\": shape has %zu dims, more than the %d supported", P, name, js->n, ST_MAX_DIMS);
    t->ndim = (int)js->n;
    int any_zero = 0;
    for (size_t d = 0; d < js->n; d++) {
        int64_t x;
        if (json_int64(js->items[d], &x) != 0 || x < 0)
            return dsv4_set_error("%s: tensor \"%.200s\": shape[%zu] is not a non-negative integer", P, name, d);
        t->shape[d] = x;
        if (x == 0) any_zero = 1;
    }
    int64_t numel = 1;
    if (any_zero) numel = 0;
    else
        for (int d = 0; d < t->ndim; d++) {
            if (numel > INT64_MAX / t->shape[d])
                return dsv4_set_error("%s: tensor \"%.200s\": shape %s has more elements than int64 can count",
                                      P, name, shape_str(t->shape, t->ndim, sb, sizeof sb));
            numel *= t->shape[d];
        }
    int64_t esize = (int64_t)dsv4_dtype_size(t->dtype);
    if (numel > INT64_MAX / esize)
        return dsv4_set_error("%s: tensor \"%.200s\": %s x shape %s overflows the byte count",
                              P, name, dsv4_dtype_name(t->dtype), shape_str(t->shape, t->ndim, sb, sizeof sb));
    t->numel = numel;
    /* data_offsets */
    int64_t b, e;
    if (jo->type != JSON_ARRAY || jo->n != 2 || json_int64(jo->items[0], &b) != 0 ||
        json_int64(jo->items[1], &e) != 0 || b < 0 || e < 0)
        return dsv4_set_error("%s: tensor \"%.200s\": data_offsets is not a pair of non-negative integers [begin, end]", P, name);
    if (b > e)
        return dsv4_set_error("%s: tensor \"%.200s\": data_offsets [%lld, %lld] end before they begin",
                              P, name, (long long)b, (long long)e);
    if ((uint64_t)e > (uint64_t)dsize)
        return dsv4_set_error("%s: tensor \"%.200s\": data_offsets [%lld, %lld] run past the end of the data buffer (%zu bytes; file truncated?)",
                              P, name, (long long)b, (long long)e, dsize);
    if (e - b != numel * esize)
        return dsv4_set_error("%s: tensor \"%.200s\": %s x shape %s = %lld bytes but data_offsets [%lld, %lld] span %lld",
                              P, name, dsv4_dtype_name(t->dtype), shape_str(t->shape, t->ndim, sb, sizeof sb),
                              (long long)(numel * esize), (long long)b, (long long)e, (long long)(e - b));
    t->data = data + b;
    t->nbytes = (size_t)(e - b);
    t->name = st_strdup(name);
    if (!t->name) return dsv4_set_error("%s: out of memory", P);
    return 0;
}

/* qsort orders: by data address (then size, then name), and by name. */
static int cmp_offset(const void *a, const void *b)
{
    const st_tensor *x = a, *y = b;
    const unsigned char *px = x->data, *py = y->data;
    if (px != py) return px < py ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_name_ptr(const void *a, const void *b)
{
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* [IO-VAL-1..9] Validates f->base[0..size) and fills the tensor and metadata tables. */
static int st_parse(st_file *f)
{
    const char *P = f->path;
    char err[256];
    if (f->size < 8)
        return dsv4_set_error("%s: file is %zu bytes, shorter than the 8-byte header length (truncated or not a safetensors file)",
                              P, f->size);
    uint64_t N = le64(f->base);
    if (N > ST_MAX_HEADER)
        return dsv4_set_error("%s: header length %llu exceeds the %llu-byte limit (corrupt length field or not a safetensors file)",
                              P, (unsigned long long)N, (unsigned long long)ST_MAX_HEADER);
    if (N > (uint64_t)(f->size - 8))
        return dsv4_set_error("%s: header length %llu runs past the end of the file (%zu bytes follow the length field; truncated?)",
                              P, (unsigned long long)N, f->size - 8);
    json_value *h = json_parse((const char *)f->base + 8, (size_t)N, err, sizeof err);
    if (!h) return dsv4_set_error("%s: header JSON: %s", P, err);
    int rc = -1;
    if (h->type != JSON_OBJECT) { dsv4_set_error("%s: header is not a JSON object", P); goto done; }
    const unsigned char *data = f->base + 8 + N;
    size_t dsize = f->size - 8 - (size_t)N;
    f->t = calloc(h->n ? h->n : 1, sizeof *f->t);
    f->by_name = calloc(h->n ? h->n : 1, sizeof *f->by_name);
    if (!f->t || !f->by_name) { dsv4_set_error("%s: out of memory", P); goto done; }
    for (size_t i = 0; i < h->n; i++) {
        if (strcmp(h->keys[i], "__metadata__") == 0) {
            if (st_read_meta(f, h->items[i]) != 0) goto done;
            continue;
        }
        if (st_read_tensor(f, h->keys[i], h->items[i], data, dsize, &f->t[f->n]) != 0) goto done;
        f->n++;
    }
    /* [IO-VAL-9] no two non-empty byte ranges overlap */
    qsort(f->t, f->n, sizeof *f->t, cmp_offset);
    const st_tensor *reach = NULL;   /* the tensor whose range ends furthest so far */
    for (size_t i = 0; i < f->n; i++) {
        const st_tensor *t = &f->t[i];
        const unsigned char *tb = t->data;
        if (t->nbytes > 0 && reach && tb < (const unsigned char *)reach->data + reach->nbytes) {
            dsv4_set_error("%s: tensors \"%.150s\" [%zu, %zu] and \"%.150s\" [%zu, %zu] overlap", P,
                           reach->name, (size_t)((const unsigned char *)reach->data - data),
                           (size_t)((const unsigned char *)reach->data - data) + reach->nbytes,
                           t->name, (size_t)(tb - data), (size_t)(tb - data) + t->nbytes);
            goto done;
        }
        if (!reach || tb + t->nbytes > (const unsigned char *)reach->data + reach->nbytes) reach = t;
    }
    /* [IO-ALIGN] a tensor whose bytes are not aligned to its element size in memory (a header
     * length not a multiple of 8, or a writer that packs mixed dtypes) gets an aligned copy, so
     * callers may read t->data as float / int64_t / uint16_t arrays. */
    for (size_t i = 0; i < f->n; i++) {
        st_tensor *t = &f->t[i];
        size_t es = dsv4_dtype_size(t->dtype);
        if (t->nbytes == 0 || ((uintptr_t)t->data % es) == 0) continue;
        if (!f->copies) {
            f->copies = calloc(f->n, sizeof *f->copies);
            if (!f->copies) { dsv4_set_error("%s: out of memory", P); goto done; }
        }
        void *c = malloc(t->nbytes);
        if (!c) { dsv4_set_error("%s: tensor \"%.200s\": out of memory", P, t->name); goto done; }
        memcpy(c, t->data, t->nbytes);
        f->copies[f->ncopies++] = c;
        t->data = c;
    }
    for (size_t i = 0; i < f->n; i++) f->by_name[i] = &f->t[i];
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_name_ptr);
    rc = 0;
done:
    json_free(h);
    return rc;
}

/* ---- open / close [IO-READ] ---- */

/* An empty st_file that remembers `name` for messages. */
static st_file *st_new(const char *name)
{
    st_file *f = calloc(1, sizeof *f);
    if (!f) { dsv4_set_error("%s: out of memory", name); return NULL; }
    f->path = st_strdup(name);
    if (!f->path) { free(f); dsv4_set_error("%s: out of memory", name); return NULL; }
    return f;
}

/* [IO-READ] Opens and validates a file: plain files are mapped read-only, gzip files inflated. */
st_file *st_open(const char *path)
{
    if (!path) { dsv4_set_error("st_open: no path"); return NULL; }
    int fd = open(path, O_RDONLY);
    if (fd < 0) { dsv4_set_error("%s: cannot open: %s", path, strerror(errno)); return NULL; }
    struct stat sbuf;
    if (fstat(fd, &sbuf) != 0) {
        dsv4_set_error("%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(sbuf.st_mode)) { dsv4_set_error("%s: not a regular file", path); close(fd); return NULL; }
    if (sbuf.st_size == 0) {
        dsv4_set_error("%s: file is empty (a safetensors file starts with an 8-byte header length)", path);
        close(fd);
        return NULL;
    }
    if ((uint64_t)sbuf.st_size > (uint64_t)SIZE_MAX) {
        dsv4_set_error("%s: file too large to map", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)sbuf.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) { dsv4_set_error("%s: cannot map: %s", path, strerror(errno)); return NULL; }
    st_file *f = st_new(path);
    if (!f) { munmap(map, size); return NULL; }
    if (is_gzip(map, size)) {
        int rc = st_gunzip(path, map, size, &f->base, &f->size);
        munmap(map, size);
        if (rc != 0) { st_close(f); return NULL; }
    } else {
        f->base = map;
        f->size = size;
        f->mapped = 1;
    }
    if (st_parse(f) != 0) { st_close(f); return NULL; }
    return f;
}

/* [IO-READ] Same as st_open on an in-memory image (plain or gzip) of a file; `name` is used in
 * messages. The bytes are copied (or inflated), so buf may be freed afterwards. */
st_file *st_open_mem(const void *buf, size_t len, const char *name)
{
    if (!name) name = "(memory)";
    if (!buf && len) { dsv4_set_error("%s: no buffer", name); return NULL; }
    if (len == 0) { dsv4_set_error("%s: file is empty (a safetensors file starts with an 8-byte header length)", name); return NULL; }
    st_file *f = st_new(name);
    if (!f) return NULL;
    if (is_gzip(buf, len)) {
        if (st_gunzip(name, buf, len, &f->base, &f->size) != 0) { st_close(f); return NULL; }
    } else {
        f->base = malloc(len);
        if (!f->base) { st_close(f); dsv4_set_error("%s: out of memory", name); return NULL; }
        memcpy(f->base, buf, len);
        f->size = len;
    }
    if (st_parse(f) != 0) { st_close(f); return NULL; }
    return f;
}

/* [IO-READ] Unmaps or frees everything the st_file owns; NULL is allowed. */
void st_close(st_file *f)
{
    if (!f) return;
    st_free_parts(f);
    if (f->mapped) munmap(f->base, f->size);
    else free(f->base);
    free(f->path);
    free(f);
}

/* [IO-READ] Accessors: tensors in data-offset order, metadata in file order; an index out of
 * range gives NULL. */
const char *st_path(const st_file *f) { return f ? f->path : NULL; }
size_t st_count(const st_file *f) { return f ? f->n : 0; }
const st_tensor *st_get(const st_file *f, size_t i) { return f && i < f->n ? &f->t[i] : NULL; }

/* [IO-READ] Binary search in the name-sorted index. */
const st_tensor *st_find(const st_file *f, const char *name)
{
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

size_t st_meta_count(const st_file *f) { return f ? f->nmeta : 0; }
const char *st_meta_key(const st_file *f, size_t i) { return f && i < f->nmeta ? f->mkeys[i] : NULL; }
const char *st_meta(const st_file *f, const char *key)
{
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->nmeta; i++)
        if (strcmp(f->mkeys[i], key) == 0) return f->mvals[i];
    return NULL;
}

/* ---- writer [IO-WRITE] ---- */

typedef struct {
    char *name;
    dsv4_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    unsigned char *data;
    size_t nbytes;
    size_t offset;   /* assigned by save */
} st_wentry;

struct st_writer {
    st_wentry *e;
    size_t n, cap;
    char **mk, **mv;
    size_t nm, mcap;
};

/* [IO-WRITE] An empty writer (NULL with an error on OOM). */
st_writer *st_writer_new(void)
{
    st_writer *w = calloc(1, sizeof *w);
    if (!w) dsv4_set_error("st_writer: out of memory");
    return w;
}

/* [IO-WRITE] Frees the writer and its copies; NULL is allowed. */
void st_writer_free(st_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) { free(w->e[i].name); free(w->e[i].data); }
    free(w->e);
    for (size_t i = 0; i < w->nm; i++) { free(w->mk[i]); free(w->mv[i]); }
    free(w->mk);
    free(w->mv);
    free(w);
}

/* [IO-WRITE] Adds a copy of nbytes bytes of little-endian data. Checks: a non-empty name other
 * than "__metadata__", a known dtype, 0..ST_MAX_DIMS non-negative dims, nbytes equal to
 * numel * dtype size. Duplicate names are reported by st_writer_save. */
int st_writer_add(st_writer *w, const char *name, dsv4_dtype dtype, int ndim,
                  const int64_t *shape, const void *data, size_t nbytes)
{
    if (!w) return dsv4_set_error("st_writer_add: no writer");
    if (!name || !name[0]) return dsv4_set_error("st_writer_add: empty tensor name");
    if (strcmp(name, "__metadata__") == 0) return dsv4_set_error("st_writer_add: \"__metadata__\" is reserved");
    if ((unsigned)dtype >= DSV4_DTYPE_COUNT) return dsv4_set_error("st_writer_add: tensor \"%.200s\": unknown dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > ST_MAX_DIMS || (ndim > 0 && !shape))
        return dsv4_set_error("st_writer_add: tensor \"%.200s\": %d dims (0..%d allowed)", name, ndim, ST_MAX_DIMS);
    uint64_t numel = 1;
    int any_zero = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return dsv4_set_error("st_writer_add: tensor \"%.200s\": negative dim %d", name, d);
        if (shape[d] == 0) any_zero = 1;
    }
    for (int d = 0; d < ndim && !any_zero; d++) {
        if (numel > (uint64_t)INT64_MAX / (uint64_t)shape[d])
            return dsv4_set_error("st_writer_add: tensor \"%.200s\": shape overflows", name);
        numel *= (uint64_t)shape[d];
    }
    if (any_zero) numel = 0;
    size_t es = dsv4_dtype_size(dtype);
    if (numel > (uint64_t)SIZE_MAX / es || numel * es != (uint64_t)nbytes)
        return dsv4_set_error("st_writer_add: tensor \"%.200s\": %zu bytes given, %s x shape needs %llu",
                              name, nbytes, dsv4_dtype_name(dtype), (unsigned long long)(numel * es));
    if (nbytes && !data) return dsv4_set_error("st_writer_add: tensor \"%.200s\": no data", name);
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 16;
        st_wentry *ne = realloc(w->e, nc * sizeof *ne);
        if (!ne) return dsv4_set_error("st_writer_add: out of memory");
        w->e = ne;
        w->cap = nc;
    }
    st_wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = st_strdup(name);
    e->data = malloc(nbytes ? nbytes : 1);
    if (!e->name || !e->data) {
        free(e->name);
        free(e->data);
        return dsv4_set_error("st_writer_add: tensor \"%.200s\": out of memory (%zu bytes)", name, nbytes);
    }
    if (nbytes) memcpy(e->data, data, nbytes);
    e->dtype = dtype;
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++) e->shape[d] = shape[d];
    e->nbytes = nbytes;
    w->n++;
    return 0;
}

/* [IO-ENC] float -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN, overflow -> Inf. */
static uint16_t st_enc_bf16(float x)
{
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((b >> 16) | 0x40);
    return (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

/* [IO-ENC] float -> IEEE binary16 bits, round to nearest even, with subnormals; overflow -> Inf;
 * NaN stays a quiet NaN. */
static uint16_t st_enc_f16(float x)
{
    uint32_t b;
    memcpy(&b, &x, 4);
    uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
    uint32_t e = (b >> 23) & 0xFFu, m = b & 0x7FFFFFu;
    if (e == 0xFF) return (uint16_t)(sign | 0x7C00u | (m ? 0x200u | (m >> 13) : 0u));
    int32_t E = (int32_t)e - 127 + 15;   /* binary16 biased exponent */
    if (E >= 31) return (uint16_t)(sign | 0x7C00u);
    if (E <= 0) {
        /* subnormal result: value / 2^-24 = M * 2^(E - 14), M the 24-bit significand */
        if (E < -10) return sign;
        uint32_t M = m | 0x800000u;
        int shift = 14 - E;
        uint32_t r = M >> shift, rem = M & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((uint32_t)E << 10) | (m >> 13), rem = m & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;   /* a carry rounds up into Inf correctly */
    return (uint16_t)(sign | r);
}

/* [IO-ENC] Adds float data converted to dtype: F32 (exact), F64 (exact), BF16 and F16 (round
 * to nearest even). numel is taken from the shape. */
int st_writer_add_f32(st_writer *w, const char *name, dsv4_dtype dtype, int ndim,
                      const int64_t *shape, const float *data)
{
    if (dtype != DSV4_F32 && dtype != DSV4_F64 && dtype != DSV4_BF16 && dtype != DSV4_F16)
        return dsv4_set_error("st_writer_add_f32: tensor \"%.200s\": dtype %s is not F32, F64, BF16 or F16",
                              name ? name : "", dsv4_dtype_name(dtype));
    if (ndim < 0 || ndim > ST_MAX_DIMS || (ndim > 0 && !shape))
        return dsv4_set_error("st_writer_add_f32: tensor \"%.200s\": %d dims (0..%d allowed)", name ? name : "", ndim, ST_MAX_DIMS);
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return dsv4_set_error("st_writer_add_f32: tensor \"%.200s\": negative dim %d", name ? name : "", d);
        if (shape[d] == 0) { numel = 0; break; }
        if (numel > INT64_MAX / shape[d] / 8)
            return dsv4_set_error("st_writer_add_f32: tensor \"%.200s\": shape overflows", name ? name : "");
        numel *= shape[d];
    }
    if (numel && !data) return dsv4_set_error("st_writer_add_f32: tensor \"%.200s\": no data", name ? name : "");
    size_t es = dsv4_dtype_size(dtype);
    if ((uint64_t)numel > (uint64_t)SIZE_MAX / es) return dsv4_set_error("st_writer_add_f32: tensor too large");
    unsigned char *buf = malloc((size_t)numel * es + 1);
    if (!buf) return dsv4_set_error("st_writer_add_f32: tensor \"%.200s\": out of memory", name ? name : "");
    for (int64_t i = 0; i < numel; i++) {
        unsigned char *p = buf + (size_t)i * es;
        float x = data[i];
        if (dtype == DSV4_F32) { uint32_t b; memcpy(&b, &x, 4); put_le32(p, b); }
        else if (dtype == DSV4_F64) { double d = x; uint64_t b; memcpy(&b, &d, 8); put_le64(p, b); }
        else if (dtype == DSV4_BF16) put_le16(p, st_enc_bf16(x));
        else put_le16(p, st_enc_f16(x));
    }
    int rc = st_writer_add(w, name, dtype, ndim, shape, buf, (size_t)numel * es);
    free(buf);
    return rc;
}

/* [IO-WRITE] Sets a metadata string; a second value for the same key replaces the first. */
int st_writer_meta(st_writer *w, const char *key, const char *value)
{
    if (!w || !key || !value) return dsv4_set_error("st_writer_meta: missing writer, key or value");
    for (size_t i = 0; i < w->nm; i++)
        if (strcmp(w->mk[i], key) == 0) {
            char *v = st_strdup(value);
            if (!v) return dsv4_set_error("st_writer_meta: out of memory");
            free(w->mv[i]);
            w->mv[i] = v;
            return 0;
        }
    if (w->nm == w->mcap) {
        size_t nc = w->mcap ? w->mcap * 2 : 8;
        char **nk = realloc(w->mk, nc * sizeof *nk);
        if (!nk) return dsv4_set_error("st_writer_meta: out of memory");
        w->mk = nk;
        char **nv = realloc(w->mv, nc * sizeof *nv);
        if (!nv) return dsv4_set_error("st_writer_meta: out of memory");
        w->mv = nv;
        w->mcap = nc;
    }
    w->mk[w->nm] = st_strdup(key);
    w->mv[w->nm] = st_strdup(value);
    if (!w->mk[w->nm] || !w->mv[w->nm]) {
        free(w->mk[w->nm]);
        free(w->mv[w->nm]);
        return dsv4_set_error("st_writer_meta: out of memory");
    }
    w->nm++;
    return 0;
}

/* A growing string for the header. */
typedef struct { char *s; size_t n, cap; int oom; } sbuf;

static void sb_add(sbuf *b, const char *s)
{
    size_t k = strlen(s);
    if (b->oom) return;
    if (b->n + k + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + k + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) { b->oom = 1; return; }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, k + 1);
    b->n += k;
}

static void sb_quote(sbuf *b, const char *s)
{
    char *q = json_quote(s);
    if (!q) { b->oom = 1; return; }
    sb_add(b, q);
    free(q);
}

static int cmp_went_name(const void *a, const void *b)
{
    return strcmp((*(const st_wentry *const *)a)->name, (*(const st_wentry *const *)b)->name);
}

/* Data layout order: element size descending, then name, so every tensor starts at an offset
 * that is a multiple of its element size (the header is padded to a multiple of 8). */
static int cmp_went_layout(const void *a, const void *b)
{
    const st_wentry *x = *(const st_wentry *const *)a, *y = *(const st_wentry *const *)b;
    size_t sx = dsv4_dtype_size(x->dtype), sy = dsv4_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Writes all n bytes to fd (retrying short writes and EINTR). */
static int write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t k = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Writes n bytes through gzip in pieces gzwrite's unsigned length can take. */
static int gz_write_all(gzFile g, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        unsigned k = n > ((size_t)1 << 30) ? (1u << 30) : (unsigned)n;
        if (gzwrite(g, p, k) != (int)k) return -1;
        p += k;
        n -= k;
    }
    return 0;
}

/* [IO-WRITE] Writes the file atomically: header (tensors sorted by name, __metadata__ first
 * with keys sorted, padded with spaces to a multiple of 8), then the data (element size
 * descending, then name), into "<path>.tmp.XXXXXX" in the same folder, optionally through
 * gzip at gzip_level (1..9), fsync, rename over path. On any failure the temporary file is
 * removed and path is left as it was. */
int st_writer_save(st_writer *w, const char *path, int gzip_level)
{
    if (!w || !path || !path[0]) return dsv4_set_error("st_writer_save: missing writer or path");
    if (gzip_level < 0 || gzip_level > 9)
        return dsv4_set_error("%s: gzip level %d out of range (0 = plain, 1..9)", path, gzip_level);
    int rc = -1, fd = -1;
    char *tmp = NULL;
    sbuf h = { NULL, 0, 0, 0 };
    const st_wentry **byname = calloc(w->n ? w->n : 1, sizeof *byname);
    const st_wentry **layout = calloc(w->n ? w->n : 1, sizeof *layout);
    char **mkeys = calloc(w->nm ? w->nm : 1, sizeof *mkeys);
    if (!byname || !layout || !mkeys) { dsv4_set_error("%s: out of memory", path); goto out; }
    for (size_t i = 0; i < w->n; i++) byname[i] = layout[i] = &w->e[i];
    qsort(byname, w->n, sizeof *byname, cmp_went_name);
    for (size_t i = 1; i < w->n; i++)
        if (strcmp(byname[i - 1]->name, byname[i]->name) == 0) {
            dsv4_set_error("%s: duplicate tensor name \"%.200s\"", path, byname[i]->name);
            goto out;
        }
    qsort(layout, w->n, sizeof *layout, cmp_went_layout);
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        ((st_wentry *)layout[i])->offset = off;
        off += layout[i]->nbytes;
    }

    /* header */
    char num[64];
    sb_add(&h, "{");
    int first = 1;
    if (w->nm) {
        for (size_t i = 0; i < w->nm; i++) mkeys[i] = w->mk[i];
        qsort(mkeys, w->nm, sizeof *mkeys, cmp_str_ptr);
        sb_add(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nm; i++) {
            size_t j = 0;
            while (w->mk[j] != mkeys[i]) j++;
            if (i) sb_add(&h, ",");
            sb_quote(&h, w->mk[j]);
            sb_add(&h, ":");
            sb_quote(&h, w->mv[j]);
        }
        sb_add(&h, "}");
        first = 0;
    }
    for (size_t i = 0; i < w->n; i++) {
        const st_wentry *e = byname[i];
        if (!first) sb_add(&h, ",");
        first = 0;
        sb_quote(&h, e->name);
        sb_add(&h, ":{\"dtype\":\"");
        sb_add(&h, dsv4_dtype_name(e->dtype));
        sb_add(&h, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)e->shape[d]);
            sb_add(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", e->offset, e->offset + e->nbytes);
        sb_add(&h, num);
    }
    sb_add(&h, "}");
    while (!h.oom && h.n % 8 != 0) sb_add(&h, " ");
    if (h.oom) { dsv4_set_error("%s: out of memory building the header", path); goto out; }
    unsigned char len8[8];
    put_le64(len8, (uint64_t)h.n);

    /* temporary file next to the target */
    size_t pl = strlen(path);
    tmp = malloc(pl + 16);
    if (!tmp) { dsv4_set_error("%s: out of memory", path); goto out; }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp.XXXXXX", 12);
    fd = mkstemp(tmp);
    if (fd < 0) {
        dsv4_set_error("%s: cannot create a temporary file in its folder: %s", path, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto out;
    }
    {   /* mkstemp creates 0600; give the file the usual permissions */
        mode_t um = umask(0);
        umask(um);
        if (fchmod(fd, 0666 & ~um) != 0) { dsv4_set_error("%s: chmod: %s", tmp, strerror(errno)); goto out; }
    }
    if (gzip_level == 0) {
        if (write_all(fd, len8, 8) != 0 || write_all(fd, h.s, h.n) != 0) goto write_failed;
        for (size_t i = 0; i < w->n; i++)
            if (write_all(fd, layout[i]->data, layout[i]->nbytes) != 0) goto write_failed;
    } else {
        int gfd = dup(fd);
        if (gfd < 0) goto write_failed;
        char mode[8];
        snprintf(mode, sizeof mode, "wb%d", gzip_level);
        gzFile g = gzdopen(gfd, mode);
        if (!g) { close(gfd); goto write_failed; }
        int bad = gz_write_all(g, len8, 8) != 0 || gz_write_all(g, h.s, h.n) != 0;
        for (size_t i = 0; i < w->n && !bad; i++)
            if (gz_write_all(g, layout[i]->data, layout[i]->nbytes) != 0) bad = 1;
        if (gzclose(g) != Z_OK) bad = 1;   /* flushes the stream and closes gfd */
        if (bad) goto write_failed;
    }
    if (fsync(fd) != 0) goto write_failed;
    if (close(fd) != 0) { fd = -1; goto write_failed; }
    fd = -1;
    if (rename(tmp, path) != 0) {
        dsv4_set_error("%s: cannot rename the temporary file into place: %s", path, strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL;
    {   /* make the rename durable (best effort) */
        char *dir = st_strdup(path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            if (slash) { if (slash == dir) slash[1] = 0; else *slash = 0; }
            int dfd = open(slash ? dir : ".", O_RDONLY);
            if (dfd >= 0) { (void)fsync(dfd); close(dfd); }
            free(dir);
        }
    }
    rc = 0;
    goto out;
write_failed:
    dsv4_set_error("%s: write failed: %s", path, errno ? strerror(errno) : "I/O error");
out:
    if (fd >= 0) close(fd);
    if (tmp) { unlink(tmp); free(tmp); }
    free(h.s);
    free(byname);
    free(layout);
    free(mkeys);
    return rc;
}
