/* test_compressor.c — the V4 KV compressor (spec/compressor.md).
 * Tiny dims, all distinct: input d = 24, entry c = 80 (rope r = 16, nope 64 = one FP8 block),
 * indexer keys c = 32; ratios 4 (overlap), 8 and 3 (plain); batch 2 with different inputs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "testutil.h"
#include "compressor.h"
#include "numerics.h"
#include "rope.h"

enum { DIM = 24, C_MAIN = 80, C_IDX = 32, R = 16, B = 2, TMAX = 40 };

typedef struct {
    v4_compressor C;
    rope_freqs rope;
    float *wkv, *wg;        /* [kc, DIM] */
} fixture;

/* Builds a compressor with seeded weights (weights F32; ape and norm owned by C). */
static void make(fixture *f, int ratio, int c, compressor_kind kind, dsv4_numerics num, uint64_t seed)
{
    test_rng r = { seed };
    assert_int_equal(rope_freqs_init(&f->rope, R, 160000.0, 1, 16.0, 256, 32.0, 1.0, num), 0);
    assert_int_equal(compressor_init(&f->C, ratio, c, R, DIM, kind, 1e-6f, &f->rope, B, num), 0);
    int64_t kc = (int64_t)(1 + f->C.overlap) * c;
    f->wkv = malloc(sizeof(float) * (size_t)(kc * DIM));
    f->wg = malloc(sizeof(float) * (size_t)(kc * DIM));
    f->C.ape = malloc(sizeof(float) * (size_t)(ratio * kc));
    f->C.norm_w = malloc(sizeof(float) * (size_t)c);
    test_fill(&r, f->wkv, kc * DIM, 0.5f);
    test_fill(&r, f->wg, kc * DIM, 0.8f);
    test_fill(&r, f->C.ape, ratio * kc, 1.5f);
    test_fill(&r, f->C.norm_w, c, 1.0f);
    for (int i = 0; i < c; i++) f->C.norm_w[i] += 1.0f;
    dsv4_weight w = { DSV4_F32, 0, kc, DIM, NULL, DSV4_F32, NULL, "test.wkv" };
    w.data = f->wkv; f->C.wkv = w;
    w.data = f->wg; w.name = "test.wgate"; f->C.wgate = w;
}

static void unmake(fixture *f)
{
    compressor_free(&f->C);
    rope_freqs_free(&f->rope);
    free(f->wkv); free(f->wg);
}

static void inputs(float *x, int64_t T, uint64_t seed)
{
    test_rng r = { seed };
    test_fill(&r, x, B * T * DIM, 1.0f);
    round_bf16_n(x, B * T * DIM, DSV4_OFFICIAL);   /* the attention input is bf16 */
}

/* ---- an independent oracle of [CMP-1..CMP-5] in double ---- */

static void walsh(double *v, int n)
{
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) { double a = v[j], b = v[j + h]; v[j] = a + b; v[j + h] = a - b; }
    for (int i = 0; i < n; i++) v[i] /= sqrt((double)n);
}

/* entry j of batch row b of x: [B, T, DIM]. variant 1 swaps the overlap halves (pitfall 10),
 * variant 2 rotates at the block's last token instead of its first (pitfall 9). */
static void oracle(const fixture *f, const float *x, int64_t T, int b, int64_t j, int variant, float *out)
{
    const v4_compressor *C = &f->C;
    int m = C->ratio, c = C->head_dim, ov = C->overlap;
    int64_t kc = (int64_t)(1 + ov) * c;
    double v[C_MAIN];
    (void)T;
    for (int e = 0; e < c; e++) {
        double sc[16], val[16];
        int n = 0;
        for (int pass = 0; pass < 1 + ov; pass++) {
            int64_t blk = ov && pass == 0 ? j - 1 : j;
            if (blk < 0) continue;
            int half = ov ? (pass == 0 ? 0 : c) : 0;
            if (variant == 1 && ov) half = c - half;
            for (int i = 0; i < m; i++) {
                int64_t t = blk * m + i;
                const float *xt = x + (b * T + t) * DIM;
                double u = 0, g = 0;
                for (int k = 0; k < DIM; k++) {
                    u += (double)f->wkv[(half + e) * DIM + k] * xt[k];
                    g += (double)f->wg[(half + e) * DIM + k] * xt[k];
                }
                sc[n] = g + C->ape[i * kc + half + e];
                val[n] = u;
                n++;
            }
        }
        double mx = -INFINITY, den = 0, acc = 0;
        for (int i = 0; i < n; i++) if (sc[i] > mx) mx = sc[i];
        for (int i = 0; i < n; i++) den += exp(sc[i] - mx);
        for (int i = 0; i < n; i++) acc += exp(sc[i] - mx) / den * val[i];
        v[e] = acc;
    }
    double ms = 0;
    for (int e = 0; e < c; e++) ms += v[e] * v[e];
    ms = 1.0 / sqrt(ms / c + 1e-6);
    for (int e = 0; e < c; e++) v[e] = v[e] * ms * C->norm_w[e];
    int64_t pos = j * m + (variant == 2 ? m - 1 : 0);
    for (int i = 0; i < R / 2; i++) {
        float cs, sn;
        rope_cos_sin(&f->rope, pos, i, &cs, &sn);
        double a = v[c - R + 2 * i], bb = v[c - R + 2 * i + 1];
        v[c - R + 2 * i] = a * cs - bb * sn;
        v[c - R + 2 * i + 1] = a * sn + bb * cs;
    }
    if (C->kind == COMPRESSOR_INDEXER) walsh(v, c);
    for (int e = 0; e < c; e++) out[e] = (float)v[e];
}

