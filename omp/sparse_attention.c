/* omp/sparse_attention.c — V4 sparse attention with per-head sinks, the OpenMP kernel
 * (spec/backends.md, spec/sparse-attention.md).
 *
 * Heads are independent outputs: the H heads are split into one contiguous group per thread.
 * Inside a group every listed KV row (one KV head shared by all query heads: MQA) is read
 * ONCE for all the group's heads: the logits of the group advance together over d (query
 * transposed to [D][heads], one double sum per head in ascending d, vectorized across heads),
 * and P.V adds the row into every head's accumulator (ascending list order per head and
 * channel, vectorized across channels). Each head's online softmax runs block by block in
 * the reference's order, so the results equal ref/sparse_attention.c bit for bit. */
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <string.h>
#include "kernels_omp.h"
#include "numerics.h"
#include "sparse_attention.h"

/* ---- official kernel order ---- */

/* [SPA-2] [SPA-3] Heads h0 .. h0+G-1, official numerics (ref/sparse_attention.c:
 * head_official, same arithmetic per head). q: [H, D]; out: [H, D]. Scratch: qt [D][G],
 * s [G], l/p [G][64], M/den/a [G], acc [G][D] float, pv [G][D] double. */
static void group_official(const float *q, int64_t h0, int64_t G, int64_t D, const float *kv,
                           const int64_t *idx, int64_t n_idx, const float *sink, float scale,
                           double *qt, double *s, float *l, float *p, float *M, float *den,
                           float *a, float *acc, double *pv, float *out)
{
    const int64_t BLK = SPARSE_ATTN_BLOCK;
    for (int64_t g = 0; g < G; g++) {
        for (int64_t d = 0; d < D; d++) qt[d * G + g] = (double)q[(h0 + g) * D + d];
        M[g] = -INFINITY;
        den[g] = 0.0f;
    }
    for (int64_t i = 0; i < G * D; i++) acc[i] = 0.0f;
    for (int64_t b0 = 0; b0 < n_idx; b0 += BLK) {
        int64_t nb = n_idx - b0 < BLK ? n_idx - b0 : BLK;
        /* logits: each KV row read once for the group */
        for (int64_t i = 0; i < nb; i++) {
            int64_t r = idx[b0 + i];
            if (r < 0) {
                for (int64_t g = 0; g < G; g++) l[g * BLK + i] = -INFINITY;
                continue;
            }
            const float *k = kv + r * D;
            for (int64_t g = 0; g < G; g++) s[g] = 0.0;
            for (int64_t d = 0; d < D; d++) {
                double kd = (double)k[d];
                const double *qd = qt + d * G;
                for (int64_t g = 0; g < G; g++) s[g] += qd[g] * kd;
            }
            for (int64_t g = 0; g < G; g++) l[g * BLK + i] = (float)s[g] * scale;
        }
        /* per head: block max, rescale, probabilities, denominator (list order) */
        for (int64_t g = 0; g < G; g++) {
            const float *lg = l + g * BLK;
            float *pg = p + g * BLK;
            float bmax = M[g];
            for (int64_t i = 0; i < nb; i++)
                if (lg[i] > bmax) bmax = lg[i];
            a[g] = (M[g] == -INFINITY) ? 1.0f : expf(M[g] - bmax);
            float bsum = 0.0f;
            for (int64_t i = 0; i < nb; i++) {
                pg[i] = (bmax == -INFINITY) ? 0.0f : expf(lg[i] - bmax);
                bsum += pg[i];
            }
            den[g] = den[g] * a[g] + bsum;
            M[g] = bmax;
        }
        /* P.V: each KV row read once, added to every head's block sum in list order */
        for (int64_t i = 0; i < G * D; i++) pv[i] = 0.0;
        for (int64_t i = 0; i < nb; i++) {
            int64_t r = idx[b0 + i];
            if (r < 0) continue;
            const float *k = kv + r * D;
            for (int64_t g = 0; g < G; g++) {
                double pb = (double)round_bf16(p[g * BLK + i]);
                double *pvg = pv + g * D;
                for (int64_t d = 0; d < D; d++) pvg[d] += pb * (double)k[d];
            }
        }
        for (int64_t g = 0; g < G; g++)
            for (int64_t d = 0; d < D; d++)
                acc[g * D + d] = acc[g * D + d] * a[g] + (float)pv[g * D + d];
    }
    for (int64_t g = 0; g < G; g++) {
        float *o = out + (h0 + g) * D;
        if (M[g] == -INFINITY) {          /* all masked: exactly 0 */
            for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
            continue;
        }
        float dn = den[g] + expf(sink[h0 + g] - M[g]);
        for (int64_t d = 0; d < D; d++) o[d] = round_bf16(acc[g * D + d] / dn);
    }
}

/* ---- exact ---- */

/* [SPA-1] Heads h0 .. h0+G-1 in double (ref/sparse_attention.c: head_exact, same arithmetic
 * per head). Scratch: qt [D][G], s [G], l [G][n_idx], M/den [G], acc [G][D]. */
