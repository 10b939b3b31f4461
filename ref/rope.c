/* rope.c — rotary position embedding with optional YaRN (spec/rope.md).
 *
 * Order: the YaRN correction range, the frequency table, cos/sin of one angle, the rotation.
 * The official mode reproduces the fp32 tensor arithmetic of the official
 * precompute_freqs_cis / apply_rotary_emb step by step; the exact mode is the same
 * mathematics in double.
 */
#include <math.h>
#include <stdlib.h>
#include "rope.h"
#include "numerics.h"

/* ---- YaRN correction range ---- */

/* [ROPE-2] corr(b) = r * ln(L_orig / (2 pi b)) / (2 ln theta), in double (the official code
 * uses Python floats). lo = max(floor(corr(beta_fast)), 0), hi = min(ceil(corr(beta_slow)),
 * r - 1); if lo == hi, hi += 0.001. Pitfall guarded: 6 (wrong theta for the range: the
 * compressed layers use compress_rope_theta). */
void rope_yarn_range(int rope_dim, double theta, int64_t original_seq_len, double beta_fast,
                     double beta_slow, double *lo, double *hi)
{
    const double pi = 3.14159265358979323846;
    double r = (double)rope_dim, L = (double)original_seq_len;
    double c_fast = r * log(L / (beta_fast * 2.0 * pi)) / (2.0 * log(theta));
    double c_slow = r * log(L / (beta_slow * 2.0 * pi)) / (2.0 * log(theta));
    double l = floor(c_fast), h = ceil(c_slow);
    if (l < 0.0) l = 0.0;
    if (h > r - 1.0) h = r - 1.0;
    if (l == h) h += 0.001;
    *lo = l;
    *hi = h;
}

/* ---- frequency table ---- */

/* [ROPE-1] [ROPE-2] [ROPE-3] f: the table of one rotary configuration, r/2 frequencies.
 * official (fp32, every step one fp32 rounding, in the official expression order):
 *   e_i     = f32(f32(2i) / f32(r))
 *   p_i     = f32(theta ^ e_i)          (pow in double of the fp32 operands, rounded once:
 *                                        the correctly rounded powf)
 *   omega_i = f32(1 / p_i)
 *   YaRN:  ramp_i = clamp(f32(f32(i - lo) / f32(hi - lo)), 0, 1),  smooth_i = f32(1 - ramp_i)
 *          omega_i = f32( f32(f32(omega_i / f32(factor)) * f32(1 - smooth_i))
 *                         + f32(omega_i * smooth_i) )
 * exact: omega_i = theta^(-2i/r), blended with the real ramp, in double.
 * Both tables are always built; num selects which one the rotation uses.
 * Pitfalls guarded: 6 (theta / YaRN per layer type is the caller's choice, passed here),
 * 7 (no mscale: the rotation has unit norm). */
int rope_freqs_init(rope_freqs *f, int rope_dim, double theta, int yarn, double factor,
                    int64_t original_seq_len, double beta_fast, double beta_slow,
                    dsv4_numerics num)
{
    f->omega_f32 = NULL;
    f->omega_f64 = NULL;
    if (rope_dim <= 0 || rope_dim % 2 != 0)
        return dsv4_set_error("rope: rope_dim %d must be positive and even", rope_dim);
    if (!(theta > 1.0))
        return dsv4_set_error("rope: theta %g must be > 1", theta);
    if (yarn && (!(factor > 0.0) || original_seq_len <= 0 || !(beta_fast > 0.0) ||
                 !(beta_slow > 0.0)))
        return dsv4_set_error("rope: YaRN needs factor > 0, original_seq_len > 0 and positive "
                              "betas (got factor %g, original_seq_len %lld, beta_fast %g, "
                              "beta_slow %g)", factor, (long long)original_seq_len,
                              beta_fast, beta_slow);
    int half = rope_dim / 2;
    f->rope_dim = rope_dim;
    f->theta = theta;
    f->yarn = yarn;
    f->factor = factor;
    f->original_seq_len = original_seq_len;
    f->beta_fast = beta_fast;
    f->beta_slow = beta_slow;
    f->num = num;
    f->omega_f32 = dsv4_calloc((size_t)half, sizeof(float), "rope omega_f32");
    f->omega_f64 = dsv4_calloc((size_t)half, sizeof(double), "rope omega_f64");
    if (!f->omega_f32 || !f->omega_f64) {
        rope_freqs_free(f);
        return -1;
    }
    double lo = 0.0, hi = 0.0;
    if (yarn) rope_yarn_range(rope_dim, theta, original_seq_len, beta_fast, beta_slow, &lo, &hi);

    /* official: fp32 tensor arithmetic */
    const float theta32 = (float)theta, r32 = (float)rope_dim;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / r32;
        float p = (float)pow((double)theta32, (double)e);
        float w = 1.0f / p;
        if (yarn) {
            /* i - lo is an exact small integer; hi - lo is a Python number (hi may carry
             * the +0.001), used as an fp32 scalar */
            float ramp = (float)((double)i - lo) / (float)(hi - lo);
            if (ramp < 0.0f) ramp = 0.0f;
            if (ramp > 1.0f) ramp = 1.0f;
            float smooth = 1.0f - ramp;
            float a = w / (float)factor;
            a = a * (1.0f - smooth);
            float b = w * smooth;
            w = a + b;
        }
        f->omega_f32[i] = w;
    }
    /* exact: double */
    for (int i = 0; i < half; i++) {
        double w = pow(theta, -(double)(2 * i) / (double)rope_dim);
        if (yarn) {
            double ramp = ((double)i - lo) / (hi - lo);
            if (ramp < 0.0) ramp = 0.0;
            if (ramp > 1.0) ramp = 1.0;
            w = w / factor * ramp + w * (1.0 - ramp);
        }
        f->omega_f64[i] = w;
    }
    return 0;
}

