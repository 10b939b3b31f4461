/* test_taps.c — the tap sink (ref/taps.c, spec/io.md [IO-TAP]).
 *
 * A tap is what `dsv4ref check` compares against the official golden taps, so the sink must
 * store exactly what the file will hold (BF16 taps rounded to nearest even, as the official
 * graph's bf16 tensors are), keep integer indices exact, refuse a name tapped twice, and be a
 * free no-op when no sink is given.
 */
#include <unistd.h>
#include "testutil.h"
#include "safetensors.h"
#include "taps.h"

/* A NULL sink accepts anything and does nothing (the forward pass never checks). */
static void test_null_sink(void **state)
{
    (void)state;
    int64_t s = 3;
    float x[3] = { 1, 2, 3 };
    assert_int_equal(dsv4_tap(NULL, DSV4_F32, 1, &s, x, "taps.%d.logits", 0), 0);
    assert_int_equal(dsv4_tap(NULL, DSV4_U8, -1, NULL, NULL, "anything"), 0);
    assert_int_equal(dsv4_taps_count(NULL), 0);
    assert_null(dsv4_taps_name(NULL, 0));
    assert_null(dsv4_taps_find_f32(NULL, "x", NULL, NULL));
    dsv4_taps_free(NULL);
}

/* BF16 taps keep the bf16-rounded floats (round to nearest even), F32 taps the exact floats;
 * the saved file holds the same values. */
static void test_bf16_rounding_kept(void **state)
{
    (void)state;
    dsv4_taps *t = dsv4_taps_new();
    int64_t s[2] = { 2, 3 };
    float x[6] = { 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f, -2.0f - 0x1p-7f, 3.14159265f, NAN };
    float want[6] = { 1.0f, 1.0f + 0x1p-6f, 1.0f + 0x1p-7f, -2.0f, 3.140625f, NAN };
    assert_int_equal(dsv4_tap(t, DSV4_BF16, 2, s, x, "taps.%d.layers.%d.attn", 0, 2), 0);
    assert_int_equal(dsv4_tap(t, DSV4_F32, 2, s, x, "taps.0.exact"), 0);
    int nd = 0;
    const int64_t *sh = NULL;
    const float *got = dsv4_taps_find_f32(t, "taps.0.layers.2.attn", &nd, &sh);
    assert_non_null(got);
    assert_int_equal(nd, 2);
    assert_int_equal(sh[0], 2);
    assert_int_equal(sh[1], 3);
    expect_close("bf16 tap copy", got, want, 5, 0.0, "the sink keeps the unrounded float or truncates instead of RNE");
    assert_true(isnan(got[5]));
    const float *ex = dsv4_taps_find_f32(t, "taps.0.exact", NULL, NULL);
    assert_memory_equal(ex, x, 5 * sizeof(float));
    char path[] = "/tmp/dsv4ref-taps-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    const char *meta[] = { "format", "dsv4-golden-1", "source", "dsv4ref test", NULL };
    if (dsv4_taps_save(t, path, meta) != 0) fail_msg("%s", dsv4_last_error());
    st_file *f = st_open(path);
    if (!f) fail_msg("%s", dsv4_last_error());
    const st_tensor *b = st_find(f, "taps.0.layers.2.attn");
    assert_int_equal(b->dtype, DSV4_BF16);
    for (int i = 0; i < 6; i++) {
        float v = (float)st_get_f64(b, i);
        if (!(v == want[i] || (isnan(v) && isnan(want[i])))) fail_msg("saved bf16 tap element %d = %g, want %g", i, (double)v, (double)want[i]);
    }
    assert_int_equal(st_find(f, "taps.0.exact")->dtype, DSV4_F32);
    assert_string_equal(st_meta(f, "source"), "dsv4ref test");
    st_close(f);
    unlink(path);
    dsv4_taps_free(t);
}

