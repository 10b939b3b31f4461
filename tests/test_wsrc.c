/* test_wsrc.c — weight sources over checkpoint directories (spec/checkpoint.md, ref/wsrc.c):
 * index.json routing, shards without an index, FP8/FP4 layouts, and one clear error for a
 * missing shard, a missing tensor or a wrong shape. Directories are built in a temp dir. */
#include <unistd.h>
#include <sys/stat.h>
#include "testutil.h"
#include "dsv4ref.h"
#include "safetensors.h"
#include "wsrc.h"

static char g_dir[256];

static void write_text(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* shard 1: a.weight BF16 [4, 8]; shard 2: b.weight F8_E4M3 [4, 8] + b.scale E8M0 [1, 1],
 * c.weight I8 [4, 16] (FP4, logical [4, 32]) + c.scale E8M0 [4, 1] */
static void write_shards(const char *dir)
{
    char p[512];
    float a[32];
    uint8_t b[32], bs[1] = { 127 }, cw[64], cs[4] = { 127, 128, 126, 127 };
    for (int i = 0; i < 32; i++) { a[i] = (float)i * 0.25f; b[i] = (uint8_t)(0x38 + (i % 8)); }
    for (int i = 0; i < 64; i++) cw[i] = (uint8_t)(i * 37);
    int64_t sa[2] = { 4, 8 }, sb[2] = { 4, 8 }, sbs[2] = { 1, 1 }, scw[2] = { 4, 16 }, scs[2] = { 4, 1 };
    st_writer *w = st_writer_new();
    assert_int_equal(st_writer_add_f32(w, "a.weight", DSV4_BF16, 2, sa, a), 0);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    assert_int_equal(st_writer_save(w, p, 0), 0);
    st_writer_free(w);
    w = st_writer_new();
    assert_int_equal(st_writer_add(w, "b.weight", DSV4_F8_E4M3, 2, sb, b, sizeof b), 0);
    assert_int_equal(st_writer_add(w, "b.scale", DSV4_F8_E8M0, 2, sbs, bs, sizeof bs), 0);
    assert_int_equal(st_writer_add(w, "c.weight", DSV4_I8, 2, scw, cw, sizeof cw), 0);
    assert_int_equal(st_writer_add(w, "c.scale", DSV4_F8_E8M0, 2, scs, cs, sizeof cs), 0);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    assert_int_equal(st_writer_save(w, p, 0), 0);
    st_writer_free(w);
}

static const char *k_index =
    "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {"
    "\"a.weight\": \"model-00001-of-00002.safetensors\", "
    "\"b.weight\": \"model-00002-of-00002.safetensors\", \"b.scale\": \"model-00002-of-00002.safetensors\", "
    "\"c.weight\": \"model-00002-of-00002.safetensors\", \"c.scale\": \"model-00002-of-00002.safetensors\"}}";

static int setup(void **state)
{
    (void)state;
    return make_temp_dir(g_dir, sizeof g_dir, "wsrc");
}

static void rm_dir(const char *dir)
{
    const char *names[] = { "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                            "model.safetensors.index.json" };
    char p[512];
    for (size_t i = 0; i < 3; i++) { snprintf(p, sizeof p, "%s/%s", dir, names[i]); unlink(p); }
}

static int teardown(void **state)
{
    (void)state;
    rm_dir(g_dir);
    rmdir(g_dir);
    return 0;
}

/* [CKPT-2] index.json routes each name to its shard; FP8 and FP4 layouts are recognised */
static void test_index_routing(void **state)
{
    (void)state;
    rm_dir(g_dir);
    write_shards(g_dir);
    write_text(g_dir, "model.safetensors.index.json", k_index);
    dsv4_wsrc *s = wsrc_open_dir(g_dir);
    if (!s) fail_msg("%s", dsv4_last_error());
    dsv4_weight w;
    assert_int_equal(wsrc_weight(s, "a.weight", 4, 8, &w), 0);
    assert_int_equal(w.dtype, DSV4_BF16);
    assert_int_equal(wsrc_weight(s, "b.weight", 4, 8, &w), 0);
    assert_int_equal(w.dtype, DSV4_F8_E4M3);
    assert_non_null(w.scale);
    assert_int_equal(wsrc_weight(s, "c.weight", 4, 32, &w), 0);
    assert_true(w.fp4 == 1 && w.cols == 32 && w.scale_dtype == DSV4_F8_E8M0);
    assert_null(wsrc_find(s, "d.weight"));
    /* a wrong logical shape names the tensor and both shapes */
    assert_int_equal(wsrc_weight(s, "a.weight", 8, 4, &w), -1);
    if (!strstr(dsv4_last_error(), "a.weight") || !strstr(dsv4_last_error(), "[4, 8]"))
        fail_msg("wrong-shape error does not name the tensor and its shape: %s", dsv4_last_error());
    assert_int_equal(wsrc_weight(s, "c.weight", 4, 64, &w), -1);
    if (!strstr(dsv4_last_error(), "c.weight")) fail_msg("FP4 shape error: %s", dsv4_last_error());
    assert_int_equal(wsrc_weight(s, "zz.weight", 4, 8, &w), -1);
    if (!strstr(dsv4_last_error(), "zz.weight") || !strstr(dsv4_last_error(), "missing"))
        fail_msg("missing-tensor error: %s", dsv4_last_error());
    wsrc_close(s);
}

/* [CKPT-2] an index naming a shard that is not there: one error naming the shard */
static void test_missing_shard(void **state)
{
    (void)state;
    char p[512];
    rm_dir(g_dir);
    write_shards(g_dir);
    write_text(g_dir, "model.safetensors.index.json", k_index);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", g_dir);
    unlink(p);
    dsv4_wsrc *s = wsrc_open_dir(g_dir);
    assert_null(s);
    if (!strstr(dsv4_last_error(), "model-00002-of-00002.safetensors") || strchr(dsv4_last_error(), '\n'))
        fail_msg("missing shard not named on one line: %s", dsv4_last_error());
}

/* [CKPT-2] without an index every model*.safetensors is searched */
static void test_no_index(void **state)
{
    (void)state;
    rm_dir(g_dir);
    write_shards(g_dir);
    dsv4_wsrc *s = wsrc_open_dir(g_dir);
    if (!s) fail_msg("%s", dsv4_last_error());
    assert_non_null(wsrc_find(s, "a.weight"));
    assert_non_null(wsrc_find(s, "c.scale"));
    float *v = NULL;
    assert_int_equal(wsrc_floats(s, "a.weight", 32, &v), 0);
    assert_true(v[5] == 1.25f);
    free(v);
    assert_int_equal(wsrc_floats(s, "a.weight", 31, &v), -1);
    wsrc_close(s);
    rm_dir(g_dir);
    assert_null(wsrc_open_dir(g_dir));   /* no shard at all */
}

/* Bad input: a NaN in a norm / sink / bias vector is refused at load, naming the tensor and
 * the element (it would otherwise surface as NaN outputs far downstream). */
static void test_nan_vector(void **state)
{
    (void)state;
    char p[600];
    snprintf(p, sizeof p, "%s/nan.safetensors", g_dir);
    float v[4] = { 1.0f, 2.0f, NAN, 4.0f };
    int64_t shape[1] = { 4 };
    st_writer *w = st_writer_new();
    assert_int_equal(st_writer_add_f32(w, "attn_sink", DSV4_F32, 1, shape, v), 0);
    assert_int_equal(st_writer_save(w, p, 0), 0);
    st_writer_free(w);
    dsv4_wsrc *s = wsrc_open_file(p);
    assert_non_null(s);
    float *out = NULL;
    assert_int_equal(wsrc_floats(s, "attn_sink", 4, &out), -1);
    assert_null(out);
    if (!strstr(dsv4_last_error(), "attn_sink element 2 is NaN"))
        fail_msg("error does not name the tensor and element: %s", dsv4_last_error());
    wsrc_close(s);
    unlink(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_routing),
        cmocka_unit_test(test_missing_shard),
        cmocka_unit_test(test_no_index),
        cmocka_unit_test(test_nan_vector),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
