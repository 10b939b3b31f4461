/* dsv4ref.h — the common vocabulary of dsv4ref: dtypes, numerics modes, errors, weights, taps.
 *
 * Conventions used by every file (spec/notation.md):
 *   - Activations are float (fp32 storage), row-major, shapes written in comments as
 *     `x: [B, S, D]`. In `official` numerics mode a value that the official graph holds in
 *     bf16 is stored as the float of that bf16 (rounded with round_bf16 at the exact point the
 *     official graph rounds); in `exact` mode nothing is rounded except to fp32 storage.
 *   - Weights stay in their stored dtype (dsv4_weight) and are dequantized as they are read.
 *   - Every library function that can fail returns 0 on success and non-zero on failure,
 *     after writing a one-line message with dsv4_set_error(); the CLI prints it and exits 2.
 */
#ifndef DSV4REF_H
#define DSV4REF_H

#include <stddef.h>
#include <stdint.h>

#define DSV4REF_VERSION "0.1.0"

/* ---- numerics modes (spec/numerics.md [NUM-1]) ------------------------------------------ */
typedef enum {
    DSV4_EXACT = 0,    /* the mathematics: fp32 storage, stated accumulation precision, no fake quant */
    DSV4_OFFICIAL = 1  /* the official graph: its bf16 rounding points and FP8/FP4 simulation */
} dsv4_numerics;

const char *dsv4_numerics_name(dsv4_numerics n);             /* "exact" / "official" */
int dsv4_numerics_parse(const char *s, dsv4_numerics *out);  /* 0 ok, -1 unknown */

/* ---- dtypes of the file format (golden-format.md) --------------------------------------- */
typedef enum {
    DSV4_F64 = 0, DSV4_F32, DSV4_F16, DSV4_BF16, DSV4_F8_E4M3, DSV4_F8_E8M0,
    DSV4_I64, DSV4_I32, DSV4_I8, DSV4_U8, DSV4_BOOL,
    DSV4_DTYPE_COUNT
} dsv4_dtype;

const char *dsv4_dtype_name(dsv4_dtype d);              /* "F32", ... */
int dsv4_dtype_parse(const char *s, dsv4_dtype *out);   /* 0 ok, -1 unknown */
size_t dsv4_dtype_size(dsv4_dtype d);                   /* bytes per element */

/* ---- errors ----------------------------------------------------------------------------- */
/* One line, naming the file / tensor / field and what was expected. The last message wins. */
#if defined(__GNUC__)
#define DSV4_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DSV4_PRINTF(a, b)
#endif
int dsv4_set_error(const char *fmt, ...) DSV4_PRINTF(1, 2);  /* always returns -1 */
const char *dsv4_last_error(void);
void dsv4_clear_error(void);

/* Allocation helpers: on failure they set an error naming `what` and return NULL. The sizes
 * are checked for overflow (n * size). Memory is zeroed. */
void *dsv4_calloc(size_t n, size_t size, const char *what);

/* ---- weights ---------------------------------------------------------------------------- */
/* A 2-D weight W: [rows = out features, cols = in features], in its stored dtype.
 *   F32 / BF16      : data holds rows*cols values.
 *   F8_E4M3         : data holds rows*cols e4m3 codes; scale holds one per 128x128 block,
 *                     [ceil(rows/128), ceil(cols/128)], dtype scale_dtype (F8_E8M0 or F32).
 *   FP4 (fp4 = 1)   : dtype I8 or U8; data holds rows*cols/2 bytes, element 2j in the low nibble
 *                     of byte j and 2j+1 in the high nibble (e2m1 codes); scale holds one
 *                     F8_E8M0 per 32 consecutive elements of a row, [rows, cols/32].
 * Nothing is copied: data and scale may point into a memory-mapped checkpoint. */
typedef struct {
    dsv4_dtype dtype;
    int fp4;
    int64_t rows, cols;
    const void *data;
    dsv4_dtype scale_dtype;
    const void *scale;
    const char *name;   /* for error messages; may be NULL */
} dsv4_weight;

/* ---- taps ------------------------------------------------------------------------------- */
/* A tap sink collects named tensors at the points the forward pass names (golden-format.md,
 * spec/taps.md). Passing NULL as the sink makes every tap a no-op. The sink stores a copy,
 * converted to `dtype` (F32 data -> F32 or BF16; int64 data -> I64). */
typedef struct dsv4_taps dsv4_taps;

dsv4_taps *dsv4_taps_new(void);
void dsv4_taps_free(dsv4_taps *t);
/* data is float* for F32/BF16/F64 targets, int64_t* for I64/I32 targets. */
int dsv4_tap(dsv4_taps *t, dsv4_dtype dtype, int ndim, const int64_t *shape, const void *data,
             const char *fmt, ...) DSV4_PRINTF(6, 7);
/* Lookup (NULL if absent); returns a float copy view for floats, int64 for ints. */
size_t dsv4_taps_count(const dsv4_taps *t);
const char *dsv4_taps_name(const dsv4_taps *t, size_t i);

#endif /* DSV4REF_H */
