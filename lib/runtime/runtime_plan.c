/* runtime_plan.c: decide, cache, apply and print the runtime plan (see runtime_plan.h). */
#include "runtime/runtime_plan.h"

#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "bench/machine.h"
#include "core/json_doc.h"
#include "core/sha256.h"
#include "experiment/stamps.h"
#include "infer/cache_policy.h"
#include "runtime/step_timer.h"
#include "train/optimizer.h"

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* the machine, the model and the settings a decision depends on; not a measured memory
 * budget, which moves with what else runs (a cached batch is checked against it on every
 * reuse), but one set by CB_MEMORY_BUDGET_MB, which is a setting like the others */
static void plan_key(char key[65], const cb_model *m, const json_t *train, const cb_train_config *c, int world,
                     int max_threads) {
    cb_sha256 s;
    cb_sha256_init(&s);
    char cpu[256], line[512];
    cb_machine_cpu_model(cpu, sizeof cpu);
    cb_stamp_add(&s, "cpu", cpu);
    snprintf(line, sizeof line, "%ld online, %d threads", sysconf(_SC_NPROCESSORS_ONLN), max_threads);
    cb_stamp_add(&s, "threads", line);
    cb_stamp_add(&s, "blas", openblas_get_corename());
    cb_stamp_add(&s, "device", c->device);
    cb_stamp_add_json(&s, "model", json_object_get(m->plan, "model"));
    snprintf(line, sizeof line, "batch %d block %d accum %d optimizer %d dtype %s amp %d", c->batch_size,
             c->block_size, c->grad_accum, (int)c->optimizer.kind, str(train, "dtype") ? str(train, "dtype") : "float32",
             json_is_true(json_object_get(train, "amp")) || json_is_string(json_object_get(train, "amp")) ||
                 json_is_true(json_object_get(train, "fsdp_mixed_precision")));
    cb_stamp_add(&s, "train", line);
    if (c->batch_auto) { /* added only for auto: the keys of a numbered batch stay what they were */
        const char *budget = getenv("CB_MEMORY_BUDGET_MB");
        snprintf(line, sizeof line, "auto, %d ranks, budget %s", world, budget && budget[0] ? budget : "measured");
        cb_stamp_add(&s, "batch", line);
        if (c->recompute) { /* checkpointed activations fit a larger batch */
            snprintf(line, sizeof line, "activation checkpointing, threshold %.17g MiB", c->recompute_mb);
            cb_stamp_add(&s, "recompute", line);
        }
    }
    cb_stamp_hex(&s, key);
}

int cb_runtime_make_parent(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash) return 0;
    *slash = 0;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

/* fixed + per_row * B, B rows on one rank */
static double need_bytes(const cb_runtime_plan *rp, int rows) { return rp->bytes_fixed + rp->bytes_per_row * rows; }

static int no_room(const cb_runtime_plan *rp, const cb_train_config *c, cb_error *e) {
    return cb_fail(e, CB_E_RUNTIME, "", "the model does not fit the memory budget even at batch 1: %.1f MiB of %.1f (%s; "
                   "set CB_MEMORY_BUDGET_MB, or a smaller block_size than %d)",
                   need_bytes(rp, 1) / 1048576.0, rp->budget_mb, rp->budget_why, c->block_size);
}

/* the memory of the run (fixed + per row, from the program at batch 1 and 2) and the budget */
static int measure_memory(cb_runtime_plan *rp, const cb_model *m, const cb_train_config *c, cb_backend *be,
                          cb_error *e) {
    /* with activation checkpointing, the program as the trainer checkpoints it; with a
       threshold the blocks it picks grow with the batch, so the slope from batches 1 and 2
       is at least the slope further on and the fit errs toward a smaller batch */
    double b1, b2;
    const size_t ck = (size_t)(c->recompute_mb * 1048576.0 / sizeof(float));
    /* a fused head's chunk as at the manifest's batch: a constant, at most what it is at smaller ones */
    const cb_param *tok = cb_params_find(&m->params, "embed.tok"); /* (V, d) */
    const size_t chunk = tok ? cb_runtime_head_chunk_elems(c, be, (int)tok->shape[0], c->batch_size * c->block_size) : 0;
    CB_TRY(cb_runtime_training_bytes(m, c->optimizer.kind, 1, c->block_size, c->recompute, ck, chunk, &b1, e));
    CB_TRY(cb_runtime_training_bytes(m, c->optimizer.kind, 2, c->block_size, c->recompute, ck, chunk, &b2, e));
    rp->bytes_per_row = b2 - b1;
    rp->bytes_fixed = b1 - rp->bytes_per_row;
    return cb_runtime_memory_budget(be, &rp->budget_mb, rp->budget_why, sizeof rp->budget_why, e);
}

