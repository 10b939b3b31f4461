/* mla.h — Multi-head Latent Attention of DeepSeek-V2/V3 and, with the lightning indexer,
 * DeepSeek Sparse Attention of V3.2-Exp (spec/mla.md, spec/dsa.md).
 *
 * One layer = the official `MLA` module (V3: deepseek-ai/DeepSeek-V3 inference/model.py;
 * V3.2: DeepSeek-V3.2-Exp 87e509a2 inference/model.py, after the 2025-11-17 indexer fix),
 * with its per-sequence cache. Three computation paths of the same mathematics:
 *   MLA_NAIVE     per-head keys and values (k = [W_UK c; k_R], v = W_UV c) cached [MLA-6n];
 *   MLA_ABSORBED  the latent c and the shared rope key k_R cached; W_UK folded into the query,
 *                 W_UV applied after attention [MLA-6a];
 *   MLA_V32       what the official V3.2 graph does: the naive ("MHA") path when the call has a
 *                 mask (S > 1, prefill) and the absorbed ("MQA") path for S == 1 (decode).
 * In exact numerics all three give the same result up to fp32 storage ([MLA-10]). */
#ifndef DSV4_MLA_H
#define DSV4_MLA_H

#include <stdint.h>
#include "dsv4ref.h"
#include "wtable.h"

/* ---- configuration [MLA-0] ---------------------------------------------------------------- */
/* Field names are those of the official ModelArgs (V3 and V3.2). */
typedef struct {
    int64_t dim, n_heads;
    int64_t q_lora_rank;          /* 0: direct wq (V2-Lite) */
    int64_t kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int64_t max_seq_len, original_seq_len, max_batch_size;
    double rope_theta, rope_factor, beta_fast, beta_slow, mscale;
    int64_t index_n_heads, index_head_dim, index_topk;  /* V3.2 lightning indexer */
    double norm_eps;              /* 1e-6 (RMSNorm and the indexer LayerNorm) */
    /* 1 = the V3.2 graph: FP8 round trip of the latent before caching (official mode).
     * Set by mla_config_from_json when the config has the V3.2 indexer fields. */
    int v32;
} mla_config;

/* The official ModelArgs defaults (V3.2 ModelArgs; v32 = 0). */
void mla_config_defaults(mla_config *c);
/* Parses a JSON object of official ModelArgs fields (unknown fields ignored); `what` names the
 * source in errors. Sets v32 = 1 when index_topk is present. 0 ok, -1 error. */
int mla_config_from_json(mla_config *c, const char *json, size_t len, const char *what);
/* Checks ranges (positive dims, even rope dim, ...); -1 with an error naming the field. */
int mla_config_validate(const mla_config *c, int use_indexer, const char *what);
/* [MLA-5] lambda = (d_nope + d_rope)^-1/2 * m^2 with m = 0.1 mscale ln(rope_factor) + 1 iff
 * max_seq_len > original_seq_len (else m = 1). In double (the official Python float). */
double mla_softmax_scale(const mla_config *c);

/* ---- the layer ---------------------------------------------------------------------------- */
typedef enum { MLA_NAIVE = 0, MLA_ABSORBED = 1, MLA_V32 = 2 } mla_path;

/* [MLA-6] The path the official demo of that model takes: MLA_V32 for a V3.2 config (v32),
 * else MLA_ABSORBED (the V3 default attn_impl = "absorb"). A V3.2 config also has the
 * indexer: use_indexer = c->v32.
 *
 * Usage for an attention-only golden file (metadata scope "attention only ..."):
 *   mla_config c;  mla_config_from_json(&c, st_meta(f, "config"), ..., path);
 *   dsv4_wlookup w = wlookup_st(f);
 *   mla_layer *L = mla_layer_new(&c, &w, "layers.0.attn", B, c.max_seq_len, DSV4_OFFICIAL,
 *                                mla_official_path(&c), c.v32);
 *   per call k of the schedule: x = inputs.x[:, start_pos : start_pos + len];
 *   mla_forward(L, x, out, B, len, start_pos, taps, "taps.<k>.layers.0")  (writes the
 *   ".attn.indexer" tap), then tap out as "taps.<k>.layers.0.attn" (BF16 [B, len, dim]).
 * tests/test_official_v32.c does exactly this. */
mla_path mla_official_path(const mla_config *c);

typedef struct mla_layer mla_layer;

/* prefix: weight-name prefix of the module, e.g. "layers.0.attn". Weights read (official
 * names): wq (q_lora_rank = 0) or wq_a, q_norm, wq_b; wkv_a, kv_norm, wkv_b, wo; with
 * use_indexer the DSA indexer "<prefix>.indexer.{wq_b, wk, k_norm, weights_proj}".
 * max_batch / max_seq_len size the cache. Returns NULL with a one-line error. */
mla_layer *mla_layer_new(const mla_config *c, const dsv4_wlookup *w, const char *prefix,
                         int64_t max_batch, int64_t max_seq_len, dsv4_numerics num,
                         mla_path path, int use_indexer);
void mla_layer_free(mla_layer *L);
/* Starts new sequences: clears every cache (latent, rope key, per-head k/v, indexer keys). */
void mla_layer_reset(mla_layer *L);

/* One forward call: prefill (start_pos == 0, S >= 1) or decode (S == 1, start_pos > 0,
 * continuing the cache). x: [B, S, dim] (the attention input = attn_norm output), out:
 * [B, S, dim]. With the indexer, taps "<tap_prefix>.attn.indexer" (I64 [B, S, k],
 * k = min(index_topk, start_pos + S), absolute positions, -1 = no pick: prefill rows that
 * see fewer than k positions). taps may be NULL. 0 ok, -1 with an error. */
int mla_forward(mla_layer *L, const float *x, float *out, int64_t B, int64_t S,
                int64_t start_pos, dsv4_taps *taps, const char *tap_prefix);

/* [DSA-8] The same call attending to an explicit selected set instead: sel: [B, S, sel_k]
 * absolute positions, -1 (and positions > t) ignored; a row with nothing left gives exactly
 * 0 (pitfall 13). The indexer, when present, still runs (its key cache stays in step). */
int mla_forward_selected(mla_layer *L, const float *x, float *out, int64_t B, int64_t S,
                         int64_t start_pos, const int64_t *sel, int64_t sel_k);

/* The index list of the last call ([B, S, k], as tapped), or NULL without the indexer. */
const int64_t *mla_last_topk(const mla_layer *L, int64_t *k);

/* Bytes of decode cache per token of one sequence this layer holds (spec/mla.md [MLA-8],
 * spec/dsa.md [DSA-9]): official storage dtypes (bf16 latent / k / v, e4m3 indexer key +
 * fp32 scale). */
int64_t mla_cache_bytes_per_token(const mla_layer *L);

#endif
