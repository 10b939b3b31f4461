/* compressor.cu — the V4 KV compressor's decode step on the GPU (spec/compressor.md
 * [CMP-1..CMP-8]; the reference is ref/compressor.c: compressor_decode).
 *
 * One decode token t for B sequences:
 *   1. u = Wkv x, g = Wgate x                      launch_linear, fp32 GEMMs      [CMP-1]
 *   2. state row (ov ? m : 0) + t mod m <- (u, g + ape[t mod m])   state_write_kernel
 *      grid B, block 256                                                         [CMP-6]
 *   3. at emission ((t+1) mod m == 0), launch_compressor_emit:
 *      pool_kernel: grid B, block c: thread e pools channel e over the km state rows
 *        (overlap: rows 0..m-1 read the A half, rows m..2m-1 the B half) with a per-channel
 *        softmax (f32 max, expf, sum, divide, products summed in row order as ref) and
 *        rounds to bf16                                                      [CMP-2..CMP-4]
 *      launch_rmsnorm (norm_w), launch_rope_rows at position (t/m)*m (pitfall 9),
 *      main: launch_fp8_sim on the first c-r dims (block 64); indexer: launch_hadamard then
 *      launch_fp4_sim (block 32) (pitfall 11)                                    [CMP-5]
 *   4. overlap: rows m..2m-1 move to rows 0..m-1 (state_shift_kernel)          [CMP-8]
 * The state lives in the host struct (the ref interface); it is uploaded and downloaded
 * around the step. Differences from ref: expf on the GPU (not glibc's, <= 2 ulp fp32) and
 * the accumulation order inside the GEMMs and RMSNorm (spec/tolerances.md). */
#include <cstdlib>
#include "cuda_common.cuh"
#include "kernels.h"

/* [CMP-6] ks, ss: [B, km, kc]; u, g: [B, kc]; ape_row: [kc]. Row `row` of every batch
 * entry <- (u, g + ape) (one fp32 add, as ref). grid B, block 256. */
__global__ void state_write_kernel(float *ks, float *ss, const float *u, const float *g,
                                   const float *ape_row, int64_t kc, int64_t km, int64_t row)
{
    int64_t b = blockIdx.x;
    for (int64_t e = threadIdx.x; e < kc; e += blockDim.x) {
        ks[(b * km + row) * kc + e] = u[b * kc + e];
        ss[(b * km + row) * kc + e] = g[b * kc + e] + ape_row[e];
    }
}

/* [CMP-8] overlap: rows m..2m-1 of ks, ss ([B, km, kc]) move to rows 0..m-1. grid B. */
__global__ void state_shift_kernel(float *ks, float *ss, int64_t kc, int64_t km, int m)
{
    int64_t b = blockIdx.x;
    for (int64_t i = threadIdx.x; i < (int64_t)m * kc; i += blockDim.x) {
        ks[b * km * kc + i] = ks[b * km * kc + m * kc + i];
        ss[b * km * kc + i] = ss[b * km * kc + m * kc + i];
    }
}

/* [CMP-2] [CMP-3] kv, sc: [B, km, kc]; out: [B, c] */
__global__ void pool_kernel(const float *kv, const float *sc, int64_t km, int64_t kc, int m,
                            int c, int ov, float *out, int official)
{
    int64_t b = blockIdx.x;
    int e = threadIdx.x;
    const float *kb = kv + b * km * kc, *sb = sc + b * km * kc;
    if (official) {
        float mx = -INFINITY, sum = 0.0f, acc = 0.0f;
        for (int i = 0; i < km; i++) {
            int off = (ov && i >= m) ? c : 0;
            mx = fmaxf(mx, sb[i * kc + off + e]);
        }
        for (int i = 0; i < km; i++) {
            int off = (ov && i >= m) ? c : 0;
            sum += expf(sb[i * kc + off + e] - mx);
        }
        for (int i = 0; i < km; i++) {
            int off = (ov && i >= m) ? c : 0;
            float p = expf(sb[i * kc + off + e] - mx) / sum;
            acc += kb[i * kc + off + e] * p;
        }
        out[b * c + e] = d_round_bf16(acc);                     /* [CMP-4] bf16 cast */
    } else {
        double mx = -INFINITY, sum = 0.0, acc = 0.0;
        for (int i = 0; i < km; i++) {
            int off = (ov && i >= m) ? c : 0;
            mx = fmax(mx, (double)sb[i * kc + off + e]);
        }
        for (int i = 0; i < km; i++) {
            int off = (ov && i >= m) ? c : 0;
            sum += exp((double)sb[i * kc + off + e] - mx);
        }
        for (int i = 0; i < km; i++) {
            int off = (ov && i >= m) ? c : 0;
            acc += (double)kb[i * kc + off + e] * (exp((double)sb[i * kc + off + e] - mx) / sum);
        }
        out[b * c + e] = (float)acc;
    }
}

/* [CMP-2..CMP-5] kv, sc: [B, km, kc] device state (scores incl. ape) -> out: [B, c]: pool,
 * bf16, RMSNorm(norm_w: [c]), RoPE with cs: [B, r/2, 2], FP8 (main) / Hadamard + FP4 (indexer).
 * Pitfalls 9 (RoPE position = the entry's first token), 10, 11. */
