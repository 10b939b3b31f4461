/* mhc.h — manifold-constrained hyper-connections: the hc residual streams of V4
 * (spec/mhc.md [MHC-1]..[MHC-5]). All functions work token by token; the streams of one token
 * are x: [hc, dim], stored row-major (stream j at x + j*dim). */
#ifndef DSV4_MHC_H
#define DSV4_MHC_H

#include <stdint.h>
#include "dsv4ref.h"

/* The parameters of one HCPre (hc_attn_* or hc_ffn_* of a Block). */
typedef struct {
    int hc;                /* n streams */
    int64_t dim;           /* d */
    dsv4_weight fn;        /* [(2+hc)*hc, hc*dim] F32 */
    const float *scale;    /* [3] */
    const float *base;     /* [(2+hc)*hc] */
    int sinkhorn_iters;    /* T */
    double hc_eps, norm_eps;
} mhc_params;

/* [MHC-3] Split the (2+hc)*hc mixes of one token into pre [hc], post [hc], comb [hc][hc]
 * (Sinkhorn-normalized). mixes already scaled by the RMS factor. */
void mhc_split_sinkhorn(const float *mixes, const float *scale, const float *base, int hc,
                        int iters, double eps, float *pre, float *post, float *comb,
                        dsv4_numerics num);

/* [MHC-2] mixes of one token: m = (x · fn^T) * rsqrt(mean(x^2) + norm_eps), x: [hc*dim].
 * fn: [n_mix, hc*dim]. m: [n_mix]. */
int mhc_mixes(const dsv4_weight *fn, const float *x, int64_t hc_dim, double norm_eps, float *m,
              dsv4_numerics num);

/* [MHC-1] HCPre over n tokens. x: [n, hc, dim]; a: [n, dim]; post: [n, hc]; comb: [n, hc, hc]. */
int mhc_pre(const mhc_params *p, const float *x, int64_t n, float *a, float *post, float *comb,
            dsv4_numerics num);

/* [MHC-4] HCPost over n tokens. o: [n, dim]; res: [n, hc, dim]; y: [n, hc, dim] (y may not
 * alias res). y_k = bf16( post_k * o + sum_j comb[j][k] * res_j ). */
void mhc_post(const float *o, const float *res, const float *post, const float *comb, int64_t n,
              int hc, int64_t dim, float *y, dsv4_numerics num);

/* [MHC-5] HCHead over n tokens. fn: [hc, hc*dim], scale: [1], base: [hc]; x: [n, hc, dim];
 * h: [n, dim]. w_j = sigmoid(m_j * scale + base_j) + eps (not normalized). */
int mhc_head(const dsv4_weight *fn, const float *scale, const float *base, const float *x,
             int64_t n, int hc, int64_t dim, double norm_eps, double hc_eps, float *h,
             dsv4_numerics num);

#endif
