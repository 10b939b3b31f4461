/* cmd_golden.c — `dsv4ref golden --out DIR`: writes the golden suite (spec/golden-suite.md).
 *
 * Every case is generated the same way [GLD-1]:
 *   1. seeded weights and inputs (xorshift64*, fixed order) and the metadata of the case go
 *      into an "input" safetensors file;
 *   2. that file is run by check_case() — the very code `dsv4ref check` runs — in the case's
 *      numerics, free-running, and its taps are recorded;
 *   3. inputs + taps + metadata are written, name-sorted, as DIR/<case>_<numerics>.safetensors
 *      (plain: the suite is small and plain bytes hash the same everywhere);
 *   4. DIR/MANIFEST.json lists every file with the SHA-256 of its bytes, the spec section it
 *      covers, the pitfall it traps and its claim boundary.
 * Nothing depends on time, paths or the environment: two runs give byte-identical files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check_case.h"
#include "cli.h"
#include "config.h"
#include "json.h"
#include "safetensors.h"
#include "sha256.h"
#include "taps.h"
#include "norm.h"
#include "tiny_model.h"
#include "topk.h"
#include "wsrc.h"

/* ---- the cases ---- */

typedef enum { K_MODEL, K_ATTN, K_UNIT } case_kind;

typedef struct {
    const char *name;        /* file = <name>_<numerics>.safetensors */
    case_kind kind;
    const char *variant;     /* what it covers: "full model (Flash-like)", "MLA absorbed", ... */
    const char *scope;       /* metadata scope (NULL for the full model) */
    const char *attention;   /* metadata attention (attention-only cases) */
    const char *config;      /* JSON, official field names */
    int64_t B, prefill, n_decode;
    uint64_t seed;
    const char *spec;        /* spec section(s) */
    const char *pitfall;     /* what it traps (catalogue numbers: peers-and-style.md §1e) */
    const char *proves;      /* what a pass shows */
    const char *not_proves;  /* what it does not */
} golden_case;

#define V4_FLASH_TINY \
    "{\"vocab_size\": 96, \"dim\": 64, \"moe_inter_dim\": 40, \"n_layers\": 4, \"n_hash_layers\": 1, " \
    "\"n_mtp_layers\": 0, \"n_heads\": 4, \"n_routed_experts\": 6, \"n_shared_experts\": 1, " \
    "\"n_activated_experts\": 2, \"score_func\": \"sqrtsoftplus\", \"route_scale\": 1.5, \"swiglu_limit\": 10.0, " \
    "\"q_lora_rank\": 40, \"head_dim\": 96, \"rope_head_dim\": 32, \"norm_eps\": 1e-06, \"o_groups\": 2, " \
    "\"o_lora_rank\": 24, \"window_size\": 8, \"compress_ratios\": [0, 4, 8, 4], " \
    "\"compress_rope_theta\": 160000.0, \"rope_theta\": 10000.0, \"rope_factor\": 4.0, " \
    "\"original_seq_len\": 16, \"beta_fast\": 32, \"beta_slow\": 1, \"index_n_heads\": 3, " \
    "\"index_head_dim\": 64, \"index_topk\": 2, \"hc_mult\": 4, \"hc_sinkhorn_iters\": 20, \"hc_eps\": 1e-06, " \
    "\"dtype\": \"bf16\", \"scale_fmt\": \"ue8m0\", \"max_seq_len\": 32, \"max_batch_size\": 1}"

#define V4_PRO_TINY \
    "{\"vocab_size\": 88, \"dim\": 72, \"moe_inter_dim\": 36, \"n_layers\": 4, \"n_hash_layers\": 2, " \
    "\"n_mtp_layers\": 0, \"n_heads\": 6, \"n_routed_experts\": 7, \"n_shared_experts\": 1, " \
    "\"n_activated_experts\": 3, \"score_func\": \"sqrtsoftplus\", \"route_scale\": 2.5, \"swiglu_limit\": 10.0, " \
    "\"q_lora_rank\": 44, \"head_dim\": 80, \"rope_head_dim\": 16, \"norm_eps\": 1e-06, \"o_groups\": 3, " \
    "\"o_lora_rank\": 20, \"window_size\": 8, \"compress_ratios\": [8, 8, 4, 8], " \
    "\"compress_rope_theta\": 160000.0, \"rope_theta\": 10000.0, \"rope_factor\": 4.0, " \
    "\"original_seq_len\": 16, \"beta_fast\": 32, \"beta_slow\": 1, \"index_n_heads\": 5, " \
    "\"index_head_dim\": 32, \"index_topk\": 2, \"hc_mult\": 4, \"hc_sinkhorn_iters\": 20, \"hc_eps\": 1e-06, " \
    "\"dtype\": \"bf16\", \"scale_fmt\": \"ue8m0\", \"max_seq_len\": 32, \"max_batch_size\": 2}"

#define MHA_TINY "{\"dim\": 48, \"n_heads\": 3, \"head_dim\": 16, \"v_head_dim\": 20, \"rope_theta\": 10000.0}"

#define MLA_TINY \
    "{\"dim\": 48, \"n_heads\": 3, \"q_lora_rank\": 24, \"kv_lora_rank\": 40, \"qk_nope_head_dim\": 16, " \
    "\"qk_rope_head_dim\": 8, \"v_head_dim\": 12, \"max_seq_len\": 64, \"original_seq_len\": 16, " \
    "\"rope_theta\": 10000.0, \"rope_factor\": 4.0, \"beta_fast\": 32, \"beta_slow\": 1, \"mscale\": 1.0, " \
    "\"max_batch_size\": 2}"

