/* inputs.c: gathering results, verifications and training metrics (see artifacts.h). */
#include "artifacts/artifacts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "core/sha256.h"

#define MAX_INPUT_BYTES ((size_t)1 << 30)

void cb_artifacts_input_init(cb_artifacts_input *in) {
    in->bench = json_array();
    in->verify = json_array();
    in->training = json_array();
    in->files = json_array();
}

void cb_artifacts_input_free(cb_artifacts_input *in) {
    json_decref(in->bench);
    json_decref(in->verify);
    json_decref(in->training);
    json_decref(in->files);
    memset(in, 0, sizeof *in);
}

static void note_file(cb_artifacts_input *in, const char *path, const char *text, size_t len, const char *what) {
    char sha[65];
    cb_sha256_hex(text, len, sha);
    json_array_append_new(in->files, json_pack("{s:s, s:s, s:s}", "path", path, "sha256", sha, "what", what));
}

/* The training run of a directory: its metrics lines and run.json. */
static int read_run_dir(cb_artifacts_input *in, const char *dir, cb_error *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *text;
    size_t len;
    int rc = cb_read_file(path, MAX_INPUT_BYTES, &text, &len, e);
    if (rc != CB_OK) return cb_fail(e, CB_E_IO, dir, "not a run directory (no readable metrics.jsonl)");
    json_t *rows = json_array();
    int line = 0;
    for (char *p = text, *nl; rc == CB_OK && p < text + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) nl = text + len;
        *nl = 0;
        line++;
        if (strspn(p, " \t\r") == strlen(p)) continue;
        json_error_t je;
        json_t *o = json_loads(p, 0, &je);
        if (!json_is_object(o) || !json_is_integer(json_object_get(o, "step"))) {
            char where[4300];
            snprintf(where, sizeof where, "%s:%d", path, line);
            rc = cb_fail(e, CB_E_INVALID, where, "not a metrics line (a JSON object with step)");
            json_decref(o);
            break;
        }
        json_array_append_new(rows, o);
    }
    if (rc == CB_OK) note_file(in, path, text, len, "metrics");
    free(text);
    if (rc != CB_OK) {
        json_decref(rows);
        return rc;
    }
    json_t *run_json = NULL;
    snprintf(path, sizeof path, "%s/run.json", dir);
    struct stat st;
    if (stat(path, &st) == 0) {
        cb_error ignored;
        if (cb_doc_load(path, "run", &run_json, &ignored) != CB_OK) run_json = NULL;
    }
    const char *run = run_json ? json_string_value(json_object_get(run_json, "run")) : NULL;
    const char *base = strrchr(dir, '/');
    char name[256];
    snprintf(name, sizeof name, "%s", run ? run : base && base[1] ? base + 1 : dir);
    json_array_append_new(in->training, json_pack("{s:s, s:s, s:o, s:o}", "run", name, "path", dir, "rows", rows,
                                                  "run_json", run_json ? run_json : json_null()));
    return CB_OK;
}

int cb_artifacts_read(cb_artifacts_input *in, const char *path, cb_error *e) {
    struct stat st;
    if (stat(path, &st) != 0) return cb_fail(e, CB_E_IO, path, "cannot open: no such file or directory");
    if (S_ISDIR(st.st_mode)) return read_run_dir(in, path, e);
    char *text;
    size_t len;
    CB_TRY(cb_read_file(path, MAX_INPUT_BYTES, &text, &len, e));
    /* one document (verify.json is indented JSON over many lines) */
    json_error_t je;
    json_t *doc = json_loadb(text, len, 0, &je);
    if (json_is_object(doc) && json_object_get(doc, "kind") && !json_object_get(doc, "step")) {
        const char *kind = json_string_value(json_object_get(doc, "kind"));
        int rc = CB_OK;
        if (kind && strcmp(kind, "verify") == 0) {
            json_array_append_new(in->verify, json_pack("{s:s, s:o}", "path", path, "doc", doc));
            note_file(in, path, text, len, "verify");
        } else if (kind && strcmp(kind, "bench") == 0) {
            json_array_append_new(in->bench, doc);
            note_file(in, path, text, len, "bench");
        } else {
            rc = cb_fail(e, CB_E_INVALID, path, "a %s document, not cb-bench results, a verify.json or metrics",
                         kind ? kind : "?");
            json_decref(doc);
        }
        free(text);
        return rc;
    }
    json_decref(doc);
    /* JSON lines: cb-bench records, or metrics lines (a metrics.jsonl given as a file) */
    int rc = CB_OK, line = 0, n_bench = 0;
    json_t *rows = json_array();
    for (char *p = text, *nl; rc == CB_OK && p < text + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) nl = text + len;
        char saved = *nl;
        *nl = 0;
        line++;
        if (strspn(p, " \t\r") != strlen(p)) {
            json_t *o = json_loads(p, 0, &je);
            const char *kind = json_string_value(json_object_get(o, "kind"));
            char where[4200];
            snprintf(where, sizeof where, "%s:%d", path, line);
            if (!json_is_object(o)) {
                rc = cb_fail(e, CB_E_INVALID, where, "not JSON%s%s", o ? "" : ": ", o ? "" : je.text);
            } else if (kind && strcmp(kind, "bench") == 0) {
                json_array_append(in->bench, o);
                n_bench++;
            } else if (!kind && json_is_integer(json_object_get(o, "step"))) {
                json_array_append(rows, o);
            } else {
                rc = cb_fail(e, CB_E_INVALID, where, "neither a cb-bench record (kind bench) nor a metrics line (step)");
            }
            json_decref(o);
        }
        *nl = saved;
    }
    if (rc == CB_OK && json_array_size(rows) > 0) {
        char name[256];
        const char *slash = strrchr(path, '/');
        if (slash && slash > path) snprintf(name, sizeof name, "%.*s", (int)(slash - path), path);
        else snprintf(name, sizeof name, "%s", path);
        const char *b = strrchr(name, '/');
        json_array_append_new(in->training, json_pack("{s:s, s:s, s:O, s:n}", "run", b ? b + 1 : name, "path", path,
                                                      "rows", rows, "run_json"));
    }
    if (rc == CB_OK && n_bench + json_array_size(rows) == 0)
        rc = cb_fail(e, CB_E_INVALID, path, "no cb-bench records or metrics lines");
    if (rc == CB_OK) note_file(in, path, text, len, n_bench ? "bench" : "metrics");
    json_decref(rows);
    free(text);
    return rc;
}

json_t *cb_artifacts_models(const cb_artifacts_input *in) {
    json_t *models = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(in->bench, i, r) {
        const char *m = json_string_value(json_object_get(r, "model"));
        if (!m) continue;
        int seen = 0;
        for (size_t k = 0; k < json_array_size(models); k++)
            if (strcmp(json_string_value(json_array_get(models, k)), m) == 0) seen = 1;
        if (!seen) json_array_append_new(models, json_string(m));
    }
    return models;
}

const char *cb_artifacts_reference(const json_t *models) {
    for (size_t k = 0; k < json_array_size(models); k++)
        if (strcmp(json_string_value(json_array_get(models, k)), "teacher") == 0) return "teacher";
    return json_array_size(models) ? json_string_value(json_array_get(models, 0)) : NULL;
}
