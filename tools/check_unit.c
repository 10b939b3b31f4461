/* check_unit.c — the unit-level golden cases (tools/check_case.h, spec/golden-suite.md
 * [GLD-4]): one V4 sub-module run on the inputs the file stores, tapped under the module path
 * it has inside Block 0 of the full model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check_attn.h"
#include "check_case.h"

/* [GLD-2] full model / attention only / unit, by metadata `scope`. */
int check_case(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, int teacher, dsv4_taps *taps)
{
    const char *scope = st_meta(f, "scope");
    if (scope && strncmp(scope, "attention only", 14) == 0) return check_attention_only(src, f, num, taps);
    if (scope && strncmp(scope, "unit ", 5) == 0) return check_unit(src, f, num, taps);
    return check_full_model(src, f, num, teacher, taps);
}

/* [GLD-4] dispatch on the module named after "unit ". */
int check_unit(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, dsv4_taps *taps)
{
    const char *scope = st_meta(f, "scope");
    (void)src; (void)num; (void)taps;
    return dsv4_set_error("%s: scope '%s' names no unit this version knows", st_path(f), scope);
}
