/* topology.c: the plan's walk over model.topology: node ids, the width flowing from
 * layer to layer through each topology type, and per-node parameter counts. */
#include "plan/walk.h"

#include <stdio.h>
#include <string.h>
#include "core/json_doc.h"
#include "plan/count.h"

/* Topology types with the default node name of each (CONTRACTS.md "Node ids"); layer
 * defaults follow. The order fixes the per-base-name sibling counters below. */
static const struct { const char *type, *name; } default_names[] = {
    {"StackedTopology", "stack"}, {"SequentialTopology", "stack"}, {"ResidualTopology", "res"},
    {"NestedTopology", "blocks"}, {"ParallelTopology", "par"},     {"BranchingTopology", "branch"},
    {"CyclicTopology", "cycle"},  {"RecurrentTopology", "rec"},    {"AttentionLayer", "attn"},
    {"RMSNormLayer", "norm"},     {"LayerNormLayer", "norm"},      {"SwiGLULayer", "mlp"},
    {"MLPLayer", "mlp"},          {"LinearLayer", "linear"},       {"DropoutLayer", "dropout"},
    {"RoPE", "rope"},
};
#define N_TOPOLOGY_TYPES 8
#define N_TYPES ((int)(sizeof default_names / sizeof default_names[0]))

static int type_index(const char *type) {
    for (int i = 0; type && i < N_TYPES; i++)
        if (strcmp(type, default_names[i].type) == 0) return i;
    return -1;
}

static int is_topology(const char *type) {
    int i = type_index(type);
    return i >= 0 && i < N_TOPOLOGY_TYPES;
}

static const char *type_of(const json_t *src) {
    return json_string_value(json_object_get(src, "type"));
}