#define DSA_TINY \
    "{\"dim\": 64, \"n_heads\": 3, \"q_lora_rank\": 32, \"kv_lora_rank\": 128, \"qk_nope_head_dim\": 16, " \
    "\"qk_rope_head_dim\": 8, \"v_head_dim\": 12, \"max_seq_len\": 64, \"original_seq_len\": 16, " \
    "\"rope_theta\": 10000.0, \"rope_factor\": 4.0, \"beta_fast\": 32, \"beta_slow\": 1, \"mscale\": 1.0, " \
    "\"index_n_heads\": 2, \"index_head_dim\": 128, \"index_topk\": 4, \"max_batch_size\": 2}"

#define UNIT_CFG(RATIOS) \
    "{\"vocab_size\": 80, \"dim\": 56, \"moe_inter_dim\": 28, \"n_layers\": 2, \"n_hash_layers\": 1, " \
    "\"n_heads\": 4, \"n_routed_experts\": 9, \"n_shared_experts\": 1, \"n_activated_experts\": 3, " \
    "\"score_func\": \"sqrtsoftplus\", \"route_scale\": 1.5, \"swiglu_limit\": 2.0, \"q_lora_rank\": 36, " \
    "\"head_dim\": 80, \"rope_head_dim\": 16, \"norm_eps\": 1e-06, \"o_groups\": 2, \"o_lora_rank\": 20, " \
    "\"window_size\": 8, \"compress_ratios\": " RATIOS ", \"compress_rope_theta\": 160000.0, " \
    "\"rope_theta\": 10000.0, \"rope_factor\": 4.0, \"original_seq_len\": 16, \"beta_fast\": 32, " \
    "\"beta_slow\": 1, \"index_n_heads\": 3, \"index_head_dim\": 32, \"index_topk\": 3, \"hc_mult\": 3, " \
    "\"hc_sinkhorn_iters\": 20, \"hc_eps\": 1e-06, \"dtype\": \"bf16\", \"scale_fmt\": \"ue8m0\", " \
    "\"max_seq_len\": 64, \"max_batch_size\": 2}"

