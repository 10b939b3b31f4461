/* compressor.c — the V4 KV compressor (spec/compressor.md [CMP-1..CMP-8]).
 *
 * Forward-pass order: projections of f32(x) -> (overlapping) window assembly -> per-channel
 * softmax pooling -> bf16 cast, RMSNorm -> RoPE at position j*m -> FP8 or Hadamard+FP4 ->
 * the entry. Prefill computes every complete entry at once and leaves the decode state;
 * decode appends one token to the state and pools when (t+1) mod m == 0. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "compressor.h"
#include "backend.h"
#include "counters.h"
#include "hadamard.h"
#include "linear.h"
#include "norm.h"
#include "numerics.h"

/* ---- state ---- */

/* [CMP-6] Allocates the decode state of C: kv_state / score_state [max_batch, kappa m, kappa c]
 * (f32); weights are filled in by the caller. FP8 simulation needs (c - r) % 64 == 0 and FP4
 * needs c % 32 == 0 in official mode (the official act_quant asserts it). */
int compressor_init(v4_compressor *C, int ratio, int head_dim, int rope_dim, int64_t dim,
                    compressor_kind kind, float eps, const rope_freqs *rope, int64_t max_batch,
                    dsv4_numerics num)
{
    memset(C, 0, sizeof *C);
    if (ratio < 1 || head_dim < rope_dim || rope_dim < 0 || rope_dim % 2 != 0 || max_batch < 1)
        return dsv4_set_error("compressor: bad shape (ratio %d, head_dim %d, rope_dim %d, batch %lld)",
                              ratio, head_dim, rope_dim, (long long)max_batch);
    if (num == DSV4_OFFICIAL && kind == COMPRESSOR_MAIN && (head_dim - rope_dim) % 64 != 0)
        return dsv4_set_error("compressor: head_dim - rope_dim = %d is not a multiple of the FP8 block 64",
                              head_dim - rope_dim);
    if (num == DSV4_OFFICIAL && kind == COMPRESSOR_INDEXER && head_dim % 32 != 0)
        return dsv4_set_error("compressor: index_head_dim %d is not a multiple of the FP4 block 32", head_dim);
    if (kind == COMPRESSOR_INDEXER && (head_dim & (head_dim - 1)) != 0)
        return dsv4_set_error("compressor: index_head_dim %d is not a power of two (Hadamard)", head_dim);
    C->ratio = ratio;
    C->overlap = ratio == 4;
    C->head_dim = head_dim;
    C->rope_dim = rope_dim;
    C->dim = dim;
    C->kind = kind;
    C->eps = eps;
    C->rope = rope;
    C->num = num;
    C->max_batch = max_batch;
    int64_t k = 1 + C->overlap;
    int64_t n = max_batch * k * ratio * k * head_dim;
    C->kv_state = dsv4_calloc((size_t)n, sizeof(float), "compressor kv_state");
    C->score_state = dsv4_calloc((size_t)n, sizeof(float), "compressor score_state");
    if (!C->kv_state || !C->score_state) { compressor_free(C); return -1; }
    compressor_reset(C);
    return 0;
}

/* Frees the state and the owned ape / norm copies. */
void compressor_free(v4_compressor *C)
{
    free(C->kv_state);
    free(C->score_state);
    free(C->ape);
    free(C->norm_w);
    C->kv_state = C->score_state = C->ape = C->norm_w = NULL;
}

/* [CMP-6] Empty state: values 0, scores -inf, for every batch row (pitfall 10: an empty
 * "previous block" contributes nothing to entry 0). */
void compressor_reset(v4_compressor *C)
{
    int64_t k = 1 + C->overlap;
    int64_t n = C->max_batch * k * C->ratio * k * C->head_dim;
    for (int64_t i = 0; i < n; i++) {
        C->kv_state[i] = 0.0f;
        C->score_state[i] = -INFINITY;
    }
}

/* ---- pooling ---- */

/* [CMP-2] [CMP-3] One entry from n = m (plain) or 2m (overlap) pooled rows.
 * kv[i], sc[i]: row i's value and score vectors (score already + ape), each read at
 * channel offset off[i] (0 = A half / plain, c = B half); out: [c] pooled (not yet rounded).
 * Per channel e: p = softmax_i(sc[i][off+e]); out[e] = sum_i p_i kv[i][off+e].
 * official: f32 max, exp, sum, divide, product and sum in row order (torch fp32);
 * exact: double. Empty rows (score -inf, value 0) contribute 0. */
