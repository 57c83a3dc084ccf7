/* verify.c: a verification from start to verdict: open the models and the data the check
 * reads, run compare, fidelity or eval, and put every number, threshold, check and
 * warning into the verify.json document. */
#include "verify/verify.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/json_doc.h"
#include "infer/model_dir.h"
#include "infer/sample.h"
#include "io/model_dir.h"
#include "verify/compare.h"
#include "verify/eval_suite.h"
#include "verify/fidelity.h"
#include "verify/split.h"
#include "verify/verdict.h"

static int64_t vocab_of(const cb_model *m) {
    return json_integer_value(json_object_get(json_object_get(m->plan, "model"), "vocab_size"));
}

/* a copy of a manifest node without its "@loc" annotations */
static json_t *strip_locs(const json_t *v) {
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (!cb_is_annotation(k)) json_object_set_new(o, k, strip_locs(x));
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(a, strip_locs(x));
        return a;
    }
    return json_deep_copy(v);
}

static json_t *model_json(const char *dir, const cb_model *m) {
    json_t *o = json_object();
    json_object_set_new(o, "dir", json_string(dir));
    json_object_set_new(o, "plan_sha256", json_string(m->plan_sha256));
    json_object_set_new(o, "parameters", json_integer((json_int_t)m->params.total_floats));
    return o;
}

static json_t *data_json(const cb_verify_spec *s, const char *path, const cb_verify_data *d) {
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(path));
    json_object_set_new(o, "split", json_string(cb_verify_split_name(d->split)));
    json_object_set_new(o, "tokens", json_integer((json_int_t)d->tokens->n_tokens));
    json_object_set_new(o, "batches", json_integer(s->batches));
    json_object_set_new(o, "batch_size", json_integer(s->batch_size));
    json_object_set_new(o, "block_size", json_integer(s->block_size));
    return o;
}

/* sequential windows wrap around a split shorter than what the batches read */
static void warn_repeats(cb_verdict *v, const cb_verify_spec *s, const cb_verify_data *d) {
    size_t want = (size_t)s->batches * (size_t)s->batch_size * (size_t)s->block_size + 1;
    if (want > d->tokens->n_tokens)
        cb_verdict_warn(v, "the %s split holds %zu tokens and %d batches of %dx%d read %zu: windows repeat",
                        cb_verify_split_name(d->split), d->tokens->n_tokens, s->batches, s->batch_size, s->block_size,
                        want);
}

static json_t *l1_json(const cb_l1_stat *st) {
    json_t *o = json_object();
    json_object_set_new(o, "mean_l1", cb_json_num(cb_l1_mean(st)));
    json_object_set_new(o, "max_l1", cb_json_num(st->max));
    json_object_set_new(o, "elements", json_integer((json_int_t)st->n));
    return o;
}

static json_t *limits_json(const cb_l1_limits *l) {
    if (!l->given) return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "max_mean_l1", json_real(l->max_mean_l1));
    json_object_set_new(o, "max_max_l1", json_real(l->max_max_l1));
    return o;
}

static void check_l1(cb_verdict *v, const char *name, const cb_l1_stat *st, const cb_l1_limits *l) {
    if (!l->given) return;
    char n[256];
    snprintf(n, sizeof n, "%s.mean_l1", name);
    cb_verdict_check(v, n, cb_l1_mean(st), l->max_mean_l1, 1);
    snprintf(n, sizeof n, "%s.max_l1", name);
    cb_verdict_check(v, n, st->max, l->max_max_l1, 1);
}

