/* bandwidth.h: the memory read bandwidth reference of the decode benchmarks: a streaming
 * sum over a buffer larger than the caches, on the threads of the pool the decoder itself
 * uses (backend/cpu/parallel.h), one contiguous part per thread, best of 5. Header-only: each
 * bench/ program is built alone. */
#ifndef CB_BENCH_BANDWIDTH_H
#define CB_BENCH_BANDWIDTH_H

#include <stddef.h>
#include <time.h>

#include "core/clock.h"
#include "backend/cpu/parallel.h"

/* One thread's share of a streaming sum: floats [part * n / parts, (part + 1) * n / parts)
 * of x, 32 partial sums so the adds' latency does not bound it. */
typedef struct bench_stream_job {
    const float *x;
    size_t n;
    int parts;
    float sums[64];
} bench_stream_job;

static void bench_stream_part(void *ctx, int part) {
    bench_stream_job *j = ctx;
    const size_t i0 = j->n / 32 * part / j->parts, i1 = j->n / 32 * (part + 1) / j->parts;
    float acc[32] = {0};
    for (size_t i = i0; i < i1; i++) {
        #pragma omp simd
        for (int l = 0; l < 32; l++) acc[l] += j->x[i * 32 + l];
    }
    float total = 0;
    for (int l = 0; l < 32; l++) total += acc[l];
    j->sums[part] = total;
}

/* GB/s of the best of 5 streaming sums over x (n floats, n a multiple of 32) on `threads`
 * of the pool's threads (1: the caller alone; more: all the pool has). */
static inline double bench_stream_gbs(const float *x, size_t n, int threads, float *sink) {
    bench_stream_job j = {x, n, threads > 1 ? cb_parallel_threads() : 1, {0}};
    double best = 1e30;
    cb_parallel_set_serial(threads <= 1);
    for (int rep = 0; rep < 5; rep++) {
        double t0 = cb_clock_s();
        cb_parallel_for(j.parts, bench_stream_part, &j);
        double t = cb_clock_s() - t0;
        for (int p = 0; p < j.parts; p++) *sink += j.sums[p];
        if (t < best) best = t;
    }
    cb_parallel_set_serial(0);
    return (double)n * sizeof(float) / best / 1e9;
}

#endif
