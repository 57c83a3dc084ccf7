/* plan_fixture.h: lowered documents written inline for the plan tests, and lookups
 * into the plans and error lists they give. */
#ifndef CB_TEST_PLAN_FIXTURE_H
#define CB_TEST_PLAN_FIXTURE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "core/diag.h"
#include "plan/plan.h"

/* Build the plan of {"kind":"lowered","manifest":{"model": MODEL}} where MODEL is the
 * printf-formatted JSON text. Returns cb_plan_build's status; a JSON typo in a test
 * fails loudly (status -1). */
static inline int fx_build(json_t **plan, cb_diags *d, const char *model_fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int fx_build(json_t **plan, cb_diags *d, const char *model_fmt, ...) {
    char model[16384], text[17000];
    va_list ap;
    va_start(ap, model_fmt);
    vsnprintf(model, sizeof model, model_fmt, ap);
    va_end(ap);
    snprintf(text, sizeof text,
             "{\"cb_version\":\"0.1\",\"kind\":\"lowered\",\"source\":\"t.yml\",\"manifest\":{\"model\":%s}}", model);
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je);
    *plan = NULL;
    if (!doc) {
        fprintf(stderr, "  fixture JSON error %d:%d: %s\n  %s\n", je.line, je.column, je.text, text);
        return -1;
    }
    int rc = cb_plan_build(doc, plan, d);
    json_decref(doc);
    return rc;
}

/* A model with a token embedder (vocab 100, d_model D) and the given topology JSON. */
#define FX_MODEL(D, TOPO) "{\"embedder\":{\"type\":\"token\",\"vocab_size\":100,\"d_model\":" #D "},\"topology\":" TOPO "}"
#define FX_STACK(...) "{\"type\":\"StackedTopology\",\"layers\":[" __VA_ARGS__ "]}"

/* The plan NODE with this id under node (depth first), or NULL. */
static inline const json_t *fx_node_in(const json_t *node, const char *id) {
    const char *nid = json_string_value(json_object_get(node, "id"));
    if (nid && strcmp(nid, id) == 0) return node;
    size_t i;
    json_t *child;
    json_array_foreach(json_object_get(node, "children"), i, child) {
        const json_t *hit = fx_node_in(child, id);
        if (hit) return hit;
    }
    return NULL;
}
static inline const json_t *fx_node(const json_t *plan, const char *id) {
    return fx_node_in(json_object_get(json_object_get(plan, "model"), "topology"), id);
}

/* An integer member (or -999 when absent, so a comparison fails visibly). */
static inline long long fx_int(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -999;
}
static inline long long fx_total(const json_t *plan, const char *key) {
    return fx_int(json_object_get(plan, "totals"), key);
}

/* The tensor named name of a node, or NULL. */
static inline const json_t *fx_tensor(const json_t *node, const char *name) {
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(node, "tensors"), i, t)
        if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0) return t;
    return NULL;
}
/* "[2048,512]" */
static inline const char *fx_shape(const json_t *tensor, char *buf, size_t n) {
    char *s = json_dumps(json_object_get(tensor, "shape"), JSON_COMPACT);
    snprintf(buf, n, "%s", s ? s : "(none)");
    free(s);
    return buf;
}

/* Index of the error whose message is msg, or -1. */
static inline int fx_find(const cb_diags *d, const char *msg) {
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->items[i].msg, msg) == 0) return i;
    return -1;
}
/* Every message on stderr, for a failing test's context. */
static inline void fx_dump(const cb_diags *d) {
    for (int i = 0; i < d->n; i++) fprintf(stderr, "    [%s] %s\n", d->items[i].where, d->items[i].msg);
}

#endif
