/* student.c: the students of a manifest's runs: the teacher's model with a run's
 * train.student.overrides applied, planned, and checked against what surgery can make
 * (walk.h, cb_plan_students; lib/upcycle/feasible.h). */
#include "plan/walk.h"

#include <stdio.h>
#include <string.h>
#include "core/json_doc.h"
#include "upcycle/feasible.h"

/* Set every field of overrides[type] on each node of that type under v, keeping the
 * override's source location so that an error points at the override's line. */
static void apply_overrides(json_t *v, const json_t *overrides, int depth) {
    if (depth > CB_PLAN_MAX_DEPTH) return;
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) apply_overrides(x, overrides, depth + 1);
        return;
    }
    if (!json_is_object(v)) return;
    const char *type = json_string_value(json_object_get(v, "type"));
    const json_t *fields = type ? json_object_get(overrides, type) : NULL;
    const char *key;
    json_t *val;
    if (json_is_object(fields)) {
        json_object_foreach((json_t *)fields, key, val) {
            if (cb_is_annotation(key) || strcmp(key, "type") == 0 || strcmp(key, "id") == 0 ||
                strcmp(key, "layers") == 0)
                continue;
            json_object_set_new(v, key, json_deep_copy(val));
            cb_loc_set(v, key, cb_loc(fields, key));
        }
    }
    json_object_foreach(v, key, val) {
        if (!cb_is_annotation(key)) apply_overrides(val, overrides, depth + 1);
    }
}

typedef struct check_ctx {
    cb_diags *d;
    const char *who;           /* "group/run" */
    const json_t *overrides;
    int attention_reported, other_reported;
} check_ctx;

/* The line to blame: the override of field for type, else the override of type, else
 * the student node's own line. */
static const char *blame(const check_ctx *c, const char *type, const char *field, const json_t *node) {
    const json_t *f = json_object_get(c->overrides, type);
    if (json_is_object(f) && field && json_object_get(f, field)) return cb_loc(f, field);
    if (f) return cb_loc(c->overrides, type);
    const char *loc = json_string_value(json_object_get(node, "loc"));
    return loc ? loc : "";
}

static void shape_text(const json_t *shape, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    size_t i;
    json_t *x;
    json_array_foreach(shape, i, x) {
        if (k < n) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)json_integer_value(x));
    }
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* The tensors of a non-attention node must be the teacher's: surgery copies them. */
static void check_tensors(check_ctx *c, const json_t *t, const json_t *s, const char *id, const char *type) {
    const json_t *tt = json_object_get(t, "tensors"), *st = json_object_get(s, "tensors");
    if (c->other_reported || json_equal((json_t *)tt, (json_t *)st)) return;
    size_t n = json_array_size(tt) > json_array_size(st) ? json_array_size(tt) : json_array_size(st);
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_array_get(tt, i), *b = json_array_get(st, i);
        const json_t *sa = json_object_get(a, "shape"), *sb = json_object_get(b, "shape");
        const char *na = json_string_value(json_object_get(a, "name")), *nb = json_string_value(json_object_get(b, "name"));
        if (a && b && na && nb && strcmp(na, nb) == 0 && json_equal((json_t *)sa, (json_t *)sb)) continue;
        char ta[96] = "none", tb[96] = "none";
        if (sa) shape_text(sa, ta, sizeof ta);
        if (sb) shape_text(sb, tb, sizeof tb);
        cb_diags_addf(c->d, CB_E_INVALID, blame(c, type, NULL, s),
                      "student of %s: %s.%s: shape %s, the teacher's is %s; surgery copies every layer but attention "
                      "from the teacher, so overrides may change only AttentionLayer",
                      c->who, id, nb ? nb : na ? na : "?", tb, ta);
        c->other_reported = 1;
        return;
    }
}

static void check_node(check_ctx *c, const json_t *t, const json_t *s, int depth) {
    if (depth > CB_PLAN_MAX_DEPTH || !json_is_object(t) || !json_is_object(s)) return;
    const char *type = json_string_value(json_object_get(s, "type"));
    const char *id = json_string_value(json_object_get(s, "id"));
    if (!type) return;
    if (strcmp(type, "AttentionLayer") == 0) {
        if (c->attention_reported) return;
        cb_surgery_attn ta, sa;
        cb_surgery_attn_from_config(&ta, json_object_get(t, "config"));
        cb_surgery_attn_from_config(&sa, json_object_get(s, "config"));
        const char *field;
        char why[CB_SURGERY_WHY_MAX];
        if (cb_surgery_attn_check(&ta, &sa, NULL, &field, why) != 0) {
            cb_diags_addf(c->d, CB_E_INVALID, blame(c, type, field, s), "student of %s: %s.%s: %s", c->who,
                          id && id[0] ? id : "attention", field, why);
            c->attention_reported = 1;
        }
        return;
    }
    const json_t *tc = json_object_get(t, "children"), *sc = json_object_get(s, "children");
    if (json_is_array(sc)) {
        for (size_t i = 0; i < json_array_size(sc); i++)
            check_node(c, json_array_get(tc, i), json_array_get(sc, i), depth + 1);
        return;
    }
    check_tensors(c, t, s, id ? id : type, type);
}

