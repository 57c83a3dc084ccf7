/* validate.c: the cb-validate stage: the schema check, then the plan builder. */
#include "plan/validate.h"

#include <string.h>
#include "plan/plan.h"

/* The document envelope: a lowered manifest with a "model" mapping. The field-level
 * schema (types, ranges, unknown fields) is cb_schema_check's. */
int cb_validate_schema(const json_t *lowered_doc, cb_diags *d) {
    const char *kind = json_string_value(json_object_get(lowered_doc, "kind"));
    const json_t *m = json_object_get(lowered_doc, "manifest");
    int before = d->n + d->n_dropped;
    if (!kind || strcmp(kind, "lowered") != 0)
        cb_diags_addf(d, CB_E_INVALID, "", "expected a document of kind \"lowered\", got %s%s%s",
                      kind ? "\"" : "", kind ? kind : "none", kind ? "\"" : "");
    else if (!json_is_object(m))
        cb_diags_addf(d, CB_E_INVALID, "", "manifest: missing (a lowered document carries the manifest mapping)");
    return d->n + d->n_dropped - before;
}

int cb_validate(const json_t *lowered_doc, json_t **plan_doc, cb_diags *d) {
    *plan_doc = NULL;
    if (cb_validate_schema(lowered_doc, d) > 0) return CB_E_INVALID;
    return cb_plan_build(lowered_doc, plan_doc, d);
}
