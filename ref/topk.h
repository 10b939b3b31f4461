/* topk.h — top-k selection with the project's tie rule (spec/topk.md [TOPK-1]). */
#ifndef DSV4_TOPK_H
#define DSV4_TOPK_H

#include <stdint.h>

/* score: [n]; writes the indices of the k largest into idx[0..k) ordered by score
 * descending, ties by index ascending. -inf scores sort last; NaN is never passed (callers
 * check). k <= n. */
void topk_desc(const float *score, int64_t n, int64_t k, int64_t *idx);

#endif
