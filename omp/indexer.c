/* omp/indexer.c — the lightning-indexer scores, the OpenMP kernel (spec/backends.md,
 * spec/indexer.md [IDX-4]). Keys are independent outputs (parallel over keys). For one key
 * the H_I dot products advance together over d (the query transposed to blocks of 16 heads
 * [H_I/16][D_I][16], the key value broadcast): independent double sums, each in the reference's ascending d order,
 * vectorized across heads; the sum over heads then runs in ascending h exactly as in
 * ref/indexer.c. Each key is read once for all heads. */
#include <stdlib.h>
#include "counters.h"
#include "kernels_omp.h"
#include "numerics.h"

#define HB 16   /* heads whose sums advance together (kept in registers) */

/* [IDX-4] As ref/indexer.c: indexer_scores. q: [H_I, D_I], w: [H_I], keys: [n, D_I] ->
 * score: [n]. */
void indexer_scores_omp(const v4_indexer *I, const float *q, const float *w, const float *keys,
                        int64_t n, float *score)
{
    int H = I->n_heads, D = I->head_dim, nhb = (H + HB - 1) / HB;
    /* qt: [nhb][D][HB], query values widened to double, heads padded with zeros */
    double *qt = calloc((size_t)nhb * (size_t)D * HB, sizeof(double));
    if (!qt) {   /* no scratch: the reference itself (same results) */
        indexer_scores(I, q, w, keys, n, score);
        return;
    }
    for (int h = 0; h < H; h++)
        for (int d = 0; d < D; d++) qt[((size_t)(h / HB) * D + d) * HB + h % HB] = (double)q[h * D + d];
    int fail = 0;
#pragma omp parallel if (n * H * D > OMP_MIN_WORK) reduction(| : fail)
    {
        double *s = malloc(sizeof(double) * (size_t)nhb * HB);
        if (!s) fail = 1;
#pragma omp for schedule(dynamic, 64)
        for (int64_t j = 0; j < n; j++) {
            if (!s) continue;
            const float *k = keys + j * D;
            for (int hb = 0; hb < nhb; hb++) {
                double a[HB];
                const double *qb = qt + (size_t)hb * D * HB;
                for (int h = 0; h < HB; h++) a[h] = 0.0;
                for (int d = 0; d < D; d++) {
                    double kd = (double)k[d];
                    for (int h = 0; h < HB; h++) a[h] += qb[d * HB + h] * kd;
                }
                for (int h = 0; h < HB; h++) s[hb * HB + h] = a[h];
            }
            if (I->num == DSV4_OFFICIAL) {
                float totf = 0.0f;
                for (int h = 0; h < H; h++) {
                    float dh = round_bf16((float)s[h]);
                    if (dh < 0.0f) dh = 0.0f;
                    totf += round_bf16(dh * w[h]);
                }
                score[j] = round_bf16(totf);
            } else {
                double tot = 0.0;
                for (int h = 0; h < H; h++) tot += (s[h] > 0.0 ? s[h] : 0.0) * (double)w[h];
                score[j] = (float)tot;
            }
        }
        free(s);
    }
    free(qt);
    if (fail) indexer_scores(I, q, w, keys, n, score);         /* (it counts) */
    else dsv4_count(DSV4_COMP_INDEX_SCORE, n * H * (D + 1));  /* [COST-8], as ref, outside the region */
}
