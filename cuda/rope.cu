/* rope.cu — rotary position embedding of many rows at once (spec/rope.md [ROPE-5]; the
 * reference is ref/rope.c: rope_apply, one vector at a time).
 *
 * Launch shape: grid n_rows, block rope_dim/2: thread i rotates pair i of row blockIdx.x.
 * The cos/sin table comes from the host (rope_table -> rope_cos_sin): the official angles are
 * fp32 products and glibc's cosf/sinf, and the GPU's cosf is not bit-identical to glibc's, so
 * the table is made where the reference makes it.
 * Numerics: official (a,b) <- (bf16(a c - b s), bf16(a s + b c)), four fp32 products and one
 * fp32 add/sub each (no FMA: -fmad=false); exact: double angle, double rotation, fp32 out. */
#include <cstdlib>
#include "cuda_common.cuh"
#include "kernels.h"

/* [ROPE-5] x: rows of `stride`, rope part at `off`; cs: [n_rows, r/2, 2]; thread i = pair i
 * (interleaved: (2i, 2i+1); half-split: (i, i + r/2)); inverse = de-rotation (pitfall 8) */
__global__ void rope_rows_kernel(float *x, int64_t stride, int64_t off, int rope_dim,
                                 const float *cs, int interleaved, int inverse, int official)
{
    int half = rope_dim / 2, i = threadIdx.x;
    float *xr = x + (int64_t)blockIdx.x * stride + off;
    const float *t = cs + ((int64_t)blockIdx.x * half + i) * 2;
    int ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + half;
    float c = t[0], s = inverse ? -t[1] : t[1];
    float a = xr[ia], b = xr[ib];
    if (official) {
        float ac = a * c, bs = b * s, as = a * s, bc = b * c;
        xr[ia] = d_round_bf16(ac - bs);
        xr[ib] = d_round_bf16(as + bc);
    } else {
        /* exact mode: cs holds the double cos/sin rounded to fp32 for the table; the
         * rotation itself in double (ref rotates with the double cos/sin: a last-bit
         * difference, inside the exact-mode 1e-5 limit) */
        double dc = c, dsn = s;
        xr[ia] = (float)((double)a * dc - (double)b * dsn);
        xr[ib] = (float)((double)a * dsn + (double)b * dc);
    }
}

/* host: cs: [n_rows, rope_dim/2, 2] from rope_cos_sin (the reference's own angles) */
extern "C" void rope_table(const rope_freqs *f, const int64_t *pos, int64_t n_rows, float *cs)
{
    int half = f->rope_dim / 2;
    for (int64_t r = 0; r < n_rows; r++)
        for (int i = 0; i < half; i++)
            rope_cos_sin(f, pos[r], i, &cs[(r * half + i) * 2], &cs[(r * half + i) * 2 + 1]);
}

/* [ROPE-5] device form of cuda_rope_rows; dcs from rope_table() */
extern "C" int launch_rope_rows(float *dx, int64_t n_rows, int64_t stride, int64_t off,
                                int rope_dim, const float *dcs, rope_layout layout, int inverse,
                                dsv4_numerics num)
{
    if (n_rows <= 0 || rope_dim <= 0) return 0;
    rope_rows_kernel<<<(unsigned)n_rows, rope_dim / 2>>>(dx, stride, off, rope_dim, dcs,
                                                         layout == ROPE_INTERLEAVED, inverse,
                                                         num == DSV4_OFFICIAL);
    CK_LAUNCH("rope_rows");
    return 0;
}

/* [ROPE-5] rope_apply over many rows (row i at position pos[i]). x: [n_rows, stride] host. */
extern "C" int cuda_rope_rows(const rope_freqs *f, float *x, int64_t n_rows, int64_t stride,
                              int64_t off, const int64_t *pos, rope_layout layout, int inverse)
{
    cuda_count("rope");
    int half = f->rope_dim / 2;
    size_t xb = (size_t)(n_rows * stride) * sizeof(float), cb = (size_t)(n_rows * half * 2) * sizeof(float);
    float *cs = (float *)malloc(cb ? cb : 1);
    float *dx = (float *)cuda_scratch(0, xb), *dcs = (float *)cuda_scratch(1, cb);
    if (!cs || !dx || !dcs) { free(cs); return dsv4_set_error("cuda_rope_rows: out of memory"); }
    rope_table(f, pos, n_rows, cs);
    int rc = cuda_up(dx, x, xb) || cuda_up(dcs, cs, cb) ||
             launch_rope_rows(dx, n_rows, stride, off, f->rope_dim, dcs, layout, inverse, f->num) ||
             cuda_down(x, dx, xb);
    free(cs);
    return rc ? -1 : 0;
}
