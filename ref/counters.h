/* counters.h — a multiply-add counter per cost-model component (spec/cost-model.md [COST-20]).
 *
 * The forward pass may call dsv4_count(component, madds) next to every counted operation; the
 * counts are compared, in tests, with the closed-form cost model of ref/cost.h. Counting is
 * compiled in and OFF by default: while off, dsv4_count returns at once and touches nothing,
 * so results (and, beyond one branch, speed) are unaffected. Counting never changes a value.
 *
 * One multiply-add = one product accumulated into a sum (a GEMM's inner step); FLOPs = 2 ×
 * madds. What each component counts is fixed by the equation ids listed below; anything not
 * listed (norms, RoPE, softmax exponentials, quantization simulation, top-k comparisons,
 * additions of residuals) is not counted by design.
 *
 * Not thread-safe: the reference is single-threaded; a parallel backend must count per thread
 * and add, or count outside its parallel region. */
#ifndef DSV4_COUNTERS_H
#define DSV4_COUNTERS_H

#include <stdint.h>
#include "dsv4ref.h"

typedef enum {
    DSV4_COMP_Q_PROJ = 0,   /* [COST-2..5] query path: wq / wq_a, wq_b; MLA q-absorption W^UK      */
    DSV4_COMP_KV_PROJ,      /* [COST-2..5] key/value path: wk, wv / wkv_a / wkv; SSM input projections */
    DSV4_COMP_O_PROJ,       /* [COST-2..5] output path: wo / wo_a, wo_b; MLA value up-projection W^UV  */
    DSV4_COMP_CORE_ATTN,    /* [COST-2..6] logits q·k and probability-weighted value sums, per key  */
    DSV4_COMP_INDEX_PROJ,   /* [COST-4][COST-8] indexer wq_b, weights_proj (V3.2 also wk)           */
    DSV4_COMP_INDEX_SCORE,  /* [COST-4][COST-8] indexer scores Σ_h w_h·ReLU(q_h·k), per candidate    */
    DSV4_COMP_COMPRESSOR,   /* [COST-7] compressor wkv/wgate projections and the pooling sums        */
    DSV4_COMP_STATE,        /* [COST-13..15] recurrent / low-rank state work (hypothetical variants) */
    DSV4_COMP_MHC,          /* [COST-9] hyper-connection mixes: HCPre, HCPost, HCHead                */
    DSV4_COMP_MOE_ROUTER,   /* [COST-10] router GEMM                                                 */
    DSV4_COMP_MOE_ROUTED,   /* [COST-10] routed experts w1, w3, w2                                   */
    DSV4_COMP_MOE_SHARED,   /* [COST-10] shared experts w1, w3, w2                                   */
    DSV4_COMP_DENSE_FFN,    /* [COST-10] dense FFN layers (V3 family, first layers)                  */
    DSV4_COMP_HEAD,         /* [COST-11] output head (logits of the last position)                   */
    DSV4_COMP_COUNT
} dsv4_component;

/* Short snake_case name ("q_proj", ...) used in the JSON/CSV output; "?" if out of range. */
const char *dsv4_component_name(dsv4_component c);

/* [COST-20] Turns counting on (1) or off (0). Off is the default. Does not reset. */
void dsv4_count_enable(int on);
int dsv4_count_enabled(void);
/* [COST-20] Adds madds to component c when counting is on; no-op when off or c out of range. */
void dsv4_count(dsv4_component c, int64_t madds);
/* [COST-20] A GEMM y = x Wᵀ over n rows: adds n · w->rows · w->cols to c. */
void dsv4_count_linear(dsv4_component c, const dsv4_weight *w, int64_t n);
/* [COST-20] The count so far (0 for c out of range). */
int64_t dsv4_count_get(dsv4_component c);
/* [COST-20] Sum over all components. */
int64_t dsv4_count_total(void);
/* [COST-20] Sets every component to 0 (does not change on/off). */
void dsv4_count_reset(void);

#endif
