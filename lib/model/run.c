/* run.c: forward and backward over a compiled program, written over `real` (layers/real.h)
 * and compiled twice: float here, double in f64/run_f64.c. */
#include "model/run.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
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
typedef cb_run_f64 run_t;
typedef cb_attention_weights_f64 attn_weights_t;
typedef cb_attention_acts_f64 attn_acts_t;
#else
typedef cb_run run_t;
typedef cb_attention_weights attn_weights_t;
typedef cb_attention_acts attn_acts_t;
#endif

static real *alloc_arena(size_t n, cb_error *e) {
    /* 64-byte aligned; never zero-sized */
    size_t bytes = (n ? n : 1) * sizeof(real);
    bytes = (bytes + 63) / 64 * 64;
    real *p = aligned_alloc(64, bytes);
    if (!p) cb_fail(e, CB_E_RUNTIME, "", "out of memory: %zu MB of activations", bytes >> 20);
    else memset(p, 0, bytes);
    return p;
}

void CB_FN(cb_run_free)(run_t *r) {
    free(r->slots);
    free(r->dslots);
    free(r->saved);
    free(r->scratch);
    free(r->rope);
    free(r->lse);
    free(r->losses);
    memset(r, 0, sizeof *r);
}

int CB_FN(cb_run_init)(run_t *r, const cb_program *prog, int training, cb_error *e) {
    memset(r, 0, sizeof *r);
    size_t N = (size_t)prog->B * prog->T;
    r->training = training;
    r->slots = alloc_arena(prog->slot_elems, e);
    r->dslots = training ? alloc_arena(prog->slot_elems, e) : NULL;
    r->saved = alloc_arena(prog->saved_elems, e);
    r->scratch = alloc_arena(prog->scratch_elems, e);
    r->rope = alloc_arena(prog->rope_elems, e);
    r->lse = alloc_arena(N, e);
    r->losses = alloc_arena(N, e);
    if (!r->slots || (training && !r->dslots) || !r->saved || !r->scratch || !r->rope || !r->lse ||
        !r->losses) {
        CB_FN(cb_run_free)(r);
        return CB_E_RUNTIME;
    }
    for (int i = 0; i < prog->n_ropes; i++) {
        const cb_rope_table *t = &prog->ropes[i];
        real *cos = r->rope + t->offset, *sin = cos + (size_t)prog->T * (t->dim / 2);
        CB_FN(cb_rope_tables)(cos, sin, prog->T, t->dim, t->theta, &t->scaling);
    }
    return CB_OK;
}

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

static void rope_of(const run_t *r, const cb_program *prog, const cb_op *op, const real **cos, const real **sin) {
    *cos = *sin = NULL;
    if (op->rope < 0) return;
    const cb_rope_table *t = &prog->ropes[op->rope];
    *cos = r->rope + t->offset;
    *sin = *cos + (size_t)prog->T * (t->dim / 2);
}

static uint64_t dropout_offset(int op_index) { return (uint64_t)op_index << 40; }

