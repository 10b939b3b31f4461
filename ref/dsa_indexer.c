/* dsa_indexer.c — the DSA lightning indexer of DeepSeek-V3.2-Exp (spec/dsa.md).
 *
 * Forward order of one call (every step per token t of the call):
 *   [DSA-1] q = wq_b q_r                      [H_I, D_I], layout per head [rope r | nope]
 *   [DSA-2] k = LayerNorm(wk x)               [D_I],      layout [rope r | nope]
 *   [DSA-3] half-split RoPE on q[h][0:r] and k[0:r] at position t
 *   [DSA-4] Hadamard rotation of every q[h] and of k
 *   [DSA-5] official: FP8 e4m3 with a power-of-two scale per (t, h) for q, per t for k;
 *           the key (codes as values + scale) is cached before scoring
 *   [DSA-6] head weights w[t,h] = (weights_proj x)_h * H_I^-1/2 * sigma_q[t,h] * D_I^-1/2
 *   [DSA-7] I[t,s] = sigma_k[s] * sum_h w[t,h] ReLU(q[t,h] . k[s]) for s <= t;
 *           top min(index_topk, t+1) by score descending, ties by position ascending.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dsa_indexer.h"
#include "backend.h"
#include "counters.h"
#include "hadamard.h"
#include "linear.h"
#include "norm.h"
#include "numerics.h"
#include "topk.h"

struct dsa_indexer {
    int64_t dim, q_lora_rank, n_heads, head_dim, topk;
    float eps;
    dsv4_numerics num;
    const rope_freqs *rope;       /* shared with the MLA (not owned) */
    rope_layout layout;           /* ROPE_HALF_SPLIT (pitfall 3 hook) */
    int rmsnorm_k;                /* 0: LayerNorm (pitfall 4 hook) */
    dsv4_weight wq_b, wk, weights_proj;
    float *k_norm_w, *k_norm_b;   /* [D_I] */
    int64_t max_batch, max_seq_len;
    float *k_cache;               /* [max_batch, max_seq_len, D_I]: key values (official: e4m3 values) */
    float *k_scale;               /* [max_batch, max_seq_len]: key scale (official: power of 2; exact: 1) */
};

/* ---- construction ---- */

/* [DSA-1..DSA-6] Validates the dims (D_I a power of two for the Hadamard; official: <= 128),
 * reads wq_b [H_I*D_I, r_q], wk [D_I, d], weights_proj [H_I, d] (views) and k_norm weight and
 * bias [D_I] (copies), allocates the key cache [max_batch, max_seq_len, D_I] and the key
 * scales [max_batch, max_seq_len]. */