/* Integer taps: I64 exact (incl. -1 = none and values beyond 2^53), I32 range-checked. */
static void test_integer_taps(void **state)
{
    (void)state;
    dsv4_taps *t = dsv4_taps_new();
    int64_t s = 4;
    int64_t idx[4] = { -1, 0, 9007199254740993LL, 7 };
    int64_t small[4] = { -1, 0, 2147483647, -2147483648LL };
    int64_t big[4] = { 0, 0, 2147483648LL, 0 };
    assert_int_equal(dsv4_tap(t, DSV4_I64, 1, &s, idx, "taps.1.layers.0.attn.indexer"), 0);
    assert_int_equal(dsv4_tap(t, DSV4_I32, 1, &s, small, "taps.1.i32"), 0);
    assert_int_equal(dsv4_tap(t, DSV4_I32, 1, &s, big, "taps.1.too_big"), -1);
    assert_non_null(strstr(dsv4_last_error(), "taps.1.too_big"));
    assert_null(dsv4_taps_find_f32(t, "taps.1.i32", NULL, NULL));   /* wrong kind */
    const int64_t *g = dsv4_taps_find_i64(t, "taps.1.layers.0.attn.indexer", NULL, NULL);
    assert_non_null(g);
    assert_memory_equal(g, idx, sizeof idx);
    char path[] = "/tmp/dsv4ref-taps-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    char gzpath[64];
    snprintf(gzpath, sizeof gzpath, "%s.gz", path);
    if (dsv4_taps_save(t, gzpath, NULL) != 0) fail_msg("%s", dsv4_last_error());
    st_file *f = st_open(gzpath);
    if (!f) fail_msg("%s", dsv4_last_error());
    const st_tensor *a = st_find(f, "taps.1.layers.0.attn.indexer"), *b = st_find(f, "taps.1.i32");
    assert_int_equal(a->dtype, DSV4_I64);
    assert_int_equal(b->dtype, DSV4_I32);
    for (int i = 0; i < 4; i++) {
        assert_true(st_get_i64(a, i) == idx[i]);
        assert_true(st_get_i64(b, i) == small[i]);
    }
    assert_int_equal(st_count(f), 2);
    st_close(f);
    unlink(path);
    unlink(gzpath);
    dsv4_taps_free(t);
}

/* A name tapped twice is an error (it would hide one of two comparisons); bad targets too. */
static void test_rejects(void **state)
{
    (void)state;
    dsv4_taps *t = dsv4_taps_new();
    int64_t s = 2, neg = -2;
    float x[2] = { 1, 2 };
    assert_int_equal(dsv4_tap(t, DSV4_F32, 1, &s, x, "taps.%d.logits", 3), 0);
    assert_int_equal(dsv4_tap(t, DSV4_F32, 1, &s, x, "taps.%d.logits", 3), -1);
    assert_non_null(strstr(dsv4_last_error(), "taps.3.logits"));
    assert_non_null(strstr(dsv4_last_error(), "twice"));
    assert_int_equal(dsv4_tap(t, DSV4_U8, 1, &s, x, "u8"), -1);
    assert_int_equal(dsv4_tap(t, DSV4_F32, 1, &neg, x, "neg"), -1);
    assert_int_equal(dsv4_tap(t, DSV4_F32, 1, &s, NULL, "nodata"), -1);
    assert_int_equal(dsv4_tap(t, DSV4_F32, 9, &s, x, "ninedims"), -1);
    assert_int_equal(dsv4_tap(t, DSV4_F32, 1, &s, x, "%s", ""), -1);
    assert_int_equal(dsv4_taps_count(t), 1);
    dsv4_taps_free(t);
}

/* Thousands of taps (85 decode calls x layers x paths): insertion order is kept, every name is
 * found after the table grows, and an empty tap (e.g. no compressed entry emitted) works. */
static void test_many_taps_order(void **state)
{
    (void)state;
    dsv4_taps *t = dsv4_taps_new();
    int64_t s = 1, s0[2] = { 1, 0 };
    char name[64];
    for (int k = 0; k < 3000; k++) {
        float v = (float)k;
        assert_int_equal(dsv4_tap(t, DSV4_F32, 1, &s, &v, "taps.%d.layers.%d.ffn", k / 7, k % 7), 0);
    }
    assert_int_equal(dsv4_tap(t, DSV4_BF16, 2, s0, NULL, "taps.0.empty"), 0);
    assert_int_equal(dsv4_taps_count(t), 3001);
    for (int k = 0; k < 3000; k++) {
        snprintf(name, sizeof name, "taps.%d.layers.%d.ffn", k / 7, k % 7);
        assert_string_equal(dsv4_taps_name(t, (size_t)k), name);
        const float *v = dsv4_taps_find_f32(t, name, NULL, NULL);
        if (!v || *v != (float)k) fail_msg("tap %s lost after the name table grew", name);
    }
    assert_int_equal(dsv4_taps_dtype(t, 3000), DSV4_BF16);
    assert_null(dsv4_taps_find_f32(t, "taps.999.nothing", NULL, NULL));
    dsv4_taps_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_sink),
        cmocka_unit_test(test_bf16_rounding_kept),
        cmocka_unit_test(test_integer_taps),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_many_taps_order),
    };
    return cmocka_run_group_tests_name("taps", tests, NULL, NULL);
}