/* the batch: the manifest's when it fits the budget, else the largest that fits and
 * divides the rows of an optimizer step, grad_accum making up the rest */
static int fit_batch(cb_runtime_plan *rp, const cb_train_config *c, cb_error *e) {
    double budget = rp->budget_mb * 1048576.0, mib = 1048576.0;
    int rows = c->batch_size * c->grad_accum;
    double need = need_bytes(rp, c->batch_size);
    if (need <= budget) {
        rp->batch_size = c->batch_size;
        rp->grad_accum = c->grad_accum;
        snprintf(rp->batch_why, sizeof rp->batch_why, "the manifest's; fits: %.1f MiB of a %.0f MiB budget at block %d",
                 need / mib, rp->budget_mb, c->block_size);
        return CB_OK;
    }
    int fit = rp->bytes_per_row > 0 ? (int)((budget - rp->bytes_fixed) / rp->bytes_per_row) : 0;
    if (fit < 1) return no_room(rp, c, e);
    int b = fit < c->batch_size ? fit : c->batch_size;
    while (b > 1 && rows % b != 0) b--;
    rp->batch_size = b;
    rp->grad_accum = rows / b;
    snprintf(rp->batch_why, sizeof rp->batch_why,
             "the manifest's batch %d needs %.1f MiB, over the %.1f MiB budget at block %d; %d fits (%.1f MiB), "
             "grad_accum %d keeps %d rows a step",
             c->batch_size, need / mib, rp->budget_mb, c->block_size, b, need_bytes(rp, b) / mib, rp->grad_accum, rows);
    return CB_OK;
}

/* batch_size: auto never goes past this many rows: beyond it the data, not the memory,
 * is what runs out, and B * T stays far from an int's range in the program's arenas */
#define CB_RT_MAX_AUTO_ROWS 65536

/* the most rows of all ranks that batch auto may take: the block_size rows the data
 * holds and the bound above, a multiple of the ranks (at least one row a rank); why: which */
static long auto_cap(const cb_train_config *c, int world, size_t data_tokens, const char **why) {
    long cap = CB_RT_MAX_AUTO_ROWS;
    *why = "the bound of auto, 65536 rows";
    if (data_tokens > 0 && (long)(data_tokens / (size_t)c->block_size) < cap) {
        cap = (long)(data_tokens / (size_t)c->block_size);
        *why = "the data holds no more rows of the block";
    }
    cap -= cap % world;
    return cap < world ? world : cap;
}

/* batch_size: auto: the largest batch whose training memory fits the budget on each rank
 * (the block size scales it: the activations grow with it), capped by the data, a
 * multiple of the ranks; grad_accum stays the manifest's, and the effective batch of an
 * optimizer step is batch x grad_accum */
