/* moe.c — the V4 mixture of experts (spec/moe.md).
 *
 * As in mhc.c every value is carried as a double and `fl()` rounds it to fp32 where the
 * official graph computes in fp32 (official mode; identity in exact mode). GEMMs go through
 * ref/linear.h, whose out_f32 = 0 path is the graph's own GEMM for the stored dtype (bf16
 * F.linear, FP8 or FP4 GEMM, all with bf16 output). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "moe.h"
#include "backend.h"
#include "counters.h"
#include "linear.h"
#include "numerics.h"
#include "topk.h"

static double fl(double x, dsv4_numerics num) { return num == DSV4_OFFICIAL ? (double)(float)x : x; }

/* ---- loading ---- */

static int load_expert(moe_expert *e, const dsv4_wsrc *src, const char *base, int64_t dim, int64_t inter)
{
    char name[256];
    snprintf(name, sizeof name, "%s.w1.weight", base);
    if (wsrc_weight(src, name, inter, dim, &e->w1)) return -1;
    snprintf(name, sizeof name, "%s.w2.weight", base);
    if (wsrc_weight(src, name, dim, inter, &e->w2)) return -1;
    snprintf(name, sizeof name, "%s.w3.weight", base);
    if (wsrc_weight(src, name, inter, dim, &e->w3)) return -1;
    return 0;
}

/* [MOE-5] The tensors of one MoE, all validated against the config before any compute. */
int moe_layer_load(moe_layer *L, const dsv4_config *c, int64_t layer_id, const dsv4_wsrc *src,
                   const char *prefix)
{
    char name[256];
    memset(L, 0, sizeof *L);
    L->dim = c->dim;
    L->inter = c->moe_inter_dim;
    L->n_experts = c->n_routed_experts;
    L->n_act = c->n_activated_experts;
    L->vocab = c->vocab_size;
    L->score_func = c->score_func;
    L->route_scale = c->route_scale;
    L->swiglu_limit = c->swiglu_limit;
    L->hash = layer_id < c->n_hash_layers;
    snprintf(name, sizeof name, "%s.gate.weight", prefix);
    if (wsrc_weight(src, name, L->n_experts, L->dim, &L->gate)) return -1;
    if (L->hash) {
        snprintf(name, sizeof name, "%s.gate.tid2eid", prefix);
        if (wsrc_ints(src, name, L->vocab * L->n_act, &L->tid2eid)) return -1;
        for (int64_t i = 0; i < L->vocab * L->n_act; i++)
            if (L->tid2eid[i] < 0 || L->tid2eid[i] >= L->n_experts)
                return dsv4_set_error("%s: tensor %s holds expert id %lld outside [0, %lld)", wsrc_where(src),
                                      name, (long long)L->tid2eid[i], (long long)L->n_experts);
    } else {
        snprintf(name, sizeof name, "%s.gate.bias", prefix);
        if (wsrc_floats(src, name, L->n_experts, &L->bias)) return -1;
    }
    L->experts = dsv4_calloc((size_t)L->n_experts, sizeof *L->experts, "experts");
    if (!L->experts) return -1;
    for (int64_t e = 0; e < L->n_experts; e++) {
        snprintf(name, sizeof name, "%s.experts.%lld", prefix, (long long)e);
        if (load_expert(&L->experts[e], src, name, L->dim, L->inter)) return -1;
    }
    snprintf(name, sizeof name, "%s.shared_experts", prefix);
    return load_expert(&L->shared, src, name, L->dim, L->inter);
}

void moe_layer_free(moe_layer *L)
{
    free(L->bias);
    free(L->tid2eid);
    free(L->experts);
    memset(L, 0, sizeof *L);
}

/* ---- router ---- */

/* [MOE-1] torch.nn.functional.softplus with beta 1 and threshold 20: x itself when x > 20,
 * else log1p(exp(x)). Pitfall 16: a naive log(1 + exp(x)) overflows for router logits ~ 200
 * and loses everything below ~ -17. */
double moe_softplus(double x)
{
    return x > 20.0 ? x : log1p(exp(x));
}

