/* results_json.c: measurement records (see results_json.h). */
#include "bench/results_json.h"

#include <math.h>
#include <string.h>
#include <stdio.h>
#include <time.h>
#include "core/json_doc.h"
#include "core/sha256.h"
#include "model/model.h"
#include <stdlib.h>

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

double cb_bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cb_bench_plan_sha256(const json_t *plan, char hex[65]) {
    char *text = cb_model_plan_text(plan);
    if (!text) return -1;
    cb_sha256 s;
    unsigned char d[32];
    cb_sha256_init(&s);
    cb_sha256_update(&s, text, strlen(text));
    cb_sha256_update(&s, "\n", 1);
    cb_sha256_final(&s, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    free(text);
    return 0;
}

json_t *cb_bench_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *cb_bench_record_new(const cb_bench_ctx *c, const json_t *bench, const cb_bench_model *m) {
    json_t *r = cb_doc_new("bench");
    const json_t *cfg = json_object_get(bench, "config");
    json_object_set_new(r, "benchmark", json_string(str(bench, "id")));
    json_object_set_new(r, "type", json_string(str(cfg, "type")));
    json_object_set_new(r, "group", json_string(str(c->group, "name")));
    if (m) {
        json_object_set_new(r, "model", json_string(m->name));
        json_object_set_new(r, "model_dir", json_string(m->dir));
        if (m->loaded) json_object_set_new(r, "model_plan_sha256", json_string(m->model.plan_sha256));
    }
    json_object_set_new(r, "plan_sha256", json_string(c->plan_sha256));
    json_object_set_new(r, "params", json_object());
    json_object_set_new(r, "values", json_object());
    if (c->machine) json_object_set(r, "machine", c->machine);
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(r, "time", json_string(when));
    return r;
}

json_t *cb_bench_params(json_t *rec) { return json_object_get(rec, "params"); }
json_t *cb_bench_values(json_t *rec) { return json_object_get(rec, "values"); }

int cb_bench_emit(cb_bench_ctx *c, json_t *rec, double elapsed_s, cb_error *e) {
    json_object_set_new(rec, "elapsed_s", cb_bench_num(elapsed_s));
    int rc = c->sink.emit ? c->sink.emit(c->sink.ctx, rec, e) : CB_OK;
    json_decref(rec);
    return rc;
}
