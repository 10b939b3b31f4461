/* linear.h — y = x W^T for every weight storage of the official checkpoints (spec/linear.md). */
#ifndef DSV4_LINEAR_H
#define DSV4_LINEAR_H

#include <stdint.h>
#include "dsv4ref.h"

/* [LIN-1..LIN-4]  x: [n, w->cols]  y: [n, w->rows]  (x and y do not alias).
 *
 * out_f32 = 1 : the fp32 GEMM of the official graph (compressor wkv/wgate, router, mHC,
 *               head, V3.2 weights_proj): y = f32( sum_k f32(x_k) * f32(W_nk) ), fp32 out,
 *               whatever the stored dtype (bf16 / fp8 / fp4 weights are dequantized).
 * out_f32 = 0 : the graph's own GEMM for the stored dtype:
 *   F32, BF16 : F.linear in bf16: y = bf16( f32( sum_k x_k W_nk ) ) (sum exact, rounded to
 *               the fp32 accumulator, then to the bf16 output).
 *   F8_E4M3   : FP8 GEMM: x -> act_quant(block 128, pow2 scales) -> per 128-wide K block
 *               the exact block sum rounded to fp32, times sx * sw, accumulated in fp32;
 *               y = bf16(acc).
 *   FP4       : FP4 GEMM: x -> act_quant(block 128); per 32-wide K chunk the exact chunk sum
 *               rounded to fp32, times sx[k/128] * sw[k/32], accumulated in fp32; y = bf16.
 * exact mode: y = sum_k x_k * dequant(W_nk) accumulated in double, fp32 out, no quantization.
 *
 * Returns 0, or -1 with an error when x is not finite where the graph would quantize it, or
 * the weight is malformed. */
int linear(const dsv4_weight *w, const float *x, float *y, int64_t n, int out_f32,
           dsv4_numerics num);

/* [LIN-5] y: [n, nrows] = x W[row0 : row0 + nrows]^T with W converted to bf16 as the official
 * convert.py converts an FP8 wo_a (bf16(f32(e4m3) x block scale), in both modes), then the
 * bf16 F.linear of [LIN-1] (official: exact sum, one fp32 then one bf16 rounding; exact: double,
 * fp32 out). Reads the stored weight directly, so an FP8 checkpoint needs no bf16 copy. */
int linear_dequant_bf16(const dsv4_weight *w, int64_t row0, int64_t nrows, const float *x,
                        float *y, int64_t n, dsv4_numerics num);

/* Dequantized value of W[r][c] (bf16 / f32 / e4m3 x block scale / e2m1 x group scale). */
float weight_at(const dsv4_weight *w, int64_t r, int64_t c);

/* Validates a weight's shape and scale layout against its dtype; error names w->name. */
int weight_check(const dsv4_weight *w);

#endif
