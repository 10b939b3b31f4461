/* norm.h — RMSNorm, LayerNorm and the V4 weightless per-head norm (spec/norm.md). */
#ifndef DSV4_NORM_H
#define DSV4_NORM_H

#include <stdint.h>
#include "dsv4ref.h"

/* [NORM-1] RMSNorm over the last dim. x, y: [n_rows, dim] (may alias); w: [dim] or NULL.
 * official: x^ = f32(x), v = mean_f32(x^2), y = bf16( w * (x^ * rsqrt(v + eps)) )
 * exact   : double accumulation, y = w * x / sqrt(mean(x^2) + eps), fp32 out. */
void rmsnorm(const float *x, const float *w, float *y, int64_t n_rows, int dim, float eps,
             dsv4_numerics num);
/* [NORM-1] one row of it (xr, yr: [dim]); what every backend's row loop calls. */
void rmsnorm_row(const float *xr, const float *w, float *yr, int dim, float eps,
                 dsv4_numerics num);

/* [NORM-2] V4 query per-head norm, no weight. x: [n_rows, dim] in place; n_rows = every
 * [B, S, H] row of the call, in that order.
 * official: every step a bf16 tensor op: s = bf16(x^2); m = bf16(mean_f32acc(s));
 * m = bf16(m + eps); r = bf16(rsqrt(m)); x = bf16(x * r), where rsqrt follows PyTorch's CPU
 * loop [NORM-2b]: the last n_rows mod 32 rows take bf16(1 / bf16(sqrt(m))).
 * exact: as rmsnorm without w. */
void rmsnorm_head(float *x, int64_t n_rows, int dim, float eps, dsv4_numerics num);
/* [NORM-2] one row (xr: [dim], in place); scalar_tail = 1 for the rows of [NORM-2b]'s tail. */
void rmsnorm_head_row(float *xr, int dim, float eps, dsv4_numerics num, int scalar_tail);
/* [NORM-2b] the first row of the scalar tail of a call of n_rows rows (n_rows when none). */
int64_t rmsnorm_head_body(int64_t n_rows);
/* [NORM-2b] the CPU vector-loop width that splits body and scalar tail (default 32 =
 * 2 x Vectorized<BFloat16>::size() under AVX2); 0 = one rounding everywhere (GPU). */
void rmsnorm_head_set_torch_vec_loop(int n);
int rmsnorm_head_torch_vec_loop(void);

/* [NORM-3] LayerNorm (population variance) with weight g and bias b: [dim].
 * official: computed in fp32 on f32(x), y = bf16(...). exact: double, fp32 out. */
void layernorm(const float *x, const float *g, const float *b, float *y, int64_t n_rows,
               int dim, float eps, dsv4_numerics num);

#endif
