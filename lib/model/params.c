/* params.c: walk a plan's embedder, topology and head, and lay their tensors out. */
#include "model/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/rng.h"

#define CB_PARAM_ALIGN 16 /* floats: 64 bytes, a cache line and an AVX-512 vector */

static int add_param(cb_param_table *t, int *cap, const char *name, const json_t *spec, cb_error *e) {
    const json_t *shape = json_object_get(spec, "shape");
    const char *init = json_string_value(json_object_get(spec, "init"));
    if (!json_is_array(shape) || json_array_size(shape) > CB_PARAM_MAX_DIM)
        return cb_fail(e, CB_E_INVALID, "plan", "tensor %s: bad shape", name);
    if (strlen(name) >= CB_PARAM_NAME_MAX)
        return cb_fail(e, CB_E_INVALID, "plan", "tensor name too long: %.60s...", name);
    if (t->n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        cb_param *items = realloc(t->items, (size_t)nc * sizeof *items);
        if (!items) return cb_fail(e, CB_E_RUNTIME, "plan", "out of memory");
        t->items = items;
        *cap = nc;
    }
    cb_param *p = &t->items[t->n];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = (int)json_array_size(shape);
    size_t numel = 1;
    for (int i = 0; i < p->ndim; i++) {
        json_int_t d = json_integer_value(json_array_get(shape, (size_t)i));
        if (!json_is_integer(json_array_get(shape, (size_t)i)) || d < 0 || d > (json_int_t)1 << 40)
            return cb_fail(e, CB_E_INVALID, "plan", "tensor %s: bad dimension", name);
        p->shape[i] = d;
        if (d && numel > ((size_t)1 << 42) / (size_t)d)
            return cb_fail(e, CB_E_INVALID, "plan", "tensor %s: too large", name);
        numel *= (size_t)d;
    }
    p->numel = numel;
    p->offset = t->total_floats;
    size_t padded = (numel + CB_PARAM_ALIGN - 1) / CB_PARAM_ALIGN * CB_PARAM_ALIGN;
    t->total_floats += padded;
    if (!init || strcmp(init, "normal") == 0) {
        p->init = CB_INIT_NORMAL;
        const json_t *std = json_object_get(spec, "std");
        p->std = json_is_number(std) ? (float)json_number_value(std) : 0.02f;
    } else if (strcmp(init, "zeros") == 0) {
        p->init = CB_INIT_ZEROS;
    } else if (strcmp(init, "ones") == 0) {
        p->init = CB_INIT_ONES;
    } else {
        return cb_fail(e, CB_E_INVALID, "plan", "tensor %s: unknown init \"%s\"", name, init);
    }
    t->n++;
    return CB_OK;
}

/* tensors listed with full names (embedder, head) */
static int add_full(cb_param_table *t, int *cap, const json_t *owner, cb_error *e) {
    const json_t *tensors = json_object_get(owner, "tensors");
    size_t i;
    const json_t *spec;
    json_array_foreach(tensors, i, spec) {
        const char *name = json_string_value(json_object_get(spec, "name"));
        if (!name) return cb_fail(e, CB_E_INVALID, "plan", "tensor without a name");
        CB_TRY(add_param(t, cap, name, spec, e));
    }
    return CB_OK;
}

static void join_id(char *out, size_t n, const char *prefix, const char *name) {
    if (!prefix[0]) snprintf(out, n, "%s", name);
    else if (!name[0]) snprintf(out, n, "%s", prefix);
    else snprintf(out, n, "%s.%s", prefix, name);
}

/* prefix: this node's instance id */
static int add_node(cb_param_table *t, int *cap, const json_t *node, const char *id, int depth, cb_error *e) {
    if (depth > 256) return cb_fail(e, CB_E_INVALID, "plan", "topology nested too deeply");
    const json_t *tensors = json_object_get(node, "tensors");
    size_t i;
    const json_t *spec;
    json_array_foreach(tensors, i, spec) {
        const char *local = json_string_value(json_object_get(spec, "name"));
        if (!local) return cb_fail(e, CB_E_INVALID, "plan", "node %s: tensor without a name", id);
        char full[CB_PARAM_NAME_MAX + 64];
        join_id(full, sizeof full, id, local);
        CB_TRY(add_param(t, cap, full, spec, e));
    }
    const json_t *children = json_object_get(node, "children");
    if (!json_is_array(children)) return CB_OK;
    const char *type = json_string_value(json_object_get(node, "type"));
    int repeat = 1, nested = type && strcmp(type, "NestedTopology") == 0;
    if (nested) repeat = (int)json_integer_value(json_object_get(node, "repeat"));
    for (int r = 0; r < repeat; r++) {
        char rid[CB_PARAM_NAME_MAX];
        if (nested) {
            char idx[16];
            snprintf(idx, sizeof idx, "%d", r);
            join_id(rid, sizeof rid, id, idx);
        } else {
            snprintf(rid, sizeof rid, "%s", id);
        }
        const json_t *child;
        json_array_foreach(children, i, child) {
            const char *name = json_string_value(json_object_get(child, "name"));
            char cid[CB_PARAM_NAME_MAX];
            join_id(cid, sizeof cid, rid, name ? name : "");
            CB_TRY(add_node(t, cap, child, cid, depth + 1, e));
        }
    }
    return CB_OK;
}

int cb_params_from_plan(cb_param_table *t, const json_t *plan, cb_error *e) {
    memset(t, 0, sizeof *t);
    int cap = 0;
    const json_t *model = json_object_get(plan, "model");
    if (!json_is_object(model)) return cb_fail(e, CB_E_INVALID, "plan", "no \"model\" in the plan");
    int rc = add_full(t, &cap, json_object_get(model, "embedder"), e);
    if (rc == CB_OK) rc = add_node(t, &cap, json_object_get(model, "topology"), "", 0, e);
    if (rc == CB_OK) rc = add_full(t, &cap, json_object_get(model, "head"), e);
    for (int i = 0; rc == CB_OK && i < t->n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(t->items[i].name, t->items[j].name) == 0) {
                rc = cb_fail(e, CB_E_INVALID, "plan", "tensor %s appears twice", t->items[i].name);
                break;
            }
    if (rc != CB_OK) cb_params_free(t);
    return rc;
}

void cb_params_free(cb_param_table *t) {
    free(t->items);
    memset(t, 0, sizeof *t);
}

const cb_param *cb_params_find(const cb_param_table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->items[i].name, name) == 0) return &t->items[i];
    return NULL;
}

void cb_params_init_values(const cb_param_table *t, float *weights, uint64_t seed) {
    memset(weights, 0, t->total_floats * sizeof *weights);
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < t->n; i++) {
        const cb_param *p = &t->items[i];
        float *w = weights + p->offset;
        if (p->init == CB_INIT_ONES) {
            for (size_t k = 0; k < p->numel; k++) w[k] = 1.0f;
        } else if (p->init == CB_INIT_NORMAL) {
            cb_rng rng;
            cb_rng_init_keyed(&rng, seed, p->name);
            for (size_t k = 0; k < p->numel; k++) w[k] = (float)(p->std * cb_rng_normal(&rng));
        }
    }
}
