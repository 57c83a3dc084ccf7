/* json_doc.h: the JSON documents that pass between tools (docs/DESIGN.md section 2):
 * each carries "cb_version" and "kind"; nodes that came from YAML carry "@loc". */
#ifndef CB_CORE_JSON_DOC_H
#define CB_CORE_JSON_DOC_H

#include <jansson.h>
#include "core/error.h"

#define CB_VERSION "0.1.0"
#define CB_FORMAT_VERSION "0.1" /* the "cb_version" of every document */

/* {"cb_version": CB_FORMAT_VERSION, "kind": kind} */
json_t *cb_doc_new(const char *kind);

/* Read a document from path ("-" = stdin). want_kind NULL accepts any kind.
 * Invalid JSON, a missing or other kind: CB_E_INVALID naming path:line:col. */
int cb_doc_load(const char *path, const char *want_kind, json_t **out, cb_error *e);

/* Parse a document already in memory; name is used in errors. */
int cb_doc_parse(const char *text, size_t len, const char *name, const char *want_kind,
                 json_t **out, cb_error *e);

/* Write doc as indented JSON plus a newline to path (NULL or "-" = stdout),
 * atomically for files; a failed write is reported. */
int cb_doc_save(json_t *doc, const char *path, cb_error *e);

/* Source locations. A JSON object made from a YAML mapping has a member
 *   "@loc": {"": "m.yml:3:5", "key": "m.yml:4:12", ...}
 * giving where the mapping starts and where each key's value starts.
 * Members whose name starts with '@' are annotations, not manifest data. */
#define CB_LOC_KEY "@loc"

/* Where key's value of obj came from; falls back to obj's own location;
 * "" when unknown. key NULL asks for the object's own location. */
const char *cb_loc(const json_t *obj, const char *key);

/* Record a location (used by cb-parse and by stages that synthesise nodes). */
int cb_loc_set(json_t *obj, const char *key, const char *loc);

/* 1 when a member name is an annotation ("@..."). */
int cb_is_annotation(const char *key);

#endif
