/* test_mhc.c — manifold-constrained hyper-connections (spec/mhc.md, ref/mhc.c).
 * Each test is computed by hand in double and shaped so that the wrong formula it names is
 * distinguishable (expect_distinguishable), in exact numerics (fp32 storage only). */
#include "testutil.h"
#include "dsv4ref.h"
#include "mhc.h"

#define HC 4
#define DIM 24

/* the hand-written Sinkhorn of [MHC-3], in double; transpose_first = 1 is the wrong order
 * (row normalization first), extra_round = 1 the wrong count (T full row+col rounds) */
static void sinkhorn_ref(const double *c_in, int iters, double eps, int wrong_order, int extra_round, double *c)
{
    for (int i = 0; i < HC * HC; i++) c[i] = c_in[i];
    for (int j = 0; j < HC; j++) {
        double mx = c[j * HC], s = 0.0;
        for (int k = 1; k < HC; k++) if (c[j * HC + k] > mx) mx = c[j * HC + k];
        for (int k = 0; k < HC; k++) { c[j * HC + k] = exp(c[j * HC + k] - mx); s += c[j * HC + k]; }
        for (int k = 0; k < HC; k++) c[j * HC + k] = c[j * HC + k] / s + eps;
    }
    int rounds = iters + (extra_round ? 1 : 0);
    for (int it = 0; it < rounds; it++) {
        int do_row = wrong_order ? 1 : it > 0;
        if (do_row) {
            for (int j = 0; j < HC; j++) {
                double s = 0.0;
                for (int k = 0; k < HC; k++) s += c[j * HC + k];
                for (int k = 0; k < HC; k++) c[j * HC + k] /= s + eps;
            }
        }
        for (int k = 0; k < HC; k++) {
            double s = 0.0;
            for (int j = 0; j < HC; j++) s += c[j * HC + k];
            for (int j = 0; j < HC; j++) c[j * HC + k] /= s + eps;
        }
    }
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* [MHC-3] pre / post / comb against the hand computation; eps large (0.05) and few
 * iterations (3) so the eps placement and the iteration count are visible. */
static void test_sinkhorn_order_and_eps(void **state)
{
    (void)state;
    test_rng r = { 0x5151 };
    float mixes[(2 + HC) * HC], base[(2 + HC) * HC], scale[3] = { 0.7f, 1.3f, 2.1f };
    test_fill(&r, mixes, (2 + HC) * HC, 1.0f);
    test_fill(&r, base, (2 + HC) * HC, 1.0f);
    const double eps = 0.05;
    const int iters = 3;
    float pre[HC], post[HC], comb[HC * HC];
    mhc_split_sinkhorn(mixes, scale, base, HC, iters, eps, pre, post, comb, DSV4_EXACT);

    float want_pre[HC], want_post[HC], want_comb[HC * HC], wrong1[HC * HC], wrong2[HC * HC];
    double c0[HC * HC], c[HC * HC];
    for (int j = 0; j < HC; j++) {
        want_pre[j] = (float)(sigm((double)mixes[j] * scale[0] + base[j]) + eps);
        want_post[j] = (float)(2.0 * sigm((double)mixes[HC + j] * scale[1] + base[HC + j]));
    }
    for (int i = 0; i < HC * HC; i++) c0[i] = (double)mixes[2 * HC + i] * scale[2] + base[2 * HC + i];
    sinkhorn_ref(c0, iters, eps, 0, 0, c);
    for (int i = 0; i < HC * HC; i++) want_comb[i] = (float)c[i];
    sinkhorn_ref(c0, iters, eps, 1, 0, c);
    for (int i = 0; i < HC * HC; i++) wrong1[i] = (float)c[i];
    sinkhorn_ref(c0, iters, eps, 0, 1, c);
    for (int i = 0; i < HC * HC; i++) wrong2[i] = (float)c[i];

    expect_close("pre", pre, want_pre, HC, 1e-6, "pitfall 15: pre = sigmoid(m a0 + b) + eps (eps added after the sigmoid)");
    expect_close("post", post, want_post, HC, 1e-6, "pitfall 15: post = 2 sigmoid(.) with no eps");
    expect_distinguishable("sinkhorn: row-first vs column-first", want_comb, wrong1, HC * HC, 1e-4);
    expect_distinguishable("sinkhorn: T vs T+1 rounds", want_comb, wrong2, HC * HC, 1e-4);
    expect_close("comb", comb, want_comb, HC * HC, 1e-6,
                 "pitfall 15: softmax + eps, then COLUMN normalization, then T-1 rounds of row then column, each with +eps in the denominator");
}

/* [MHC-4] HCPost with an asymmetric comb: y_k = post_k o + sum_j comb[j][k] res_j */
static void test_post_contracts_row_index(void **state)
{
    (void)state;
    test_rng r = { 0xC0B };
    float o[DIM], res[HC * DIM], post[HC], comb[HC * HC], y[HC * DIM], want[HC * DIM], wrong[HC * DIM];
    test_fill(&r, o, DIM, 1.0f);
    test_fill(&r, res, HC * DIM, 1.0f);
    test_fill(&r, post, HC, 1.0f);
    for (int j = 0; j < HC; j++)
        for (int k = 0; k < HC; k++) comb[j * HC + k] = (float)(0.1 + 0.5 * j + 0.13 * k * k);  /* asymmetric */
    mhc_post(o, res, post, comb, 1, HC, DIM, y, DSV4_EXACT);
    for (int k = 0; k < HC; k++)
        for (int d = 0; d < DIM; d++) {
            double s = (double)post[k] * o[d], t = (double)post[k] * o[d];
            for (int j = 0; j < HC; j++) {
                s += (double)comb[j * HC + k] * res[j * DIM + d];
                t += (double)comb[k * HC + j] * res[j * DIM + d];
            }
            want[k * DIM + d] = (float)s;
            wrong[k * DIM + d] = (float)t;
        }
    expect_distinguishable("HCPost: comb vs comb^T", want, wrong, HC * DIM, 1e-2);
    expect_close("HCPost", y, want, HC * DIM, 1e-6,
                 "pitfall 15: transposed contraction (sum over the column index of comb)");
}

/* [MHC-1], [MHC-2] HCPre: one RMS over all hc streams with norm_eps, mixes on the
 * unnormalized x scaled after the GEMM, a = sum_j pre_j x_j. norm_eps and hc_eps differ. */
static void test_pre_and_head(void **state)
{
    (void)state;
    test_rng r = { 0xBEEF };
    enum { NMIX = (2 + HC) * HC };
    float fn[NMIX * HC * DIM], base[NMIX], scale[3] = { 0.9f, 1.1f, 1.7f };
    float x[HC * DIM], a[DIM], post[HC], comb[HC * HC], want[DIM], wrong[DIM];
    test_fill(&r, fn, NMIX * HC * DIM, 0.3f);
    test_fill(&r, base, NMIX, 1.0f);
    test_fill(&r, x, HC * DIM, 2.0f);
    for (int d = 0; d < DIM; d++) x[d] *= 0.01f;   /* streams of very different size */
    mhc_params p;
    memset(&p, 0, sizeof p);
    p.hc = HC; p.dim = DIM;
    p.fn.dtype = DSV4_F32; p.fn.rows = NMIX; p.fn.cols = HC * DIM; p.fn.data = fn; p.fn.name = "fn";
    p.scale = scale; p.base = base; p.sinkhorn_iters = 20; p.hc_eps = 0.05; p.norm_eps = 0.5;
    assert_int_equal(mhc_pre(&p, x, 1, a, post, comb, DSV4_EXACT), 0);
    double ss = 0.0;
    for (int i = 0; i < HC * DIM; i++) ss += (double)x[i] * x[i];
    double rr = 1.0 / sqrt(ss / (HC * DIM) + 0.5), rw = 1.0 / sqrt(ss / (HC * DIM) + 0.05);
    double pre[HC], prew[HC];
    for (int j = 0; j < HC; j++) {
        double m = 0.0;
        for (int i = 0; i < HC * DIM; i++) m += (double)x[i] * fn[j * HC * DIM + i];
        pre[j] = sigm(m * rr * scale[0] + base[j]) + 0.05;
        prew[j] = sigm(m * rw * scale[0] + base[j]) + 0.05;
    }
    for (int d = 0; d < DIM; d++) {
        double s = 0.0, t = 0.0;
        for (int j = 0; j < HC; j++) { s += pre[j] * x[j * DIM + d]; t += prew[j] * x[j * DIM + d]; }
        want[d] = (float)s;
        wrong[d] = (float)t;
    }
    expect_distinguishable("HCPre: norm_eps vs hc_eps in the RMS", want, wrong, DIM, 1e-3);
    expect_close("HCPre a", a, want, DIM, 1e-6, "pitfall 15: RMS over all streams with norm_eps; pre = sigmoid + eps");

    /* HCHead: weights sigmoid(.) + eps, NOT normalized */
    float hfn[HC * HC * DIM], hbase[HC], hscale[1] = { 0.8f }, h[DIM], hw[DIM], hn[DIM];
    test_fill(&r, hfn, HC * HC * DIM, 0.3f);
    test_fill(&r, hbase, HC, 1.0f);
    dsv4_weight wf;
    memset(&wf, 0, sizeof wf);
    wf.dtype = DSV4_F32; wf.rows = HC; wf.cols = HC * DIM; wf.data = hfn; wf.name = "hc_head_fn";
    assert_int_equal(mhc_head(&wf, hscale, hbase, x, 1, HC, DIM, 0.5, 0.05, h, DSV4_EXACT), 0);
    double w[HC], wsum = 0.0;
    for (int j = 0; j < HC; j++) {
        double m = 0.0;
        for (int i = 0; i < HC * DIM; i++) m += (double)x[i] * hfn[j * HC * DIM + i];
        w[j] = sigm(m * rr * hscale[0] + hbase[j]) + 0.05;
        wsum += w[j];
    }
    for (int d = 0; d < DIM; d++) {
        double s = 0.0;
        for (int j = 0; j < HC; j++) s += w[j] * x[j * DIM + d];
        hw[d] = (float)s;
        hn[d] = (float)(s / wsum);
    }
    expect_distinguishable("HCHead: normalized vs raw weights", hw, hn, DIM, 1e-2);
    expect_close("HCHead", h, hw, DIM, 1e-6, "pitfall 15: HCHead weights sigmoid(.)+eps must not be normalized");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sinkhorn_order_and_eps),
        cmocka_unit_test(test_post_contracts_row_index),
        cmocka_unit_test(test_pre_and_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
