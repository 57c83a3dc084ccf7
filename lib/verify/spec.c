/* spec.c: the verify block of a plan's run, checked against the schema again (a plan may
 * have been edited by hand since cb-validate) and read with its defaults. */
#include "verify/spec.h"

#include <stdio.h>
#include <string.h>
#include "core/diag.h"
#include "core/json_doc.h"
#include "manifest/schema.h"
#include "train/config.h"

static const char *str(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }
static double num(const json_t *o, const char *k, double def) {
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : def;
}

const char *cb_verify_type_name(int type) {
    return type == CB_VERIFY_COMPARE ? "compare" : type == CB_VERIFY_FIDELITY ? "fidelity" : "eval";
}

const char *cb_verify_split_name(int split) {
    return split == CB_SPLIT_TRAIN ? "train" : split == CB_SPLIT_VAL ? "val" : "auto";
}

static int copy_path(char *dst, size_t n, const char *src, const json_t *obj, const char *key, cb_error *e) {
    if (!src) src = "";
    if (strlen(src) >= n) return cb_fail(e, CB_E_INVALID, cb_loc(obj, key), "%s: path too long", key);
    memcpy(dst, src, strlen(src) + 1);
    return CB_OK;
}

/* "groups[1].runs[0]" for messages: where the run sits in the plan */
static void run_path(const json_t *plan, const json_t *g, const json_t *r, char *buf, size_t n) {
    const json_t *groups = json_object_get(plan, "groups");
    size_t gi = 0, ri = 0;
    for (size_t i = 0; i < json_array_size(groups); i++)
        if (json_array_get(groups, i) == g) gi = i;
    const json_t *runs = json_object_get(g, "runs");
    for (size_t i = 0; i < json_array_size(runs); i++)
        if (json_array_get(runs, i) == r) ri = i;
    snprintf(buf, n, "groups[%zu].runs[%zu]", gi, ri);
}

static void read_l1(cb_l1_limits *l, const json_t *o) {
    l->given = json_is_object(o);
    l->max_mean_l1 = num(o, "max_mean_l1", 0.05);
    l->max_max_l1 = num(o, "max_max_l1", 0.25);
}

int cb_verify_tokenizer_spec(const json_t *tok, char *out, size_t n, cb_error *e) {
    const char *type = str(tok, "type"), *spec = NULL;
    if (!type) return cb_fail(e, CB_E_INVALID, cb_loc(tok, NULL), "tokenizer: missing type");
    if (strcmp(type, "byte") == 0) spec = "byte";
    else if (strcmp(type, "tiktoken") == 0) spec = str(tok, "encoding");
    else if (strcmp(type, "hf") == 0) spec = str(tok, "path");
    else if (strcmp(type, "gpt2") == 0) spec = str(tok, "path") ? str(tok, "path") : "gpt2";
    else return cb_fail(e, CB_E_INVALID, cb_loc(tok, "type"), "tokenizer.type: unknown %s (byte, tiktoken, hf, gpt2)",
                        type);
    if (!spec) return cb_fail(e, CB_E_INVALID, cb_loc(tok, "type"), "tokenizer: type %s needs %s", type,
                             strcmp(type, "tiktoken") == 0 ? "encoding" : "path");
    return copy_path(out, n, spec, tok, "path", e);
}