static const golden_case CASES[] = {
    { "v4_flash_tiny", K_MODEL, "full V4 model, Flash-like schedule (SWA, CSA, HCA, CSA; hash + score routing)",
      NULL, NULL, V4_FLASH_TINY, 1, 20, 5, 101,
      "spec/model.md [MDL-1]; spec/v4-attention.md; spec/compressor.md; spec/indexer.md; spec/mhc.md; spec/moe.md",
      "6 7 8 9 10 11 12 13 14 15 16 17 18: SWA/CSA/HCA in one model, prefill longer than the window, "
      "decode crossing a compression boundary (ratio 4 and 8 emit at t = 23), top-k 2 of up to 6 entries",
      "every stage tap of the whole forward (Block streams, attention, compressor entries, indexer sets, "
      "router weights/ids, MoE, logits) matches the reference for this schedule, prefill and decode",
      "weights in bf16 only (no FP8/FP4 weight paths), no MTP block, batch 1, one prompt; official mode is "
      "the reference's reading of the official graph (checked separately against golden/official/)" },
    { "v4_pro_tiny", K_MODEL, "full V4 model, Pro-like schedule (HCA first, CSA; batch 2, prefill shorter than the window)",
      NULL, NULL, V4_PRO_TINY, 2, 6, 8, 202,
      "spec/model.md [MDL-1]; spec/v4-attention.md; spec/cache-and-state.md; spec/compressor.md; spec/moe.md",
      "5 6 9 10 13 15 16 18: prefill (6) shorter than the window (8) and than two compression blocks, decode "
      "through the window edge and two CSA emissions, batch rows with different tokens, dims all distinct "
      "(wo_a columns 160 != dim 72)",
      "the decode state (window ring, compressor state, emitted entries) evolves token by token as the "
      "reference's, in both batch rows",
      "bf16 weights only, no MTP; a tiny model does not exercise the no-op regime of the indexer beyond "
      "k = 2 of <= 3 entries" },
    { "mha_tiny", K_ATTN, "dense causal MHA (the lineage baseline)", "attention only: dense MHA named layers.0.attn; "
      "inputs.x holds its input for every position", "mha", MHA_TINY, 2, 7, 3, 303,
      "spec/mha.md [MHA-1..MHA-7]",
      "2 (interleaved RoPE pairs), causal mask at prefill, the cache written before attending (a token sees itself)",
      "one MHA module's outputs for a prefill and 3 decodes, batch 2",
      "official mode is a bf16 model by convention (there is no official MHA graph)" },
    { "mla_naive_tiny", K_ATTN, "MLA (V2/V3), naive path (keys/values expanded per head)",
      "attention only: one MLA module (V3 names) named layers.0.attn; inputs.x holds its input for every position",
      "mla_naive", MLA_TINY, 2, 9, 3, 404, "spec/mla.md [MLA-1..MLA-6]",
      "1 (YaRN mscale^2 in the softmax scale: max_seq_len 64 > original 16), 2 (interleaved RoPE on the "
      "rope part only), latent cache",
      "the MLA front (q/kv LoRA, norms, RoPE) and the naive attention",
      "the absorbed path is a separate case; no DSA" },
    { "mla_absorbed_tiny", K_ATTN, "MLA (V2/V3), absorbed path (attention in the latent space)",
      "attention only: one MLA module (V3 names) named layers.0.attn; inputs.x holds its input for every position",
      "mla_absorbed", MLA_TINY, 2, 9, 3, 404, "spec/mla.md [MLA-6]",
      "1, the absorbed wkv_b split (nope part into q, v part after attention)",
      "the absorbed attention equals the reference's on the same weights and inputs as mla_naive_tiny "
      "(exact mode: naive and absorbed agree to fp32 storage)",
      "official mode rounds at the absorbed graph's points, which differ from the naive graph's" },
    { "dsa_v32_tiny", K_ATTN, "DSA (V3.2): MLA with the lightning indexer",
      "attention only: one MLA module with its DSA Indexer (V3.2 names) named layers.0.attn; inputs.x holds its "
      "input for every position", "dsa", DSA_TINY, 2, 12, 3, 505, "spec/dsa.md [DSA-1..DSA-8]",
      "3 (non-interleaved indexer RoPE), 4 (LayerNorm k_norm, Hadamard, ReLU score weights), 5 (top-k 4 of 12-15 "
      "candidates), 12 (index sets compared as sets)",
      "the indexer's selected sets and the MLA output over them, prefill (naive path + masks) and decode "
      "(absorbed path)",
      "tie order inside a top-k set is ours (score descending, index ascending); only the set is claimed" },
    { "v4_swa_layer", K_ATTN, "one V4 attention layer, SWA (window only, ratio 0)",
      "attention only: one V4 attention layer named layers.0.attn (ratio compress_ratios[0]); inputs.x holds its "
      "input (RMSNorm(HCPre(x))) for every position", "v4", UNIT_CFG("[0, 0]"), 2, 11, 6, 1111,
      "spec/v4-attention.md [V4Q] [WIN] [OUT]; spec/sparse-attention.md; spec/csa-hca.md",
      "6 (theta 10000, no YaRN on SWA layers), 7 (no YaRN mscale), 8 (inverse RoPE on the output), 13 (sinks), "
      "window ring across decode (prefill 11 > window 8), o_groups 2 with wo_a columns 160 != dim 56 (18)",
      "the SWA layer's output for a prefill and 6 decodes, batch 2",
      "no compression: see v4_csa_layer and v4_hca_layer" },
    { "v4_csa_layer", K_ATTN, "one V4 attention layer, CSA (ratio 4: overlapping compressor + lightning indexer)",
      "attention only: one V4 attention layer named layers.0.attn (ratio compress_ratios[0]); inputs.x holds its "
      "input (RMSNorm(HCPre(x))) for every position", "v4", UNIT_CFG("[4, 0]"), 2, 11, 6, 1212,
      "spec/v4-attention.md; spec/csa-hca.md [CSA-1..]; spec/compressor.md; spec/indexer.md; spec/sparse-attention.md",
      "5 (top-3 of 2-4 visible entries: the regime changes during the case), 6, 9, 10, 11, 12, 13, 14, the KV "
      "offset of compressed entries (S at prefill, window at decode)",
      "the CSA layer's output, emitted entries, indexer keys and selections (as sets), prefill and decode",
      "a tiny top-k (3): selections are mostly 'all visible' early on; indexer_v4 exercises k << entries" },
    { "v4_hca_layer", K_ATTN, "one V4 attention layer, HCA (ratio 8: non-overlapping compressor, every entry visible)",
      "attention only: one V4 attention layer named layers.0.attn (ratio compress_ratios[0]); inputs.x holds its "
      "input (RMSNorm(HCPre(x))) for every position", "v4", UNIT_CFG("[8, 0]"), 2, 11, 6, 1313,
      "spec/v4-attention.md; spec/csa-hca.md; spec/compressor.md; spec/sparse-attention.md",
      "6 (compress_rope_theta + YaRN on compressed layers), 9, 10, 13, entries visible only once complete "
      "(t = 15 emits entry 1 during decode)",
      "the HCA layer's output and emitted entries, prefill and decode",
      "ratio 8 stands for 128 (same code path)" },
    { "compressor_csa", K_UNIT, "V4 KV compressor alone, ratio 4 (overlapping windows)",
      "unit compressor: the main KV compressor of layers.0.attn (ratio compress_ratios[0]); inputs.x holds its "
      "input (the attention input) for every position", NULL, UNIT_CFG("[4, 0]"), 2, 10, 7, 606,
      "spec/compressor.md [CMP-1..CMP-8]",
      "9 (entry j rotated at position j*m), 10 (overlap: 2m slots, previous block's A half, empty block -inf), "
      "14 (FP8 simulation of the nope dims in official mode); prefill 10 leaves a partial block in the state",
      "the entries emitted by a prefill and by decode steps (t = 11, 15) equal the reference's",
      "the compressor's use inside attention (the KV buffer, entry visibility) is covered by the model cases" },
    { "compressor_hca", K_UNIT, "V4 KV compressor alone, ratio 8 (HCA, non-overlapping)",
      "unit compressor: the main KV compressor of layers.0.attn (ratio compress_ratios[0]); inputs.x holds its "
      "input (the attention input) for every position", NULL, UNIT_CFG("[8, 0]"), 2, 10, 7, 707,
      "spec/compressor.md [CMP-1..CMP-8]",
      "9, 10 (no overlap for m != 4), decode completing a block started in the prefill (t = 15)",
      "the entries emitted by a prefill and by decode steps equal the reference's",
      "the real HCA ratio (128) is not run; m = 8 exercises the same code path" },
    { "indexer_v4", K_UNIT, "V4 lightning indexer alone (its compressor, Hadamard, FP4, top-k)",
      "unit indexer: the lightning indexer of layers.0.attn (ratio 4); inputs.x holds the attention input and "
      "inputs.qr the query latent c_q for every position", NULL, UNIT_CFG("[4, 0]"), 2, 30, 4, 808,
      "spec/indexer.md [IDX-1..IDX-6]",
      "5 (top-k 3 of 7-8 entries), 11 (own compressor, Hadamard, FP4 round trip), 12 (sets), prefill rows "
      "with fewer visible entries than k (-1)",
      "the selected entry numbers (as sets) and the emitted indexer keys equal the reference's",
      "entry numbers are NOT shifted by the KV offset (no KV buffer in a unit case)" },
    { "mhc", K_UNIT, "manifold-constrained hyper-connections alone (HCPre with Sinkhorn, HCPost, HCHead)",
      "unit mhc: HCPre of layers.0 (hc_attn_*), HCPost of inputs.o with its post/comb, and the HCHead "
      "(hc_head_*); inputs.x holds the hc streams for every position", NULL, UNIT_CFG("[0, 0]"), 2, 9, 0, 909,
      "spec/mhc.md [MHC-1..MHC-5]",
      "15 (post = 2 sigmoid, comb softmax + eps then 20 Sinkhorn iterations column-first, hc = 3 != 4)",
      "pre-mix a, post, comb, the new streams and the head mix equal the reference's for every token",
      "the Block wiring of mHC (which norm follows, residual routing) is covered by the model cases" },
    { "moe", K_UNIT, "router and MoE alone: hash routing (layer 0) and sqrt-softplus score routing (layer 1)",
      "unit moe: the MoE of layers.0 (hash-routed) and layers.1 (score-routed) on the same inputs; inputs.x "
      "holds the ffn input and inputs.tokens the token ids", NULL, UNIT_CFG("[0, 0]"), 2, 12, 0, 1010,
      "spec/moe.md [MOE-1..MOE-4]",
      "16 (bias for selection only, weights from unbiased scores, route_scale), 17 (clamp at swiglu_limit 2: "
      "gate above only, up both sides, shared expert unclamped), top-3 of 9 experts",
      "routing weights, expert ids (as sets) and the MoE output equal the reference's",
      "FP4 expert weights are not used (bf16 experts)" },
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

/* ---- deterministic numbers ---- */

typedef struct { uint64_t s; } rng;

/* xorshift64*, uniform in [-1, 1) (the generator of tools/tiny_model.c) */
static double rng_uniform(rng *r)
{
    r->s ^= r->s >> 12; r->s ^= r->s << 25; r->s ^= r->s >> 27;
    uint64_t v = r->s * 2685821657736338717ULL;
    return (double)(v >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
}

typedef struct { st_writer *w; rng r; int rc; } gen;

/* adds a tensor of ndim <= 4 with values offset + scale * U(-1, 1), stored in dtype */
static void add_t(gen *g, dsv4_dtype dt, const char *name, int ndim, const int64_t *shape, double offset,
                  double scale)
{
    int64_t n = 1;
    if (g->rc) return;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    float *buf = dsv4_calloc((size_t)n, sizeof *buf, name);
    if (!buf) { g->rc = -1; return; }
    for (int64_t i = 0; i < n; i++) buf[i] = (float)(offset + scale * rng_uniform(&g->r));
    if (st_writer_add_f32(g->w, name, dt, ndim, shape, buf)) g->rc = -1;
    free(buf);
}

/* a [rows, cols] tensor (add_t) */
static void add_mat(gen *g, dsv4_dtype dt, const char *name, int64_t rows, int64_t cols, double offset, double scale)
{
    int64_t s[2] = { rows, cols };
    add_t(g, dt, name, 2, s, offset, scale);
}

/* a [n] tensor (add_t) */
static void add_vec(gen *g, dsv4_dtype dt, const char *name, int64_t n, double offset, double scale)
{
    add_t(g, dt, name, 1, &n, offset, scale);
}

/* a bf16 Linear weight [out, in] with unit-variance outputs */
static void add_lin(gen *g, const char *name, int64_t out, int64_t in)
{
    add_mat(g, DSV4_BF16, name, out, in, 0.0, sqrt(3.0 / (double)in));
}

/* ---- JSON helpers ---- */

static int64_t cfg_int(const json_value *v, const char *key)
{
    int64_t x = 0;
    const json_value *f = json_get(v, key);
    if (f) json_int64(f, &x);
    return x;
}

/* the schedule [{start_pos 0, len P}, {P, 1}, ...] as JSON */
static char *schedule_json(int64_t prefill, int64_t n_decode)
{
    size_t cap = 64 + (size_t)n_decode * 40;
    char *s = malloc(cap);
    if (!s) return NULL;
    size_t k = (size_t)snprintf(s, cap, "[{\"start_pos\": 0, \"len\": %lld}", (long long)prefill);
    for (int64_t i = 0; i < n_decode; i++)
        k += (size_t)snprintf(s + k, cap - k, ", {\"start_pos\": %lld, \"len\": 1}", (long long)(prefill + i));
    snprintf(s + k, cap - k, "]");
    return s;
}

/* ---- weights and inputs of each kind ---- */

/* copies every tensor of f into w */
static int copy_tensors(st_writer *w, const st_file *f)
{
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        if (st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes)) return -1;
    }
    return 0;
}

