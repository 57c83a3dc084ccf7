/* attn_pair.c: teacher and student attention layers side by side (attn_pair.h). */
#include "upcycle/attn_pair.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backend/pass.h"

static int attention_ops(const cb_program *p, int *ops) {
    int n = 0;
    for (int i = 0; i < p->n_ops; i++)
        if (p->ops[i].kind == CB_OP_ATTENTION && !strchr(p->ops[i].id, '#')) {
            if (ops) ops[n] = i;
            n++;
        }
    return n;
}

void cb_attn_pair_free(cb_attn_pair *p) {
    cb_run_free(&p->tr);
    cb_run_free(&p->sr);
    cb_program_free(&p->tp);
    cb_program_free(&p->sp);
    free(p->t_op);
    free(p->s_op);
    memset(p, 0, sizeof *p);
}

int cb_attn_pair_init(cb_attn_pair *p, cb_backend *be, const cb_model *teacher, const cb_model *student, int B, int T,
                      cb_error *e) {
    memset(p, 0, sizeof *p);
    p->be = be;
    p->B = B;
    p->T = T;
    int rc = cb_program_init(&p->tp, teacher->plan, &teacher->params, B, T, e);
    if (rc == CB_OK) rc = cb_program_init(&p->sp, student->plan, &student->params, B, T, e);
    if (rc == CB_OK) {
        int nt = attention_ops(&p->tp, NULL), ns = attention_ops(&p->sp, NULL);
        if (nt != ns) rc = cb_fail(e, CB_E_INVALID, "", "the teacher has %d attention layers, the student %d", nt, ns);
        p->n = ns;
        p->t_op = malloc(sizeof(int) * (size_t)(ns + 1));
        p->s_op = malloc(sizeof(int) * (size_t)(ns + 1));
        if (rc == CB_OK && (!p->t_op || !p->s_op)) rc = cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    }
    if (rc == CB_OK) {
        attention_ops(&p->tp, p->t_op);
        attention_ops(&p->sp, p->s_op);
        if (p->n > 0) p->d = p->sp.ops[p->s_op[0]].d_in;
        for (int k = 0; k < p->n && rc == CB_OK; k++)
            if (p->tp.ops[p->t_op[k]].d_in != p->sp.ops[p->s_op[k]].d_in)
                rc = cb_fail(e, CB_E_INVALID, "", "attention layer %d is %d wide in the teacher, %d in the student", k,
                             p->tp.ops[p->t_op[k]].d_in, p->sp.ops[p->s_op[k]].d_in);
    }
    if (rc == CB_OK && p->n == 0) rc = cb_fail(e, CB_E_INVALID, "", "the models have no attention layer");
    if (rc == CB_OK) rc = cb_run_init_on(&p->tr, be, &p->tp, 0, e);
    if (rc == CB_OK) rc = cb_run_init_on(&p->sr, be, &p->sp, 1, e);
    if (rc != CB_OK) cb_attn_pair_free(p);
    return rc;
}

/* a pass of one side of the pair over tokens, without dropout: a layer is compared with
 * its teacher as the model would run at inference */
static cb_pass pass_of(cb_run *r, const cb_program *prog, const float *weights, float *grads, const int32_t *tokens) {
    cb_pass q = cb_run_pass(r, prog, weights, grads);
    q.training = 0;
    q.dropout_seed = 0;
    q.row0 = 0;
    q.op_seconds = NULL;
    q.tokens = tokens;
    q.targets = NULL;
    return q;
}

int cb_attn_pair_teacher(cb_attn_pair *p, const float *t_weights, const int32_t *tokens, int upto, cb_error *e) {
    cb_pass q = pass_of(&p->tr, &p->tp, t_weights, NULL, tokens);
    p->tokens = tokens;
    int last = p->t_op[upto < p->n ? upto : p->n - 1];
    for (int i = 0; i <= last; i++) CB_TRY(p->be->op_forward(p->be, &q, i, e));
    return CB_OK;
}

static const float *slot_of(const cb_run *r, const cb_program *prog, int slot) {
    return r->slots + prog->slots[slot].offset;
}

const float *cb_attn_pair_teacher_in(const cb_attn_pair *p, int k) {
    const cb_op *op = &p->tp.ops[p->t_op[k]];
    return slot_of(&p->tr, &p->tp, p->tp.inputs[op->in_first]);
}

