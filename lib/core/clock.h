/* clock.h: seconds on the monotonic clock, for timing a stretch of work (prefill, decode,
 * a step, a progress line); only differences of two readings mean anything. */
#ifndef CB_CORE_CLOCK_H
#define CB_CORE_CLOCK_H

#include <time.h>

static inline double cb_clock_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
