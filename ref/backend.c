/* backend.c — the reference kernel table and the run-time backend choice (spec/backends.md). */
#include <string.h>
#include "backend.h"
#include "hadamard.h"
#include "linear.h"
#include "norm.h"
#include "sparse_attention.h"

/* ---- the reference table ---- */

static const dsv4_kernels k_ref = {
    "ref", linear, rmsnorm, rmsnorm_head, hadamard, sparse_attention, indexer_scores
};

/* [BK-1] The reference kernels: the ref/ functions themselves. */
const dsv4_kernels *dsv4_kernels_ref(void)
{
    return &k_ref;
}

/* ---- the CUDA table (default: absent) ---- */

/* [BK-1] Without the CUDA build there is no CUDA table. The CUDA build links an object that
 * defines dsv4_kernels_cuda (a strong definition: link it as an object file, not through the
 * archive, so that it overrides this weak default). */
#if defined(__GNUC__)
__attribute__((weak))
#endif
const dsv4_kernels *dsv4_kernels_cuda(void)
{
    dsv4_set_error("backend cuda: built without CUDA (make cuda builds the CUDA kernel set)");
    return NULL;
}

/* ---- selection ---- */

static const dsv4_kernels *g_current = &k_ref;

/* [BK-2] name -> table; NULL with a one-line error when unknown or not built. */
const dsv4_kernels *dsv4_kernels_by_name(const char *name)
{
    if (!name) return NULL;
    if (strcmp(name, "ref") == 0) return dsv4_kernels_ref();
    if (strcmp(name, "omp") == 0) return dsv4_kernels_omp();
    if (strcmp(name, "cuda") == 0) return dsv4_kernels_cuda();
    dsv4_set_error("backend '%s' is unknown (expected ref, omp or cuda)", name);
    return NULL;
}

/* [BK-2] The table the orchestration calls through. */
const dsv4_kernels *dsv4_backend(void)
{
    return g_current;
}

/* [BK-2] Selects the current table; 0, or -1 with the error of dsv4_kernels_by_name. */
int dsv4_backend_select(const char *name)
{
    const dsv4_kernels *k = dsv4_kernels_by_name(name);
    if (!k) return -1;
    g_current = k;
    return 0;
}
