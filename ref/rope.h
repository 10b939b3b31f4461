/* rope.h — rotary position embedding with optional YaRN (spec/rope.md). */
#ifndef DSV4_ROPE_H
#define DSV4_ROPE_H

#include <stdint.h>
#include "dsv4ref.h"

/* Pair layouts: which two dims of the rope part rotate together. */
typedef enum {
    ROPE_INTERLEAVED = 0,  /* pair i = (x[2i], x[2i+1])   — MLA, V4 everywhere           */
    ROPE_HALF_SPLIT  = 1   /* pair i = (x[i], x[i + r/2])  — V3.2 indexer (after the fix) */
} rope_layout;

/* The frequencies of one rotary configuration [ROPE-1..ROPE-3].
 * yarn = 1 applies the YaRN ramp (factor, original_seq_len, beta_fast, beta_slow).
 * official mode: omega_i = f32(1 / f32(theta^(2i/r))), the blend in fp32 in the official
 * order, angles phi = f32(f32(pos) * omega_i), cos/sin of that fp32 angle with the C
 * library's cosf/sinf (as torch on the CPU: bit-exact with the official tables under glibc).
 * exact mode: everything in double, rounded to fp32 only when stored. */
typedef struct {
    int rope_dim;          /* r (even) */
    double theta;
    int yarn;
    double factor;
    int64_t original_seq_len;
    double beta_fast, beta_slow;
    dsv4_numerics num;
    float *omega_f32;      /* [r/2] official-mode frequencies */
    double *omega_f64;     /* [r/2] exact-mode frequencies */
} rope_freqs;

int rope_freqs_init(rope_freqs *f, int rope_dim, double theta, int yarn, double factor,
                    int64_t original_seq_len, double beta_fast, double beta_slow,
                    dsv4_numerics num);
void rope_freqs_free(rope_freqs *f);

/* [ROPE-2] The YaRN correction range (lo, hi) the table uses (hi carries +0.001 when the
 * two coincide): V4 (theta 160000, L 65536) gives 15, 25; V3 (10000, 4096) gives 10, 23. */
void rope_yarn_range(int rope_dim, double theta, int64_t original_seq_len, double beta_fast,
                     double beta_slow, double *lo, double *hi);

/* cos/sin of pair i at position pos, as the mode computes them [ROPE-4]. */
void rope_cos_sin(const rope_freqs *f, int64_t pos, int i, float *c, float *s);

/* Rotate x: [r] (the rope part of one vector) by position pos [ROPE-5]:
 *   (a, b) <- (a c - b s, a s + b c)   (inverse = 1 uses (c, -s): the de-rotation)
 * computed in fp32 (official: each output rounded to bf16) or double (exact). */
void rope_apply(const rope_freqs *f, float *x, int64_t pos, rope_layout layout, int inverse);

#endif
