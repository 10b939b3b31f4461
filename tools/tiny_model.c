/* tiny_model.c — seeded random V4 weights under the official names (tools/tiny_model.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tiny_model.h"
#include "safetensors.h"

/* [MDL-9] The embedded tiny config (tools/tiny_model.h); dims all distinct (pitfall 18). */
void tiny_model_config(dsv4_config *c)
{
    static const int64_t ratios[5] = { 0, 4, 8, 4, 0 };
    dsv4_config_defaults(c);
    c->vocab_size = 96;
    c->dim = 64;
    c->moe_inter_dim = 48;
    c->n_layers = 4;
    c->n_hash_layers = 1;
    c->n_mtp_layers = 1;
    c->n_heads = 4;
    c->n_routed_experts = 6;
    c->n_activated_experts = 2;
    c->route_scale = 1.5;
    c->swiglu_limit = 10.0;
    c->q_lora_rank = 40;
    c->head_dim = 96;
    c->rope_head_dim = 32;
    c->o_groups = 2;
    c->o_lora_rank = 24;
    c->window_size = 8;
    c->n_ratios = 5;
    for (int i = 0; i < 5; i++) c->compress_ratios[i] = ratios[i];
    c->compress_rope_theta = 160000.0;
    c->original_seq_len = 32;
    c->rope_factor = 4.0;
    c->index_n_heads = 3;
    c->index_head_dim = 64;
    c->index_topk = 3;
    strcpy(c->dtype, "bf16");
    c->expert_dtype[0] = 0;
    c->max_seq_len = 64;
    c->max_batch_size = 1;
}

typedef struct { uint64_t s; } rng;

