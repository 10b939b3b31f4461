/* test_omp.c — the OpenMP kernel set is bit-identical to ref/ (spec/backends.md [BK-4]).
 *
 * Kernel by kernel: the ref function and its `_omp` twin on the same random inputs, outputs
 * compared with memcmp (every bit), at 1, 2 and 3 threads, in both numerics modes. Shapes are
 * chosen to trip what breaks bit-identity: a reduction split across threads (partial sums
 * added in another order: last-bit differences), a tile that straddles a row count that is
 * not a multiple of the tile, a thread group of uneven size, a leading all-masked attention
 * block, FP8 128-row scale blocks and FP4 per-32 scales inside one tile. Every size is above
 * the kernels' serial threshold (OMP_MIN_WORK), so the parallel paths really run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "backend.h"
#include "counters.h"
#include "hadamard.h"
#include "kernels_omp.h"
#include "linear.h"
#include "norm.h"
#include "numerics.h"
#include "sparse_attention.h"

static const int k_threads[3] = { 1, 2, 3 };
static const dsv4_numerics k_modes[2] = { DSV4_EXACT, DSV4_OFFICIAL };

/* memcmp with a message that names the first differing element and the likely bug. */
static void expect_same_bits(const char *what, const void *got, const void *want, size_t n_floats,
                             int threads, dsv4_numerics num, const char *bug)
{
    const float *g = got, *w = want;
    if (memcmp(got, want, n_floats * sizeof(float)) == 0) return;
    size_t i = 0;
    while (i < n_floats && memcmp(g + i, w + i, sizeof(float)) == 0) i++;
    cm_print_error("%s (%s, %d threads): element %zu omp %.9g vs ref %.9g — likely bug: %s\n",
                   what, dsv4_numerics_name(num), threads, i, (double)g[i], (double)w[i], bug);
    fail();
}

/* ---- linear ---- */

#define LK 384     /* 3 act_quant blocks, 12 FP4 groups */
#define LR 203     /* not a multiple of the 8-row tile; crosses the 128-row FP8 scale block */
#define LN 97      /* not a multiple of the 16-row task; n * K above OMP_MIN_WORK (parallel act_quant) */

static uint8_t *rand_codes(test_rng *r, size_t n, int fp8)
{
    uint8_t *c = malloc(n);
    assert_non_null(c);
    for (size_t i = 0; i < n; i++) {
        c[i] = (uint8_t)(test_rng_next(r) >> 56);
        if (fp8 && (c[i] & 0x7F) == 0x7F) c[i] ^= 1;   /* no NaN codes */
    }
    return c;
}

static void run_linear(const dsv4_weight *w, const float *x, int64_t n, const char *what)
{
    float *ya = malloc(sizeof(float) * (size_t)(n * w->rows));
    float *yb = malloc(sizeof(float) * (size_t)(n * w->rows));
    assert_non_null(ya);
    assert_non_null(yb);
    for (int mi = 0; mi < 2; mi++)
        for (int of = 0; of < 2; of++) {
            assert_int_equal(linear(w, x, ya, n, of, k_modes[mi]), 0);
            for (int ti = 0; ti < 3; ti++) {
                dsv4_omp_set_threads(k_threads[ti]);
                memset(yb, 0xA5, sizeof(float) * (size_t)(n * w->rows));
                assert_int_equal(linear_omp(w, x, yb, n, of, k_modes[mi]), 0);
                expect_same_bits(what, yb, ya, (size_t)(n * w->rows), k_threads[ti], k_modes[mi],
                                 "a K sum split or reordered, a tile row past R written, or a "
                                 "dequantized weight that differs from weight_at");
            }
        }
    dsv4_omp_set_threads(0);
    free(ya);
    free(yb);
}

