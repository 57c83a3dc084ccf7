/* count.h: int64 arithmetic for parameter and cache counts that notices overflow
 * (a manifest with d_model 10^12 must give an error, not a wrapped number). */
#ifndef CB_PLAN_COUNT_H
#define CB_PLAN_COUNT_H

#include <stdint.h>

/* a*b and a+b; on overflow *overflow is set and INT64_MAX returned. A count that is
 * already INT64_MAX (an earlier overflow) stays there. */
static inline int64_t cb_count_mul(int64_t a, int64_t b, int *overflow) {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) { *overflow = 1; return INT64_MAX; }
    return r;
}

static inline int64_t cb_count_add(int64_t a, int64_t b, int *overflow) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) { *overflow = 1; return INT64_MAX; }
    return r;
}

#endif
