/* verdict.c: checks, warnings and the verdict of one verification. */
#include "verify/verdict.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

json_t *cb_json_num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

void cb_verdict_init(cb_verdict *v, int fail_fast) {
    memset(v, 0, sizeof *v);
    v->checks = json_array();
    v->warnings = json_array();
    v->fail_fast = fail_fast;
}

void cb_verdict_free(cb_verdict *v) {
    json_decref(v->checks);
    json_decref(v->warnings);
    memset(v, 0, sizeof *v);
}

void cb_verdict_warn(cb_verdict *v, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_array_append_new(v->warnings, json_string(buf));
}

void cb_verdict_check(cb_verdict *v, const char *name, double value, double limit, int at_most) {
    int pass = at_most ? value <= limit : value >= limit; /* false for a NaN */
    json_t *c = json_object();
    json_object_set_new(c, "name", json_string(name));
    json_object_set_new(c, "value", cb_json_num(value));
    json_object_set_new(c, "op", json_string(at_most ? "<=" : ">="));
    json_object_set_new(c, "limit", cb_json_num(limit));
    json_object_set_new(c, "pass", json_boolean(pass));
    json_array_append_new(v->checks, c);
    if (pass) return;
    v->failed++;
    if (!v->fail_fast)
        cb_verdict_warn(v, "%s = %.6g, %s %.6g: failed (fail_fast false: a warning)", name, value,
                        at_most ? "above the limit" : "below the limit", limit);
}

int cb_verdict_status(const cb_verdict *v) { return v->failed && v->fail_fast ? 1 : 0; }

void cb_verdict_put(cb_verdict *v, json_t *doc) {
    json_object_set_new(doc, "checks", v->checks);
    json_object_set_new(doc, "warnings", v->warnings);
    json_object_set_new(doc, "verdict", json_string(v->failed ? "fail" : "pass"));
    json_object_set_new(doc, "checks_failed", json_integer(v->failed));
    json_object_set_new(doc, "exit_status", json_integer(cb_verdict_status(v)));
    v->checks = v->warnings = NULL;
}