/* [MOE-2] a: [n, dim] (bf16 values); tokens: [n]; weights: [n, n_act]; ids: [n, n_act].
 *   s^ = f32(a) . f32(W_gate)^T                  (fp32 GEMM)
 *   s  = softmax(s^) | sigmoid(s^) | sqrt(softplus(s^))          (fp32)
 *   ids = tid2eid[token] (hash layers) or top-k(s + bias) (bias for SELECTION only, pitfall 16;
 *         ties: score descending then id ascending, [TOPK-1])
 *   w  = s[ids]; w /= sum(w) unless softmax; w *= route_scale       (fp32)  */
int moe_route(const moe_layer *L, const float *a, const int64_t *tokens, int64_t n,
              float *weights, int64_t *ids, dsv4_numerics num)
{
    int64_t E = L->n_experts, k = L->n_act;
    float *logit = dsv4_calloc((size_t)E, sizeof *logit, "router");
    float *sel = dsv4_calloc((size_t)E, sizeof *sel, "router");
    double *s = dsv4_calloc((size_t)E, sizeof *s, "router");
    if (!logit || !sel || !s) { free(logit); free(sel); free(s); return -1; }
    for (int64_t t = 0; t < n; t++) {
        if (dsv4_backend()->linear(&L->gate, a + t * L->dim, logit, 1, 1, num)) {
            free(logit); free(sel); free(s);
            return -1;
        }
        dsv4_count_linear(DSV4_COMP_MOE_ROUTER, &L->gate, 1);         /* [COST-10] */
        if (L->score_func == SCORE_SOFTMAX) {
            double mx = logit[0], sum = 0.0;
            for (int64_t e = 1; e < E; e++) if (logit[e] > mx) mx = logit[e];
            for (int64_t e = 0; e < E; e++) { s[e] = fl(exp(fl(logit[e] - mx, num)), num); sum += s[e]; }
            sum = fl(sum, num);
            for (int64_t e = 0; e < E; e++) s[e] = fl(s[e] / sum, num);
        } else if (L->score_func == SCORE_SIGMOID) {
            for (int64_t e = 0; e < E; e++) s[e] = fl(1.0 / (1.0 + exp(-(double)logit[e])), num);
        } else {
            for (int64_t e = 0; e < E; e++) s[e] = fl(sqrt(fl(moe_softplus(logit[e]), num)), num);
        }
        int64_t *it = ids + t * k;
        if (L->hash) {
            if (tokens[t] < 0 || tokens[t] >= L->vocab) {
                free(logit); free(sel); free(s);
                return dsv4_set_error("hash routing: token id %lld outside the vocabulary [0, %lld)",
                                      (long long)tokens[t], (long long)L->vocab);
            }
            for (int64_t i = 0; i < k; i++) it[i] = L->tid2eid[tokens[t] * k + i];
        } else {
            for (int64_t e = 0; e < E; e++)
                sel[e] = (float)fl(s[e] + (L->bias ? L->bias[e] : 0.0f), num);
            for (int64_t e = 0; e < E; e++)
                if (isnan(sel[e])) {
                    free(logit); free(sel); free(s);
                    return dsv4_set_error("router: NaN score for expert %lld", (long long)e);
                }
            if (topk_select(sel, E, k, it)) {
                free(logit); free(sel); free(s);
                return -1;
            }
        }
        double wsum = 0.0;
        for (int64_t i = 0; i < k; i++) wsum = fl(wsum + s[it[i]], num);
        for (int64_t i = 0; i < k; i++) {
            double w = s[it[i]];
            if (L->score_func != SCORE_SOFTMAX) w = fl(w / wsum, num);
            weights[t * k + i] = (float)fl(w * L->route_scale, num);
        }
    }
    free(logit); free(sel); free(s);
    return 0;
}

/* ---- experts ---- */

/* [MOE-3] a: [n, dim]; rw: [n] or NULL; y: [n, dim].
 *   g = f32(GEMM(w1, a)), u = f32(GEMM(w3, a))        (GEMM outputs bf16 in official mode)
 *   u = clamp(u, -limit, limit); g = min(g, limit)     (limit > 0; pitfall 17: the gate is
 *                                                      clamped from ABOVE only)
 *   h = silu(g) * u;  routed: h = rw * h               (fp32, weight applied BEFORE w2)
 *   y = GEMM(w2, bf16(h))                              (bf16 out) */
