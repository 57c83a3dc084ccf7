/* bench.c: choosing a group's benchmarks, checking them before anything runs, opening the
 * models they name, and running each type for each of its models (see bench.h). */
#include "bench/bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "bench/custom.h"
#include "core/json_doc.h"
#include "data/dataset.h"
#include "io/model_dir.h"
#include "manifest/schema_table.h"
#include "tokenizer/load.h"
#include "bench/tokenizer_spec.h"

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

void cb_bench_progress(cb_bench_ctx *c, const char *fmt, ...) {
    if (!c->progress) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->progress(c->progress_ctx, line);
}

/* "a, b, c" of the member key of each object of list, into buf */
static void list_names(const json_t *list, const char *key, char *buf, size_t cap) {
    size_t at = 0;
    buf[0] = 0;
    for (size_t i = 0; i < json_array_size(list) && at < cap; i++) {
        const char *n = str(json_array_get(list, i), key);
        at += (size_t)snprintf(buf + at, cap - at, "%s%s", i ? ", " : "", n ? n : "?");
    }
}

int cb_bench_find_group(const json_t *plan, const char *name, const json_t **group, cb_error *e) {
    const json_t *groups = json_object_get(plan, "groups");
    size_t n = json_array_size(groups);
    char names[700];
    list_names(groups, "name", names, sizeof names);
    if (n == 0) return cb_fail(e, CB_E_USAGE, "", "the plan has no groups");
    if (!name) {
        if (n > 1) return cb_fail(e, CB_E_USAGE, "", "the plan has %zu groups (%s): choose one with --group", n, names);
        *group = json_array_get(groups, 0);
        return CB_OK;
    }
    for (size_t i = 0; i < n; i++) {
        const char *g = str(json_array_get(groups, i), "name");
        if (g && strcmp(g, name) == 0) {
            *group = json_array_get(groups, i);
            return CB_OK;
        }
    }
    return cb_fail(e, CB_E_USAGE, "", "the plan has no group %s (it has: %s)", name, names);
}

int cb_bench_select(const json_t *group, const char *id, json_t **list, cb_error *e) {
    const json_t *benches = json_object_get(group, "benchmarks");
    const char *gname = str(group, "name");
    if (json_array_size(benches) == 0)
        return cb_fail(e, CB_E_USAGE, cb_loc(group, NULL), "group %s has no benchmarks", gname ? gname : "?");
    *list = json_array();
    for (size_t i = 0; i < json_array_size(benches); i++) {
        json_t *b = json_array_get(benches, i);
        const char *bid = str(b, "id");
        if (!id || (bid && strcmp(bid, id) == 0)) json_array_append(*list, b);
    }
    if (json_array_size(*list) == 0) {
        char names[700];
        list_names(benches, "id", names, sizeof names);
        json_decref(*list);
        *list = NULL;
        return cb_fail(e, CB_E_USAGE, cb_loc(group, "benchmarks"), "group %s has no benchmark %s (it has: %s)",
                       gname ? gname : "?", id, names);
    }
    return CB_OK;
}

static cb_bench_model *find_model(cb_bench_ctx *c, const char *name) {
    for (int i = 0; i < c->n_models; i++)
        if (strcmp(c->models[i].name, name) == 0) return &c->models[i];
    return NULL;
}

int cb_bench_model_get(cb_bench_ctx *c, const char *name, const char *where, cb_bench_model **out, cb_error *e) {
    cb_bench_model *m = find_model(c, name);
    if (!m) {
        char given[600];
        size_t at = 0;
        given[0] = 0;
        for (int i = 0; i < c->n_models && at < sizeof given; i++)
            at += (size_t)snprintf(given + at, sizeof given - at, "%s%s", i ? ", " : "", c->models[i].name);
        return cb_fail(e, CB_E_USAGE, where, "model %s was not given (--model %s=DIR; given: %s)", name, name,
                       c->n_models ? given : "none");
    }
    if (!m->loaded) {
        cb_bench_progress(c, "opening %s (%s)", m->name, m->dir);
        CB_TRY(cb_model_open_dir(&m->model, m->dir, e));
        m->loaded = 1;
    }
    *out = m;
    return CB_OK;
}

int cb_bench_vocab(const cb_model *m) {
    return (int)json_integer_value(json_object_get(json_object_get(m->plan, "model"), "vocab_size"));
}

void cb_bench_models_free(cb_bench_model *models, int n) {
    for (int i = 0; i < n; i++)
        if (models[i].loaded) {
            cb_model_free(&models[i].model);
            models[i].loaded = 0;
        }
}

/* The benchmark's config with the defaults of cb-manifest(5) filled in (caller decrefs). */
static json_t *filled_config(const json_t *bench) {
    json_t *cfg = json_deep_copy(json_object_get(bench, "config"));
    if (!cfg) return NULL;
    const char *type = str(cfg, "type");
    if (type && strcmp(type, "custom") != 0) cb_schema_fill_union(cfg, &cb_benchmark_config_union, 1);
    return cfg;
}