static int fit_auto(cb_runtime_plan *rp, const cb_train_config *c, int world, size_t data_tokens, cb_error *e) {
    double budget = rp->budget_mb * 1048576.0, mib = 1048576.0;
    long per_rank = rp->bytes_per_row > 0 ? (long)((budget - rp->bytes_fixed) / rp->bytes_per_row)
                                          : (need_bytes(rp, 1) <= budget ? CB_RT_MAX_AUTO_ROWS : 0);
    if (per_rank < 1 || need_bytes(rp, 1) > budget) return no_room(rp, c, e);
    const char *cap_why;
    long cap = auto_cap(c, world, data_tokens, &cap_why), fit = per_rank > CB_RT_MAX_AUTO_ROWS ? CB_RT_MAX_AUTO_ROWS : per_rank;
    long b = fit * world < cap ? fit * world : cap;
    rp->batch_size = (int)b;
    rp->grad_accum = c->grad_accum;
    size_t k = (size_t)snprintf(rp->batch_why, sizeof rp->batch_why, "auto: %s; %d row%s%s need%s %.1f MiB of a %.1f MiB budget (%s) at block %d",
                                b < fit * world ? "capped" : "the largest that fits", rp->batch_size,
                                b == 1 ? "" : "s", world > 1 ? " over the ranks" : "", b == 1 ? "s" : "", need_bytes(rp, (int)(b / world)) / mib, rp->budget_mb,
                                rp->budget_why, c->block_size);
    if (b < fit * world && k < sizeof rp->batch_why)
        k += (size_t)snprintf(rp->batch_why + k, sizeof rp->batch_why - k, " (%ld would fit: %s)", fit * world, cap_why);
    if (world > 1 && k < sizeof rp->batch_why)
        k += (size_t)snprintf(rp->batch_why + k, sizeof rp->batch_why - k, ", %ld a rank on %d ranks", b / world, world);
    if (k < sizeof rp->batch_why)
        snprintf(rp->batch_why + k, sizeof rp->batch_why - k, "; %d rows a step with grad_accum %d",
                 rp->batch_size * rp->grad_accum, rp->grad_accum);
    return CB_OK;
}

/* a cached auto batch, reused when it still fits the budget of now, the data and the ranks:
 * a run's batch stays what it was while the machine's free memory moves a little.
 * 0 when it is not usable (then decided again) */
static int auto_from_json(cb_runtime_plan *rp, const json_t *o, const cb_train_config *c, int world, size_t data_tokens) {
    const json_t *b = json_object_get(o, "batch_size");
    const char *why = json_string_value(json_object_get(o, "batch_why"));
    if (!json_is_integer(b) || !why || !json_is_true(json_object_get(o, "batch_auto"))) return 0;
    json_int_t rows = json_integer_value(b);
    const char *cap_why;
    if (rows < world || rows % world != 0 || rows > auto_cap(c, world, data_tokens, &cap_why)) return 0;
    if (need_bytes(rp, (int)(rows / world)) > rp->budget_mb * 1048576.0) return 0;
    rp->batch_size = (int)rows;
    rp->grad_accum = c->grad_accum;
    snprintf(rp->batch_why, sizeof rp->batch_why, "%s; still fits: %.1f MiB of the %.1f MiB budget of now", why,
             need_bytes(rp, (int)(rows / world)) / 1048576.0, rp->budget_mb);
    rp->batch_from_cache = 1;
    return 1;
}

static void decide_dtype(cb_runtime_plan *rp, const json_t *train, const cb_train_config *c) {
    const char *dtype = str(train, "dtype") ? str(train, "dtype") : "float32";
    int cpu = strcmp(c->device, "cuda") != 0;
    snprintf(rp->dtype, sizeof rp->dtype, "%s", strcmp(dtype, "auto") == 0 ? "float32" : dtype);
    snprintf(rp->dtype_why, sizeof rp->dtype_why, "%s",
             strcmp(dtype, "auto") != 0 ? "the manifest's"
             : cpu                      ? "auto: the CPU backend computes in float32"
                                        : "auto: float32 until the CUDA backend decides");
    /* train.amp as cb-train sets it: true or auto on the CUDA backend: bf16 products with
     * float32 sums and master weights; the CPU has none (true there is cb-train's usage error) */
    const json_t *amp = json_object_get(train, "amp");
    int asked = json_is_true(amp) || (json_is_string(amp) && strcmp(json_string_value(amp), "auto") == 0) ||
                json_is_true(json_object_get(train, "fsdp_mixed_precision"));
    rp->amp = asked && !cpu;
    if (asked)
        snprintf(rp->dtype_why + strlen(rp->dtype_why), sizeof rp->dtype_why - strlen(rp->dtype_why), "; amp %s",
                 cpu ? "off: the CPU backend has no mixed precision"
                     : "on: bf16 products, float32 sums and master weights");
}

