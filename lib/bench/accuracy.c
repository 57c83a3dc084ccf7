/* accuracy.c: the accuracy benchmark's record around cb_bench_accuracy (see accuracy.h). */
#include "bench/accuracy.h"

#include <string.h>
#include "bench/bench.h"
#include "bench/results_json.h"
#include "core/json_doc.h"
#include "infer/model_dir.h"
#include "verify/eval_suite.h"
#include "verify/spec.h"

int cb_bench_accuracy(const char *model_dir, const cb_model *model, const json_t *suite, cb_accuracy_result *r,
                      cb_error *e) {
    memset(r, 0, sizeof *r);
    char spec[CB_VERIFY_PATH_MAX], used[4200];
    CB_TRY(cb_verify_tokenizer_spec(json_object_get(suite, "tokenizer"), spec, sizeof spec, e));
    cb_eval_suite cases;
    cb_eval_suite_init(&cases);
    int rc = cb_eval_suite_add_json(&cases, json_object_get(suite, "cases"), "config.cases",
                                    cb_loc(suite, "cases"), e);
    cb_tokenizer tok;
    int found = 0, have_tok = 0;
    if (rc == CB_OK) rc = cb_model_tokenizer(&tok, spec, model_dir, model, &found, used, sizeof used, e);
    have_tok = rc == CB_OK;
    cb_eval_report report;
    int ran = 0;
    if (rc == CB_OK) {
        cb_eval_config cfg = {.max_new_tokens = (int)json_integer_value(json_object_get(suite, "max_new_tokens")),
                              .who = "model"};
        if (cfg.max_new_tokens < 1) cfg.max_new_tokens = 32;
        cfg.n_eos = cb_model_eos_ids(model_dir, &tok, cfg.eos, CB_STOP_MAX_EOS);
        int window = (int)json_integer_value(json_object_get(suite, "context_window"));
        rc = cb_eval_suite_run(&report, model, &tok, &cases, &cfg, window > 0 ? window : 2048, e);
        ran = rc == CB_OK;
    }
    if (ran) {
        r->cases = report.n;
        r->correct = report.correct;
        r->accuracy = report.accuracy;
        r->per_case = json_array();
        for (int i = 0; i < cases.n; i++) {
            json_t *o = cb_eval_outcome_json(&cases.cases[i], &report.outcomes[i]);
            json_object_set_new(o, "id", json_string(cases.cases[i].id));
            json_array_append_new(r->per_case, o);
        }
        cb_eval_report_free(&report);
    }
    if (have_tok) cb_tokenizer_free(&tok);
    cb_eval_suite_free(&cases);
    return rc;
}

int cb_bench_accuracy_run(cb_bench_ctx *c, const json_t *bench, const json_t *cfg, cb_bench_model *m, cb_error *e) {
    double t0 = cb_bench_now();
    cb_accuracy_result r;
    CB_TRY(cb_bench_accuracy(m->dir, &m->model, cfg, &r, e));
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
