/* indexer.h — the V4 lightning indexer of CSA layers (spec/indexer.md): its own compressor
 * (index_head_dim keys, Hadamard + FP4), queries from the query latent, scores
 * sum_h w_h ReLU(q_h . k_j), causal visibility and top-k with the project's tie rule. */
#ifndef DSV4_INDEXER_H
#define DSV4_INDEXER_H

#include <stdint.h>
#include "dsv4ref.h"
#include "compressor.h"
#include "rope.h"

typedef struct {
    int n_heads;             /* H_I */
    int head_dim;            /* D_I (power of two) */
    int rope_dim;            /* r: RoPE on the last r of D_I dims (interleaved) */
    int ratio;               /* m = 4 */
    int64_t topk;            /* k_I */
    int64_t dim, q_lora_rank;
    int64_t max_batch, max_entries;   /* key cache rows = max_seq_len / m */
    dsv4_numerics num;
    const rope_freqs *rope;  /* the layer's table */
    dsv4_weight wq_b;        /* [H_I D_I, r_q] */
    dsv4_weight weights_proj;/* [H_I, d] (bf16 GEMM) */
    v4_compressor comp;      /* kind COMPRESSOR_INDEXER, c = D_I */
    float *keys;             /* [max_batch, max_entries, D_I] emitted keys */
    int64_t n_keys;          /* keys emitted so far (every batch row alike) */
} v4_indexer;

/* Allocates the key cache and the compressor state (the caller fills the weights). */
int indexer_init(v4_indexer *I, int n_heads, int head_dim, int rope_dim, int64_t topk,
                 int64_t dim, int64_t q_lora_rank, float eps, const rope_freqs *rope,
                 int64_t max_batch, int64_t max_seq_len, dsv4_numerics num);
void indexer_free(v4_indexer *I);
void indexer_reset(v4_indexer *I);

/* Number of selected entries per query of a call ending at `end` = start_pos + S:
 * min(k_I, floor(end / m)) [IDX-6]. */
int64_t indexer_k(const v4_indexer *I, int64_t end);

/* [IDX-1..IDX-6] One call: x: [B, S, d] (attention input), qr: [B, S, r_q] (query latent c_q),
 * positions start_pos.. (prefill: start_pos 0; decode: S = 1). Runs the indexer compressor
 * (keys emitted in this call: returned in *n_new, stored from row I->n_keys - *n_new), then
 * writes idx: [B, S, indexer_k(end)] = the selected entry numbers j (NOT shifted), -1 where
 * fewer visible entries exist (prefill rows before their entries complete).
 * Returns 0 or -1 with an error. */
int indexer_forward(v4_indexer *I, const float *x, const float *qr, int64_t B, int64_t S,
                    int64_t start_pos, int64_t *idx, int64_t *n_new);

/* [IDX-4] [IDX-5] The index score of one query against n keys (exposed for tests):
 * q: [H_I, D_I] (after RoPE, Hadamard, FP4), w: [H_I] (scaled head weights), keys: [n, D_I]
 * -> score: [n]. official: bf16 dot, bf16 ReLU, bf16 product, bf16 head sum. */
void indexer_scores(const v4_indexer *I, const float *q, const float *w, const float *keys,
                    int64_t n, float *score);

#endif