int moe_expert_forward(const moe_expert *e, int64_t dim, int64_t inter, double swiglu_limit,
                       const float *a, const float *rw, int64_t n, float *y, dsv4_numerics num)
{
    float *g = dsv4_calloc((size_t)(n * inter), sizeof *g, "expert gate");
    float *u = dsv4_calloc((size_t)(n * inter), sizeof *u, "expert up");
    int rc = -1;
    if (!g || !u) goto done;
    if (dsv4_backend()->linear(&e->w1, a, g, n, 0, num) ||
        dsv4_backend()->linear(&e->w3, a, u, n, 0, num))
        goto done;
    dsv4_count_linear(rw ? DSV4_COMP_MOE_ROUTED : DSV4_COMP_MOE_SHARED, &e->w1, n);   /* [COST-10] */
    dsv4_count_linear(rw ? DSV4_COMP_MOE_ROUTED : DSV4_COMP_MOE_SHARED, &e->w3, n);
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < inter; i++) {
            double gv = g[t * inter + i], uv = u[t * inter + i];
            if (swiglu_limit > 0.0) {
                double lim = fl(swiglu_limit, num);
                if (uv > lim) uv = lim;
                if (uv < -lim) uv = -lim;
                if (gv > lim) gv = lim;
            }
            double silu = fl(gv / (1.0 + exp(-gv)), num);
            double h = fl(silu * uv, num);
            if (rw) h = fl((double)rw[t] * h, num);
            g[t * inter + i] = num == DSV4_OFFICIAL ? round_bf16((float)h) : (float)h;
        }
    if (dsv4_backend()->linear(&e->w2, g, y, n, 0, num)) goto done;
    dsv4_count_linear(rw ? DSV4_COMP_MOE_ROUTED : DSV4_COMP_MOE_SHARED, &e->w2, n);
    (void)dim;
    rc = 0;
done:
    free(g);
    free(u);
    return rc;
}

/* ---- combine ---- */

/* [MOE-4] a: [n, dim]; tokens: [n]; y: [n, dim].
 * Y = 0 (fp32); for each expert e in ascending id: for each token routed to e, Y += f32(y_e)
 * (an fp32 add per expert, in that order); then Y += shared(a); y = bf16(Y). */
int moe_forward(const moe_layer *L, const float *a, const int64_t *tokens, int64_t n, float *y,
                float *weights, int64_t *ids, dsv4_numerics num)
{
    int64_t k = L->n_act, dim = L->dim;
    float *w = weights ? weights : dsv4_calloc((size_t)(n * k), sizeof *w, "routing weights");
    int64_t *id = ids ? ids : dsv4_calloc((size_t)(n * k), sizeof *id, "routing ids");
    double *acc = dsv4_calloc((size_t)(n * dim), sizeof *acc, "moe accumulator");
    float *xa = dsv4_calloc((size_t)(n * dim), sizeof *xa, "expert rows");
    float *ya = dsv4_calloc((size_t)(n * dim), sizeof *ya, "expert out");
    float *rw = dsv4_calloc((size_t)n, sizeof *rw, "expert weights");
    int64_t *row = dsv4_calloc((size_t)n, sizeof *row, "expert rows");
    int rc = -1;
    if (!w || !id || !acc || !xa || !ya || !rw || !row) goto done;
    if (moe_route(L, a, tokens, n, w, id, num)) goto done;
    for (int64_t e = 0; e < L->n_experts; e++) {
        int64_t m = 0;
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < k; i++)
                if (id[t * k + i] == e) {
                    memcpy(xa + m * dim, a + t * dim, (size_t)dim * sizeof *xa);
                    rw[m] = w[t * k + i];
                    row[m++] = t;
                }
        if (m == 0) continue;
        if (moe_expert_forward(&L->experts[e], dim, L->inter, L->swiglu_limit, xa, rw, m, ya, num)) goto done;
        for (int64_t r = 0; r < m; r++)
            for (int64_t d = 0; d < dim; d++)
                acc[row[r] * dim + d] = fl(acc[row[r] * dim + d] + ya[r * dim + d], num);
    }
    if (moe_expert_forward(&L->shared, dim, L->inter, L->swiglu_limit, a, NULL, n, ya, num)) goto done;
    for (int64_t i = 0; i < n * dim; i++) {
        double v = fl(acc[i] + ya[i], num);
        y[i] = num == DSV4_OFFICIAL ? round_bf16((float)v) : (float)v;
    }
    rc = 0;
done:
    if (!weights) free(w);
    if (!ids) free(id);
    free(acc); free(xa); free(ya); free(rw); free(row);
    return rc;
}
