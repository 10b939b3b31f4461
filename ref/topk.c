/* topk.c — top-k selection with the project's tie rule (spec/topk.md). */
#include <math.h>
#include <stdlib.h>
#include "dsv4ref.h"
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

/* ---- the order torch.topk produces on the CPU [TOPK-2] ----
 *
 * PyTorch's CPU topk (largest=True, sorted=True) fills a vector of (value, index) pairs in
 * index order and runs, with the comparator "x before y iff x is NaN and y is not, or
 * x.value > y.value":
 *   k * 64 <= n : std::partial_sort(first, first + k, last)          (heap select + sort)
 *   otherwise   : std::nth_element(first, first + k - 1, last) then std::sort(first, first + k - 1)
 * Equal values are ordered by what these libstdc++ algorithms do with them, which is
 * deterministic. The functions below restate those algorithms (GCC's libstdc++ bits/stl_algo.h
 * and bits/stl_heap.h) step for step on an array of candidate indices; `before` is the
 * comparator. Only this order reproduces which tied candidate DeepSeek's CPU golden files
 * kept at the k-th boundary. */

typedef struct { const float *score; } torch_cmp;

static int before(const torch_cmp *c, int64_t x, int64_t y)
{
    float a = c->score[x], b = c->score[y];
    return (isnan(a) && !isnan(b)) || a > b;
}

static void swap_i64(int64_t *a, int64_t *b) { int64_t t = *a; *a = *b; *b = t; }

