/* parallel.h: the fork-join of decoding's many small parallel loops (a matvec, one layer's
 * attention): items claimed one at a time by the caller and a persistent pool of workers,
 * and a return as soon as every item is done, with no barrier that every worker must reach.
 *
 * Why not an OpenMP region: a decode step runs about a hundred of them, each ending in a
 * barrier that waits for every team thread. On a machine shared with other busy processes a
 * worker is often descheduled, and then every region waits for it to be scheduled again:
 * 2 threads on 2 loaded cores decoded 5x slower than 1. Here a worker that is not running
 * claims nothing and the caller does the items itself; only an item a worker has started
 * is waited for. */
#ifndef CB_INFER_PARALLEL_H
#define CB_INFER_PARALLEL_H

#include <stddef.h>

/* One item of a loop: fn(ctx, item). */
typedef void (*cb_parallel_fn)(void *ctx, int item);

/* Run fn(ctx, i) for every i in [0, n) and return when all have returned. Items run on the
 * calling thread and the pool's workers, in no set order, each once. Serial (in order, on
 * the caller) when n < 2, when the pool has no workers, from inside an item, or while
 * another thread is in cb_parallel_for. */
void cb_parallel_for(int n, cb_parallel_fn fn, void *ctx);

/* serial != 0: the loops that follow run on the caller alone, in order, until it is called
 * again with 0 (measuring one thread against all in one process: the pool keeps the
 * threads it started with). */
void cb_parallel_set_serial(int serial);

/* A scratch buffer of at least bytes (64-byte aligned) that belongs to the calling thread,
 * for an item's packed operands: valid until this thread's next call, NULL when there is no
 * memory. Each thread keeps its largest buffer for the life of the process (the pool's
 * threads do not end): a prefill's items asked malloc for 150-400 KB panels each, which
 * glibc mapped and unmapped every time, and the page faults cost a twentieth of it. */
void *cb_parallel_scratch(size_t bytes);

/* Threads that run items, the caller included: omp_get_max_threads() when the pool starts
 * (OMP_NUM_THREADS), at most 64. Workers spin a while for the next loop, then sleep:
 * 50 us; OMP_WAIT_POLICY=passive 5 us (the gaps inside a decode step), active 5 ms. */
int cb_parallel_threads(void);

#endif
