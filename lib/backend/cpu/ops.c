/* ops.c: what each op of a program does on the CPU, forward and backward: the CPU
 * backend's op_forward / op_backward (backend/backend.h), driven by the one dispatch loop
 * of backend/pass.c. A full-sequence pass calls the layers (layers/); a decoding pass
 * (p->decode set) runs the ops that look across positions or read weight matrices through
 * backend/cpu/decode.c (KV caches, weights in their storage kind) and the row-wise ops as
 * they are. Written over `real` (layers/real.h) and compiled twice: float here, double in
 * f64/ops_f64.c (full-sequence passes only). */
#include "backend/cpu/cpu.h"

#include <stdlib.h>
#include <string.h>
#include "layers/attention.h"
#include "layers/crossentropy.h"
#include "layers/dropout.h"
#include "layers/elementwise.h"
#include "layers/embedding.h"
#include "layers/layernorm.h"
#include "layers/linear.h"
#include "layers/mlp.h"
#include "layers/real.h"
#include "layers/rmsnorm.h"
#include "layers/rope.h"
#include "layers/swiglu.h"

#ifdef CB_REAL_F64
typedef cb_pass_f64 pass_t;
typedef cb_attention_weights_f64 attn_weights_t;
typedef cb_attention_acts_f64 attn_acts_t;
#else
typedef cb_pass pass_t;
typedef cb_attention_weights attn_weights_t;
typedef cb_attention_acts attn_acts_t;
#endif

static const real *P(const real *w, const cb_op *op, int role) {
    return op->p[role] == CB_NO_PARAM ? NULL : w + op->p[role];
}
static real *G(real *g, const cb_op *op, int role) {
    return op->p[role] == CB_NO_PARAM ? NULL : g + op->p[role];
}

static void attention_weights(attn_weights_t *aw, real *base, const cb_op *op) {
    real **f[CB_OP_MAX_PARAMS] = {&aw->q_weight, &aw->q_bias, &aw->k_weight, &aw->k_bias,
                                  &aw->v_weight, &aw->v_bias, &aw->o_weight, &aw->o_bias,
                                  &aw->q_sem_weight, &aw->q_sem_bias, &aw->k_sem_weight,
                                  &aw->k_sem_bias, &aw->q_geo_weight, &aw->q_geo_bias,
                                  &aw->k_geo_weight, &aw->k_geo_bias, &aw->gate,
                                  &aw->gate_proj_weight};
    memset(aw, 0, sizeof *aw);
    for (int i = 0; i < CB_OP_MAX_PARAMS; i++)
        *f[i] = op->p[i] == CB_NO_PARAM ? NULL : base + op->p[i];
}

static void rope_of(const pass_t *p, const cb_op *op, const real **cos, const real **sin) {
    *cos = *sin = NULL;
    if (op->rope < 0) return;
    const cb_rope_table *t = &p->prog->ropes[op->rope];
    *cos = p->rope + t->offset;
    *sin = *cos + (size_t)p->prog->T * (t->dim / 2);
}

/* element j of op i's output in a pass whose row 0 is row row0 of the global batch */
static uint64_t dropout_offset(const pass_t *p, int op_index, int width) {
    return ((uint64_t)op_index << 40) + (uint64_t)p->row0 * (uint64_t)p->T * (uint64_t)width;
}

