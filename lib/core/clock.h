/* clock.h: the one monotonic clock every timing reads (progress, tokens/s, profiling). */
#ifndef CB_CORE_CLOCK_H
#define CB_CORE_CLOCK_H

#include <time.h>

/* Seconds on CLOCK_MONOTONIC: differences are elapsed wall time, never stepped back. */
static inline double cb_clock_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
