/* bandwidth.h: the memory read bandwidth reference of the decode benchmarks: a streaming
 * sum over a buffer larger than the caches, on the threads of the pool the decoder itself
 * uses (backend/cpu/parallel.h), one contiguous part per thread, best of 5, read two ways
 * and the faster one taken: the plain loop (the hardware prefetchers alone) and, where the
 * compiler targets AVX-512, one that also prefetches 16 KiB ahead in software, as the decode
 * kernels do. The read starts at the buffer's first 64-byte boundary: from malloc's 16-byte
 * one every 512-bit load straddled two cache lines, and one core measured 23 GB/s where it
 * draws 28 to 33 (Zen 5, 2026-12-07), so the bound the decode kernels were held to was low.
 * Header-only: each bench/ program is built alone. */
#ifndef CB_BENCH_BANDWIDTH_H
#define CB_BENCH_BANDWIDTH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/clock.h"
#include "backend/cpu/parallel.h"

/* One thread's share of a streaming sum: blocks of 64 floats [part * nb / parts, (part + 1)
 * * nb / parts) of x (64-byte aligned, nb = n / 64 blocks); several partial sums so the
 * adds' latency does not bound it. */
typedef struct bench_stream_job {
    const float *x;
    size_t n;
    int parts;
    int prefetch; /* 1: the software-prefetching read */
    float sums[64];
} bench_stream_job;

#define BENCH_STREAM_AHEAD 16384 /* bytes: the best of 4, 8, 16 and 32 KiB on Zen 5, 1 and 2 threads */

static void bench_stream_part(void *ctx, int part) {
    bench_stream_job *j = ctx;
    const size_t nb = j->n / 64, b0 = nb * part / j->parts, b1 = nb * (part + 1) / j->parts;
    float total = 0;
#if defined(__AVX512F__)
    if (j->prefetch) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t b = b0; b < b1; b++) {
            const float *p = j->x + b * 64;
            for (int l = 0; l < 4; l++) _mm_prefetch((const char *)p + BENCH_STREAM_AHEAD + 64 * l, _MM_HINT_T0);
            a0 = _mm512_add_ps(a0, _mm512_load_ps(p));
            a1 = _mm512_add_ps(a1, _mm512_load_ps(p + 16));
            a2 = _mm512_add_ps(a2, _mm512_load_ps(p + 32));
            a3 = _mm512_add_ps(a3, _mm512_load_ps(p + 48));
        }
        j->sums[part] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        return;
    }
#endif
    float acc[32] = {0};
    for (size_t i = 2 * b0; i < 2 * b1; i++) {
        #pragma omp simd
        for (int l = 0; l < 32; l++) acc[l] += j->x[i * 32 + l];
    }
    for (int l = 0; l < 32; l++) total += acc[l];
    j->sums[part] = total;
}

/* GB/s of the best of 5 streaming sums over x (n floats), each way of reading, on `threads`
 * of the pool's threads (1: the caller alone; more: all the pool has). */
static inline double bench_stream_gbs(const float *x, size_t n, int threads, float *sink) {
    const size_t skip = (64 - (uintptr_t)x % 64) % 64 / sizeof(float);
    bench_stream_job j = {x + skip, (n - skip) / 64 * 64, threads > 1 ? cb_parallel_threads() : 1, 0, {0}};
    double best = 1e30;
    cb_parallel_set_serial(threads <= 1);
#if defined(__AVX512F__)
    const int ways = 2;
#else
    const int ways = 1;
#endif
    for (int way = 0; way < ways; way++) {
        j.prefetch = way;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = cb_clock_s();
            cb_parallel_for(j.parts, bench_stream_part, &j);
            double t = cb_clock_s() - t0;
            for (int p = 0; p < j.parts; p++) *sink += j.sums[p];
            if (t < best) best = t;
        }
    }
    cb_parallel_set_serial(0);
    return (double)j.n * sizeof(float) / best / 1e9;
}

#endif
