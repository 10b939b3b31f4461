/* test_safetensors.c — the safetensors reader and writer (ref/safetensors.c, spec/io.md).
 *
 * Round trips of every dtype (plain and gzip, with metadata), the header layout other readers
 * rely on, element decoding of every dtype against hand-computed values, the float
 * conversions of st_writer_add_f32 at their rounding ties, atomic writes that leave nothing
 * behind on failure, alignment of tensor data, and every official golden file (plain and
 * gzip) with a few known shapes and values. Malformed files: test_malformed.c.
 */
#include <dirent.h>
#include <float.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>
#include "testutil.h"
#include "json.h"
#include "safetensors.h"

static char g_dir[256];

static void tmp_path(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", g_dir, name); }

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* Number of entries in g_dir other than . and .. */
static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

/* ---- round trip of every dtype ---- */

typedef struct { char name[32]; dsv4_dtype dtype; int ndim; int64_t shape[3]; unsigned char *data; size_t nbytes; } rt_tensor;

static void make_tensors(rt_tensor *t, int *count)
{
    test_rng rng = { 12345 };
    int n = 0;
    for (int d = 0; d < DSV4_DTYPE_COUNT; d++, n++) {
        rt_tensor *x = &t[n];
        snprintf(x->name, sizeof x->name, "t.%s", dsv4_dtype_name((dsv4_dtype)d));
        x->dtype = (dsv4_dtype)d;
        x->ndim = 2;
        x->shape[0] = 3;
        x->shape[1] = 5 + d;   /* distinct shapes: a mixed-up table is caught */
        x->nbytes = (size_t)(3 * (5 + d)) * dsv4_dtype_size(x->dtype);
        x->data = malloc(x->nbytes);
        for (size_t i = 0; i < x->nbytes; i++)
            x->data[i] = (unsigned char)(x->dtype == DSV4_BOOL ? test_rng_next(&rng) >> 63 : test_rng_next(&rng) >> 56);
    }
    /* a scalar and an empty tensor */
    snprintf(t[n].name, sizeof t[n].name, "scalar");
    t[n].dtype = DSV4_F64; t[n].ndim = 0; t[n].nbytes = 8;
    t[n].data = malloc(8);
    memcpy(t[n].data, "\x00\x00\x00\x00\x00\x00\xf0\x3f", 8);   /* 1.0 */
    n++;
    snprintf(t[n].name, sizeof t[n].name, "empty");
    t[n].dtype = DSV4_F32; t[n].ndim = 2; t[n].shape[0] = 0; t[n].shape[1] = 4; t[n].nbytes = 0;
    t[n].data = malloc(1);
    n++;
    *count = n;
}

static const char *const k_meta[][2] = {
    { "format", "dsv4-golden-1" },
    { "unicode", "\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
    { "escapes", "line1\nline2\t\"quoted\" back\\slash \x01" },
    { "config", "{\"dim\": 112, \"compress_ratios\": [0, 4, 128]}" },
    { "", "empty key" },
};

/* [IO-WRITE] -> [IO-READ]: bytes, dtypes, shapes, metadata survive; st_get is in offset order;
 * st_find finds every name; data is aligned to its element size. state: gzip level. */
static void test_round_trip(void **state)
{
    int level = (int)(intptr_t)*state;
    rt_tensor t[DSV4_DTYPE_COUNT + 2];
    int n;
    make_tensors(t, &n);
    st_writer *w = st_writer_new();
    assert_non_null(w);
    for (int i = n - 1; i >= 0; i--)   /* added in reverse: the writer must sort */
        if (st_writer_add(w, t[i].name, t[i].dtype, t[i].ndim, t[i].shape, t[i].data, t[i].nbytes) != 0)
            fail_msg("add %s: %s", t[i].name, dsv4_last_error());
    char *longv = malloc(20001);
    memset(longv, 'v', 20000);
    longv[20000] = 0;
    for (size_t i = 0; i < sizeof k_meta / sizeof k_meta[0]; i++) assert_int_equal(st_writer_meta(w, k_meta[i][0], k_meta[i][1]), 0);
    assert_int_equal(st_writer_meta(w, "long", longv), 0);
    assert_int_equal(st_writer_meta(w, "format", "replaced"), 0);   /* same key: replaces */
    char path[512];
    tmp_path(path, sizeof path, level ? "rt.safetensors.gz" : "rt.safetensors");
    if (st_writer_save(w, path, level) != 0) fail_msg("save: %s", dsv4_last_error());
    st_writer_free(w);

    size_t fn;
    unsigned char *raw = read_all(path, &fn);
    if (level) assert_true(raw[0] == 0x1F && raw[1] == 0x8B);
    else assert_false(raw[0] == 0x1F && raw[1] == 0x8B);
    st_file *f = st_open(path);
    if (!f) fail_msg("open: %s", dsv4_last_error());
    st_file *fm = st_open_mem(raw, fn, "memory copy");
    if (!fm) fail_msg("open_mem: %s", dsv4_last_error());
    free(raw);
    assert_string_equal(st_path(f), path);
    assert_int_equal(st_count(f), n);
    const st_file *both[2] = { f, fm };
    for (int k = 0; k < 2; k++) {
        const st_file *g = both[k];
        for (int i = 0; i < n; i++) {
            const st_tensor *x = st_find(g, t[i].name);
            if (!x) fail_msg("%s missing after the round trip", t[i].name);
            assert_string_equal(x->name, t[i].name);
            assert_int_equal(x->dtype, t[i].dtype);
            assert_int_equal(x->ndim, t[i].ndim);
            for (int d = 0; d < t[i].ndim; d++) assert_int_equal(x->shape[d], t[i].shape[d]);
            assert_int_equal(x->nbytes, t[i].nbytes);
            assert_int_equal(x->numel, (int64_t)(t[i].nbytes / dsv4_dtype_size(t[i].dtype)));
            if (t[i].nbytes && memcmp(x->data, t[i].data, t[i].nbytes) != 0)
                fail_msg("%s: bytes differ after the round trip; likely bug: data written in another order than the offsets say", t[i].name);
            if (x->nbytes && (uintptr_t)x->data % dsv4_dtype_size(x->dtype) != 0)
                fail_msg("%s: data not aligned to its element size", t[i].name);
        }
        assert_null(st_find(g, "t.F3"));
        assert_null(st_find(g, "__metadata__"));
        /* st_get: ascending data addresses */
        for (size_t i = 1; i < st_count(g); i++)
            assert_true((const unsigned char *)st_get(g, i - 1)->data + st_get(g, i - 1)->nbytes <=
                        (const unsigned char *)st_get(g, i)->data || st_get(g, i)->nbytes == 0 || st_get(g, i - 1)->nbytes == 0);
        assert_null(st_get(g, st_count(g)));
        assert_int_equal(st_meta_count(g), sizeof k_meta / sizeof k_meta[0] + 1);
        assert_string_equal(st_meta(g, "format"), "replaced");
        for (size_t i = 1; i < sizeof k_meta / sizeof k_meta[0]; i++) assert_string_equal(st_meta(g, k_meta[i][0]), k_meta[i][1]);
        assert_string_equal(st_meta(g, "long"), longv);
        assert_null(st_meta(g, "absent"));
        assert_non_null(st_meta_key(g, 0));
        assert_null(st_meta_key(g, 99));
    }
    assert_true(st_get_f64(st_find(f, "scalar"), 0) == 1.0);
    assert_true(isnan(st_get_f64(st_find(f, "scalar"), 1)));   /* out of range */
    st_close(f);
    st_close(fm);
    free(longv);
    for (int i = 0; i < n; i++) free(t[i].data);
    unlink(path);
}

/* [IO-WRITE] The header other readers rely on: length a multiple of 8 (space padding),
 * __metadata__ first, tensor names ascending, data contiguous from 0 to the end of the file
 * (the safetensors library refuses holes), every begin a multiple of its element size. */
static void test_header_layout(void **state)
{
    (void)state;
    st_writer *w = st_writer_new();
    int64_t s3 = 3, s5 = 5, s2 = 2;
    assert_int_equal(st_writer_add(w, "zz.u8", DSV4_U8, 1, &s3, "abc", 3), 0);
    assert_int_equal(st_writer_add(w, "aa.f64", DSV4_F64, 1, &s2, "0123456789abcdef", 16), 0);
    assert_int_equal(st_writer_add(w, "mm.bf16", DSV4_BF16, 1, &s5, "0123456789", 10), 0);
    assert_int_equal(st_writer_add(w, "bb.i32", DSV4_I32, 1, &s3, "0123456789ab", 12), 0);
    assert_int_equal(st_writer_meta(w, "k", "v"), 0);
    char path[512];
    tmp_path(path, sizeof path, "layout.safetensors");
    assert_int_equal(st_writer_save(w, path, 0), 0);
    st_writer_free(w);
    size_t n;
    unsigned char *b = read_all(path, &n);
    uint64_t N = 0;
    for (int i = 0; i < 8; i++) N |= (uint64_t)b[i] << (8 * i);
    if (N % 8 != 0) fail_msg("header length %llu is not a multiple of 8", (unsigned long long)N);
    assert_true(8 + N <= n);
    assert_int_equal(b[8], '{');
    char err[256];
    json_value *h = json_parse((const char *)b + 8, (size_t)N, err, sizeof err);
    if (!h) fail_msg("our own header does not parse: %s", err);
    assert_int_equal(h->n, 5);
    assert_string_equal(h->keys[0], "__metadata__");
    for (size_t i = 2; i < h->n; i++) assert_true(strcmp(h->keys[i - 1], h->keys[i]) < 0);
    /* contiguous cover of the data buffer, aligned begins */
    int64_t covered = 0, dsize = (int64_t)(n - 8 - N);
    for (size_t i = 1; i < h->n; i++) {
        const json_value *o = json_get(h->items[i], "data_offsets");
        dsv4_dtype dt;
        assert_int_equal(dsv4_dtype_parse(json_get(h->items[i], "dtype")->string, &dt), 0);
        int64_t beg = o->items[0]->integer, end = o->items[1]->integer;
        if (beg % (int64_t)dsv4_dtype_size(dt) != 0) fail_msg("%s begins at %lld, not aligned", h->keys[i], (long long)beg);
        covered += end - beg;
    }
    if (covered != dsize) fail_msg("tensors cover %lld of %lld data bytes: holes or extra bytes", (long long)covered, (long long)dsize);
    json_free(h);
    free(b);
    unlink(path);
}

/* ---- decoding ---- */

/* [IO-DEC] st_get_f64 / st_get_i64 of every dtype at hand-computed codes: subnormals, the
 * largest finite values, NaN codes, signed integers, e8m0 scales. */
static void test_decode_known_values(void **state)
{
    (void)state;
    static const struct { dsv4_dtype dt; const char *bytes; int nbytes; double want[4]; int n; } k[] = {
        { DSV4_BF16, "\x80\x3f\x80\xbf\x01\x00\x7f\x7f", 8, { 1.0, -1.0, 9.183549615799121e-41, 3.3895313892515355e38 }, 4 },
        { DSV4_F16, "\x00\x3c\x01\x00\xff\x7b\x00\x80", 8, { 1.0, 5.960464477539063e-08, 65504.0, -0.0 }, 4 },
        { DSV4_F8_E4M3, "\x7e\x01\x38\xc8", 4, { 448.0, 0.001953125, 1.0, -4.0 }, 4 },
        { DSV4_F8_E8M0, "\x7f\x00\x80\x75", 4, { 1.0, 5.877471754111438e-39, 2.0, 0.0009765625 }, 4 },
        { DSV4_F32, "\x00\x00\x80\x3f\x01\x00\x00\x00", 8, { 1.0, 1.401298464324817e-45 }, 2 },
        { DSV4_F64, "\x00\x00\x00\x00\x00\x00\xf0\xbf", 8, { -1.0 }, 1 },
        { DSV4_I64, "\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00\x00\x00\x00\x00\x20\x00", 16, { -1.0, 9007199254740993.0 }, 2 },
        { DSV4_I32, "\xfe\xff\xff\xff\x00\x00\x00\x80", 8, { -2.0, -2147483648.0 }, 2 },
        { DSV4_I8, "\xff\x7f\x80", 3, { -1.0, 127.0, -128.0 }, 3 },
        { DSV4_U8, "\xff\x00", 2, { 255.0, 0.0 }, 2 },
        { DSV4_BOOL, "\x01\x00", 2, { 1.0, 0.0 }, 2 },
    };
    for (size_t c = 0; c < sizeof k / sizeof k[0]; c++) {
        st_tensor t;
        memset(&t, 0, sizeof t);
        t.dtype = k[c].dt;
        t.ndim = 1;
        t.numel = k[c].n;
        t.shape[0] = k[c].n;
        t.nbytes = (size_t)k[c].nbytes;
        uint64_t aligned[4];
        memcpy(aligned, k[c].bytes, (size_t)k[c].nbytes);
        t.data = aligned;
        for (int i = 0; i < k[c].n; i++) {
            double got = st_get_f64(&t, i);
            if (got != k[c].want[i] || signbit(got) != signbit(k[c].want[i]))
                fail_msg("%s element %d decodes to %.17g, want %.17g; likely bug: exponent bias, subnormal or sign of this format",
                         dsv4_dtype_name(t.dtype), i, got, k[c].want[i]);
        }
    }
    /* NaN codes */
    static const struct { dsv4_dtype dt; const char *bytes; } nan_codes[] = {
        { DSV4_F8_E4M3, "\x7f" }, { DSV4_F8_E4M3, "\xff" }, { DSV4_F8_E8M0, "\xff" },
        { DSV4_BF16, "\xc0\x7f" }, { DSV4_F16, "\x01\x7c" },
    };
    for (size_t c = 0; c < sizeof nan_codes / sizeof nan_codes[0]; c++) {
        st_tensor t;
        memset(&t, 0, sizeof t);
        uint16_t a = 0;
        memcpy(&a, nan_codes[c].bytes, dsv4_dtype_size(nan_codes[c].dt));
        t.dtype = nan_codes[c].dt; t.numel = 1; t.data = &a; t.nbytes = dsv4_dtype_size(t.dtype);
        if (!isnan(st_get_f64(&t, 0))) fail_msg("%s NaN code %zu not decoded as NaN (e4m3fn has no Inf: S.1111.111 is NaN)", dsv4_dtype_name(t.dtype), c);
    }
    /* e4m3 0x78 = 256 (exponent 15 is a normal exponent in e4m3fn, not Inf) */
    {
        st_tensor t;
        memset(&t, 0, sizeof t);
        unsigned char c = 0x78;
        t.dtype = DSV4_F8_E4M3; t.numel = 1; t.data = &c; t.nbytes = 1;
        if (st_get_f64(&t, 0) != 256.0) fail_msg("e4m3 0x78 = %g, want 256; likely bug: e4m3 decoded with IEEE Inf/NaN exponent", st_get_f64(&t, 0));
    }
    /* st_get_i64: exact for integers beyond 2^53, truncation and saturation for floats */
    {
        st_tensor t;
        memset(&t, 0, sizeof t);
        int64_t v[2] = { INT64_MAX, 9007199254740993LL };
        t.dtype = DSV4_I64; t.numel = 2; t.data = v; t.nbytes = 16;
        assert_true(st_get_i64(&t, 0) == INT64_MAX);
        assert_true(st_get_i64(&t, 1) == 9007199254740993LL);
        assert_true(st_get_i64(&t, 2) == 0);
        float fv[4] = { -2.75f, 1e30f, NAN, -1e30f };
        t.dtype = DSV4_F32; t.numel = 4; t.data = fv; t.nbytes = 16;
        assert_true(st_get_i64(&t, 0) == -2);
        assert_true(st_get_i64(&t, 1) == INT64_MAX);
        assert_true(st_get_i64(&t, 2) == 0);
        assert_true(st_get_i64(&t, 3) == INT64_MIN);
    }
}

/* ---- float conversions of the writer ---- */

/* [IO-ENC] st_writer_add_f32 rounds to nearest even at the ties of BF16 and F16, keeps
 * subnormals, overflows to Inf, keeps NaN and -0. Read back through st_get_f64. */
static void test_add_f32_rounding(void **state)
{
    (void)state;
    static const struct { dsv4_dtype dt; float x; double want; const char *why; } k[] = {
        { DSV4_BF16, 1.0f + 0x1p-8f, 1.0, "half an ulp above 1 ties to even (down)" },
        { DSV4_BF16, 1.0f + 3 * 0x1p-8f, 1.0 + 0x1p-6, "1.5 ulp ties to even (up)" },
        { DSV4_BF16, 1.0f + 0x1p-8f + 0x1p-20f, 1.0 + 0x1p-7, "just above the tie rounds up" },
        { DSV4_BF16, -1.0f - 0x1p-8f, -1.0, "negative tie" },
        { DSV4_BF16, FLT_MAX, INFINITY, "overflow to Inf" },
        { DSV4_BF16, 0x1p-133f, 0x1p-133, "bf16 subnormal kept" },
        { DSV4_BF16, -0.0f, -0.0, "negative zero kept" },
        { DSV4_F16, 1.0f + 0x1p-11f, 1.0, "half an ulp above 1 ties to even (down)" },
        { DSV4_F16, 1.0f + 3 * 0x1p-11f, 1.0 + 0x1p-9, "1.5 ulp ties to even (up)" },
        { DSV4_F16, 65504.0f, 65504.0, "largest finite half" },
        { DSV4_F16, 65519.0f, 65504.0, "below the overflow tie" },
        { DSV4_F16, 65520.0f, INFINITY, "overflow tie rounds to Inf (odd 0x7bff)" },
        { DSV4_F16, 0x1p-24f, 0x1p-24, "smallest subnormal" },
        { DSV4_F16, 0x1p-25f, 0.0, "half the smallest subnormal ties to 0" },
        { DSV4_F16, 0x1.8p-25f, 0x1p-24, "above the tie rounds up to the smallest subnormal" },
        { DSV4_F16, 3 * 0x1p-25f, 0x1p-23, "subnormal 1.5 units ties to 2 units" },
        { DSV4_F16, 0x1p-14f - 0x1p-26f, 0x1p-14, "largest subnormal region rounds into the smallest normal" },
        { DSV4_F16, -3.0e-6f, -2.9802322387695312e-06, "negative subnormal" },
        { DSV4_F16, 1e-10f, 0.0, "underflow to 0" },
        { DSV4_F32, 0.1f, (double)0.1f, "F32 exact" },
        { DSV4_F64, 0.1f, (double)0.1f, "F64 holds the float exactly" },
    };
    size_t n = sizeof k / sizeof k[0];
    st_writer *w = st_writer_new();
    char name[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "c%02zu", i);
        int64_t one = 1;
        assert_int_equal(st_writer_add_f32(w, name, k[i].dt, 1, &one, &k[i].x), 0);
    }
    float nanv = NAN;
    int64_t one = 1;
    assert_int_equal(st_writer_add_f32(w, "nan.bf16", DSV4_BF16, 1, &one, &nanv), 0);
    assert_int_equal(st_writer_add_f32(w, "nan.f16", DSV4_F16, 1, &one, &nanv), 0);
    char path[512];
    tmp_path(path, sizeof path, "rounding.safetensors");
    assert_int_equal(st_writer_save(w, path, 0), 0);
    st_writer_free(w);
    st_file *f = st_open(path);
    if (!f) fail_msg("%s", dsv4_last_error());
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "c%02zu", i);
        const st_tensor *t = st_find(f, name);
        assert_non_null(t);
        assert_int_equal(t->dtype, k[i].dt);
        double got = st_get_f64(t, 0);
        if (got != k[i].want || signbit(got) != signbit(k[i].want))
            fail_msg("%s(%.9g) = %.17g, want %.17g (%s); likely bug: truncation or round-half-up instead of round to nearest even",
                     dsv4_dtype_name(k[i].dt), (double)k[i].x, got, k[i].want, k[i].why);
    }
    assert_true(isnan(st_get_f64(st_find(f, "nan.bf16"), 0)));
    assert_true(isnan(st_get_f64(st_find(f, "nan.f16"), 0)));
    st_close(f);
    unlink(path);
}

