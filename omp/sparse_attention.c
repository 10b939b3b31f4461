/* omp/sparse_attention.c — V4 sparse attention with per-head sinks, the OpenMP kernel
 * (spec/backends.md, spec/sparse-attention.md).
 *
 * The reference (ref/sparse_attention.c) runs head by head: logits of a 64-row block, the
 * block's online-softmax step, the block's P.V, next block. Its independent outputs are finer
 * than heads, and this kernel splits the work along them, in three phases of one parallel
 * region (so the split is even at any thread count, e.g. 64 heads on 12 or 16 threads):
 *   1. logits l[h][i] (one double dot product per head and listed row, ascending d):
 *      parallel over pairs of listed rows; each row is read once for all heads, a register
 *      tile of 8 heads x 2 rows (16 independent sums, vectorized across heads) advances over d;
 *   2. the softmax per head, in list order, block by block exactly as the reference (block
 *      max, rescale factor a, probabilities, denominator): parallel over heads; it keeps a per
 *      block and the probabilities (official: rounded to bf16) for phase 3;
 *   3. P.V and the output: parallel over units of 64 channels x 4 heads; a unit walks the
 *      blocks in list order and, per block, sums each (head, channel) over the block's rows in
 *      list order (16 channels at a time), then acc = acc * a + f32(block sum), as the reference;
 *      the block's 64-channel slice of its rows (16 KiB) stays in L1 for the unit's 4 heads.
 * Every output is produced by the reference's operations in the reference's order, so the
 * results equal ref/sparse_attention.c bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "counters.h"
#include "kernels_omp.h"
#include "numerics.h"
#include "sparse_attention.h"

#define HB 8    /* heads of a logit register tile */
#define RR 2    /* listed rows of a logit register tile: HB x RR independent sums */
#define CB 64   /* channels of a P.V unit */
#define HG 4    /* heads of a P.V unit */
#define DB 16   /* channels whose P.V sums advance together */

/* Shared scratch of one call. */
typedef struct {
    double *qt;    /* [ceil(H/HB)][D][HB]: q widened to double, heads padded with zeros */
    double *l;     /* [H][n]: logits (official: the f32 value, stored exactly) */
    double *p;     /* [H][n]: probabilities (official: bf16-rounded); masked rows unused */
    float *a;      /* [H][n_blk]: official rescale factor of each block */
    double *M;     /* [H]: the final max (-inf: every row masked) */
    double *dn;    /* [H]: the final denominator, sink included (official: the f32 value) */
} spa_scratch;

/* Phase 1 [SPA-2]: logits of rows i0 .. i0+ni-1 (ni <= RR) for every head; masked rows
 * -inf. Per (head, row): s = sum_d q[d] * k[d] in ascending d (double), then official
 * f32(f32(s) * scale), exact s * scale. */
static void logits_rows(const spa_scratch *W, int64_t H, int64_t D, const float *kv,
                        const int64_t *idx, int64_t n, int64_t i0, int64_t ni, double scale,
                        dsv4_numerics num)
{
    const float *k[RR];
    int valid[RR], any = -1;
    for (int r = 0; r < RR; r++) {
        valid[r] = r < ni && idx[i0 + r] >= 0;
        k[r] = valid[r] ? kv + idx[i0 + r] * D : NULL;
        if (valid[r] && any < 0) any = r;
        if (r < ni && !valid[r])
            for (int64_t h = 0; h < H; h++) W->l[h * n + i0 + r] = -INFINITY;
    }
    if (any < 0) return;
    for (int r = 0; r < RR; r++)
        if (!valid[r]) k[r] = k[any];   /* a stand-in row: computed, not stored */
    float fscale = (float)scale;
    int64_t nhb = (H + HB - 1) / HB;
    for (int64_t hb = 0; hb < nhb; hb++) {
        const double *qb = W->qt + hb * D * HB;
        double s[RR][HB];
        for (int r = 0; r < RR; r++)
            for (int h = 0; h < HB; h++) s[r][h] = 0.0;
        for (int64_t d = 0; d < D; d++) {
            for (int r = 0; r < RR; r++) {
                double kd = (double)k[r][d];
                for (int h = 0; h < HB; h++) s[r][h] += qb[d * HB + h] * kd;
            }
        }
        int64_t nh = H - hb * HB < HB ? H - hb * HB : HB;
        for (int r = 0; r < RR; r++) {
            if (!valid[r]) continue;
            for (int64_t h = 0; h < nh; h++) {
                double *lh = W->l + (hb * HB + h) * n + i0 + r;
                if (num == DSV4_OFFICIAL) *lh = (double)((float)s[r][h] * fscale);
                else *lh = s[r][h] * scale;
            }
        }
    }
}

