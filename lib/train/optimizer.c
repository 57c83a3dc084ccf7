/* optimizer.c: AdamW (as torch.optim.AdamW), Lion (Chen et al. 2023) and SGD with
 * momentum, each with decoupled weight decay decided per tensor. */
#include "train/optimizer.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tensor/safetensors.h"

/* below this many elements a tensor is updated by one thread */
#define CB_OPT_OMP_MIN 32768

static const char *const kind_names[] = {"adamw", "lion", "sgd"};

const char *cb_optimizer_name(int kind) {
    return kind >= 0 && kind < (int)(sizeof kind_names / sizeof *kind_names) ? kind_names[kind] : NULL;
}

int cb_optimizer_kind(const char *name) {
    for (int i = 0; i < (int)(sizeof kind_names / sizeof *kind_names); i++)
        if (name && strcmp(name, kind_names[i]) == 0) return i;
    return -1;
}

int cb_optimizer_decays(const cb_optimizer_config *c, const cb_param *p) {
    if (c->weight_decay == 0) return 0;
    if (strncmp(p->name, "embed.", 6) == 0) return c->decay_embeddings;
    if (p->ndim <= 1) return c->decay_norms_and_biases;
    return 1;
}

static float *alloc_state(size_t n, cb_error *e) {
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (!p) {
        cb_fail(e, CB_E_RUNTIME, "", "out of memory: %zu MB of optimizer state", bytes >> 20);
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

int cb_optimizer_init(cb_optimizer *o, const cb_optimizer_config *c, const cb_param_table *params, cb_error *e) {
    memset(o, 0, sizeof *o);
    if (!cb_optimizer_name(c->kind)) return cb_fail(e, CB_E_INVALID, "", "unknown optimizer kind %d", c->kind);
    o->cfg = *c;
    o->params = params;
    o->decay = cb_calloc((size_t)(params->n ? params->n : 1), 1, e);
    o->m = alloc_state(params->total_floats, e);
    if (c->kind == CB_OPT_ADAMW) o->v = alloc_state(params->total_floats, e);
    if (!o->decay || !o->m || (c->kind == CB_OPT_ADAMW && !o->v)) {
        cb_optimizer_free(o);
        return CB_E_RUNTIME;
    }
    for (int i = 0; i < params->n; i++) o->decay[i] = (unsigned char)cb_optimizer_decays(c, &params->items[i]);
    return CB_OK;
}

void cb_optimizer_free(cb_optimizer *o) {
    free(o->decay);
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

/* w, g, m, v: n elements of one tensor */
static void adamw_tensor(float *w, const float *g, float *m, float *v, size_t n, float decay_factor, double beta1,
                         double beta2, float step_size, float bc2_sqrt, float eps) {
    /* 1 - beta in double, then rounded, as torch passes Python floats to its kernels */
    float b1 = (float)beta1, b2 = (float)beta2, omb1 = (float)(1.0 - beta1), omb2 = (float)(1.0 - beta2);
#pragma omp parallel for if (n > CB_OPT_OMP_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float p = w[i] * decay_factor;
        float mi = m[i] * b1 + gi * omb1;
        float vi = v[i] * b2 + omb2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        w[i] = p - step_size * (mi / denom);
    }
}

static void lion_tensor(float *w, const float *g, float *m, size_t n, float decay_factor, double beta1,
                        double beta2, float lr) {
    float b1 = (float)beta1, b2 = (float)beta2, omb1 = (float)(1.0 - beta1), omb2 = (float)(1.0 - beta2);
#pragma omp parallel for if (n > CB_OPT_OMP_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float c = m[i] * b1 + gi * omb1;
        float sign = (float)((c > 0) - (c < 0));
        w[i] = w[i] * decay_factor - lr * sign;
        m[i] = m[i] * b2 + gi * omb2;
    }
}

static void sgd_tensor(float *w, const float *g, float *buf, size_t n, float decay_factor, float momentum, float lr) {
#pragma omp parallel for if (n > CB_OPT_OMP_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float b = buf[i] * momentum + g[i];
        buf[i] = b;
        w[i] = w[i] * decay_factor - lr * b;
    }
}

void cb_optimizer_step(cb_optimizer *o, float *weights, const float *grads, double lr) {
    cb_optimizer_step_state(o, weights, grads, o->m, o->v, lr);
}

