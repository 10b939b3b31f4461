/* sparse_attention.c — V4 sparse attention with per-head sinks (spec/sparse-attention.md).
 *
 * One softmax over the listed rows (window part, then compressed part) plus a sink logit in
 * the denominator only. The official kernel's arithmetic: 64-key blocks in list order with
 * online rescaling; probabilities rounded to bf16 for P.V; output bf16. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "sparse_attention.h"
#include "counters.h"
#include "numerics.h"

/* ---- official kernel order ---- */

/* [SPA-2] [SPA-3] One head, official numerics. q: [D]; kv: [n_kv, D]; idx: [n_idx]; out: [D].
 * Per 64-block: l = f32(f32(q.k) * scale) (-inf when masked); M' = max(M, max l);
 * a = e^{M - M'}; p = e^{l - M'} (f32); den = den*a + sum p (unrounded f32);
 * acc = acc*a + f32(sum bf16(p) k) (block sum exact, one f32 rounding).
 * End: den += e^{z - M}; out = bf16(acc / den). Guards pitfall 13: while M is still -inf
 * (a leading all-masked block) a = 1 and p = 0 instead of e^{-inf - -inf} = NaN. */
static void head_official(const float *q, int64_t D, const float *kv, const int64_t *idx,
                          int64_t n_idx, float sink, float scale, double *pv, float *acc,
                          float *out)
{
    float M = -INFINITY, den = 0.0f;
    float l[SPARSE_ATTN_BLOCK], p[SPARSE_ATTN_BLOCK];
    for (int64_t d = 0; d < D; d++) acc[d] = 0.0f;
    for (int64_t b0 = 0; b0 < n_idx; b0 += SPARSE_ATTN_BLOCK) {
        int64_t nb = n_idx - b0 < SPARSE_ATTN_BLOCK ? n_idx - b0 : SPARSE_ATTN_BLOCK;
        float bmax = M;
        for (int64_t i = 0; i < nb; i++) {
            int64_t r = idx[b0 + i];
            if (r < 0) { l[i] = -INFINITY; continue; }
            const float *k = kv + r * D;
            double s = 0.0;
            for (int64_t d = 0; d < D; d++) s += (double)q[d] * (double)k[d];
            l[i] = (float)s * scale;
            if (l[i] > bmax) bmax = l[i];
        }
        float a = (M == -INFINITY) ? 1.0f : expf(M - bmax);
        float bsum = 0.0f;
        for (int64_t i = 0; i < nb; i++) {
            p[i] = (bmax == -INFINITY) ? 0.0f : expf(l[i] - bmax);
            bsum += p[i];
        }
        den = den * a + bsum;
        for (int64_t d = 0; d < D; d++) pv[d] = 0.0;
        for (int64_t i = 0; i < nb; i++) {
            int64_t r = idx[b0 + i];
            if (r < 0) continue;
            double pb = (double)round_bf16(p[i]);
            const float *k = kv + r * D;
            for (int64_t d = 0; d < D; d++) pv[d] += pb * (double)k[d];
        }
        for (int64_t d = 0; d < D; d++) acc[d] = acc[d] * a + (float)pv[d];
        M = bmax;
    }
    if (M == -INFINITY) {               /* all masked: exactly 0 */
        for (int64_t d = 0; d < D; d++) out[d] = 0.0f;
        return;
    }
    den += expf(sink - M);
    for (int64_t d = 0; d < D; d++) out[d] = round_bf16(acc[d] / den);
}

/* ---- exact ---- */

/* [SPA-1] One head in double: M = max l, o = sum e^{l-M} k / (sum e^{l-M} + e^{z-M}).
 * l: scratch [n_idx]. All masked -> 0. */
static void head_exact(const float *q, int64_t D, const float *kv, const int64_t *idx,
                       int64_t n_idx, float sink, double scale, double *l, double *acc,
                       float *out)
{
    double M = -INFINITY, den = 0.0;
    for (int64_t i = 0; i < n_idx; i++) {
        int64_t r = idx[i];
        if (r < 0) { l[i] = -INFINITY; continue; }
        double s = 0.0;
        for (int64_t d = 0; d < D; d++) s += (double)q[d] * (double)kv[r * D + d];
        l[i] = s * scale;
        if (l[i] > M) M = l[i];
    }
    for (int64_t d = 0; d < D; d++) acc[d] = 0.0;
    if (M == -INFINITY) {
        for (int64_t d = 0; d < D; d++) out[d] = 0.0f;
        return;
    }
    for (int64_t i = 0; i < n_idx; i++) {
        if (idx[i] < 0) continue;
        double p = exp(l[i] - M);
        den += p;
        for (int64_t d = 0; d < D; d++) acc[d] += p * (double)kv[idx[i] * D + d];
    }
    den += exp((double)sink - M);
    for (int64_t d = 0; d < D; d++) out[d] = (float)(acc[d] / den);
}

/* ---- entry ---- */

/* [SPA-1..SPA-4] q: [H, D], kv: [n_kv, D], idx: [n_idx], sink: [H], out: [H, D].
 * Pitfall 13 (sink in the denominator only, not scaled, not in the max; -1 masked;
 * all-masked row exactly 0). */
int sparse_attention_check(const int64_t *idx, int64_t n_idx, int64_t n_kv, int64_t H, int64_t D)
{
    int64_t n_valid = 0;
    for (int64_t i = 0; i < n_idx; i++) {
        if (idx[i] < -1 || idx[i] >= n_kv)
            return dsv4_set_error("sparse_attention: index %lld at list position %lld is outside [-1, %lld)",
                                  (long long)idx[i], (long long)i, (long long)n_kv);
        n_valid += idx[i] >= 0;
    }
    dsv4_count(DSV4_COMP_CORE_ATTN, n_valid * H * 2 * D);          /* [COST-6]: q.k and p.v, K = V */
    return 0;
}

int sparse_attention(const float *q, int64_t H, int64_t D, const float *kv, int64_t n_kv,
                     const int64_t *idx, int64_t n_idx, const float *sink, double scale,
                     float *out, dsv4_numerics num)
{
    if (sparse_attention_check(idx, n_idx, n_kv, H, D)) return -1;
    double *dscr = dsv4_calloc((size_t)(D + n_idx + 1), sizeof(double), "sparse_attention scratch");
    float *fscr = dsv4_calloc((size_t)D, sizeof(float), "sparse_attention scratch");
    if (!dscr || !fscr) { free(dscr); free(fscr); return -1; }
    for (int64_t h = 0; h < H; h++) {
        if (num == DSV4_OFFICIAL)
            head_official(q + h * D, D, kv, idx, n_idx, sink[h], (float)scale, dscr, fscr, out + h * D);
        else
            head_exact(q + h * D, D, kv, idx, n_idx, sink[h], scale,
                       dscr + D, dscr, out + h * D);
    }
    free(dscr);
    free(fscr);
    return 0;
}
