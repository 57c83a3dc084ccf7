/* runtime_plan.h: the seed's self-optimisation for training (its RuntimePlan): decisions
 * measured once per (machine, plan, train config), kept in a cache file, reused after:
 *   dtype and mixed precision (train.dtype auto), the batch size (a number: the manifest's
 *   when it fits the memory budget, else the largest that fits, grad_accum raised to keep
 *   the rows per step; auto: the largest batch that fits the budget, which the block size
 *   scales, capped by the data, a multiple of the ranks, kept in the cache and reused
 *   while it still fits), the thread count of the CPU backend (a training step timed at 1, 2, ...
 *   threads up to the CPU's), the BLAS kernels. CUDA graphs: training steps are launched
 *   op by op (not captured); decoding's graphs are decided by runtime/decode_graphs.h.
 * cb-train --runtime-plan asks for it, and so does train.batch_size: auto (cb-train(1),
 * man/cb.1 "The runtime plan", cb-manifest(5)). */
#ifndef CB_RUNTIME_RUNTIME_PLAN_H
#define CB_RUNTIME_RUNTIME_PLAN_H

#include <jansson.h>
#include <stdio.h>
#include "backend/backend.h"
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
    int batch_size, grad_accum;    /* per micro-step rows (all ranks), micro-steps per optimizer step */
    int batch_auto;                /* train.batch_size: auto */
    int batch_from_cache;          /* auto: the cached batch, which still fits */
    char batch_why[384];
    double budget_mb;              /* the memory budget the batch was fitted to */
    char budget_why[128];          /* where the budget comes from */
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

/* Make the folders above path (mkdir -p of its parent); 0, or -1 with errno. */
int cb_runtime_make_parent(const char *path);

/* What the decisions look at besides the model and the settings. */
typedef struct cb_runtime_env {
    cb_backend *backend; /* the device the run trains on; NULL: the CPU */
    int world;           /* data-parallel ranks (each holds batch / world rows); 0 or 1: one */
    size_t data_tokens;  /* tokens of the training split: batch auto takes no more rows of
                            block_size than it holds; 0: not known, no cap */
} cb_runtime_env;

/* The memory budget in MiB, and in why where it comes from: $CB_MEMORY_BUDGET_MB when set;
 * else the device's free memory (backend.h memory_info; the host's when be is NULL or
 * cannot tell) less a headroom: on the CPU half of what is available (the other half for
 * the data, the page cache and whatever else runs), on a GPU 90% of what is free (the rest
 * for the CUDA context, cuBLAS workspaces and the allocator's rounding). */
int cb_runtime_memory_budget(cb_backend *be, double *mb, char *why, size_t n, cb_error *e);

/* Training memory of the model at batch B and block T, in bytes: weights, gradients and
 * optimizer state (from the parameter count), and the activation arenas of the compiled
 * program (slots, their gradients, saved, scratch), which grow with B; with recompute,
 * those of the program checkpointed for a budget of recompute_elems activations
 * (model/program.h cb_program_recompute; 0: every block). head_chunk_elems > 0: the head is
 * fused with the loss (model/run.h cb_run_init_fused) and that many elements of logits stand
 * for the (B,T,V) logits and their gradient. */
int cb_runtime_training_bytes(const cb_model *m, int optimizer_kind, int B, int T, int recompute,
                              size_t recompute_elems, size_t head_chunk_elems, double *bytes, cb_error *e);
/* The elements of logits one chunk of a fused head holds for a run of cfg's on be (NULL: the
 * CPU) at rows N (at most the largest the backend takes), 0 where the run keeps the logits
 * (distillation reads them, fsdp releases weights by block) or be has no fused head. */
size_t cb_runtime_head_chunk_elems(const cb_train_config *c, cb_backend *be, int vocab, int rows_cap);

/* Decide for cfg's run of m (train: the run's train mapping in the plan, for dtype and
 * amp; env NULL: the CPU, one rank, no data cap): from the cache when it holds the key,
 * else measured and stored. measure = 0 skips the timing (threads stay as they are) and
 * stores nothing. cache_path NULL: the default. A model that does not fit the budget even
 * at batch 1 is CB_E_RUNTIME. */
int cb_runtime_plan_decide(cb_runtime_plan *rp, const cb_model *m, const json_t *train, const cb_train_config *cfg,
                           const cb_runtime_env *env, const char *cache_path, int measure, cb_error *e);

/* Apply: batch size and grad_accum into cfg, the thread count to OpenMP and the BLAS. */
void cb_runtime_plan_apply(const cb_runtime_plan *rp, cb_train_config *cfg);

/* What was decided and whether it came from the cache, a few lines "runtime plan: ...". */
void cb_runtime_plan_print(const cb_runtime_plan *rp, FILE *f);

#endif
