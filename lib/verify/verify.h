/* verify.h: one verification of a student against its teacher, as the run's verify block
 * asks (verify/spec.h): compare, fidelity or eval, into the verify.json document
 * (kind "verify", cb-verify(1) describes every member). */
#ifndef CB_VERIFY_VERIFY_H
#define CB_VERIFY_VERIFY_H

#include <jansson.h>
#include "core/error.h"
#include "verify/progress.h"
#include "verify/spec.h"

typedef struct cb_verify_inputs {
    const char *teacher_dir; /* a model dir or Hugging Face dir; NULL: none (eval without max_accuracy_drop) */
    const char *student_dir;
    const char *data;        /* tokens replacing the run's data; NULL: the run's */
    const char *const *suites; /* suite files whose cases join an eval's (verify/eval_suite.h) */
    int n_suites;
    cb_verify_progress progress; /* after each batch or case (fn NULL: none) */
} cb_verify_inputs;

/* Run it. *doc (owned by the caller) holds every number, the thresholds, the checks,
 * the warnings and the verdict; *status is the exit status the verdict asks for (0, or 1
 * when a check failed under fail_fast). On an error nothing is returned in *doc. */
int cb_verify_run(json_t **doc, int *status, const cb_verify_spec *s, const cb_verify_inputs *in, cb_error *e);

#endif