/* [LIN-2..LIN-4] every weight storage, n = 1 (decode) and n = 97 (prefill), out_f32 0 and 1. */
static void test_linear_all_dtypes(void **state)
{
    (void)state;
    test_rng r = { 0x0123456789ULL };
    float *x = malloc(sizeof(float) * LN * LK);
    float *wf = malloc(sizeof(float) * LR * LK);
    uint16_t *wb = malloc(sizeof(uint16_t) * LR * LK);
    float s8f[2 * 3];
    uint8_t s8e[2 * 3];
    assert_non_null(x); assert_non_null(wf); assert_non_null(wb);
    test_fill(&r, x, LN * LK, 2.0f);
    test_fill(&r, wf, LR * LK, 0.5f);
    for (int i = 0; i < LR * LK; i++) wb[i] = bf16_from_float(wf[i]);
    uint8_t *c8 = rand_codes(&r, LR * LK, 1);
    uint8_t *c4 = rand_codes(&r, LR * LK / 2, 0);
    uint8_t *s4 = rand_codes(&r, LR * LK / 32, 0);
    for (int i = 0; i < LR * LK / 32; i++) s4[i] = (uint8_t)(120 + s4[i] % 12);
    /* Order trap: a double sum rounded once to fp32 hides most reorderings, so every row of
     * x holds a cancelling pair +-2^70 at columns 0 and 31 (one FP4 group, one FP8 block) and
     * every weight row equal values there: summed in ascending k the terms 1..30 vanish in
     * the 2^70 magnitude and the result is the sum of the rest; in any other order it is not. */
    for (int m = 0; m < LN; m++) {
        x[m * LK] = 0x1p70f * (1.5f + 0.25f * test_rng_uniform(&r));
        x[m * LK + 31] = -x[m * LK];
    }
    for (int rr = 0; rr < LR; rr++) {
        wf[rr * LK + 31] = wf[rr * LK];
        wb[rr * LK + 31] = wb[rr * LK];
        c8[rr * LK + 31] = c8[rr * LK];
        uint8_t code0 = c4[rr * LK / 2] & 0xF;          /* element 0: low nibble of byte 0 */
        c4[rr * LK / 2 + 15] = (uint8_t)((c4[rr * LK / 2 + 15] & 0x0F) | (code0 << 4));  /* 31: high of 15 */
    }
    for (int i = 0; i < 6; i++) {
        s8e[i] = (uint8_t)(118 + 2 * i);
        s8f[i] = 0.001f * (float)(i + 3) / 7.0f;   /* F32 scales: not powers of two */
    }
    dsv4_weight w32 = { DSV4_F32, 0, LR, LK, wf, DSV4_F32, NULL, "omp.f32" };
    dsv4_weight w16 = { DSV4_BF16, 0, LR, LK, wb, DSV4_F32, NULL, "omp.bf16" };
    dsv4_weight w8e = { DSV4_F8_E4M3, 0, LR, LK, c8, DSV4_F8_E8M0, s8e, "omp.fp8e8m0" };
    dsv4_weight w8f = { DSV4_F8_E4M3, 0, LR, LK, c8, DSV4_F32, s8f, "omp.fp8f32" };
    dsv4_weight w4 = { DSV4_I8, 1, LR, LK, c4, DSV4_F8_E8M0, s4, "omp.fp4" };
    const dsv4_weight *ws[5] = { &w32, &w16, &w8e, &w8f, &w4 };
    for (int i = 0; i < 5; i++) {
        run_linear(ws[i], x, LN, ws[i]->name);
        run_linear(ws[i], x + 5 * LK, 1, ws[i]->name);
    }
    free(x); free(wf); free(wb); free(c8); free(c4); free(s4);
}

