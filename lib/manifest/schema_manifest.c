/* schema_manifest.c: schema table of the manifest's top level, and the defaults section,
 * whose keys are run keys (seed, steps, mode) or train options. */
#include <string.h>
#include "core/json_doc.h"
#include "manifest/schema_table.h"
#include "manifest/suggest.h"

static const char *const run_level[] = {"seed", "steps", "mode"};

void cb_schema_check_defaults(cb_check_ctx *c, const json_t *defaults, const char *path) {
    const char *key;
    json_t *v;
    char p[512];
    json_object_foreach((json_t *)defaults, key, v) {
        if (cb_is_annotation(key)) continue;
        cb_path_key(p, sizeof p, path, key);
        const cb_field *f = NULL;
        for (int i = 0; i < 3; i++)
            if (strcmp(key, run_level[i]) == 0) f = cb_schema_field(&cb_run_schema, key);
        if (!f) f = cb_schema_field(&cb_train_schema, key);
        if (f) {
            cb_schema_check_value(c, v, &f->t, p, cb_loc(defaults, key));
            continue;
        }
        const char *names[128];
        int n = 0;
        for (int i = 0; i < 3; i++) names[n++] = run_level[i];
        for (int i = 0; i < cb_train_schema.n_fields && n < 128; i++) names[n++] = cb_train_schema.fields[i].name;
        const char *near = cb_suggest(key, names, n);
        if (near)
            cb_schema_errorf(c, cb_loc(defaults, key), p, "unknown field %s (did you mean %s?)", key, near);
        else
            cb_schema_errorf(c, cb_loc(defaults, key), p,
                             "unknown field %s (defaults hold seed, steps, mode and train options)", key);
    }
}

static void manifest_check(cb_check_ctx *c, const json_t *m, const char *path) {
    char p[512];
    const json_t *runs = json_object_get(m, "runs"), *benchmarks = json_object_get(m, "benchmarks");
    if (json_is_array(runs) || json_is_array(benchmarks)) {
        char rp[512];
        cb_schema_check_refs(c, json_is_array(runs) ? runs : NULL, json_is_array(benchmarks) ? benchmarks : NULL,
                             cb_path_key(rp, sizeof rp, path, "runs"), cb_path_key(p, sizeof p, path, "benchmarks"));
    }
}

static const cb_field manifest_fields[] = {
    FIELD("version", {.kind = CB_K_INT, .range = CB_R_MIN | CB_R_MAX, .min = 1, .max = 1}, .required = 1),
    FIELD("name", T_FILE_NAME, .required = 1),
    FIELD("notes", T_STRING),
    FIELD("vars", {.kind = CB_K_MAP, .flags = CB_F_KEY_IDENT, .elem = &(const cb_type)T_ANY}),
    FIELD("defaults", {.kind = CB_K_MAP}),
    FIELD("model", T_OBJ(cb_model_schema), .required = 1),
    FIELD("groups", T_LIST_UNIQUE(T_OBJ(cb_group_schema), "name")),
    FIELD("runs", T_LIST_UNIQUE(T_OBJ(cb_run_schema), "id")),
    FIELD("benchmarks", T_LIST_UNIQUE(T_OBJ(cb_benchmark_schema), "id")),
    FIELD("verify", T_UNION(cb_verify_union)),
    FIELD("paper", T_OBJ(cb_paper_schema)),
    FIELD("review", T_OBJ(cb_review_schema)),
    FIELD("research", T_OBJ(cb_research_schema)),
};
const cb_schema cb_manifest_schema = {"manifest", manifest_fields, CB_NFIELDS(manifest_fields), manifest_check, NULL};
