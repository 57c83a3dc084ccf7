/* step_timer.h: the wall time of one training step's forward and backward pass of a model
 * on the CPU backend at a given thread count, for the runtime plan's choice of threads. */
#ifndef CB_RUNTIME_STEP_TIMER_H
#define CB_RUNTIME_STEP_TIMER_H

#include "core/error.h"
#include "model/model.h"

/* Best of reps timed passes (after one untimed) at batch B, block T, with `threads`
 * OpenMP and BLAS threads, in milliseconds. The thread counts are left set. */
int cb_runtime_time_step(const cb_model *m, int B, int T, int threads, int reps, double *ms, cb_error *e);

/* Set the OpenMP and BLAS thread counts. */
void cb_runtime_set_threads(int threads);

#endif
