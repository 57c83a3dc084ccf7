/* ops.c: what each op of a program does on the GPU, forward and backward: the CUDA
 * backend's op_forward / op_backward, op for op the switch of backend/cpu/ops.c (the same
 * saved layout, the same dropout offsets), with the layers as kernels/ (one .cu a layer) and the
 * products through blas.c. A decoding pass goes to decode.c. Under amp an op with
 * products makes sure of the bf16 shadow of the pass's weights and of the bf16 scratch
 * its products want (in forward: backward cannot fail); blas.c does the rest. Under amp
 * SwiGLU's fused path (cuda.h's CB_CUDA_FUSE_SWIGLU) is swiglu16.c; a residual add and the
 * RMSNorm after it (CB_CUDA_FUSE_ADDNORM) are one kernel here (addnorm_pair). */
#include "backend/cuda/internal.h"

#include <math.h>
#include <string.h>
#include "backend/cuda/kernels.h"

static const float *P(const float *w, const cb_op *op, int role) {
    return op->p[role] == CB_NO_PARAM ? NULL : w + op->p[role];
}
static float *G(float *g, const cb_op *op, int role) {
    return !g || op->p[role] == CB_NO_PARAM ? NULL : g + op->p[role];
}

static void rope_of(const cb_pass *p, const cb_op *op, const float **cos, const float **sin) {
    *cos = *sin = NULL;
    if (op->rope < 0) return;
    const cb_rope_table *t = &p->prog->ropes[op->rope];
    *cos = p->rope + t->offset;
    *sin = *cos + (size_t)p->prog->T * (t->dim / 2);
}

/* as backend/cpu/ops.c: each dropout op draws from its own stretch of the stream, element j
 * of a pass whose row 0 is row row0 of the global batch (data parallel) at j + row0 T width */
static uint64_t dropout_offset(const cb_pass *p, int op_index, int width) {
    return ((uint64_t)op_index << 40) + (uint64_t)p->row0 * (uint64_t)p->T * (uint64_t)width;
}

static size_t max_z(size_t a, size_t b) { return a > b ? a : b; }

static int max_i(int a, int b) { return a > b ? a : b; }

/* ADDNORM: op i is a residual add whose sum the RMSNorm right after it reads. Backward,
 * the norm's op adds its input gradient and the add's in one kernel and the add's op does
 * nothing (every other reader of the sum comes later, so its gradient is whole by then);
 * forward, when both are of one block (cb_segment: what fsdp gathers and checkpointing
 * reruns together), the add's op writes the sum and the norm and the norm's op, run next,
 * does nothing. */
static int addnorm_pair(const cuda_ctx *c, const cb_program *prog, int i) {
    if (!(c->fuse & CB_CUDA_FUSE_ADDNORM) || i < 0 || i + 1 >= prog->n_ops) return 0;
    const cb_op *a = &prog->ops[i], *n = &prog->ops[i + 1];
    if (a->kind != CB_OP_ADD || a->n_in != 2 || n->kind != CB_OP_RMSNORM || n->n_in != 1) return 0;
    const int *ins = prog->inputs + a->in_first;
    return prog->inputs[n->in_first] == a->out && ins[0] != a->out && ins[1] != a->out &&
           prog->slots[a->out].width == n->d_in && prog->slots[ins[0]].width == n->d_in &&
           prog->slots[ins[1]].width == n->d_in;
}

/* Floats of ws and red that op i needs, forward or backward, for N rows (attention's
 * depend on c->amp); and the bf16 of h16 its products want under amp (blas.c: a linear
 * layer's operands, row blocks of them past a cap; cb_cuda_gemm's activation operand, which
 * is never wider than N (IC + OC)). */
