/* walk.c: field readers and error reporting shared by the plan builder's files;
 * each bad value becomes one "PATH.key: message" record at the value's location. */
#include "plan/walk.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/json_doc.h"
#include "plan/count.h"

void cb_plan_errf(cb_plan_walk *w, const json_t *obj, const char *key, const char *path,
                  const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *where = json_is_object(obj) ? cb_loc(obj, key) : "";
    if (key) cb_diags_addf(w->d, CB_E_INVALID, where, "%s%s%s: %s", path, path[0] ? "." : "", key, msg);
    else cb_diags_addf(w->d, CB_E_INVALID, where, "%s: %s", path[0] ? path : "(document)", msg);
}

/* A short rendering of a JSON value for messages: 2048, "2048", true, {...}. */
static const char *show(const json_t *v, char *buf, size_t n) {
    if (json_is_object(v)) return "a mapping";
    if (json_is_array(v)) return "a sequence";
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(buf, n, "%s", s ? s : "?");
    if (s && strlen(s) >= n && n > 4) memcpy(buf + n - 4, "...", 4);
    free(s);
    return buf;
}

int64_t cb_plan_int(cb_plan_walk *w, const json_t *obj, const char *key, int64_t def,
                    const char *path) {
    const json_t *v = json_object_get(obj, key);
    char buf[64];
    if (!v || json_is_null(v)) {
        if (def > 0) return def;
        cb_plan_errf(w, obj, key, path, "missing (a positive integer is required)");
        return CB_PLAN_UNKNOWN;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        cb_plan_errf(w, obj, key, path, "must be a positive integer, got %s", show(v, buf, sizeof buf));
        return CB_PLAN_UNKNOWN;
    }
    return (int64_t)json_integer_value(v);
}

int cb_plan_bool(cb_plan_walk *w, const json_t *obj, const char *key, int def, const char *path) {
    const json_t *v = json_object_get(obj, key);
    char buf[64];
    if (!v || json_is_null(v)) return def;
    if (!json_is_boolean(v)) {
        cb_plan_errf(w, obj, key, path, "must be true or false, got %s", show(v, buf, sizeof buf));
        return def;
    }
    return json_is_true(v);
}

double cb_plan_num(cb_plan_walk *w, const json_t *obj, const char *key, double def, double lo,
                   double hi, const char *path) {
    const json_t *v = json_object_get(obj, key);
    char buf[64];
    if (!v || json_is_null(v)) return def;
    if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi)) {
        cb_plan_errf(w, obj, key, path, "must be a number in [%g, %g], got %s", lo, hi,
                     show(v, buf, sizeof buf));
        return def;
    }
    return json_number_value(v);
}

const char *cb_plan_str(cb_plan_walk *w, const json_t *obj, const char *key, const char *def,
                        const char *const *choices, const char *path) {
    const json_t *v = json_object_get(obj, key);
    char buf[64], list[256] = "";
    if (!v || json_is_null(v)) return def;
    if (json_is_string(v))
        for (int i = 0; choices[i]; i++)
            if (strcmp(choices[i], json_string_value(v)) == 0) return choices[i];
    for (int i = 0; choices[i]; i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", choices[i]);
    }
    cb_plan_errf(w, obj, key, path, "must be one of %s, got %s", list, show(v, buf, sizeof buf));
    return NULL;
}

int64_t cb_plan_width_in(cb_plan_walk *w, const json_t *obj, const char *key, int64_t d_in,
                         const char *path) {
    int64_t declared = cb_plan_int(w, obj, key, 0, path);
    if (declared == CB_PLAN_UNKNOWN) return d_in;
    if (d_in != CB_PLAN_UNKNOWN && declared != d_in)
        cb_plan_errf(w, obj, key, path, "%lld does not match the width flowing in (%lld)",
                     (long long)declared, (long long)d_in);
    return declared;
}

void cb_plan_tensor(json_t *tensors, const char *name, int64_t rows, int64_t cols,
                    const char *init, double std, int64_t *params, int *overflow) {
    json_t *t = json_object();
    json_t *shape = json_array();
    json_array_append_new(shape, json_integer(rows));
    if (cols) json_array_append_new(shape, json_integer(cols));
    json_object_set_new(t, "name", json_string(name));
    json_object_set_new(t, "shape", shape);
    json_object_set_new(t, "init", json_string(init));
    if (strcmp(init, "normal") == 0) json_object_set_new(t, "std", json_real(std));
    json_array_append_new(tensors, t);
    int64_t elems = cols ? cb_count_mul(rows, cols, overflow) : rows;
    *params = cb_count_add(*params, elems, overflow);
}

json_t *cb_plan_copy_data(const json_t *v) {
    if (json_is_object(v)) {
        json_t *copy = json_object();
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m)
            if (!cb_is_annotation(k)) json_object_set_new(copy, k, cb_plan_copy_data(m));
        return copy;
    }
    if (json_is_array(v)) {
        json_t *copy = json_array();
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) json_array_append_new(copy, cb_plan_copy_data(m));
        return copy;
    }
    return json_deep_copy(v);
}
