/* safetensors.h — read and write safetensors files, plain or gzip (golden-format.md). */
#ifndef DSV4_SAFETENSORS_H
#define DSV4_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "dsv4ref.h"

#define ST_MAX_DIMS 8

typedef struct {
    const char *name;
    dsv4_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data;        /* points into the mapped or inflated buffer; always aligned to
                                the element size (a misaligned tensor is copied) */
    size_t nbytes;
} st_tensor;

typedef struct st_file st_file;

/* Opens and fully validates a file (plain files are memory-mapped; gzip files are inflated
 * into memory). On any violation returns NULL with a one-line error naming the file, the
 * tensor and the problem (dsv4_last_error()). */
st_file *st_open(const char *path);
/* The same on an in-memory image of a file (plain or gzip); `name` stands for the path in
 * messages. The bytes are copied (or inflated): buf may be freed after the call. */
st_file *st_open_mem(const void *buf, size_t len, const char *name);
void st_close(st_file *f);
const char *st_path(const st_file *f);
size_t st_count(const st_file *f);
const st_tensor *st_get(const st_file *f, size_t i);          /* in file order of offsets */
const st_tensor *st_find(const st_file *f, const char *name); /* NULL if absent */
size_t st_meta_count(const st_file *f);
const char *st_meta_key(const st_file *f, size_t i);
const char *st_meta(const st_file *f, const char *key);       /* NULL if absent */

/* Reads element i of a numeric tensor as double / int64 (any dtype). */
double st_get_f64(const st_tensor *t, int64_t i);
int64_t st_get_i64(const st_tensor *t, int64_t i);

/* Writer: tensors are copied in; save() writes name-sorted, 8-byte aligned header,
 * to a temp file in the same folder, then renames (never a half-written output). */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
void st_writer_free(st_writer *w);
int st_writer_add(st_writer *w, const char *name, dsv4_dtype dtype, int ndim,
                  const int64_t *shape, const void *data, size_t nbytes);
/* Convenience: float data converted to dtype (F32, BF16, F16, F64). */
int st_writer_add_f32(st_writer *w, const char *name, dsv4_dtype dtype, int ndim,
                      const int64_t *shape, const float *data);
int st_writer_meta(st_writer *w, const char *key, const char *value);
int st_writer_save(st_writer *w, const char *path, int gzip_level /* 0 = plain */);

#endif