static void op_work(const cuda_ctx *c, const cb_program *prog, const cb_op *op, int B, int T, size_t *ws,
                    size_t *red, size_t *h16) {
    const int N = B * T;
    *ws = *red = *h16 = 0;
    switch (op->kind) {
    case CB_OP_RMSNORM:
    case CB_OP_LAYERNORM: *red = cbk_colsum_work(N, op->d_in); break;
    case CB_OP_LINEAR:
    case CB_OP_HEAD:
        *red = cbk_colsum_work(N, op->d_out);
        *h16 = cb_cuda_linear_h16(N, op->d_in, op->d_out);
        break;
    case CB_OP_SWIGLU:
        *ws = 2 * (size_t)N * op->d_ff + 8; /* + 8: swiglu16.c's dgu starts 16-byte aligned */
        *h16 = c->fuse & CB_CUDA_FUSE_SWIGLU
                   ? cb_cuda_swiglu16_h16(N, op->d_in, op->d_ff)
                   : max_z(cb_cuda_linear_h16(N, op->d_in, op->d_ff), (size_t)N * op->d_in + 16);
        break;
    case CB_OP_MLP:
        *ws = (size_t)N * op->d_ff;
        *red = cbk_colsum_work(N, op->d_ff > op->d_in ? op->d_ff : op->d_in);
        *h16 = max_z(cb_cuda_linear_h16(N, op->d_in, op->d_ff), (size_t)N * op->d_in + 16);
        break;
    case CB_OP_ATTENTION: {
        cb_cuda_attention_work(c, &op->attn, B, T, ws, red);
        const cb_attention_config *a = &op->attn;
        int width = max_i(max_i(a->d_model, a->n_heads * a->head_dim), max_i(a->sem_dim, max_i(a->geo_dim, a->v_dim)));
        *h16 = max_z(cb_cuda_linear_h16(N, a->d_model, width), (size_t)N * a->d_model + 16);
        break;
    }
    default: break;
    }
    *red = max_z(*red, cbk_crossentropy_work(N));
    (void)prog;
}