/* [GLD-1] full model: tools/tiny_model.c weights for the config + inputs.tokens [B, T] */
static int make_model_inputs(gen *g, const golden_case *gc, const char *tmp)
{
    dsv4_config c;
    dsv4_config_defaults(&c);
    if (dsv4_config_from_json(&c, gc->config, strlen(gc->config), gc->name)) return -1;
    if (dsv4_config_validate(&c, gc->name)) return -1;
    if (tiny_model_write(&c, gc->seed, tmp)) return -1;
    st_file *f = st_open(tmp);
    unlink(tmp);
    if (!f) return -1;
    int rc = copy_tensors(g->w, f);
    st_close(f);
    if (rc) return -1;
    int64_t T = gc->prefill + gc->n_decode, shape[2] = { gc->B, T };
    int64_t *tok = dsv4_calloc((size_t)(gc->B * T), sizeof *tok, "tokens");
    if (!tok) return -1;
    for (int64_t i = 0; i < gc->B * T; i++) {
        double u = rng_uniform(&g->r);
        tok[i] = (int64_t)floor((u + 1.0) * 0.5 * (double)c.vocab_size) % c.vocab_size;
    }
    rc = st_writer_add(g->w, "inputs.tokens", DSV4_I64, 2, shape, tok, (size_t)(gc->B * T) * sizeof *tok);
    free(tok);
    return rc;
}