static void pool_entry(const v4_compressor *C, const float *const *kv, const float *const *sc,
                       const int *off, int n, float *out)
{
    int c = C->head_dim;
    for (int i = 0; i < n; i++)                                      /* [COST-7]: rows with a score */
        if (sc[i][off[i]] != -INFINITY) dsv4_count(DSV4_COMP_COMPRESSOR, c);
    for (int e = 0; e < c; e++) {
        if (C->num == DSV4_OFFICIAL) {
            float mx = -INFINITY, sum = 0.0f, acc = 0.0f;
            for (int i = 0; i < n; i++) if (sc[i][off[i] + e] > mx) mx = sc[i][off[i] + e];
            for (int i = 0; i < n; i++) sum += expf(sc[i][off[i] + e] - mx);
            for (int i = 0; i < n; i++) {
                float p = expf(sc[i][off[i] + e] - mx) / sum;
                acc += kv[i][off[i] + e] * p;
            }
            out[e] = acc;
        } else {
            double mx = -INFINITY, sum = 0.0, acc = 0.0;
            for (int i = 0; i < n; i++) if (sc[i][off[i] + e] > mx) mx = sc[i][off[i] + e];
            for (int i = 0; i < n; i++) sum += exp((double)sc[i][off[i] + e] - mx);
            for (int i = 0; i < n; i++)
                acc += (double)kv[i][off[i] + e] * (exp((double)sc[i][off[i] + e] - mx) / sum);
            out[e] = (float)acc;
        }
    }
}

/* [CMP-4] [CMP-5] Post-pooling of entry j: v: [c] in place.
 * k = RMSNorm_c(bf16(v)); RoPE(k[c-r:c], position j*m) (pitfall 9: the entry's first token);
 * main: FP8 simulation of k[0:c-r] in 64-blocks; indexer: Hadamard of all c dims, then FP4
 * simulation in 32-blocks (pitfall 11). exact: no bf16 cast, no FP8/FP4. */
static void finish_entry(const v4_compressor *C, float *v, int64_t j)
{
    int c = C->head_dim, r = C->rope_dim;
    round_bf16_n(v, c, C->num);
    dsv4_backend()->rmsnorm(v, C->norm_w, v, 1, c, C->eps, C->num);
    if (r > 0) rope_apply(C->rope, v + (c - r), j * C->ratio, ROPE_INTERLEAVED, 0);
    if (C->kind == COMPRESSOR_MAIN) {
        if (C->num == DSV4_OFFICIAL) fp8_sim_block(v, c - r, 64);
    } else {
        dsv4_backend()->hadamard(v, 1, c, C->num);
        if (C->num == DSV4_OFFICIAL) fp4_sim_block(v, c, 32);
    }
}

/* [CMP-1] u = Wkv f32(x), g = Wg f32(x): x: [n, d] -> u, g: [n, kappa c], fp32 GEMMs
 * (linear out_f32 = 1: the official compressor holds its weights as fp32 parameters). */
static int project(const v4_compressor *C, const float *x, int64_t n, float *u, float *g)
{
    if (dsv4_backend()->linear(&C->wkv, x, u, n, 1, C->num)) return -1;
    if (dsv4_backend()->linear(&C->wgate, x, g, n, 1, C->num)) return -1;
    dsv4_count_linear(DSV4_COMP_COMPRESSOR, &C->wkv, n);             /* [COST-7] */
    dsv4_count_linear(DSV4_COMP_COMPRESSOR, &C->wgate, n);
    return 0;
}

/* ---- prefill ---- */

/* [CMP-7] x: [B, S, d] -> out: [B, S/m, c]. Entry j pools tokens jm..jm+m-1 (plain) or, with
 * overlap, additionally the A halves of tokens (j-1)m..jm-1 (absent for j = 0). Then the
 * state keeps (overlap, S >= m) the last complete block in rows 0..m-1 and the trailing
 * S mod m tokens in rows off..off+rem-1 (off = m with overlap, else 0), scores incl. ape.
 * Guards pitfall 10 (overlap halves, ape on scores, emission boundary). */
