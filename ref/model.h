/* model.h — the whole DeepSeek-V4 forward: embedding, hc expansion, Blocks (mHC + V4
 * attention + MoE), HCHead, final norm, fp32 head; the MTP block (spec/model.md). */
#ifndef DSV4_MODEL_H
#define DSV4_MODEL_H

#include <stdint.h>
#include "dsv4ref.h"
#include "config.h"
#include "wsrc.h"

typedef struct dsv4_model dsv4_model;

/* Teacher forcing [MDL-6]: before Block `layer` of forward call `call` the model asks for a
 * forced input x: [B, S, hc, dim] (the golden taps.<call>.layers.<layer-1>, or the embedding
 * streams for layer 0). Return 1 when x was filled, 0 to run on our own value, -1 on error. */
typedef struct {
    int (*layer_input)(void *ctx, int call, int64_t layer, float *x, int64_t B, int64_t S);
    void *ctx;
} dsv4_forcing;

/* Builds the model over a weight source (golden file or checkpoint directory, not owned; it
 * must outlive the model). Every tensor of every layer is located and validated against the
 * config BEFORE any compute; a missing or mismatched one fails with a one-line error naming
 * it. The MTP blocks are built when the source holds "mtp.0.*" (n_mtp_layers of the config).
 * progress != 0 prints a loading line per layer on stderr. */
dsv4_model *dsv4_model_new(const dsv4_config *c, const dsv4_wsrc *src, int64_t max_batch,
                           int64_t max_seq_len, dsv4_numerics num, int progress);
void dsv4_model_free(dsv4_model *m);
/* Starts new sequences (also implied by a forward call with start_pos == 0). */
void dsv4_model_reset(dsv4_model *m);

/* [MDL-1] One forward call of the official schedule (prefill: start_pos 0; decode: S == 1
 * continuing the state). tokens: [B, S]; logits: [B, vocab] of the last position (F32).
 * taps (may be NULL) named taps.<call>.…; force may be NULL (free-running). */
int dsv4_model_forward(dsv4_model *m, const int64_t *tokens, int64_t B, int64_t S,
                       int64_t start_pos, float *logits, dsv4_taps *taps, int call,
                       const dsv4_forcing *force);

/* [MDL-7] MTP block j on the streams of the LAST forward call (the main model's last Block
 * output at the same positions) and the next tokens next: [B, S]; logits: [B, vocab].
 * Taps "taps.<call>.mtp.<j>" (the block's streams) and "taps.<call>.mtp.<j>.logits". */
int dsv4_model_mtp_forward(dsv4_model *m, int64_t j, const int64_t *next, int64_t B, int64_t S,
                           int64_t start_pos, float *logits, dsv4_taps *taps, int call);

const dsv4_config *dsv4_model_config(const dsv4_model *m);
int64_t dsv4_model_n_mtp(const dsv4_model *m);
/* Decode-cache bytes per sequence of layer i (i >= n_layers: MTP block) at context length L. */
int64_t dsv4_model_cache_bytes(const dsv4_model *m, int64_t layer, int64_t context);

#endif
