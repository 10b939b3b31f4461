/* test_config.c — V4 model arguments (spec/model.md [CFG-1]..[CFG-3], ref/config.c): our
 * Flash / Pro config files give the published layer schedules; the HF names parse to the same
 * config; every bad config gives one clear error naming the field. */
#include "testutil.h"
#include "dsv4ref.h"
#include "config.h"

static void load_ok(const char *path, dsv4_config *c)
{
    if (dsv4_config_load(c, path) != 0) fail_msg("%s: %s", path, dsv4_last_error());
}

/* [CFG-1] V4-Flash: layers 0,1 SWA, even 2..42 CSA, odd 3..41 HCA, MTP (43) SWA, hash 0-2 */
static void test_flash_schedule(void **state)
{
    (void)state;
    dsv4_config c;
    load_ok("spec/configs/v4-flash.json", &c);
    assert_int_equal(c.n_layers, 43);
    assert_int_equal(c.n_ratios, 44);
    assert_int_equal(c.n_hash_layers, 3);
    assert_int_equal(c.n_mtp_layers, 1);
    int csa = 0, hca = 0;
    for (int i = 0; i < 44; i++) {
        const char *want = i < 2 ? "SWA" : i == 43 ? "SWA" : i % 2 == 0 ? "CSA" : "HCA";
        if (strcmp(dsv4_layer_kind(&c, i), want) != 0)
            fail_msg("flash layer %d is %s, expected %s", i, dsv4_layer_kind(&c, i), want);
        csa += i < 43 && dsv4_layer_is_csa(&c, i);
        hca += i < 43 && strcmp(dsv4_layer_kind(&c, i), "HCA") == 0;
    }
    assert_int_equal(csa, 21);
    assert_int_equal(hca, 20);
    assert_int_equal(c.dim, 4096);
    assert_int_equal(c.index_topk, 512);
    assert_true(c.route_scale == 1.5 && c.rope_factor == 16.0 && c.original_seq_len == 65536);
    assert_string_equal(c.expert_dtype, "fp4");
}

/* [CFG-1] V4-Pro: layers 0,1 HCA, even 2..60 CSA, odd 3..59 HCA, MTP (61) SWA */
static void test_pro_schedule(void **state)
{
    (void)state;
    dsv4_config c;
    load_ok("spec/configs/v4-pro.json", &c);
    assert_int_equal(c.n_layers, 61);
    assert_int_equal(c.n_ratios, 62);
    for (int i = 0; i < 62; i++) {
        const char *want = i < 2 ? "HCA" : i == 61 ? "SWA" : i % 2 == 0 ? "CSA" : "HCA";
        if (strcmp(dsv4_layer_kind(&c, i), want) != 0)
            fail_msg("pro layer %d is %s, expected %s", i, dsv4_layer_kind(&c, i), want);
    }
    assert_int_equal(c.compress_ratios[1], 128);
    assert_int_equal(c.dim, 7168);
    assert_int_equal(c.n_heads, 128);
    assert_int_equal(c.o_groups, 16);
    assert_int_equal(c.index_topk, 1024);
    assert_true(c.route_scale == 2.5);
}

/* [CFG-2] DeepSeek's own files (HF names and inference names) parse to our configs */
static void test_official_files_agree(void **state)
{
    (void)state;
    const char *names[2][3] = {
        { "spec/configs/v4-flash.json", "v4-flash.hf-config.json", "v4-flash.inference-config.json" },
        { "spec/configs/v4-pro.json", "v4-pro.hf-config.json", "v4-pro.inference-config.json" },
    };
    for (int m = 0; m < 2; m++) {
        dsv4_config ours, hf, inf;
        char p[1024];
        load_ok(names[m][0], &ours);
        snprintf(p, sizeof p, "%s/official-configs/%s", shared_dir(), names[m][1]);
        FILE *f = fopen(p, "rb");
        if (!f) { print_message("skip: %s not found\n", p); continue; }
        fclose(f);
        load_ok(p, &hf);
        snprintf(p, sizeof p, "%s/official-configs/%s", shared_dir(), names[m][2]);
        load_ok(p, &inf);
        dsv4_config *cs[2] = { &hf, &inf };
        for (int k = 0; k < 2; k++) {
            dsv4_config *c = cs[k];
            /* runtime sizes are not model facts */
            c->max_seq_len = ours.max_seq_len;
            c->max_batch_size = ours.max_batch_size;
            c->max_position_embeddings = ours.max_position_embeddings;
            if (memcmp(c, &ours, sizeof ours) != 0) {
                const char *bad = "?";
                if (c->dim != ours.dim) bad = "dim";
                else if (c->n_layers != ours.n_layers) bad = "n_layers";
                else if (c->n_mtp_layers != ours.n_mtp_layers) bad = "n_mtp_layers";
                else if (c->route_scale != ours.route_scale) bad = "route_scale";
                else if (c->rope_factor != ours.rope_factor) bad = "rope_factor";
                else if (c->original_seq_len != ours.original_seq_len) bad = "original_seq_len";
                else if (strcmp(c->dtype, ours.dtype) != 0) bad = "dtype";
                else if (c->window_size != ours.window_size) bad = "window_size";
                fail_msg("%s parses differently from %s (first difference: %s); likely bug: an HF name not mapped",
                         names[m][k + 1], names[m][0], bad);
            }
        }
    }
}

/* [CFG-3] bad configs: one clear error naming the field */
static void test_bad_configs(void **state)
{
    (void)state;
    struct { const char *json; const char *must_mention; } cases[] = {
        { "{\"dim\": \"4096\"}", "dim" },
        { "{\"n_heads\": 6, \"o_groups\": 4}", "o_groups" },
        { "{\"n_layers\": 9}", "compress_ratios" },
        { "{\"score_func\": \"relu\"}", "score_func" },
        { "{\"n_shared_experts\": 2}", "n_shared_experts" },
        { "{\"n_activated_experts\": 9}", "n_activated_experts" },
        { "{\"compress_ratios\": [0, 0, 4, -1, 4, 128, 4, 0]}", "compress_ratios[3]" },
        { "{\"index_head_dim\": 96}", "index_head_dim" },
        { "{\"rope_scaling\": {\"factor\": \"x\"}}", "factor" },
        { "{\"dtype\": \"int4\"}", "dtype" },
        { "[1, 2]", "object" },
        { "{\"dim\": 4096,", "JSON" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsv4_config c;
        dsv4_config_defaults(&c);
        dsv4_clear_error();
        int rc = dsv4_config_from_json(&c, cases[i].json, strlen(cases[i].json), "cfg.json");
        if (rc == 0) rc = dsv4_config_validate(&c, "cfg.json");
        if (rc == 0) fail_msg("config %s was accepted", cases[i].json);
        const char *e = dsv4_last_error();
        if (!strstr(e, cases[i].must_mention) || !strstr(e, "cfg.json") || strchr(e, '\n'))
            fail_msg("config %s: error \"%s\" does not name %s on one line", cases[i].json, e, cases[i].must_mention);
    }
    /* unknown fields are ignored; null expert_dtype is allowed */
    dsv4_config c;
    dsv4_config_defaults(&c);
    const char *ok = "{\"foo\": [1, {\"x\": 2}], \"expert_dtype\": null, \"scale_dtype\": \"fp8\"}";
    assert_int_equal(dsv4_config_from_json(&c, ok, strlen(ok), "cfg.json"), 0);
    assert_int_equal(dsv4_config_validate(&c, "cfg.json"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flash_schedule),
        cmocka_unit_test(test_pro_schedule),
        cmocka_unit_test(test_official_files_agree),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