/* ---- writer errors and atomic writes ---- */

/* [IO-WRITE] Bad arguments are refused with a message naming the tensor. */
static void test_writer_rejects(void **state)
{
    (void)state;
    st_writer *w = st_writer_new();
    int64_t s[9] = { 2, 2, 1, 1, 1, 1, 1, 1, 1 }, neg = -1;
    float x[4] = { 0 };
    assert_int_equal(st_writer_add(w, "a", DSV4_F32, 2, s, x, 15), -1);
    assert_non_null(strstr(dsv4_last_error(), "\"a\""));
    assert_int_equal(st_writer_add(w, "b", DSV4_F32, 1, &neg, x, 0), -1);
    assert_int_equal(st_writer_add(w, "c", DSV4_U8, 9, s, x, 4), -1);
    assert_int_equal(st_writer_add(w, "", DSV4_F32, 2, s, x, 16), -1);
    assert_int_equal(st_writer_add(w, "__metadata__", DSV4_F32, 2, s, x, 16), -1);
    assert_int_equal(st_writer_add(w, "d", DSV4_DTYPE_COUNT, 2, s, x, 16), -1);
    assert_int_equal(st_writer_add_f32(w, "e", DSV4_I64, 2, s, x), -1);
    assert_int_equal(st_writer_add(w, "ok", DSV4_F32, 2, s, x, 16), 0);
    char path[512];
    tmp_path(path, sizeof path, "bad-level.safetensors");
    assert_int_equal(st_writer_save(w, path, 10), -1);
    assert_int_equal(access(path, F_OK), -1);
    st_writer_free(w);
}

