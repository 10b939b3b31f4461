/* test_moe.c — the V4 MoE (spec/moe.md, ref/moe.c): router bias, softplus threshold, SwiGLU
 * clamp, hash routing. Hand computations in double, exact numerics. */
#include "testutil.h"
#include "dsv4ref.h"
#include "moe.h"

#define DIM 6
#define NE 5
#define K 2

static dsv4_weight f32w(const float *data, int64_t rows, int64_t cols, const char *name)
{
    dsv4_weight w;
    memset(&w, 0, sizeof w);
    w.dtype = DSV4_F32; w.rows = rows; w.cols = cols; w.data = data; w.name = name;
    return w;
}

/* a router whose logits for the input e_0 are the first column of W */
static void make_router(moe_layer *L, float *gate, const float *logits)
{
    memset(L, 0, sizeof *L);
    L->dim = DIM; L->n_experts = NE; L->n_act = K; L->vocab = 10;
    L->score_func = SCORE_SQRTSOFTPLUS; L->route_scale = 2.5;
    memset(gate, 0, sizeof(float) * NE * DIM);
    for (int e = 0; e < NE; e++) gate[e * DIM] = logits[e];
    L->gate = f32w(gate, NE, DIM, "gate");
}

/* [MOE-2] a bias that reorders the top-k: selection by s + bias, weights from s alone */
static void test_bias_selects_but_does_not_weight(void **state)
{
    (void)state;
    moe_layer L;
    float gate[NE * DIM], a[DIM] = { 1, 0, 0, 0, 0, 0 };
    const float logits[NE] = { 3.0f, 2.0f, 1.0f, -1.0f, 0.5f };
    float bias[NE] = { 0.0f, 0.0f, 0.0f, 5.0f, 0.0f };   /* lifts expert 3 into the top-2 */
    make_router(&L, gate, logits);
    L.bias = bias;
    float w[K];
    int64_t ids[K];
    assert_int_equal(moe_route(&L, a, NULL, 1, w, ids, DSV4_EXACT), 0);
    int64_t lo = ids[0] < ids[1] ? ids[0] : ids[1], hi = ids[0] < ids[1] ? ids[1] : ids[0];
    if (lo != 0 || hi != 3) fail_msg("top-2 = {%lld, %lld}, expected {0, 3}; likely bug: pitfall 16, bias not used for selection",
                                     (long long)ids[0], (long long)ids[1]);
    double s[NE];
    for (int e = 0; e < NE; e++) s[e] = sqrt(log1p(exp((double)logits[e])));
    float want[K], wrong[K];
    for (int i = 0; i < K; i++) {
        int64_t e = ids[i];
        want[i] = (float)(s[e] / (s[0] + s[3]) * 2.5);
        wrong[i] = (float)((s[e] + bias[e]) / (s[0] + bias[0] + s[3] + bias[3]) * 2.5);
    }
    expect_distinguishable("weights from s vs s + bias", want, wrong, K, 1e-2);
    expect_close("routing weights", w, want, K, 1e-6,
                 "pitfall 16: the bias must not enter the weights; weights normalized then x route_scale");
}

/* [MOE-1] router logits near +-200: softplus must not overflow (torch threshold 20) */
static void test_softplus_large_logits(void **state)
{
    (void)state;
    assert_true(moe_softplus(200.0) == 200.0);
    assert_true(moe_softplus(20.5) == 20.5);
    double lo = moe_softplus(-200.0);
    assert_true(isfinite(lo) && lo >= 0.0 && lo < 1e-80);
    float got = (float)moe_softplus(20.0), want20 = (float)log1p(exp(20.0));
    expect_close("softplus(20) uses log1p(exp)", &got, &want20, 1, 1e-7, "softplus threshold is x > 20, not >= 20");
    moe_layer L;
    float gate[NE * DIM], a[DIM] = { 1, 0, 0, 0, 0, 0 };
    const float logits[NE] = { 200.0f, -200.0f, 150.0f, 30.0f, -50.0f };
    make_router(&L, gate, logits);
    float bias[NE] = { 0 };
    L.bias = bias;
    float w[K];
    int64_t ids[K];
    assert_int_equal(moe_route(&L, a, NULL, 1, w, ids, DSV4_OFFICIAL), 0);
    float want[K] = { (float)(sqrt(200.0) / (sqrt(200.0) + sqrt(150.0)) * 2.5),
                      (float)(sqrt(150.0) / (sqrt(200.0) + sqrt(150.0)) * 2.5) };
    assert_true(ids[0] == 0 && ids[1] == 2);
    expect_close("weights at logits 200/150", w, want, K, 1e-6,
                 "pitfall 16: log(1 + exp(200)) overflows to inf; use torch's threshold");
}

