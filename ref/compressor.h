/* compressor.h — the V4 KV compressor (spec/compressor.md): gated per-channel softmax pooling
 * of m consecutive tokens into one compressed entry, overlapping windows for ratio 4, then
 * bf16 cast, RMSNorm, RoPE at the entry's first position and FP8 (main) or Hadamard + FP4
 * (indexer keys) simulation. Holds the per-sequence decode state. */
#ifndef DSV4_COMPRESSOR_H
#define DSV4_COMPRESSOR_H

#include <stdint.h>
#include "dsv4ref.h"
#include "rope.h"

/* What happens to an entry after RoPE [CMP-5]. */
typedef enum {
    COMPRESSOR_MAIN = 0,     /* KV entry (c = head_dim): FP8 simulation of the first c - r dims, block 64 */
    COMPRESSOR_INDEXER = 1   /* indexer key (c = index_head_dim): Hadamard, then FP4 simulation, block 32 */
} compressor_kind;

typedef struct {
    int ratio;               /* m (any m >= 1; m == 4 overlaps) */
    int overlap;             /* 1 when m == 4: kappa = 2 */
    int head_dim;            /* c: width of one entry */
    int rope_dim;            /* r: RoPE on the last r dims of an entry */
    int64_t dim;             /* d: width of the input x */
    compressor_kind kind;
    float eps;
    dsv4_numerics num;
    const rope_freqs *rope;  /* the layer's table (compressed layers: theta_c with YaRN) */
    /* weights (views; the compressor does not own them except `ape` and `norm_w`) */
    dsv4_weight wkv, wgate;  /* [kappa c, d], used as fp32 GEMMs */
    float *ape;              /* [m, kappa c] */
    float *norm_w;           /* [c] */
    /* decode state per batch row: rows [kappa m] of width kappa c  [CMP-6] */
    int64_t max_batch;
    float *kv_state;         /* [max_batch, kappa m, kappa c], value 0 when empty */
    float *score_state;      /* [max_batch, kappa m, kappa c], -inf when empty */
} v4_compressor;

/* Allocates the state (weights are set by the caller before use); 0 ok, -1 error. */
int compressor_init(v4_compressor *C, int ratio, int head_dim, int rope_dim, int64_t dim,
                    compressor_kind kind, float eps, const rope_freqs *rope, int64_t max_batch,
                    dsv4_numerics num);
void compressor_free(v4_compressor *C);
/* Starts new sequences: values 0, scores -inf (the "previous block" of entry 0 is empty). */
void compressor_reset(v4_compressor *C);

/* [CMP-7] prefill (start_pos 0): x: [B, S, d] -> out: [B, S/m, c] (the floor(S/m) complete
 * entries); leaves the trailing incomplete block (and, overlapping, the last complete block as
 * "previous") in the state. Returns the number of entries (S/m), or -1 on error. */
int64_t compressor_prefill(v4_compressor *C, const float *x, int64_t B, int64_t S, float *out);

/* [CMP-8] decode of token t: x: [B, 1, d]; when (t+1) mod m == 0 writes entry t/m to
 * out: [B, c] and returns 1; otherwise returns 0; -1 on error. */
int compressor_decode(v4_compressor *C, const float *x, int64_t B, int64_t t, float *out);

#endif
