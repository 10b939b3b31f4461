/* sparse_attention.h — V4 sparse attention over an index list with per-head sinks
 * (spec/sparse-attention.md [SPA-1..SPA-4]). */
#ifndef DSV4_SPARSE_ATTENTION_H
#define DSV4_SPARSE_ATTENTION_H

#include <stdint.h>
#include "dsv4ref.h"

#define SPARSE_ATTN_BLOCK 64   /* keys per online-softmax block of the official kernel */

/* One query position, all heads. q: [H, D]; kv: [n_kv, D] (value = key, MQA);
 * idx: [n_idx] rows of kv in list order, -1 = masked; sink: [H] (f32 logits, unscaled);
 * scale = D^-1/2 (official: as f32); out: [H, D].
 *   o_h = sum_i e^{l_i - M} k_i / (sum_i e^{l_i - M} + e^{z_h - M}),  l_i = scale * q_h . k_i
 * official: l_i = f32(f32(q.k) * scale), online softmax in 64-key blocks in list order,
 * p rounded to bf16 before P.V (block sums to f32), the denominator accumulates unrounded f32
 * p, output bf16. exact: double, two passes. A row whose indices are all -1 gives exactly 0.
 * Returns 0, or -1 when an index is outside [-1, n_kv). */
int sparse_attention(const float *q, int64_t H, int64_t D, const float *kv, int64_t n_kv,
                     const int64_t *idx, int64_t n_idx, const float *sink, double scale,
                     float *out, dsv4_numerics num);

/* [SPA-4] the index list's validity (-1 or a row of kv; error names the position) and the
 * [COST-6] count of the call: the preamble every backend's sparse_attention runs first. */
int sparse_attention_check(const int64_t *idx, int64_t n_idx, int64_t n_kv, int64_t H, int64_t D);

#endif
