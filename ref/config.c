/* config.c — the V4 model arguments: defaults, JSON parsing (inference-config and HF names),
 * validation (spec/model.md [CFG-1]..[CFG-3]). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"
#include "json.h"

/* ---- defaults ---- */

/* [CFG-1] The official ModelArgs defaults (model.py of V4 @ 60d8d707), field by field.
 * c: the config to fill. The default schedule (0,0,4,128,4,128,4,0) has 8 entries for the
 * 7 default layers + 1 MTP block. */
void dsv4_config_defaults(dsv4_config *c)
{
    static const int64_t k_default_ratios[8] = { 0, 0, 4, 128, 4, 128, 4, 0 };
    memset(c, 0, sizeof *c);
    c->max_batch_size = 4;
    c->max_seq_len = 4096;
    strcpy(c->dtype, "fp8");
    strcpy(c->scale_fmt, "ue8m0");
    c->expert_dtype[0] = 0;                 /* None */
    c->vocab_size = 129280;
    c->dim = 4096;
    c->moe_inter_dim = 4096;
    c->n_layers = 7;
    c->n_hash_layers = 0;
    c->n_mtp_layers = 1;
    c->n_heads = 64;
    c->n_routed_experts = 8;
    c->n_shared_experts = 1;
    c->n_activated_experts = 2;
    c->score_func = SCORE_SQRTSOFTPLUS;
    c->route_scale = 1.0;
    c->swiglu_limit = 0.0;
    c->q_lora_rank = 1024;
    c->head_dim = 512;
    c->rope_head_dim = 64;
    c->norm_eps = 1e-6;
    c->o_groups = 8;
    c->o_lora_rank = 1024;
    c->window_size = 128;
    c->n_ratios = 8;
    for (int i = 0; i < 8; i++) c->compress_ratios[i] = k_default_ratios[i];
    c->compress_rope_theta = 40000.0;
    c->original_seq_len = 0;
    c->rope_theta = 10000.0;
    c->rope_factor = 40.0;
    c->beta_fast = 32.0;
    c->beta_slow = 1.0;
    c->index_n_heads = 64;
    c->index_head_dim = 128;
    c->index_topk = 512;
    c->hc_mult = 4;
    c->hc_sinkhorn_iters = 20;
    c->hc_eps = 1e-6;
    c->max_position_embeddings = 0;
}

/* ---- parsing ---- */

/* One integer field; a JSON number without fraction (or an integral double such as 16.0). */
static int get_int(const json_value *obj, const char *key, int64_t *out, const char *what)
{
    const json_value *v = json_get(obj, key);
    if (!v) return 0;
    if (v->type == JSON_NUMBER && v->is_integer) { *out = v->integer; return 0; }
    if (v->type == JSON_NUMBER && v->number == (double)(int64_t)v->number) {
        *out = (int64_t)v->number;
        return 0;
    }
    return dsv4_set_error("%s: field \"%s\" must be an integer", what, key);
}

static int get_double(const json_value *obj, const char *key, double *out, const char *what)
{
    const json_value *v = json_get(obj, key);
    if (!v) return 0;
    if (v->type == JSON_NUMBER) { *out = v->number; return 0; }
    return dsv4_set_error("%s: field \"%s\" must be a number", what, key);
}

/* A string field; JSON null gives "" (the official Literal[None, ...]) when allow_null. */
static int get_string(const json_value *obj, const char *key, char *out, size_t cap,
                      int allow_null, const char *what)
{
    const json_value *v = json_get(obj, key);
    if (!v) return 0;
    if (v->type == JSON_NULL && allow_null) { out[0] = 0; return 0; }
    if (v->type != JSON_STRING)
        return dsv4_set_error("%s: field \"%s\" must be a string%s", what, key,
                              allow_null ? " or null" : "");
    if (strlen(v->string) >= cap)
        return dsv4_set_error("%s: field \"%s\" value \"%s\" is too long", what, key, v->string);
    strcpy(out, v->string);
    return 0;
}