extern "C" int launch_compressor_emit(const v4_compressor *C, const float *dkv, const float *dsc,
                                      int64_t B, const float *dnorm_w, const float *dcs,
                                      float *dout)
{
    int m = C->ratio, c = C->head_dim, r = C->rope_dim, ov = C->overlap;
    int64_t kc = (int64_t)(1 + ov) * c, km = (int64_t)(1 + ov) * m;
    if (c > 1024) return dsv4_set_error("cuda compressor: head_dim %d > 1024", c);
    pool_kernel<<<(unsigned)B, c>>>(dkv, dsc, km, kc, m, c, ov, dout, C->num == DSV4_OFFICIAL);
    CK_LAUNCH("compressor_pool");
    if (launch_rmsnorm(dout, dnorm_w, dout, B, c, C->eps, C->num)) return -1;
    if (r > 0 && launch_rope_rows(dout, B, c, c - r, r, dcs, ROPE_INTERLEAVED, 0, C->num)) return -1;
    if (C->kind == COMPRESSOR_MAIN) {
        if (C->num == DSV4_OFFICIAL && launch_fp8_sim(dout, B, c, c - r, 64)) return -1;
    } else {
        if (launch_hadamard(dout, B, c, C->num)) return -1;
        if (C->num == DSV4_OFFICIAL && launch_fp4_sim(dout, B, c, c, 32)) return -1;
    }
    return 0;
}

/* [CMP-8] ref/compressor.c: compressor_decode on the GPU. x: [B, 1, d] host; out: [B, c]
 * written when (t+1) mod m == 0 (returns 1), else returns 0; -1 on error. */
extern "C" int cuda_compressor_decode(v4_compressor *C, const float *x, int64_t B, int64_t t,
                                      float *out)
{
    cuda_count("compressor_decode");
    int m = C->ratio, c = C->head_dim, r = C->rope_dim, ov = C->overlap;
    int64_t kc = (int64_t)(1 + ov) * c, km = (int64_t)(1 + ov) * m, d = C->dim;
    int emit = (t + 1) % m == 0;
    if (B > C->max_batch) return dsv4_set_error("compressor: batch %lld > max_batch %lld",
                                                (long long)B, (long long)C->max_batch);
    size_t sbytes = (size_t)(B * km * kc) * sizeof(float);
    float *dx = (float *)cuda_scratch(0, (size_t)(B * d) * sizeof(float));
    float *du = (float *)cuda_scratch(1, (size_t)(B * kc) * sizeof(float));
    float *dg = (float *)cuda_scratch(2, (size_t)(B * kc) * sizeof(float));
    float *dks = (float *)cuda_scratch(3, sbytes);
    float *dss = (float *)cuda_scratch(4, sbytes);
    float *dout = (float *)cuda_scratch(5, (size_t)(B * c) * sizeof(float));
    float *dcs = (float *)cuda_scratch(6, (size_t)(B * (r > 0 ? r : 2)) * sizeof(float));
    const float *dape = (const float *)cuda_cached(C->ape, (size_t)(m * kc) * sizeof(float));
    const float *dnw = (const float *)cuda_cached(C->norm_w, (size_t)c * sizeof(float));
    if (!dx || !du || !dg || !dks || !dss || !dout || !dcs || !dape || !dnw) return -1;
    if (cuda_up(dx, x, (size_t)(B * d) * sizeof(float))) return -1;
    if (launch_linear(&C->wkv, dx, du, B, 1, C->num) || launch_linear(&C->wgate, dx, dg, B, 1, C->num))
        return -1;
    if (cuda_up(dks, C->kv_state, sbytes) || cuda_up(dss, C->score_state, sbytes)) return -1;
    int64_t row = (ov ? m : 0) + t % m;
    state_write_kernel<<<(unsigned)B, 256>>>(dks, dss, du, dg, dape + (t % m) * kc, kc, km, row);
    CK_LAUNCH("compressor_state_write");
    if (emit) {
        if (r > 0) {
            float *cs = (float *)malloc(sizeof(float) * (size_t)(B * r));
            int64_t *pos = (int64_t *)malloc(sizeof(int64_t) * (size_t)B);
            if (!cs || !pos) { free(cs); free(pos); return dsv4_set_error("cuda compressor: out of memory"); }
            for (int64_t b = 0; b < B; b++) pos[b] = (t / m) * m;
            rope_table(C->rope, pos, B, cs);
            int rc = cuda_up(dcs, cs, sizeof(float) * (size_t)(B * r));
            free(cs); free(pos);
            if (rc) return -1;
        }
        if (launch_compressor_emit(C, dks, dss, B, dnw, dcs, dout)) return -1;
        if (ov) {
            state_shift_kernel<<<(unsigned)B, 256>>>(dks, dss, kc, km, m);
            CK_LAUNCH("compressor_state_shift");
        }
        if (cuda_down(out, dout, (size_t)(B * c) * sizeof(float))) return -1;
    }
    if (cuda_down(C->kv_state, dks, sbytes) || cuda_down(C->score_state, dss, sbytes)) return -1;
    return emit;
}
