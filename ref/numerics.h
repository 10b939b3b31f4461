/* numerics.h — number formats of the official graph (spec/numerics.md).
 *
 * These are the building blocks of `official` numerics mode: every rounding the official
 * graph performs is one visible call to one of these functions, at the exact point it
 * happens, and is skipped in `exact` mode.
 */
#ifndef DSV4_NUMERICS_H
#define DSV4_NUMERICS_H

#include <stdint.h>
#include "dsv4ref.h"

/* ---- bfloat16 [NUM-2] -------------------------------------------------------------------- */
uint16_t bf16_from_float(float x);   /* round to nearest even; NaN stays NaN (quiet), Inf stays Inf */
float bf16_to_float(uint16_t b);
float round_bf16(float x);           /* bf16_to_float(bf16_from_float(x)) */
/* In-place bf16 rounding of n floats when num == DSV4_OFFICIAL; no-op in exact mode. */
void round_bf16_n(float *x, int64_t n, dsv4_numerics num);

/* ---- IEEE half [NUM-2] (file I/O only) --------------------------------------------------- */
uint16_t f16_from_float(float x);
float f16_to_float(uint16_t h);

/* ---- FP8 e4m3fn [NUM-3] ------------------------------------------------------------------ */
/* encode: round to nearest even on the e4m3fn grid (max 448, min subnormal 2^-9); values of
 * magnitude > 448 saturate to +-448 (the official graph clamps to +-448 before the cast, so
 * the saturation is what it sees); NaN -> 0x7F. decode: exact (0x7F/0xFF = NaN). */
uint8_t e4m3_from_float(float x);
float e4m3_to_float(uint8_t c);

/* ---- e8m0 scales [NUM-4] ----------------------------------------------------------------- */
/* byte e encodes 2^(e-127); 0xFF = NaN. */
float e8m0_to_float(uint8_t e);
/* Encodes a power of two 2^k (k in [-127, 127]) exactly; anything else: the e8m0 of
 * 2^ceil(log2 |x|) (the ue8m0 rounding up). */
uint8_t e8m0_from_float(float x);

/* ---- FP4 e2m1 [NUM-5] -------------------------------------------------------------------- */
/* codes 0..15: [0, .5, 1, 1.5, 2, 3, 4, 6, -0, -.5, -1, -1.5, -2, -3, -4, -6].
 * encode: RNE on that grid after clamping to [-6, 6] (ties to the even code:
 * 0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4). */
uint8_t e2m1_from_float(float x);
float e2m1_to_float(uint8_t code);
/* packing: byte j = code[2j] | code[2j+1] << 4 (low nibble first) */
void e2m1_pack(const uint8_t *codes, int64_t n, uint8_t *bytes);      /* n even */
void e2m1_unpack(const uint8_t *bytes, int64_t n, uint8_t *codes);

/* ---- power-of-two scale rules [NUM-6] ---------------------------------------------------- */
/* ceil(log2(v)) for v > 0 taken from the IEEE bits of the fp32 value v:
 * exponent - 127, plus 1 if any mantissa bit is set (subnormals handled). */
int ceil_log2_bits(float v);
/* FP8 activation scale of a block with max |x| = amax:
 *   s = 2^ceil(log2( f32( max(amax, 1e-4) * f32(1/448) ) ))      (scale_fmt = ue8m0) */
float fp8_pow2_scale(float amax);
/* FP4 block scale: s = 2^ceil(log2( f32( max(amax, 6*2^-126) * f32(1/6) ) )) */
float fp4_pow2_scale(float amax);

/* ---- block simulations (the official in-place "QAT" round trips) [NUM-7] ------------------ */
/* x: [n] bf16 values (as floats). For each block of `block` consecutive values:
 * s = fp8_pow2_scale(amax); x <- bf16( e4m3(clamp(x/s, -448, 448)) * s ).
 * n should be a multiple of block (the official code asserts it); a trailing partial block
 * is treated as its own block. */
void fp8_sim_block(float *x, int64_t n, int block);
/* Same with FP4: s = fp4_pow2_scale(amax); x <- bf16( e2m1(clamp(x/s, -6, 6)) * s ). */
void fp4_sim_block(float *x, int64_t n, int block);

/* Activation quantization for an FP8/FP4 GEMM input (non-in-place act_quant): x: [n]
 * (n a multiple of block) -> codes [n] e4m3 and scales [n/block] (powers of two, as float). */
void fp8_act_quant(const float *x, int64_t n, int block, uint8_t *codes, float *scales);

/* ---- PyTorch's CPU order of a float row sum [NUM-8] --------------------------------------- */
/* sum_i sq(x_i) for a contiguous row, in the order PyTorch's CPU kernel adds them (AVX2:
 * 8-lane vectors; 4 interleaved vector accumulators with a 4-level cascade, leftover vectors
 * into the first, the 4 folded in order; then the scalar tail, then the 8 lanes in order),
 * every addition an fp32 rounding. sq(x) = f32(x*x), or bf16(x*x) when round_sq_bf16 (the
 * square of a bf16 tensor). Used where the official graph writes x.square().mean(-1) and the
 * golden files were made on the CPU; its result differs from the exactly rounded sum by fp32
 * last bits only, but those decide bf16 ties downstream. */
float torch_cpu_sum_squares(const float *x, int64_t n, int round_sq_bf16);

#endif /* DSV4_NUMERICS_H */