void cb_optimizer_step_state(cb_optimizer *o, float *weights, const float *grads, float *state_m, float *state_v,
                             double lr) {
    const cb_optimizer_config *c = &o->cfg;
    o->t++;
    /* bias corrections as torch computes them: Python floats (double), then used as scalars */
    double bc1 = 1.0 - pow(c->beta1, (double)o->t), bc2 = 1.0 - pow(c->beta2, (double)o->t);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float decayed = (float)(1.0 - lr * c->weight_decay);
    for (int k = 0; k < o->params->n; k++) {
        const cb_param *p = &o->params->items[k];
        float *w = weights + p->offset, *m = state_m + p->offset;
        const float *g = grads + p->offset;
        float df = o->decay[k] ? decayed : 1.0f;
        switch (c->kind) {
        case CB_OPT_ADAMW:
            adamw_tensor(w, g, m, state_v + p->offset, p->numel, df, c->beta1, c->beta2, step_size, bc2_sqrt,
                         (float)c->eps);
            break;
        case CB_OPT_LION: lion_tensor(w, g, m, p->numel, df, c->beta1, c->beta2, (float)lr); break;
        default: sgd_tensor(w, g, m, p->numel, df, (float)c->momentum, (float)lr); break;
        }
    }
}

static const char *first_state_name(int kind) { return kind == CB_OPT_SGD ? "momentum_buffer" : "exp_avg"; }

int cb_optimizer_save(const cb_optimizer *o, const char *path, const char *plan_sha256, cb_error *e) {
    cb_safetensors_writer w;
    cb_safetensors_writer_init(&w);
    int rc = CB_OK;
    char name[CB_PARAM_NAME_MAX + 32], step[32];
    for (int i = 0; rc == CB_OK && i < o->params->n; i++) {
        const cb_param *p = &o->params->items[i];
        snprintf(name, sizeof name, "%s.%s", p->name, first_state_name(o->cfg.kind));
        rc = cb_safetensors_writer_add(&w, name, CB_DTYPE_F32, p->ndim, p->shape, o->m + p->offset, e);
        if (rc == CB_OK && o->v) {
            snprintf(name, sizeof name, "%s.exp_avg_sq", p->name);
            rc = cb_safetensors_writer_add(&w, name, CB_DTYPE_F32, p->ndim, p->shape, o->v + p->offset, e);
        }
    }
    snprintf(step, sizeof step, "%" PRIu64, o->t);
    if (rc == CB_OK) rc = cb_safetensors_writer_meta(&w, "cb.optimizer", cb_optimizer_name(o->cfg.kind), e);
    if (rc == CB_OK) rc = cb_safetensors_writer_meta(&w, "cb.optimizer_step", step, e);
    if (rc == CB_OK && plan_sha256) rc = cb_safetensors_writer_meta(&w, "cb.plan_sha256", plan_sha256, e);
    if (rc == CB_OK) rc = cb_safetensors_writer_meta(&w, "format", "pt", e);
    if (rc == CB_OK) rc = cb_safetensors_writer_write(&w, path, e);
    cb_safetensors_writer_free(&w);
    return rc;
}

static int load_one(const cb_safetensors *st, const cb_param *p, const char *suffix, float *dst, cb_error *e) {
    char name[CB_PARAM_NAME_MAX + 32];
    snprintf(name, sizeof name, "%s.%s", p->name, suffix);
    if (!cb_safetensors_find(st, name))
        return cb_fail(e, CB_E_INVALID, st->path, "optimizer state %s is missing", name);
    CB_TRY(cb_safetensors_check_shape(st, name, p->ndim, p->shape, e));
    return cb_safetensors_read_f32(st, name, dst, p->numel, e);
}

int cb_optimizer_load(cb_optimizer *o, const char *path, cb_error *e) {
    cb_safetensors st;
    CB_TRY(cb_safetensors_open(&st, path, e));
    int rc = CB_OK;
    const char *kind = cb_safetensors_meta(&st, "cb.optimizer");
    const char *step = cb_safetensors_meta(&st, "cb.optimizer_step");
    const char *want = cb_optimizer_name(o->cfg.kind);
    char *end = NULL;
    unsigned long long t = step ? strtoull(step, &end, 10) : 0;
    if (!kind)
        rc = cb_fail(e, CB_E_INVALID, path, "no cb.optimizer in the metadata: not an optimizer state file");
    else if (strcmp(kind, want) != 0)
        rc = cb_fail(e, CB_E_INVALID, path, "optimizer state of %s, but the run uses %s", kind, want);
    else if (!step || !*step || *end)
        rc = cb_fail(e, CB_E_INVALID, path, "cb.optimizer_step is missing or not an integer");
    size_t expected = 0;
    for (int i = 0; rc == CB_OK && i < o->params->n; i++) {
        const cb_param *p = &o->params->items[i];
        rc = load_one(&st, p, first_state_name(o->cfg.kind), o->m + p->offset, e);
        if (rc == CB_OK && o->v) rc = load_one(&st, p, "exp_avg_sq", o->v + p->offset, e);
        expected += o->v ? 2 : 1;
    }
    if (rc == CB_OK && st.n_tensors != expected)
        rc = cb_fail(e, CB_E_INVALID, path, "%zu tensors, expected %zu (one per parameter and moment)", st.n_tensors,
                     expected);
    if (rc == CB_OK) o->t = t;
    cb_safetensors_close(&st);
    return rc;
}
