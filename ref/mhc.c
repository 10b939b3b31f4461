/* mhc.c — manifold-constrained hyper-connections (spec/mhc.md).
 *
 * One code for both numerics modes: every value is carried as a double; `fl()` rounds it to
 * fp32 at each step the official graph computes in fp32 (official mode) and is the identity
 * in exact mode; the bf16 roundings of the outputs are explicit round_bf16 calls. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "mhc.h"
#include "backend.h"
#include "counters.h"
#include "linear.h"
#include "numerics.h"

/* the fp32 rounding of one official-graph fp32 operation (identity in exact mode) */
static double fl(double x, dsv4_numerics num) { return num == DSV4_OFFICIAL ? (double)(float)x : x; }

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* ---- HCPre: the mixes ---- */

/* [MHC-2] x: [hc_dim] one token's streams concatenated (f32 of the bf16 streams);
 * fn: [n_mix, hc_dim] F32; m: [n_mix].
 * r = rsqrt(mean(x^2) + norm_eps): squares rounded to f32, summed (double, rounded once),
 * mean, +eps, rsqrt each an fp32 op; m = f32( f32(x . fn_i) * r ) — the fp32 GEMM acts on the
 * UNnormalized x and the RMS factor scales its result (pitfall 15: normalizing x first and
 * using hc_eps instead of norm_eps both change m). */
int mhc_mixes(const dsv4_weight *fn, const float *x, int64_t hc_dim, double norm_eps, float *m,
              dsv4_numerics num)
{
    double ss = 0.0;
    if (num == DSV4_OFFICIAL) ss = torch_cpu_sum_squares(x, hc_dim, 0);   /* [NUM-8] torch's order */
    else for (int64_t i = 0; i < hc_dim; i++) ss += (double)x[i] * (double)x[i];
    double mean = fl(fl(ss, num) / (double)hc_dim, num);
    double v = fl(mean + fl(norm_eps, num), num);
    double r = fl(1.0 / sqrt(v), num);
    if (dsv4_backend()->linear(fn, x, m, 1, 1, num)) return -1;
    dsv4_count_linear(DSV4_COMP_MHC, fn, 1);                          /* [COST-9] */
    for (int64_t i = 0; i < fn->rows; i++) m[i] = (float)fl((double)m[i] * r, num);
    return 0;
}

/* ---- HCPre: split and Sinkhorn ---- */

/* [MHC-3] mixes: [(2+hc)*hc]; scale: [3]; base: [(2+hc)*hc]; pre, post: [hc]; comb: [hc*hc]
 * (comb[j*hc + k], j = the residual stream read, k = the stream written, as in [MHC-4]).
 *   pre_j  = sigmoid(m_j a0 + b_j) + eps
 *   post_j = 2 sigmoid(m_{hc+j} a1 + b_{hc+j})                      (no eps, pitfall 15)
 *   C_jk   = m_{2hc + j hc + k} a2 + b_{2hc + j hc + k}
 *   C = rowsoftmax(C) + eps;  C /= (colsum + eps);
 *   then iters-1 times: C /= (rowsum + eps); C /= (colsum + eps).
 * Each step an fp32 op in official mode (the kernel's order: sums over k / over j in index
 * order). hc <= 16. */
void mhc_split_sinkhorn(const float *mixes, const float *scale, const float *base, int hc,
                        int iters, double eps, float *pre, float *post, float *comb,
                        dsv4_numerics num)
{
    double c[16 * 16], rs[16], cs[16];
    double e = fl(eps, num);
    for (int j = 0; j < hc; j++) {
        double z = fl(fl((double)mixes[j] * scale[0], num) + base[j], num);
        pre[j] = (float)fl(fl(sigmoid(z), num) + e, num);
    }
    for (int j = 0; j < hc; j++) {
        double z = fl(fl((double)mixes[hc + j] * scale[1], num) + base[hc + j], num);
        post[j] = (float)fl(2.0 * fl(sigmoid(z), num), num);
    }
    for (int j = 0; j < hc; j++)
        for (int k = 0; k < hc; k++) {
            int i = 2 * hc + j * hc + k;
            c[j * hc + k] = fl(fl((double)mixes[i] * scale[2], num) + base[i], num);
        }
    /* row softmax + eps */
    for (int j = 0; j < hc; j++) {
        double mx = c[j * hc];
        for (int k = 1; k < hc; k++) if (c[j * hc + k] > mx) mx = c[j * hc + k];
        double s = 0.0;
        for (int k = 0; k < hc; k++) {
            c[j * hc + k] = fl(exp(fl(c[j * hc + k] - mx, num)), num);
            s = fl(s + c[j * hc + k], num);
        }
        for (int k = 0; k < hc; k++) c[j * hc + k] = fl(fl(c[j * hc + k] / s, num) + e, num);
    }
    for (int it = 0; it < iters; it++) {
        if (it > 0) {   /* row normalization (not in the first round: the softmax did it) */
            for (int j = 0; j < hc; j++) {
                rs[j] = 0.0;
                for (int k = 0; k < hc; k++) rs[j] = fl(rs[j] + c[j * hc + k], num);
            }
            for (int j = 0; j < hc; j++)
                for (int k = 0; k < hc; k++) c[j * hc + k] = fl(c[j * hc + k] / fl(rs[j] + e, num), num);
        }
        for (int k = 0; k < hc; k++) {
            cs[k] = 0.0;
            for (int j = 0; j < hc; j++) cs[k] = fl(cs[k] + c[j * hc + k], num);
        }
        for (int j = 0; j < hc; j++)
            for (int k = 0; k < hc; k++) c[j * hc + k] = fl(c[j * hc + k] / fl(cs[k] + e, num), num);
    }
    for (int i = 0; i < hc * hc; i++) comb[i] = (float)c[i];
}

