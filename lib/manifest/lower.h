/* lower.h: manifest document -> lowered document (CONTRACTS.md "Lowered JSON"):
 * vars substituted, defaults merged, runs grouped, topology node ids assigned. */
#ifndef CB_MANIFEST_LOWER_H
#define CB_MANIFEST_LOWER_H

#include <jansson.h>
#include "core/diag.h"

#define CB_LOWER_MAX_DEPTH 256           /* deepest nesting of mappings and lists */
#define CB_LOWER_MAX_VALUES 2000000      /* values that substituting vars may copy in all */
#define CB_LOWER_MAX_CHARS (64 << 20)    /* characters that substitution may produce in all */
#define CB_LOWER_MAX_VAR_CHAIN 256       /* vars referring to vars referring to ... */
#define CB_LOWER_MAX_NEST 1024           /* values and vars being substituted at once */

/* Lower a document of kind "manifest". On success *lowered_doc is a new document of
 * kind "lowered" (the input is not changed) and CB_OK is returned. Otherwise every
 * problem found is in d (where = "file:line:col" of the offending value, msg =
 * "path: message", e.g. "model.topology.layers[2].n_heads: undefined variable ..."),
 * *lowered_doc is NULL and CB_E_INVALID is returned. Lowering does not check the
 * schema: values of unexpected types are left for cb-validate. */
int cb_lower(json_t *manifest_doc, json_t **lowered_doc, cb_diags *d);

/* The default node name of a topology or layer type ("AttentionLayer" -> "attn"),
 * "node" for a type caramba does not know. */
const char *cb_lower_default_name(const char *type);

#endif
