/* json_doc.c: loading, saving and locating the JSON documents between tools. */
#include "core/json_doc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "core/atomic_file.h"

#define CB_DOC_MAX_BYTES ((size_t)1 << 30)

json_t *cb_doc_new(const char *kind) {
    json_t *doc = json_object();
    json_object_set_new(doc, "cb_version", json_string(CB_FORMAT_VERSION));
    json_object_set_new(doc, "kind", json_string(kind));
    return doc;
}

int cb_doc_parse(const char *text, size_t len, const char *name, const char *want_kind,
                 json_t **out, cb_error *e) {
    *out = NULL;
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        char where[600];
        snprintf(where, sizeof where, "%s:%d:%d", name, je.line, je.column);
        return cb_fail(e, CB_E_INVALID, where, "invalid JSON: %s", je.text);
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        return cb_fail(e, CB_E_INVALID, name, "not a caramba document (expected a JSON object)");
    }
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    if (!json_is_string(json_object_get(doc, "cb_version")) || !kind) {
        json_decref(doc);
        return cb_fail(e, CB_E_INVALID, name, "not a caramba document (no \"cb_version\" and \"kind\")");
    }
    if (want_kind && strcmp(kind, want_kind) != 0) {
        cb_fail(e, CB_E_INVALID, name, "expected a document of kind \"%s\", got \"%s\"", want_kind, kind);
        json_decref(doc); /* kind points into doc: free it only after the message is made */
        return CB_E_INVALID;
    }
    *out = doc;
    return CB_OK;
}

int cb_doc_load(const char *path, const char *want_kind, json_t **out, cb_error *e) {
    char *text;
    size_t len;
    *out = NULL;
    CB_TRY(cb_read_file(path, CB_DOC_MAX_BYTES, &text, &len, e));
    const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
    int rc = cb_doc_parse(text, len, name, want_kind, out, e);
    free(text);
    return rc;
}

int cb_doc_save(json_t *doc, const char *path, cb_error *e) {
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    if (!text) return cb_fail(e, CB_E_RUNTIME, path ? path : "stdout", "cannot serialise JSON");
    cb_atomic_file af;
    int rc = cb_atomic_open(&af, path, e);
    if (rc == CB_OK) {
        size_t n = strlen(text);
        if (fwrite(text, 1, n, af.fp) != n || fputc('\n', af.fp) == EOF) {
            int err = errno;
            cb_atomic_abort(&af);
            rc = cb_fail(e, CB_E_IO, path ? path : "stdout", "write failed: %s", strerror(err));
        } else {
            rc = cb_atomic_commit(&af, e);
        }
    }
    free(text);
    return rc;
}

const char *cb_loc(const json_t *obj, const char *key) {
    json_t *locs = json_object_get(obj, CB_LOC_KEY);
    if (!json_is_object(locs)) return "";
    const char *s = key ? json_string_value(json_object_get(locs, key)) : NULL;
    if (!s) s = json_string_value(json_object_get(locs, ""));
    return s ? s : "";
}

int cb_loc_set(json_t *obj, const char *key, const char *loc) {
    json_t *locs = json_object_get(obj, CB_LOC_KEY);
    if (!locs) {
        locs = json_object();
        if (json_object_set_new(obj, CB_LOC_KEY, locs) != 0) return -1;
    }
    return json_object_set_new(locs, key ? key : "", json_string(loc));
}

int cb_is_annotation(const char *key) { return key && key[0] == '@'; }