int cb_cuda_op_forward(cuda_ctx *c, cb_pass *p, int i, cb_error *e) {
    const cb_program *prog = p->prog;
    const cb_op *op = &prog->ops[i];
    if (p->decode) return cb_cuda_decode_op_forward(c, p, i, e);
    /* after a failure nothing more runs until synchronize reports it (a full-sequence
     * pass's caller may not look at this return: model/run.c) */
    if (c->failed) {
        *e = c->err;
        return e->code;
    }
    /* ADDNORM: this norm's forward was the add's, just before it, in this pass */
    const int ahead = c->ahead_op == i && c->ahead_slots == p->slots;
    c->ahead_op = -1;
    const int B = p->B, T = p->T, N = B * T;
    size_t ws, red, h16;
    op_work(c, prog, op, B, T, &ws, &red, &h16);
    if (cb_cuda_reserve(c, ws, red, e) != CB_OK ||
        (c->amp && h16 && (cb_cuda_reserve_h16(c, h16, e) != CB_OK || cb_cuda_shadow_weights(c, p->weights, e) != CB_OK))) {
        c->failed = 1;
        c->err = *e;
        return e->code;
    }
    const int *ins = prog->inputs + op->in_first;
    float *out = p->slots + prog->slots[op->out].offset;
    const float *in = op->n_in ? p->slots + prog->slots[ins[0]].offset : NULL;
    const float *w = p->weights;
    float *saved = p->saved + op->saved;
    const size_t n_out = (size_t)N * prog->slots[op->out].width;
    const float *cos, *sin;
    rope_of(p, op, &cos, &sin);
    switch (op->kind) {
    case CB_OP_EMBED:
        cbk_embedding_forward(out, p->tokens, P(w, op, CB_P_WEIGHT), P(w, op, CB_P_POS), B, T, op->d_out, p->pos0);
        break;
    case CB_OP_RMSNORM:
        if (!ahead) cbk_rmsnorm_forward(out, saved, in, P(w, op, CB_P_WEIGHT), N, op->d_in, op->eps);
        break;
    case CB_OP_LAYERNORM:
        cbk_layernorm_forward(out, saved, saved + N, in, P(w, op, CB_P_WEIGHT), P(w, op, CB_P_BIAS), N, op->d_in,
                              op->eps);
        break;
    case CB_OP_ATTENTION: cb_cuda_attention_forward(c, p, i); break;
    case CB_OP_SWIGLU: {
        if (cb_cuda_swiglu16_on(c, N, op->d_in, op->d_ff)) {
            cb_cuda_swiglu16_forward(c, p, i);
            break;
        }
        size_t nf = (size_t)N * op->d_ff;
        float *gate = saved, *up = saved + nf, *h = saved + 2 * nf;
        cb_cuda_linear_forward(c, gate, in, P(w, op, CB_P_GATE), NULL, N, op->d_in, op->d_ff);
        cb_cuda_linear_forward(c, up, in, P(w, op, CB_P_UP), NULL, N, op->d_in, op->d_ff);
        cbk_swiglu_forward(h, gate, up, nf);
        cb_cuda_linear_forward(c, out, h, P(w, op, CB_P_DOWN), NULL, N, op->d_ff, op->d_in);
        break;
    }
    case CB_OP_MLP: {
        size_t nf = (size_t)N * op->d_ff;
        float *pre = saved, *h = saved + nf;
        cb_cuda_linear_forward(c, pre, in, P(w, op, CB_P_FC_W), P(w, op, CB_P_FC_B), N, op->d_in, op->d_ff);
        cbk_gelu_forward(h, pre, nf);
        cb_cuda_linear_forward(c, out, h, P(w, op, CB_P_PROJ_W), P(w, op, CB_P_PROJ_B), N, op->d_ff, op->d_in);
        break;
    }
    case CB_OP_LINEAR:
    case CB_OP_HEAD:
        cb_cuda_linear_forward(c, out, in, P(w, op, CB_P_WEIGHT), P(w, op, CB_P_BIAS), N, op->d_in, op->d_out);
        break;
    case CB_OP_DROPOUT:
        if (p->training && op->p_drop > 0) cbk_dropout_forward(out, in, n_out, op->p_drop, p->dropout_seed,
                                                 dropout_offset(p, i, prog->slots[op->out].width));
        else cbk_copy(out, in, n_out);
        break;
    case CB_OP_ROPE: cbk_rope(out, in, cos, sin, B, T, op->heads, op->head_dim, 0, 1.0f, 0); break;
    case CB_OP_ADD:
        if (addnorm_pair(c, prog, i) && prog->ops[i + 1].segment == op->segment) {
            const cb_op *nop = &prog->ops[i + 1];
            cbk_add_rmsnorm_forward(out, p->slots + prog->slots[nop->out].offset, p->saved + nop->saved, in,
                                    p->slots + prog->slots[ins[1]].offset, P(w, nop, CB_P_WEIGHT), N, nop->d_in,
                                    nop->eps);
            c->ahead_op = i + 1;
            c->ahead_slots = p->slots;
            c->fused_runs++;
        } else {
            cbk_add(out, in, p->slots + prog->slots[ins[1]].offset, n_out);
        }
        break;
    case CB_OP_COMBINE: {
        /* as layers/elementwise.c: the inputs added in order from the first, then scaled */
        cbk_copy(out, in, n_out);
        for (int k = 1; k < op->n_in; k++) cbk_axpy(out, p->slots + prog->slots[ins[k]].offset, 1.0f, n_out);
        if (op->mean && op->n_in > 1) cbk_scale(out, n_out, 1.0f / (float)op->n_in);
        break;
    }
    case CB_OP_CONCAT: {
        const int W = prog->slots[op->out].width;
        for (int k = 0, col = 0; k < op->n_in; k++) {
            const int wk = prog->slots[ins[k]].width;
            cbk_concat_part(out, p->slots + prog->slots[ins[k]].offset, N, W, col, wk);
            col += wk;
        }
        break;
    }
    }
    cb_cuda_check_launch(c, "op forward");
    if (c->failed) return cb_fail(e, CB_E_RUNTIME, c->err.where, "%s", c->err.msg);
    return CB_OK;
}

/* backend.h's head_loss: the program's head and the cross-entropy over chunks of rows,
 * each chunk's logits in the first rows of the logits slot, turned there into their
 * gradient (over the pass's count of valid rows, counted on the device first), which the
 * head's backward products take at once; the scratch and bf16 operands are a chunk's. The
 * mean loss comes back to the host as cuda.c's loss_forward's does. */