/* [IO-WRITE] A failed save leaves nothing behind: no output, no temporary file, and an
 * existing file untouched; a successful save replaces the file whole, with the usual
 * permissions (not mkstemp's 0600). */
static void test_atomic_write(void **state)
{
    (void)state;
    mode_t old_umask = umask(022);
    char sub[512], path[600], bad[600];
    tmp_path(sub, sizeof sub, "atomic");
    assert_int_equal(mkdir(sub, 0755), 0);
    int64_t s2 = 2;
    float x[2] = { 1, 2 };

    /* 1. the target folder does not exist */
    st_writer *w = st_writer_new();
    assert_int_equal(st_writer_add_f32(w, "x", DSV4_F32, 1, &s2, x), 0);
    snprintf(bad, sizeof bad, "%s/no-such-dir/out.safetensors", sub);
    assert_int_equal(st_writer_save(w, bad, 0), -1);
    assert_non_null(strstr(dsv4_last_error(), bad));
    assert_int_equal(dir_entries(sub), 0);

    /* 2. the target is a directory: rename fails after the data was written */
    snprintf(path, sizeof path, "%s/isdir", sub);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(st_writer_save(w, path, 0), -1);
    assert_int_equal(st_writer_save(w, path, 6), -1);
    if (dir_entries(sub) != 1) fail_msg("a failed rename left a temporary file behind");
    rmdir(path);

    /* 3. a folder we may not write (only meaningful when not root: root ignores modes) */
    if (geteuid() != 0) {
        snprintf(path, sizeof path, "%s/ro", sub);
        assert_int_equal(mkdir(path, 0555), 0);
        snprintf(bad, sizeof bad, "%s/ro/out.safetensors", sub);
        assert_int_equal(st_writer_save(w, bad, 0), -1);
        assert_int_equal(dir_entries(path), 0);
        rmdir(path);
    } else {
        print_message("  (running as root: the read-only-folder case is covered by the missing-folder and rename cases)\n");
    }

    /* 4. success, then a failing save over it leaves it intact */
    snprintf(path, sizeof path, "%s/out.safetensors", sub);
    assert_int_equal(st_writer_save(w, path, 0), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    if ((sb.st_mode & 0777) != 0644) fail_msg("output mode %o, want 0644 under umask 022 (mkstemp's 0600 kept?)", (unsigned)(sb.st_mode & 0777));
    size_t n0;
    unsigned char *before = read_all(path, &n0);
    assert_int_equal(st_writer_add_f32(w, "x", DSV4_F32, 1, &s2, x), 0);   /* duplicate name */
    assert_int_equal(st_writer_save(w, path, 0), -1);
    assert_non_null(strstr(dsv4_last_error(), "duplicate tensor name"));
    size_t n1;
    unsigned char *after = read_all(path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    assert_int_equal(dir_entries(sub), 1);
    free(before);
    free(after);
    st_writer_free(w);

    /* 5. overwriting with new content replaces it whole (gzip this time) */
    w = st_writer_new();
    assert_int_equal(st_writer_add_f32(w, "y", DSV4_BF16, 1, &s2, x), 0);
    assert_int_equal(st_writer_save(w, path, 9), 0);
    st_writer_free(w);
    st_file *f = st_open(path);
    assert_non_null(f);
    assert_null(st_find(f, "x"));
    assert_non_null(st_find(f, "y"));
    st_close(f);
    assert_int_equal(dir_entries(sub), 1);
    unlink(path);
    rmdir(sub);
    umask(old_umask);
}

/* [IO-ALIGN] A header length that is not a multiple of 8 puts every tensor off its natural
 * alignment in the mapped file; the reader must hand out aligned copies with the right values. */
static void test_misaligned_copied(void **state)
{
    (void)state;
    const char *h = "{\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"q\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}}";
    size_t hl = strlen(h);
    if (hl % 4 == 0) hl++;   /* keep it odd-aligned: a trailing space */
    unsigned char buf[256];
    memset(buf, ' ', sizeof buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, h, strlen(h));
    memcpy(buf + 8 + hl, "\x00\x00\xc0\x3f\x00\x00\x20\xc0\x05\x00\x00\x00\x00\x00\x00\x00", 16);   /* 1.5, -2.5, 5 */
    char path[512];
    tmp_path(path, sizeof path, "misaligned.safetensors");
    FILE *fp = fopen(path, "wb");
    fwrite(buf, 1, 8 + hl + 16, fp);
    fclose(fp);
    st_file *f = st_open(path);
    if (!f) fail_msg("%s", dsv4_last_error());
    const st_tensor *t = st_find(f, "f"), *q = st_find(f, "q");
    assert_true((uintptr_t)t->data % 4 == 0);
    assert_true((uintptr_t)q->data % 8 == 0);
    assert_true(((const float *)t->data)[0] == 1.5f && ((const float *)t->data)[1] == -2.5f);
    assert_true(((const int64_t *)q->data)[0] == 5);
    st_close(f);
    unlink(path);
}

