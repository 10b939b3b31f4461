/* check_attn.h — the attention-only golden cases of `dsv4ref check` (metadata `scope` =
 * "attention only ..."): one attention module run on inputs.x (spec/model.md [MDL-8]). */
#ifndef DSV4_CHECK_ATTN_H
#define DSV4_CHECK_ATTN_H

#include "dsv4ref.h"
#include "safetensors.h"
#include "wsrc.h"

/* Runs the file's schedule through its attention module, tapping
 * taps.<k>.layers.0.attn and taps.<k>.layers.0.attn.indexer. 0 ok, -1 with an error. */
int check_attention_only(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, dsv4_taps *taps);

#endif