float cb_cuda_head_loss(cuda_ctx *c, cb_pass *p, int chunk_rows) {
    if (c->failed) return NAN;
    const cb_program *prog = p->prog;
    const cb_op *op = &prog->ops[prog->n_ops - 1];
    const int N = p->B * p->T, V = prog->vocab_size, C = op->d_in;
    size_t ws, red, h16;
    cb_error e;
    op_work(c, prog, op, 1, chunk_rows, &ws, &red, &h16);
    if (cb_cuda_reserve(c, ws, red, &e) != CB_OK ||
        (c->amp && h16 && (cb_cuda_reserve_h16(c, h16, &e) != CB_OK || cb_cuda_shadow_weights(c, p->weights, &e) != CB_OK))) {
        c->failed = 1;
        c->err = e;
        return NAN;
    }
    const int x_slot = prog->inputs[op->in_first];
    const float *x = p->slots + prog->slots[x_slot].offset, *w = P(p->weights, op, CB_P_WEIGHT),
                *b = P(p->weights, op, CB_P_BIAS);
    float *logits = p->slots + prog->slots[prog->logits_slot].offset;
    float *dx = p->grads ? p->dslots + prog->slots[x_slot].offset : NULL;
    int *count = (int *)(c->loss + 1);
    cbk_crossentropy_count(count, p->targets, N);
    for (int r0 = 0; r0 < N; r0 += chunk_rows) {
        const int R = N - r0 < chunk_rows ? N - r0 : chunk_rows;
        const size_t at = (size_t)r0 * C;
        cb_cuda_linear_forward(c, logits, x + at, w, b, R, C, V);
        cbk_crossentropy_rows(p->losses + r0, p->lse + r0, logits, p->targets + r0, R, V);
        if (!dx) continue;
        cbk_crossentropy_grad_inplace(logits, p->lse + r0, p->targets + r0, count, R, V);
        cb_cuda_linear_backward(c, dx + at, G(p->grads, op, CB_P_WEIGHT), G(p->grads, op, CB_P_BIAS), logits, x + at,
                                w, R, C, V);
    }
    cbk_crossentropy_mean(c->loss, count, p->losses, p->targets, N);
    cb_cuda_check_launch(c, "head and loss");
    float loss = NAN;
    if (!c->failed && cudaMemcpy(&loss, c->loss, sizeof loss, cudaMemcpyDeviceToHost) != cudaSuccess)
        cb_cuda_fail(c, "head and loss", "reading the loss back failed");
    return c->failed ? NAN : loss;
}