/* A positive integer member or def; for the counting passes, which report nothing. */
static int64_t quiet_int(const json_t *src, const char *key, int64_t def) {
    const json_t *v = json_object_get(src, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : def;
}

/* How often a topology runs its body per pass: repeat, cycles or steps. */
static int64_t body_runs(const json_t *src, const char *type) {
    if (strcmp(type, "NestedTopology") == 0) return quiet_int(src, "repeat", 1);
    if (strcmp(type, "CyclicTopology") == 0) return quiet_int(src, "cycles", 2);
    if (strcmp(type, "RecurrentTopology") == 0) return quiet_int(src, "steps", 2);
    return 1;
}

int64_t cb_plan_count_attention(const json_t *src, int depth) {
    const char *type = type_of(src);
    if (!type || depth > CB_PLAN_MAX_DEPTH) return 0;
    if (strcmp(type, "AttentionLayer") == 0) return 1;
    if (!is_topology(type)) return 0;
    int ovf = 0;
    int64_t n = 0;
    size_t i;
    json_t *child;
    json_array_foreach(json_object_get(src, "layers"), i, child)
        n = cb_count_add(n, cb_plan_count_attention(child, depth + 1), &ovf);
    return cb_count_mul(n, body_runs(src, type), &ovf); /* saturates at INT64_MAX */
}

int64_t cb_plan_first_width(const json_t *src, int depth) {
    const char *type = type_of(src);
    if (!type || depth > CB_PLAN_MAX_DEPTH) return CB_PLAN_UNKNOWN;
    if (is_topology(type)) {
        size_t i;
        json_t *child;
        json_array_foreach(json_object_get(src, "layers"), i, child) {
            int64_t wd = cb_plan_first_width(child, depth + 1);
            if (wd != CB_PLAN_UNKNOWN) return wd;
        }
        return CB_PLAN_UNKNOWN;
    }
    if (strcmp(type, "DropoutLayer") == 0) return CB_PLAN_UNKNOWN;
    return quiet_int(src, strcmp(type, "LinearLayer") == 0 ? "d_in" : "d_model", CB_PLAN_UNKNOWN);
}

static json_t *width_json(int64_t v) { return v == CB_PLAN_UNKNOWN ? json_null() : json_integer(v); }

/* The id of child i: its name is the last element of the "id" cb-lower gave it (or the
 * default by type, counted per base name among siblings), after the parent's prefix. */
static int child_id(const json_t *child, const char *prefix, int counters[N_TYPES + 1], char *out, size_t n) {
    const char *given = json_string_value(json_object_get(child, "id"));
    char name[256];
    if (given && given[0]) {
        const char *dot = strrchr(given, '.');
        snprintf(name, sizeof name, "%s", dot ? dot + 1 : given);
    } else {
        int t = type_index(type_of(child));
        const char *base = t >= 0 ? default_names[t].name : "node";
        /* counters are per base name: the slot of the first type with this base, or
         * the last slot (N_TYPES) for "node", the name of an unknown type */
        int slot = 0;
        while (slot < N_TYPES && strcmp(default_names[slot].name, base) != 0) slot++;
        int k = counters[slot]++;
        if (k) snprintf(name, sizeof name, "%s_%d", base, k);
        else snprintf(name, sizeof name, "%s", base);
    }
    int len = prefix[0] ? snprintf(out, n, "%s.%s", prefix, name) : snprintf(out, n, "%s", name);
    return len >= 0 && (size_t)len < n ? 0 : -1;
}

static int64_t topology(cb_plan_walk *w, const json_t *src, const char *type, const char *path,
                        const char *id, int64_t d_in, int depth, json_t *node, int64_t *params) {
    static const char *const combines[] = {"sum", "mean", NULL};
    *params = CB_PLAN_UNKNOWN;
    json_t *cfg = json_object();
    json_object_set_new(node, "config", cfg);
    const char *run_key = NULL; /* repeat, cycles or steps */
    int64_t runs = 1;
    if (strcmp(type, "NestedTopology") == 0) {
        run_key = "repeat";
        runs = cb_plan_int(w, src, run_key, 0, path);
    } else if (strcmp(type, "CyclicTopology") == 0) {
        run_key = "cycles";
        runs = cb_plan_int(w, src, run_key, 2, path);
    } else if (strcmp(type, "RecurrentTopology") == 0) {
        run_key = "steps";
        runs = cb_plan_int(w, src, run_key, 2, path);
    }
    const char *combine = NULL;
    int parallel = strcmp(type, "ParallelTopology") == 0, branching = strcmp(type, "BranchingTopology") == 0;
    if (parallel) {
        combine = cb_plan_str(w, src, "combine", "sum", combines, path);
        json_object_set_new(cfg, "combine", json_string(combine ? combine : "sum"));
    }
    if (run_key) json_object_set_new(cfg, run_key, width_json(runs));

    json_t *children = json_array();
    json_object_set_new(node, "children", children);
    if (run_key) json_object_set_new(node, run_key, width_json(runs));
    if (combine) json_object_set_new(node, "combine", json_string(combine));

    const json_t *layers = json_object_get(src, "layers");
    if (!json_is_array(layers) || json_array_size(layers) == 0) {
        cb_plan_errf(w, src, "layers", path, "%s",
                     json_is_array(layers) ? "empty (a topology needs at least one layer or topology)"
                     : layers ? "must be a sequence of layers or topologies" : "missing (a sequence of layers or topologies)");
        return d_in;
    }
    if (depth >= CB_PLAN_MAX_DEPTH) {
        cb_plan_errf(w, src, NULL, path, "topologies nested deeper than %d levels", CB_PLAN_MAX_DEPTH);
        return CB_PLAN_UNKNOWN;
    }

    char prefix[1024];
    snprintf(prefix, sizeof prefix, "%s%s", id, strcmp(type, "NestedTopology") == 0 ? (id[0] ? ".*" : "*") : "");
    int counters[N_TYPES + 1] = {0};
    int64_t saved_applications = w->applications;
    int ovf = 0;
    w->applications = cb_count_mul(w->applications, runs == CB_PLAN_UNKNOWN ? 1 : runs, &ovf);

    int64_t h = d_in, sum = 0, first_out = CB_PLAN_UNKNOWN, body_params = 0;
    size_t first_known = 0;
    size_t i;
    json_t *child;
    json_array_foreach(layers, i, child) {
        char cpath[1024], cid[1024];
        snprintf(cpath, sizeof cpath, "%s.layers[%zu]", path, i);
        int64_t cparams;
        json_t *cnode;
        if (!json_is_object(child)) {
            cb_diags_addf(w->d, CB_E_INVALID, cb_loc(src, "layers"), "%s: must be a mapping (a layer or topology)", cpath);
            h = sum = CB_PLAN_UNKNOWN;
            body_params = CB_PLAN_UNKNOWN;
            continue;
        }
        if (child_id(child, prefix, counters, cid, sizeof cid) != 0)
            cb_plan_errf(w, child, NULL, cpath, "node id longer than %zu characters", sizeof cid - 1);
        int64_t out = cb_plan_node(w, child, cpath, cid, parallel || branching ? d_in : h, depth + 1, &cnode, &cparams);
        json_array_append_new(children, cnode);
        if (cparams == CB_PLAN_UNKNOWN || body_params == CB_PLAN_UNKNOWN) body_params = CB_PLAN_UNKNOWN;
        else body_params = cb_count_add(body_params, cparams, &ovf);
        if (parallel) {
            if (first_out == CB_PLAN_UNKNOWN) { first_out = out; first_known = i; }
            else if (out != CB_PLAN_UNKNOWN && out != first_out)
                cb_plan_errf(w, child, NULL, cpath,
                             "output width %lld differs from layers[%zu]'s %lld (parallel outputs are combined by %s)",
                             (long long)out, first_known, (long long)first_out, combine ? combine : "sum");
        } else if (branching) {
            sum = out == CB_PLAN_UNKNOWN || sum == CB_PLAN_UNKNOWN ? CB_PLAN_UNKNOWN : cb_count_add(sum, out, &ovf);
        } else {
            h = out;
        }
    }
    w->applications = saved_applications;

    int64_t d_out = parallel ? first_out : branching ? sum : h;
    int same = d_in == CB_PLAN_UNKNOWN || d_out == CB_PLAN_UNKNOWN || d_in == d_out;
    if (strcmp(type, "ResidualTopology") == 0) {
        if (!same)
            cb_plan_errf(w, src, NULL, path, "residual body returns width %lld, not its input width %lld",
                         (long long)d_out, (long long)d_in);
        if (d_in != CB_PLAN_UNKNOWN) d_out = d_in;
    } else if (run_key && !same && runs != CB_PLAN_UNKNOWN && (runs > 1 || strcmp(run_key, "repeat") != 0)) {
        /* a repeated, cycled or stepped body feeds its output back in as its input */
        cb_plan_errf(w, src, run_key, path, "%s %lld needs the body to return its input width, but it maps %lld to %lld",
                     run_key, (long long)runs, (long long)d_in, (long long)d_out);
        d_out = d_in;
    }
    if (body_params != CB_PLAN_UNKNOWN && runs != CB_PLAN_UNKNOWN)
        *params = strcmp(type, "NestedTopology") == 0 ? cb_count_mul(body_params, runs, &ovf) : body_params;
    if (ovf) {
        cb_plan_errf(w, src, NULL, path, "parameter count overflows a 64-bit integer");
        *params = CB_PLAN_UNKNOWN;
    }
    return d_out;
}

int64_t cb_plan_node(cb_plan_walk *w, const json_t *src, const char *path, const char *id,
                     int64_t d_in, int depth, json_t **out, int64_t *params) {
    json_t *node = json_object();
    *out = node;
    *params = CB_PLAN_UNKNOWN;
    const char *dot = strrchr(id, '.');
    const char *type = type_of(src);
    json_object_set_new(node, "id", json_string(id));
    json_object_set_new(node, "name", json_string(dot ? dot + 1 : id));
    json_object_set_new(node, "type", type ? json_string(type) : json_null());
    json_object_set_new(node, "loc", json_string(cb_loc(src, NULL)));
    json_object_set_new(node, "d_in", width_json(d_in));
    json_object_set_new(node, "d_out", json_null());
    json_object_set_new(node, "params", json_null());
    if (!json_is_object(src)) {
        cb_plan_errf(w, NULL, NULL, path, "must be a mapping (a layer or topology)");
        return CB_PLAN_UNKNOWN;
    }
    int64_t d_out = CB_PLAN_UNKNOWN;
    if (!type)
        cb_plan_errf(w, src, "type", path, "missing (a layer or topology type)");
    else if (is_topology(type))
        d_out = topology(w, src, type, path, id, d_in, depth, node, params);
    else if (cb_plan_is_layer(type))
        d_out = cb_plan_layer(w, src, type, path, d_in, node, params);
    else
        cb_plan_errf(w, src, "type", path, "unknown layer or topology type \"%s\"", type);
    json_object_set_new(node, "d_out", width_json(d_out));
    json_object_set_new(node, "params", width_json(*params));
    return d_out;
}