static int do_compare(json_t *doc, cb_verdict *v, const cb_verify_spec *s, const cb_verify_inputs *in,
                      const cb_model *t, const cb_model *st, const char *data, cb_error *e) {
    cb_verify_data d;
    CB_TRY(cb_verify_data_open(&d, data, s->val_split, s->val_frac, s->block_size, vocab_of(t), CB_SPLIT_AUTO, e));
    cb_compare_result r;
    int rc = cb_compare_run(&r, t, st, d.tokens, s->batch_size, s->block_size, s->batches, &in->progress, e);
    if (rc != CB_OK) {
        cb_verify_data_close(&d);
        return rc;
    }
    json_object_set_new(doc, "data", data_json(s, data, &d));
    warn_repeats(v, s, &d);
    json_t *th = json_object();
    json_object_set_new(th, "attention", limits_json(&s->attention));
    json_object_set_new(th, "logits", limits_json(&s->logits));
    json_object_set_new(doc, "thresholds", th);

    cb_l1_stat all = {0};
    json_t *layers = json_array();
    for (int l = 0; l < r.n_layers; l++) {
        const cb_compare_layer *L = &r.layers[l];
        json_t *o = l1_json(&L->l1);
        json_object_set_new(o, "layer", json_integer(l));
        json_object_set_new(o, "teacher_op", json_string(L->teacher_op));
        json_object_set_new(o, "student_op", json_string(L->student_op));
        json_array_append_new(layers, o);
        all.sum += L->l1.sum;
        all.n += L->l1.n;
        if (isnan(L->l1.max) || L->l1.max > all.max) all.max = L->l1.max;
        char name[64];
        snprintf(name, sizeof name, "attention.layers[%d]", l);
        check_l1(v, name, &L->l1, &s->attention);
    }
    json_t *att = l1_json(&all);
    json_object_set_new(att, "layers", layers);
    json_object_set_new(doc, "attention", att);
    json_object_set_new(doc, "logits", l1_json(&r.logits));
    check_l1(v, "logits", &r.logits, &s->logits);
    if (r.nonfinite) cb_verdict_warn(v, "an attention output or the logits held a NaN or an infinity");
    if (!s->attention.given && !s->logits.given)
        cb_verdict_warn(v, "no thresholds (attention, logits): the distances are reported, nothing is checked");
    cb_compare_result_free(&r);
    cb_verify_data_close(&d);
    return CB_OK;
}

static int do_fidelity(json_t *doc, cb_verdict *v, const cb_verify_spec *s, const cb_verify_inputs *in,
                       const cb_model *t, const cb_model *st, const char *data, cb_error *e) {
    if (vocab_of(t) != vocab_of(st))
        return cb_fail(e, CB_E_INVALID, "", "the teacher's vocabulary has %lld ids and the student's %lld: their NLL on "
                       "the same tokens is not comparable", (long long)vocab_of(t), (long long)vocab_of(st));
    cb_verify_data d;
    CB_TRY(cb_verify_data_open(&d, data, s->val_split, s->val_frac, s->block_size, vocab_of(t), s->split, e));
    double *tn = cb_calloc((size_t)s->batches, sizeof *tn, e), *sn = cb_calloc((size_t)s->batches, sizeof *sn, e);
    double tm = 0, sm = 0;
    int rc = tn && sn ? CB_OK : CB_E_RUNTIME;
    if (rc == CB_OK) rc = cb_fidelity_nll(tn, &tm, t, d.tokens, s->batch_size, s->block_size, s->batches, "teacher",
                                        &in->progress, e);
    if (rc == CB_OK) rc = cb_fidelity_nll(sn, &sm, st, d.tokens, s->batch_size, s->block_size, s->batches, "student",
                                        &in->progress, e);
    if (rc == CB_OK) {
        json_object_set_new(doc, "data", data_json(s, data, &d));
        warn_repeats(v, s, &d);
        json_t *th = json_object();
        json_object_set_new(th, "max_delta_nll", json_real(s->max_delta_nll));
        json_object_set_new(th, "max_ppl_ratio", json_real(s->max_ppl_ratio));
        json_object_set_new(doc, "thresholds", th);
        double delta = sm - tm, ratio = exp(delta);
        json_t *f = json_object(), *batches = json_array();
        json_object_set_new(f, "teacher_nll", cb_json_num(tm));
        json_object_set_new(f, "student_nll", cb_json_num(sm));
        json_object_set_new(f, "delta_nll", cb_json_num(delta));
        json_object_set_new(f, "teacher_ppl", cb_json_num(exp(tm)));
        json_object_set_new(f, "student_ppl", cb_json_num(exp(sm)));
        json_object_set_new(f, "ppl_ratio", cb_json_num(ratio));
        for (int b = 0; b < s->batches; b++) {
            json_t *o = json_object();
            json_object_set_new(o, "teacher_nll", cb_json_num(tn[b]));
            json_object_set_new(o, "student_nll", cb_json_num(sn[b]));
            json_array_append_new(batches, o);
        }
        json_object_set_new(f, "batches", batches);
        json_object_set_new(doc, "fidelity", f);
        cb_verdict_check(v, "delta_nll", delta, s->max_delta_nll, 1);
        cb_verdict_check(v, "ppl_ratio", ratio, s->max_ppl_ratio, 1);
        if (!isfinite(tm) || !isfinite(sm)) cb_verdict_warn(v, "an NLL is not finite");
    }
    free(tn);
    free(sn);
    cb_verify_data_close(&d);
    return rc;
}

