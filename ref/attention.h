/* attention.h — one DeepSeek-V4 attention layer: SWA (ratio 0), CSA (ratio 4, overlapping
 * compressor + lightning indexer top-k) or HCA (any other ratio, all compressed entries),
 * with the sliding window, per-head sinks and the grouped low-rank output projection
 * (spec/v4-attention.md). Owns its weights (views into the weight source) and the
 * per-sequence state (window ring, compressor states, compressed entries, indexer keys). */
#ifndef DSV4_ATTENTION_H
#define DSV4_ATTENTION_H

#include <stdint.h>
#include "dsv4ref.h"
#include "config.h"
#include "wsrc.h"

typedef struct v4_attn_layer v4_attn_layer;

/* prefix: the weight-name prefix of the module, e.g. "layers.3.attn" or "mtp.0.attn";
 * ratio: compress_ratios[layer_id] (0 SWA, 4 CSA, else HCA); the RoPE choice follows it
 * (ratio 0: rope_theta without YaRN; else compress_rope_theta with YaRN).
 * max_batch / max_seq_len size the state. Validates every weight's name, dtype and shape;
 * returns NULL with a one-line error naming the tensor. */
v4_attn_layer *v4_attn_layer_new(const dsv4_config *c, int ratio, const dsv4_wsrc *src,
                                  const char *prefix, int64_t max_batch, int64_t max_seq_len,
                                  dsv4_numerics num);
void v4_attn_layer_free(v4_attn_layer *L);
/* Starts new sequences: clears the window ring, the compressor states (the "previous block"
 * back to value 0 / score -inf), the compressed entries and indexer keys. */
void v4_attn_layer_reset(v4_attn_layer *L);

/* One forward call of the official schedule:
 *   prefill: start_pos == 0, any S >= 1;   decode: S == 1, start_pos > 0 (continuing the state).
 * x: [B, S, dim] attention input (RMSNorm(HCPre(...))), out: [B, S, dim].
 * taps (may be NULL), named "<tap_prefix>.attn.indexer" (I64 [B, S, k], CSA),
 * "<tap_prefix>.attn.compressor" (BF16/F32 [B, n_new, head_dim], only when entries were
 * emitted in this call), "<tap_prefix>.attn.indexer.compressor" ([B, n_new, index_head_dim]),
 * with tap_prefix e.g. "taps.0.layers.3". The caller taps ".attn" and ".attn.in" itself.
 * Returns 0, or -1 with an error (bad position, batch too large, non-finite input). */
int v4_attn_forward(v4_attn_layer *L, const float *x, float *out, int64_t B, int64_t S,
                    int64_t start_pos, dsv4_taps *taps, const char *tap_prefix);

/* Bytes of decode cache per sequence this layer holds at context length L (for `run`). */
int64_t v4_attn_cache_bytes(const v4_attn_layer *L, int64_t context);

#endif
