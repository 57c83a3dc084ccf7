/* runtime_plan.h: the seed's self-optimisation for training (its RuntimePlan): decisions
 * measured once per (machine, plan, train config), kept in a cache file, reused after:
 *   dtype and mixed precision (train.dtype auto), the batch size (the manifest's when it
 *   fits the memory budget, else the largest that fits, grad_accum raised to keep the rows
 *   per step), the thread count of the CPU backend (a training step timed at 1, 2, ...
 *   threads up to the CPU's), the BLAS kernels, and on a GPU whether to capture CUDA
 *   graphs (the CUDA backend's decision: "not applicable" on the CPU).
 * cb-train --runtime-plan asks for it (cb-train(1), man/cb.1 "The runtime plan"). */
#ifndef CB_RUNTIME_RUNTIME_PLAN_H
#define CB_RUNTIME_RUNTIME_PLAN_H

#include <jansson.h>
#include <stdio.h>
#include "core/error.h"
#include "model/model.h"
#include "train/config.h"

#define CB_RT_MAX_MEASURED 8

typedef struct cb_runtime_plan {
    char key[65];                  /* sha256 of what the decisions depend on */
    int from_cache;                /* 1: read from the cache, nothing measured */
    char cache_path[4096];
    char device[16];
    char dtype[16], dtype_why[160];
    int amp;
    int batch_size, grad_accum;    /* per micro-step rows, micro-steps per optimizer step */
    char batch_why[256];
    double budget_mb;              /* the memory budget the batch was fitted to */
    double bytes_fixed, bytes_per_row; /* training memory = fixed + per_row * batch */
    int threads;
    char threads_why[256];
    int n_measured;
    int measured_threads[CB_RT_MAX_MEASURED];
    double measured_ms[CB_RT_MAX_MEASURED]; /* one training step (forward + backward) */
    char blas[160];
    char cuda_graphs[160];
    int block_size_for_timing;     /* the run's block size */
} cb_runtime_plan;

/* The cache file: $CB_CACHE_DIR/runtime_plans.json, else ~/.cache/caramba/runtime_plans.json. */
void cb_runtime_cache_path(char *out, size_t n);

/* The memory budget in MiB: $CB_MEMORY_BUDGET_MB, else half of MemAvailable. */
double cb_runtime_memory_budget_mb(void);

/* Training memory of the model at batch B and block T, in bytes: weights, gradients and
 * optimizer state (from the parameter count), and the activation arenas of the compiled
 * program (slots, their gradients, saved, scratch), which grow with B. */
int cb_runtime_training_bytes(const cb_model *m, int optimizer_kind, int B, int T, double *bytes, cb_error *e);

/* Decide for cfg's run of m (train: the run's train mapping in the plan, for dtype and
 * amp): from the cache when it holds the key, else measured and stored. measure = 0 skips
 * the timing (threads stay as they are). cache_path NULL: the default. */
int cb_runtime_plan_decide(cb_runtime_plan *rp, const cb_model *m, const json_t *train, const cb_train_config *cfg,
                           const char *cache_path, int measure, cb_error *e);

/* Apply: batch size and grad_accum into cfg, the thread count to OpenMP and the BLAS. */
void cb_runtime_plan_apply(const cb_runtime_plan *rp, cb_train_config *cfg);

/* What was decided and whether it came from the cache, a few lines "runtime plan: ...". */
void cb_runtime_plan_print(const cb_runtime_plan *rp, FILE *f);

#endif
