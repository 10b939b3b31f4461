/* test_topk.c — top-k with the tie rule score descending, index ascending (spec/topk.md). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#ifndef cm_print_error
#endif
#include "testutil.h"
#include "topk.h"

/* Reference: a stable insertion sort of all indices by score descending (stable = equal
 * scores keep ascending index), then the first k. O(n^2), written independently. */
static void topk_ref(const float *s, int64_t n, int64_t k, int64_t *out)
{
    int64_t *all = malloc((size_t)n * sizeof *all);
    assert_non_null(all);
    for (int64_t i = 0; i < n; i++) {
        int64_t j = i;
        while (j > 0 && s[all[j - 1]] < s[i]) { all[j] = all[j - 1]; j--; }
        all[j] = i;
    }
    memcpy(out, all, (size_t)k * sizeof *out);
    free(all);
}

/* Hand case with ties and -inf: scores [1, 3, 3, -inf, 0, 3, 0, -inf], k = 6 gives
 * [1, 2, 5, 0, 4, 6]; k = 8 puts the -inf entries last in index order.
 * Trap: 12 (torch.topk's tie order is unspecified; ours is index ascending). */
static void test_hand(void **state)
{
    (void)state;
    const float s[8] = { 1, 3, 3, -INFINITY, 0, 3, 0, -INFINITY };
    int64_t idx[8];
    const int64_t want6[6] = { 1, 2, 5, 0, 4, 6 }, want8[8] = { 1, 2, 5, 0, 4, 6, 3, 7 };
    topk_desc(s, 8, 6, idx);
    assert_memory_equal(idx, want6, sizeof want6);
    topk_desc(s, 8, 8, idx);
    assert_memory_equal(idx, want8, sizeof want8);
    topk_desc(s, 8, 1, idx);
    assert_int_equal(idx[0], 1);
    idx[0] = 42;
    topk_desc(s, 8, 0, idx);
    assert_int_equal(idx[0], 42);
}

/* Random scores drawn from a handful of values (heavy ties, like exact zeros after ReLU
 * and bf16 index scores), many sizes and k, against the stable-sort reference: the same
 * list in the same order. Trap: an unstable sort (qsort without the index tie-break)
 * giving a platform-dependent selection at the k-th boundary. */
static void test_random_ties(void **state)
{
    (void)state;
    test_rng rng = { 2024 };
    float s[300];
    int64_t got[300], want[300];
    for (int trial = 0; trial < 300; trial++) {
        int64_t n = 1 + (int64_t)(test_rng_next(&rng) % 300);
        int64_t k = 1 + (int64_t)(test_rng_next(&rng) % (uint64_t)n);
        for (int64_t i = 0; i < n; i++) {
            uint64_t v = test_rng_next(&rng) % 7;
            s[i] = v == 0 ? -INFINITY : (float)(v % 4) - 1.0f;
        }
        topk_desc(s, n, k, got);
        topk_ref(s, n, k, want);
        if (memcmp(got, want, (size_t)k * sizeof *got) != 0)
            fail_msg("topk trial %d (n %lld, k %lld) differs from the stable reference "
                     "(likely bug: ties not broken by index ascending)", trial, (long long)n,
                     (long long)k);
    }
}

/* Large n with distinct scores: k far below n, the k largest in descending order. */
static void test_large(void **state)
{
    (void)state;
    enum { NN = 5000, KK = 64 };
    static float s[NN];
    int64_t got[KK], want[KK];
    test_rng rng = { 7 };
    for (int i = 0; i < NN; i++) s[i] = test_rng_uniform(&rng);
    topk_desc(s, NN, KK, got);
    topk_ref(s, NN, KK, want);
    assert_memory_equal(got, want, sizeof got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand),
        cmocka_unit_test(test_random_ties),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
