/* validate.c: the cb-validate stage: the document's kind, the schema check, then the
 * plan builder. */
#include "plan/validate.h"

#include <string.h>
#include "core/json_doc.h"
#include "manifest/schema.h"
#include "plan/plan.h"

/* The manifest's top level: version 1, a name, a model mapping. The field-by-field
 * schema of every section is cb_schema_check's (lib/manifest/schema.h). */
int cb_validate_schema(const json_t *lowered_doc, cb_diags *d) {
    return cb_schema_check(lowered_doc, d);
}

int cb_validate(const json_t *lowered_doc, json_t **plan_doc, cb_diags *d) {
    *plan_doc = NULL;
    const char *kind = json_string_value(json_object_get(lowered_doc, "kind"));
    if (!kind || strcmp(kind, "lowered") != 0 || !json_is_object(json_object_get(lowered_doc, "manifest"))) {
        cb_plan_doc_error(lowered_doc, d);
        return CB_E_INVALID;
    }
    if (cb_validate_schema(lowered_doc, d) > 0) return CB_E_INVALID;
    return cb_plan_build(lowered_doc, plan_doc, d);
}