/* [GLD-3] one V4 attention layer layers.0.attn of ratio compress_ratios[0] (official names) */
static void add_comp_weights(gen *g, const char *pre, int64_t m, int64_t D, int64_t d);

static int make_v4_attn_inputs(gen *g, const golden_case *gc)
{
    dsv4_config c;
    dsv4_config_defaults(&c);
    if (dsv4_config_from_json(&c, gc->config, strlen(gc->config), gc->name)) return -1;
    const int64_t d = c.dim, H = c.n_heads, D = c.head_dim, m = c.compress_ratios[0];
    add_lin(g, "layers.0.attn.wq_a.weight", c.q_lora_rank, d);
    add_vec(g, DSV4_BF16, "layers.0.attn.q_norm.weight", c.q_lora_rank, 1.0, 0.2);
    add_lin(g, "layers.0.attn.wq_b.weight", H * D, c.q_lora_rank);
    add_lin(g, "layers.0.attn.wkv.weight", D, d);
    add_vec(g, DSV4_BF16, "layers.0.attn.kv_norm.weight", D, 1.0, 0.2);
    add_lin(g, "layers.0.attn.wo_a.weight", c.o_groups * c.o_lora_rank, H * D / c.o_groups);
    add_lin(g, "layers.0.attn.wo_b.weight", d, c.o_groups * c.o_lora_rank);
    add_vec(g, DSV4_F32, "layers.0.attn.attn_sink", H, 0.0, 2.0);
    if (m > 0) add_comp_weights(g, "layers.0.attn.compressor", m, D, d);
    if (m == 4) {
        add_lin(g, "layers.0.attn.indexer.wq_b.weight", c.index_n_heads * c.index_head_dim, c.q_lora_rank);
        add_lin(g, "layers.0.attn.indexer.weights_proj.weight", c.index_n_heads, d);
        add_comp_weights(g, "layers.0.attn.indexer.compressor", 4, c.index_head_dim, d);
    }
    int64_t shape[3] = { gc->B, gc->prefill + gc->n_decode, d };
    add_t(g, DSV4_BF16, "inputs.x", 3, shape, 0.0, 1.7);
    return g->rc;
}

/* [GLD-3] one attention module named layers.0.attn + inputs.x (BF16 [B, T, dim]) */
static int make_attn_inputs(gen *g, const golden_case *gc)
{
    if (strcmp(gc->attention, "v4") == 0) return make_v4_attn_inputs(g, gc);
    char err[256];
    json_value *v = json_parse(gc->config, strlen(gc->config), err, sizeof err);
    if (!v) return dsv4_set_error("%s: bad built-in config: %s", gc->name, err);
    int64_t d = cfg_int(v, "dim"), H = cfg_int(v, "n_heads");
    if (strcmp(gc->attention, "mha") == 0) {
        int64_t D = cfg_int(v, "head_dim"), Dv = cfg_int(v, "v_head_dim");
        add_lin(g, "layers.0.attn.wq.weight", H * D, d);
        add_lin(g, "layers.0.attn.wk.weight", H * D, d);
        add_lin(g, "layers.0.attn.wv.weight", H * Dv, d);
        add_lin(g, "layers.0.attn.wo.weight", d, H * Dv);
    } else {
        int64_t rq = cfg_int(v, "q_lora_rank"), rkv = cfg_int(v, "kv_lora_rank");
        int64_t dn = cfg_int(v, "qk_nope_head_dim"), dr = cfg_int(v, "qk_rope_head_dim"), dv = cfg_int(v, "v_head_dim");
        add_lin(g, "layers.0.attn.wq_a.weight", rq, d);
        add_vec(g, DSV4_F32, "layers.0.attn.q_norm.weight", rq, 1.0, 0.3);
        add_lin(g, "layers.0.attn.wq_b.weight", H * (dn + dr), rq);
        add_lin(g, "layers.0.attn.wkv_a.weight", rkv + dr, d);
        add_vec(g, DSV4_F32, "layers.0.attn.kv_norm.weight", rkv, 1.0, 0.3);
        add_lin(g, "layers.0.attn.wkv_b.weight", H * (dn + dv), rkv);
        add_lin(g, "layers.0.attn.wo.weight", d, H * dv);
        if (strcmp(gc->attention, "dsa") == 0) {
            int64_t IH = cfg_int(v, "index_n_heads"), ID = cfg_int(v, "index_head_dim");
            add_lin(g, "layers.0.attn.indexer.wq_b.weight", IH * ID, rq);
            add_lin(g, "layers.0.attn.indexer.wk.weight", ID, d);
            add_vec(g, DSV4_F32, "layers.0.attn.indexer.k_norm.weight", ID, 1.0, 0.3);
            add_vec(g, DSV4_F32, "layers.0.attn.indexer.k_norm.bias", ID, 0.0, 0.2);
            add_mat(g, DSV4_F32, "layers.0.attn.indexer.weights_proj.weight", IH, d, 0.0, sqrt(3.0 / (double)d));
        }
    }
    int64_t shape[3] = { gc->B, gc->prefill + gc->n_decode, d };
    add_t(g, DSV4_BF16, "inputs.x", 3, shape, 0.0, 1.7);
    json_free(v);
    return g->rc;
}

