/* dsa_indexer.h — the lightning indexer of DeepSeek Sparse Attention (V3.2-Exp after the
 * 2025-11-17 fix; spec/dsa.md [DSA-1..DSA-7]).
 *
 * For every query position t it scores every visible past position s <= t,
 *   I[t,s] = sum_h w[t,h] * ReLU(q[t,h] . k[s])        (PDF eq. 1)
 * and selects the top min(index_topk, t + 1) positions. The keys k[s] (one per token, shared
 * by all indexer heads) are cached per sequence. */
#ifndef DSV4_DSA_INDEXER_H
#define DSV4_DSA_INDEXER_H

#include <stdint.h>
#include "dsv4ref.h"
#include "rope.h"
#include "wtable.h"

typedef struct dsa_indexer dsa_indexer;

/* dim: model dim d; q_lora_rank: r_q (the query latent q_r is the indexer's q input);
 * n_heads H_I, head_dim D_I (a power of two; official mode: D_I <= 128 — the official graph
 * quantizes with 128-wide blocks and has D_I = 128, one scale per head vector), topk.
 * rope: the MLA's table (width qk_rope_head_dim <= D_I; the indexer rotates dims [0, r)).
 * prefix: e.g. "layers.0.attn.indexer" (wq_b [H_I*D_I, r_q], wk [D_I, d], k_norm.{weight,bias}
 * [D_I], weights_proj [H_I, d]). Returns NULL with an error. */
dsa_indexer *dsa_indexer_new(int64_t dim, int64_t q_lora_rank, int64_t n_heads, int64_t head_dim,
                             int64_t topk, double eps, const rope_freqs *rope,
                             const dsv4_wlookup *w, const char *prefix, int64_t max_batch,
                             int64_t max_seq_len, dsv4_numerics num);
void dsa_indexer_free(dsa_indexer *I);
void dsa_indexer_reset(dsa_indexer *I);

/* Pitfall hooks for the tests (spec/dsa.md [DSA-3], pitfalls 3 and 4): rebuild the WRONG
 * variants a port might write. layout: ROPE_HALF_SPLIT (correct) or ROPE_INTERLEAVED (the
 * pre-fix official code); rmsnorm_k: 0 = LayerNorm with bias (correct), 1 = RMSNorm. */
void dsa_indexer_set_variant(dsa_indexer *I, rope_layout layout, int rmsnorm_k);

/* Number of indices per row of a call ending at end_pos: min(index_topk, end_pos). */
int64_t dsa_indexer_k(const dsa_indexer *I, int64_t end_pos);

/* One call (prefill from 0 or one decode token), writing this call's keys into the cache first
 * (a token sees itself). x: [B, S, d] attention input; qr: [B, S, r_q] the MLA query latent
 * (after q_norm). topk: [B, S, k] with k = dsa_indexer_k(I, start_pos + S): absolute positions
 * by score descending, ties by position ascending; a row at position t holds
 * min(k, t + 1) picks, then -1. score (may be NULL): [B, S, start_pos + S] the index scores
 * I[t, s] (-inf for s > t). 0 ok, -1 with an error. */
int dsa_indexer_forward(dsa_indexer *I, const float *x, const float *qr, int64_t B, int64_t S,
                        int64_t start_pos, int64_t *topk, float *score);

int64_t dsa_indexer_cache_bytes_per_token(const dsa_indexer *I);

#endif
