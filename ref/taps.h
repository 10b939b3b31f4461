/* taps.h — what a tap sink offers beyond ref/dsv4ref.h: lookup and saving (spec/io.md [IO-TAP]).
 *
 * A sink (dsv4_taps_new) records named tensors in the order they are tapped. Float taps
 * (F32 / BF16 / F64 targets) keep a float copy — for BF16 the values already rounded to bf16
 * (round to nearest even), i.e. exactly what the saved file holds. Integer taps (I64 / I32
 * targets) keep an int64 copy. Names are unique within a sink. */
#ifndef DSV4_TAPS_H
#define DSV4_TAPS_H

#include <stdint.h>
#include "dsv4ref.h"

/* Writes every tap to a safetensors file at `path` (atomic, via st_writer_save; gzip level 6
 * when path ends in ".gz"). meta_kv: NULL, or key, value, key, value, ..., NULL. */
int dsv4_taps_save(const dsv4_taps *t, const char *path, const char *const *meta_kv);

/* Float view of a float tap (NULL if absent or an integer tap). ndim / shape may be NULL. */
const float *dsv4_taps_find_f32(const dsv4_taps *t, const char *name, int *ndim, const int64_t **shape);
/* int64 view of an integer tap (NULL if absent or a float tap). ndim / shape may be NULL. */
const int64_t *dsv4_taps_find_i64(const dsv4_taps *t, const char *name, int *ndim, const int64_t **shape);
/* Target dtype of tap i (in tap order); DSV4_DTYPE_COUNT if out of range. */
dsv4_dtype dsv4_taps_dtype(const dsv4_taps *t, size_t i);

#endif
