/* counters.c — the multiply-add counters (spec/cost-model.md [COST-20]). */
#include "counters.h"

/* ---- state ---- */
static int g_count_on = 0;
static int64_t g_count[DSV4_COMP_COUNT];

static const char *const k_component_names[DSV4_COMP_COUNT] = {
    "q_proj", "kv_proj", "o_proj", "core_attn", "index_proj", "index_score", "compressor",
    "state", "mhc", "moe_router", "moe_routed", "moe_shared", "dense_ffn", "head",
};

/* ---- names ---- */
/* [COST-20] c: a component id. Returns its JSON/CSV name. */
const char *dsv4_component_name(dsv4_component c)
{
    if ((int)c < 0 || (int)c >= DSV4_COMP_COUNT) return "?";
    return k_component_names[c];
}

/* ---- counting ---- */
/* [COST-20] on: nonzero = count. Off by default; toggling keeps the counts. */
void dsv4_count_enable(int on) { g_count_on = on != 0; }

/* [COST-20] 1 while counting is on. */
int dsv4_count_enabled(void) { return g_count_on; }

/* [COST-20] c: component; madds: multiply-adds done (int64; one GEMM call may add rows*cols*k).
 * A no-op while off, so calls may stay in the forward at no cost to results. */
void dsv4_count(dsv4_component c, int64_t madds)
{
    if (!g_count_on) return;
    if ((int)c < 0 || (int)c >= DSV4_COMP_COUNT) return;
    g_count[c] += madds;
}

/* [COST-20] c: component; w: [rows, cols] weight; n: input rows. One madd per (row, out, in). */
void dsv4_count_linear(dsv4_component c, const dsv4_weight *w, int64_t n)
{
    if (!g_count_on) return;
    dsv4_count(c, n * w->rows * w->cols);
}

/* [COST-20] c: component. Returns its count (0 if out of range). */
int64_t dsv4_count_get(dsv4_component c)
{
    if ((int)c < 0 || (int)c >= DSV4_COMP_COUNT) return 0;
    return g_count[c];
}

/* [COST-20] Sum of all components. */
int64_t dsv4_count_total(void)
{
    int64_t s = 0;
    for (int i = 0; i < DSV4_COMP_COUNT; i++) s += g_count[i];
    return s;
}

/* [COST-20] Zeroes every component. */
void dsv4_count_reset(void)
{
    for (int i = 0; i < DSV4_COMP_COUNT; i++) g_count[i] = 0;
}
