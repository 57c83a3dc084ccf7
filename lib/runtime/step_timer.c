/* step_timer.c: a training step timed at a thread count (see step_timer.h). */
#include "runtime/step_timer.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "core/clock.h"
#include "model/program.h"
#include "model/run.h"

void cb_runtime_set_threads(int threads) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
}

int cb_runtime_time_step(const cb_model *m, int B, int T, int threads, int reps, double *ms, cb_error *e) {
    cb_program prog;
    CB_TRY(cb_program_init(&prog, m->plan, &m->params, B, T, e));
    cb_run run;
    int rc = cb_run_init_fused(&run, cb_backend_cpu(), &prog, 0, e); /* as the trainer's */
    if (rc != CB_OK) {
        cb_program_free(&prog);
        return rc;
    }
    size_t n = (size_t)B * T;
    int32_t *tokens = cb_malloc(2 * n, sizeof *tokens, e);
    float *grads = cb_calloc(m->params.total_floats, sizeof *grads, e);
    if (!tokens || !grads) rc = CB_E_RUNTIME;
    if (rc == CB_OK) {
        /* a fixed pattern over the vocabulary: the time of a pass does not depend on the ids */
        for (size_t i = 0; i < 2 * n; i++) tokens[i] = (int32_t)((i * 2654435761u) % (size_t)prog.vocab_size);
        cb_runtime_set_threads(threads);
        double best = 0;
        for (int r = 0; r <= reps; r++) {
            double t0 = cb_clock_s();
            cb_run_step(&run, &prog, m->weights, grads, tokens, tokens + n);
            double t = (cb_clock_s() - t0) * 1e3;
            if (r > 0 && (best == 0 || t < best)) best = t; /* the first pass warms caches and pages */
        }
        *ms = best;
    }
    free(tokens);
    free(grads);
    cb_run_free(&run);
    cb_program_free(&prog);
    return rc;
}
