/* test_malformed.c — every malformed safetensors file must be refused with one clear line,
 * by the library (st_open) and by the CLI (`dsv4ref info FILE` exits exactly 2, one line on
 * stderr, no crash, no sanitizer report). spec/io.md [IO-VAL-1..9], [IO-GZ].
 *
 * The files are GENERATED into a temporary folder: a small valid file (two tensors, F32 and
 * I64) is damaged in one way per case — truncated at each section, lengths and offsets that
 * run past the end, overlapping ranges, dtype x shape != bytes, bad shapes, unknown dtypes,
 * broken JSON, invalid UTF-8, duplicate names, bad metadata, broken gzip, random bytes.
 * Each case also names the substring its message must contain, so a file refused for the
 * wrong reason (e.g. a JSON error hiding a missing offset check) fails the test.
 * The CLI is $DSV4REF_BIN (set by tools/run-tests.sh), default build/ref/dsv4ref.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include "testutil.h"
#include "safetensors.h"

/* the valid base file: a = F32 [2, 2] at [0, 16), b = I64 [3] at [16, 40) */
#define BASE_HDR "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}," \
                 "\"b\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[16,40]}}"

enum {
    RAW = 0,          /* header text + datalen bytes of data */
    EMPTY, TRUNC3, TRUNC7, TRUNC_HEADER, TRUNC_DATA1, TRUNC_DATA_HALF,
    HLEN_PAST_END, HLEN_ABSURD, RANDOM_BYTES, RANDOM_AFTER_LEN, NUL_PADDING,
    GZ_BAD_CRC, GZ_TRUNCATED, GZ_TRAILING, GZ_GARBAGE, GZ_OF_TRUNCATED
};

typedef struct {
    const char *name;     /* the case, also the file name */
    const char *expect;   /* a substring the error message must contain */
    int kind;
    const char *header;   /* RAW: the header JSON */
    int datalen;          /* RAW: bytes of data after the header */
    const char *bug;      /* the likely bug when the case is accepted */
} mcase;