dsa_indexer *dsa_indexer_new(int64_t dim, int64_t q_lora_rank, int64_t n_heads, int64_t head_dim,
                             int64_t topk, double eps, const rope_freqs *rope,
                             const dsv4_wlookup *w, const char *prefix, int64_t max_batch,
                             int64_t max_seq_len, dsv4_numerics num)
{
    char name[256];
    if (dim <= 0 || q_lora_rank <= 0 || n_heads <= 0 || head_dim <= 0 || topk <= 0) {
        dsv4_set_error("%s: indexer needs dim, q_lora_rank, index_n_heads, index_head_dim, "
                       "index_topk > 0", prefix);
        return NULL;
    }
    if ((head_dim & (head_dim - 1)) != 0) {
        dsv4_set_error("%s: index_head_dim %lld must be a power of two (Hadamard)", prefix,
                       (long long)head_dim);
        return NULL;
    }
    if (num == DSV4_OFFICIAL && head_dim > 128) {
        dsv4_set_error("%s: index_head_dim %lld > 128: the official graph's one FP8 scale per "
                       "head vector needs index_head_dim <= 128", prefix, (long long)head_dim);
        return NULL;
    }
    if (rope->rope_dim > head_dim) {
        dsv4_set_error("%s: qk_rope_head_dim %d > index_head_dim %lld", prefix, rope->rope_dim,
                       (long long)head_dim);
        return NULL;
    }
    dsa_indexer *I = dsv4_calloc(1, sizeof *I, "indexer");
    if (!I) return NULL;
    I->dim = dim; I->q_lora_rank = q_lora_rank; I->n_heads = n_heads; I->head_dim = head_dim;
    I->topk = topk; I->eps = (float)eps; I->num = num; I->rope = rope;
    I->layout = ROPE_HALF_SPLIT; I->rmsnorm_k = 0;
    I->max_batch = max_batch; I->max_seq_len = max_seq_len;

    snprintf(name, sizeof name, "%s.wq_b.weight", prefix);
    if (w->weight(w->ctx, name, n_heads * head_dim, q_lora_rank, &I->wq_b)) goto fail;
    snprintf(name, sizeof name, "%s.wk.weight", prefix);
    if (w->weight(w->ctx, name, head_dim, dim, &I->wk)) goto fail;
    snprintf(name, sizeof name, "%s.weights_proj.weight", prefix);
    if (w->weight(w->ctx, name, n_heads, dim, &I->weights_proj)) goto fail;
    snprintf(name, sizeof name, "%s.k_norm.weight", prefix);
    if (w->floats(w->ctx, name, head_dim, &I->k_norm_w)) goto fail;
    snprintf(name, sizeof name, "%s.k_norm.bias", prefix);
    if (w->floats(w->ctx, name, head_dim, &I->k_norm_b)) goto fail;

    I->k_cache = dsv4_calloc((size_t)(max_batch * max_seq_len * head_dim), sizeof(float), "indexer k cache");
    I->k_scale = dsv4_calloc((size_t)(max_batch * max_seq_len), sizeof(float), "indexer k scale cache");
    if (!I->k_cache || !I->k_scale) goto fail;
    return I;
fail:
    dsa_indexer_free(I);
    return NULL;
}

/* Frees the indexer and its cache (weights are views; the RoPE table is the MLA's). */
void dsa_indexer_free(dsa_indexer *I)
{
    if (!I) return;
    free(I->k_norm_w); free(I->k_norm_b); free(I->k_cache); free(I->k_scale);
    free(I);
}

/* [DSA-5] New sequences: key cache and scales back to 0. */
void dsa_indexer_reset(dsa_indexer *I)
{
    memset(I->k_cache, 0, (size_t)(I->max_batch * I->max_seq_len * I->head_dim) * sizeof(float));
    memset(I->k_scale, 0, (size_t)(I->max_batch * I->max_seq_len) * sizeof(float));
}

/* [DSA-2], [DSA-3] Pitfall hooks (tests only): RoPE pair layout and the k norm kind. */
void dsa_indexer_set_variant(dsa_indexer *I, rope_layout layout, int rmsnorm_k)
{
    I->layout = layout;
    I->rmsnorm_k = rmsnorm_k;
}

/* [DSA-7] k = min(index_topk, end_pos): the official topk size of a call. */
int64_t dsa_indexer_k(const dsa_indexer *I, int64_t end_pos)
{
    return I->topk < end_pos ? I->topk : end_pos;
}

/* [DSA-9] e4m3 key (D_I bytes) + its fp32 scale. */
int64_t dsa_indexer_cache_bytes_per_token(const dsa_indexer *I)
{
    return I->head_dim * 1 + 4;   /* e4m3 key + fp32 scale [DSA-9] */
}

/* ---- [DSA-5] FP8 simulation of one vector ---- */

/* v: [n] bf16 values (official) in place -> e4m3 values (v / scale, exactly representable);
 * returns the power-of-two scale (official: act_quant with ue8m0 scales, one block of n).
 * exact mode: v unchanged, scale 1. Pitfall 4 (the official q/k are FP8). */
static float fp8_vector(float *v, int64_t n, dsv4_numerics num)
{
    if (num != DSV4_OFFICIAL) return 1.0f;
    uint8_t codes[128];
    float scale;
    fp8_act_quant(v, n, (int)n, codes, &scale);
    for (int64_t i = 0; i < n; i++) v[i] = e4m3_to_float(codes[i]);
    return scale;
}