/* ---- the official golden files ---- */

static void expect_tensor(const st_file *f, const char *name, dsv4_dtype dt, int ndim, const int64_t *shape)
{
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: no tensor %s", st_path(f), name);
    if (t->dtype != dt) fail_msg("%s: %s is %s, want %s", st_path(f), name, dsv4_dtype_name(t->dtype), dsv4_dtype_name(dt));
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != shape[d]) fail_msg("%s: %s dim %d is %lld, want %lld", st_path(f), name, d, (long long)t->shape[d], (long long)shape[d]);
}

static int golden_path(char *buf, size_t len, const char *file)
{
    snprintf(buf, len, "%s/%s", official_golden_dir(), file);
    return access(buf, R_OK) == 0;
}

/* [IO-READ] Every official golden file opens (gzip inflated, the plain one mapped), carries
 * format dsv4-golden-1, and holds the known shapes and values (values read independently
 * with Python's struct module). */
static void test_official_golden(void **state)
{
    (void)state;
    char dir[512], path[1024];
    snprintf(dir, sizeof dir, "%s", official_golden_dir());
    DIR *d = opendir(dir);
    if (!d) { print_message("  official golden files not found at %s: skipped\n", dir); skip(); }
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".safetensors")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        st_file *f = st_open(path);
        if (!f) fail_msg("official golden file refused: %s", dsv4_last_error());
        assert_true(st_count(f) > 10);
        const char *fmt = st_meta(f, "format");
        if (!fmt || strcmp(fmt, "dsv4-golden-1") != 0) fail_msg("%s: format %s", path, fmt ? fmt : "(none)");
        assert_non_null(st_meta(f, "config"));
        st_close(f);
        files++;
    }
    closedir(d);
    if (files < 5) fail_msg("found %d golden files in %s, expected at least 5", files, dir);

    if (golden_path(path, sizeof path, "flash_bf16_prefill_decode.safetensors.gz")) {
        st_file *f = st_open(path);
        assert_non_null(f);
        expect_tensor(f, "inputs.tokens", DSV4_I64, 2, (const int64_t[]){ 1, 385 });
        expect_tensor(f, "taps.0.logits", DSV4_F32, 2, (const int64_t[]){ 1, 1000 });
        expect_tensor(f, "embed.weight", DSV4_BF16, 2, (const int64_t[]){ 1000, 112 });
        const st_tensor *t = st_find(f, "inputs.tokens");
        assert_true(st_get_i64(t, 0) == 196 && st_get_i64(t, 1) == 899 && st_get_i64(t, 2) == 551);
        t = st_find(f, "taps.0.logits");
        assert_true(st_get_f64(t, 0) == -1.437424659729004 && st_get_f64(t, 1) == 0.25281405448913574);
        t = st_find(f, "embed.weight");
        assert_true(st_get_f64(t, 0) == 0.58203125 && st_get_f64(t, 1) == -1.2578125);
        assert_int_equal(st_count(f), 3387);
        st_close(f);
    }
    if (golden_path(path, sizeof path, "fp8_fp4_weights.safetensors.gz")) {
        st_file *f = st_open(path);
        assert_non_null(f);
        expect_tensor(f, "layers.0.attn.wq_a.weight", DSV4_F8_E4M3, 2, (const int64_t[]){ 384, 256 });
        expect_tensor(f, "layers.0.attn.wq_a.scale", DSV4_F8_E8M0, 2, (const int64_t[]){ 3, 2 });
        expect_tensor(f, "inputs.tokens", DSV4_I64, 2, (const int64_t[]){ 1, 204 });
        const st_tensor *t = st_find(f, "layers.0.attn.wq_a.weight");   /* bytes 202 215 225 113 */
        assert_true(st_get_f64(t, 0) == -5.0 && st_get_f64(t, 1) == -15.0 && st_get_f64(t, 2) == -36.0 && st_get_f64(t, 3) == 144.0);
        t = st_find(f, "layers.0.attn.wq_a.scale");                      /* byte 117 */
        assert_true(st_get_f64(t, 0) == 0x1p-10);
        st_close(f);
    }
    if (golden_path(path, sizeof path, "pro_schedule_batch2.safetensors.gz")) {
        st_file *f = st_open(path);
        assert_non_null(f);
        expect_tensor(f, "inputs.tokens", DSV4_I64, 2, (const int64_t[]){ 2, 261 });
        expect_tensor(f, "taps.0.logits", DSV4_F32, 2, (const int64_t[]){ 2, 1000 });
        st_close(f);
    }
    if (golden_path(path, sizeof path, "short_boundaries_s4.safetensors")) {
        st_file *f = st_open(path);
        assert_non_null(f);
        expect_tensor(f, "inputs.tokens", DSV4_I64, 2, (const int64_t[]){ 1, 10 });
        st_close(f);
    }
    if (golden_path(path, sizeof path, "v32_mla_dsa_bf16.safetensors.gz")) {
        st_file *f = st_open(path);
        assert_non_null(f);
        expect_tensor(f, "layers.0.attn.wq_a.weight", DSV4_BF16, 2, (const int64_t[]){ 96, 160 });
        assert_non_null(st_find(f, "inputs.x"));
        st_close(f);
    }
}