static void group_exact(const float *q, int64_t h0, int64_t G, int64_t D, const float *kv,
                        const int64_t *idx, int64_t n_idx, const float *sink, double scale,
                        double *qt, double *s, double *l, double *M, double *den, double *acc,
                        float *out)
{
    for (int64_t g = 0; g < G; g++) {
        for (int64_t d = 0; d < D; d++) qt[d * G + g] = (double)q[(h0 + g) * D + d];
        M[g] = -INFINITY;
        den[g] = 0.0;
    }
    for (int64_t i = 0; i < n_idx; i++) {
        int64_t r = idx[i];
        if (r < 0) {
            for (int64_t g = 0; g < G; g++) l[g * n_idx + i] = -INFINITY;
            continue;
        }
        const float *k = kv + r * D;
        for (int64_t g = 0; g < G; g++) s[g] = 0.0;
        for (int64_t d = 0; d < D; d++) {
            double kd = (double)k[d];
            const double *qd = qt + d * G;
            for (int64_t g = 0; g < G; g++) s[g] += qd[g] * kd;
        }
        for (int64_t g = 0; g < G; g++) {
            double v = s[g] * scale;
            l[g * n_idx + i] = v;
            if (v > M[g]) M[g] = v;
        }
    }
    for (int64_t i = 0; i < G * D; i++) acc[i] = 0.0;
    for (int64_t i = 0; i < n_idx; i++) {
        if (idx[i] < 0) continue;
        const float *k = kv + idx[i] * D;
        for (int64_t g = 0; g < G; g++) {
            if (M[g] == -INFINITY) continue;
            double pr = exp(l[g * n_idx + i] - M[g]);
            den[g] += pr;
            double *ag = acc + g * D;
            for (int64_t d = 0; d < D; d++) ag[d] += pr * (double)k[d];
        }
    }
    for (int64_t g = 0; g < G; g++) {
        float *o = out + (h0 + g) * D;
        if (M[g] == -INFINITY) {
            for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
            continue;
        }
        double dn = den[g] + exp((double)sink[h0 + g] - M[g]);
        for (int64_t d = 0; d < D; d++) o[d] = (float)(acc[g * D + d] / dn);
    }
}

/* ---- entry ---- */

/* [SPA-1..SPA-4] As ref/sparse_attention.c: sparse_attention. q: [H, D], kv: [n_kv, D],
 * idx: [n_idx], sink: [H], out: [H, D]. Same index check and message. */
int sparse_attention_omp(const float *q, int64_t H, int64_t D, const float *kv, int64_t n_kv,
                         const int64_t *idx, int64_t n_idx, const float *sink, double scale,
                         float *out, dsv4_numerics num)
{
    for (int64_t i = 0; i < n_idx; i++)
        if (idx[i] < -1 || idx[i] >= n_kv)
            return dsv4_set_error("sparse_attention: index %lld at list position %lld is outside [-1, %lld)",
                                  (long long)idx[i], (long long)i, (long long)n_kv);
    if (H <= 0) return 0;
    int fail = 0;
#pragma omp parallel if (H * n_idx * D > OMP_MIN_WORK) reduction(| : fail)
    {
        int nt = 1, me = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads();
        me = omp_get_thread_num();
#endif
        int64_t h0 = H * me / nt, h1 = H * (me + 1) / nt, G = h1 - h0;
        if (G > 0) {
            const int64_t BLK = SPARSE_ATTN_BLOCK;
            int64_t nd = G * D /* qt */ + G /* s */ + G * D /* pv or acc */ + 2 * G /* M, den */
                         + (num == DSV4_OFFICIAL ? 0 : G * (n_idx > 0 ? n_idx : 1));
            int64_t nf = num == DSV4_OFFICIAL ? 2 * G * BLK + 3 * G + G * D : 1;
            double *dw = malloc(sizeof(double) * (size_t)nd);
            float *fw = malloc(sizeof(float) * (size_t)nf);
            if (!dw || !fw) fail = 1;
            else if (num == DSV4_OFFICIAL) {
                double *qt = dw, *s = qt + G * D, *pv = s + G;
                float *l = fw, *p = l + G * BLK, *M = p + G * BLK, *den = M + G, *a = den + G,
                      *acc = a + G;
                group_official(q, h0, G, D, kv, idx, n_idx, sink, (float)scale, qt, s, l, p, M,
                               den, a, acc, pv, out);
            } else {
                double *qt = dw, *s = qt + G * D, *acc = s + G, *M = acc + G * D, *den = M + G,
                       *l = den + G;
                group_exact(q, h0, G, D, kv, idx, n_idx, sink, scale, qt, s, l, M, den, acc, out);
            }
            free(dw);
            free(fw);
        }
    }
    return fail ? dsv4_set_error("sparse_attention scratch: out of memory") : 0;
}