int64_t compressor_prefill(v4_compressor *C, const float *x, int64_t B, int64_t S, float *out)
{
    int m = C->ratio, c = C->head_dim, ov = C->overlap;
    int64_t kc = (int64_t)(1 + ov) * c, km = (int64_t)(1 + ov) * m;
    int64_t n_ent = S / m, cutoff = n_ent * m, rem = S - cutoff;
    if (B > C->max_batch) return dsv4_set_error("compressor: batch %lld > max_batch %lld",
                                                (long long)B, (long long)C->max_batch);
    float *u = dsv4_calloc((size_t)(B * S * kc), sizeof(float), "compressor u");
    float *g = dsv4_calloc((size_t)(B * S * kc), sizeof(float), "compressor g");
    float *empty_kv = dsv4_calloc((size_t)kc, sizeof(float), "compressor empty row");
    float *empty_sc = dsv4_calloc((size_t)kc, sizeof(float), "compressor empty row");
    const float **kvp = dsv4_calloc((size_t)(2 * m), sizeof(float *), "compressor rows");
    const float **scp = dsv4_calloc((size_t)(2 * m), sizeof(float *), "compressor rows");
    int *off = dsv4_calloc((size_t)(2 * m), sizeof(int), "compressor rows");
    int64_t ret = -1;
    if (!u || !g || !empty_kv || !empty_sc || !kvp || !scp || !off) goto done;
    if (project(C, x, B * S, u, g)) goto done;
    for (int64_t i = 0; i < kc; i++) empty_sc[i] = -INFINITY;
    /* scores + ape[t mod m] (f32 add) */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < S; t++)
            for (int64_t e = 0; e < kc; e++)
                g[(b * S + t) * kc + e] += C->ape[(t % m) * kc + e];
    for (int64_t b = 0; b < B; b++) {
        for (int64_t j = 0; j < n_ent; j++) {
            int n = 0;
            if (ov) {
                for (int i = 0; i < m; i++, n++) {
                    if (j == 0) { kvp[n] = empty_kv; scp[n] = empty_sc; }
                    else {
                        int64_t t = (j - 1) * m + i;
                        kvp[n] = u + (b * S + t) * kc;
                        scp[n] = g + (b * S + t) * kc;
                    }
                    off[n] = 0;
                }
            }
            for (int i = 0; i < m; i++, n++) {
                int64_t t = j * m + i;
                kvp[n] = u + (b * S + t) * kc;
                scp[n] = g + (b * S + t) * kc;
                off[n] = ov ? c : 0;
            }
            float *o = out + (b * n_ent + j) * c;
            pool_entry(C, kvp, scp, off, n, o);
            finish_entry(C, o, j);
        }
        /* leave the state decode continues from */
        float *ks = C->kv_state + b * km * kc, *ss = C->score_state + b * km * kc;
        if (ov && cutoff >= m) {
            memcpy(ks, u + (b * S + cutoff - m) * kc, sizeof(float) * (size_t)(m * kc));
            memcpy(ss, g + (b * S + cutoff - m) * kc, sizeof(float) * (size_t)(m * kc));
        }
        int64_t o0 = ov ? m : 0;
        for (int64_t i = 0; i < rem; i++) {
            memcpy(ks + (o0 + i) * kc, u + (b * S + cutoff + i) * kc, sizeof(float) * (size_t)kc);
            memcpy(ss + (o0 + i) * kc, g + (b * S + cutoff + i) * kc, sizeof(float) * (size_t)kc);
        }
    }
    ret = n_ent;
done:
    free(u); free(g); free(empty_kv); free(empty_sc); free(kvp); free(scp); free(off);
    return ret;
}

/* ---- decode ---- */

/* [CMP-8] x: [B, 1, d], token position t > 0 -> out: [B, c] when (t+1) mod m == 0.
 * The token's (u, g + ape[t mod m]) goes to state row off + t mod m; at emission the rows
 * are pooled (overlap: rows 0..m-1 A halves = previous block, rows m..2m-1 B halves) and,
 * overlapping, rows m..2m-1 move to rows 0..m-1. Entry index t/m, RoPE position t+1-m. */
int compressor_decode(v4_compressor *C, const float *x, int64_t B, int64_t t, float *out)
{
    int m = C->ratio, c = C->head_dim, ov = C->overlap;
    int64_t kc = (int64_t)(1 + ov) * c, km = (int64_t)(1 + ov) * m;
    int emit = (t + 1) % m == 0;
    if (B > C->max_batch) return dsv4_set_error("compressor: batch %lld > max_batch %lld",
                                                (long long)B, (long long)C->max_batch);
    float *u = dsv4_calloc((size_t)(B * kc), sizeof(float), "compressor u");
    float *g = dsv4_calloc((size_t)(B * kc), sizeof(float), "compressor g");
    const float **kvp = dsv4_calloc((size_t)(2 * m), sizeof(float *), "compressor rows");
    const float **scp = dsv4_calloc((size_t)(2 * m), sizeof(float *), "compressor rows");
    int *off = dsv4_calloc((size_t)(2 * m), sizeof(int), "compressor rows");
    int ret = -1;
    if (!u || !g || !kvp || !scp || !off) goto done;
    if (project(C, x, B, u, g)) goto done;
    for (int64_t b = 0; b < B; b++) {
        float *ks = C->kv_state + b * km * kc, *ss = C->score_state + b * km * kc;
        int64_t row = (ov ? m : 0) + t % m;
        for (int64_t e = 0; e < kc; e++) {
            ks[row * kc + e] = u[b * kc + e];
            ss[row * kc + e] = g[b * kc + e] + C->ape[(t % m) * kc + e];
        }
        if (!emit) continue;
        int n = (int)km;
        for (int i = 0; i < n; i++) {
            kvp[i] = ks + i * kc;
            scp[i] = ss + i * kc;
            off[i] = (ov && i >= m) ? c : 0;
        }
        pool_entry(C, kvp, scp, off, n, out + b * c);
        finish_entry(C, out + b * c, t / m);
        if (ov) {
            memcpy(ks, ks + m * kc, sizeof(float) * (size_t)(m * kc));
            memcpy(ss, ss + m * kc, sizeof(float) * (size_t)(m * kc));
        }
    }
    ret = emit;
done:
    free(u); free(g); free(kvp); free(scp); free(off);
    return ret;
}