/* The omp GEMM reports bad input exactly like ref: same return, same message. */
static void test_linear_errors(void **state)
{
    (void)state;
    test_rng r = { 77 };
    float x[2 * 256];
    test_fill(&r, x, 2 * 256, 1.0f);
    x[300] = NAN;
    uint8_t *c8 = rand_codes(&r, 16 * 256, 1);
    uint8_t s8e[2] = { 127, 127 };
    dsv4_weight w = { DSV4_F8_E4M3, 0, 16, 256, c8, DSV4_F8_E8M0, s8e, "omp.nan" };
    float y[2 * 16];
    char msg[256];
    assert_int_equal(linear(&w, x, y, 2, 0, DSV4_OFFICIAL), -1);
    snprintf(msg, sizeof msg, "%s", dsv4_last_error());
    assert_int_equal(linear_omp(&w, x, y, 2, 0, DSV4_OFFICIAL), -1);
    assert_string_equal(dsv4_last_error(), msg);
    dsv4_weight bad = { DSV4_I32, 0, 16, 256, c8, DSV4_F32, NULL, "omp.i32" };
    assert_int_equal(linear(&bad, x, y, 1, 0, DSV4_EXACT), -1);
    snprintf(msg, sizeof msg, "%s", dsv4_last_error());
    assert_int_equal(linear_omp(&bad, x, y, 1, 0, DSV4_EXACT), -1);
    assert_string_equal(dsv4_last_error(), msg);
    free(c8);
}

/* ---- norms and Hadamard ---- */

#define NR 61
#define ND 608

/* [NORM-1] [NORM-2] rows split across threads; with and without weight; in place. */
static void test_norms(void **state)
{
    (void)state;
    test_rng r = { 99 };
    float *x = malloc(sizeof(float) * NR * ND), *w = malloc(sizeof(float) * ND);
    float *ya = malloc(sizeof(float) * NR * ND), *yb = malloc(sizeof(float) * NR * ND);
    assert_non_null(x); assert_non_null(w); assert_non_null(ya); assert_non_null(yb);
    test_fill(&r, x, NR * ND, 3.0f);
    test_fill(&r, w, ND, 1.5f);
    for (int mi = 0; mi < 2; mi++)
        for (int ti = 0; ti < 3; ti++) {
            dsv4_omp_set_threads(k_threads[ti]);
            for (int wi = 0; wi < 2; wi++) {
                rmsnorm(x, wi ? w : NULL, ya, NR, ND, 1e-6f, k_modes[mi]);
                rmsnorm_omp(x, wi ? w : NULL, yb, NR, ND, 1e-6f, k_modes[mi]);
                expect_same_bits("rmsnorm", yb, ya, NR * ND, k_threads[ti], k_modes[mi],
                                 "the row's sum of squares split across threads or reordered");
            }
            memcpy(yb, x, sizeof(float) * NR * ND);              /* in place (aliasing) */
            rmsnorm_omp(yb, w, yb, NR, ND, 1e-6f, k_modes[mi]);
            rmsnorm(x, w, ya, NR, ND, 1e-6f, k_modes[mi]);
            expect_same_bits("rmsnorm in place", yb, ya, NR * ND, k_threads[ti], k_modes[mi],
                             "in-place RMSNorm reading an already-normalized value");
            for (int vl = 0; vl < 2; vl++) {     /* [NORM-2b] 61 rows: body 32 + tail 29; or none */
                int saved = rmsnorm_head_torch_vec_loop();
                rmsnorm_head_set_torch_vec_loop(vl ? 0 : 32);
                memcpy(ya, x, sizeof(float) * NR * ND);
                memcpy(yb, x, sizeof(float) * NR * ND);
                rmsnorm_head(ya, NR, ND, 1e-6f, k_modes[mi]);
                rmsnorm_head_omp(yb, NR, ND, 1e-6f, k_modes[mi]);
                rmsnorm_head_set_torch_vec_loop(saved);
                expect_same_bits("rmsnorm_head", yb, ya, NR * ND, k_threads[ti], k_modes[mi],
                                 "a bf16 step of [NORM-2] skipped, the sum reordered, or the "
                                 "[NORM-2b] tail decided per thread instead of per call");
            }
        }
    dsv4_omp_set_threads(0);
    free(x); free(w); free(ya); free(yb);
}