static void check_oracle(int ratio, int c, compressor_kind kind, int64_t T)
{
    fixture f;
    make(&f, ratio, c, kind, DSV4_EXACT, 100 + ratio);
    float *x = malloc(sizeof(float) * B * T * DIM), *got = malloc(sizeof(float) * B * T * c);
    float want[C_MAIN], wrong[C_MAIN];
    inputs(x, T, 7);
    int64_t n = compressor_prefill(&f.C, x, B, T, got);
    assert_int_equal(n, T / ratio);
    for (int b = 0; b < B; b++)
        for (int64_t j = 0; j < n; j++) {
            char what[96];
            snprintf(what, sizeof what, "ratio %d kind %d entry %lld row %d", ratio, (int)kind, (long long)j, b);
            oracle(&f, x, T, b, j, 0, want);
            expect_close(what, got + (b * n + j) * c, want, c, 1e-5,
                         "pitfall 10: wrong window assembly (halves, ape on scores, softmax per channel)");
            if (f.C.overlap && j > 0) {
                oracle(&f, x, T, b, j, 1, wrong);
                expect_distinguishable("overlap halves swapped", want, wrong, c, 1e-2);
            }
            if (j > 0) {
                oracle(&f, x, T, b, j, 2, wrong);
                expect_distinguishable("RoPE at the last token", want, wrong, c, 1e-3);
            }
        }
    free(x); free(got);
    unmake(&f);
}

/* [CMP-2..CMP-5] exact mode against the oracle: overlap (ratio 4), plain ratios 8 and 3,
 * and the indexer kind (Hadamard). */
static void test_oracle(void **s)
{
    (void)s;
    check_oracle(4, C_MAIN, COMPRESSOR_MAIN, 18);
    check_oracle(8, C_MAIN, COMPRESSOR_MAIN, 27);
    check_oracle(3, C_MAIN, COMPRESSOR_MAIN, 13);
    check_oracle(4, C_IDX, COMPRESSOR_INDEXER, 17);
}

/* [CMP-7] [CMP-8] prompts of m-1, m, m+1 (and more) tokens, then decode across several
 * emission boundaries, give exactly the entries of one prefill of the whole sequence, in both
 * modes (pitfall 10: the state prefill leaves, including the overlap's "previous" block).
 * A different sequence run first on the same object, then reset, must leave no trace. */
