/* model.c: model lifetime, and model directories on disk (plan.json + model.safetensors). */
#include "model/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/atomic_dir.h"
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "core/sha256.h"
#include "tensor/safetensors.h"

#define CB_WEIGHTS_FORMAT_VERSION "1"

char *cb_model_plan_text(const json_t *plan) {
    return json_dumps(plan, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
}

static int model_setup(cb_model *m, json_t *plan, cb_error *e) {
    memset(m, 0, sizeof *m);
    CB_TRY(cb_params_from_plan(&m->params, plan, e));
    size_t bytes = (m->params.total_floats ? m->params.total_floats : 1) * sizeof(float);
    bytes = (bytes + 63) / 64 * 64;
    m->weights = aligned_alloc(64, bytes);
    if (!m->weights) {
        cb_params_free(&m->params);
        return cb_fail(e, CB_E_RUNTIME, "", "out of memory: %zu MB of weights", bytes >> 20);
    }
    memset(m->weights, 0, bytes);
    json_incref(plan);
    m->plan = plan;
    char *text = cb_model_plan_text(plan);
    if (text) { /* the digest of plan.json's bytes: the text and its final newline */
        cb_sha256 s;
        unsigned char d[32];
        cb_sha256_init(&s);
        cb_sha256_update(&s, text, strlen(text));
        cb_sha256_update(&s, "\n", 1);
        cb_sha256_final(&s, d);
        for (int i = 0; i < 32; i++) snprintf(m->plan_sha256 + 2 * i, 3, "%02x", d[i]);
        free(text);
    }
    return CB_OK;
}

int cb_model_init_empty(cb_model *m, json_t *plan, cb_error *e) { return model_setup(m, plan, e); }

int cb_model_init(cb_model *m, json_t *plan, uint64_t seed, cb_error *e) {
    CB_TRY(model_setup(m, plan, e));
    cb_params_init_values(&m->params, m->weights, seed);
    return CB_OK;
}

void cb_model_free(cb_model *m) {
    if (m->plan) json_decref(m->plan);
    cb_params_free(&m->params);
    free(m->weights);
    memset(m, 0, sizeof *m);
}

int cb_model_save_weights(const cb_model *m, const char *path, const json_t *extra_meta, cb_error *e) {
    cb_safetensors_writer w;
    cb_safetensors_writer_init(&w);
    int rc = CB_OK;
    for (int i = 0; rc == CB_OK && i < m->params.n; i++) {
        const cb_param *p = &m->params.items[i];
        rc = cb_safetensors_writer_add(&w, p->name, CB_DTYPE_F32, p->ndim, p->shape, m->weights + p->offset, e);
    }
    if (rc == CB_OK) rc = cb_safetensors_writer_meta(&w, "cb.format_version", CB_WEIGHTS_FORMAT_VERSION, e);
    if (rc == CB_OK) rc = cb_safetensors_writer_meta(&w, "cb.plan_sha256", m->plan_sha256, e);
    if (rc == CB_OK) rc = cb_safetensors_writer_meta(&w, "format", "pt", e);
    const char *key;
    json_t *val;
    if (extra_meta) {
        json_object_foreach((json_t *)extra_meta, key, val) {
            if (rc == CB_OK && json_is_string(val)) rc = cb_safetensors_writer_meta(&w, key, json_string_value(val), e);
        }
    }
    if (rc == CB_OK) rc = cb_safetensors_writer_write(&w, path, e);
    cb_safetensors_writer_free(&w);
    return rc;
}

int cb_model_save_dir(const cb_model *m, const char *dir, const json_t *extra_meta, cb_error *e) {
    char path[8300];
    cb_atomic_dir ad;
    CB_TRY(cb_atomic_dir_open(&ad, dir, "plan.json", e));
    const char *tmp = ad.tmp_path;
    char *text = cb_model_plan_text(m->plan);
    int rc = text ? CB_OK : cb_fail(e, CB_E_RUNTIME, dir, "cannot serialise the plan");
    if (rc == CB_OK) {
        snprintf(path, sizeof path, "%s/plan.json", tmp);
        size_t n = strlen(text);
        cb_atomic_file af;
        rc = cb_atomic_open(&af, path, e);
        if (rc == CB_OK) {
            if (fwrite(text, 1, n, af.fp) != n || fputc('\n', af.fp) == EOF) {
                int err = errno;
                cb_atomic_abort(&af);
                rc = cb_fail(e, CB_E_IO, path, "write failed: %s", strerror(err));
            } else {
                rc = cb_atomic_commit(&af, e);
            }
        }
    }
    free(text);
    if (rc == CB_OK) {
        snprintf(path, sizeof path, "%s/model.safetensors", tmp);
        rc = cb_model_save_weights(m, path, extra_meta, e);
    }
    if (rc == CB_OK) rc = cb_atomic_dir_commit(&ad, e);
    if (rc != CB_OK) {
        cb_atomic_dir_abort(&ad);
        /* name the final directory, not the temporary one */
        if (strstr(e->where, ".tmp.")) snprintf(e->where, sizeof e->where, "%s", dir);
    }
    return rc;
}

/* Fill m's weights from path; with check_plan, weights saved under another plan than m's
 * (their cb.plan_sha256) are refused. */
static int load_weights(cb_model *m, const char *path, int check_plan, cb_error *e) {
    cb_safetensors st;
    CB_TRY(cb_safetensors_open(&st, path, e));
    int rc = CB_OK;
    const char *sha = check_plan ? cb_safetensors_meta(&st, "cb.plan_sha256") : NULL;
    if (sha && strcmp(sha, m->plan_sha256) != 0)
        rc = cb_fail(e, CB_E_INVALID, path, "the weights were saved with plan_sha256 %.16s..., plan.json is plan_sha256 "
                     "%.16s...: it is not the plan of these weights (replaced or edited?)", sha, m->plan_sha256);
    for (int i = 0; rc == CB_OK && i < m->params.n; i++) {
        const cb_param *p = &m->params.items[i];
        if (!cb_safetensors_find(&st, p->name)) {
            rc = cb_fail(e, CB_E_INVALID, path, "tensor %s of the plan is missing", p->name);
            break;
        }
        rc = cb_safetensors_check_shape(&st, p->name, p->ndim, p->shape, e);
        if (rc == CB_OK) rc = cb_safetensors_read_f32(&st, p->name, m->weights + p->offset, p->numel, e);
    }
    for (size_t i = 0; rc == CB_OK && i < st.n_tensors; i++)
        if (!cb_params_find(&m->params, st.tensors[i].name))
            rc = cb_fail(e, CB_E_INVALID, path, "tensor %s is not in the plan", st.tensors[i].name);
    cb_safetensors_close(&st);
    return rc;
}

int cb_model_load_weights(cb_model *m, const char *path, cb_error *e) { return load_weights(m, path, 0, e); }

int cb_model_first_nonfinite(const cb_model *m, size_t *at) {
    for (int i = 0; i < m->params.n; i++) {
        const cb_param *p = &m->params.items[i];
        const float *w = m->weights + p->offset;
        /* an or of exponent tests vectorises; the element is looked for only on a hit */
        int bad = 0;
        for (size_t j = 0; j < p->numel; j++) bad |= !isfinite(w[j]);
        if (!bad) continue;
        for (size_t j = 0; j < p->numel; j++)
            if (!isfinite(w[j])) {
                *at = j;
                return i;
            }
    }
    *at = 0;
    return -1;
}

int cb_model_load_dir(cb_model *m, const char *dir, cb_error *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/plan.json", dir);
    json_t *plan;
    CB_TRY(cb_doc_load(path, "plan", &plan, e));
    int rc = cb_model_init_empty(m, plan, e);
    json_decref(plan);
    if (rc != CB_OK) return rc;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    rc = load_weights(m, path, 1, e);
    if (rc != CB_OK) cb_model_free(m);
    return rc;
}