/* ---- the forward call ---- */

/* [DSA-1..DSA-7]  x: [B, S, d], qr: [B, S, r_q] -> topk: [B, S, k], score: [B, S, end_pos].
 * Official: GEMMs and norms as the graph (bf16 outputs; weights_proj fp32 GEMM on f32(x)),
 * FP8 dot products summed exactly then rounded to fp32, per-head terms f32(ReLU(z) * w),
 * head sum rounded once to fp32, times sigma_k. Exact: everything in double.
 * Pitfalls 3 (half-split RoPE on the FIRST r dims), 4 (LayerNorm, Hadamard, FP8, head-weight
 * scale, ReLU), 5 (top-k far below the candidates), 12 (ties: score desc, position asc). */
int dsa_indexer_forward(dsa_indexer *I, const float *x, const float *qr, int64_t B, int64_t S,
                        int64_t start_pos, int64_t *topk, float *score)
{
    const int64_t H = I->n_heads, D = I->head_dim, end_pos = start_pos + S;
    const int64_t k = dsa_indexer_k(I, end_pos);
    const int off = I->num == DSV4_OFFICIAL;
    int rc = -1;
    if (B > I->max_batch || end_pos > I->max_seq_len || start_pos < 0 || S < 1)
        return dsv4_set_error("indexer: call [%lld, %lld) x batch %lld outside the cache "
                              "(max_seq_len %lld, max_batch %lld)", (long long)start_pos,
                              (long long)end_pos, (long long)B, (long long)I->max_seq_len,
                              (long long)I->max_batch);
    float *q = dsv4_calloc((size_t)(B * S * H * D), sizeof(float), "indexer q");
    float *kk = dsv4_calloc((size_t)(B * S * D), sizeof(float), "indexer k");
    float *kraw = dsv4_calloc((size_t)(B * S * D), sizeof(float), "indexer k (pre-norm)");
    float *wts = dsv4_calloc((size_t)(B * S * H), sizeof(float), "indexer head weights");
    float *qscale = dsv4_calloc((size_t)(B * S * H), sizeof(float), "indexer q scales");
    float *row = dsv4_calloc((size_t)end_pos, sizeof(float), "indexer scores");
    int64_t *pick = dsv4_calloc((size_t)end_pos, sizeof(int64_t), "indexer picks");
    if (!q || !kk || !kraw || !wts || !qscale || !row || !pick) goto done;

    /* [DSA-1] queries from the query latent; [DSA-2] keys from x through wk + LayerNorm */
    if (dsv4_backend()->linear(&I->wq_b, qr, q, B * S, 0, I->num)) goto done;
    if (dsv4_backend()->linear(&I->wk, x, kraw, B * S, 0, I->num)) goto done;
    dsv4_count_linear(DSV4_COMP_INDEX_PROJ, &I->wq_b, B * S);          /* [COST-4] */
    dsv4_count_linear(DSV4_COMP_INDEX_PROJ, &I->wk, B * S);
    if (I->rmsnorm_k)
        dsv4_backend()->rmsnorm(kraw, I->k_norm_w, kk, B * S, (int)D, I->eps, I->num);
    else
        layernorm(kraw, I->k_norm_w, I->k_norm_b, kk, B * S, (int)D, I->eps, I->num);

    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            const int64_t t = start_pos + s, bs = b * S + s;
            /* [DSA-3] RoPE on the FIRST r dims ([rope | nope] layout), half-split pairs */
            for (int64_t h = 0; h < H; h++)
                rope_apply(I->rope, q + (bs * H + h) * D, t, I->layout, 0);
            rope_apply(I->rope, kk + bs * D, t, I->layout, 0);
        }
    /* [DSA-4] Hadamard rotation (orthogonal: changes nothing in exact arithmetic) */
    dsv4_backend()->hadamard(q, B * S * H, (int)D, I->num);
    dsv4_backend()->hadamard(kk, B * S, (int)D, I->num);

    /* [DSA-5] FP8 simulation; the key goes to the cache before any scoring */
    for (int64_t i = 0; i < B * S * H; i++) qscale[i] = fp8_vector(q + i * D, D, I->num);
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            const int64_t bs = b * S + s, slot = b * I->max_seq_len + start_pos + s;
            float sk = fp8_vector(kk + bs * D, D, I->num);
            memcpy(I->k_cache + slot * D, kk + bs * D, (size_t)D * sizeof(float));
            I->k_scale[slot] = sk;
        }

    /* [DSA-6] head weights: fp32 GEMM on f32(x) (official), then the scale chain */
    if (dsv4_backend()->linear(&I->weights_proj, x, wts, B * S, 1, I->num)) goto done;
    dsv4_count_linear(DSV4_COMP_INDEX_PROJ, &I->weights_proj, B * S);  /* [COST-4] */
    {
        const float hs = (float)(1.0 / sqrt((double)H)), ds = (float)(1.0 / sqrt((double)D));
        const double hd = 1.0 / sqrt((double)H * (double)D);
        for (int64_t i = 0; i < B * S * H; i++) {
            if (off) {
                float v = wts[i] * hs;      /* weights_proj(x) * H_I^-1/2      (fp32) */
                v = v * qscale[i];          /* * sigma_q (power of two, exact)  (fp32) */
                wts[i] = v * ds;            /* * D_I^-1/2                       (fp32) */
            } else {
                wts[i] = (float)((double)wts[i] * hd);
            }
        }
    }

    /* [DSA-7] scores over the visible positions, causal mask, top-k */
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            const int64_t t = start_pos + s, bs = b * S + s, nvis = t + 1;
            dsv4_count(DSV4_COMP_INDEX_SCORE, nvis * H * (D + 1));   /* [COST-4]: dots + head weights */
            for (int64_t j = 0; j < nvis; j++) {
                const float *kj = I->k_cache + (b * I->max_seq_len + j) * D;
                double acc = 0.0;
                for (int64_t h = 0; h < H; h++) {
                    const float *qh = q + (bs * H + h) * D;
                    double z = 0.0;
                    for (int64_t d = 0; d < D; d++) z += (double)qh[d] * (double)kj[d];
                    if (off) {
                        float zf = (float)z;                       /* FP8 MMA, fp32 result */
                        float term = (zf > 0.0f ? zf : 0.0f) * wts[bs * H + h];
                        acc += (double)term;
                    } else {
                        acc += (z > 0.0 ? z : 0.0) * (double)wts[bs * H + h];
                    }
                }
                if (off) row[j] = (float)acc * I->k_scale[b * I->max_seq_len + j];
                else row[j] = (float)(acc * (double)I->k_scale[b * I->max_seq_len + j]);
                if (isnan(row[j])) {
                    dsv4_set_error("indexer: index score of row %lld (batch %lld) key %lld is NaN "
                                   "(non-finite input)", (long long)t, (long long)b, (long long)j);
                    goto done;
                }
            }
            if (score) {
                float *out = score + bs * end_pos;
                for (int64_t j = 0; j < end_pos; j++) out[j] = j < nvis ? row[j] : -INFINITY;
            }
            /* [DSA-8] top-k over the whole row of end_pos keys, the causally invisible ones
             * at -inf (as the official prefill masks them), then invisible picks -> -1 */
            for (int64_t j = nvis; j < end_pos; j++) row[j] = -INFINITY;
            int64_t kv = k < end_pos ? k : end_pos;
            if (topk_select(row, end_pos, kv, pick)) goto done;
            for (int64_t j = 0; j < k; j++) topk[bs * k + j] = (j < kv && pick[j] < nvis) ? pick[j] : -1;
        }
    rc = 0;
done:
    free(q); free(kk); free(kraw); free(wts); free(qscale); free(row); free(pick);
    return rc;
}