/* xorshift64*, uniform in [-1, 1) */
static double rng_uniform(rng *r)
{
    r->s ^= r->s >> 12; r->s ^= r->s << 25; r->s ^= r->s >> 27;
    uint64_t v = r->s * 2685821657736338717ULL;
    return (double)(v >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
}

typedef struct { st_writer *w; rng r; float *buf; size_t cap; int rc; } gen;

/* adds a [rows, cols] tensor of values offset + scale * U(-1, 1) in dtype */
static void add(gen *g, dsv4_dtype dt, const char *name, int64_t rows, int64_t cols, double offset, double scale)
{
    int64_t shape[2] = { rows, cols };
    size_t n = (size_t)(rows * cols);
    if (g->rc) return;
    if (n > g->cap) {
        float *nb = realloc(g->buf, n * sizeof *nb);
        if (!nb) { g->rc = dsv4_set_error("tiny model: out of memory"); return; }
        g->buf = nb;
        g->cap = n;
    }
    for (size_t i = 0; i < n; i++) g->buf[i] = (float)(offset + scale * rng_uniform(&g->r));
    if (st_writer_add_f32(g->w, name, dt, 2, shape, g->buf))
        g->rc = -1;
}

static void add_vec(gen *g, dsv4_dtype dt, const char *name, int64_t n, double offset, double scale)
{
    int64_t shape[1] = { n };
    if (g->rc) return;
    if ((size_t)n > g->cap) {
        float *nb = realloc(g->buf, (size_t)n * sizeof *nb);
        if (!nb) { g->rc = dsv4_set_error("tiny model: out of memory"); return; }
        g->buf = nb;
        g->cap = (size_t)n;
    }
    for (int64_t i = 0; i < n; i++) g->buf[i] = (float)(offset + scale * rng_uniform(&g->r));
    if (st_writer_add_f32(g->w, name, dt, 1, shape, g->buf)) g->rc = -1;
}

/* a Linear weight [out, in] with U(-sqrt(3/in), sqrt(3/in)) entries (unit-variance outputs) */
static void add_linear(gen *g, const char *name, int64_t out, int64_t in)
{
    add(g, DSV4_BF16, name, out, in, 0.0, sqrt(3.0 / (double)in));
}

static void add_block(gen *g, const dsv4_config *c, const char *p, int64_t id, int is_mtp)
{
    char n[160];
    int64_t hc = c->hc_mult, d = c->dim, nmix = (2 + hc) * hc, D = c->head_dim;
    int64_t ratio = c->compress_ratios[id];
    static const char *const which[2] = { "attn", "ffn" };
    for (int w = 0; w < 2; w++) {
        snprintf(n, sizeof n, "%s.hc_%s_fn", p, which[w]);
        add(g, DSV4_F32, n, nmix, hc * d, 0.0, 1.0 / sqrt((double)(hc * d)));
        snprintf(n, sizeof n, "%s.hc_%s_base", p, which[w]);
        add_vec(g, DSV4_F32, n, nmix, 0.0, 1.0);
        snprintf(n, sizeof n, "%s.hc_%s_scale", p, which[w]);
        add_vec(g, DSV4_F32, n, 3, 0.5, 0.3);
    }
    snprintf(n, sizeof n, "%s.attn_norm.weight", p); add_vec(g, DSV4_BF16, n, d, 1.0, 0.2);
    snprintf(n, sizeof n, "%s.ffn_norm.weight", p); add_vec(g, DSV4_BF16, n, d, 1.0, 0.2);
    snprintf(n, sizeof n, "%s.attn.wq_a.weight", p); add_linear(g, n, c->q_lora_rank, d);
    snprintf(n, sizeof n, "%s.attn.q_norm.weight", p); add_vec(g, DSV4_BF16, n, c->q_lora_rank, 1.0, 0.2);
    snprintf(n, sizeof n, "%s.attn.wq_b.weight", p); add_linear(g, n, c->n_heads * D, c->q_lora_rank);
    snprintf(n, sizeof n, "%s.attn.wkv.weight", p); add_linear(g, n, D, d);
    snprintf(n, sizeof n, "%s.attn.kv_norm.weight", p); add_vec(g, DSV4_BF16, n, D, 1.0, 0.2);
    snprintf(n, sizeof n, "%s.attn.wo_a.weight", p);
    add_linear(g, n, c->o_groups * c->o_lora_rank, c->n_heads * D / c->o_groups);
    snprintf(n, sizeof n, "%s.attn.wo_b.weight", p); add_linear(g, n, d, c->o_groups * c->o_lora_rank);
    snprintf(n, sizeof n, "%s.attn.attn_sink", p); add_vec(g, DSV4_F32, n, c->n_heads, 0.0, 2.0);
    if (ratio > 0) {
        int64_t k = ratio == 4 ? 2 : 1;
        snprintf(n, sizeof n, "%s.attn.compressor.ape", p); add(g, DSV4_F32, n, ratio, k * D, 0.0, 0.5);
        snprintf(n, sizeof n, "%s.attn.compressor.wkv.weight", p); add(g, DSV4_F32, n, k * D, d, 0.0, sqrt(3.0 / (double)d));
        snprintf(n, sizeof n, "%s.attn.compressor.wgate.weight", p); add(g, DSV4_F32, n, k * D, d, 0.0, sqrt(3.0 / (double)d));
        snprintf(n, sizeof n, "%s.attn.compressor.norm.weight", p); add_vec(g, DSV4_BF16, n, D, 1.0, 0.2);
    }
    if (ratio == 4) {
        int64_t DI = c->index_head_dim;
        snprintf(n, sizeof n, "%s.attn.indexer.wq_b.weight", p); add_linear(g, n, c->index_n_heads * DI, c->q_lora_rank);
        snprintf(n, sizeof n, "%s.attn.indexer.weights_proj.weight", p); add_linear(g, n, c->index_n_heads, d);
        snprintf(n, sizeof n, "%s.attn.indexer.compressor.ape", p); add(g, DSV4_F32, n, 4, 2 * DI, 0.0, 0.5);
        snprintf(n, sizeof n, "%s.attn.indexer.compressor.wkv.weight", p); add(g, DSV4_F32, n, 2 * DI, d, 0.0, sqrt(3.0 / (double)d));
        snprintf(n, sizeof n, "%s.attn.indexer.compressor.wgate.weight", p); add(g, DSV4_F32, n, 2 * DI, d, 0.0, sqrt(3.0 / (double)d));
        snprintf(n, sizeof n, "%s.attn.indexer.compressor.norm.weight", p); add_vec(g, DSV4_BF16, n, DI, 1.0, 0.2);
    }
    snprintf(n, sizeof n, "%s.ffn.gate.weight", p); add_linear(g, n, c->n_routed_experts, d);
    if (id < c->n_hash_layers) {
        int64_t shape[2] = { c->vocab_size, c->n_activated_experts };
        int32_t *t2e = calloc((size_t)(c->vocab_size * c->n_activated_experts), sizeof *t2e);
        if (!t2e) { g->rc = dsv4_set_error("tiny model: out of memory"); return; }
        for (int64_t v = 0; v < c->vocab_size; v++)
            for (int64_t j = 0; j < c->n_activated_experts; j++)   /* distinct experts per token */
                t2e[v * c->n_activated_experts + j] = (int32_t)((v * 7 + j) % c->n_routed_experts);
        snprintf(n, sizeof n, "%s.ffn.gate.tid2eid", p);
        if (!g->rc && st_writer_add(g->w, n, DSV4_I32, 2, shape, t2e,
                                    (size_t)(c->vocab_size * c->n_activated_experts) * sizeof *t2e))
            g->rc = -1;
        free(t2e);
    } else {
        snprintf(n, sizeof n, "%s.ffn.gate.bias", p); add_vec(g, DSV4_F32, n, c->n_routed_experts, 0.0, 0.3);
    }
    for (int64_t e = 0; e <= c->n_routed_experts; e++) {
        char base[96];
        if (e < c->n_routed_experts) snprintf(base, sizeof base, "%s.ffn.experts.%lld", p, (long long)e);
        else snprintf(base, sizeof base, "%s.ffn.shared_experts", p);
        snprintf(n, sizeof n, "%s.w1.weight", base); add_linear(g, n, c->moe_inter_dim, d);
        snprintf(n, sizeof n, "%s.w2.weight", base); add_linear(g, n, d, c->moe_inter_dim);
        snprintf(n, sizeof n, "%s.w3.weight", base); add_linear(g, n, c->moe_inter_dim, d);
    }
    if (!is_mtp) return;
    snprintf(n, sizeof n, "%s.e_proj.weight", p); add_linear(g, n, d, d);
    snprintf(n, sizeof n, "%s.h_proj.weight", p); add_linear(g, n, d, d);
    snprintf(n, sizeof n, "%s.enorm.weight", p); add_vec(g, DSV4_BF16, n, d, 1.0, 0.2);
    snprintf(n, sizeof n, "%s.hnorm.weight", p); add_vec(g, DSV4_BF16, n, d, 1.0, 0.2);
    snprintf(n, sizeof n, "%s.norm.weight", p); add_vec(g, DSV4_BF16, n, d, 1.0, 0.2);
    snprintf(n, sizeof n, "%s.hc_head_fn", p); add(g, DSV4_F32, n, hc, hc * d, 0.0, 1.0 / sqrt((double)(hc * d)));
    snprintf(n, sizeof n, "%s.hc_head_base", p); add_vec(g, DSV4_F32, n, hc, 0.0, 1.0);
    snprintf(n, sizeof n, "%s.hc_head_scale", p); add_vec(g, DSV4_F32, n, 1, 0.5, 0.2);
}

/* [MDL-9] Seeded weights for every tensor [MDL-5] requests, written to path. */
int tiny_model_write(const dsv4_config *c, uint64_t seed, const char *path)
{
    gen g;
    memset(&g, 0, sizeof g);
    g.r.s = seed ? seed : 1;
    g.w = st_writer_new();
    if (!g.w) return dsv4_set_error("tiny model: out of memory");
    int64_t hc = c->hc_mult, d = c->dim;
    add(&g, DSV4_BF16, "embed.weight", c->vocab_size, d, 0.0, 1.0);
    add(&g, DSV4_BF16, "head.weight", c->vocab_size, d, 0.0, sqrt(3.0 / (double)d));
    add_vec(&g, DSV4_BF16, "norm.weight", d, 1.0, 0.2);
    add(&g, DSV4_F32, "hc_head_fn", hc, hc * d, 0.0, 1.0 / sqrt((double)(hc * d)));
    add_vec(&g, DSV4_F32, "hc_head_base", hc, 0.0, 1.0);
    add_vec(&g, DSV4_F32, "hc_head_scale", 1, 0.5, 0.2);
    for (int64_t i = 0; i < c->n_layers; i++) {
        char p[32];
        snprintf(p, sizeof p, "layers.%lld", (long long)i);
        add_block(&g, c, p, i, 0);
    }
    for (int64_t j = 0; j < c->n_mtp_layers; j++) {
        char p[32];
        snprintf(p, sizeof p, "mtp.%lld", (long long)j);
        add_block(&g, c, p, c->n_layers + j, 1);
    }
    if (g.rc == 0 && st_writer_meta(g.w, "source", "dsv4ref tiny model (seeded random weights)")) g.rc = -1;
    if (g.rc == 0 && st_writer_save(g.w, path, 0)) g.rc = -1;
    st_writer_free(g.w);
    free(g.buf);
    return g.rc;
}