/* Profiling (r->op_seconds set): the clock now, and the time since t0 added to slot i. */
static double clock_s(const run_t *r) {
    if (!r->op_seconds) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static void add_time(const run_t *r, size_t i, double t0) {
    if (r->op_seconds) r->op_seconds[i] += clock_s(r) - t0;
}

#ifdef CB_REAL_F64
double
#else
float
#endif
CB_FN(cb_run_forward)(run_t *r, const cb_program *prog, const real *weights, const int32_t *tokens,
                      const int32_t *targets) {
    const int B = prog->B, T = prog->T, N = B * T;
    r->tokens = tokens;
    r->targets = targets;
    real *w = (real *)weights; /* attention's weight struct is not const-qualified */
    for (int i = 0; i < prog->n_ops; i++) {
        const cb_op *op = &prog->ops[i];
        const int *ins = prog->inputs + op->in_first;
        real *out = r->slots + prog->slots[op->out].offset;
        const real *in = op->n_in ? r->slots + prog->slots[ins[0]].offset : NULL;
        real *saved = r->saved + op->saved;
        size_t n_out = (size_t)N * prog->slots[op->out].width;
        const real *cos, *sin;
        rope_of(r, prog, op, &cos, &sin);
        const double t0 = clock_s(r);
        switch (op->kind) {
        case CB_OP_EMBED:
            CB_FN(cb_embedding_forward)(out, tokens, P(w, op, CB_P_WEIGHT), P(w, op, CB_P_POS), B, T,
                                        op->d_out, 0);
            break;
        case CB_OP_RMSNORM:
            CB_FN(cb_rmsnorm_forward)(out, saved, in, P(w, op, CB_P_WEIGHT), N, op->d_in, op->eps);
            break;
        case CB_OP_LAYERNORM:
            CB_FN(cb_layernorm_forward)(out, saved, saved + N, in, P(w, op, CB_P_WEIGHT), P(w, op, CB_P_BIAS),
                                        N, op->d_in, op->eps);
            break;
        case CB_OP_ATTENTION: {
            attn_weights_t aw;
            attn_acts_t acts;
            attention_weights(&aw, w, op);
            CB_FN(cb_attention_acts_layout)(&acts, saved, &op->attn, B, T);
            CB_FN(cb_attention_forward)(out, &acts, in, &aw, &op->attn, cos, sin, r->scratch, B, T);
            break;
        }
        case CB_OP_SWIGLU: {
            size_t nf = (size_t)N * op->d_ff;
            CB_FN(cb_swiglu_forward)(out, saved, saved + nf, saved + 2 * nf, in, P(w, op, CB_P_GATE),
                                     P(w, op, CB_P_UP), P(w, op, CB_P_DOWN), N, op->d_in, op->d_ff);
            break;
        }
        case CB_OP_MLP: {
            size_t nf = (size_t)N * op->d_ff;
            CB_FN(cb_mlp_forward)(out, saved, saved + nf, in, P(w, op, CB_P_FC_W), P(w, op, CB_P_FC_B),
                                  P(w, op, CB_P_PROJ_W), P(w, op, CB_P_PROJ_B), N, op->d_in, op->d_ff);
            break;
        }
        case CB_OP_LINEAR:
        case CB_OP_HEAD:
            CB_FN(cb_linear_forward)(out, in, P(w, op, CB_P_WEIGHT), P(w, op, CB_P_BIAS), N, op->d_in,
                                     op->d_out);
            break;
        case CB_OP_DROPOUT:
            if (r->training && op->p_drop > 0)
                CB_FN(cb_dropout_forward)(out, in, n_out, op->p_drop, r->dropout_seed, dropout_offset(i));
            else
                memcpy(out, in, n_out * sizeof *out);
            break;
        case CB_OP_ROPE:
            CB_FN(cb_rope_forward)(out, in, cos, sin, B, T, op->heads, op->head_dim, 0);
            break;
        case CB_OP_ADD:
            CB_FN(cb_add_forward)(out, in, r->slots + prog->slots[ins[1]].offset, n_out);
            break;
        case CB_OP_COMBINE:
        case CB_OP_CONCAT: {
            const real *parts[CB_OP_MAX_INPUTS];
            int widths[CB_OP_MAX_INPUTS];
            int n = op->n_in; /* at most CB_OP_MAX_INPUTS: checked when compiled */
            for (int k = 0; k < n; k++) {
                parts[k] = r->slots + prog->slots[ins[k]].offset;
                widths[k] = prog->slots[ins[k]].width;
            }
            if (op->kind == CB_OP_COMBINE) CB_FN(cb_combine_forward)(out, parts, n, n_out, op->mean);
            else CB_FN(cb_concat_forward)(out, parts, widths, n, N);
            break;
        }
        }
        add_time(r, (size_t)i, t0);
    }
    if (!targets) return 0;
    const real *logits = r->slots + prog->slots[prog->logits_slot].offset;
    const double t0 = clock_s(r);
    const real loss = CB_FN(cb_crossentropy_forward)(r->losses, r->lse, logits, targets, N, prog->vocab_size);
    add_time(r, CB_RUN_T_LOSS_FWD(prog), t0);
    return loss;
}

void CB_FN(cb_run_backward)(run_t *r, const cb_program *prog, const real *weights, real *grads) {
    const int B = prog->B, T = prog->T, N = B * T;
    real *w = (real *)weights;
    double t0 = clock_s(r);
    memset(r->dslots, 0, prog->slot_elems * sizeof *r->dslots);
    add_time(r, CB_RUN_T_ZERO(prog), t0);
    const real *logits = r->slots + prog->slots[prog->logits_slot].offset;
    real *dlogits = r->dslots + prog->slots[prog->logits_slot].offset;
    t0 = clock_s(r);
    CB_FN(cb_crossentropy_backward)(dlogits, logits, r->lse, r->targets, N, prog->vocab_size, 1);
    add_time(r, CB_RUN_T_LOSS_BWD(prog), t0);
    for (int i = prog->n_ops - 1; i >= 0; i--) {
        const cb_op *op = &prog->ops[i];
        const int *ins = prog->inputs + op->in_first;
        const real *dout = r->dslots + prog->slots[op->out].offset;
        const real *in = op->n_in ? r->slots + prog->slots[ins[0]].offset : NULL;
        real *din = op->n_in ? r->dslots + prog->slots[ins[0]].offset : NULL;
        real *saved = r->saved + op->saved;
        size_t n_out = (size_t)N * prog->slots[op->out].width;
        const real *cos, *sin;
        rope_of(r, prog, op, &cos, &sin);
        t0 = clock_s(r);
        switch (op->kind) {
        case CB_OP_EMBED:
            CB_FN(cb_embedding_backward)(G(grads, op, CB_P_WEIGHT), G(grads, op, CB_P_POS), dout, r->tokens, B,
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
            CB_FN(cb_attention_backward)(din, &ag, dout, in, &acts, &aw, &op->attn, cos, sin, r->scratch, B, T);
            break;
        }
        case CB_OP_SWIGLU: {
            size_t nf = (size_t)N * op->d_ff;
            CB_FN(cb_swiglu_backward)(din, G(grads, op, CB_P_GATE), G(grads, op, CB_P_UP),
                                      G(grads, op, CB_P_DOWN), r->scratch, dout, in, saved, saved + nf,
                                      saved + 2 * nf, P(w, op, CB_P_GATE), P(w, op, CB_P_UP),
                                      P(w, op, CB_P_DOWN), N, op->d_in, op->d_ff);
            break;
        }
        case CB_OP_MLP: {
            size_t nf = (size_t)N * op->d_ff;
            CB_FN(cb_mlp_backward)(din, G(grads, op, CB_P_FC_W), G(grads, op, CB_P_FC_B),
                                   G(grads, op, CB_P_PROJ_W), G(grads, op, CB_P_PROJ_B), r->scratch, dout, in,
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
            if (r->training && op->p_drop > 0)
                CB_FN(cb_dropout_backward)(din, dout, n_out, op->p_drop, r->dropout_seed, dropout_offset(i));
            else
                CB_FN(cb_accumulate)(din, dout, n_out);
            break;
        case CB_OP_ROPE:
            CB_FN(cb_rope_backward)(din, dout, cos, sin, B, T, op->heads, op->head_dim, 0);
            break;
        case CB_OP_ADD:
            CB_FN(cb_add_backward)(din, r->dslots + prog->slots[ins[1]].offset, dout, n_out);
            break;
        case CB_OP_COMBINE:
        case CB_OP_CONCAT: {
            real *dparts[CB_OP_MAX_INPUTS];
            int widths[CB_OP_MAX_INPUTS];
            int n = op->n_in; /* at most CB_OP_MAX_INPUTS: checked when compiled */
            for (int k = 0; k < n; k++) {
                dparts[k] = r->dslots + prog->slots[ins[k]].offset;
                widths[k] = prog->slots[ins[k]].width;
            }
            if (op->kind == CB_OP_COMBINE) CB_FN(cb_combine_backward)(dparts, dout, n, n_out, op->mean);
            else CB_FN(cb_concat_backward)(dparts, dout, widths, n, N);
            break;
        }
        }
        add_time(r, (size_t)prog->n_ops + (size_t)i, t0);
    }
}

#ifndef CB_REAL_F64
const float *cb_run_op_output(const cb_run *r, const cb_program *prog, int op, int *width) {
    int slot = prog->ops[op].out;
    if (width) *width = prog->slots[slot].width;
    return r->slots + prog->slots[slot].offset;
}
#endif