/* [GLD-4] the weights and inputs of a unit case (names of Block 0 / 1 of the full model) */
static void add_comp_weights(gen *g, const char *pre, int64_t m, int64_t D, int64_t d)
{
    char n[160];
    int64_t k = m == 4 ? 2 : 1;
    snprintf(n, sizeof n, "%s.ape", pre); add_mat(g, DSV4_F32, n, m, k * D, 0.0, 0.5);
    snprintf(n, sizeof n, "%s.wkv.weight", pre); add_mat(g, DSV4_F32, n, k * D, d, 0.0, sqrt(3.0 / (double)d));
    snprintf(n, sizeof n, "%s.wgate.weight", pre); add_mat(g, DSV4_F32, n, k * D, d, 0.0, sqrt(3.0 / (double)d));
    snprintf(n, sizeof n, "%s.norm.weight", pre); add_vec(g, DSV4_BF16, n, D, 1.0, 0.2);
}

/* one SwiGLU expert: w1, w3 [inter, d], w2 [d, inter] (bf16) */
static void add_expert(gen *g, const char *pre, int64_t inter, int64_t d)
{
    char n[160];
    snprintf(n, sizeof n, "%s.w1.weight", pre); add_lin(g, n, inter, d);
    snprintf(n, sizeof n, "%s.w2.weight", pre); add_lin(g, n, d, inter);
    snprintf(n, sizeof n, "%s.w3.weight", pre); add_lin(g, n, inter, d);
}

/* [GLD-4] dispatch on the unit named after "unit " in the scope */
static int make_unit_inputs(gen *g, const golden_case *gc)
{
    dsv4_config c;
    dsv4_config_defaults(&c);
    if (dsv4_config_from_json(&c, gc->config, strlen(gc->config), gc->name)) return -1;
    const int64_t B = gc->B, T = gc->prefill + gc->n_decode, d = c.dim, hc = c.hc_mult;
    const char *u = gc->scope + 5;
    int64_t sx[3] = { B, T, d };
    if (strncmp(u, "compressor", 10) == 0) {
        add_comp_weights(g, "layers.0.attn.compressor", c.compress_ratios[0], c.head_dim, d);
        add_t(g, DSV4_BF16, "inputs.x", 3, sx, 0.0, 1.7);
    } else if (strncmp(u, "indexer", 7) == 0) {
        int64_t sq[3] = { B, T, c.q_lora_rank };
        add_lin(g, "layers.0.attn.indexer.wq_b.weight", c.index_n_heads * c.index_head_dim, c.q_lora_rank);
        add_lin(g, "layers.0.attn.indexer.weights_proj.weight", c.index_n_heads, d);
        add_comp_weights(g, "layers.0.attn.indexer.compressor", 4, c.index_head_dim, d);
        add_t(g, DSV4_BF16, "inputs.x", 3, sx, 0.0, 1.7);
        add_t(g, DSV4_BF16, "inputs.qr", 3, sq, 0.0, 1.7);
    } else if (strncmp(u, "mhc", 3) == 0) {
        int64_t nmix = (2 + hc) * hc, s4[4] = { B, T, hc, d };
        add_mat(g, DSV4_F32, "layers.0.hc_attn_fn", nmix, hc * d, 0.0, 1.0 / sqrt((double)(hc * d)));
        add_vec(g, DSV4_F32, "layers.0.hc_attn_base", nmix, 0.0, 1.0);
        add_vec(g, DSV4_F32, "layers.0.hc_attn_scale", 3, 0.5, 0.3);
        add_mat(g, DSV4_F32, "hc_head_fn", hc, hc * d, 0.0, 1.0 / sqrt((double)(hc * d)));
        add_vec(g, DSV4_F32, "hc_head_base", hc, 0.0, 1.0);
        add_vec(g, DSV4_F32, "hc_head_scale", 1, 0.5, 0.2);
        add_t(g, DSV4_BF16, "inputs.x", 4, s4, 0.0, 1.7);
        add_t(g, DSV4_BF16, "inputs.o", 3, sx, 0.0, 1.7);
    } else if (strncmp(u, "moe", 3) == 0) {
        char n[160];
        for (int64_t i = 0; i < 2; i++) {
            snprintf(n, sizeof n, "layers.%lld.ffn.gate.weight", (long long)i);
            add_lin(g, n, c.n_routed_experts, d);
            if (i < c.n_hash_layers) {
                int64_t shape[2] = { c.vocab_size, c.n_activated_experts };
                int32_t *t2e = dsv4_calloc((size_t)(shape[0] * shape[1]), sizeof *t2e, "tid2eid");
                if (!t2e) return -1;
                for (int64_t v = 0; v < c.vocab_size; v++)   /* distinct experts per token */
                    for (int64_t j = 0; j < c.n_activated_experts; j++)
                        t2e[v * c.n_activated_experts + j] = (int32_t)((v * 5 + j * 2) % c.n_routed_experts);
                snprintf(n, sizeof n, "layers.%lld.ffn.gate.tid2eid", (long long)i);
                if (!g->rc && st_writer_add(g->w, n, DSV4_I32, 2, shape, t2e, (size_t)(shape[0] * shape[1]) * sizeof *t2e))
                    g->rc = -1;
                free(t2e);
            } else {
                snprintf(n, sizeof n, "layers.%lld.ffn.gate.bias", (long long)i);
                add_vec(g, DSV4_F32, n, c.n_routed_experts, 0.0, 0.3);
            }
            for (int64_t e = 0; e < c.n_routed_experts; e++) {
                char pre[96];
                snprintf(pre, sizeof pre, "layers.%lld.ffn.experts.%lld", (long long)i, (long long)e);
                add_expert(g, pre, c.moe_inter_dim, d);
            }
            snprintf(n, sizeof n, "layers.%lld.ffn.shared_experts", (long long)i);
            add_expert(g, n, c.moe_inter_dim, d);
        }
        add_t(g, DSV4_BF16, "inputs.x", 3, sx, 0.0, 1.7);
        int64_t st2[2] = { B, T };
        int64_t *tok = dsv4_calloc((size_t)(B * T), sizeof *tok, "tokens");
        if (!tok) return -1;
        for (int64_t i = 0; i < B * T; i++) tok[i] = (int64_t)((rng_uniform(&g->r) + 1.0) * 0.5 * (double)c.vocab_size) % c.vocab_size;
        if (!g->rc && st_writer_add(g->w, "inputs.tokens", DSV4_I64, 2, st2, tok, (size_t)(B * T) * sizeof *tok)) g->rc = -1;
        free(tok);
    } else return dsv4_set_error("%s: unknown unit '%s'", gc->name, gc->scope);
    return g->rc;
}