/* Phase 2 [SPA-2] [SPA-3]: head h's softmax in the reference's order. Official, per 64-block:
 * M' = max(M, max l) in list order; a = e^{M - M'} (1 while M = -inf, pitfall 13);
 * p = e^{l - M'} (0 while M' = -inf); den = den * a + (f32 sum of p in list order); end:
 * den + e^{z - M}. Exact: M = max l; p = e^{l - M}; den = sum p (list order) + e^{z - M}. */
static void softmax_head(const spa_scratch *W, int64_t h, const int64_t *idx, int64_t n,
                         float sink, dsv4_numerics num)
{
    const double *l = W->l + h * n;
    double *p = W->p + h * n;
    if (num == DSV4_OFFICIAL) {
        const int64_t BLK = SPARSE_ATTN_BLOCK;
        float M = -INFINITY, den = 0.0f;
        for (int64_t b0 = 0; b0 < n; b0 += BLK) {
            int64_t nb = n - b0 < BLK ? n - b0 : BLK;
            float bmax = M;
            for (int64_t i = 0; i < nb; i++) {
                if (idx[b0 + i] < 0) continue;
                float li = (float)l[b0 + i];
                if (li > bmax) bmax = li;
            }
            float a = (M == -INFINITY) ? 1.0f : expf(M - bmax);
            float bsum = 0.0f;
            for (int64_t i = 0; i < nb; i++) {
                float pi = (bmax == -INFINITY) ? 0.0f : expf((float)l[b0 + i] - bmax);
                bsum += pi;
                p[b0 + i] = (double)round_bf16(pi);
            }
            den = den * a + bsum;
            W->a[h * ((n + BLK - 1) / BLK) + b0 / BLK] = a;
            M = bmax;
        }
        W->M[h] = (double)M;
        W->dn[h] = M == -INFINITY ? 0.0 : (double)(den + expf(sink - M));
        return;
    }
    double M = -INFINITY, den = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (idx[i] >= 0 && l[i] > M) M = l[i];
    W->M[h] = M;
    if (M == -INFINITY) return;
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] < 0) continue;
        p[i] = exp(l[i] - M);
        den += p[i];
    }
    W->dn[h] = den + exp((double)sink - M);
}

/* Phase 3 [SPA-2] [SPA-1]: channels c0 .. c1-1 (<= CB) of heads h0 .. h1-1 (<= HG). Official:
 * per block, pv = sum over the block's unmasked rows (list order) of p * v (double, from 0),
 * acc = acc * a + f32(pv) (f32); out = bf16(acc / den). Exact: acc = sum over all unmasked
 * rows (list order) of p * v (double), carried from block to block; out = f32(acc / den).
 * Every head masked throughout: exactly 0. */
static void pv_unit(const spa_scratch *W, int64_t h0, int64_t h1, int64_t c0, int64_t c1,
                    int64_t D, const float *kv, const int64_t *idx, int64_t n, float *out,
                    dsv4_numerics num)
{
    const int64_t BLK = SPARSE_ATTN_BLOCK, nblk = (n + BLK - 1) / BLK;
    float accf[HG][CB];
    double accd[HG][CB];
    for (int g = 0; g < HG; g++)
        for (int c = 0; c < CB; c++) {
            accf[g][c] = 0.0f;
            accd[g][c] = 0.0;
        }
    for (int64_t b0 = 0; b0 < n; b0 += BLK) {
        int64_t nb = n - b0 < BLK ? n - b0 : BLK;
        for (int64_t h = h0; h < h1; h++) {
            int g = (int)(h - h0);
            if (W->M[h] == -INFINITY) continue;   /* all masked: the output is 0 */
            const double *pb = W->p + h * n + b0;
            for (int64_t d0 = c0; d0 < c1; d0 += DB) {
                int64_t nd = c1 - d0 < DB ? c1 - d0 : DB;
                double v[DB];
                for (int j = 0; j < DB; j++)   /* official: the block's sum from 0; exact: carried */
                    v[j] = num == DSV4_OFFICIAL || j >= nd ? 0.0 : accd[g][d0 - c0 + j];
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
                if (num == DSV4_OFFICIAL) {
                    float a = W->a[h * nblk + b0 / BLK];
                    for (int64_t j = 0; j < nd; j++)
                        accf[g][d0 - c0 + j] = accf[g][d0 - c0 + j] * a + (float)v[j];
                } else {
                    for (int64_t j = 0; j < nd; j++) accd[g][d0 - c0 + j] = v[j];
                }
            }
        }
    }
    for (int64_t h = h0; h < h1; h++) {
        int g = (int)(h - h0);
        float *o = out + h * D;
        if (W->M[h] == -INFINITY) {
            for (int64_t d = c0; d < c1; d++) o[d] = 0.0f;
        } else if (num == DSV4_OFFICIAL) {
            float dn = (float)W->dn[h];
            for (int64_t d = c0; d < c1; d++) o[d] = round_bf16(accf[g][d - c0] / dn);
        } else {
            for (int64_t d = c0; d < c1; d++) o[d] = (float)(accd[g][d - c0] / W->dn[h]);
        }
    }
}