/* [HAD-1] 301 rows of 128; a bad size leaves x unchanged with the same error. */
static void test_hadamard(void **state)
{
    (void)state;
    test_rng r = { 5 };
    enum { HR = 301, HN = 128 };
    float *x = malloc(sizeof(float) * HR * HN), *a = malloc(sizeof(float) * HR * HN),
          *b = malloc(sizeof(float) * HR * HN);
    assert_non_null(x); assert_non_null(a); assert_non_null(b);
    test_fill(&r, x, HR * HN, 1.0f);
    for (int mi = 0; mi < 2; mi++)
        for (int ti = 0; ti < 3; ti++) {
            dsv4_omp_set_threads(k_threads[ti]);
            memcpy(a, x, sizeof(float) * HR * HN);
            memcpy(b, x, sizeof(float) * HR * HN);
            hadamard(a, HR, HN, k_modes[mi]);
            hadamard_omp(b, HR, HN, k_modes[mi]);
            expect_same_bits("hadamard", b, a, HR * HN, k_threads[ti], k_modes[mi],
                             "butterfly stages in another order or a shared scratch row");
        }
    dsv4_omp_set_threads(0);
    memcpy(b, x, sizeof(float) * HR * HN);
    dsv4_clear_error();
    hadamard_omp(b, 3, 96, DSV4_OFFICIAL);
    assert_memory_equal(b, x, sizeof(float) * 3 * 96);
    assert_non_null(strstr(dsv4_last_error(), "not a power of two"));
    free(x); free(a); free(b);
}

/* ---- sparse attention ---- */

/* [SPA-1..SPA-4] 20 heads (two full 8-head logit tiles and a partial one; 4-head P.V units),
 * D = 72 (a full 64-channel P.V unit and a partial one, a partial 16-channel chunk), 200 and
 * 199 listed rows (three full 64-blocks and a partial one; 199: a last logit row pair with
 * one row) whose first 64 are masked (pitfall 13: a leading all-masked block), more -1
 * entries (row pairs with one masked row) and repeated rows later; plus an all-masked list;
 * at 1, 2, 3 and 16 threads (more threads than row pairs of a block, heads or units). */
static void test_sparse_attention(void **state)
{
    (void)state;
    enum { H = 20, D = 72, NKV = 300, NI = 200 };
    test_rng r = { 31337 };
    float *q = malloc(sizeof(float) * H * D), *kv = malloc(sizeof(float) * NKV * D);
    float sink[H], *oa = malloc(sizeof(float) * H * D), *ob = malloc(sizeof(float) * H * D);
    int64_t idx[NI], none[NI];
    assert_non_null(q); assert_non_null(kv); assert_non_null(oa); assert_non_null(ob);
    test_fill(&r, q, H * D, 2.0f);
    test_fill(&r, kv, NKV * D, 1.0f);
    test_fill(&r, sink, H, 3.0f);
    for (int i = 0; i < NI; i++) {
        idx[i] = (int64_t)(test_rng_next(&r) % NKV);
        if (i < 64 || i % 7 == 3) idx[i] = -1;
        none[i] = -1;
    }
    double scale = 1.0 / sqrt((double)D);
    static const int thr[4] = { 1, 2, 3, 16 };
    for (int mi = 0; mi < 2; mi++)
        for (int ni = NI - 1; ni <= NI; ni++)
            for (int ti = 0; ti < 4; ti++) {
                dsv4_omp_set_threads(thr[ti]);
                dsv4_count_enable(1);
                dsv4_count_reset();
                assert_int_equal(sparse_attention(q, H, D, kv, NKV, idx, ni, sink, scale, oa, k_modes[mi]), 0);
                int64_t cref = dsv4_count_total();
                dsv4_count_reset();
                assert_int_equal(sparse_attention_omp(q, H, D, kv, NKV, idx, ni, sink, scale, ob, k_modes[mi]), 0);
                assert_int_equal(dsv4_count_total(), cref);   /* [COST-6] counted as ref, once */
                dsv4_count_enable(0);
                expect_same_bits("sparse_attention", ob, oa, H * D, thr[ti], k_modes[mi],
                                 "a softmax block or the P.V sum reordered, a masked row added "
                                 "as 0 * v, or scratch shared between threads");
                assert_int_equal(sparse_attention_omp(q, H, D, kv, NKV, none, ni, sink, scale, ob, k_modes[mi]), 0);
                for (int i = 0; i < H * D; i++) assert_true(ob[i] == 0.0f && !signbit(ob[i]));
            }
    dsv4_omp_set_threads(0);
    idx[10] = NKV;
    assert_int_equal(sparse_attention_omp(q, H, D, kv, NKV, idx, NI, sink, scale, ob, DSV4_OFFICIAL), -1);
    assert_non_null(strstr(dsv4_last_error(), "outside [-1, 300)"));
    free(q); free(kv); free(oa); free(ob);
}

