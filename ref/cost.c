/* cost.c — the decode cost model: exact multiply-adds and KV bytes per token
 * (spec/cost-model.md [COST-1] … [COST-15]). Plain integer arithmetic; nothing here runs a
 * model. Functions in the order of the spec page: models, one layer's attention by family,
 * the trunk (mHC, FFN, head), the decode step, the KV cache, context parsing. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cost.h"
#include "dsv4ref.h"

#define COST_MAX_T ((int64_t)1 << 40)

/* [COST-1] the smaller of two counts. */
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- names ---- */
static const char *const k_lt_names[COST_LT_COUNT] = {
    "mha", "mla", "dsa", "swa", "csa", "hca", "window-global", "linformer", "performer", "ssm",
};
static const char *const k_fmt_names[COST_KV_FORMAT_COUNT] = { "deploy", "fp8-index", "bf16" };

/* [COST-1] t: a layer type. Returns its short name. */
const char *cost_layer_type_name(cost_layer_type t)
{
    if ((int)t < 0 || (int)t >= COST_LT_COUNT) return "?";
    return k_lt_names[t];
}

/* [COST-12] f: a KV format. Returns its name. */
const char *cost_kv_format_name(cost_kv_format f)
{
    if ((int)f < 0 || (int)f >= COST_KV_FORMAT_COUNT) return "?";
    return k_fmt_names[f];
}

/* [COST-12] s: "deploy" | "fp8-index" | "bf16". 0 ok, -1 with an error naming s. */
int cost_kv_format_parse(const char *s, cost_kv_format *out)
{
    for (int i = 0; i < COST_KV_FORMAT_COUNT; i++)
        if (strcmp(s, k_fmt_names[i]) == 0) { *out = (cost_kv_format)i; return 0; }
    return dsv4_set_error("KV format '%s': expected deploy, fp8-index or bf16", s);
}

/* ---- the official V4 configs (v4-architecture.md §1.1 table, §1.3 schedules) ---- */

/* [COST-1] c: filled with the fields the cost model reads, common to Flash and Pro; the
 * rest (RoPE, eps, dtypes) set to the official values for completeness. */
static void v4_common(dsv4_config *c)
{
    memset(c, 0, sizeof *c);
    c->vocab_size = 129280;
    c->n_hash_layers = 3;
    c->n_mtp_layers = 1;
    c->n_shared_experts = 1;
    c->n_activated_experts = 6;
    c->score_func = SCORE_SQRTSOFTPLUS;
    c->swiglu_limit = 10.0;
    c->head_dim = 512;
    c->rope_head_dim = 64;
    c->norm_eps = 1e-6;
    c->o_lora_rank = 1024;
    c->window_size = 128;
    c->compress_rope_theta = 160000.0;
    c->rope_theta = 10000.0;
    c->rope_factor = 16.0;
    c->original_seq_len = 65536;
    c->beta_fast = 32.0;
    c->beta_slow = 1.0;
    c->index_n_heads = 64;
    c->index_head_dim = 128;
    c->hc_mult = 4;
    c->hc_sinkhorn_iters = 20;
    c->hc_eps = 1e-6;
    strcpy(c->dtype, "fp8");
    strcpy(c->expert_dtype, "fp4");
    strcpy(c->scale_fmt, "ue8m0");
    c->max_seq_len = 4096;
    c->max_batch_size = 4;
}

/* [COST-1] V4-Pro (CP): d 7168, 61 layers, 128 heads, 384 experts, compress_ratios
 * [128,128] + [4,128]*29 + [4] + [0] (62 entries, the last is the MTP block). */
void cost_v4_pro_config(dsv4_config *c)
{
    v4_common(c);
    c->dim = 7168; c->moe_inter_dim = 3072; c->n_layers = 61; c->n_heads = 128;
    c->n_routed_experts = 384; c->route_scale = 2.5; c->q_lora_rank = 1536;
    c->o_groups = 16; c->index_topk = 1024;
    c->n_ratios = 62;
    c->compress_ratios[0] = 128; c->compress_ratios[1] = 128;
    for (int i = 2; i < 61; i++) c->compress_ratios[i] = (i % 2 == 0) ? 4 : 128;
    c->compress_ratios[61] = 0;
}

/* [COST-1] V4-Flash (CF): d 4096, 43 layers, 64 heads, 256 experts, compress_ratios
 * [0,0] + [4,128]*20 + [4] + [0] (44 entries). */
