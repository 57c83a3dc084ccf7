/* resume.c: which edits of a plan a checkpoint survives (resume.h). */
#include "train/resume.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the run's train settings that change neither a weight nor a batch (resume.h says why) */
static const char *const NEUTRAL_TRAIN[] = {
    "log_every",  "save_every", "keep_last", "resume",        "num_workers",  "prefetch",
    "instrument", "wandb",      "wandb_project", "wandb_entity", "device",   "bucket_cap_mb",
    "activation_checkpointing", "activation_checkpoint_threshold_mb"};

static int in(const char *key, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, list[i]) == 0) return 1;
    return 0;
}

/* positions in the manifest: "@loc" objects of the run sections, "loc" strings of the
 * model's nodes (cb-lower) */
static int is_position(const char *key, const json_t *v) {
    return strcmp(key, "@loc") == 0 || (strcmp(key, "loc") == 0 && json_is_string(v));
}

/* a deep copy of v without positions anywhere */
static json_t *without_positions(const json_t *v) {
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
            if (!is_position(k, x)) json_object_set_new(out, k, without_positions(x));
        return out;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        for (size_t i = 0; i < json_array_size(v); i++) json_array_append_new(out, without_positions(json_array_get(v, i)));
        return out;
    }
    return json_deep_copy(v);
}

/* an object's members less the named ones and positions */
static json_t *members_except(const json_t *obj, const char *const *drop, size_t n) {
    json_t *out = json_object();
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)obj, k, x)
        if (!is_position(k, x) && !in(k, drop, n)) json_object_set_new(out, k, without_positions(x));
    return out;
}

static const json_t *find_by(const json_t *list, const char *field, const char *value) {
    for (size_t i = 0; value && i < json_array_size(list); i++) {
        const json_t *x = json_array_get(list, i);
        const char *s = json_string_value(json_object_get(x, field));
        if (s && strcmp(s, value) == 0) return x;
    }
    return NULL;
}

json_t *cb_resume_key(const json_t *plan, const char *group, const char *run) {
    static const char *const drop_top[] = {"groups", "source", "notes"};
    static const char *const drop_group[] = {"runs", "benchmarks", "description"};
    static const char *const drop_run[] = {"description", "expected", "verify", "generate", "train"};
    const json_t *g = find_by(json_object_get(plan, "groups"), "name", group);
    const json_t *r = g ? find_by(json_object_get(g, "runs"), "id", run) : NULL;
    if (!r) {
        json_t *all = without_positions(plan);
        json_object_del(all, "source");
        return all;
    }
    json_t *key = json_object();
    json_object_set_new(key, "plan", members_except(plan, drop_top, sizeof drop_top / sizeof *drop_top));
    json_object_set_new(key, "group", members_except(g, drop_group, sizeof drop_group / sizeof *drop_group));
    json_t *rk = members_except(r, drop_run, sizeof drop_run / sizeof *drop_run);
    const json_t *train = json_object_get(r, "train");
    if (json_is_object(train))
        json_object_set_new(rk, "train", members_except(train, NEUTRAL_TRAIN, sizeof NEUTRAL_TRAIN / sizeof *NEUTRAL_TRAIN));
    json_object_set_new(key, "run", rk);
    return key;
}

static void show(char *buf, size_t n, const json_t *v) {
    if (!v) {
        snprintf(buf, n, "absent");
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    snprintf(buf, n, "%s", s ? s : "?");
    if (s && strlen(s) >= n && n > 4) memcpy(buf + n - 4, "...", 4);
    free(s);
}

/* the first difference under path (a JSON path from the key's top) into buf: 1 found */
static int first_difference(const json_t *a, const json_t *b, char *path, size_t cap, char *buf, size_t n) {
    if (a && b && json_equal((json_t *)a, (json_t *)b)) return 0;
    size_t len = strlen(path);
    if (json_is_object(a) && json_is_object(b)) {
        const char *k;
        json_t *x;
        for (int pass = 0; pass < 2; pass++) /* a's members, then those only b has */
            json_object_foreach((json_t *)(pass ? b : a), k, x) {
                if (pass && json_object_get(a, k)) continue;
                snprintf(path + len, cap - len, "%s%s", len ? "." : "", k);
                if (first_difference(json_object_get(a, k), json_object_get(b, k), path, cap, buf, n)) return 1;
                path[len] = 0;
            }
        return 0;
    }
    if (json_is_array(a) && json_is_array(b) && json_array_size(a) == json_array_size(b)) {
        for (size_t i = 0; i < json_array_size(a); i++) {
            snprintf(path + len, cap - len, "[%zu]", i);
            if (first_difference(json_array_get(a, i), json_array_get(b, i), path, cap, buf, n)) return 1;
            path[len] = 0;
        }
        return 0;
    }
    char was[80], now[80];
    show(was, sizeof was, a);
    show(now, sizeof now, b);
    snprintf(buf, n, "%s: %s at the checkpoint, %s now", path[0] ? path : "the plan", was, now);
    return 1;
}

int cb_resume_key_same(const json_t *was, const json_t *now, char *buf, size_t n) {
    char path[512] = "";
    if (n) buf[0] = 0;
    if (!first_difference(was, now, path, sizeof path, buf, n)) return 1;
    /* "run.train.steps" reads better as the run's own field */
    const char *run_prefix = "run.";
    if (strncmp(buf, run_prefix, strlen(run_prefix)) == 0) memmove(buf, buf + 4, strlen(buf + 4) + 1);
    return 0;
}
