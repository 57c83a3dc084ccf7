/* eval_suite.c: cases from the manifest or a suite file, checked by the manifest's own
 * case schema (manifest/schema_table.h), and their run on one model. */
#include "verify/eval_suite.h"

#include <stdlib.h>
#include <string.h>
#include "core/diag.h"
#include "core/json_doc.h"
#include "infer/session.h"
#include "manifest/schema_table.h"
#include "manifest/yaml_parse.h"
#include "verify/verdict.h"

void cb_eval_suite_init(cb_eval_suite *s) { memset(s, 0, sizeof *s); }

static void case_free(cb_eval_case *c) {
    free(c->prompt);
    for (int j = 0; j < c->n_choices; j++) free(c->choices[j]);
    free(c->choices);
}

void cb_eval_suite_free(cb_eval_suite *s) {
    for (int i = 0; i < s->n; i++) case_free(&s->cases[i]);
    free(s->cases);
    memset(s, 0, sizeof *s);
}

static char *dup(const char *t, cb_error *e) {
    size_t n = strlen(t);
    char *p = cb_malloc(n + 1, 1, e);
    if (p) memcpy(p, t, n + 1);
    return p;
}

/* one case the schema accepted */
static int read_case(cb_eval_case *c, const json_t *o, const char *path, cb_error *e) {
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", json_string_value(json_object_get(o, "id")));
    snprintf(c->where, sizeof c->where, "%s", cb_loc(o, NULL));
    snprintf(c->path, sizeof c->path, "%s", path);
    c->kind = strcmp(json_string_value(json_object_get(o, "kind")), "int_greedy") == 0 ? CB_EVAL_INT_GREEDY
                                                                                        : CB_EVAL_CHOICE_LOGPROB;
    if (!(c->prompt = dup(json_string_value(json_object_get(o, "prompt")), e))) return CB_E_RUNTIME;
    const json_t *ans = json_object_get(o, "answer");
    if (c->kind == CB_EVAL_INT_GREEDY) {
        c->answer = json_integer_value(ans);
        return CB_OK;
    }
    const json_t *ch = json_object_get(o, "choices");
    c->answer_choice = -1; /* the schema saw the answer among the choices: the first such */
    c->choices = cb_calloc(json_array_size(ch), sizeof *c->choices, e);
    if (!c->choices) return CB_E_RUNTIME;
    for (size_t j = 0; j < json_array_size(ch); j++) {
        const char *t = json_string_value(json_array_get(ch, j));
        if (!(c->choices[c->n_choices] = dup(t, e))) return CB_E_RUNTIME;
        c->n_choices++;
        if (c->answer_choice < 0 && strcmp(t, json_string_value(ans)) == 0) c->answer_choice = (int)j;
    }
    return CB_OK;
}

static const cb_type case_type = {.kind = CB_K_OBJECT, .schema = &cb_eval_case_schema};
static const cb_type cases_type = {.kind = CB_K_LIST, .flags = CB_F_NONEMPTY, .elem = &case_type, .unique_key = "id"};

int cb_eval_suite_add_json(cb_eval_suite *s, const json_t *cases, const char *path, const char *where, cb_error *e) {
    cb_diags d;
    cb_diags_init(&d);
    cb_check_ctx c = {.d = &d};
    cb_schema_check_value(&c, cases, &cases_type, path, where);
    if (d.n > 0) {
        int rc = cb_fail(e, CB_E_INVALID, d.items[0].where, "%s", d.items[0].msg);
        cb_diags_free(&d);
        return rc;
    }
    cb_diags_free(&d);
    size_t n = json_array_size(cases);
    /* ids are unique across the whole suite, the cases already held included */
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(cases, i);
        const char *id = json_string_value(json_object_get(o, "id"));
        for (int k = 0; k < s->n; k++)
            if (strcmp(s->cases[k].id, id) == 0)
                return cb_fail(e, CB_E_INVALID, cb_loc(o, "id"), "%s[%zu].id: %s is also the id of %s (at %s)", path,
                               i, id, s->cases[k].path, s->cases[k].where);
    }
    if ((size_t)(s->cap - s->n) < n) {
        size_t cap = (size_t)s->n + n;
        cb_eval_case *grown = realloc(s->cases, cap * sizeof *grown);
        if (!grown) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
        s->cases = grown;
        s->cap = (int)cap;
    }
    int first = s->n, rc = CB_OK;
    for (size_t i = 0; rc == CB_OK && i < n; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s[%zu]", path, i);
        rc = read_case(&s->cases[s->n], json_array_get(cases, i), p, e);
        s->n++;
    }
    if (rc != CB_OK) { /* nothing appended */
        for (int i = first; i < s->n; i++) case_free(&s->cases[i]);
        s->n = first;
    }
    return rc;
}