static const mcase k_cases[] = {
    { "empty_file", "empty", EMPTY, NULL, 0, "no size check before reading the length" },
    { "trunc_in_length_3", "shorter than the 8-byte", TRUNC3, NULL, 0, "reads the 8-byte length past the end" },
    { "trunc_in_length_7", "shorter than the 8-byte", TRUNC7, NULL, 0, "reads the 8-byte length past the end" },
    { "trunc_in_header", "runs past the end of the file", TRUNC_HEADER, NULL, 0, "header length not checked against the file size" },
    { "trunc_in_data_1_byte", "run past the end of the data buffer", TRUNC_DATA1, NULL, 0, "data_offsets not checked against the buffer size" },
    { "trunc_in_data_half", "run past the end of the data buffer", TRUNC_DATA_HALF, NULL, 0, "data_offsets not checked against the buffer size" },
    { "header_len_past_end", "runs past the end of the file", HLEN_PAST_END, NULL, 0, "header length off by one" },
    { "header_len_absurd", "exceeds", HLEN_ABSURD, NULL, 0, "no upper bound on the header length (huge allocation / overflow)" },
    { "offsets_past_end", "run past the end of the data buffer", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
      "\"b\":{\"dtype\":\"I64\",\"shape\":[4],\"data_offsets\":[16,48]}}", 40, "end offset not compared with the buffer size" },
    { "overlapping_ranges", "overlap", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
      "\"b\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[8,32]}}", 40, "no overlap check after sorting by offset" },
    { "overlap_contained", "overlap", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[10],\"data_offsets\":[0,40]},"
      "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 40, "overlap check compares only neighbours' ends, not the furthest end" },
    { "dtype_shape_bytes_mismatch", "span", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16, "dtype x shape not compared with end - begin" },
    { "negative_shape", "non-negative integer", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2,-2],\"data_offsets\":[0,16]}}", 16, "negative dims multiply to a positive count" },
    { "huge_shape_numel_overflow", "more elements than int64", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,16]}}", 16, "numel overflow wraps to a small number" },
    { "huge_shape_bytes_overflow", "overflows the byte count", RAW,
      "{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952,2],\"data_offsets\":[0,16]}}", 16, "numel * dtype size overflow wraps" },
    { "unknown_dtype", "unknown dtype", RAW,
      "{\"a\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[0,2]}}", 2, "unknown dtype given size 0 or a default" },
    { "dtype_not_string", "dtype is not a string", RAW,
      "{\"a\":{\"dtype\":4,\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "dtype read without a type check" },
    { "broken_json", "header JSON", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}", 16, "parser accepts an unterminated object" },
    { "json_trailing_garbage", "trailing", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}} x", 16, "parser stops after the first value" },
    { "header_not_object", "not a JSON object", RAW, "[1, 2, 3]", 0, "header type not checked" },
    { "invalid_utf8_name", "invalid UTF-8", RAW,
      "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "strings not validated as UTF-8" },
    { "overlong_utf8_name", "invalid UTF-8", RAW,
      "{\"\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "overlong UTF-8 ('/' as C0 AF) accepted" },
    { "control_char_in_name", "control character", RAW,
      "{\"a\tb\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "raw control characters accepted in strings" },
    { "duplicate_names", "duplicate key", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "later duplicate silently replaces the first" },
    { "empty_name", "empty name", RAW,
      "{\"\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "empty tensor name accepted" },
    { "metadata_value_not_string", "is not a string", RAW,
      "{\"__metadata__\":{\"format\":1},\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
      "metadata values not type-checked" },
    { "metadata_not_object", "__metadata__ is not a JSON object", RAW,
      "{\"__metadata__\":[\"format\"],\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
      "metadata container not type-checked" },
    { "extra_field", "unexpected field", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"strides\":[1]}}", 16, "unknown fields ignored (strides!)" },
    { "missing_offsets", "missing field \"data_offsets\"", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4]}}", 16, "missing data_offsets defaulted" },
    { "offsets_reversed", "end before they begin", RAW,
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[16,8]}}", 16, "begin > end gives a negative (huge) size" },
    { "offsets_three", "pair of non-negative integers", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16,16]}}", 16, "data_offsets length not checked" },
    { "shape_fraction", "non-negative integer", RAW,
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]}}", 10, "fractional dims truncated" },
    { "too_many_dims", "more than the 8 supported", RAW,
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, "shape[] array overrun" },
    { "deep_nesting", "nesting deeper", RAW,
      "{\"__metadata__\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", 0, "unbounded recursion in the parser" },
    { "nul_padding", "0x00", NUL_PADDING, NULL, 0, "header read as a C string (stops at the NUL)" },
    { "random_bytes", "", RANDOM_BYTES, NULL, 0, "crash on arbitrary input" },
    { "random_after_length", "header JSON", RANDOM_AFTER_LEN, NULL, 0, "crash on arbitrary header bytes" },
    { "gzip_bad_crc", "gzip: incorrect data check", GZ_BAD_CRC, NULL, 0, "CRC-32 of the gzip trailer not checked" },
    { "gzip_truncated", "truncated gzip stream", GZ_TRUNCATED, NULL, 0, "a short gzip read taken as the whole file" },
    { "gzip_trailing_garbage", "after the end of the gzip stream", GZ_TRAILING, NULL, 0, "bytes after the gzip member ignored" },
    { "gzip_garbage_after_magic", "gzip:", GZ_GARBAGE, NULL, 0, "broken gzip header not reported" },
    { "gzip_of_truncated_file", "run past the end of the data buffer", GZ_OF_TRUNCATED, NULL, 0, "validation skipped for inflated files" },
};
#define N_CASES (sizeof k_cases / sizeof k_cases[0])

static char g_dir[256];

/* ---- building the bytes ---- */

typedef struct { unsigned char *b; size_t n; } bytes;

static bytes raw_file(const char *header, size_t hlen, size_t datalen, uint64_t hlen_field)
{
    bytes r;
    r.n = 8 + hlen + datalen;
    r.b = calloc(r.n + 1, 1);
    for (int i = 0; i < 8; i++) r.b[i] = (unsigned char)(hlen_field >> (8 * i));
    memcpy(r.b + 8, header, hlen);
    for (size_t i = 0; i < datalen; i++) r.b[8 + hlen + i] = (unsigned char)(i * 7 + 1);
    return r;
}

static bytes base_file(void) { return raw_file(BASE_HDR, strlen(BASE_HDR), 40, strlen(BASE_HDR)); }

static bytes gzip_bytes(const bytes *in)
{
    uLongf cap = compressBound(in->n) + 64;
    bytes r;
    r.b = malloc(cap);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = in->b;
    zs.avail_in = (uInt)in->n;
    zs.next_out = r.b;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    r.n = zs.total_out;
    deflateEnd(&zs);
    return r;
}

