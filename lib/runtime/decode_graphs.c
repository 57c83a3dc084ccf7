/* decode_graphs.c: measure, cache and print whether GPU decode steps are captured as CUDA
 * graphs (see decode_graphs.h). */
#include "runtime/decode_graphs.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "bench/machine.h"
#include "core/json_doc.h"
#include "core/sha256.h"
#include "experiment/stamps.h"
#include "runtime/runtime_plan.h"

#define PROMPT 16

/* the machine (CPU, GPUs, driver), the model, and the session's kinds and plan mode */
static void graphs_key(char key[65], const cb_model *m, const cb_session_config *sc) {
    cb_sha256 s;
    cb_sha256_init(&s);
    cb_stamp_add(&s, "decision", "decode cuda graphs");
    json_t *machine = cb_machine_describe(sc->backend ? sc->backend->name : "cpu");
    json_object_del(machine, "threads"); /* how many threads the host runs does not move a GPU step */
    cb_stamp_add_json(&s, "machine", machine);
    json_decref(machine);
    cb_stamp_add_json(&s, "model", json_object_get(m->plan, "model"));
    char line[160];
    snprintf(line, sizeof line, "weights %d k %d k_sem %d v %d plan %d chunk %d", (int)sc->weight_kind, (int)sc->kinds.k,
             (int)sc->kinds.k_sem, (int)sc->kinds.v, (int)sc->plan.mode, sc->chunk);
    cb_stamp_add(&s, "session", line);
    cb_stamp_hex(&s, key);
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median ms of `steps` greedy steps of a fresh session (graphs_off as given), after a
 * prompt of PROMPT ids and warm-up steps that take the first captures */
static int time_steps(const cb_model *m, const cb_session_config *sc, int graphs_off, int steps, double *ms,
                      cb_error *e) {
    cb_session_config c = *sc;
    c.graphs_off = graphs_off;
    c.max_seq_len = PROMPT + 8 + steps + 1;
    cb_session s;
    CB_TRY(cb_session_init(&s, m, &c, e));
    int32_t prompt[PROMPT], next = 0;
    for (int i = 0; i < PROMPT; i++) prompt[i] = (int32_t)((i * 7919) % s.vocab);
    double *t = calloc((size_t)steps, sizeof *t);
    int bad = 0, rc = t ? cb_session_forward_argmax(&s, prompt, PROMPT, &next, &bad, e)
                        : cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    for (int i = 0; rc == CB_OK && i < 8 + steps; i++) {
        int32_t tok = next >= 0 ? next : 0;
        double t0 = now_ms();
        rc = cb_session_forward_argmax(&s, &tok, 1, &next, &bad, e); /* the id comes back: the step is done */
        if (i >= 8) t[i - 8] = now_ms() - t0;
    }
    if (rc == CB_OK) {
        qsort(t, (size_t)steps, sizeof *t, cmp_double);
        *ms = t[steps / 2];
    }
    free(t);
    cb_session_free(&s);
    return rc;
}

int cb_decode_graphs_decide(cb_decode_graphs *g, const cb_model *m, cb_session_config *sc, const char *cache_path,
                            int steps, cb_error *e) {
    memset(g, 0, sizeof *g);
    g->applicable = sc->backend && sc->backend->device == CB_DEVICE_CUDA;
    if (!g->applicable) return CB_OK;
    g->steps = steps > 0 ? steps : 32;
    const int ctx = cb_model_max_seq_len(m); /* learned positions bound the timed steps */
    if (ctx > 0 && PROMPT + 9 + g->steps > ctx) g->steps = ctx - PROMPT - 9;
    if (g->steps < 4) { /* too short a context to time: the backend's default, graphs on */
        g->steps = 0;
        g->on = 1;
        sc->graphs_off = 0;
        return CB_OK;
    }
    if (cache_path) snprintf(g->cache_path, sizeof g->cache_path, "%s", cache_path);
    else cb_runtime_cache_path(g->cache_path, sizeof g->cache_path);
    graphs_key(g->key, m, sc);

    json_t *cache = NULL;
    cb_error ignore;
    if (access(g->cache_path, F_OK) == 0 && cb_doc_load(g->cache_path, "runtime_plans", &cache, &ignore) != CB_OK)
        cache = NULL; /* unreadable or not a cache: measured again and the file replaced */
    const json_t *hit = json_object_get(json_object_get(cache, "decode_graphs"), g->key);
    if (hit && json_is_boolean(json_object_get(hit, "on"))) {
        g->from_cache = 1;
        g->on = json_is_true(json_object_get(hit, "on"));
        g->ms_graphed = json_number_value(json_object_get(hit, "ms_graphed"));
        g->ms_uncaptured = json_number_value(json_object_get(hit, "ms_uncaptured"));
        g->steps = (int)json_integer_value(json_object_get(hit, "steps"));
    } else {
        int rc = time_steps(m, sc, 1, g->steps, &g->ms_uncaptured, e);
        if (rc == CB_OK) rc = time_steps(m, sc, 0, g->steps, &g->ms_graphed, e);
        if (rc != CB_OK) {
            json_decref(cache);
            return rc;
        }
        g->on = g->ms_graphed <= 1.02 * g->ms_uncaptured;
        if (!cache) cache = cb_doc_new("runtime_plans");
        json_t *all = json_object_get(cache, "decode_graphs");
        if (!json_is_object(all)) {
            all = json_object();
            json_object_set_new(cache, "decode_graphs", all);
        }
        json_object_set_new(all, g->key,
                            json_pack("{s:b, s:f, s:f, s:i, s:I}", "on", g->on, "ms_graphed", g->ms_graphed,
                                      "ms_uncaptured", g->ms_uncaptured, "steps", g->steps,
                                      "created", (json_int_t)time(NULL)));
        /* a cache that cannot be written costs a measurement next time, not this run */
        if (cb_runtime_make_parent(g->cache_path) == 0) cb_doc_save(cache, g->cache_path, &ignore);
    }
    json_decref(cache);
    sc->graphs_off = !g->on;
    return CB_OK;
}

void cb_decode_graphs_print(const cb_decode_graphs *g, FILE *f) {
    if (!g->applicable) {
        fprintf(f, "runtime plan: cuda graphs not applicable (the cpu captures nothing)\n");
        return;
    }
    if (!g->steps) {
        fprintf(f, "runtime plan: cuda graphs on (the model's context is too short to time steps; not cached)\n");
        return;
    }
    fprintf(f, "runtime plan: cuda graphs %s (a step took %.3f ms graphed, %.3f ms op by op, median of %d; %s %s, key %.12s)\n",
            g->on ? "on" : "off", g->ms_graphed, g->ms_uncaptured, g->steps,
            g->from_cache ? "from the cache" : "measured now, kept in", g->cache_path, g->key);
}
