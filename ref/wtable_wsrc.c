/* wtable_wsrc.c — the lineage weight lookup (ref/wtable.h) over a V4 weight source
 * (ref/wsrc.h: one golden file or an official checkpoint directory). Kept in its own file so
 * that programs using only the other lookups do not link the weight source. */
#include "wtable.h"
#include "wsrc.h"

/* dsv4_wlookup.weight: wsrc_weight (validates dtype, shape and the FP8 block scales). */
static int wsrc_weight_cb(void *ctx, const char *name, int64_t rows, int64_t cols, dsv4_weight *out)
{
    return wsrc_weight((const dsv4_wsrc *)ctx, name, rows, cols, out);
}

/* dsv4_wlookup.floats: wsrc_floats (a fresh float copy of n values). */
static int wsrc_floats_cb(void *ctx, const char *name, int64_t n, float **out)
{
    return wsrc_floats((const dsv4_wsrc *)ctx, name, n, out);
}

/* The lookup interface of a weight source; s must outlive the layers built from it. */
dsv4_wlookup wlookup_wsrc(const dsv4_wsrc *s)
{
    dsv4_wlookup l;
    l.ctx = (void *)s;
    l.weight = wsrc_weight_cb;
    l.floats = wsrc_floats_cb;
    return l;
}