static bytes make_case(const mcase *c)
{
    bytes r = base_file(), g;
    size_t hl = strlen(BASE_HDR);
    test_rng rng = { 0x9E3779B97F4A7C15ULL };
    switch (c->kind) {
    case RAW: free(r.b); return raw_file(c->header, strlen(c->header), (size_t)c->datalen, strlen(c->header));
    case EMPTY: r.n = 0; return r;
    case TRUNC3: r.n = 3; return r;
    case TRUNC7: r.n = 7; return r;
    case TRUNC_HEADER: r.n = 8 + hl / 2; return r;
    case TRUNC_DATA1: r.n -= 1; return r;
    case TRUNC_DATA_HALF: r.n = 8 + hl + 10; return r;
    case HLEN_PAST_END: free(r.b); return raw_file(BASE_HDR, hl, 0, hl + 1);
    case HLEN_ABSURD: free(r.b); return raw_file(BASE_HDR, hl, 40, (uint64_t)1 << 63);
    case NUL_PADDING: {
        char h[256];
        memset(h, 0, sizeof h);
        strcpy(h, BASE_HDR);
        free(r.b);
        return raw_file(h, hl + 6, 40, hl + 6);
    }
    case RANDOM_BYTES:
        for (size_t i = 0; i < r.n; i++) r.b[i] = (unsigned char)(test_rng_next(&rng) >> 56);
        r.b[0] = 0x42;   /* not the gzip magic */
        return r;
    case RANDOM_AFTER_LEN:
        for (size_t i = 8; i < r.n; i++) r.b[i] = (unsigned char)(test_rng_next(&rng) >> 56);
        return r;
    case GZ_BAD_CRC:
        g = gzip_bytes(&r);
        g.b[g.n - 8] ^= 0x5A;   /* first byte of the CRC-32 */
        break;
    case GZ_TRUNCATED:
        g = gzip_bytes(&r);
        g.n = g.n / 2;
        break;
    case GZ_TRAILING: {
        g = gzip_bytes(&r);
        unsigned char *nb = realloc(g.b, g.n + 4);
        g.b = nb;
        memcpy(g.b + g.n, "junk", 4);
        g.n += 4;
        break;
    }
    case GZ_GARBAGE:
        for (size_t i = 2; i < r.n; i++) r.b[i] = (unsigned char)(test_rng_next(&rng) >> 56);
        r.b[0] = 0x1F;
        r.b[1] = 0x8B;
        return r;
    case GZ_OF_TRUNCATED:
        r.n -= 8;
        g = gzip_bytes(&r);
        break;
    default: fail_msg("unknown case kind"); return r;
    }
    free(r.b);
    return g;
}

/* ---- running ---- */

static void write_file(const char *path, const bytes *b)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (b->n) assert_int_equal(fwrite(b->b, 1, b->n, f), b->n);
    assert_int_equal(fclose(f), 0);
}

