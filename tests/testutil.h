/* testutil.h — what every cmocka runner shares: includes, a report-printing comparison that
 * names the pitfall a test traps, and where to find ../shared and the golden files.
 *
 * Usage in a test:
 *   expect_close("mla naive vs absorbed", got, want, n, 1e-6,
 *                "pitfall 2: RoPE applied to the absorbed latent instead of the shared k_pe");
 * fails with the worst index, both values, the relative L2 error and the likely bug. */
#ifndef DSV4_TESTUTIL_H
#define DSV4_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka 1.1 (Debian 12) calls it print_error; newer releases add cm_print_error. */
#ifndef cm_print_error
#define cm_print_error print_error
#endif

/* Relative L2 error ||got - want|| / ||want|| (absolute when want == 0). */
static inline double rel_l2(const float *got, const float *want, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)want[i];
        num += d * d;
        den += (double)want[i] * (double)want[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* Passes when rel_l2 <= tol and non-finite values sit at the same places. */
static inline void expect_close_impl(const char *what, const float *got, const float *want,
                                     int64_t n, double tol, const char *likely_bug,
                                     const char *file, int line)
{
    int64_t worst = -1; double worst_d = -1.0;
    for (int64_t i = 0; i < n; i++) {
        int fg = isfinite(got[i]), fw = isfinite(want[i]);
        if (fg != fw || (!fw && memcmp(&got[i], &want[i], sizeof(float)) != 0 && !(isnan(got[i]) && isnan(want[i])))) {
            cm_print_error("%s: element %lld is %g, expected %g (non-finite mismatch)\n"
                           "  likely bug: %s\n", what, (long long)i, got[i], want[i], likely_bug);
            _fail(file, line);
        }
        if (!fw) continue;
        double d = fabs((double)got[i] - (double)want[i]);
        if (d > worst_d) { worst_d = d; worst = i; }
    }
    double r = rel_l2(got, want, n);
    if (!(r <= tol)) {
        cm_print_error("%s: rel-L2 error %.3e > %.1e over %lld values; worst at %lld: got %.9g want %.9g\n"
                       "  likely bug: %s\n", what, r, tol, (long long)n, (long long)worst,
                       worst >= 0 ? got[worst] : 0.0, worst >= 0 ? want[worst] : 0.0, likely_bug);
        _fail(file, line);
    }
}
#define expect_close(what, got, want, n, tol, bug) \
    expect_close_impl((what), (got), (want), (n), (tol), (bug), __FILE__, __LINE__)

/* Fails when the two arrays are NOT different enough: a test is only as strong as its
 * ability to tell the right formula from the wrong one. */
static inline void expect_distinguishable_impl(const char *what, const float *a, const float *b,
                                               int64_t n, double min_rel, const char *file, int line)
{
    double r = rel_l2(a, b, n);
    if (!(r >= min_rel)) {
        cm_print_error("%s: the right and the wrong formula differ by only %.3e (< %.1e): "
                       "this test is too weak to trap the pitfall\n", what, r, min_rel);
        _fail(file, line);
    }
}
#define expect_distinguishable(what, a, b, n, min_rel) \
    expect_distinguishable_impl((what), (a), (b), (n), (min_rel), __FILE__, __LINE__)

/* ../shared (next to the project root), overridable with DSV4REF_SHARED. */
static inline const char *shared_dir(void)
{
    const char *s = getenv("DSV4REF_SHARED");
    return s && *s ? s : "../shared";
}

/* The official golden files: <shared_dir()>/official-golden when that folder is there, else
 * the repository's verbatim copies in golden/official/ (a clone without ../shared beside it;
 * the test runners run from the repository root). */
static inline const char *official_golden_dir(void)
{
    static char dir[256];
    snprintf(dir, sizeof dir, "%s/official-golden/README.md", shared_dir());
    FILE *f = fopen(dir, "rb");
    if (!f) return "golden/official";
    fclose(f);
    snprintf(dir, sizeof dir, "%s/official-golden", shared_dir());
    return dir;
}

/* A fresh directory $TMPDIR/dsv4ref-<tag>-XXXXXX (TMPDIR unset: /tmp) written into buf;
 * 0 on success, -1 otherwise (mkdtemp needs _POSIX_C_SOURCE >= 200809L, set by the Makefile). */
static inline int make_temp_dir(char *buf, size_t n, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, n, "%s/dsv4ref-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    return mkdtemp(buf) ? 0 : -1;
}

/* Deterministic test RNG (xorshift64*), uniform in [-1, 1). */
typedef struct { uint64_t s; } test_rng;
static inline uint64_t test_rng_next(test_rng *r)
{
    r->s ^= r->s >> 12; r->s ^= r->s << 25; r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}
static inline float test_rng_uniform(test_rng *r)
{
    return (float)((double)(test_rng_next(r) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}
static inline void test_fill(test_rng *r, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) x[i] = scale * test_rng_uniform(r);
}

#endif
