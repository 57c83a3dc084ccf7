/* yaml_parse.h: a YAML manifest turned into the "manifest" JSON document (CONTRACTS.md,
 * "Manifest JSON"), every mapping annotated with the source location of its values. */
#ifndef CB_MANIFEST_YAML_PARSE_H
#define CB_MANIFEST_YAML_PARSE_H

#include <stddef.h>
#include <jansson.h>
#include "core/error.h"

/* Bounds that make hostile input fail fast instead of exhausting memory. */
#define CB_YAML_MAX_FILE_BYTES ((size_t)64 << 20)   /* input text, checked before reading */
#define CB_YAML_MAX_NODES 1000000                   /* nodes after alias and merge expansion */
#define CB_YAML_MAX_SCALAR_BYTES ((size_t)128 << 20) /* scalar bytes after alias expansion */
#define CB_YAML_MAX_DEPTH 256                       /* nesting of mappings and sequences */

/* Parse one YAML document (text of len bytes, need not be NUL-terminated) into
 *   {"cb_version":"0.1","kind":"manifest","source":file_name,"manifest":{...}}
 * Every object made from a mapping carries "@loc": {"": start, key: value start, ...}
 * with "file_name:line:col" strings (1-based). Plain scalars are typed by the YAML 1.2
 * core schema; quoted and block scalars are strings; !!str !!int !!float !!bool !!null
 * !!map !!seq tags are honoured. Anchors, aliases and "<<" merge keys are expanded.
 * Any problem: CB_E_INVALID with e->where = "file_name:line:col" and a one-line message. */
int cb_yaml_parse(const char *text, size_t len, const char *file_name,
                  json_t **out_manifest_doc, cb_error *e);

/* Read path ("-" = stdin, named "<stdin>" in locations) and parse it as above.
 * An unreadable file is CB_E_IO; a file over CB_YAML_MAX_FILE_BYTES is CB_E_INVALID. */
int cb_yaml_parse_file(const char *path, json_t **out_manifest_doc, cb_error *e);

#endif