static int needs_surgery(const json_t *train, const json_t *student) {
    const char *phase = json_string_value(json_object_get(train, "phase"));
    if (!phase || (strcmp(phase, "upcycle") != 0 && strcmp(phase, "blockwise") != 0)) return 0;
    return !json_object_get(student, "ckpt") && !json_object_get(student, "run");
}

static json_t *student_of(const json_t *m, const json_t *teacher_plan, const json_t *overrides, int surgery,
                          const char *who, cb_diags *d) {
    json_t *model = json_deep_copy(json_object_get(m, "model"));
    if (!model) return NULL;
    apply_overrides(model, overrides, 0);
    int before = d->n + d->n_dropped, first = d->n;
    cb_plan_walk w = {.d = d, .init_std = 0.02, .residual_std = 0.02, .applications = 1};
    json_t *totals = NULL;
    json_t *planned = cb_plan_model(&w, model, &totals);
    json_decref(model);
    /* the student's own shape errors, said to be the student's */
    for (int i = first; i < d->n; i++) {
        char msg[sizeof d->items[i].msg];
        snprintf(msg, sizeof msg, "student of %.200s: %.700s", who, d->items[i].msg);
        memcpy(d->items[i].msg, msg, sizeof msg);
    }
    if (surgery && d->n + d->n_dropped == before) {
        check_ctx c = {.d = d, .who = who, .overrides = overrides};
        check_tensors(&c, json_object_get(teacher_plan, "embedder"), json_object_get(planned, "embedder"), "embed",
                      "embedder");
        check_node(&c, json_object_get(teacher_plan, "topology"), json_object_get(planned, "topology"), 0);
        check_tensors(&c, json_object_get(teacher_plan, "head"), json_object_get(planned, "head"), "head", "head");
    }
    json_t *entry = json_object();
    json_object_set_new(entry, "surgery", json_boolean(surgery));
    json_object_set_new(entry, "overrides", cb_plan_copy_data(overrides));
    json_object_set_new(entry, "model", planned);
    json_object_set_new(entry, "totals", totals);
    return entry;
}

json_t *cb_plan_students(const json_t *m, const json_t *teacher_plan, cb_diags *d) {
    json_t *out = json_array();
    size_t gi, ri;
    const json_t *g, *r;
    json_array_foreach(json_object_get(m, "groups"), gi, g) {
        json_array_foreach(json_object_get(g, "runs"), ri, r) {
            const json_t *train = json_object_get(r, "train");
            const json_t *student = json_object_get(train, "student");
            const json_t *overrides = json_object_get(student, "overrides");
            if (!json_is_object(overrides)) continue;
            const char *gname = json_string_value(json_object_get(g, "name"));
            const char *rid = json_string_value(json_object_get(r, "id"));
            char who[600];
            snprintf(who, sizeof who, "%s/%s", gname ? gname : "?", rid ? rid : "?");
            int surgery = needs_surgery(train, student);
            json_t *overrides_data = cb_plan_copy_data(overrides);
            /* runs with the same overrides share one student (and its errors, once) */
            json_t *entry = NULL;
            size_t k;
            json_t *prev;
            json_array_foreach(out, k, prev) {
                if (json_equal(json_object_get(prev, "overrides"), overrides_data) &&
                    json_is_true(json_object_get(prev, "surgery")) >= surgery) {
                    entry = json_deep_copy(prev);
                    json_object_set_new(entry, "surgery", json_boolean(surgery));
                    break;
                }
            }
            json_decref(overrides_data);
            if (!entry) entry = student_of(m, teacher_plan, overrides, surgery, who, d);
            if (!entry) continue;
            json_object_set_new(entry, "group", json_string(gname ? gname : ""));
            json_object_set_new(entry, "run", json_string(rid ? rid : ""));
            json_array_append_new(out, entry);
        }
    }
    return out;
}

json_t *cb_plan_student_doc(const json_t *plan, const char *group, const char *run) {
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(plan, "students"), i, s) {
        const char *g = json_string_value(json_object_get(s, "group")), *r = json_string_value(json_object_get(s, "run"));
        if (!g || !r || strcmp(g, group) != 0 || strcmp(r, run) != 0) continue;
        json_t *doc = json_deep_copy(plan);
        if (!doc) return NULL;
        json_object_del(doc, "students");
        json_object_set_new(doc, "model", json_deep_copy(json_object_get(s, "model")));
        json_object_set_new(doc, "totals", json_deep_copy(json_object_get(s, "totals")));
        return doc;
    }
    return NULL;
}