static int read_block(cb_verify_spec *s, const json_t *b, cb_error *e) {
    const char *type = str(b, "type");
    s->fail_fast = json_is_true(json_object_get(b, "fail_fast"));
    s->batches = (int)num(b, "batches", 2);
    if (strcmp(type, "compare") == 0) {
        s->type = CB_VERIFY_COMPARE;
        read_l1(&s->attention, json_object_get(b, "attention"));
        read_l1(&s->logits, json_object_get(b, "logits"));
    } else if (strcmp(type, "fidelity") == 0) {
        s->type = CB_VERIFY_FIDELITY;
        const char *split = str(b, "split");
        s->split = !split || strcmp(split, "auto") == 0 ? CB_SPLIT_AUTO
                   : strcmp(split, "train") == 0        ? CB_SPLIT_TRAIN
                                                        : CB_SPLIT_VAL;
        s->max_delta_nll = num(b, "max_delta_nll", 0.05);
        s->max_ppl_ratio = num(b, "max_ppl_ratio", 1.05);
    } else {
        s->type = CB_VERIFY_EVAL;
        CB_TRY(cb_verify_tokenizer_spec(json_object_get(b, "tokenizer"), s->tokenizer, sizeof s->tokenizer, e));
        s->max_new_tokens = (int)num(b, "max_new_tokens", 32);
        s->context_window = (int)num(b, "context_window", 2048);
        const json_t *th = json_object_get(b, "thresholds");
        s->has_min_student_accuracy = json_is_number(json_object_get(th, "min_student_accuracy"));
        s->has_max_accuracy_drop = json_is_number(json_object_get(th, "max_accuracy_drop"));
        s->min_student_accuracy = num(th, "min_student_accuracy", 0);
        s->max_accuracy_drop = num(th, "max_accuracy_drop", 1);
        s->cases = json_object_get(b, "cases");
    }
    return CB_OK;
}

/* the run's data and batch shape, from its train mapping with cb-train's defaults */
static int read_data(cb_verify_spec *s, const json_t *run, cb_error *e) {
    const json_t *given = json_object_get(run, "train");
    json_t *train = json_is_object(given) ? json_deep_copy(given) : json_object();
    if (!train) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    cb_schema_fill_defaults(train, "train");
    int rc = copy_path(s->data, sizeof s->data, str(train, "data"), given, "data", e);
    if (rc == CB_OK) rc = copy_path(s->val_split, sizeof s->val_split, str(train, "val_split"), given, "val_split", e);
    s->val_frac = num(train, "val_frac", 0.05);
    s->batch_size = (int)num(train, "batch_size", 8);
    s->block_size = (int)num(train, "block_size", 512);
    json_decref(train);
    return rc;
}

int cb_verify_spec_read(cb_verify_spec *s, const json_t *plan, const char *group, const char *run, cb_error *e) {
    memset(s, 0, sizeof *s);
    const json_t *g, *r;
    CB_TRY(cb_train_find_run(plan, group, run, &g, &r, e));
    snprintf(s->group, sizeof s->group, "%s", str(g, "name") ? str(g, "name") : "");
    snprintf(s->run, sizeof s->run, "%s", str(r, "id") ? str(r, "id") : "");
    const json_t *block = json_object_get(r, "verify");
    if (!json_is_object(block))
        return cb_fail(e, CB_E_USAGE, cb_loc(r, NULL), "run %s of group %s has no verify block", s->run, s->group);
    snprintf(s->where, sizeof s->where, "%s", cb_loc(block, NULL));

    char path[128];
    run_path(plan, g, r, path, sizeof path);
    strncat(path, ".verify", sizeof path - strlen(path) - 1);
    cb_diags d;
    cb_diags_init(&d);
    cb_schema_check_node(block, "verify", path, &d);
    if (d.n > 0) {
        int rc = cb_fail(e, CB_E_INVALID, d.items[0].where, "%s", d.items[0].msg);
        cb_diags_free(&d);
        return rc;
    }
    cb_diags_free(&d);

    s->block = json_deep_copy(block);
    if (!s->block) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    int rc = cb_schema_fill_defaults(s->block, "verify");
    if (rc != CB_OK) rc = cb_fail(e, CB_E_INVALID, s->where, "%s: not a verify block", path);
    if (rc == CB_OK) rc = read_block(s, s->block, e);
    if (rc == CB_OK) rc = read_data(s, r, e);
    if (rc != CB_OK) cb_verify_spec_free(s);
    return rc;
}

void cb_verify_spec_free(cb_verify_spec *s) {
    json_decref(s->block);
    memset(s, 0, sizeof *s);
}