const float *cb_attn_pair_teacher_out(const cb_attn_pair *p, int k) {
    return slot_of(&p->tr, &p->tp, p->tp.ops[p->t_op[k]].out);
}

/* device-to-device copy through the host where memory is not shared */
static int copy_device(cb_attn_pair *p, float *dst, const float *src, size_t n, cb_error *e) {
    if (p->be->unified) {
        if (dst != src) memcpy(dst, src, n * sizeof(float));
        return CB_OK;
    }
    float *h = cb_malloc(n, sizeof *h, e);
    if (!h) return e->code;
    int rc = p->be->download(p->be, h, src, n * sizeof(float), e);
    if (rc == CB_OK) rc = p->be->upload(p->be, dst, h, n * sizeof(float), e);
    free(h);
    return rc;
}

int cb_attn_pair_student_forward(cb_attn_pair *p, const float *s_weights, int k, const float *x, int x_on_host,
                                 const float **out, cb_error *e) {
    const cb_op *op = &p->sp.ops[p->s_op[k]];
    int in_slot = p->sp.inputs[op->in_first];
    size_t n = (size_t)p->B * p->T * p->d;
    float *slot = p->sr.slots + p->sp.slots[in_slot].offset;
    if (x_on_host && !p->be->unified) CB_TRY(p->be->upload(p->be, slot, x, n * sizeof(float), e));
    else CB_TRY(copy_device(p, slot, x, n, e));
    cb_pass q = pass_of(&p->sr, &p->sp, s_weights, NULL, p->tokens);
    CB_TRY(p->be->op_forward(p->be, &q, p->s_op[k], e));
    *out = slot_of(&p->sr, &p->sp, op->out);
    return CB_OK;
}

int cb_attn_pair_student_backward(cb_attn_pair *p, const float *s_weights, float *grads, int k, const float *dout,
                                  cb_error *e) {
    const cb_op *op = &p->sp.ops[p->s_op[k]];
    size_t n = (size_t)p->B * p->T * p->d;
    float *dslot = p->sr.dslots + p->sp.slots[op->out].offset;
    float *din = p->sr.dslots + p->sp.slots[p->sp.inputs[op->in_first]].offset;
    if (p->be->unified) memcpy(dslot, dout, n * sizeof(float));
    else CB_TRY(p->be->upload(p->be, dslot, dout, n * sizeof(float), e));
    p->be->zero(p->be, din, n * sizeof(float)); /* the op adds into its input's gradient */
    cb_pass q = pass_of(&p->sr, &p->sp, s_weights, grads, p->tokens);
    p->be->op_backward(p->be, &q, p->s_op[k]);
    return CB_OK;
}

const float *cb_attn_pair_host(cb_attn_pair *p, float *dst, const float *src, size_t n, cb_error *e) {
    if (p->be->unified) return src;
    if (p->be->download(p->be, dst, src, n * sizeof(float), e) != CB_OK) return NULL;
    return dst;
}

double cb_attn_pair_l1(cb_attn_pair *p, const float *t_weights, const float *s_weights, const int32_t *tokens,
                       double *l1, cb_error *e) {
    size_t n = (size_t)p->B * p->T * p->d;
    float *ht = NULL, *hs = NULL;
    if (!p->be->unified && (!(ht = cb_malloc(n, sizeof *ht, e)) || !(hs = cb_malloc(n, sizeof *hs, e)))) {
        free(ht);
        return NAN;
    }
    double total = 0;
    int rc = cb_attn_pair_teacher(p, t_weights, tokens, p->n - 1, e);
    for (int k = 0; rc == CB_OK && k < p->n; k++) {
        const float *out;
        rc = cb_attn_pair_student_forward(p, s_weights, k, cb_attn_pair_teacher_in(p, k), 0, &out, e);
        const float *a = rc == CB_OK ? cb_attn_pair_host(p, ht, cb_attn_pair_teacher_out(p, k), n, e) : NULL;
        const float *b = a ? cb_attn_pair_host(p, hs, out, n, e) : NULL;
        if (!b) {
            rc = e->code ? e->code : CB_E_RUNTIME;
            break;
        }
        double s = 0;
        for (size_t i = 0; i < n; i++) s += fabs((double)a[i] - (double)b[i]);
        if (l1) l1[k] = s / (double)n;
        total += s / (double)n;
    }
    free(ht);
    free(hs);
    return rc == CB_OK ? total / p->n : NAN;
}
