/* verdict.h: the checks of one verification against its thresholds, its warnings and its
 * verdict. A failed check is always recorded and makes the verdict "fail"; with fail_fast
 * it also makes cb-verify exit 1, without it it is a warning and the tool exits 0, so a
 * pipeline runs on to its benchmarks (docs/DESIGN.md section 3). */
#ifndef CB_VERIFY_VERDICT_H
#define CB_VERIFY_VERDICT_H

#include <jansson.h>

typedef struct cb_verdict {
    json_t *checks;   /* [{"name", "value", "limit", "op": "<=" | ">=", "pass"}] */
    json_t *warnings; /* ["..."] */
    int failed;       /* checks that failed */
    int fail_fast;
} cb_verdict;

void cb_verdict_init(cb_verdict *v, int fail_fast);
void cb_verdict_free(cb_verdict *v);

/* Check value <= limit (at_most 1) or value >= limit (at_most 0). A NaN fails. */
void cb_verdict_check(cb_verdict *v, const char *name, double value, double limit, int at_most);
void cb_verdict_warn(cb_verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Move checks, warnings, "verdict" ("pass" | "fail") and "exit_status" into doc. */
void cb_verdict_put(cb_verdict *v, json_t *doc);

/* The exit status the verdict asks for: 1 when a check failed under fail_fast, else 0. */
int cb_verdict_status(const cb_verdict *v);

/* A JSON number, or null when x is not finite (JSON has no NaN). */
json_t *cb_json_num(double x);

#endif
