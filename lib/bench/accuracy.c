/* accuracy.c: the accuracy benchmark's record around cb_bench_accuracy (see accuracy.h). */
#include "bench/accuracy.h"

#include <string.h>
#include "bench/bench.h"
#include "bench/results_json.h"

/* The seam to lib/verify: replace this body with the call to its eval runner. */
int cb_bench_accuracy(const char *model_dir, const json_t *suite, cb_accuracy_result *r, cb_error *e) {
    (void)suite;
    memset(r, 0, sizeof *r);
    return cb_fail(e, CB_E_USAGE, model_dir,
                   "accuracy benchmarks run cb-verify's eval suites, which are not in this build");
}

int cb_bench_accuracy_run(cb_bench_ctx *c, const json_t *bench, const json_t *cfg, cb_bench_model *m, cb_error *e) {
    double t0 = cb_bench_now();
    cb_accuracy_result r;
    CB_TRY(cb_bench_accuracy(m->dir, cfg, &r, e));
    json_t *rec = cb_bench_record_new(c, bench, m);
    json_t *p = cb_bench_params(rec);
    json_object_set(p, "max_new_tokens", json_object_get(cfg, "max_new_tokens"));
    json_object_set(p, "context_window", json_object_get(cfg, "context_window"));
    json_t *v = cb_bench_values(rec);
    json_object_set_new(v, "cases", json_integer(r.cases));
    json_object_set_new(v, "correct", json_integer(r.correct));
    json_object_set_new(v, "accuracy", cb_bench_num(r.accuracy));
    if (r.per_case) json_object_set_new(v, "per_case", r.per_case);
    return cb_bench_emit(c, rec, cb_bench_now() - t0, e);
}
