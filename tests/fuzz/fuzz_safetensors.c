/* fuzz_safetensors.c — libFuzzer target: st_open_mem on arbitrary bytes, plain or gzip
 * (spec/io.md [IO-READ], [IO-VAL], [IO-GZ]). A refused input must leave one line naming the
 * file; an accepted one must be internally consistent: every tensor's bytes lie inside what
 * was read, st_find finds every name, and every element decodes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_file *f = st_open_mem(data, size, "fuzz.safetensors");
    if (!f) {
        const char *m = dsv4_last_error();
        if (!strstr(m, "fuzz.safetensors") || strchr(m, '\n')) abort();
        return 0;
    }
    volatile double sink = 0;
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        if (st_find(f, t->name) != t) abort();
        if (t->nbytes != (size_t)t->numel * dsv4_dtype_size(t->dtype)) abort();
        for (int64_t k = 0; k < t->numel && k < 4096; k++) sink += st_get_f64(t, k) + (double)st_get_i64(t, k);
        if (t->nbytes) sink += ((const unsigned char *)t->data)[t->nbytes - 1];   /* last byte readable */
    }
    for (size_t i = 0; i < st_meta_count(f); i++)
        if (!st_meta(f, st_meta_key(f, i))) abort();
    (void)sink;
    st_close(f);
    return 0;
}