/* [IO-GZ] The gzip path and the mmap path give the same tensors: inflate a golden file to a
 * plain file with zlib's own gzread and compare every tensor byte for byte. */
static void test_gzip_equals_plain(void **state)
{
    (void)state;
    char gzp[1024], plain[512];
    if (!golden_path(gzp, sizeof gzp, "v32_mla_dsa_bf16.safetensors.gz")) skip();
    tmp_path(plain, sizeof plain, "v32.safetensors");
    gzFile g = gzopen(gzp, "rb");
    assert_non_null(g);
    FILE *o = fopen(plain, "wb");
    unsigned char buf[65536];
    int k;
    while ((k = gzread(g, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)k, o);
    assert_int_equal(k, 0);
    gzclose(g);
    fclose(o);
    st_file *a = st_open(gzp), *b = st_open(plain);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(st_count(a), st_count(b));
    for (size_t i = 0; i < st_count(a); i++) {
        const st_tensor *x = st_get(a, i), *y = st_find(b, x->name);
        assert_non_null(y);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
    assert_int_equal(st_meta_count(a), st_meta_count(b));
    st_close(a);
    st_close(b);
    unlink(plain);
}

static int group_setup(void **state)
{
    (void)state;
    return make_temp_dir(g_dir, sizeof g_dir, "st");
}

static int group_teardown(void **state)
{
    (void)state;
    return rmdir(g_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        { "round_trip_plain", test_round_trip, NULL, NULL, (void *)(intptr_t)0 },
        { "round_trip_gzip", test_round_trip, NULL, NULL, (void *)(intptr_t)6 },
        cmocka_unit_test(test_header_layout),
        cmocka_unit_test(test_decode_known_values),
        cmocka_unit_test(test_add_f32_rounding),
        cmocka_unit_test(test_writer_rejects),
        cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_misaligned_copied),
        cmocka_unit_test(test_official_golden),
        cmocka_unit_test(test_gzip_equals_plain),
    };
    return cmocka_run_group_tests_name("safetensors", tests, group_setup, group_teardown);
}