/* ---- one case ---- */

typedef struct { char *buf; size_t len, cap; } sbuf;

/* appends fmt (with at most one %s = a) to the growing string s */
static void sb_add(sbuf *s, const char *fmt, const char *a)
{
    size_t need = strlen(fmt) + (a ? strlen(a) : 0) + 1;
    if (s->len + need > s->cap) {
        size_t nc = (s->len + need) * 2;
        char *nb = realloc(s->buf, nc);
        if (!nb) return;
        s->buf = nb;
        s->cap = nc;
    }
    s->len += (size_t)snprintf(s->buf + s->len, s->cap - s->len, fmt, a);
}

/* reads a whole file into memory */
static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) { free(b); b = NULL; }
    fclose(f);
    *n = b ? (size_t)len : 0;
    return b;
}

/* [GLD-1] Generates <out>/<name>_<numerics>.safetensors and appends its MANIFEST entry. */
static int make_case(const golden_case *gc, dsv4_numerics num, const char *out, sbuf *man, int first)
{
    char file[160], path[1024], tmp_in[1100], tmp_taps[1100], tmp_w[1100];
    const char *nname = dsv4_numerics_name(num);
    snprintf(file, sizeof file, "%s_%s.safetensors", gc->name, nname);
    snprintf(path, sizeof path, "%s/%s", out, file);
    snprintf(tmp_in, sizeof tmp_in, "%s/.in-%s", out, file);
    snprintf(tmp_taps, sizeof tmp_taps, "%s/.taps-%s", out, file);
    snprintf(tmp_w, sizeof tmp_w, "%s/.w-%s", out, file);
    char *sched = schedule_json(gc->prefill, gc->n_decode);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)gc->seed);
    gen g = { st_writer_new(), { gc->seed }, 0 };
    dsv4_wsrc *src = NULL;
    dsv4_taps *taps = NULL;
    st_file *tf = NULL;
    st_writer *fin = NULL;
    int rc = -1;
    if (!g.w || !sched) { dsv4_set_error("out of memory"); goto done; }
    if (gc->kind == K_MODEL ? make_model_inputs(&g, gc, tmp_w)
        : gc->kind == K_ATTN ? make_attn_inputs(&g, gc) : make_unit_inputs(&g, gc)) goto done;
    const char *meta[][2] = {
        { "format", "dsv4-golden-1" }, { "case", gc->name }, { "source", "dsv4ref " DSV4REF_VERSION },
        { "config", gc->config }, { "schedule", sched }, { "numerics", nname }, { "seed", seed },
        { "variant", gc->variant }, { "spec", gc->spec }, { "pitfalls", gc->pitfall },
        { "scope", gc->scope }, { "attention", gc->attention },
    };
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++)
        if (meta[i][1] && st_writer_meta(g.w, meta[i][0], meta[i][1])) goto done;
    if (st_writer_save(g.w, tmp_in, 0)) goto done;
    /* run it exactly as `dsv4ref check` does */
    if (!(src = wsrc_open_file(tmp_in))) goto done;
    if (!(taps = dsv4_taps_new())) goto done;
    if (check_case(src, wsrc_file(src), num, 0, taps)) goto done;
    if (dsv4_taps_save(taps, tmp_taps, NULL)) goto done;
    if (!(tf = st_open(tmp_taps))) goto done;
    if (!(fin = st_writer_new())) goto done;
    const st_file *inf = wsrc_file(src);
    if (copy_tensors(fin, inf) || copy_tensors(fin, tf)) goto done;
    for (size_t i = 0; i < st_meta_count(inf); i++)
        if (st_writer_meta(fin, st_meta_key(inf, i), st_meta(inf, st_meta_key(inf, i)))) goto done;
    if (st_writer_save(fin, path, 0)) goto done;
    size_t n;
    unsigned char *bytes = slurp(path, &n);
    if (!bytes) { dsv4_set_error("%s: cannot read back", path); goto done; }
    char hex[65];
    sha256_hex(bytes, n, hex);
    free(bytes);
    char nb[64], nt[32];
    snprintf(nb, sizeof nb, "%zu", n);
    snprintf(nt, sizeof nt, "%zu", dsv4_taps_count(taps));
    /* the MANIFEST entry */
    char *q;
    sb_add(man, first ? "\n" : ",\n", NULL);
    sb_add(man, "    {\"case\": \"%s\"", gc->name);
    q = json_quote(gc->variant); sb_add(man, ", \"variant\": %s", q); free(q);
    sb_add(man, ", \"numerics\": \"%s\"", nname);
    sb_add(man, ", \"file\": \"%s\"", file);
    sb_add(man, ", \"sha256\": \"%s\"", hex);
    sb_add(man, ", \"bytes\": %s", nb);
    sb_add(man, ", \"taps\": %s", nt);
    q = json_quote(gc->scope ? gc->scope : "full model"); sb_add(man, ",\n     \"scope\": %s", q); free(q);
    q = json_quote(gc->spec); sb_add(man, ",\n     \"spec\": %s", q); free(q);
    q = json_quote(gc->pitfall); sb_add(man, ",\n     \"pitfall\": %s", q); free(q);
    q = json_quote(gc->proves); sb_add(man, ",\n     \"proves\": %s", q); free(q);
    q = json_quote(gc->not_proves); sb_add(man, ",\n     \"does_not_prove\": %s}", q); free(q);
    printf("  %-40s %8s bytes  %3s taps  sha256 %.16s\n", file, nb, nt, hex);
    rc = 0;
