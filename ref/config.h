/* config.h — the V4 model arguments (official inference-config names; spec/model.md [CFG-1]). */
#ifndef DSV4_CONFIG_H
#define DSV4_CONFIG_H

#include <stdint.h>
#include "dsv4ref.h"

#define DSV4_MAX_LAYERS 128

typedef enum { SCORE_SOFTMAX = 0, SCORE_SIGMOID = 1, SCORE_SQRTSOFTPLUS = 2 } dsv4_score_func;

typedef struct {
    int64_t vocab_size, dim, moe_inter_dim, n_layers, n_hash_layers, n_mtp_layers;
    int64_t n_heads, n_routed_experts, n_shared_experts, n_activated_experts;
    dsv4_score_func score_func;
    double route_scale, swiglu_limit;
    int64_t q_lora_rank, head_dim, rope_head_dim;
    double norm_eps;
    int64_t o_groups, o_lora_rank, window_size;
    int64_t n_ratios;                          /* entries in compress_ratios (n_layers + MTP) */
    int64_t compress_ratios[DSV4_MAX_LAYERS];  /* 0 = SWA, 4 = CSA (overlap), other = HCA-like */
    double compress_rope_theta, rope_theta, rope_factor;
    int64_t original_seq_len;
    double beta_fast, beta_slow;
    int64_t index_n_heads, index_head_dim, index_topk;
    int64_t hc_mult, hc_sinkhorn_iters;
    double hc_eps;
    char dtype[16], expert_dtype[16], scale_fmt[16];   /* "bf16"/"fp8", "fp4"/"" , "ue8m0" */
    int64_t max_seq_len, max_batch_size;
    int64_t max_position_embeddings;           /* HF field, informative only (0 if absent) */
} dsv4_config;

/* Defaults = the official ModelArgs defaults. */
void dsv4_config_defaults(dsv4_config *c);
/* Parses a JSON object with the inference-config names or the HF config.json names
 * (hidden_size, num_hidden_layers, ...). `what` names the source in errors. 0 ok, -1 error. */
int dsv4_config_from_json(dsv4_config *c, const char *json, size_t len, const char *what);
int dsv4_config_load(dsv4_config *c, const char *path);
/* Checks divisibility, ranges and schedule length; one clear error per problem. */
int dsv4_config_validate(const dsv4_config *c, const char *what);

/* Layer type helpers (compress_ratios[i]): 0 SWA, 4 CSA, other HCA. */
static inline int dsv4_layer_ratio(const dsv4_config *c, int64_t layer) { return (int)c->compress_ratios[layer]; }
/* "SWA" / "CSA" / "HCA" for compress_ratios[layer]. */
const char *dsv4_layer_kind(const dsv4_config *c, int64_t layer);
static inline int dsv4_layer_is_csa(const dsv4_config *c, int64_t layer) { return c->compress_ratios[layer] == 4; }

#endif
