/* trace.c: a forward pass kept op by op, written out or searched for non-finite values. */
#include "model/trace.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "tensor/safetensors.h"

int cb_trace_forward(cb_trace *t, const cb_model *m, const int32_t *tokens, int T, const char *where, cb_error *e) {
    memset(t, 0, sizeof *t);
    t->model = m;
    t->T = T;
    CB_TRY(cb_program_init(&t->prog, m->plan, &m->params, 1, T, e));
    int rc = CB_OK;
    for (int i = 0; rc == CB_OK && i < T; i++)
        if (tokens[i] < 0 || tokens[i] >= t->prog.vocab_size)
            rc = cb_fail(e, CB_E_USAGE, where, "token id %d is past the vocabulary (%d)", tokens[i], t->prog.vocab_size);
    if (rc == CB_OK) rc = cb_run_init(&t->run, &t->prog, 0, e);
    if (rc != CB_OK) {
        cb_program_free(&t->prog);
        memset(t, 0, sizeof *t);
        return rc;
    }
    cb_run_forward(&t->run, &t->prog, m->weights, tokens, NULL);
    return CB_OK;
}

void cb_trace_free(cb_trace *t) {
    if (!t->prog.ops) return;
    cb_run_free(&t->run);
    cb_program_free(&t->prog);
    memset(t, 0, sizeof *t);
}

int cb_trace_matches(const char *patterns, const cb_op *op) {
    if (!patterns) return 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", patterns);
    for (char *save, *pat = strtok_r(buf, ",", &save); pat; pat = strtok_r(NULL, ",", &save))
        if (fnmatch(pat, op->id, 0) == 0 || (op->type && fnmatch(pat, op->type, 0) == 0)) return 1;
    return 0;
}

int cb_trace_write(const cb_trace *t, const char *patterns, const char *path, cb_error *e) {
    cb_safetensors_writer w;
    cb_safetensors_writer_init(&w);
    int rc = CB_OK;
    for (int i = 0; rc == CB_OK && i < t->prog.n_ops; i++) {
        const cb_op *op = &t->prog.ops[i];
        int is_head = op->kind == CB_OP_HEAD;
        if (!is_head && !cb_trace_matches(patterns, op)) continue;
        int width;
        const float *o = cb_run_op_output(&t->run, &t->prog, i, &width);
        int64_t shape[3] = {1, t->T, width};
        rc = cb_safetensors_writer_add(&w, is_head ? "logits" : op->id, CB_DTYPE_F32, 3, shape, o, e);
    }
    if (rc == CB_OK) rc = cb_safetensors_writer_meta(&w, "cb.plan_sha256", t->model->plan_sha256, e);
    if (rc == CB_OK) rc = cb_safetensors_writer_write(&w, path ? path : "-", e);
    cb_safetensors_writer_free(&w);
    return rc;
}

int cb_trace_first_nonfinite(const cb_trace *t, int *position) {
    for (int i = 0; i < t->prog.n_ops; i++) {
        int width;
        const float *o = cb_run_op_output(&t->run, &t->prog, i, &width);
        for (int p = 0; p < t->T; p++)
            for (int j = 0; j < width; j++)
                if (!isfinite(o[(size_t)p * (size_t)width + (size_t)j])) {
                    *position = p;
                    return i;
                }
    }
    *position = -1;
    return -1;
}

void cb_trace_explain_nonfinite(const cb_model *m, const int32_t *tokens, int T, char *msg, size_t n) {
    size_t at;
    int k = cb_model_first_nonfinite(m, &at);
    size_t used = 0;
    if (k >= 0) {
        const cb_param *p = &m->params.items[k];
        float v = m->weights[p->offset + at];
        used = (size_t)snprintf(msg, n, "tensor %s holds %s (element %zu of %zu); ", p->name,
                                isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf", at, p->numel);
    } else {
        used = (size_t)snprintf(msg, n, "the weights are finite; ");
    }
    if (used >= n) return;
    cb_trace t;
    cb_error e;
    cb_error_clear(&e);
    if (cb_trace_forward(&t, m, tokens, T, "", &e) != CB_OK) {
        snprintf(msg + used, n - used, "the traced pass could not run: %s", e.msg);
        return;
    }
    int pos, op = cb_trace_first_nonfinite(&t, &pos);
    if (op >= 0)
        snprintf(msg + used, n - used, "first in the output of op %s (%s) at position %d", t.prog.ops[op].id,
                 t.prog.ops[op].type ? t.prog.ops[op].type : "?", pos);
    else
        snprintf(msg + used, n - used, "a traced pass over the %d prompt tokens is finite throughout (the decoding "
                 "path differs from it: try --cache-kind fp32 --weight-kind fp32)", T);
    cb_trace_free(&t);
}
