/* plan.h: from a lowered manifest to the plan document (kind "plan"): widths inferred
 * layer to layer, shapes checked, tensors and parameter counts listed (man/cb-plan.5). */
#ifndef CB_PLAN_PLAN_H
#define CB_PLAN_PLAN_H

#include <stdio.h>
#include <jansson.h>
#include "core/diag.h"

/* Build the plan of a lowered document. Every shape error is recorded in d (code
 * CB_E_INVALID, where = "file:line:col", msg = "PATH: message"), not only the first.
 * Returns CB_OK with *plan_doc set (caller decrefs), or the status of the first error
 * with *plan_doc NULL. Robust to schema-invalid input: it reports, never crashes. */
int cb_plan_build(const json_t *lowered_doc, json_t **plan_doc, cb_diags *d);

/* Record why lowered_doc is not a lowered manifest at all (kind other than "lowered",
 * no "manifest" mapping): one error without a location. */
void cb_plan_doc_error(const json_t *lowered_doc, cb_diags *d);

/* A readable tree of a plan: one line per node (id, type, d_in->d_out, parameters,
 * KV elements per token for attention), a NestedTopology once with "xN", totals last.
 * Returns 0, or -1 when fp reports a write error. */
int cb_plan_print(FILE *fp, const json_t *plan_doc);

/* The plan document of the student of run group/run (made by cb-validate from the run's
 * train.student.overrides): plan with its model and totals replaced by the student's,
 * without "students". NULL when the run has no student. Caller decrefs. */
json_t *cb_plan_student_doc(const json_t *plan, const char *group, const char *run);

#endif