static int get_ratios(const json_value *obj, dsv4_config *c, const char *what)
{
    const json_value *v = json_get(obj, "compress_ratios");
    if (!v) return 0;
    if (v->type != JSON_ARRAY)
        return dsv4_set_error("%s: field \"compress_ratios\" must be an array of integers", what);
    if (v->n > DSV4_MAX_LAYERS)
        return dsv4_set_error("%s: compress_ratios has %zu entries (at most %d supported)", what,
                              v->n, DSV4_MAX_LAYERS);
    for (size_t i = 0; i < v->n; i++) {
        const json_value *e = v->items[i];
        if (e->type != JSON_NUMBER || !e->is_integer)
            return dsv4_set_error("%s: compress_ratios[%zu] must be an integer", what, i);
        c->compress_ratios[i] = e->integer;
    }
    c->n_ratios = (int64_t)v->n;
    return 0;
}

static int parse_score_func(const char *s, dsv4_score_func *out, const char *what)
{
    if (strcmp(s, "softmax") == 0) *out = SCORE_SOFTMAX;
    else if (strcmp(s, "sigmoid") == 0) *out = SCORE_SIGMOID;
    else if (strcmp(s, "sqrtsoftplus") == 0) *out = SCORE_SQRTSOFTPLUS;
    else return dsv4_set_error("%s: score_func \"%s\" is not softmax, sigmoid or sqrtsoftplus", what, s);
    return 0;
}

/* [CFG-2] Both naming styles: the inference-config names of ModelArgs first, then the HF
 * config.json names (hidden_size, num_hidden_layers, ...) which win where both appear (an HF
 * file never holds the inference names). Unknown fields are ignored; a known field of the
 * wrong JSON type is an error naming it. */