static void check_chunking(int ratio, int c, compressor_kind kind, dsv4_numerics num)
{
    const int64_t T = 3 * ratio + 2;
    fixture f;
    make(&f, ratio, c, kind, num, 200 + ratio);
    float *x = malloc(sizeof(float) * B * T * DIM), *xo = malloc(sizeof(float) * B * T * DIM);
    float *ref = malloc(sizeof(float) * B * T * c), *got = malloc(sizeof(float) * B * T * c);
    float *one = malloc(sizeof(float) * B * c), *xt = malloc(sizeof(float) * B * DIM);
    inputs(x, T, 9);
    inputs(xo, T, 10);
    int64_t n_all = compressor_prefill(&f.C, x, B, T, ref);
    int64_t lens[5] = { ratio - 1, ratio, ratio + 1, 2 * ratio + 1, 1 };
    for (int li = 0; li < 5; li++) {
        int64_t n0 = lens[li];
        if (n0 < 1) continue;
        /* a stale sequence first, then reset (the official buffers are never reset) */
        compressor_prefill(&f.C, xo, B, T - 1, got);
        compressor_reset(&f.C);
        float *xp = malloc(sizeof(float) * B * n0 * DIM);
        for (int b = 0; b < B; b++) memcpy(xp + b * n0 * DIM, x + b * T * DIM, sizeof(float) * n0 * DIM);
        int64_t n = compressor_prefill(&f.C, xp, B, n0, got);
        free(xp);
        assert_int_equal(n, n0 / ratio);
        /* entries are stored [B, n, c]; regroup as we go into [B, T/m, c] */
        float *acc = calloc((size_t)(B * n_all * c), sizeof(float));
        for (int b = 0; b < B; b++) memcpy(acc + b * n_all * c, got + b * n * c, sizeof(float) * n * c);
        for (int64_t t = n0; t < T; t++) {
            for (int b = 0; b < B; b++) memcpy(xt + b * DIM, x + (b * T + t) * DIM, sizeof(float) * DIM);
            int e = compressor_decode(&f.C, xt, B, t, one);
            assert_int_equal(e, (t + 1) % ratio == 0);
            if (e)
                for (int b = 0; b < B; b++) memcpy(acc + (b * n_all + t / ratio) * c, one + b * c, sizeof(float) * c);
        }
        char what[96];
        snprintf(what, sizeof what, "ratio %d, prefill %lld then decode (mode %d)", ratio, (long long)n0, (int)num);
        expect_close(what, acc, ref, B * n_all * c, 0.0,
                     "pitfall 10: decode state after prefill (trailing block / previous block) or stale state");
        free(acc);
    }
    free(x); free(xo); free(ref); free(got); free(one); free(xt);
    unmake(&f);
}

static void test_prefill_decode_chunking(void **s)
{
    (void)s;
    for (int m = 0; m < 2; m++) {
        check_chunking(4, C_MAIN, COMPRESSOR_MAIN, (dsv4_numerics)m);
        check_chunking(8, C_MAIN, COMPRESSOR_MAIN, (dsv4_numerics)m);
        check_chunking(4, C_IDX, COMPRESSOR_INDEXER, (dsv4_numerics)m);
    }
}

/* [CMP-5] official mode: the FP8 simulation (main) and the FP4 simulation (indexer) are on the
 * grid: every nope value of a main entry is representable in e4m3 times its block's power-of-two
 * scale, the rope dims are bf16; official stays within the FP8/FP4 budget of exact. */
static void test_official_grid(void **s)
{
    (void)s;
    enum { T = 12 };
    fixture fo, fe;
    make(&fo, 4, C_MAIN, COMPRESSOR_MAIN, DSV4_OFFICIAL, 300);
    make(&fe, 4, C_MAIN, COMPRESSOR_MAIN, DSV4_EXACT, 300);
    float x[B * T * DIM], a[B * 3 * C_MAIN], e[B * 3 * C_MAIN];
    inputs(x, T, 11);
    assert_int_equal(compressor_prefill(&fo.C, x, B, T, a), 3);
    assert_int_equal(compressor_prefill(&fe.C, x, B, T, e), 3);
    for (int r = 0; r < B * 3; r++) {
        const float *v = a + r * C_MAIN;
        float amax = 0;
        for (int i = 0; i < C_MAIN - R; i++) if (fabsf(v[i]) > amax) amax = fabsf(v[i]);
        for (int i = 0; i < C_MAIN - R; i++) {
            float q = v[i] / fp8_pow2_scale(amax);   /* amax of the simulated block: same scale */
            if (e4m3_to_float(e4m3_from_float(q)) != q)
                fail_msg("entry %d dim %d = %g is not on the FP8 grid\n  likely bug: FP8 simulation "
                         "skipped or applied to the rope dims", r, i, v[i]);
        }
        for (int i = C_MAIN - R; i < C_MAIN; i++) assert_true(round_bf16(v[i]) == v[i]);
    }
    /* e4m3 has 3 mantissa bits: RMS error about 2^-4 / sqrt(12) ~ 1.8e-2 relative */
    expect_close("official vs exact", a, e, B * 3 * C_MAIN, 0.05,
                 "official-mode rounding points far off the FP8 budget");
    expect_distinguishable("FP8 simulation visible", a, e, B * 3 * C_MAIN, 1e-3);
    unmake(&fo);
    unmake(&fe);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle),
        cmocka_unit_test(test_prefill_decode_chunking),
        cmocka_unit_test(test_official_grid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
