/* memory_fit.c: training memory from the compiled program's arenas, and the budget. */
#include "runtime/runtime_plan.h"

#include <stdlib.h>
#include <string.h>
#include "model/program.h"
#include "train/optimizer.h"

void cb_runtime_cache_path(char *out, size_t n) {
    const char *dir = getenv("CB_CACHE_DIR"), *home = getenv("HOME");
    if (dir && dir[0]) snprintf(out, n, "%s/runtime_plans.json", dir);
    else snprintf(out, n, "%s/.cache/caramba/runtime_plans.json", home && home[0] ? home : ".");
}

int cb_runtime_memory_budget(cb_backend *be, double *mb, char *why, size_t n, cb_error *e) {
    const char *env = getenv("CB_MEMORY_BUDGET_MB");
    if (env && env[0]) {
        char *end;
        double v = strtod(env, &end);
        if (end == env || *end || !(v > 0))
            return cb_fail(e, CB_E_USAGE, "CB_MEMORY_BUDGET_MB", "CB_MEMORY_BUDGET_MB=%s: expected a number of MiB > 0", env);
        *mb = v;
        snprintf(why, n, "CB_MEMORY_BUDGET_MB");
        return CB_OK;
    }
    cb_backend *dev = be && be->memory_info ? be : cb_backend_cpu();
    size_t free_bytes = 0, total_bytes = 0;
    CB_TRY(dev->memory_info(dev, &free_bytes, &total_bytes, e));
    int gpu = dev->device != CB_DEVICE_CPU;
    double share = gpu ? 0.9 : 0.5;
    *mb = share * (double)free_bytes / 1048576.0;
    snprintf(why, n, "%s of the %.0f MiB %s", gpu ? "90%" : "half", (double)free_bytes / 1048576.0,
             gpu ? "free on the GPU" : "available on the host");
    return CB_OK;
}

int cb_runtime_training_bytes(const cb_model *m, int optimizer_kind, int B, int T, int recompute,
                              size_t recompute_elems, size_t head_chunk_elems, double *bytes, cb_error *e) {
    cb_program prog;
    CB_TRY(cb_program_init(&prog, m->plan, &m->params, B, T, e));
    if (recompute) cb_program_recompute(&prog, recompute_elems);
    /* slots and their gradients, saved for backward, scratch, rope tables, per-row loss stats;
       a fused head keeps one chunk of logits in place of (B,T,V) and their gradient */
    double logits = (double)B * T * prog.vocab_size;
    double slots = head_chunk_elems ? 2.0 * ((double)prog.slot_elems - logits) + (double)head_chunk_elems
                                    : 2.0 * (double)prog.slot_elems;
    double act = slots + (double)prog.saved_elems + (double)prog.scratch_elems + (double)prog.rope_elems + 2.0 * B * T;
    cb_program_free(&prog);
    /* weights, gradients, and the optimizer's state: AdamW m and v, Lion and SGD one */
    double states = optimizer_kind == CB_OPT_ADAMW ? 2 : 1;
    *bytes = 4.0 * (act + (2.0 + states) * (double)m->params.total_floats);
    return CB_OK;
}

size_t cb_runtime_head_chunk_elems(const cb_train_config *c, cb_backend *be, int vocab, int rows_cap) {
    /* fsdp counted on every sharded run, with or without ranks (more memory, never less:
       the fit errs toward a smaller batch) */
    if (cb_train_keeps_logits(c, c->shard_optimizer)) return 0;
    if (!be) be = cb_backend_cpu();
    if (!be->head_loss || !be->head_chunk_rows) return 0;
    int rows = be->head_chunk_rows(be, rows_cap, vocab);
    return rows > 0 ? (size_t)rows * (size_t)vocab : 0;
}