void rope_freqs_free(rope_freqs *f)
{
    free(f->omega_f32);
    free(f->omega_f64);
    f->omega_f32 = NULL;
    f->omega_f64 = NULL;
}

/* ---- cos / sin ---- */

/* [ROPE-4] cos/sin of pair i at position pos.
 * official: phi = f32(f32(pos) * omega_i) (torch.outer of an integer arange with the fp32
 *   table), c = cosf(phi), s = sinf(phi): the C library's fp32 functions, which is what the
 *   official table computed on the CPU uses (torch.polar -> std::cos/std::sin on float).
 *   With glibc this reproduces the official tables bit for bit; a correctly rounded
 *   cos/sin differs from it in ~0.6% of entries by one fp32 ulp (tests/test_rope.c).
 * exact: phi = pos * omega_i in double, cos/sin in double, rounded to fp32 when stored.
 * Pitfall guarded: forming the angle in double in official mode (at pos ~ 1e4 the fp32
 * angle is off by up to ~5e-4 rad, and the official code keeps that error). */
void rope_cos_sin(const rope_freqs *f, int64_t pos, int i, float *c, float *s)
{
    if (f->num == DSV4_OFFICIAL) {
        float phi = (float)pos * f->omega_f32[i];
        *c = cosf(phi);
        *s = sinf(phi);
    } else {
        double phi = (double)pos * f->omega_f64[i];
        *c = (float)cos(phi);
        *s = (float)sin(phi);
    }
}

/* ---- rotation ---- */

/* [ROPE-5] x: [r] (the rope part of one vector) rotated in place by position pos.
 * Pair i is (x[2i], x[2i+1]) (ROPE_INTERLEAVED) or (x[i], x[i + r/2]) (ROPE_HALF_SPLIT):
 *   (a, b) <- (a c - b s, a s + b c);  inverse = 1 uses (c, -s).
 * official: fp32 products and sums, each output rounded to bf16 (the complex64 multiply of
 *   the official code, no FMA); exact: double, fp32 out.
 * Pitfalls guarded: 2 / 3 (layout: interleaved for MLA and all of V4, half-split for the
 * V3.2 indexer), 8 (the output de-rotation is inverse = 1). */
void rope_apply(const rope_freqs *f, float *x, int64_t pos, rope_layout layout, int inverse)
{
    int half = f->rope_dim / 2;
    for (int i = 0; i < half; i++) {
        int ia = layout == ROPE_INTERLEAVED ? 2 * i : i;
        int ib = layout == ROPE_INTERLEAVED ? 2 * i + 1 : i + half;
        if (f->num == DSV4_OFFICIAL) {
            float c, s;
            rope_cos_sin(f, pos, i, &c, &s);
            if (inverse) s = -s;
            float a = x[ia], b = x[ib];
            float ac = a * c, bs = b * s, as = a * s, bc = b * c;
            x[ia] = round_bf16(ac - bs);
            x[ib] = round_bf16(as + bc);
        } else {
            double phi = (double)pos * f->omega_f64[i];
            double c = cos(phi), s = sin(phi);
            if (inverse) s = -s;
            double a = x[ia], b = x[ib];
            x[ia] = (float)(a * c - b * s);
            x[ib] = (float)(a * s + b * c);
        }
    }
}