int cb_eval_suite_load(cb_eval_suite *s, const char *file, cb_error *e) {
    json_t *doc = NULL;
    CB_TRY(cb_yaml_parse_file(file, &doc, e));
    const json_t *root = json_object_get(doc, "manifest");
    int rc = CB_OK;
    if (!json_is_object(root)) rc = cb_fail(e, CB_E_INVALID, file, "a suite file is a mapping with a cases list");
    const char *key;
    json_t *v;
    if (rc == CB_OK) json_object_foreach((json_t *)root, key, v) {
            if (cb_is_annotation(key) || !strcmp(key, "suite") || !strcmp(key, "description") || !strcmp(key, "cases"))
                continue;
            rc = cb_fail(e, CB_E_INVALID, cb_loc(root, key), "%s: unknown field (a suite has suite, description and "
                         "cases)", key);
            break;
        }
    if (rc == CB_OK && !json_object_get(root, "cases"))
        rc = cb_fail(e, CB_E_INVALID, cb_loc(root, NULL), "missing required field cases");
    if (rc == CB_OK) rc = cb_eval_suite_add_json(s, json_object_get(root, "cases"), "cases", cb_loc(root, "cases"), e);
    json_decref(doc);
    return rc;
}

void cb_eval_report_free(cb_eval_report *r) {
    for (int i = 0; r->outcomes && i < r->n; i++) cb_eval_outcome_free(&r->outcomes[i]);
    free(r->outcomes);
    memset(r, 0, sizeof *r);
}

int cb_eval_suite_run(cb_eval_report *r, const cb_model *m, cb_tokenizer *tok, const cb_eval_suite *s,
                      const cb_eval_config *cfg, int context_window, cb_error *e) {
    memset(r, 0, sizeof *r);
    cb_session_config sc = cb_session_config_default();
    int model_ctx = cb_model_max_seq_len(m);
    sc.max_seq_len = model_ctx && model_ctx < context_window ? model_ctx : context_window;
    cb_session sess;
    CB_TRY(cb_session_init(&sess, m, &sc, e));
    r->context = sess.cfg.max_seq_len;
    r->outcomes = cb_calloc((size_t)s->n + 1, sizeof *r->outcomes, e);
    int rc = r->outcomes ? CB_OK : CB_E_RUNTIME;
    for (int i = 0; rc == CB_OK && i < s->n; i++) {
        rc = cb_eval_case_run(&r->outcomes[i], &sess, tok, &s->cases[i], cfg, e);
        if (rc == CB_OK) {
            r->n++;
            r->correct += r->outcomes[i].correct;
            char what[64];
            snprintf(what, sizeof what, "eval: %s cases", cfg->who ? cfg->who : "model");
            cb_verify_progress_step(cfg->progress, what, i + 1, s->n);
        }
    }
    r->accuracy = r->n ? (double)r->correct / r->n : 0;
    cb_session_free(&sess);
    if (rc != CB_OK) cb_eval_report_free(r);
    return rc;
}

/* ---- results as JSON ---- */

static json_t *text_json(const char *p, size_t n) {
    cb_bytes b = {0};
    cb_error e;
    if (cb_utf8_sanitize(p, n, &b, &e) != CB_OK) return json_null();
    json_t *s = json_stringn(b.p ? (const char *)b.p : "", b.n);
    cb_bytes_free(&b);
    return s;
}

json_t *cb_eval_outcome_json(const cb_eval_case *c, const cb_eval_outcome *o) {
    json_t *j = json_object();
    json_object_set_new(j, "correct", json_boolean(o->correct));
    json_object_set_new(j, "prompt_tokens", json_integer(o->prompt_tokens));
    json_object_set_new(j, "truncated", json_integer(o->truncated));
    if (c->kind == CB_EVAL_INT_GREEDY) {
        json_object_set_new(j, "output", text_json(o->output, o->output_len));
        json_object_set_new(j, "new_tokens", json_integer(o->new_tokens));
        json_object_set_new(j, "integer", o->has_int ? json_integer(o->value) : json_null());
        return j;
    }
    json_t *lp = json_array(), *nt = json_array();
    for (int k = 0; k < c->n_choices; k++) {
        json_array_append_new(lp, cb_json_num(o->logprob[k]));
        json_array_append_new(nt, json_integer(o->choice_tokens[k]));
    }
    json_object_set_new(j, "picked", json_string(c->choices[o->picked]));
    json_object_set_new(j, "logprobs", lp);
    json_object_set_new(j, "choice_tokens", nt);
    return j;
}
