/* tiny_model.h — deterministic seeded weights for any V4 config, in the official checkpoint
 * names, written to a safetensors file (the embedded default model of `dsv4ref run`). */
#ifndef DSV4_TINY_MODEL_H
#define DSV4_TINY_MODEL_H

#include <stdint.h>
#include "config.h"

/* The embedded tiny config: SWA, CSA, HCA(8), CSA + an SWA MTP block; hash routing on layer 0,
 * score routing elsewhere; all dimensions distinct (pitfall 18). */
void tiny_model_config(dsv4_config *c);
/* Writes seeded random weights for c to path (bf16 Linear weights, fp32 mHC / compressor /
 * sink / bias parameters). 0 ok, -1 with an error. */
int tiny_model_write(const dsv4_config *c, uint64_t seed, const char *path);

#endif