static int parse_object(dsv4_config *c, const json_value *o, const char *what)
{
    char score[32] = "";
    int rc = 0;
    if (o->type != JSON_OBJECT) return dsv4_set_error("%s: the config must be a JSON object", what);
    /* inference-config names (ModelArgs) */
    rc |= get_int(o, "max_batch_size", &c->max_batch_size, what);
    rc |= get_int(o, "max_seq_len", &c->max_seq_len, what);
    rc |= get_string(o, "dtype", c->dtype, sizeof c->dtype, 0, what);
    rc |= get_string(o, "scale_fmt", c->scale_fmt, sizeof c->scale_fmt, 1, what);
    rc |= get_string(o, "expert_dtype", c->expert_dtype, sizeof c->expert_dtype, 1, what);
    rc |= get_int(o, "vocab_size", &c->vocab_size, what);
    rc |= get_int(o, "dim", &c->dim, what);
    rc |= get_int(o, "moe_inter_dim", &c->moe_inter_dim, what);
    rc |= get_int(o, "n_layers", &c->n_layers, what);
    rc |= get_int(o, "n_hash_layers", &c->n_hash_layers, what);
    rc |= get_int(o, "n_mtp_layers", &c->n_mtp_layers, what);
    rc |= get_int(o, "n_heads", &c->n_heads, what);
    rc |= get_int(o, "n_routed_experts", &c->n_routed_experts, what);
    rc |= get_int(o, "n_shared_experts", &c->n_shared_experts, what);
    rc |= get_int(o, "n_activated_experts", &c->n_activated_experts, what);
    rc |= get_string(o, "score_func", score, sizeof score, 0, what);
    rc |= get_double(o, "route_scale", &c->route_scale, what);
    rc |= get_double(o, "swiglu_limit", &c->swiglu_limit, what);
    rc |= get_int(o, "q_lora_rank", &c->q_lora_rank, what);
    rc |= get_int(o, "head_dim", &c->head_dim, what);
    rc |= get_int(o, "rope_head_dim", &c->rope_head_dim, what);
    rc |= get_double(o, "norm_eps", &c->norm_eps, what);
    rc |= get_int(o, "o_groups", &c->o_groups, what);
    rc |= get_int(o, "o_lora_rank", &c->o_lora_rank, what);
    rc |= get_int(o, "window_size", &c->window_size, what);
    rc |= get_ratios(o, c, what);
    rc |= get_double(o, "compress_rope_theta", &c->compress_rope_theta, what);
    rc |= get_int(o, "original_seq_len", &c->original_seq_len, what);
    rc |= get_double(o, "rope_theta", &c->rope_theta, what);
    rc |= get_double(o, "rope_factor", &c->rope_factor, what);
    rc |= get_double(o, "beta_fast", &c->beta_fast, what);
    rc |= get_double(o, "beta_slow", &c->beta_slow, what);
    rc |= get_int(o, "index_n_heads", &c->index_n_heads, what);
    rc |= get_int(o, "index_head_dim", &c->index_head_dim, what);
    rc |= get_int(o, "index_topk", &c->index_topk, what);
    rc |= get_int(o, "hc_mult", &c->hc_mult, what);
    rc |= get_int(o, "hc_sinkhorn_iters", &c->hc_sinkhorn_iters, what);
    rc |= get_double(o, "hc_eps", &c->hc_eps, what);
    /* HF config.json names */
    rc |= get_int(o, "hidden_size", &c->dim, what);
    rc |= get_int(o, "num_hidden_layers", &c->n_layers, what);
    rc |= get_int(o, "num_attention_heads", &c->n_heads, what);
    rc |= get_int(o, "moe_intermediate_size", &c->moe_inter_dim, what);
    rc |= get_int(o, "num_experts_per_tok", &c->n_activated_experts, what);
    rc |= get_int(o, "num_hash_layers", &c->n_hash_layers, what);
    rc |= get_int(o, "num_nextn_predict_layers", &c->n_mtp_layers, what);
    rc |= get_double(o, "routed_scaling_factor", &c->route_scale, what);
    rc |= get_string(o, "scoring_func", score, sizeof score, 0, what);
    rc |= get_int(o, "qk_rope_head_dim", &c->rope_head_dim, what);
    rc |= get_int(o, "sliding_window", &c->window_size, what);
    rc |= get_double(o, "rms_norm_eps", &c->norm_eps, what);
    rc |= get_int(o, "max_position_embeddings", &c->max_position_embeddings, what);
    if (rc) return -1;
    if (score[0] && parse_score_func(score, &c->score_func, what)) return -1;
    const json_value *rs = json_get(o, "rope_scaling");
    if (rs && rs->type != JSON_NULL) {
        char type[16] = "";
        if (rs->type != JSON_OBJECT)
            return dsv4_set_error("%s: field \"rope_scaling\" must be an object", what);
        rc |= get_string(rs, "type", type, sizeof type, 0, what);
        rc |= get_double(rs, "factor", &c->rope_factor, what);
        rc |= get_int(rs, "original_max_position_embeddings", &c->original_seq_len, what);
        rc |= get_double(rs, "beta_fast", &c->beta_fast, what);
        rc |= get_double(rs, "beta_slow", &c->beta_slow, what);
        if (rc) return -1;
        if (type[0] && strcmp(type, "yarn") != 0)
            return dsv4_set_error("%s: rope_scaling.type \"%s\" is not supported (only yarn)", what, type);
    }
    const json_value *q = json_get(o, "quantization_config");
    if (q && q->type != JSON_NULL) {
        char method[16] = "", fmt[16] = "";
        if (q->type != JSON_OBJECT)
            return dsv4_set_error("%s: field \"quantization_config\" must be an object", what);
        if (get_string(q, "quant_method", method, sizeof method, 0, what) ||
            get_string(q, "scale_fmt", c->scale_fmt, sizeof c->scale_fmt, 1, what) ||
            get_string(q, "fmt", fmt, sizeof fmt, 0, what))
            return -1;
        if (method[0] && strcmp(method, "fp8") != 0)
            return dsv4_set_error("%s: quantization_config.quant_method \"%s\" is not fp8", what, method);
        if (fmt[0] && strcmp(fmt, "e4m3") != 0)
            return dsv4_set_error("%s: quantization_config.fmt \"%s\" is not e4m3", what, fmt);
        strcpy(c->dtype, "fp8");
    }
    return 0;
}