void cost_v4_flash_config(dsv4_config *c)
{
    v4_common(c);
    c->dim = 4096; c->moe_inter_dim = 2048; c->n_layers = 43; c->n_heads = 64;
    c->n_routed_experts = 256; c->route_scale = 1.5; c->q_lora_rank = 1024;
    c->o_groups = 8; c->index_topk = 512;
    c->n_ratios = 44;
    c->compress_ratios[0] = 0; c->compress_ratios[1] = 0;
    for (int i = 2; i < 43; i++) c->compress_ratios[i] = (i % 2 == 0) ? 4 : 128;
    c->compress_ratios[43] = 0;
}

/* ---- models ---- */

/* [COST-10] m: gets the V3 / V3.2 trunk (d 7168, 61 layers, first 3 dense FFN 18432,
 * MoE 256 routed + 1 shared, 8 active, width 2048, vocab 129280, plain residual). */
static void v3_trunk(cost_model *m)
{
    m->dim = 7168; m->n_layers = 61; m->vocab_size = 129280; m->hc_mult = 0;
    m->n_dense_layers = 3; m->dense_inter = 18432;
    m->moe_inter_dim = 2048; m->n_routed_experts = 256; m->n_activated_experts = 8;
    m->n_shared_experts = 1;
}

/* [COST-3] m: gets the V3 MLA attention dims (H 128, r_q 1536, r_kv 512, 128 + 64 / 128). */
static void v3_mla(cost_model *m)
{
    m->n_heads = 128; m->q_lora_rank = 1536; m->kv_lora_rank = 512;
    m->qk_nope_head_dim = 128; m->qk_rope_head_dim = 64; m->v_head_dim = 128;
}

/* [COST-13..15] m: gets the V4-Pro trunk (d, layers, vocab, mHC, MoE) with an MHA-shaped
 * attention of 128 heads × 128 (the same-size baseline the hypothetical variants modify). */
static void pro_sized(cost_model *m)
{
    dsv4_config p;
    cost_v4_pro_config(&p);
    m->dim = p.dim; m->n_layers = p.n_layers; m->vocab_size = p.vocab_size;
    m->hc_mult = p.hc_mult; m->n_dense_layers = 0; m->dense_inter = 0;
    m->moe_inter_dim = p.moe_inter_dim; m->n_routed_experts = p.n_routed_experts;
    m->n_activated_experts = p.n_activated_experts; m->n_shared_experts = p.n_shared_experts;
    m->n_heads = 128; m->head_dim_qk = 128; m->head_dim_v = 128;
}

/* [COST-1] m: the cost model of V4 config c under `name`. Checks the fields the formulas
 * divide by or index with. */
int cost_model_from_v4(cost_model *m, const dsv4_config *c, const char *name)
{
    memset(m, 0, sizeof *m);
    if (c->dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->head_dim <= 0)
        return dsv4_set_error("%s: dim, n_layers, n_heads, head_dim must be positive", name);
    if (c->n_layers > DSV4_MAX_LAYERS || c->n_ratios < c->n_layers)
        return dsv4_set_error("%s: compress_ratios has %lld entries for %lld layers", name,
                              (long long)c->n_ratios, (long long)c->n_layers);
    if (c->rope_head_dim < 0 || c->rope_head_dim > c->head_dim)
        return dsv4_set_error("%s: rope_head_dim %lld outside [0, head_dim]", name, (long long)c->rope_head_dim);
    if (c->o_groups <= 0 || c->n_heads % c->o_groups != 0)
        return dsv4_set_error("%s: o_groups %lld does not divide n_heads %lld", name,
                              (long long)c->o_groups, (long long)c->n_heads);
    for (int64_t i = 0; i < c->n_layers; i++)
        if (c->compress_ratios[i] < 0)
            return dsv4_set_error("%s: compress_ratios[%lld] = %lld is negative", name,
                                  (long long)i, (long long)c->compress_ratios[i]);
    m->v4 = *c;
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->label, sizeof m->label, "%s (V4: CSA/HCA/SWA)", name);
    m->family = COST_FAM_V4;
    m->dim = c->dim; m->n_layers = c->n_layers; m->vocab_size = c->vocab_size;
    m->hc_mult = c->hc_mult; m->n_dense_layers = 0; m->dense_inter = 0;
    m->moe_inter_dim = c->moe_inter_dim; m->n_routed_experts = c->n_routed_experts;
    m->n_activated_experts = c->n_activated_experts; m->n_shared_experts = c->n_shared_experts;
    m->n_heads = c->n_heads;
    m->q_lora_rank = c->q_lora_rank;
    m->index_n_heads = c->index_n_heads; m->index_head_dim = c->index_head_dim;
    m->index_topk = c->index_topk; m->window = c->window_size;
    return 0;
}

