/* omp/sparse_attention.c — V4 sparse attention with per-head sinks, the OpenMP kernel
 * (spec/backends.md, spec/sparse-attention.md).
 *
 * Heads are independent outputs: the H heads are split into one contiguous group per thread.
 * Inside a group every listed KV row (one KV head shared by all query heads: MQA) is read
 * ONCE for all the group's heads: the logits of the group advance together over d (query
 * in blocks of 16 heads [D][16], one double sum per head in ascending d, vectorized across
 * heads); P.V then runs per head over the block's rows while they are cache-resident (ascending
 * list order per head and channel, 16 channels at a time). Each head's online softmax runs block by block in
 * the reference's order, so the results equal ref/sparse_attention.c bit for bit. */
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <string.h>
#include "counters.h"
#include "kernels_omp.h"
#include "numerics.h"
#include "sparse_attention.h"

#define HB 16   /* heads whose logit sums advance together (kept in registers) */
#define DB 16   /* channels whose P.V sums advance together */

/* qt: [ceil(G/HB)][D][HB] <- heads h0 .. h0+G-1 of q widened to double (padding rows 0). */
static void load_qt(const float *q, int64_t h0, int64_t G, int64_t D, double *qt)
{
    int64_t nhb = (G + HB - 1) / HB;
    for (int64_t i = 0; i < nhb * D * HB; i++) qt[i] = 0.0;
    for (int64_t g = 0; g < G; g++)
        for (int64_t d = 0; d < D; d++) qt[((g / HB) * D + d) * HB + g % HB] = (double)q[(h0 + g) * D + d];
}

/* s[g] = sum_d q_g[d] * k[d] for the G heads, ascending d per head (the reference's double
 * dot product); HB heads advance together, a last partial block (G mod HB heads: many
 * threads, few heads each) only its own heads. s: [ceil(G/HB) * HB]. */
static void logits_row(const double *qt, int64_t G, int64_t D, const float *k, double *s)
{
    int64_t nhb = (G + HB - 1) / HB;
    for (int64_t hb = 0; hb < nhb; hb++) {
        double a[HB];
        const double *qb = qt + hb * D * HB;
        int64_t nh = G - hb * HB < HB ? G - hb * HB : HB;
        for (int h = 0; h < HB; h++) a[h] = 0.0;
        if (nh == HB) {
            for (int64_t d = 0; d < D; d++) {
                double kd = (double)k[d];
                for (int h = 0; h < HB; h++) a[h] += qb[d * HB + h] * kd;
            }
        } else {
            for (int64_t d = 0; d < D; d++) {
                double kd = (double)k[d];
                for (int64_t h = 0; h < nh; h++) a[h] += qb[d * HB + h] * kd;
            }
        }
        for (int h = 0; h < HB; h++) s[hb * HB + h] = a[h];
    }
}

/* ---- official kernel order ---- */

/* [SPA-2] [SPA-3] Heads h0 .. h0+G-1, official numerics (ref/sparse_attention.c:
 * head_official, same arithmetic per head). q: [H, D]; out: [H, D]. Scratch: qt [G/16][D][16],
 * s [G], l/p [G][64], M/den/a [G], acc [G][D] float, pv [G][D] double. */
