/* batch_forward.c: a model's program and run arenas for one batch shape, on the CPU. */
#include "verify/batch_forward.h"

#include <string.h>

int cb_batch_forward_init(cb_batch_forward *f, const cb_model *m, int B, int T, cb_error *e) {
    memset(f, 0, sizeof *f);
    f->model = m;
    CB_TRY(cb_program_init(&f->prog, m->plan, &m->params, B, T, e));
    cb_program_forward_only(&f->prog);
    int rc = cb_run_init(&f->run, &f->prog, 0, e);
    if (rc != CB_OK) {
        cb_program_free(&f->prog);
        memset(f, 0, sizeof *f);
    }
    return rc;
}

void cb_batch_forward_free(cb_batch_forward *f) {
    if (!f->prog.ops) return;
    cb_run_free(&f->run);
    cb_program_free(&f->prog);
    memset(f, 0, sizeof *f);
}

double cb_batch_forward_run(cb_batch_forward *f, const int32_t *x, const int32_t *y) {
    return cb_run_forward(&f->run, &f->prog, f->model->weights, x, y);
}

const float *cb_batch_forward_output(const cb_batch_forward *f, int op, int *width) {
    return cb_run_op_output(&f->run, &f->prog, op, width);
}

const float *cb_batch_forward_logits(const cb_batch_forward *f) {
    return f->run.slots + f->prog.slots[f->prog.logits_slot].offset;
}

int cb_batch_forward_attention_ops(const cb_batch_forward *f, int *ops, int max) {
    int n = 0;
    for (int i = 0; i < f->prog.n_ops; i++)
        if (f->prog.ops[i].kind == CB_OP_ATTENTION) {
            if (n < max) ops[n] = i;
            n++;
        }
    return n;
}