static void push_heap(const torch_cmp *c, int64_t *f, int64_t hole, int64_t top, int64_t v)
{
    int64_t parent = (hole - 1) / 2;
    while (hole > top && before(c, f[parent], v)) {
        f[hole] = f[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    f[hole] = v;
}

static void adjust_heap(const torch_cmp *c, int64_t *f, int64_t hole, int64_t len, int64_t v)
{
    int64_t top = hole, child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (before(c, f[child], f[child - 1])) child--;
        f[hole] = f[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        f[hole] = f[child - 1];
        hole = child - 1;
    }
    push_heap(c, f, hole, top, v);
}

static void make_heap(const torch_cmp *c, int64_t *f, int64_t len)
{
    if (len < 2) return;
    for (int64_t parent = (len - 2) / 2;; parent--) {
        adjust_heap(c, f, parent, len, f[parent]);
        if (parent == 0) return;
    }
}

/* moves *first to *result's place and re-heaps [first, first + len) with *result's value */
static void pop_heap(const torch_cmp *c, int64_t *f, int64_t len, int64_t *result)
{
    int64_t v = *result;
    *result = f[0];
    adjust_heap(c, f, 0, len, v);
}

static void sort_heap(const torch_cmp *c, int64_t *f, int64_t len)
{
    while (len > 1) {
        len--;
        pop_heap(c, f, len, &f[len]);
    }
}

static void heap_select(const torch_cmp *c, int64_t *f, int64_t mid, int64_t len)
{
    make_heap(c, f, mid);
    for (int64_t i = mid; i < len; i++)
        if (before(c, f[i], f[0])) pop_heap(c, f, mid, &f[i]);
}

static void insertion_sort(const torch_cmp *c, int64_t *f, int64_t len)
{
    for (int64_t i = 1; i < len; i++) {
        int64_t v = f[i];
        if (before(c, v, f[0])) {
            for (int64_t j = i; j > 0; j--) f[j] = f[j - 1];
            f[0] = v;
        } else {
            int64_t j = i;
            while (before(c, v, f[j - 1])) { f[j] = f[j - 1]; j--; }
            f[j] = v;
        }
    }
}

static void unguarded_insertion_sort(const torch_cmp *c, int64_t *f, int64_t from, int64_t len)
{
    for (int64_t i = from; i < len; i++) {
        int64_t v = f[i], j = i;
        while (before(c, v, f[j - 1])) { f[j] = f[j - 1]; j--; }
        f[j] = v;
    }
}

static void move_median_to_first(const torch_cmp *c, int64_t *f, int64_t r, int64_t a,
                                 int64_t b, int64_t d)
{
    if (before(c, f[a], f[b])) {
        if (before(c, f[b], f[d])) swap_i64(&f[r], &f[b]);
        else if (before(c, f[a], f[d])) swap_i64(&f[r], &f[d]);
        else swap_i64(&f[r], &f[a]);
    } else if (before(c, f[a], f[d])) swap_i64(&f[r], &f[a]);
    else if (before(c, f[b], f[d])) swap_i64(&f[r], &f[d]);
    else swap_i64(&f[r], &f[b]);
}

static int64_t unguarded_partition(const torch_cmp *c, int64_t *f, int64_t first, int64_t last,
                                   int64_t pivot)
{
    for (;;) {
        while (before(c, f[first], f[pivot])) first++;
        last--;
        while (before(c, f[pivot], f[last])) last--;
        if (!(first < last)) return first;
        swap_i64(&f[first], &f[last]);
        first++;
    }
}

static int64_t partition_pivot(const torch_cmp *c, int64_t *f, int64_t first, int64_t last)
{
    int64_t mid = first + (last - first) / 2;
    move_median_to_first(c, f, first, first + 1, mid, last - 1);
    return unguarded_partition(c, f, first + 1, last, first);
}

static int64_t lg(int64_t n) { int64_t k = 0; while (n > 1) { n >>= 1; k++; } return k; }

/* std::nth_element: introselect, then insertion sort of the last small range */
static void nth_element(const torch_cmp *c, int64_t *f, int64_t nth, int64_t len)
{
    int64_t first = 0, last = len, depth = 2 * lg(len);
    while (last - first > 3) {
        if (depth == 0) {   /* heap select of [first, nth + 1) then swap nth into place */
            heap_select(c, f + first, nth + 1 - first, last - first);
            swap_i64(&f[first], &f[nth]);
            return;
        }
        depth--;
        int64_t cut = partition_pivot(c, f, first, last);
        if (cut <= nth) first = cut;
        else last = cut;
    }
    insertion_sort(c, f + first, last - first);
}

/* std::sort: introsort loop to ranges of <= 16, then the final insertion sort */
static void introsort_loop(const torch_cmp *c, int64_t *f, int64_t first, int64_t last,
                           int64_t depth)
{
    while (last - first > 16) {
        if (depth == 0) {   /* std::partial_sort(first, last, last) */
            heap_select(c, f + first, last - first, last - first);
            sort_heap(c, f + first, last - first);
            return;
        }
        depth--;
        int64_t cut = partition_pivot(c, f, first, last);
        introsort_loop(c, f, cut, last, depth);
        last = cut;
    }
}

static void std_sort(const torch_cmp *c, int64_t *f, int64_t len)
{
    if (len < 2) return;
    introsort_loop(c, f, 0, len, 2 * lg(len));
    if (len > 16) {
        insertion_sort(c, f, 16);
        unguarded_insertion_sort(c, f, 16, len);
    } else {
        insertion_sort(c, f, len);
    }
}

/* [TOPK-2] score: [n] -> idx: [k], exactly the indices (and their order) that torch.topk
 * (largest, sorted) returns on the CPU. work: [n] scratch. */
void topk_torch_cpu(const float *score, int64_t n, int64_t k, int64_t *idx, int64_t *work)
{
    torch_cmp c = { score };
    if (k > n) k = n;
    if (k <= 0) return;
    for (int64_t j = 0; j < n; j++) work[j] = j;
    if (k * 64 <= n) {
        heap_select(&c, work, k, n);
        sort_heap(&c, work, k);
    } else {
        nth_element(&c, work, k - 1, n);
        std_sort(&c, work, k - 1);
    }
    for (int64_t j = 0; j < k; j++) idx[j] = work[j];
}

/* ---- the rule in force ---- */

static topk_rule g_rule = TOPK_RULE_SPEC;

void topk_set_rule(topk_rule r) { g_rule = r; }
topk_rule topk_get_rule(void) { return g_rule; }
const char *topk_rule_name(topk_rule r) { return r == TOPK_RULE_TORCH_CPU ? "torch-cpu" : "spec"; }

/* [TOPK-1]/[TOPK-2] the selection every caller uses: the spec rule, or torch's CPU order
 * when the run reproduces a golden file made by the official code on the CPU. */
int topk_select(const float *score, int64_t n, int64_t k, int64_t *idx)
{
    if (g_rule == TOPK_RULE_SPEC) { topk_desc(score, n, k, idx); return 0; }
    int64_t *work = dsv4_calloc((size_t)(n > 0 ? n : 1), sizeof(int64_t), "topk scratch");
    if (!work) return -1;
    topk_torch_cpu(score, n, k, idx, work);
    free(work);
    return 0;
}