/* Runs `$DSV4REF_BIN info path`, stdout to /dev/null, stderr into errbuf. Returns the wait status. */
static int run_cli(const char *path, char *errbuf, size_t errlen)
{
    const char *bin = getenv("DSV4REF_BIN");
    if (!bin || !*bin) bin = "build/ref/dsv4ref";
    char errpath[512];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", g_dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fe = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fo = open("/dev/null", O_WRONLY);
        if (fe < 0 || fo < 0) _exit(127);
        dup2(fe, 2);
        dup2(fo, 1);
        execl(bin, bin, "info", path, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    FILE *f = fopen(errpath, "rb");
    assert_non_null(f);
    size_t k = fread(errbuf, 1, errlen - 1, f);
    errbuf[k] = 0;
    fclose(f);
    return st;
}

static void case_path(const mcase *c, char *path, size_t len)
{
    int gz = c->kind >= GZ_BAD_CRC;
    snprintf(path, len, "%s/%s.safetensors%s", g_dir, c->name, gz ? ".gz" : "");
}

/* [IO-VAL] One malformed file: the library refuses it for the named reason, naming the
 * file; the CLI exits 2 with exactly one line "dsv4ref info: ..." naming the file. */
static void test_case(void **state)
{
    const mcase *c = *state;
    char path[512], err[4096];
    case_path(c, path, sizeof path);
    bytes b = make_case(c);
    write_file(path, &b);

    /* the same bytes from memory must fail the same way */
    st_file *m = st_open_mem(b.b, b.n, path);
    if (m) { st_close(m); fail_msg("%s: st_open_mem accepted a malformed file; likely bug: %s", c->name, c->bug); }
    free(b.b);

    dsv4_clear_error();
    st_file *f = st_open(path);
    if (f) {
        st_close(f);
        fail_msg("%s: st_open accepted a malformed file; likely bug: %s", c->name, c->bug);
    }
    const char *msg = dsv4_last_error();
    if (!strstr(msg, path)) fail_msg("%s: message does not name the file: %s", c->name, msg);
    if (!strstr(msg, c->expect))
        fail_msg("%s: refused for another reason than expected (want \"%s\"): %s\n  likely bug: %s",
                 c->name, c->expect, msg, c->bug);
    if (strchr(msg, '\n')) fail_msg("%s: message is not one line: %s", c->name, msg);

    int st = run_cli(path, err, sizeof err);
    if (!WIFEXITED(st)) fail_msg("%s: dsv4ref info died from signal %d; stderr: %s", c->name, WIFSIGNALED(st) ? WTERMSIG(st) : -1, err);
    if (WEXITSTATUS(st) != 2) fail_msg("%s: dsv4ref info exited %d, want 2; stderr: %s", c->name, WEXITSTATUS(st), err);
    size_t n = strlen(err);
    if (n == 0 || err[n - 1] != '\n' || strchr(err, '\n') != err + n - 1)
        fail_msg("%s: stderr is not exactly one line: [%s]", c->name, err);
    if (strncmp(err, "dsv4ref info: ", 14) != 0 || !strstr(err, path))
        fail_msg("%s: stderr line lacks the 'dsv4ref info: ' prefix or the file name: %s", c->name, err);
    unlink(path);
}

/* The undamaged base file opens and the CLI exits 0: the cases above fail because of their
 * damage, not because the base is already bad. */
static void test_base_is_valid(void **state)
{
    (void)state;
    char path[512], err[4096];
    snprintf(path, sizeof path, "%s/base.safetensors", g_dir);
    bytes b = base_file();
    write_file(path, &b);
    bytes g = gzip_bytes(&b);
    free(b.b);
    st_file *f = st_open(path);
    if (!f) fail_msg("base file refused: %s", dsv4_last_error());
    assert_int_equal(st_count(f), 2);
    st_close(f);
    f = st_open_mem(g.b, g.n, "base.gz");
    if (!f) fail_msg("gzip of the base file refused: %s", dsv4_last_error());
    st_close(f);
    free(g.b);
    int st = run_cli(path, err, sizeof err);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) != 0) fail_msg("dsv4ref info on a valid file exited %d: %s", WEXITSTATUS(st), err);
    unlink(path);
}

/* [IO-INFO] The CLI reads every official golden file (plain and gzip) and exits 0. */
static void test_cli_reads_official_golden(void **state)
{
    (void)state;
    char dir[512], path[1024], err[4096];
    snprintf(dir, sizeof dir, "%s", official_golden_dir());
    DIR *d = opendir(dir);
    if (!d) { print_message("  official golden files not found at %s: skipped\n", dir); skip(); }
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".safetensors")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int st = run_cli(path, err, sizeof err);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("dsv4ref info %s failed: %s", path, err);
        if (err[0]) fail_msg("dsv4ref info %s wrote to stderr: %s", path, err);
        files++;
    }
    closedir(d);
    if (files < 5) fail_msg("found %d golden files in %s, expected at least 5", files, dir);
}

static int group_setup(void **state)
{
    (void)state;
    return make_temp_dir(g_dir, sizeof g_dir, "malformed");
}

static int group_teardown(void **state)
{
    (void)state;
    char p[600];
    snprintf(p, sizeof p, "%s/stderr.txt", g_dir);
    unlink(p);
    for (size_t i = 0; i < N_CASES; i++) { case_path(&k_cases[i], p, sizeof p); unlink(p); }
    return rmdir(g_dir);
}

int main(void)
{
    struct CMUnitTest tests[N_CASES + 2];
    tests[0] = (struct CMUnitTest){ "base_is_valid", test_base_is_valid, NULL, NULL, NULL };
    tests[1] = (struct CMUnitTest){ "cli_reads_official_golden", test_cli_reads_official_golden, NULL, NULL, NULL };
    for (size_t i = 0; i < N_CASES; i++)
        tests[i + 2] = (struct CMUnitTest){ k_cases[i].name, test_case, NULL, NULL, (void *)&k_cases[i] };
    return cmocka_run_group_tests_name("malformed safetensors", tests, group_setup, group_teardown);
}
