/* indexer.c — the V4 lightning indexer (spec/indexer.md [IDX-1..IDX-6]).
 *
 * Forward-pass order (official Indexer.forward): q = wq_b(c_q) -> RoPE (interleaved, last r
 * dims) -> Hadamard -> FP4; the indexer compressor runs for this call's tokens (its keys are
 * Hadamard + FP4 too); head weights w = weights_proj(x) * D_I^-1/2 H_I^-1/2; scores
 * sum_h w_h ReLU(q_h . k_j); causal visibility; top-k. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "indexer.h"
#include "backend.h"
#include "counters.h"
#include "hadamard.h"
#include "linear.h"
#include "numerics.h"
#include "topk.h"

/* ---- state ---- */

/* [IDX-1] Allocates keys [max_batch, max_seq_len / 4, D_I] and the indexer compressor
 * (ratio 4, overlapping, kind COMPRESSOR_INDEXER). */
int indexer_init(v4_indexer *I, int n_heads, int head_dim, int rope_dim, int64_t topk,
                 int64_t dim, int64_t q_lora_rank, float eps, const rope_freqs *rope,
                 int64_t max_batch, int64_t max_seq_len, dsv4_numerics num)
{
    memset(I, 0, sizeof *I);
    if (n_heads < 1 || head_dim < rope_dim || topk < 1)
        return dsv4_set_error("indexer: bad shape (heads %d, head_dim %d, rope_dim %d, topk %lld)",
                              n_heads, head_dim, rope_dim, (long long)topk);
    I->n_heads = n_heads;
    I->head_dim = head_dim;
    I->rope_dim = rope_dim;
    I->ratio = 4;
    I->topk = topk;
    I->dim = dim;
    I->q_lora_rank = q_lora_rank;
    I->max_batch = max_batch;
    I->max_entries = max_seq_len / 4;
    I->num = num;
    I->rope = rope;
    if (compressor_init(&I->comp, 4, head_dim, rope_dim, dim, COMPRESSOR_INDEXER, eps, rope,
                        max_batch, num))
        return -1;
    I->keys = dsv4_calloc((size_t)(max_batch * (I->max_entries > 0 ? I->max_entries : 1) * head_dim),
                          sizeof(float), "indexer keys");
    if (!I->keys) { compressor_free(&I->comp); return -1; }
    return 0;
}

/* Frees the key cache and the compressor. */
void indexer_free(v4_indexer *I)
{
    compressor_free(&I->comp);
    free(I->keys);
    I->keys = NULL;
}

/* [CACHE-2] New sequences: no keys, empty compressor state. */
void indexer_reset(v4_indexer *I)
{
    compressor_reset(&I->comp);
    I->n_keys = 0;
}

/* [IDX-6] k = min(k_I, floor(end / 4)). */
int64_t indexer_k(const v4_indexer *I, int64_t end)
{
    int64_t vis = end / I->ratio;
    return I->topk < vis ? I->topk : vis;
}

/* ---- scores ---- */

/* [IDX-4] q: [H_I, D_I], w: [H_I], keys: [n, D_I] -> score: [n].
 * official (bf16 einsum and tensor ops): d = bf16(q_h . k) (exact sum, one rounding),
 * ReLU, t = bf16(relu(d) * w_h), score = bf16(sum_h t) (f32 accumulation, one rounding).
 * exact: double throughout. Guards pitfall 4 (ReLU before the head weight, weights of both
 * signs). */
void indexer_scores(const v4_indexer *I, const float *q, const float *w, const float *keys,
                    int64_t n, float *score)
{
    int H = I->n_heads, D = I->head_dim;
    dsv4_count(DSV4_COMP_INDEX_SCORE, n * H * (D + 1));           /* [COST-8]: dots + head weights */
    for (int64_t j = 0; j < n; j++) {
        const float *k = keys + j * D;
        double tot = 0.0;
        float totf = 0.0f;
        for (int h = 0; h < H; h++) {
            double s = 0.0;
            for (int d = 0; d < D; d++) s += (double)q[h * D + d] * (double)k[d];
            if (I->num == DSV4_OFFICIAL) {
                float dh = round_bf16((float)s);
                if (dh < 0.0f) dh = 0.0f;
                totf += round_bf16(dh * w[h]);
            } else {
                tot += (s > 0.0 ? s : 0.0) * (double)w[h];
            }
        }
        score[j] = I->num == DSV4_OFFICIAL ? round_bf16(totf) : (float)tot;
    }
}

/* ---- forward ---- */

/* [IDX-1..IDX-6] x: [B, S, d], qr: [B, S, r_q] -> idx: [B, S, indexer_k(start_pos + S)].
 * q: [B, S, H_I, D_I] = wq_b(qr) (the graph's GEMM), RoPE at position start_pos + s on the
 * last r dims (interleaved: pitfall 11, not the V3.2 half-split), Hadamard, FP4 (block 32).
 * w = bf16(weights_proj(x) * f32(D_I^-1/2 H_I^-1/2)) [IDX-3]. Keys: the indexer compressor
 * runs first, so a key emitted by this very token is scored [IDX-2].
 * Visibility [IDX-5] / [CSA-1]: entry j is visible to query t iff j < floor((t+1)/4);
 * selection [IDX-6]: top-k of the visible scores with topk_select ([TOPK-1] score desc, index asc, or [TOPK-2] torch's CPU order:
 * pitfall 12), -1 for picks beyond the visible entries. */