int dsv4_config_from_json(dsv4_config *c, const char *json, size_t len, const char *what)
{
    char err[256];
    json_value *v = json_parse(json, len, err, sizeof err);
    if (!v) return dsv4_set_error("%s: invalid JSON: %s", what, err);
    int rc = parse_object(c, v, what);
    json_free(v);
    return rc;
}

int dsv4_config_load(dsv4_config *c, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return dsv4_set_error("%s: cannot open config file", path);
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return dsv4_set_error("%s: cannot seek", path); }
    long n = ftell(f);
    if (n < 0 || n > (1L << 24)) { fclose(f); return dsv4_set_error("%s: unreasonable config size", path); }
    rewind(f);
    char *buf = dsv4_calloc((size_t)n + 1, 1, path);
    if (!buf) { fclose(f); return -1; }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) { free(buf); return dsv4_set_error("%s: short read", path); }
    dsv4_config_defaults(c);
    int rc = dsv4_config_from_json(c, buf, (size_t)n, path);
    free(buf);
    if (rc == 0) rc = dsv4_config_validate(c, path);
    return rc;
}

/* ---- validation ---- */

static int is_pow2(int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

/* [CFG-3] Every constraint the forward relies on; the first violated one is reported with the
 * field name, its value and the rule. Pitfall 18: shapes are derived from these fields only. */
int dsv4_config_validate(const dsv4_config *c, const char *what)
{
    struct { const char *name; int64_t v; } pos[] = {
        { "vocab_size", c->vocab_size }, { "dim", c->dim }, { "moe_inter_dim", c->moe_inter_dim },
        { "n_layers", c->n_layers }, { "n_heads", c->n_heads },
        { "n_routed_experts", c->n_routed_experts }, { "n_activated_experts", c->n_activated_experts },
        { "q_lora_rank", c->q_lora_rank }, { "head_dim", c->head_dim },
        { "rope_head_dim", c->rope_head_dim }, { "o_groups", c->o_groups },
        { "o_lora_rank", c->o_lora_rank }, { "window_size", c->window_size },
        { "index_n_heads", c->index_n_heads }, { "index_head_dim", c->index_head_dim },
        { "index_topk", c->index_topk }, { "hc_mult", c->hc_mult },
        { "hc_sinkhorn_iters", c->hc_sinkhorn_iters }, { "max_seq_len", c->max_seq_len },
        { "max_batch_size", c->max_batch_size },
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0)
            return dsv4_set_error("%s: %s = %lld must be positive", what, pos[i].name, (long long)pos[i].v);
    if (c->n_hash_layers < 0 || c->n_hash_layers > c->n_layers)
        return dsv4_set_error("%s: n_hash_layers = %lld must lie in [0, n_layers = %lld]", what,
                              (long long)c->n_hash_layers, (long long)c->n_layers);
    if (c->n_mtp_layers < 0)
        return dsv4_set_error("%s: n_mtp_layers = %lld must be >= 0", what, (long long)c->n_mtp_layers);
    if (c->n_layers + c->n_mtp_layers > DSV4_MAX_LAYERS)
        return dsv4_set_error("%s: n_layers + n_mtp_layers = %lld exceeds %d", what,
                              (long long)(c->n_layers + c->n_mtp_layers), DSV4_MAX_LAYERS);
    if (c->n_ratios < c->n_layers + c->n_mtp_layers)
        return dsv4_set_error("%s: compress_ratios has %lld entries, needs n_layers + n_mtp_layers = %lld",
                              what, (long long)c->n_ratios, (long long)(c->n_layers + c->n_mtp_layers));
    for (int64_t i = 0; i < c->n_ratios; i++)
        if (c->compress_ratios[i] < 0 || c->compress_ratios[i] > c->max_seq_len)
            return dsv4_set_error("%s: compress_ratios[%lld] = %lld must be 0 (SWA), 4 (CSA) or a positive HCA ratio <= max_seq_len",
                                  what, (long long)i, (long long)c->compress_ratios[i]);
    if (c->n_shared_experts != 1)
        return dsv4_set_error("%s: n_shared_experts = %lld, the V4 MoE has exactly 1", what,
                              (long long)c->n_shared_experts);
    if (c->n_activated_experts > c->n_routed_experts)
        return dsv4_set_error("%s: n_activated_experts = %lld exceeds n_routed_experts = %lld", what,
                              (long long)c->n_activated_experts, (long long)c->n_routed_experts);
    if (c->rope_head_dim % 2 != 0 || c->rope_head_dim > c->head_dim)
        return dsv4_set_error("%s: rope_head_dim = %lld must be even and <= head_dim = %lld", what,
                              (long long)c->rope_head_dim, (long long)c->head_dim);
    if (c->rope_head_dim > c->index_head_dim)
        return dsv4_set_error("%s: rope_head_dim = %lld must be <= index_head_dim = %lld", what,
                              (long long)c->rope_head_dim, (long long)c->index_head_dim);
    if (c->n_heads % c->o_groups != 0)
        return dsv4_set_error("%s: n_heads = %lld is not a multiple of o_groups = %lld", what,
                              (long long)c->n_heads, (long long)c->o_groups);
    if (!is_pow2(c->index_head_dim))
        return dsv4_set_error("%s: index_head_dim = %lld must be a power of two (Hadamard rotation)",
                              what, (long long)c->index_head_dim);
    if (!(c->norm_eps > 0.0) || !(c->hc_eps >= 0.0))
        return dsv4_set_error("%s: norm_eps (%g) must be > 0 and hc_eps (%g) >= 0", what, c->norm_eps, c->hc_eps);
    if (!(c->rope_theta > 0.0) || !(c->compress_rope_theta > 0.0))
        return dsv4_set_error("%s: rope_theta (%g) and compress_rope_theta (%g) must be positive", what,
                              c->rope_theta, c->compress_rope_theta);
    if (c->original_seq_len < 0 || (c->original_seq_len > 0 && !(c->rope_factor > 0.0)))
        return dsv4_set_error("%s: original_seq_len = %lld with rope_factor = %g: YaRN needs both positive",
                              what, (long long)c->original_seq_len, c->rope_factor);
    if (!(c->route_scale > 0.0) || c->swiglu_limit < 0.0)
        return dsv4_set_error("%s: route_scale (%g) must be > 0 and swiglu_limit (%g) >= 0", what,
                              c->route_scale, c->swiglu_limit);
    if (strcmp(c->dtype, "bf16") != 0 && strcmp(c->dtype, "fp8") != 0)
        return dsv4_set_error("%s: dtype \"%s\" is not bf16 or fp8", what, c->dtype);
    if (c->expert_dtype[0] && strcmp(c->expert_dtype, "fp4") != 0 && strcmp(c->expert_dtype, "fp8") != 0 &&
        strcmp(c->expert_dtype, "bf16") != 0)
        return dsv4_set_error("%s: expert_dtype \"%s\" is not null, fp4, fp8 or bf16", what, c->expert_dtype);
    if (c->scale_fmt[0] && strcmp(c->scale_fmt, "ue8m0") != 0)
        return dsv4_set_error("%s: scale_fmt \"%s\" is not null or ue8m0", what, c->scale_fmt);
    return 0;
}

/* ---- schedule ---- */

const char *dsv4_layer_kind(const dsv4_config *c, int64_t layer)
{
    int64_t r = c->compress_ratios[layer];
    return r == 0 ? "SWA" : r == 4 ? "CSA" : "HCA";
}