/* ---- entry ---- */

/* [SPA-1..SPA-4] As ref/sparse_attention.c: sparse_attention. q: [H, D], kv: [n_kv, D],
 * idx: [n_idx], sink: [H], out: [H, D]. Same index check and message, same cost count
 * ([COST-6], counted once, outside the parallel region). Scratch: 2 H n_idx doubles. */
int sparse_attention_omp(const float *q, int64_t H, int64_t D, const float *kv, int64_t n_kv,
                         const int64_t *idx, int64_t n_idx, const float *sink, double scale,
                         float *out, dsv4_numerics num)
{
    if (sparse_attention_check(idx, n_idx, n_kv, H, D)) return -1;  /* as ref, [COST-6] once */
    if (H <= 0 || D <= 0) return 0;
    const int64_t BLK = SPARSE_ATTN_BLOCK, n = n_idx > 0 ? n_idx : 0;
    int64_t nhb = (H + HB - 1) / HB, nblk = (n + BLK - 1) / BLK;
    size_t nd = (size_t)(nhb * D * HB + 2 * H * n + 2 * H);
    spa_scratch W;
    double *dw = malloc(sizeof(double) * nd);
    W.a = malloc(sizeof(float) * (size_t)(H * nblk + 1));
    if (!dw || !W.a) {
        free(dw);
        free(W.a);
        return dsv4_set_error("sparse_attention scratch: out of memory");
    }
    W.qt = dw;
    W.l = W.qt + nhb * D * HB;
    W.p = W.l + H * n;
    W.M = W.p + H * n;
    W.dn = W.M + H;
    int64_t n_pair = (n + RR - 1) / RR, ncb = (D + CB - 1) / CB, nhg = (H + HG - 1) / HG;
#pragma omp parallel if (H * n * D > OMP_MIN_WORK)
    {
        /* 0: q transposed to head blocks */
#pragma omp for schedule(static)
        for (int64_t hb = 0; hb < nhb; hb++) {
            double *qb = W.qt + hb * D * HB;
            for (int64_t d = 0; d < D; d++)
                for (int h = 0; h < HB; h++)
                    qb[d * HB + h] = hb * HB + h < H ? (double)q[(hb * HB + h) * D + d] : 0.0;
        }
        /* 1: logits, pairs of listed rows */
#pragma omp for schedule(dynamic, 2)
        for (int64_t u = 0; u < n_pair; u++) {
            int64_t i0 = u * RR;
            logits_rows(&W, H, D, kv, idx, n, i0, n - i0 < RR ? n - i0 : RR, scale, num);
        }
        /* 2: softmax per head */
#pragma omp for schedule(dynamic, 1)
        for (int64_t h = 0; h < H; h++) softmax_head(&W, h, idx, n, sink[h], num);
        /* 3: P.V and the output, 64 channels x 4 heads per unit */
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < ncb * nhg; u++) {
            int64_t cb = u / nhg, hg = u % nhg;
            int64_t h0 = hg * HG, h1 = h0 + HG < H ? h0 + HG : H;
            int64_t c0 = cb * CB, c1 = c0 + CB < D ? c0 + CB : D;
            pv_unit(&W, h0, h1, c0, c1, D, kv, idx, n, out, num);
        }
    }
    free(dw);
    free(W.a);
    return 0;
}