static int decide_threads(cb_runtime_plan *rp, const cb_model *m, int max_threads, int measure, cb_error *e) {
    const char *env = getenv("OMP_NUM_THREADS");
    rp->threads = max_threads;
    if (env && env[0]) {
        snprintf(rp->threads_why, sizeof rp->threads_why, "OMP_NUM_THREADS (yours)");
        return CB_OK;
    }
    if (!measure) {
        snprintf(rp->threads_why, sizeof rp->threads_why, "not measured: every thread of the CPU");
        return CB_OK;
    }
    /* 1, 2, 4, ... below the CPU's count, and the count itself */
    int candidates[CB_RT_MAX_MEASURED], n = 0;
    for (int t = 1; t < max_threads && n < CB_RT_MAX_MEASURED - 1; t *= 2) candidates[n++] = t;
    candidates[n++] = max_threads;
    rp->n_measured = 0;
    for (int i = 0; i < n; i++) {
        double ms;
        CB_TRY(cb_runtime_time_step(m, rp->batch_size, rp->block_size_for_timing, candidates[i], 2, &ms, e));
        rp->measured_threads[rp->n_measured] = candidates[i];
        rp->measured_ms[rp->n_measured++] = ms;
    }
    /* the fastest; one within 5% of it with fewer threads wins, leaving cores to the rest of the machine */
    int best = 0;
    for (int i = 1; i < rp->n_measured; i++)
        if (rp->measured_ms[i] < rp->measured_ms[best]) best = i;
    for (int i = 0; i < best; i++)
        if (rp->measured_ms[i] <= 1.05 * rp->measured_ms[best]) {
            best = i;
            break;
        }
    rp->threads = rp->measured_threads[best];
    size_t k = (size_t)snprintf(rp->threads_why, sizeof rp->threads_why, "a step took");
    for (int i = 0; i < rp->n_measured && k < sizeof rp->threads_why; i++)
        k += (size_t)snprintf(rp->threads_why + k, sizeof rp->threads_why - k, "%s %.1f ms at %d", i ? "," : "",
                              rp->measured_ms[i], rp->measured_threads[i]);
    return CB_OK;
}

static json_t *to_json(const cb_runtime_plan *rp) {
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:i, s:i, s:s, s:f, s:f, s:i, s:s, s:s, s:s, s:I}", "device", rp->device,
                          "dtype", rp->dtype, "dtype_why", rp->dtype_why, "amp", rp->amp, "batch_size", rp->batch_size,
                          "grad_accum", rp->grad_accum, "batch_why", rp->batch_why, "bytes_fixed", rp->bytes_fixed,
                          "bytes_per_row", rp->bytes_per_row, "threads", rp->threads, "threads_why", rp->threads_why,
                          "blas", rp->blas, "cuda_graphs", rp->cuda_graphs, "created", (json_int_t)time(NULL));
    json_t *ms = json_array();
    for (int i = 0; i < rp->n_measured; i++)
        json_array_append_new(ms, json_pack("{s:i, s:f}", "threads", rp->measured_threads[i], "step_ms", rp->measured_ms[i]));
    json_object_set_new(o, "measured", ms);
    json_object_set_new(o, "batch_auto", json_boolean(rp->batch_auto));
    return o;
}

/* the cached thread decision, when it is whole; 0 when it is not usable */
static int threads_from_json(cb_runtime_plan *rp, const json_t *o) {
    const char *tw = json_string_value(json_object_get(o, "threads_why"));
    const json_t *t = json_object_get(o, "threads");
    if (!tw || !json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > 4096) return 0;
    snprintf(rp->threads_why, sizeof rp->threads_why, "%s", tw);
    rp->threads = (int)json_integer_value(t);
    size_t i;
    const json_t *x;
    json_array_foreach(json_object_get(o, "measured"), i, x) {
        if (rp->n_measured >= CB_RT_MAX_MEASURED) break;
        rp->measured_threads[rp->n_measured] = (int)json_integer_value(json_object_get(x, "threads"));
        rp->measured_ms[rp->n_measured++] = json_number_value(json_object_get(x, "step_ms"));
    }
    return 1;
}

