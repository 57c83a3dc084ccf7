/* validate.h: the cb-validate stage as one library call (used by cb-validate and by
 * `cb compile`): the schema check, then shapes and the plan. */
#ifndef CB_PLAN_VALIDATE_H
#define CB_PLAN_VALIDATE_H

#include <jansson.h>
#include "core/diag.h"

/* The schema check cb-validate runs first. Records every problem in d; returns how
 * many it recorded. */
int cb_validate_schema(const json_t *lowered_doc, cb_diags *d);

/* Schema check, then (only on a schema-valid document, so that the shape messages
 * are never consequences of a schema error) cb_plan_build. Returns CB_OK with
 * *plan_doc set, or CB_E_INVALID with every error in d and *plan_doc NULL. */
int cb_validate(const json_t *lowered_doc, json_t **plan_doc, cb_diags *d);

#endif
