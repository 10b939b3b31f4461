/* cost.h — the decode cost model: multiply-adds and KV-cache bytes per token at context L,
 * for MHA, MLA (V3), DSA (V3.2), V4 (CSA/HCA/SWA + mHC), and hypothetical same-size variants
 * of other long-context designs (spec/cost-model.md, ids [COST-n]).
 *
 * Every count is an exact integer: the multiply-adds (madds; FLOPs = 2 × madds) one decode
 * step at absolute position t does, split by the components of ref/counters.h, so the forward
 * pass, run with counting on, must count exactly cost_decode_step()'s numbers. "Per token at
 * context L" means the decode step of the L-th token, t = L − 1, which attends to L tokens
 * (itself included).
 *
 * The model dims come from a config struct: for V4 a dsv4_config (ref/config.h; the built-in
 * V4-Pro / V4-Flash are filled in code from the official inference configs), for the other
 * families the fields of cost_model below. */
#ifndef DSV4_COST_H
#define DSV4_COST_H

#include <stdint.h>
#include "config.h"
#include "counters.h"

/* ---- model families and layer types ---- */
typedef enum {
    COST_FAM_MHA = 0,        /* dense causal MHA with per-head K and V ([COST-2])            */
    COST_FAM_MLA,            /* MLA, absorbed decode (DeepSeek-V2/V3) ([COST-3])             */
    COST_FAM_DSA,            /* DSA: lightning indexer + MLA over the top-k (V3.2) ([COST-4]) */
    COST_FAM_V4,             /* V4: SWA / CSA / HCA layers with window, sinks, mHC ([COST-5..9]) */
    COST_FAM_WINDOW_GLOBAL,  /* hypothetical: fixed window + global tokens ([COST-13])        */
    COST_FAM_LINFORMER,      /* hypothetical: rank-k sequence projection ([COST-14])          */
    COST_FAM_PERFORMER,      /* hypothetical: random-feature linear attention ([COST-14])     */
    COST_FAM_MAMBA           /* hypothetical: selective SSM, constant state ([COST-15])       */
} cost_family;

typedef enum {
    COST_LT_MHA = 0, COST_LT_MLA, COST_LT_DSA, COST_LT_SWA, COST_LT_CSA, COST_LT_HCA,
    COST_LT_WINDOW_GLOBAL, COST_LT_LINFORMER, COST_LT_PERFORMER, COST_LT_SSM,
    COST_LT_COUNT
} cost_layer_type;

/* KV-cache storage formats ([COST-12]). */
typedef enum {
    COST_KV_DEPLOY = 0,   /* deployment: V3.2 656 B MLA + 132 B FP8 indexer key; V4 584 B FP8 entry + 68 B FP4 key */
    COST_KV_FP8_INDEX,    /* as DEPLOY, but V4 indexer keys FP8 + fp32 scale (132 B; GPUs without FP4) */
    COST_KV_BF16,         /* everything bf16 (the reference buffers): V3.2 1152 + 256 B, V4 1024 + 256 B */
    COST_KV_FORMAT_COUNT
} cost_kv_format;

const char *cost_layer_type_name(cost_layer_type t);   /* "csa", ... */
const char *cost_kv_format_name(cost_kv_format f);     /* "deploy", "fp8-index", "bf16" */
int cost_kv_format_parse(const char *s, cost_kv_format *out);   /* 0 ok, -1 error set */

/* ---- the model description ---- */
typedef struct {
    char name[64];            /* "v4-pro", or the --config file name                   */
    char label[96];           /* one-line description for tables and the plot legend   */
    char assumptions[512];    /* hypothetical variants: every assumed size, in words   */
    int hypothetical;         /* 1 = not a real model; a same-size what-if             */
    double claim_flops, claim_kv;   /* published ratio vs V3.2 at 1M (0 = none)        */
    cost_family family;

    /* trunk (all families; V4 copies them from v4) */
    int64_t dim, n_layers, vocab_size, hc_mult;        /* hc_mult 0 = plain residual     */
    int64_t n_dense_layers, dense_inter;               /* first layers with a dense FFN  */
    int64_t moe_inter_dim, n_routed_experts, n_activated_experts, n_shared_experts;

    /* MHA-shaped attention (MHA and the hypothetical variants) */
    int64_t n_heads, head_dim_qk, head_dim_v;
    /* MLA / DSA */
    int64_t q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int64_t index_n_heads, index_head_dim, index_topk;
    /* hypothetical variants */
    int64_t window, n_global;          /* window + global                        */
    int64_t proj_rank;                 /* Linformer k                            */
    int64_t n_features;                /* Performer random features m            */
    int64_t ssm_inner, ssm_state, ssm_conv, ssm_dt_rank;   /* Mamba              */

    /* V4: the model arguments themselves */
    dsv4_config v4;
} cost_model;

/* The built-in model names, in display order: "v3.2", "v4-pro", "v4-flash", "mla", "mha",
 * "window-global", "linformer", "performer", "mamba". i out of range -> NULL. */
const char *cost_builtin_name(int i);
/* [COST-1] Fills m with built-in model `name`. 0 ok; -1 (error names the known models). */
int cost_builtin(const char *name, cost_model *m);
/* The official V4-Pro / V4-Flash inference configs (v4-architecture.md §1.1, §1.3), in code. */
void cost_v4_pro_config(dsv4_config *c);
void cost_v4_flash_config(dsv4_config *c);
/* Wraps a V4 config into a cost model (trunk fields copied from c). 0 ok, -1 on a config the
 * cost model cannot use (named field). */
int cost_model_from_v4(cost_model *m, const dsv4_config *c, const char *name);

/* ---- one decode step ---- */
typedef struct {
    int64_t madds[DSV4_COMP_COUNT];              /* per component                          */
    int64_t attn_madds_by_type[COST_LT_COUNT];   /* attention-side madds (q/kv/o, core,
                                                    indexer, compressor, state) per layer type */
    int64_t layers_by_type[COST_LT_COUNT];
    int64_t total;                               /* sum of madds[]                         */
} cost_step;

/* [COST-1] Exact multiply-adds of the decode step at position t (t >= 0), all layers + head.
 * 0 ok, -1 on t out of range (0 <= t < 2^40) or a bad model. */
int cost_decode_step(const cost_model *m, int64_t t, cost_step *out);

/* ---- KV cache ---- */
typedef struct {
    int64_t bytes_by_type[COST_LT_COUNT];   /* cache bytes held after L tokens, per layer type */
    int64_t bytes_total;                    /* all layers                                  */
    double per_token;                       /* bytes_total / L                             */
    double amortized_per_token;             /* d bytes / d L for L -> infinity (constants dropped) */
    int64_t entry_bytes, index_key_bytes;   /* bytes of one cached entry / indexer key     */
} cost_kv;

/* [COST-12] KV-cache bytes after L >= 1 tokens in format f. 0 ok, -1 error. */
int cost_kv_bytes(const cost_model *m, int64_t L, cost_kv_format f, cost_kv *out);

/* ---- context lengths ---- */
/* Parses "1048576", "1M", "1m", "1024K", "2^20", "4k", "1G" (K/M/G binary: 2^10/2^20/2^30).
 * 0 ok; -1 (error names s) unless 1 <= L <= 2^40. */
int cost_parse_context(const char *s, int64_t *L);

#endif
