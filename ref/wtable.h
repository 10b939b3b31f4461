/* wtable.h — where the lineage layers (ref/mha.c, ref/mla.c, ref/dsa_indexer.c) read their
 * weights from: a small lookup interface with two sources, an in-memory table (tests build
 * their random weights there) and one opened safetensors file (attention-only golden files).
 *
 * A lookup returns VIEWS (dsv4_weight, nothing copied) for 2-D weights and a fresh float copy
 * for 1-D parameters (norm weights and biases). Every lookup checks the name exists and the
 * shape is the one the layer expects, and fails with a one-line error naming the tensor. */
#ifndef DSV4_WTABLE_H
#define DSV4_WTABLE_H

#include <stdint.h>
#include "dsv4ref.h"
#include "safetensors.h"

/* ---- the lookup interface ---------------------------------------------------------------- */
typedef struct {
    void *ctx;
    /* 2-D weight `name` of logical shape [rows, cols] (F32, BF16, or F8_E4M3 with
     * "<base>.scale", base = name without ".weight"). 0 ok, -1 with an error. */
    int (*weight)(void *ctx, const char *name, int64_t rows, int64_t cols, dsv4_weight *out);
    /* 1-D float parameter of n values (F32 or BF16 storage), copied to a malloc'd array. */
    int (*floats)(void *ctx, const char *name, int64_t n, float **out);
} dsv4_wlookup;

/* ---- an in-memory table (tests) ---------------------------------------------------------- */
typedef struct wtable wtable;

wtable *wtable_new(void);
void wtable_free(wtable *t);
/* Adds a 2-D view (data/scale are NOT copied: they must outlive the table's users) or a 1-D
 * float parameter (copied). Names are copied. 0 ok, -1 error. */
int wtable_add_weight(wtable *t, const char *name, const dsv4_weight *w);
int wtable_add_floats(wtable *t, const char *name, const float *v, int64_t n);
dsv4_wlookup wtable_lookup(wtable *t);

/* ---- one safetensors file ---------------------------------------------------------------- */
/* Views into the (memory-mapped or inflated) file; f must outlive the layers built from it. */
dsv4_wlookup wlookup_st(const st_file *f);

/* ---- a V4 weight source (ref/wsrc.h; implemented in ref/wtable_wsrc.c) ------------------- */
struct dsv4_wsrc;
dsv4_wlookup wlookup_wsrc(const struct dsv4_wsrc *s);

#endif