static void group_official(const float *q, int64_t h0, int64_t G, int64_t D, const float *kv,
                           const int64_t *idx, int64_t n_idx, const float *sink, float scale,
                           double *qt, double *s, float *l, float *p, float *M, float *den,
                           float *a, float *acc, double *pv, float *out)
{
    const int64_t BLK = SPARSE_ATTN_BLOCK;
    load_qt(q, h0, G, D, qt);
    for (int64_t g = 0; g < G; g++) {
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
            logits_row(qt, G, D, kv + r * D, s);
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
        /* P.V: the block's rows (just read, now cache-resident) summed per head and channel
         * in list order; DB channels advance together */
        for (int64_t g = 0; g < G; g++) {
            double pb[SPARSE_ATTN_BLOCK];
            for (int64_t i = 0; i < nb; i++) pb[i] = (double)round_bf16(p[g * BLK + i]);
            for (int64_t d0 = 0; d0 < D; d0 += DB) {
                int64_t nd = D - d0 < DB ? D - d0 : DB;
                double v[DB];
                for (int j = 0; j < DB; j++) v[j] = 0.0;
                if (nd == DB) {
                    for (int64_t i = 0; i < nb; i++) {
                        int64_t r = idx[b0 + i];
                        if (r < 0) continue;
                        const float *k = kv + r * D + d0;
                        for (int j = 0; j < DB; j++) v[j] += pb[i] * (double)k[j];
                    }
                } else {
                    for (int64_t i = 0; i < nb; i++) {
                        int64_t r = idx[b0 + i];
                        if (r < 0) continue;
                        const float *k = kv + r * D + d0;
                        for (int64_t j = 0; j < nd; j++) v[j] += pb[i] * (double)k[j];
                    }
                }
                for (int64_t j = 0; j < nd; j++) pv[g * D + d0 + j] = v[j];
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
 * per head). Scratch: qt [G/16][D][16], s [G], l [G][n_idx], M/den [G], acc [G][D]. */
static void group_exact(const float *q, int64_t h0, int64_t G, int64_t D, const float *kv,
                        const int64_t *idx, int64_t n_idx, const float *sink, double scale,
                        double *qt, double *s, double *l, double *M, double *den, double *acc,
                        float *out)
{
    load_qt(q, h0, G, D, qt);
    for (int64_t g = 0; g < G; g++) {
        M[g] = -INFINITY;
        den[g] = 0.0;
    }
    for (int64_t i = 0; i < n_idx; i++) {
        int64_t r = idx[i];
        if (r < 0) {
            for (int64_t g = 0; g < G; g++) l[g * n_idx + i] = -INFINITY;
            continue;
        }
        logits_row(qt, G, D, kv + r * D, s);
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
 * idx: [n_idx], sink: [H], out: [H, D]. Same index check and message, same cost count
 * ([COST-6], counted once, outside the parallel region). */
int sparse_attention_omp(const float *q, int64_t H, int64_t D, const float *kv, int64_t n_kv,
                         const int64_t *idx, int64_t n_idx, const float *sink, double scale,
                         float *out, dsv4_numerics num)
{
    if (sparse_attention_check(idx, n_idx, n_kv, H, D)) return -1;  /* as ref, [COST-6] once */
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
            int64_t GP = (G + HB - 1) / HB * HB;   /* heads padded to the HB block */
            int64_t nd = GP * D /* qt */ + GP /* s */ + G * D /* pv or acc */ + 2 * G /* M, den */
                         + (num == DSV4_OFFICIAL ? 0 : G * (n_idx > 0 ? n_idx : 1));
            int64_t nf = num == DSV4_OFFICIAL ? 2 * G * BLK + 3 * G + G * D : 1;
            double *dw = malloc(sizeof(double) * (size_t)nd);
            float *fw = malloc(sizeof(float) * (size_t)nf);
            if (!dw || !fw) fail = 1;
            else if (num == DSV4_OFFICIAL) {
                double *qt = dw, *s = qt + GP * D, *pv = s + GP;
                float *l = fw, *p = l + G * BLK, *M = p + G * BLK, *den = M + G, *a = den + G,
                      *acc = a + G;
                group_official(q, h0, G, D, kv, idx, n_idx, sink, (float)scale, qt, s, l, p, M,
                               den, a, acc, pv, out);
            } else {
                double *qt = dw, *s = qt + GP * D, *acc = s + GP, *M = acc + G * D, *den = M + G,
                       *l = den + G;
                group_exact(q, h0, G, D, kv, idx, n_idx, sink, scale, qt, s, l, M, den, acc, out);
            }
            free(dw);
            free(fw);
        }
    }
    return fail ? dsv4_set_error("sparse_attention scratch: out of memory") : 0;
}
