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

double cb_runtime_memory_budget_mb(void) {
    const char *env = getenv("CB_MEMORY_BUDGET_MB");
    if (env && atof(env) > 0) return atof(env);
    FILE *f = fopen("/proc/meminfo", "r");
    double kb = 0;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb > 0 ? kb / 1024.0 / 2.0 : 1024.0;
}

int cb_runtime_training_bytes(const cb_model *m, int optimizer_kind, int B, int T, double *bytes, cb_error *e) {
    cb_program prog;
    CB_TRY(cb_program_init(&prog, m->plan, &m->params, B, T, e));
    /* slots and their gradients, saved for backward, scratch, rope tables, per-row loss stats */
    double act = 2.0 * (double)prog.slot_elems + (double)prog.saved_elems + (double)prog.scratch_elems +
                 (double)prog.rope_elems + 2.0 * B * T;
    cb_program_free(&prog);
    /* weights, gradients, and the optimizer's state: AdamW m and v, Lion and SGD one */
    double states = optimizer_kind == CB_OPT_ADAMW ? 2 : 1;
    *bytes = 4.0 * (act + (2.0 + states) * (double)m->params.total_floats);
    return CB_OK;
}
