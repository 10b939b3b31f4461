/* topk.c — top-k selection with the project's tie rule (spec/topk.md). */
#include <math.h>
#include "topk.h"

/* ---- order ---- */

/* 1 when candidate a ranks before b: score descending, then index ascending. -inf ranks
 * after every finite score (it is the smallest float); NaN (never passed) ranks last so
 * that the order stays total. */
static int ranks_before(const float *score, int64_t a, int64_t b)
{
    float sa = score[a], sb = score[b];
    int na = isnan(sa), nb = isnan(sb);
    if (na != nb) return nb;
    if (!na && sa != sb) return sa > sb;
    return a < b;
}

/* Sift down in a heap whose root is the candidate that ranks LAST (the one to evict). */
static void sift_down(const float *score, int64_t *h, int64_t len, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, worst = i;
        if (l < len && ranks_before(score, h[worst], h[l])) worst = l;
        if (r < len && ranks_before(score, h[worst], h[r])) worst = r;
        if (worst == i) return;
        int64_t tmp = h[i]; h[i] = h[worst]; h[worst] = tmp;
        i = worst;
    }
}

/* ---- top-k ---- */

/* [TOPK-1] score: [n] -> idx: [k] (k <= n), the k candidates that rank first under
 * "score descending, then index ascending", in that order. Deterministic whatever the
 * input order; O(n log k) with a heap kept in idx itself (no allocation).
 * Pitfall guarded: 12 (torch.topk leaves the order of equal scores unspecified — exact
 * zeros after ReLU tie often — so the rule is ours and index outputs are compared as
 * sets). */
void topk_desc(const float *score, int64_t n, int64_t k, int64_t *idx)
{
    if (k > n) k = n;
    if (k <= 0) return;
    for (int64_t i = 0; i < k; i++) idx[i] = i;
    for (int64_t i = k / 2 - 1; i >= 0; i--) sift_down(score, idx, k, i);
    for (int64_t j = k; j < n; j++) {
        if (ranks_before(score, j, idx[0])) {
            idx[0] = j;
            sift_down(score, idx, k, 0);
        }
    }
    /* heap sort: move the last-ranked to the end, repeatedly -> best first */
    for (int64_t len = k; len > 1; len--) {
        int64_t tmp = idx[0]; idx[0] = idx[len - 1]; idx[len - 1] = tmp;
        sift_down(score, idx, len - 1, 0);
    }
}