/* [MOE-3] SwiGLU clamp: up clamped to +-limit, gate only from above */
static void test_swiglu_clamp(void **state)
{
    (void)state;
    enum { N = 4 };
    float eye[N * N] = { 0 };
    for (int i = 0; i < N; i++) eye[i * N + i] = 1.0f;
    moe_expert e;
    e.w1 = f32w(eye, N, N, "w1"); e.w2 = f32w(eye, N, N, "w2"); e.w3 = f32w(eye, N, N, "w3");
    /* g = u = a: values beyond +-10 on both sides */
    float a[N] = { 15.0f, -15.0f, 12.0f, -30.0f }, y[N], want[N], wrong[N], rw = 0.75f;
    assert_int_equal(moe_expert_forward(&e, N, N, 10.0, a, &rw, 1, y, DSV4_EXACT), 0);
    for (int i = 0; i < N; i++) {
        double g = a[i] > 10.0 ? 10.0 : a[i];                        /* above only */
        double u = a[i] > 10.0 ? 10.0 : a[i] < -10.0 ? -10.0 : a[i];
        double gw = a[i] > 10.0 ? 10.0 : a[i] < -10.0 ? -10.0 : a[i]; /* wrong: both sides */
        want[i] = (float)(0.75 * g / (1.0 + exp(-g)) * u);
        wrong[i] = (float)(0.75 * gw / (1.0 + exp(-gw)) * u);
    }
    /* only the negative gates tell the two apart: compare those rows alone */
    float wn[2] = { want[1], want[3] }, rn[2] = { wrong[1], wrong[3] }, yn[2] = { y[1], y[3] };
    expect_distinguishable("gate clamped above only vs both sides", wn, rn, 2, 1e-1);
    expect_close("SwiGLU negative gates", yn, wn, 2, 1e-6, "pitfall 17: the gate is clamped from above only");
    expect_close("SwiGLU", y, want, N, 1e-6,
                 "pitfall 17: up clamped to +-limit, gate <= limit, routing weight applied before w2");
}

/* [MOE-2] hash routing: ids = tid2eid[token], no bias, weights from the scores of those ids */
static void test_hash_routing(void **state)
{
    (void)state;
    moe_layer L;
    float gate[NE * DIM], a[2 * DIM] = { 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0 };
    const float logits[NE] = { 3.0f, 2.0f, 1.0f, -1.0f, 0.5f };
    make_router(&L, gate, logits);
    int64_t t2e[10 * K];
    for (int v = 0; v < 10; v++) { t2e[v * K] = (v + 3) % NE; t2e[v * K + 1] = (v + 4) % NE; }
    L.hash = 1;
    L.tid2eid = t2e;
    int64_t tokens[2] = { 7, 2 }, ids[2 * K];
    float w[2 * K], want[2 * K];
    assert_int_equal(moe_route(&L, a, tokens, 2, w, ids, DSV4_EXACT), 0);
    for (int t = 0; t < 2; t++) {
        int64_t e0 = (tokens[t] + 3) % NE, e1 = (tokens[t] + 4) % NE;
        if (ids[t * K] != e0 || ids[t * K + 1] != e1)
            fail_msg("token %lld routed to {%lld, %lld}, expected tid2eid {%lld, %lld}; likely bug: hash layers use top-k",
                     (long long)tokens[t], (long long)ids[t * K], (long long)ids[t * K + 1], (long long)e0, (long long)e1);
        double s0 = sqrt(log1p(exp((double)logits[e0]))), s1 = sqrt(log1p(exp((double)logits[e1])));
        want[t * K] = (float)(s0 / (s0 + s1) * 2.5);
        want[t * K + 1] = (float)(s1 / (s0 + s1) * 2.5);
    }
    expect_close("hash routing weights", w, want, 2 * K, 1e-6, "hash layers: weights from the router scores of the table's experts");
    int64_t bad = 10;
    assert_int_equal(moe_route(&L, a, &bad, 1, w, ids, DSV4_EXACT), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bias_selects_but_does_not_weight),
        cmocka_unit_test(test_softplus_large_logits),
        cmocka_unit_test(test_swiglu_clamp),
        cmocka_unit_test(test_hash_routing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