int cb_runtime_plan_decide(cb_runtime_plan *rp, const cb_model *m, const json_t *train, const cb_train_config *c,
                           const cb_runtime_env *env, const char *cache_path, int measure, cb_error *e) {
    memset(rp, 0, sizeof *rp);
    if (cache_path) snprintf(rp->cache_path, sizeof rp->cache_path, "%s", cache_path);
    else cb_runtime_cache_path(rp->cache_path, sizeof rp->cache_path);
    int max_threads = omp_get_max_threads(), world = env && env->world > 1 ? env->world : 1;
    size_t data_tokens = env ? env->data_tokens : 0;
    rp->batch_auto = c->batch_auto;
    plan_key(rp->key, m, train, c, world, max_threads);
    snprintf(rp->device, sizeof rp->device, "%s", strcmp(c->device, "cuda") == 0 ? "cuda" : "cpu");
    snprintf(rp->blas, sizeof rp->blas, "OpenBLAS %s", openblas_get_corename());
    snprintf(rp->cuda_graphs, sizeof rp->cuda_graphs, "%s",
             strcmp(rp->device, "cpu") == 0 ? "not applicable (cpu)"
                                            : "not applicable (training steps launch op by op; decoding decides with "
                                              "cb-generate --runtime-plan)");
    rp->block_size_for_timing = c->block_size;

    json_t *cache = NULL;
    cb_error ignore;
    if (access(rp->cache_path, F_OK) == 0 && cb_doc_load(rp->cache_path, "runtime_plans", &cache, &ignore) != CB_OK)
        cache = NULL; /* unreadable or not a cache: decided again and the file replaced */
    const json_t *hit = json_object_get(json_object_get(cache, "plans"), rp->key);
    /* a numbered batch and the dtype are computed (the arenas, the budget of now); an auto
     * batch is reused from the cache while it fits, else fitted; the thread count is
     * measured once and reused */
    int rc = measure_memory(rp, m, c, env ? env->backend : NULL, e);
    if (rc == CB_OK && c->batch_auto) {
        if (!(hit && auto_from_json(rp, hit, c, world, data_tokens))) rc = fit_auto(rp, c, world, data_tokens, e);
    } else if (rc == CB_OK) {
        rc = fit_batch(rp, c, e);
    }
    if (rc == CB_OK) decide_dtype(rp, train, c);
    int threads_cached = rc == CB_OK && hit && threads_from_json(rp, hit);
    rp->from_cache = threads_cached;
    if (rc == CB_OK && !threads_cached)
        rc = decide_threads(rp, m, max_threads, measure && strcmp(rp->device, "cpu") == 0, e);
    int news = !threads_cached || (c->batch_auto && !rp->batch_from_cache);
    if (rc == CB_OK && measure && news) {
        if (!cache) cache = cb_doc_new("runtime_plans");
        json_t *plans = json_object_get(cache, "plans");
        if (!json_is_object(plans)) {
            plans = json_object();
            json_object_set_new(cache, "plans", plans);
        }
        json_object_set_new(plans, rp->key, to_json(rp));
        /* a cache that cannot be written costs a measurement next time, not this run */
        if (cb_runtime_make_parent(rp->cache_path) == 0) cb_doc_save(cache, rp->cache_path, &ignore);
    }
    json_decref(cache);
    return rc;
}

void cb_runtime_plan_apply(const cb_runtime_plan *rp, cb_train_config *cfg) {
    cfg->batch_size = rp->batch_size;
    cfg->grad_accum = rp->grad_accum;
    if (strcmp(rp->device, "cpu") == 0) cb_runtime_set_threads(rp->threads);
}

void cb_runtime_plan_print(const cb_runtime_plan *rp, FILE *f) {
    fprintf(f, "runtime plan (threads %s %s, key %.12s; %s):\n", rp->from_cache ? "from the cache" : "measured now, kept in",
            rp->cache_path, rp->key,
            !rp->batch_auto         ? "batch and dtype computed now"
            : rp->batch_from_cache ? "batch auto from the cache, dtype computed now"
                                    : "batch auto decided now and kept, dtype computed now");
    fprintf(f, "  dtype        %s (%s)\n", rp->dtype, rp->dtype_why);
    fprintf(f, "  batch        %d x grad_accum %d (%s)\n", rp->batch_size, rp->grad_accum, rp->batch_why);
    fprintf(f, "  threads      %d (%s)\n", rp->threads, rp->threads_why);
    fprintf(f, "  blas         %s\n", rp->blas);
    fprintf(f, "  cuda graphs  %s\n", rp->cuda_graphs);
}