done:
    if (rc) fprintf(stderr, "dsv4ref golden: %s: %s\n", file, dsv4_last_error());
    st_writer_free(g.w);
    st_writer_free(fin);
    st_close(tf);
    dsv4_taps_free(taps);
    wsrc_close(src);
    unlink(tmp_in);
    unlink(tmp_taps);
    unlink(tmp_w);
    free(sched);
    return rc;
}

/* [GLD-1] `dsv4ref golden --out DIR [--only CASE]`: every case in both numerics, then
 * MANIFEST.json. Exit 0, or 2 on any error (a partial suite has no MANIFEST). */
int cmd_golden(int argc, char **argv)
{
    const char *out = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: dsv4ref golden --out DIR [--only CASE]\n"
                   "  writes DIR/<case>_<exact|official>.safetensors for every case of the suite and\n"
                   "  DIR/MANIFEST.json (spec/golden-suite.md); deterministic: byte-identical reruns\n");
            return EXIT_OK;
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else { fprintf(stderr, "dsv4ref golden: unexpected argument '%s'\n", argv[i]); return EXIT_BAD_INPUT; }
    }
    if (!out) { fprintf(stderr, "dsv4ref golden: --out DIR is required\n"); return EXIT_BAD_INPUT; }
    int known = !only;
    for (size_t i = 0; i < N_CASES; i++) if (only && strcmp(only, CASES[i].name) == 0) known = 1;
    if (!known) {
        fprintf(stderr, "dsv4ref golden: no case named '%s'; the cases:", only);
        for (size_t i = 0; i < N_CASES; i++) fprintf(stderr, " %s", CASES[i].name);
        fprintf(stderr, "\n");
        return EXIT_BAD_INPUT;
    }
    struct stat sb;
    if (stat(out, &sb) != 0 && mkdir(out, 0777) != 0) {
        fprintf(stderr, "dsv4ref golden: cannot create %s\n", out);
        return EXIT_BAD_INPUT;
    }
    /* the defaults `dsv4ref check` uses on a file whose source is not DeepSeek's code: our tie
     * rule [TOPK-1] (spec/golden-suite.md [GLD-1]) */
    topk_set_rule(TOPK_RULE_SPEC);
    sbuf man = { NULL, 0, 0 };
    sb_add(&man, "{\"format\": \"dsv4-golden-manifest-1\", \"source\": \"%s\",\n \"cases\": [", "dsv4ref " DSV4REF_VERSION);
    int first = 1, rc = EXIT_OK;
    printf("dsv4ref golden: writing the suite to %s\n", out);
    for (size_t i = 0; i < N_CASES && rc == EXIT_OK; i++) {
        if (only && strcmp(only, CASES[i].name) != 0) continue;
        for (int m = 0; m < 2 && rc == EXIT_OK; m++) {
            if (make_case(&CASES[i], m == 0 ? DSV4_EXACT : DSV4_OFFICIAL, out, &man, first)) rc = EXIT_BAD_INPUT;
            first = 0;
        }
    }
    sb_add(&man, "\n ]}\n", NULL);
    if (rc == EXIT_OK && !only) {
        char p[1024];
        snprintf(p, sizeof p, "%s/MANIFEST.json", out);
        FILE *f = fopen(p, "wb");
        if (!f || fwrite(man.buf, 1, man.len, f) != man.len) rc = EXIT_BAD_INPUT;
        if (f && fclose(f)) rc = EXIT_BAD_INPUT;
        if (rc) fprintf(stderr, "dsv4ref golden: cannot write %s\n", p);
    }
    free(man.buf);
    return rc;
}
