/* check_case.h — run the case a golden file holds (spec/golden-suite.md [GLD-2]): the whole
 * model (no `scope`), one attention module (`scope` "attention only ...", tools/check_attn.c)
 * or one V4 sub-module (`scope` "unit <module>", tools/check_unit.c). `dsv4ref check` and
 * `dsv4ref golden` run the same code, so a golden file passes `check` exactly. */
#ifndef DSV4_CHECK_CASE_H
#define DSV4_CHECK_CASE_H

#include "dsv4ref.h"
#include "safetensors.h"
#include "wsrc.h"

/* Dispatches on metadata `scope`; taps named taps.<k>.<module path>. 0 ok, -1 with an error. */
int check_case(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, int teacher, dsv4_taps *taps);
/* The whole model over the schedule (tools/cmd_check.c). */
int check_full_model(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, int teacher, dsv4_taps *taps);
/* One V4 sub-module: scope "unit compressor", "unit indexer", "unit mhc", "unit moe". */
int check_unit(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, dsv4_taps *taps);

#endif
