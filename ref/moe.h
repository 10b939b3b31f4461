/* moe.h — the V4 mixture of experts: router (score or hash), SwiGLU experts with the clamp,
 * combine (spec/moe.md [MOE-1]..[MOE-5]). */
#ifndef DSV4_MOE_H
#define DSV4_MOE_H

#include <stdint.h>
#include "dsv4ref.h"
#include "config.h"
#include "wsrc.h"

typedef struct {
    dsv4_weight w1, w2, w3;   /* w1, w3: [inter, dim]; w2: [dim, inter] */
} moe_expert;

typedef struct {
    int64_t dim, inter, n_experts, n_act, vocab;
    dsv4_score_func score_func;
    double route_scale, swiglu_limit;
    int hash;                 /* layer < n_hash_layers: tid2eid routing */
    dsv4_weight gate;         /* [n_experts, dim], used in an fp32 GEMM */
    float *bias;              /* [n_experts] or NULL (hash layers) */
    int64_t *tid2eid;         /* [vocab, n_act] or NULL */
    moe_expert *experts;      /* [n_experts] */
    moe_expert shared;
} moe_layer;

/* Loads and validates "<prefix>.gate.*", "<prefix>.experts.<e>.w{1,2,3}.weight",
 * "<prefix>.shared_experts.*" (prefix e.g. "layers.3.ffn"). 0 ok, -1 naming the tensor. */
int moe_layer_load(moe_layer *L, const dsv4_config *c, int64_t layer_id, const dsv4_wsrc *src,
                   const char *prefix);
void moe_layer_free(moe_layer *L);

/* [MOE-1] torch softplus (beta 1, threshold 20). */
double moe_softplus(double x);

/* [MOE-2] Router. a: [n, dim]; tokens: [n] (hash layers); weights: [n, n_act] F32;
 * ids: [n, n_act]. */
int moe_route(const moe_layer *L, const float *a, const int64_t *tokens, int64_t n,
              float *weights, int64_t *ids, dsv4_numerics num);

/* [MOE-3] One SwiGLU expert on n rows. a: [n, dim]; rw: [n] routing weights or NULL (shared
 * expert); y: [n, dim] (bf16 values in official mode). */
int moe_expert_forward(const moe_expert *e, int64_t dim, int64_t inter, double swiglu_limit,
                       const float *a, const float *rw, int64_t n, float *y, dsv4_numerics num);

/* [MOE-4] The whole MoE. a: [n, dim]; tokens: [n]; y: [n, dim]; weights/ids as moe_route
 * (may be NULL when not wanted). */
int moe_forward(const moe_layer *L, const float *a, const int64_t *tokens, int64_t n, float *y,
                float *weights, int64_t *ids, dsv4_numerics num);

#endif