/* ---- eval ---- */

typedef struct eval_side {
    const char *dir;
    const cb_model *m;
    cb_tokenizer tok;
    int have_tok;
    char used[4200];
    cb_eval_report report;
    int ran;
} eval_side;

static int eval_side_run(eval_side *x, const char *who, const cb_verify_spec *s, const cb_verify_inputs *in,
                         const cb_eval_suite *suite, cb_error *e) {
    int found = 0;
    CB_TRY(cb_model_tokenizer(&x->tok, s->tokenizer, x->dir, x->m, &found, x->used, sizeof x->used, e));
    x->have_tok = 1;
    cb_eval_config cfg = {.max_new_tokens = s->max_new_tokens, .who = who, .progress = &in->progress};
    cfg.n_eos = cb_model_eos_ids(x->dir, &x->tok, cfg.eos, CB_STOP_MAX_EOS);
    CB_TRY(cb_eval_suite_run(&x->report, x->m, &x->tok, suite, &cfg, s->context_window, e));
    x->ran = 1;
    return CB_OK;
}

static void eval_side_free(eval_side *x) {
    if (x->have_tok) cb_tokenizer_free(&x->tok);
    if (x->ran) cb_eval_report_free(&x->report);
}

static json_t *eval_json(const cb_verify_spec *s, const cb_eval_suite *suite, const eval_side *t, const eval_side *st) {
    json_t *o = json_object(), *results = json_array();
    json_object_set_new(o, "tokenizer", json_string(st->used));
    json_object_set_new(o, "context", json_integer(st->report.context));
    json_object_set_new(o, "max_new_tokens", json_integer(s->max_new_tokens));
    json_object_set_new(o, "cases", json_integer(suite->n));
    json_object_set_new(o, "student_correct", json_integer(st->report.correct));
    json_object_set_new(o, "student_accuracy", json_real(st->report.accuracy));
    json_object_set_new(o, "teacher_correct", t->ran ? json_integer(t->report.correct) : json_null());
    json_object_set_new(o, "teacher_accuracy", t->ran ? json_real(t->report.accuracy) : json_null());
    json_object_set_new(o, "accuracy_drop", t->ran ? json_real(t->report.accuracy - st->report.accuracy) : json_null());
    for (int i = 0; i < suite->n; i++) {
        const cb_eval_case *c = &suite->cases[i];
        json_t *r = json_object();
        json_object_set_new(r, "id", json_string(c->id));
        json_object_set_new(r, "kind", json_string(c->kind == CB_EVAL_INT_GREEDY ? "int_greedy" : "choice_logprob"));
        json_object_set_new(r, "answer", c->kind == CB_EVAL_INT_GREEDY ? json_integer(c->answer)
                                                                     : json_string(c->choices[c->answer_choice]));
        if (t->ran) json_object_set_new(r, "teacher", cb_eval_outcome_json(c, &t->report.outcomes[i]));
        json_object_set_new(r, "student", cb_eval_outcome_json(c, &st->report.outcomes[i]));
        json_array_append_new(results, r);
    }
    json_object_set_new(o, "results", results);
    return o;
}

static int do_eval(json_t *doc, cb_verdict *v, const cb_verify_spec *s, const cb_verify_inputs *in,
                   const cb_model *t, const cb_model *st, cb_error *e) {
    cb_eval_suite suite;
    cb_eval_suite_init(&suite);
    int rc = cb_eval_suite_add_json(&suite, s->cases, "verify.cases", cb_loc(s->block, "cases"), e);
    for (int i = 0; rc == CB_OK && i < in->n_suites; i++) rc = cb_eval_suite_load(&suite, in->suites[i], e);
    eval_side ts = {.dir = in->teacher_dir, .m = t}, ss = {.dir = in->student_dir, .m = st};
    if (rc == CB_OK) rc = eval_side_run(&ss, "student", s, in, &suite, e);
    if (rc == CB_OK && t) rc = eval_side_run(&ts, "teacher", s, in, &suite, e);
    if (rc == CB_OK) {
        json_t *th = json_object();
        json_object_set_new(th, "min_student_accuracy",
                            s->has_min_student_accuracy ? json_real(s->min_student_accuracy) : json_null());
        json_object_set_new(th, "max_accuracy_drop",
                            s->has_max_accuracy_drop ? json_real(s->max_accuracy_drop) : json_null());
        json_object_set_new(doc, "thresholds", th);
        json_object_set_new(doc, "eval", eval_json(s, &suite, &ts, &ss));
        if (s->has_min_student_accuracy)
            cb_verdict_check(v, "student_accuracy", ss.report.accuracy, s->min_student_accuracy, 0);
        if (s->has_max_accuracy_drop)
            cb_verdict_check(v, "accuracy_drop", ts.report.accuracy - ss.report.accuracy, s->max_accuracy_drop, 1);
        if (!s->has_min_student_accuracy && !s->has_max_accuracy_drop)
            cb_verdict_warn(v, "no thresholds (min_student_accuracy, max_accuracy_drop): the accuracies are "
                            "reported, nothing is checked");
    }
    eval_side_free(&ts);
    eval_side_free(&ss);
    cb_eval_suite_free(&suite);
    return rc;
}