int indexer_forward(v4_indexer *I, const float *x, const float *qr, int64_t B, int64_t S,
                    int64_t start_pos, int64_t *idx, int64_t *n_new)
{
    int H = I->n_heads, D = I->head_dim, r = I->rope_dim;
    int64_t N = B * S, end = start_pos + S, kk = indexer_k(I, end);
    int64_t n_total = end / I->ratio;
    int ret = -1;
    *n_new = 0;
    if (B > I->max_batch) return dsv4_set_error("indexer: batch %lld > max_batch %lld",
                                                (long long)B, (long long)I->max_batch);
    if (n_total > I->max_entries) return dsv4_set_error("indexer: position %lld beyond max_seq_len",
                                                       (long long)end);
    float *q = dsv4_calloc((size_t)(N * H * D), sizeof(float), "indexer q");
    float *w = dsv4_calloc((size_t)(N * H), sizeof(float), "indexer weights");
    float *score = dsv4_calloc((size_t)(n_total + 1), sizeof(float), "indexer scores");
    float *ent = dsv4_calloc((size_t)(B * (S / I->ratio + 1) * D), sizeof(float), "indexer new keys");
    int64_t *pick = dsv4_calloc((size_t)(kk + 1), sizeof(int64_t), "indexer picks");
    if (!q || !w || !score || !ent || !pick) goto done;

    /* [IDX-1] queries */
    if (dsv4_backend()->linear(&I->wq_b, qr, q, N, 0, I->num)) goto done;
    dsv4_count_linear(DSV4_COMP_INDEX_PROJ, &I->wq_b, N);             /* [COST-8] */
    for (int64_t i = 0; i < N; i++)
        for (int h = 0; h < H; h++)
            if (r > 0) rope_apply(I->rope, q + (i * H + h) * D + (D - r), start_pos + i % S,
                                  ROPE_INTERLEAVED, 0);
    dsv4_backend()->hadamard(q, N * H, D, I->num);
    if (I->num == DSV4_OFFICIAL) fp4_sim_block(q, N * H * D, 32);

    /* [IDX-2] keys of this call */
    if (start_pos == 0) {
        I->n_keys = 0;
        int64_t n = compressor_prefill(&I->comp, x, B, S, ent);
        if (n < 0) goto done;
        for (int64_t b = 0; b < B; b++)
            memcpy(I->keys + (b * I->max_entries) * D, ent + b * n * D, sizeof(float) * (size_t)(n * D));
        I->n_keys = n;
        *n_new = n;
    } else {
        int e = compressor_decode(&I->comp, x, B, start_pos, ent);
        if (e < 0) goto done;
        if (e) {
            int64_t j = start_pos / I->ratio;
            for (int64_t b = 0; b < B; b++)
                memcpy(I->keys + (b * I->max_entries + j) * D, ent + b * D, sizeof(float) * (size_t)D);
            I->n_keys = j + 1;
            *n_new = 1;
        }
    }

    /* [IDX-3] head weights */
    if (dsv4_backend()->linear(&I->weights_proj, x, w, N, 0, I->num)) goto done;
    dsv4_count_linear(DSV4_COMP_INDEX_PROJ, &I->weights_proj, N);     /* [COST-8] */
    if (I->num == DSV4_OFFICIAL) {
        float c = (float)(pow((double)D, -0.5) * pow((double)H, -0.5));
        for (int64_t i = 0; i < N * H; i++) w[i] = round_bf16(w[i] * c);
    } else {
        double c = 1.0 / sqrt((double)D * (double)H);
        for (int64_t i = 0; i < N * H; i++) w[i] = (float)((double)w[i] * c);
    }

    /* [IDX-4..IDX-6] scores, visibility, top-k */
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            int64_t t = start_pos + s, vis = (t + 1) / I->ratio;
            int64_t i = b * S + s;
            dsv4_backend()->indexer_scores(I, q + i * H * D, w + i * H,
                                           I->keys + b * I->max_entries * D, n_total, score);
            for (int64_t j = vis; j < n_total; j++) score[j] = -INFINITY;
            for (int64_t j = 0; j < vis; j++)
                if (isnan(score[j])) {
                    dsv4_set_error("indexer: NaN index score at position %lld", (long long)t);
                    goto done;
                }
            if (topk_select(score, n_total, kk, pick)) goto done;
            for (int64_t k = 0; k < kk; k++)
                idx[i * kk + k] = pick[k] < vis ? pick[k] : -1;
        }
    ret = 0;
done:
    free(q); free(w); free(score); free(ent); free(pick);
    return ret;
}
