/* mha.h — dense causal multi-head attention with RoPE: the baseline of DeepSeek's attention
 * lineage (spec/mha.md). There is no official DeepSeek MHA module; `official` numerics applies
 * the rounding conventions of the official MLA graph (bf16 GEMM outputs, bf16 RoPE outputs,
 * bf16 logits after the product and after the scale, fp32 softmax with bf16 probabilities,
 * bf16 attention output) to the dense form, which is what MLA's naive path is. */
#ifndef DSV4_MHA_H
#define DSV4_MHA_H

#include <stdint.h>
#include "dsv4ref.h"
#include "wtable.h"

/* ---- the attention core of one query row [MHA-4..MHA-6] ---------------------------------- */
/* q: [D] (already rotated); keys: [nk] positions, -1 = masked (skipped); key j of the list
 * reads K + keys[j] * kstride ([D]) and V + keys[j] * vstride ([Dv]).
 * l_j = (q . k_j) * scale, p = softmax(l) over the unmasked keys, o = sum_j p_j v_j: [Dv].
 * official: l = bf16(bf16(q.k) * f32(scale)), fp32 softmax, p bf16, o = bf16(sum); exact:
 * double. scratch: [nk] floats. A row with no unmasked key gives o = 0 exactly (pitfall 13). */
void mha_attend_row(const float *q, const float *K, int64_t kstride, const float *V,
                    int64_t vstride, const int64_t *keys, int64_t nk, int64_t D, int64_t Dv,
                    double scale, dsv4_numerics num, float *scratch, float *o);

/* [MHA-5] softmax of n logits into p (may alias l); official: fp32 softmax, bf16 outputs;
 * exact: double. n = 0 does nothing. */
void attn_softmax(const float *l, float *p, int64_t n, dsv4_numerics num);

/* ---- the layer ---------------------------------------------------------------------------- */
typedef struct {
    int64_t dim, n_heads, head_dim, v_head_dim;  /* head_dim even: RoPE rotates all of it */
    double rope_theta;                           /* plain RoPE, interleaved pairs, no YaRN */
} mha_config;

typedef struct mha_layer mha_layer;

/* Weights "<prefix>.{wq, wk}.weight" [H*head_dim, dim], "<prefix>.wv.weight" [H*v_head_dim,
 * dim], "<prefix>.wo.weight" [dim, H*v_head_dim]. NULL with an error on a bad config/weight. */
mha_layer *mha_layer_new(const mha_config *c, const dsv4_wlookup *w, const char *prefix,
                         int64_t max_batch, int64_t max_seq_len, dsv4_numerics num);
void mha_layer_free(mha_layer *L);
void mha_layer_reset(mha_layer *L);   /* clears the k/v cache: new sequences */

/* Prefill (start_pos 0) or decode (S 1, continuing). x, out: [B, S, dim]. 0 ok, -1 error. */
int mha_forward(mha_layer *L, const float *x, float *out, int64_t B, int64_t S, int64_t start_pos);

/* [MHA-7] bf16 cache bytes per token of one sequence: 2 H (head_dim + v_head_dim). */
int64_t mha_cache_bytes_per_token(const mha_layer *L);

#endif