static const char *const k_builtin[] = {
    "v3.2", "v4-pro", "v4-flash", "mla", "mha", "window-global", "linformer", "performer", "mamba",
};

/* [COST-1] i: 0-based index. Returns the i-th built-in name or NULL. */
const char *cost_builtin_name(int i)
{
    if (i < 0 || i >= (int)(sizeof k_builtin / sizeof k_builtin[0])) return NULL;
    return k_builtin[i];
}

/* [COST-1] name: a built-in model. m: filled. Every dimension is a published config value
 * (mla-dsa.md §4.1, v4-architecture.md §1.1) or, for the hypothetical rows, an assumption
 * written into m->assumptions. */
int cost_builtin(const char *name, cost_model *m)
{
    dsv4_config c;
    memset(m, 0, sizeof *m);
    if (strcmp(name, "v4-pro") == 0 || strcmp(name, "v4-flash") == 0) {
        int pro = strcmp(name, "v4-pro") == 0;
        if (pro) cost_v4_pro_config(&c); else cost_v4_flash_config(&c);
        if (cost_model_from_v4(m, &c, name) != 0) return -1;
        snprintf(m->label, sizeof m->label, "%s", pro ? "V4-Pro (30 CSA + 31 HCA)" : "V4-Flash (21 CSA + 20 HCA + 2 SWA)");
        m->claim_flops = pro ? 0.27 : 0.10;
        m->claim_kv = pro ? 0.10 : 0.07;
        return 0;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    if (strcmp(name, "v3.2") == 0) {
        v3_trunk(m); v3_mla(m);
        m->family = COST_FAM_DSA;
        m->index_n_heads = 64; m->index_head_dim = 128; m->index_topk = 2048;
        snprintf(m->label, sizeof m->label, "V3.2 (MLA + DSA, 61 layers)");
        return 0;
    }
    if (strcmp(name, "mla") == 0) {
        v3_trunk(m); v3_mla(m);
        m->family = COST_FAM_MLA;
        snprintf(m->label, sizeof m->label, "MLA dense (V3, absorbed decode)");
        return 0;
    }
    if (strcmp(name, "mha") == 0) {
        v3_trunk(m);
        m->family = COST_FAM_MHA;
        m->n_heads = 128; m->head_dim_qk = 128; m->head_dim_v = 128;
        snprintf(m->label, sizeof m->label, "MHA dense (V3-sized, 128 x 128)");
        snprintf(m->assumptions, sizeof m->assumptions,
                 "hypothetical: V3 trunk (d 7168, 61 layers, same FFN) with dense MHA, 128 heads, "
                 "d_qk = d_v = 128, bf16 K and V cached (mla-dsa.md section 2)");
        m->hypothetical = 1;
        return 0;
    }
    if (strcmp(name, "window-global") == 0) {
        pro_sized(m);
        m->family = COST_FAM_WINDOW_GLOBAL;
        m->window = 4096; m->n_global = 128;
        snprintf(m->label, sizeof m->label, "window 4096 + 128 global (Longformer-like)");
        snprintf(m->assumptions, sizeof m->assumptions,
                 "hypothetical same-size variant: V4-Pro trunk (d 7168, 61 layers, mHC, MoE, head), "
                 "attention = MHA 128 heads x 128 over the last 4096 tokens plus the first 128 "
                 "(global) tokens; only those 4224 tokens' bf16 K,V are kept (no BigBird random "
                 "blocks, which would need the whole cache)");
        m->hypothetical = 1;
        return 0;
    }
    if (strcmp(name, "linformer") == 0) {
        pro_sized(m);
        m->family = COST_FAM_LINFORMER;
        m->proj_rank = 256;
        snprintf(m->label, sizeof m->label, "low-rank k = 256 (Linformer-like)");
        snprintf(m->assumptions, sizeof m->assumptions,
                 "hypothetical same-size variant: V4-Pro trunk, attention = MHA 128 heads x 128 "
                 "over k = 256 projected keys/values kept as causal running sums K' += e_t k_t, "
                 "V' += e_t v_t (fp32 state, 2 k H d_h values); Linformer's fixed-length E is "
                 "idealised as causal");
        m->hypothetical = 1;
        return 0;
    }
    if (strcmp(name, "performer") == 0) {
        pro_sized(m);
        m->family = COST_FAM_PERFORMER;
        m->n_features = 256;
        snprintf(m->label, sizeof m->label, "kernel m = 256 features (Performer-like)");
        snprintf(m->assumptions, sizeof m->assumptions,
                 "hypothetical same-size variant: V4-Pro trunk, attention = causal linear attention "
                 "with m = 256 random features per head, 128 heads x 128; fp32 state S (m x d_v) "
                 "and z (m) per head");
        m->hypothetical = 1;
        return 0;
    }
    if (strcmp(name, "mamba") == 0) {
        pro_sized(m);
        m->family = COST_FAM_MAMBA;
        m->n_heads = 0; m->head_dim_qk = 0; m->head_dim_v = 0;
        m->ssm_inner = 2 * m->dim; m->ssm_state = 16; m->ssm_conv = 4;
        m->ssm_dt_rank = (m->dim + 15) / 16;
        snprintf(m->label, sizeof m->label, "SSM N = 16 (Mamba-like)");
        snprintf(m->assumptions, sizeof m->assumptions,
                 "hypothetical same-size variant: V4-Pro trunk, every attention replaced by a "
                 "Mamba-1 mixer: expand 2 (inner 14336), state N = 16, conv 4, dt_rank "
                 "ceil(d/16) = 448; fp32 conv + SSM state");
        m->hypothetical = 1;
        return 0;
    }
    return dsv4_set_error("unknown model '%s' (known: v3.2, v4-pro, v4-flash, mla, mha, "
                          "window-global, linformer, performer, mamba)", name);
}

/* ---- attention, one layer, one decode step ---- */

/* [COST-2] MHA layer at position t. a: madds per component (added to). Keys: all t+1. */
static void attn_mha(const cost_model *m, int64_t t, int64_t *a)
{
    int64_t d = m->dim, H = m->n_heads, dk = m->head_dim_qk, dv = m->head_dim_v;
    a[DSV4_COMP_Q_PROJ] += d * H * dk;
    a[DSV4_COMP_KV_PROJ] += d * H * (dk + dv);
    a[DSV4_COMP_O_PROJ] += H * dv * d;
    a[DSV4_COMP_CORE_ATTN] += (t + 1) * H * (dk + dv);
}

/* [COST-3] MLA (absorbed) projections, shared by MLA and DSA: wq_a, wq_b (or wq when
 * r_q = 0), the q absorption by W^UK, wkv_a, the value up-projection W^UV, wo. */
static void mla_projections(const cost_model *m, int64_t *a)
{
    int64_t d = m->dim, H = m->n_heads, rq = m->q_lora_rank, rkv = m->kv_lora_rank;
    int64_t dn = m->qk_nope_head_dim, dr = m->qk_rope_head_dim, dv = m->v_head_dim;
    a[DSV4_COMP_Q_PROJ] += (rq > 0 ? d * rq + rq * H * (dn + dr) : d * H * (dn + dr)) + H * dn * rkv;
    a[DSV4_COMP_KV_PROJ] += d * (rkv + dr);
    a[DSV4_COMP_O_PROJ] += H * rkv * dv + H * dv * d;
}

/* [COST-3] MLA layer: absorbed core over all t+1 cached latents, per key and head
 * q̃·c (r_kv) + q^R·k^R (d_r) + p·c (r_kv). */
static void attn_mla(const cost_model *m, int64_t t, int64_t *a)
{
    mla_projections(m, a);
    a[DSV4_COMP_CORE_ATTN] += (t + 1) * m->n_heads * (2 * m->kv_lora_rank + m->qk_rope_head_dim);
}

/* [COST-4] DSA layer: indexer projections (wq_b^I, wk^I, weights_proj), scores over all t+1
 * tokens (H_I·D_I dot-product madds + H_I head-weighting madds per token), MLA core over
 * min(k, t+1) selected tokens. */
static void attn_dsa(const cost_model *m, int64_t t, int64_t *a)
{
    int64_t d = m->dim, HI = m->index_n_heads, DI = m->index_head_dim;
    mla_projections(m, a);
    a[DSV4_COMP_INDEX_PROJ] += m->q_lora_rank * HI * DI + d * DI + d * HI;
    a[DSV4_COMP_INDEX_SCORE] += (t + 1) * HI * (DI + 1);
    a[DSV4_COMP_CORE_ATTN] += min64(m->index_topk, t + 1) * m->n_heads * (2 * m->kv_lora_rank + m->qk_rope_head_dim);
}

/* [COST-7] One compressor of ratio r, entry width c, at position t: the wkv and wgate
 * projections of every token (κc × d each, κ = 2 when overlapping), and, when (t+1) mod r = 0
 * (an entry is emitted), the per-channel pooling sum over the entry's source positions:
 * r of them, plus r from the previous block when overlapping and the entry is not the first. */
static int64_t compressor_madds(int64_t d, int64_t ratio, int64_t c, int overlap, int64_t t)
{
    int64_t kappa = overlap ? 2 : 1;
    int64_t madds = 2 * kappa * c * d;
    if ((t + 1) % ratio == 0) {
        int64_t j = (t + 1) / ratio - 1;                  /* the entry emitted now */
        int64_t npos = ratio + ((overlap && j >= 1) ? ratio : 0);
        madds += npos * c;
    }
    return madds;
}

/* [COST-5..8] V4 layer `layer` (ratio m = compress_ratios[layer]) at position t.
 * [COST-5] projections wq_a, wq_b, wkv, wo_a (grouped: R × H·D/G per group), wo_b;
 * [COST-6] core: H·2D madds per listed key, keys = min(w, t+1) window rows
 *          + min(k_I, ⌊(t+1)/4⌋) selected entries (CSA) or ⌊(t+1)/m⌋ entries (HCA);
 * [COST-7] compressors (main; CSA also the indexer's, width D_I);
 * [COST-8] CSA indexer: wq_b^I, weights_proj; scores H_I·(D_I + 1) per visible entry.
 * Returns the layer type. */
static cost_layer_type attn_v4(const dsv4_config *c, int64_t layer, int64_t t, int64_t *a)
{
    int64_t d = c->dim, rq = c->q_lora_rank, H = c->n_heads, D = c->head_dim;
    int64_t G = c->o_groups, R = c->o_lora_rank, ratio = c->compress_ratios[layer];
    int64_t keys = min64(c->window_size, t + 1);
    cost_layer_type lt;

    a[DSV4_COMP_Q_PROJ] += d * rq + rq * H * D;
    a[DSV4_COMP_KV_PROJ] += d * D;
    a[DSV4_COMP_O_PROJ] += G * R * (H * D / G) + G * R * d;
    if (ratio == 0) {
        lt = COST_LT_SWA;
    } else if (ratio == 4) {
        int64_t HI = c->index_n_heads, DI = c->index_head_dim, visible = (t + 1) / 4;
        a[DSV4_COMP_COMPRESSOR] += compressor_madds(d, 4, D, 1, t) + compressor_madds(d, 4, DI, 1, t);
        a[DSV4_COMP_INDEX_PROJ] += rq * HI * DI + d * HI;
        a[DSV4_COMP_INDEX_SCORE] += visible * HI * (DI + 1);
        keys += min64(c->index_topk, visible);
        lt = COST_LT_CSA;
    } else {
        a[DSV4_COMP_COMPRESSOR] += compressor_madds(d, ratio, D, 0, t);
        keys += (t + 1) / ratio;
        lt = COST_LT_HCA;
    }
    a[DSV4_COMP_CORE_ATTN] += keys * H * 2 * D;
    return lt;
}

/* [COST-13] Window + global: MHA over min(t+1, w + g) keys (the last w and the first g). */
static void attn_window_global(const cost_model *m, int64_t t, int64_t *a)
{
    int64_t d = m->dim, H = m->n_heads, dk = m->head_dim_qk, dv = m->head_dim_v;
    a[DSV4_COMP_Q_PROJ] += d * H * dk;
    a[DSV4_COMP_KV_PROJ] += d * H * (dk + dv);
    a[DSV4_COMP_O_PROJ] += H * dv * d;
    a[DSV4_COMP_CORE_ATTN] += min64(t + 1, m->window + m->n_global) * H * (dk + dv);
}

/* [COST-14] Linformer-like: MHA projections; state update K' += e_t k_t, V' += e_t v_t
 * (k·H·(d_qk + d_v)); core over the k projected rows. */
static void attn_linformer(const cost_model *m, int64_t t, int64_t *a)
{
    int64_t d = m->dim, H = m->n_heads, dk = m->head_dim_qk, dv = m->head_dim_v, k = m->proj_rank;
    (void)t;
    a[DSV4_COMP_Q_PROJ] += d * H * dk;
    a[DSV4_COMP_KV_PROJ] += d * H * (dk + dv);
    a[DSV4_COMP_O_PROJ] += H * dv * d;
    a[DSV4_COMP_STATE] += k * H * (dk + dv);
    a[DSV4_COMP_CORE_ATTN] += k * H * (dk + dv);
}

/* [COST-14] Performer-like: MHA projections; feature maps φ(q), φ(k) (m × d_qk per head
 * each) and the state update S += φ(k) vᵀ (m × d_v); readout φ(q)ᵀS and φ(q)·z (m(d_v+1)). */
static void attn_performer(const cost_model *m, int64_t t, int64_t *a)
{
    int64_t d = m->dim, H = m->n_heads, dk = m->head_dim_qk, dv = m->head_dim_v, f = m->n_features;
    (void)t;
    a[DSV4_COMP_Q_PROJ] += d * H * dk;
    a[DSV4_COMP_KV_PROJ] += d * H * (dk + dv);
    a[DSV4_COMP_O_PROJ] += H * dv * d;
    a[DSV4_COMP_STATE] += H * f * (2 * dk + dv);
    a[DSV4_COMP_CORE_ATTN] += H * f * (dv + 1);
}

/* [COST-15] Mamba-like mixer: in_proj (d → 2E), x_proj (E → dt_rank + 2N), dt_proj
 * (dt_rank → E) counted as kv_proj; conv (E·conv), scan h ← Āh + B̄x (2EN), readout C·h
 * and D·x (EN + E) counted as state; out_proj (E → d) as o_proj. E = inner width. */
static void attn_mamba(const cost_model *m, int64_t t, int64_t *a)
{
    int64_t d = m->dim, E = m->ssm_inner, N = m->ssm_state, dtr = m->ssm_dt_rank;
    (void)t;
    a[DSV4_COMP_KV_PROJ] += d * 2 * E + E * (dtr + 2 * N) + dtr * E;
    a[DSV4_COMP_STATE] += E * m->ssm_conv + 2 * E * N + E * N + E;
    a[DSV4_COMP_O_PROJ] += E * d;
}

/* ---- trunk: mHC, FFN, head ---- */

/* [COST-9] mHC of one layer (two sublayers), n streams of width d: per sublayer HCPre's mix
 * ((2+n)n × nd), its weighted stream sum (nd) and HCPost (nd(n+1)). 0 without mHC. */
static int64_t mhc_layer_madds(int64_t n, int64_t d)
{
    if (n <= 0) return 0;
    return 2 * ((2 + n) * n * n * d + n * d + n * d * (n + 1));
}

/* [COST-10] FFN of layer `layer`: dense (3·d·inter) for the first n_dense_layers, otherwise
 * router d·E (every MoE layer, hash-routed ones included: the official Gate computes all E
 * scores), routed k·3·d·m, shared s·3·d·m. */
static void ffn_layer(const cost_model *m, int64_t layer, int64_t *a)
{
    int64_t d = m->dim;
    if (layer < m->n_dense_layers) {
        a[DSV4_COMP_DENSE_FFN] += 3 * d * m->dense_inter;
        return;
    }
    a[DSV4_COMP_MOE_ROUTER] += d * m->n_routed_experts;
    a[DSV4_COMP_MOE_ROUTED] += m->n_activated_experts * 3 * d * m->moe_inter_dim;
    a[DSV4_COMP_MOE_SHARED] += m->n_shared_experts * 3 * d * m->moe_inter_dim;
}

/* ---- one decode step ---- */

static const int k_attn_side[] = {
    DSV4_COMP_Q_PROJ, DSV4_COMP_KV_PROJ, DSV4_COMP_O_PROJ, DSV4_COMP_CORE_ATTN,
    DSV4_COMP_INDEX_PROJ, DSV4_COMP_INDEX_SCORE, DSV4_COMP_COMPRESSOR, DSV4_COMP_STATE,
};

/* [COST-1] m: the model; t: position of the decoded token (0-based, t < 2^40); out: exact
 * madds per component and attention madds per layer type, summed over n_layers layers, plus
 * the head ([COST-11]: d·vocab, and HCHead n·nd + nd with mHC). 0 ok, -1 error. */
int cost_decode_step(const cost_model *m, int64_t t, cost_step *out)
{
    memset(out, 0, sizeof *out);
    if (t < 0 || t >= COST_MAX_T)
        return dsv4_set_error("%s: position %lld outside [0, 2^40)", m->name, (long long)t);
    if (m->n_layers <= 0 || m->n_layers > DSV4_MAX_LAYERS || m->dim <= 0)
        return dsv4_set_error("%s: n_layers / dim out of range", m->name);
    for (int64_t layer = 0; layer < m->n_layers; layer++) {
        int64_t a[DSV4_COMP_COUNT];
        cost_layer_type lt;
        memset(a, 0, sizeof a);
        switch (m->family) {
        case COST_FAM_MHA:           attn_mha(m, t, a); lt = COST_LT_MHA; break;
        case COST_FAM_MLA:           attn_mla(m, t, a); lt = COST_LT_MLA; break;
        case COST_FAM_DSA:           attn_dsa(m, t, a); lt = COST_LT_DSA; break;
        case COST_FAM_V4:            lt = attn_v4(&m->v4, layer, t, a); break;
        case COST_FAM_WINDOW_GLOBAL: attn_window_global(m, t, a); lt = COST_LT_WINDOW_GLOBAL; break;
        case COST_FAM_LINFORMER:     attn_linformer(m, t, a); lt = COST_LT_LINFORMER; break;
        case COST_FAM_PERFORMER:     attn_performer(m, t, a); lt = COST_LT_PERFORMER; break;
        case COST_FAM_MAMBA:         attn_mamba(m, t, a); lt = COST_LT_SSM; break;
        default: return dsv4_set_error("%s: unknown model family %d", m->name, (int)m->family);
        }
        for (size_t i = 0; i < sizeof k_attn_side / sizeof k_attn_side[0]; i++)
            out->attn_madds_by_type[lt] += a[k_attn_side[i]];
        out->layers_by_type[lt] += 1;
        a[DSV4_COMP_MHC] += mhc_layer_madds(m->hc_mult, m->dim);
        ffn_layer(m, layer, a);
        for (int i = 0; i < DSV4_COMP_COUNT; i++) out->madds[i] += a[i];
    }
    out->madds[DSV4_COMP_HEAD] += m->dim * m->vocab_size;
    if (m->hc_mult > 0)
        out->madds[DSV4_COMP_MHC] += m->hc_mult * m->hc_mult * m->dim + m->hc_mult * m->dim;
    for (int i = 0; i < DSV4_COMP_COUNT; i++) out->total += out->madds[i];
    return 0;
}

/* ---- KV cache ---- */

/* [COST-12] Bytes of one V4 cached entry (head_dim D, rope r) in format f: FP8 layout =
 * (D−r) e4m3 + r bf16 + one ue8m0 per 64 nope dims, the scales padded to a multiple of 8
 * (D = 512: 448 + 128 + 7 + 1 = 584); bf16 = 2D. */
static int64_t v4_entry_bytes(int64_t D, int64_t r, cost_kv_format f)
{
    if (f == COST_KV_BF16) return 2 * D;
    return (D - r) + 2 * r + ((D - r) / 64 + 7) / 8 * 8;
}

/* [COST-12] Bytes of one indexer key of width DI: FP4 = DI/2 + one ue8m0 per 32 (68 for 128);
 * FP8 = DI + one fp32 scale (132); bf16 = 2·DI (256). V3.2 keys are FP8 in deploy. */
static int64_t index_key_bytes(int64_t DI, cost_kv_format f, int fp4_capable)
{
    if (f == COST_KV_BF16) return 2 * DI;
    if (f == COST_KV_DEPLOY && fp4_capable) return DI / 2 + DI / 32;
    return DI + 4;
}

/* [COST-12] Bytes of one MLA latent entry: FP8 (FlashMLA V3.2 layout) = r_kv e4m3 + one fp32
 * scale per 128 + d_r bf16 (656); bf16 = 2(r_kv + d_r) (1152). */
static int64_t mla_entry_bytes(const cost_model *m, cost_kv_format f)
{
    if (f == COST_KV_BF16) return 2 * (m->kv_lora_rank + m->qk_rope_head_dim);
    return m->kv_lora_rank + 4 * ((m->kv_lora_rank + 127) / 128) + 2 * m->qk_rope_head_dim;
}

/* [COST-12] m, L >= 1 tokens, format f. Per layer: entries held after L tokens × entry bytes.
 *   MHA: L × 2H(d_qk + d_v) (bf16 in every format); MLA: L × entry; DSA: L × (entry + key);
 *   V4: min(w, L) window rows + ⌊L/4⌋ (entry + key) (CSA) or ⌊L/m⌋ entries (HCA);
 *   window-global: min(L, w + g) × 2H(d_qk + d_v); Linformer / Performer / Mamba: their
 *   constant fp32 state. Compressor / conv scratch of V4 is not KV and not counted. */
int cost_kv_bytes(const cost_model *m, int64_t L, cost_kv_format f, cost_kv *out)
{
    memset(out, 0, sizeof *out);
    if (L < 1 || L > COST_MAX_T)
        return dsv4_set_error("%s: context %lld outside [1, 2^40]", m->name, (long long)L);
    if ((int)f < 0 || (int)f >= COST_KV_FORMAT_COUNT)
        return dsv4_set_error("%s: unknown KV format %d", m->name, (int)f);
    double slope = 0.0;
    int64_t H = m->n_heads, mha_row = 2 * m->n_heads * (m->head_dim_qk + m->head_dim_v);
    for (int64_t layer = 0; layer < m->n_layers; layer++) {
        int64_t b = 0;
        cost_layer_type lt;
        switch (m->family) {
        case COST_FAM_MHA:
            b = L * mha_row; slope += (double)mha_row; lt = COST_LT_MHA;
            out->entry_bytes = mha_row;
            break;
        case COST_FAM_MLA:
            out->entry_bytes = mla_entry_bytes(m, f);
            b = L * out->entry_bytes; slope += (double)out->entry_bytes; lt = COST_LT_MLA;
            break;
        case COST_FAM_DSA:
            out->entry_bytes = mla_entry_bytes(m, f);
            out->index_key_bytes = index_key_bytes(m->index_head_dim, f, 0);
            b = L * (out->entry_bytes + out->index_key_bytes);
            slope += (double)(out->entry_bytes + out->index_key_bytes); lt = COST_LT_DSA;
            break;
        case COST_FAM_V4: {
            const dsv4_config *c = &m->v4;
            int64_t e = v4_entry_bytes(c->head_dim, c->rope_head_dim, f);
            int64_t ratio = c->compress_ratios[layer];
            out->entry_bytes = e;
            b = min64(c->window_size, L) * e;
            if (ratio == 0) {
                lt = COST_LT_SWA;
            } else if (ratio == 4) {
                int64_t k = index_key_bytes(c->index_head_dim, f, 1);
                out->index_key_bytes = k;
                b += (L / 4) * (e + k); slope += (double)(e + k) / 4.0; lt = COST_LT_CSA;
            } else {
                b += (L / ratio) * e; slope += (double)e / (double)ratio; lt = COST_LT_HCA;
            }
            break;
        }
        case COST_FAM_WINDOW_GLOBAL:
            out->entry_bytes = mha_row;
            b = min64(L, m->window + m->n_global) * mha_row; lt = COST_LT_WINDOW_GLOBAL;
            break;
        case COST_FAM_LINFORMER:
            b = 4 * m->proj_rank * H * (m->head_dim_qk + m->head_dim_v); lt = COST_LT_LINFORMER;
            break;
        case COST_FAM_PERFORMER:
            b = 4 * H * m->n_features * (m->head_dim_v + 1); lt = COST_LT_PERFORMER;
            break;
        case COST_FAM_MAMBA:
            b = 4 * m->ssm_inner * (m->ssm_state + m->ssm_conv - 1); lt = COST_LT_SSM;
            break;
        default:
            return dsv4_set_error("%s: unknown model family %d", m->name, (int)m->family);
        }
        out->bytes_by_type[lt] += b;
        out->bytes_total += b;
    }
    out->per_token = (double)out->bytes_total / (double)L;
    out->amortized_per_token = slope;
    return 0;
}

/* ---- context lengths ---- */

/* [COST-1] s: a context length as digits with an optional K/M/G suffix (binary) or 2^N.
 * L: out. 0 ok, -1 (error names s). */
int cost_parse_context(const char *s, int64_t *L)
{
    const char *p = s;
    int64_t v = 0;
    if (!s || !*s) return dsv4_set_error("context: empty value (expected e.g. 1M, 1048576, 2^20)");
    if (p[0] == '2' && p[1] == '^') {
        int64_t e = 0;
        p += 2;
        if (!isdigit((unsigned char)*p)) goto bad;
        while (isdigit((unsigned char)*p)) { e = e * 10 + (*p - '0'); if (e > 40) goto range; p++; }
        if (*p) goto bad;
        *L = (int64_t)1 << e;
        return 0;
    }
    if (!isdigit((unsigned char)*p)) goto bad;
    while (isdigit((unsigned char)*p)) {
        v = v * 10 + (*p - '0');
        if (v > COST_MAX_T) goto range;
        p++;
    }
    if (*p) {
        int shift;
        char u = (char)toupper((unsigned char)*p);
        if (u == 'K') shift = 10; else if (u == 'M') shift = 20; else if (u == 'G') shift = 30; else goto bad;
        if (p[1]) goto bad;
        if (v > (COST_MAX_T >> shift)) goto range;
        v <<= shift;
    }
    if (v < 1) goto range;
    *L = v;
    return 0;
bad:
    return dsv4_set_error("context '%s': expected digits with an optional K/M/G suffix (binary) or 2^N, e.g. 1M, 1048576, 2^20", s);
range:
    return dsv4_set_error("context '%s': outside [1, 2^40]", s);
}
