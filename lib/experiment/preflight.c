/* preflight.c: checks before anything starts (see preflight.h). */
#include "experiment/preflight.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "backend/backend.h"
#include "core/json_doc.h"
#include "train/config.h"

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* a training run's train.device or a benchmark's device: cuda needs a GPU before anything starts */
static int check_device(const cb_graph *g, const cb_stage *s, cb_error *e) {
    const int bench = s->kind == CB_STAGE_BENCH;
    const json_t *where = bench ? s->section : json_object_get(s->section, "train");
    const char *device = str(where, "device");
    if (!device || strcmp(device, "cuda") != 0) return CB_OK;
    cb_backend *be;
    cb_error why;
    cb_error_clear(&why);
    if (cb_backend_open("cuda", &be, &why) == CB_OK) return CB_OK;
    return cb_fail(e, CB_E_USAGE, cb_loc(where, "device"), "%s: group %s needs a GPU (%s %s asks for cuda) and there is none: %s",
                   bench ? "device" : "train.device", g->group_name, bench ? "benchmark" : "run", s->name, why.msg);
}

/* a checkpoint a run starts from: teacher.ckpt, student.ckpt, teacher_ckpt, a sample's ckpt */
static int check_checkpoints(const cb_graph *g, const cb_stage *s, cb_error *e) {
    const json_t *train = json_object_get(s->section, "train");
    static const char *const roles[] = {"teacher", "student"};
    for (int r = 0; r < 2; r++) {
        const json_t *ref = json_object_get(train, roles[r]);
        const char *ckpt = str(ref, "ckpt");
        if (ckpt && !exists(ckpt))
            return cb_fail(e, CB_E_USAGE, cb_loc(ref, "ckpt"),
                           "train.%s.ckpt: %s is not there (group %s needs this %s checkpoint for run %s)", roles[r],
                           ckpt, g->group_name, roles[r], s->name);
    }
    const char *tc = str(train, "teacher_ckpt");
    if (tc && !exists(tc))
        return cb_fail(e, CB_E_USAGE, cb_loc(train, "teacher_ckpt"),
                       "train.teacher_ckpt: %s is not there (group %s needs this teacher checkpoint for run %s)", tc,
                       g->group_name, s->name);
    const char *ck = str(s->section, "ckpt");
    if (ck && (s->kind == CB_STAGE_SAMPLE || s->kind == CB_STAGE_CHAT) && !exists(ck))
        return cb_fail(e, CB_E_USAGE, cb_loc(s->section, "ckpt"), "ckpt: %s is not there (run %s generates from it)",
                       ck, s->name);
    const json_t *draft = json_object_get(json_object_get(s->section, "generate"), "draft");
    if (str(draft, "ckpt") && !exists(str(draft, "ckpt")))
        return cb_fail(e, CB_E_USAGE, cb_loc(draft, "ckpt"), "generate.draft.ckpt: %s is not there (run %s)",
                       str(draft, "ckpt"), s->name);
    return CB_OK;
}

static int check_data(const cb_graph *g, const cb_stage *s, cb_error *e) {
    if (s->kind == CB_STAGE_TRAIN) {
        const json_t *train = json_object_get(s->section, "train");
        static const char *const keys[] = {"data", "val_split"};
        for (int k = 0; k < 2; k++) {
            const char *path = str(train, keys[k]);
            if (path && !exists(path))
                return cb_fail(e, CB_E_USAGE, cb_loc(train, keys[k]),
                               "train.%s: dataset %s is missing (run %s; cb-data prepare makes one)", keys[k], path,
                               s->name);
        }
    } else if (s->kind == CB_STAGE_BENCH) {
        const json_t *config = json_object_get(s->section, "config");
        const char *path = str(config, "dataset");
        if (path && !exists(path))
            return cb_fail(e, CB_E_USAGE, cb_loc(config, "dataset"), "config.dataset: dataset %s is missing (benchmark %s)",
                           path, s->name);
    }
    (void)g;
    return CB_OK;
}

static int check_tool(const cb_graph *g, const cb_stage *s, cb_tools *t, cb_error *e) {
    if (cb_tools_built(t, s->tool)) return CB_OK;
    static const char *const what[] = {[CB_STAGE_VERIFY] = "the verify block of run", [CB_STAGE_BENCH] = "benchmark",
                                       [CB_STAGE_ARTIFACTS] = "the artifacts of group"};
    const char *w = s->kind < (int)(sizeof what / sizeof *what) && what[s->kind] ? what[s->kind] : "stage";
    const char *where = s->kind == CB_STAGE_VERIFY ? cb_loc(s->section, "verify") : cb_loc(s->section, NULL);
    return cb_fail(e, CB_E_USAGE, where, "%s %s needs %s, which is not in this build", w,
                   s->kind == CB_STAGE_ARTIFACTS ? g->group_name : s->name, cb_tool_name(s->tool));
}

/* the trainer's own reading of the run: phases, dtypes and options this build does not do */
static int check_train_config(const cb_stage *s, const cb_graph *g, cb_error *e) {
    static cb_train_config cfg;
    int rc = cb_train_config_read(&cfg, g->group, s->section, e);
    if (rc != CB_OK) cb_error_prefix(e, "run %s", s->name);
    return rc;
}

int cb_preflight(const cb_graph *g, cb_tools *t, cb_error *e) {
    for (int i = 0; i < g->n; i++)
        if (g->stages[i].kind == CB_STAGE_TRAIN || g->stages[i].kind == CB_STAGE_BENCH)
            CB_TRY(check_device(g, &g->stages[i], e));
    for (int i = 0; i < g->n; i++) CB_TRY(check_checkpoints(g, &g->stages[i], e));
    for (int i = 0; i < g->n; i++) CB_TRY(check_data(g, &g->stages[i], e));
    for (int i = 0; i < g->n; i++)
        if (g->stages[i].tool != CB_TOOL_CB) CB_TRY(check_tool(g, &g->stages[i], t, e));
    for (int i = 0; i < g->n; i++)
        if (g->stages[i].kind == CB_STAGE_TRAIN) CB_TRY(check_train_config(&g->stages[i], g, e));
    return CB_OK;
}
