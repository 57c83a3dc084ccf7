/* results_json.h: the JSON line of one measurement (docs/DESIGN.md section 8: every
 * measurement carries its context):
 *   {"cb_version", "kind": "bench", "benchmark": id, "type", "group", "model": NAME,
 *    "model_dir", "model_plan_sha256", "plan_sha256", "params": {...}, "values": {...},
 *    "machine": {...}, "time": ISO 8601 UTC, "elapsed_s"}
 * A value measured over repeats is a stats object (stats.h: mean, sd, p50, p90, ci95). A
 * point of a grid that cannot be measured on this model (a context longer than the model's)
 * has "skipped": why and no values. */
#ifndef CB_BENCH_RESULTS_JSON_H
#define CB_BENCH_RESULTS_JSON_H

#include <jansson.h>
#include "bench/bench.h"

/* A record with the common members filled and empty "params" and "values" objects. */
json_t *cb_bench_record_new(const cb_bench_ctx *c, const json_t *bench, const cb_bench_model *m);

/* The record's params / values objects (borrowed). */
json_t *cb_bench_params(json_t *rec);
json_t *cb_bench_values(json_t *rec);

/* Stamp elapsed_s and hand the record to the sink; always decrefs rec. */
int cb_bench_emit(cb_bench_ctx *c, json_t *rec, double elapsed_s, cb_error *e);

/* The sha256 of a plan as plan.json holds it (its text and the final newline: the
 * model's plan_sha256, model/model.h). 0, or -1 when out of memory. */
int cb_bench_plan_sha256(const json_t *plan, char hex[65]);

/* Seconds of a monotonic clock. */
double cb_bench_now(void);

/* A finite number, or null. */
json_t *cb_bench_num(double v);

#endif