#ifdef CB_REAL_F64
int cb_cpu_op_forward_f64(pass_t *p, int i) {
#else
int cb_cpu_op_forward(pass_t *p, int i, cb_error *e) {
    cb_decode *d = p->decode;
#endif
    const cb_program *prog = p->prog;
    const cb_op *op = &prog->ops[i];
    const int B = p->B, T = p->T, N = B * T;
    const int *ins = prog->inputs + op->in_first;
    real *out = p->slots + prog->slots[op->out].offset;
    const real *in = op->n_in ? p->slots + prog->slots[ins[0]].offset : NULL;
    real *w = (real *)p->weights; /* attention's weight struct is not const-qualified */
#ifdef CB_REAL_F64
    real *saved = p->saved + op->saved;
#define DECODING 0
#else
    /* a decoding pass keeps nothing for backward: an op's temporaries go to work */
    real *saved = d ? d->work : p->saved + op->saved;
#define DECODING (d != NULL)
#endif
    const size_t n_out = (size_t)N * prog->slots[op->out].width;
    const real *cos, *sin;
    rope_of(p, op, &cos, &sin);
    switch (op->kind) {
    case CB_OP_EMBED:
        if (p->row_pos) { /* a batched decoding pass: each row at its own sequence's position */
            for (int r = 0; r < T; r++)
                CB_FN(cb_embedding_forward)(out + (size_t)r * op->d_out, p->tokens + r, P(w, op, CB_P_WEIGHT),
                                            P(w, op, CB_P_POS), 1, 1, op->d_out, p->row_pos[r]);
            break;
        }
        CB_FN(cb_embedding_forward)(out, p->tokens, P(w, op, CB_P_WEIGHT), P(w, op, CB_P_POS), B, T, op->d_out,
                                    p->pos0);
        break;
    case CB_OP_RMSNORM:
        CB_FN(cb_rmsnorm_forward)(out, saved, in, P(w, op, CB_P_WEIGHT), N, op->d_in, op->eps);
        break;
    case CB_OP_LAYERNORM:
        CB_FN(cb_layernorm_forward)(out, saved, saved + N, in, P(w, op, CB_P_WEIGHT), P(w, op, CB_P_BIAS), N,
                                    op->d_in, op->eps);
        break;
    case CB_OP_ATTENTION: {
#ifndef CB_REAL_F64
        if (DECODING) return cb_cpu_decode_attention(p, i, out, in, e);
#endif
        attn_weights_t aw;
        attn_acts_t acts;
        attention_weights(&aw, w, op);
        CB_FN(cb_attention_acts_layout)(&acts, saved, &op->attn, B, T);
        CB_FN(cb_attention_forward)(out, &acts, in, &aw, &op->attn, cos, sin, p->scratch, B, T);
        break;
    }
    case CB_OP_SWIGLU: {
#ifndef CB_REAL_F64
        if (DECODING) {
            cb_cpu_decode_swiglu(p, i, out, in);
            break;
        }
#endif
        size_t nf = (size_t)N * op->d_ff;
        CB_FN(cb_swiglu_forward)(out, saved, saved + nf, saved + 2 * nf, in, P(w, op, CB_P_GATE), P(w, op, CB_P_UP),
                                 P(w, op, CB_P_DOWN), N, op->d_in, op->d_ff);
        break;
    }
    case CB_OP_MLP: {
#ifndef CB_REAL_F64
        if (DECODING) {
            cb_cpu_decode_mlp(p, i, out, in);
            break;
        }
#endif
        size_t nf = (size_t)N * op->d_ff;
        CB_FN(cb_mlp_forward)(out, saved, saved + nf, in, P(w, op, CB_P_FC_W), P(w, op, CB_P_FC_B),
                              P(w, op, CB_P_PROJ_W), P(w, op, CB_P_PROJ_B), N, op->d_in, op->d_ff);
        break;
    }
    case CB_OP_LINEAR:
    case CB_OP_HEAD:
#ifndef CB_REAL_F64
        if (DECODING) {
            cb_cpu_decode_linear(p, i, out, in);
            break;
        }
#endif
        CB_FN(cb_linear_forward)(out, in, P(w, op, CB_P_WEIGHT), P(w, op, CB_P_BIAS), N, op->d_in, op->d_out);
        break;
    case CB_OP_DROPOUT:
        if (p->training && op->p_drop > 0)
            CB_FN(cb_dropout_forward)(out, in, n_out, op->p_drop, p->dropout_seed,
                                        dropout_offset(p, i, prog->slots[op->out].width));
        else
            memcpy(out, in, n_out * sizeof *out);
        break;
    case CB_OP_ROPE:
        CB_FN(cb_rope_forward)(out, in, cos, sin, B, T, op->heads, op->head_dim, 0);
        break;
    case CB_OP_ADD:
        CB_FN(cb_add_forward)(out, in, p->slots + prog->slots[ins[1]].offset, n_out);
        break;
    case CB_OP_COMBINE:
    case CB_OP_CONCAT: {
        const real *parts[CB_OP_MAX_INPUTS];
        int widths[CB_OP_MAX_INPUTS];
        int n = op->n_in; /* at most CB_OP_MAX_INPUTS: checked when compiled */
        for (int k = 0; k < n; k++) {
            parts[k] = p->slots + prog->slots[ins[k]].offset;
            widths[k] = prog->slots[ins[k]].width;
        }
        if (op->kind == CB_OP_COMBINE) CB_FN(cb_combine_forward)(out, parts, n, n_out, op->mean);
        else CB_FN(cb_concat_forward)(out, parts, widths, n, N);
        break;
    }
    }
#undef DECODING
    return CB_OK;
}

real CB_FN(cb_cpu_loss_forward)(pass_t *p) {
    const cb_program *prog = p->prog;
    const real *logits = p->slots + prog->slots[prog->logits_slot].offset;
    return CB_FN(cb_crossentropy_forward)(p->losses, p->lse, logits, p->targets, p->B * p->T, prog->vocab_size);
}

void CB_FN(cb_cpu_loss_backward)(pass_t *p) {
    const cb_program *prog = p->prog;
    const real *logits = p->slots + prog->slots[prog->logits_slot].offset;
    real *dlogits = p->dslots + prog->slots[prog->logits_slot].offset;
    CB_FN(cb_crossentropy_backward)(dlogits, logits, p->lse, p->targets, p->B * p->T, prog->vocab_size, 1);
}

/* backend.h's head_loss: the head's linear layer and the cross-entropy (layers/) over chunks
 * of rows, each chunk's logits in the first rows of the logits slot and turned there into
 * their gradient, which the linear layer's backward takes at once; the mean over the whole
 * pass's rows as cb_crossentropy_forward's. */
real CB_FN(cb_cpu_head_loss)(pass_t *p, int chunk_rows) {
    const cb_program *prog = p->prog;
    const cb_op *op = &prog->ops[prog->n_ops - 1];
    const int N = p->B * p->T, V = prog->vocab_size, C = op->d_in;
    const int x_slot = prog->inputs[op->in_first];
    const real *x = p->slots + prog->slots[x_slot].offset, *w = P(p->weights, op, CB_P_WEIGHT),
               *b = P(p->weights, op, CB_P_BIAS);
    real *logits = p->slots + prog->slots[prog->logits_slot].offset;
    real *dx = p->grads ? p->dslots + prog->slots[x_slot].offset : NULL;
    const int n_valid = CB_FN(cb_crossentropy_valid)(p->targets, N);
    for (int r0 = 0; r0 < N; r0 += chunk_rows) {
        const int R = N - r0 < chunk_rows ? N - r0 : chunk_rows;
        const size_t at = (size_t)r0 * C;
        CB_FN(cb_linear_forward)(logits, x + at, w, b, R, C, V);
        CB_FN(cb_crossentropy_forward)(p->losses + r0, p->lse + r0, logits, p->targets + r0, R, V);
        if (!dx || !n_valid) continue;
        CB_FN(cb_crossentropy_grad_inplace)(logits, p->lse + r0, p->targets + r0, R, V, (real)1 / (real)n_valid);
        CB_FN(cb_linear_backward)(dx + at, G(p->grads, op, CB_P_WEIGHT), G(p->grads, op, CB_P_BIAS), logits,
                                  x + at, w, R, C, V);
    }
    return CB_FN(cb_crossentropy_mean)(p->losses, p->targets, N);
}

void CB_FN(cb_cpu_op_backward)(pass_t *p, int i) {
    const cb_program *prog = p->prog;
    const cb_op *op = &prog->ops[i];
    const int B = p->B, T = p->T, N = B * T;
    real *w = (real *)p->weights, *grads = p->grads;
    const int *ins = prog->inputs + op->in_first;
    const real *dout = p->dslots + prog->slots[op->out].offset;
    const real *in = op->n_in ? p->slots + prog->slots[ins[0]].offset : NULL;
    real *din = op->n_in ? p->dslots + prog->slots[ins[0]].offset : NULL;
    real *saved = p->saved + op->saved;
    size_t n_out = (size_t)N * prog->slots[op->out].width;
    const real *cos, *sin;
    rope_of(p, op, &cos, &sin);
    switch (op->kind) {
    case CB_OP_EMBED:
        CB_FN(cb_embedding_backward)(G(grads, op, CB_P_WEIGHT), G(grads, op, CB_P_POS), dout, p->tokens, B,
                                     T, op->d_out, 0);
        break;
    case CB_OP_RMSNORM:
        CB_FN(cb_rmsnorm_backward)(din, G(grads, op, CB_P_WEIGHT), dout, in, P(w, op, CB_P_WEIGHT), saved,
                                   N, op->d_in);
        break;
    case CB_OP_LAYERNORM:
        CB_FN(cb_layernorm_backward)(din, G(grads, op, CB_P_WEIGHT), G(grads, op, CB_P_BIAS), dout, in,
                                     P(w, op, CB_P_WEIGHT), saved, saved + N, N, op->d_in);
        break;
    case CB_OP_ATTENTION: {
        attn_weights_t aw, ag;
        attn_acts_t acts;
        attention_weights(&aw, w, op);
        attention_weights(&ag, grads, op);
        CB_FN(cb_attention_acts_layout)(&acts, saved, &op->attn, B, T);
        CB_FN(cb_attention_backward)(din, &ag, dout, in, &acts, &aw, &op->attn, cos, sin, p->scratch, B, T);
        break;
    }
    case CB_OP_SWIGLU: {
        size_t nf = (size_t)N * op->d_ff;
        CB_FN(cb_swiglu_backward)(din, G(grads, op, CB_P_GATE), G(grads, op, CB_P_UP),
                                  G(grads, op, CB_P_DOWN), p->scratch, dout, in, saved, saved + nf,
                                  saved + 2 * nf, P(w, op, CB_P_GATE), P(w, op, CB_P_UP),
                                  P(w, op, CB_P_DOWN), N, op->d_in, op->d_ff);
        break;
    }
    case CB_OP_MLP: {
        size_t nf = (size_t)N * op->d_ff;
        CB_FN(cb_mlp_backward)(din, G(grads, op, CB_P_FC_W), G(grads, op, CB_P_FC_B),
                               G(grads, op, CB_P_PROJ_W), G(grads, op, CB_P_PROJ_B), p->scratch, dout, in,
                               saved, saved + nf, P(w, op, CB_P_FC_W), P(w, op, CB_P_PROJ_W), N,
                               op->d_in, op->d_ff);
        break;
    }
    case CB_OP_LINEAR:
    case CB_OP_HEAD:
        CB_FN(cb_linear_backward)(din, G(grads, op, CB_P_WEIGHT), G(grads, op, CB_P_BIAS), dout, in,
                                  P(w, op, CB_P_WEIGHT), N, op->d_in, op->d_out);
        break;
    case CB_OP_DROPOUT:
        if (p->training && op->p_drop > 0)
            CB_FN(cb_dropout_backward)(din, dout, n_out, op->p_drop, p->dropout_seed,
                                        dropout_offset(p, i, prog->slots[op->out].width));
        else
            CB_FN(cb_accumulate)(din, dout, n_out);
        break;
    case CB_OP_ROPE:
        CB_FN(cb_rope_backward)(din, dout, cos, sin, B, T, op->heads, op->head_dim, 0);
        break;
    case CB_OP_ADD:
        CB_FN(cb_add_backward)(din, p->dslots + prog->slots[ins[1]].offset, dout, n_out);
        break;
    case CB_OP_COMBINE:
    case CB_OP_CONCAT: {
        real *dparts[CB_OP_MAX_INPUTS];
        int widths[CB_OP_MAX_INPUTS];
        int n = op->n_in; /* at most CB_OP_MAX_INPUTS: checked when compiled */
        for (int k = 0; k < n; k++) {
            dparts[k] = p->dslots + prog->slots[ins[k]].offset;
            widths[k] = prog->slots[ins[k]].width;
        }
        if (op->kind == CB_OP_COMBINE) CB_FN(cb_combine_backward)(dparts, dout, n, n_out, op->mean);
        else CB_FN(cb_concat_backward)(dparts, dout, widths, n, N);
        break;
    }
    }
}