void cb_cuda_op_backward(cuda_ctx *c, cb_pass *p, int i) {
    if (c->failed) return; /* its scratch may not be there: forward failed */
    const cb_program *prog = p->prog;
    const cb_op *op = &prog->ops[i];
    const int B = p->B, T = p->T, N = B * T;
    const float *w = p->weights;
    float *grads = p->grads;
    const int *ins = prog->inputs + op->in_first;
    const float *dout = p->dslots + prog->slots[op->out].offset;
    const float *in = op->n_in ? p->slots + prog->slots[ins[0]].offset : NULL;
    float *din = op->n_in ? p->dslots + prog->slots[ins[0]].offset : NULL;
    float *saved = p->saved + op->saved;
    const size_t n_out = (size_t)N * prog->slots[op->out].width;
    const float *cos, *sin;
    rope_of(p, op, &cos, &sin);
    switch (op->kind) {
    case CB_OP_EMBED:
        cbk_embedding_backward(G(grads, op, CB_P_WEIGHT), G(grads, op, CB_P_POS), dout, p->tokens, B, T, op->d_out);
        break;
    case CB_OP_RMSNORM:
        if (addnorm_pair(c, prog, i - 1)) { /* and the add's backward, whose sum this reads */
            const int *ains = prog->inputs + prog->ops[i - 1].in_first;
            cbk_rmsnorm_backward_add(p->dslots + prog->slots[ains[0]].offset, p->dslots + prog->slots[ains[1]].offset,
                                     G(grads, op, CB_P_WEIGHT), c->red, din, dout, in, P(w, op, CB_P_WEIGHT), saved,
                                     N, op->d_in);
            c->fused_runs++;
            break;
        }
        cbk_rmsnorm_backward(din, G(grads, op, CB_P_WEIGHT), c->red, dout, in, P(w, op, CB_P_WEIGHT), saved, N,
                             op->d_in);
        break;
    case CB_OP_LAYERNORM:
        cbk_layernorm_backward(din, G(grads, op, CB_P_WEIGHT), G(grads, op, CB_P_BIAS), c->red, dout, in,
                               P(w, op, CB_P_WEIGHT), saved, saved + N, N, op->d_in);
        break;
    case CB_OP_ATTENTION: cb_cuda_attention_backward(c, p, i); break;
    case CB_OP_SWIGLU: {
        if (cb_cuda_swiglu16_on(c, N, op->d_in, op->d_ff)) { /* as forward: h16 only grows */
            cb_cuda_swiglu16_backward(c, p, i);
            break;
        }
        size_t nf = (size_t)N * op->d_ff;
        const float *gate = saved, *up = saved + nf, *h = saved + 2 * nf;
        float *dgate = c->ws, *dup = c->ws + nf;
        const int C = op->d_in, F = op->d_ff;
        // dh (N,F) = dout (N,C) wd (C,F), into dgate; then dgate, dup in place
        cb_cuda_gemm(c, 0, 0, N, F, C, 1, dout, C, P(w, op, CB_P_DOWN), F, 0, dgate, F);
        cb_cuda_linear_backward(c, NULL, G(grads, op, CB_P_DOWN), NULL, dout, h, P(w, op, CB_P_DOWN), N, F, C);
        cbk_swiglu_backward(dgate, dup, gate, up, nf);
        cb_cuda_linear_backward(c, din, G(grads, op, CB_P_GATE), NULL, dgate, in, P(w, op, CB_P_GATE), N, C, F);
        cb_cuda_linear_backward(c, din, G(grads, op, CB_P_UP), NULL, dup, in, P(w, op, CB_P_UP), N, C, F);
        break;
    }
    case CB_OP_MLP: {
        size_t nf = (size_t)N * op->d_ff;
        const float *pre = saved, *h = saved + nf;
        float *dh = c->ws;
        const int C = op->d_in, F = op->d_ff;
        cb_cuda_gemm(c, 0, 0, N, F, C, 1, dout, C, P(w, op, CB_P_PROJ_W), F, 0, dh, F);
        cb_cuda_linear_backward(c, NULL, G(grads, op, CB_P_PROJ_W), G(grads, op, CB_P_PROJ_B), dout, h,
                                P(w, op, CB_P_PROJ_W), N, F, C);
        cbk_gelu_backward_inplace(dh, pre, nf);
        cb_cuda_linear_backward(c, din, G(grads, op, CB_P_FC_W), G(grads, op, CB_P_FC_B), dh, in,
                                P(w, op, CB_P_FC_W), N, C, F);
        break;
    }
    case CB_OP_LINEAR:
    case CB_OP_HEAD:
        cb_cuda_linear_backward(c, din, G(grads, op, CB_P_WEIGHT), G(grads, op, CB_P_BIAS), dout, in,
                                P(w, op, CB_P_WEIGHT), N, op->d_in, op->d_out);
        break;
    case CB_OP_DROPOUT:
        if (p->training && op->p_drop > 0)
            cbk_dropout_backward(din, dout, n_out, op->p_drop, p->dropout_seed,
                                                 dropout_offset(p, i, prog->slots[op->out].width));
        else cbk_axpy(din, dout, 1.0f, n_out);
        break;
    case CB_OP_ROPE: cbk_rope(din, dout, cos, sin, B, T, op->heads, op->head_dim, 0, -1.0f, 1); break;
    case CB_OP_ADD:
        if (addnorm_pair(c, prog, i)) break; /* done by the norm's backward */
        cbk_axpy(din, dout, 1.0f, n_out);
        cbk_axpy(p->dslots + prog->slots[ins[1]].offset, dout, 1.0f, n_out);
        break;
    case CB_OP_COMBINE: {
        float s = op->mean ? 1.0f / (float)op->n_in : 1.0f;
        for (int k = 0; k < op->n_in; k++) cbk_axpy(p->dslots + prog->slots[ins[k]].offset, dout, s, n_out);
        break;
    }
    case CB_OP_CONCAT: {
        const int W = prog->slots[op->out].width;
        for (int k = 0, col = 0; k < op->n_in; k++) {
            const int wk = prog->slots[ins[k]].width;
            cbk_concat_part_backward(p->dslots + prog->slots[ins[k]].offset, dout, N, W, col, wk);
            col += wk;
        }
        break;
    }
    }
    cb_cuda_check_launch(c, "op backward");
}