/* ---- the whole verification ---- */

static int check_inputs(const cb_verify_spec *s, const cb_verify_inputs *in, const char **data, cb_error *e) {
    const char *type = cb_verify_type_name(s->type);
    if (!in->student_dir) return cb_fail(e, CB_E_USAGE, "", "no student: give --student DIR");
    if (!in->teacher_dir && (s->type != CB_VERIFY_EVAL || s->has_max_accuracy_drop))
        return cb_fail(e, CB_E_USAGE, "", "verify %s%s compares the student with a teacher: give --teacher DIR", type,
                       s->type == CB_VERIFY_EVAL ? " with max_accuracy_drop" : "");
    if (in->n_suites && s->type != CB_VERIFY_EVAL)
        return cb_fail(e, CB_E_USAGE, "", "--suite adds eval cases, and run %s's verify is %s", s->run, type);
    *data = in->data && *in->data ? in->data : s->data;
    if (s->type != CB_VERIFY_EVAL && !**data)
        return cb_fail(e, CB_E_USAGE, s->where, "verify %s reads tokens, and run %s has none (train.data, the "
                       "group's data, or --data)", type, s->run);
    return CB_OK;
}

int cb_verify_run(json_t **doc, int *status, const cb_verify_spec *s, const cb_verify_inputs *in, cb_error *e) {
    *doc = NULL;
    *status = 0;
    const char *data = "";
    CB_TRY(check_inputs(s, in, &data, e));
    cb_model teacher, student;
    int have_t = 0, have_s = 0, rc = CB_OK;
    if (in->teacher_dir) {
        rc = cb_model_open_dir(&teacher, in->teacher_dir, e);
        have_t = rc == CB_OK;
    }
    if (rc == CB_OK) {
        rc = cb_model_open_dir(&student, in->student_dir, e);
        have_s = rc == CB_OK;
    }
    json_t *d = cb_doc_new("verify");
    cb_verdict v;
    cb_verdict_init(&v, s->fail_fast);
    if (rc == CB_OK) {
        json_object_set_new(d, "type", json_string(cb_verify_type_name(s->type)));
        json_object_set_new(d, "group", json_string(s->group));
        json_object_set_new(d, "run", json_string(s->run));
        json_object_set_new(d, "where", json_string(s->where));
        json_object_set_new(d, "spec", strip_locs(s->block));
        json_object_set_new(d, "fail_fast", json_boolean(s->fail_fast));
        json_object_set_new(d, "teacher", have_t ? model_json(in->teacher_dir, &teacher) : json_null());
        json_object_set_new(d, "student", model_json(in->student_dir, &student));
        if (have_t && strcmp(teacher.plan_sha256, student.plan_sha256) == 0 &&
            memcmp(teacher.weights, student.weights, teacher.params.total_floats * sizeof(float)) == 0)
            cb_verdict_warn(&v, "the teacher and the student are the same model (same plan and weights)");
        rc = s->type == CB_VERIFY_COMPARE    ? do_compare(d, &v, s, in, &teacher, &student, data, e)
             : s->type == CB_VERIFY_FIDELITY ? do_fidelity(d, &v, s, in, &teacher, &student, data, e)
                                             : do_eval(d, &v, s, in, have_t ? &teacher : NULL, &student, e);
    }
    if (have_t) cb_model_free(&teacher);
    if (have_s) cb_model_free(&student);
    if (rc != CB_OK) {
        cb_verdict_free(&v);
        json_decref(d);
        return rc;
    }
    *status = cb_verdict_status(&v);
    cb_verdict_put(&v, d);
    *doc = d;
    return CB_OK;
}
