/* wsrc.h — a weight source: name -> tensor over one golden file or an official checkpoint
 * directory (model*.safetensors shards + model.safetensors.index.json), memory-mapped.
 * Every lookup validates dtype and shape and fails with a one-line error naming the tensor. */
#ifndef DSV4_WSRC_H
#define DSV4_WSRC_H

#include <stdint.h>
#include "dsv4ref.h"
#include "safetensors.h"

typedef struct dsv4_wsrc dsv4_wsrc;

dsv4_wsrc *wsrc_open_file(const char *path);      /* one safetensors file (golden or shard) */
dsv4_wsrc *wsrc_open_dir(const char *dir);        /* checkpoint directory */
void wsrc_close(dsv4_wsrc *s);

const st_tensor *wsrc_find(const dsv4_wsrc *s, const char *name);   /* NULL if absent */

/* A 2-D weight `name` of logical shape [rows, cols]: accepts F32 / BF16, F8_E4M3 with
 * `<base>.scale` (F8_E8M0 or F32, [ceil(rows/128), ceil(cols/128)]), or packed FP4
 * (I8/U8 [rows, cols/2] with `<base>.scale` F8_E8M0 [rows, cols/32]); <base> = name without
 * the trailing ".weight". 0 ok, -1 with an error naming the tensor and the mismatch. */
int wsrc_weight(const dsv4_wsrc *s, const char *name, int64_t rows, int64_t cols, dsv4_weight *out);
/* A 1-D (or any-shape, numel = n) float tensor copied to a new float array (caller frees). */
int wsrc_floats(const dsv4_wsrc *s, const char *name, int64_t n, float **out);
/* An integer tensor (I64 or I32) of numel n copied to a new int64 array (caller frees). */
int wsrc_ints(const dsv4_wsrc *s, const char *name, int64_t n, int64_t **out);
/* The file or directory the source was opened on (for messages). */
const char *wsrc_where(const dsv4_wsrc *s);
/* The underlying file of a one-file source (golden file: metadata, inputs, taps); NULL for a
 * checkpoint directory. */
const st_file *wsrc_file(const dsv4_wsrc *s);

#endif
