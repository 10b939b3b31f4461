/* topk.h — top-k selection with the project's tie rule (spec/topk.md [TOPK-1]). */
#ifndef DSV4_TOPK_H
#define DSV4_TOPK_H

#include <stdint.h>

/* score: [n]; writes the indices of the k largest into idx[0..k) ordered by score
 * descending, ties by index ascending. -inf scores sort last; NaN is never passed (callers
 * check). k <= n. */
void topk_desc(const float *score, int64_t n, int64_t k, int64_t *idx);

/* [TOPK-2] the exact indices and order torch.topk(largest, sorted) returns on the CPU
 * (libstdc++ partial_sort when k*64 <= n, else nth_element + sort). work: [n] scratch. */
void topk_torch_cpu(const float *score, int64_t n, int64_t k, int64_t *idx, int64_t *work);

/* Which rule topk_select applies (a run-wide setting, chosen by the CLI): the spec rule
 * (default) or torch's CPU order (to reproduce golden files made by the official code on
 * the CPU, `check` picks it from the file's metadata). */
typedef enum { TOPK_RULE_SPEC = 0, TOPK_RULE_TORCH_CPU = 1 } topk_rule;
void topk_set_rule(topk_rule r);
topk_rule topk_get_rule(void);
const char *topk_rule_name(topk_rule r);
/* Selection under the rule in force; 0, or -1 (allocation failure) with an error. */
int topk_select(const float *score, int64_t n, int64_t k, int64_t *idx);

#endif
