/* test_hadamard.c — the Walsh-Hadamard rotation of the indexers (spec/hadamard.md). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "testutil.h"
#include "numerics.h"
#include "hadamard.h"

/* H[i][j] = (-1)^popcount(i & j), written from the definition. */
static int h_entry(int i, int j)
{
    int v = i & j, p = 0;
    while (v) { p ^= v & 1; v >>= 1; }
    return p ? -1 : 1;
}

/* The transform of unit vector e_j is column j of H / sqrt(n): every entry, n = 128 and a
 * few other sizes, exact mode. Trap: the sequency-ordered Walsh matrix (same rows in
 * another order), an unnormalised transform, 1/n scaling. */
static void test_matrix_entries(void **state)
{
    (void)state;
    const int sizes[4] = { 1, 2, 16, 128 };
    static float x[128 * 128];
    for (int si = 0; si < 4; si++) {
        int n = sizes[si];
        memset(x, 0, sizeof x);
        for (int j = 0; j < n; j++) x[j * n + j] = 1.0f;     /* row j = e_j */
        hadamard(x, n, n, DSV4_EXACT);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < n; i++) {
                float want = (float)(h_entry(i, j) / sqrt((double)n));
                if (x[j * n + i] != want)
                    fail_msg("hadamard n=%d: (H e_%d)[%d] = %g, expected %g (likely bug: not "
                             "Sylvester order or wrong scale)", n, j, i, x[j * n + i], want);
            }
    }
}

/* Orthogonality: applying the normalised transform twice gives the identity (H H = n I),
 * exact mode to 1e-6 on random rows. */
static void test_involution(void **state)
{
    (void)state;
    enum { R = 6, N = 128 };
    float x[R * N], y[R * N];
    test_rng rng = { 8 };
    test_fill(&rng, x, R * N, 3.0f);
    memcpy(y, x, sizeof x);
    hadamard(y, R, N, DSV4_EXACT);
    expect_distinguishable("hadamard changes the vector", x, y, R * N, 0.5);
    hadamard(y, R, N, DSV4_EXACT);
    expect_close("hadamard twice = identity", y, x, R * N, 1e-6, "H H != n I: wrong butterflies");
}

/* Against a plain matrix product in double: exact mode to 1e-6; official mode is exactly
 * bf16(f32(sum) * f32(n^-1/2)) with the constant 0x3db504f3 for n = 128, checked bit for
 * bit on bf16 inputs. Trap: 4 / 11 (the indexer's rotation), a bf16 rounding per
 * butterfly stage (7 roundings instead of 1). */
static void test_vs_matrix_product(void **state)
{
    (void)state;
    enum { R = 4, N = 128 };
    float x[R * N], ye[R * N], yo[R * N], want_e[R * N];
    test_rng rng = { 4 };
    test_fill(&rng, x, R * N, 2.0f);
    round_bf16_n(x, R * N, DSV4_OFFICIAL);
    memcpy(ye, x, sizeof x);
    memcpy(yo, x, sizeof x);
    hadamard(ye, R, N, DSV4_EXACT);
    hadamard(yo, R, N, DSV4_OFFICIAL);
    float c = (float)(1.0 / sqrt(128.0));
    uint32_t cb;
    memcpy(&cb, &c, 4);
    assert_int_equal(cb, 0x3db504f3u);
    for (int r = 0; r < R; r++)
        for (int i = 0; i < N; i++) {
            double s = 0;
            for (int j = 0; j < N; j++) s += h_entry(i, j) * (double)x[r * N + j];
            want_e[r * N + i] = (float)(s / sqrt(128.0));
            float want_o = round_bf16((float)s * c);
            if (yo[r * N + i] != want_o)
                fail_msg("hadamard official [%d][%d] = %.9g, expected bf16(f32(sum) * "
                         "f32(128^-1/2)) = %.9g", r, i, yo[r * N + i], want_o);
        }
    expect_close("hadamard exact vs matrix product", ye, want_e, R * N, 1e-6,
                 "not the Sylvester matrix / wrong normalisation");
}

/* Not a power of two: x untouched and an error recorded. */
static void test_bad_size(void **state)
{
    (void)state;
    float x[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }, y[12];
    memcpy(y, x, sizeof x);
    dsv4_clear_error();
    hadamard(y, 1, 12, DSV4_OFFICIAL);
    assert_memory_equal(x, y, sizeof x);
    assert_non_null(strstr(dsv4_last_error(), "power of two"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix_entries),
        cmocka_unit_test(test_involution),
        cmocka_unit_test(test_vs_matrix_product),
        cmocka_unit_test(test_bad_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