/* ---- HCPre ---- */

/* [MHC-1] x: [n, hc, dim] (bf16 values in official mode); a: [n, dim]; post: [n, hc];
 * comb: [n, hc, hc]. a = bf16( sum_j pre_j * x_j ): products and the sum over j (in stream
 * order) in fp32, one bf16 rounding. */
int mhc_pre(const mhc_params *p, const float *x, int64_t n, float *a, float *post, float *comb,
            dsv4_numerics num)
{
    int hc = p->hc;
    int64_t dim = p->dim, nmix = (int64_t)(2 + hc) * hc;
    float *mix = dsv4_calloc((size_t)nmix, sizeof *mix, "mhc mixes");
    float pre[16];
    if (!mix) return -1;
    if (hc > 16) { free(mix); return dsv4_set_error("hc_mult = %d > 16 is not supported", hc); }
    for (int64_t t = 0; t < n; t++) {
        const float *xt = x + t * hc * dim;
        if (mhc_mixes(&p->fn, xt, hc * dim, p->norm_eps, mix, num)) { free(mix); return -1; }
        mhc_split_sinkhorn(mix, p->scale, p->base, hc, p->sinkhorn_iters, p->hc_eps, pre,
                           post + t * hc, comb + t * hc * hc, num);
        dsv4_count(DSV4_COMP_MHC, hc * dim);                          /* [COST-9] */
        for (int64_t d = 0; d < dim; d++) {
            double s = 0.0;
            for (int j = 0; j < hc; j++) s = fl(s + fl((double)pre[j] * xt[j * dim + d], num), num);
            a[t * dim + d] = num == DSV4_OFFICIAL ? round_bf16((float)s) : (float)s;
        }
    }
    free(mix);
    return 0;
}

/* ---- HCPost ---- */

/* [MHC-4] o: [n, dim] (sublayer output); res: [n, hc, dim] (the block's streams before the
 * sublayer); post: [n, hc]; comb: [n, hc, hc]; y: [n, hc, dim].
 *   y_k = bf16( f32(post_k * o) + sum_j f32(comb[j][k] * res_j) )
 * The contraction runs over the ROW index j of comb (pitfall 15: the transposed contraction
 * sum_j comb[k][j] res_j is wrong and only an asymmetric comb shows it). */
void mhc_post(const float *o, const float *res, const float *post, const float *comb, int64_t n,
              int hc, int64_t dim, float *y, dsv4_numerics num)
{
    dsv4_count(DSV4_COMP_MHC, n * hc * dim * (hc + 1));               /* [COST-9] */
    for (int64_t t = 0; t < n; t++) {
        const float *rt = res + t * hc * dim, *ct = comb + t * hc * hc;
        for (int k = 0; k < hc; k++)
            for (int64_t d = 0; d < dim; d++) {
                double s = 0.0;
                for (int j = 0; j < hc; j++) s = fl(s + fl((double)ct[j * hc + k] * rt[j * dim + d], num), num);
                double v = fl(fl((double)post[t * hc + k] * o[t * dim + d], num) + s, num);
                y[(t * hc + k) * dim + d] = num == DSV4_OFFICIAL ? round_bf16((float)v) : (float)v;
            }
    }
}

/* ---- HCHead ---- */

/* [MHC-5] fn: [hc, hc*dim] F32; scale: [1]; base: [hc]; x: [n, hc, dim]; h: [n, dim].
 * m as [MHC-2]; w_j = f32(sigmoid(f32(m_j * scale) + base_j)) + hc_eps (the weights are NOT
 * normalized to sum 1); h = bf16( sum_j w_j x_j ). */
int mhc_head(const dsv4_weight *fn, const float *scale, const float *base, const float *x,
             int64_t n, int hc, int64_t dim, double norm_eps, double hc_eps, float *h,
             dsv4_numerics num)
{
    float m[16];
    double w[16];
    if (hc > 16) return dsv4_set_error("hc_mult = %d > 16 is not supported", hc);
    for (int64_t t = 0; t < n; t++) {
        const float *xt = x + t * hc * dim;
        if (mhc_mixes(fn, xt, hc * dim, norm_eps, m, num)) return -1;
        for (int j = 0; j < hc; j++) {
            double z = fl(fl((double)m[j] * scale[0], num) + base[j], num);
            w[j] = fl(fl(sigmoid(z), num) + fl(hc_eps, num), num);
        }
        dsv4_count(DSV4_COMP_MHC, hc * dim);                          /* [COST-9] */
        for (int64_t d = 0; d < dim; d++) {
            double s = 0.0;
            for (int j = 0; j < hc; j++) s = fl(s + fl(w[j] * xt[j * dim + d], num), num);
            h[t * dim + d] = num == DSV4_OFFICIAL ? round_bf16((float)s) : (float)s;
        }
    }
    return 0;
}