/* ---- indexer scores ---- */

/* [IDX-4] 5 heads, D_I = 64, 333 keys; head weights of both signs (ReLU before the weight). */
static void test_indexer_scores(void **state)
{
    (void)state;
    enum { H = 5, D = 64, NK = 333 };
    test_rng r = { 4242 };
    float *q = malloc(sizeof(float) * H * D), *k = malloc(sizeof(float) * NK * D);
    float w[H], sa[NK], sb[NK];
    assert_non_null(q); assert_non_null(k);
    test_fill(&r, q, H * D, 1.0f);
    test_fill(&r, k, NK * D, 1.0f);
    test_fill(&r, w, H, 1.0f);
    v4_indexer I;
    memset(&I, 0, sizeof I);
    I.n_heads = H;
    I.head_dim = D;
    for (int mi = 0; mi < 2; mi++)
        for (int ti = 0; ti < 3; ti++) {
            dsv4_omp_set_threads(k_threads[ti]);
            I.num = k_modes[mi];
            dsv4_count_enable(1);
            dsv4_count_reset();
            indexer_scores(&I, q, w, k, NK, sa);
            int64_t cref = dsv4_count_total();
            dsv4_count_reset();
            indexer_scores_omp(&I, q, w, k, NK, sb);
            assert_int_equal(dsv4_count_total(), cref);   /* [COST-8] counted as ref, once */
            dsv4_count_enable(0);
            expect_same_bits("indexer_scores", sb, sa, NK, k_threads[ti], k_modes[mi],
                             "the head sum reordered or a dot product split");
        }
    dsv4_omp_set_threads(0);
    free(q); free(k);
}

/* ---- the tables ---- */

/* [BK-1] [BK-2] ref / omp tables by name, cuda absent with "built without CUDA", unknown
 * names rejected, selection switches dsv4_backend(). */
static void test_tables(void **state)
{
    (void)state;
    const dsv4_kernels *kr = dsv4_kernels_by_name("ref"), *ko = dsv4_kernels_by_name("omp");
    assert_non_null(kr);
    assert_non_null(ko);
    assert_string_equal(kr->name, "ref");
    assert_string_equal(ko->name, "omp");
    assert_ptr_equal(kr->linear, linear);
    assert_ptr_equal(ko->linear, linear_omp);
    assert_ptr_equal(ko->sparse_attention, sparse_attention_omp);
    if (!dsv4_kernels_cuda()) assert_non_null(strstr(dsv4_last_error(), "built without CUDA"));
    assert_null(dsv4_kernels_by_name("tpu"));
    assert_non_null(strstr(dsv4_last_error(), "'tpu'"));
    assert_int_equal(dsv4_backend_select("omp"), 0);
    assert_ptr_equal(dsv4_backend(), ko);
    assert_int_equal(dsv4_backend_select("nope"), -1);
    assert_ptr_equal(dsv4_backend(), ko);
    assert_int_equal(dsv4_backend_select("ref"), 0);
    assert_ptr_equal(dsv4_backend(), kr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_all_dtypes),
        cmocka_unit_test(test_linear_errors),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_hadamard),
        cmocka_unit_test(test_sparse_attention),
        cmocka_unit_test(test_indexer_scores),
        cmocka_unit_test(test_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