static int check_dataset(const char *path, const char *where, cb_error *e) {
    cb_dataset ds;
    int rc = cb_dataset_open(&ds, path, e);
    if (rc != CB_OK) {
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", e->msg);
        return cb_fail(e, rc, where, "dataset %s: %s", path, why);
    }
    cb_dataset_close(&ds);
    return CB_OK;
}

int cb_bench_check(cb_bench_ctx *c, const json_t *bench, cb_error *e) {
    const json_t *models = json_object_get(bench, "models");
    for (size_t i = 0; i < json_array_size(models); i++) { /* every model named was given */
        const char *name = json_string_value(json_array_get(models, i));
        cb_bench_model *dummy;
        if (name && !find_model(c, name)) return cb_bench_model_get(c, name, cb_loc(bench, "models"), &dummy, e);
    }
    json_t *cfg = filled_config(bench);
    if (!cfg) return cb_fail(e, CB_E_INVALID, cb_loc(bench, NULL), "benchmark %s has no config", str(bench, "id"));
    const char *type = str(cfg, "type");
    int rc = CB_OK;
    if (!type) {
        rc = cb_fail(e, CB_E_INVALID, cb_loc(cfg, NULL), "config: no type");
    } else if (strcmp(type, "perplexity") == 0) {
        const char *ds = c->data ? c->data : str(cfg, "dataset");
        if (!ds) rc = cb_fail(e, CB_E_USAGE, cb_loc(cfg, NULL), "perplexity: no dataset (config.dataset or --data)");
        else rc = check_dataset(ds, c->data ? "--data" : cb_loc(cfg, "dataset"), e);
    } else if (strcmp(type, "latency") == 0 || strcmp(type, "memory") == 0) {
        if (c->data) rc = check_dataset(c->data, "--data", e);
    } else if (strcmp(type, "generation") == 0) {
        char spec[CB_BENCH_PATH_MAX];
        rc = cb_bench_tokenizer_spec(json_object_get(cfg, "tokenizer"), spec, sizeof spec, e);
        cb_tokenizer t;
        if (rc == CB_OK && (rc = cb_tokenizer_open(&t, spec, e)) == CB_OK) cb_tokenizer_free(&t);
        if (rc != CB_OK && !e->where[0]) snprintf(e->where, sizeof e->where, "%.500s", cb_loc(cfg, "tokenizer"));
    } else if (strcmp(type, "custom") == 0) {
        cb_bench_suite s;
        const char *path = str(cfg, "suite");
        if (!path) rc = cb_fail(e, CB_E_INVALID, cb_loc(cfg, NULL), "custom: no suite (a benchmark suite YAML file)");
        else if ((rc = cb_bench_suite_load(&s, path, e)) == CB_OK) cb_bench_suite_free(&s);
    } else if (strcmp(type, "accuracy") != 0) {
        rc = cb_fail(e, CB_E_INVALID, cb_loc(cfg, "type"), "config.type: unknown benchmark type %s", type);
    }
    json_decref(cfg);
    return rc;
}

int cb_bench_open_models(cb_bench_ctx *c, const json_t *bench, cb_error *e) {
    const json_t *models = json_object_get(bench, "models");
    for (size_t i = 0; i < json_array_size(models); i++) {
        cb_bench_model *m;
        CB_TRY(cb_bench_model_get(c, json_string_value(json_array_get(models, i)), cb_loc(bench, "models"), &m, e));
    }
    return CB_OK;
}

int cb_bench_run(cb_bench_ctx *c, const json_t *bench, cb_error *e) {
    json_t *cfg = filled_config(bench);
    if (!cfg) return cb_fail(e, CB_E_INVALID, cb_loc(bench, NULL), "benchmark %s has no config", str(bench, "id"));
    const char *type = str(cfg, "type");
    const json_t *models = json_object_get(bench, "models");
    int rc = CB_OK;
    for (size_t i = 0; rc == CB_OK && i < json_array_size(models); i++) {
        cb_bench_model *m;
        rc = cb_bench_model_get(c, json_string_value(json_array_get(models, i)), cb_loc(bench, "models"), &m, e);
        if (rc != CB_OK) break;
        cb_bench_progress(c, "%s (%s) on %s", str(bench, "id"), type, m->name);
        if (strcmp(type, "perplexity") == 0) rc = cb_bench_perplexity(c, bench, cfg, m, e);
        else if (strcmp(type, "latency") == 0) rc = cb_bench_latency(c, bench, cfg, m, e);
        else if (strcmp(type, "memory") == 0) rc = cb_bench_memory(c, bench, cfg, m, e);
        else if (strcmp(type, "generation") == 0) rc = cb_bench_generation(c, bench, cfg, m, e);
        else if (strcmp(type, "accuracy") == 0) rc = cb_bench_accuracy_run(c, bench, cfg, m, e);
        else if (strcmp(type, "custom") == 0) rc = cb_bench_custom(c, bench, str(cfg, "suite"), m, e);
        else rc = cb_fail(e, CB_E_INVALID, cb_loc(cfg, "type"), "config.type: unknown benchmark type %s", type);
    }
    json_decref(cfg);
    return rc;
}
