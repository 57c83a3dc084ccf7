/* swiglu16.c: layers/swiglu.c's feed-forward under amp without float32 in the middle
 * (CB_CUDA_FUSE_SWIGLU): the gate and up products write bf16 into one (N, 2F) buffer
 * (one product over [W_gate; W_up] where the two follow each other in the weights, as
 * model/params.c lays them out), the SwiGLU kernel reads it and writes h, the down
 * product's bf16 operand, directly; backward the same in reverse, dh and dgate/dup in
 * bf16. Those are the roundings the float32 path's products would make of their operands
 * anyway, but for gate and up, rounded to bf16 here before the SiLU (as PyTorch's autocast
 * does). Saved (the float32 layout's 3 N F floats): gu (N, 2F) then h (N, F), bf16, the
 * first half of that room. Scratch: dh (N, F) and dgu (N, 2F) bf16 in ws (2 N F floats). */
#include "backend/cuda/internal.h"

#include "backend/cuda/kernels.h"

/* 8 per operand: cb_cuda_as_bf16 rounds each one's end up to a multiple of 8 */
size_t cb_cuda_swiglu16_h16(int N, int C, int F) {
    return 2 * (size_t)N * C + 3 * (size_t)F * C + 5 * 8;
}

int cb_cuda_swiglu16_on(const cuda_ctx *c, int N, int C, int F) {
    return c->amp && (c->fuse & CB_CUDA_FUSE_SWIGLU) && c->h16 && c->h16_elems >= cb_cuda_swiglu16_h16(N, C, F);
}

static size_t up8(size_t n) { return (n + 7) & ~(size_t)7; }

/* the bf16 of the gate and up weights; 1 when up's follows gate's (one product of 2F) */
static int gate_up16(cuda_ctx *c, const float *wg, const float *wu, size_t n, size_t *used, const cb_bf16 **g16,
                     const cb_bf16 **u16) {
    *g16 = cb_cuda_as_bf16(c, wg, n, used);
    *u16 = cb_cuda_as_bf16(c, wu, n, used);
    return wu == wg + n && *u16 == *g16 + n;
}

void cb_cuda_swiglu16_forward(cuda_ctx *c, cb_pass *p, int i) {
    const cb_program *prog = p->prog;
    const cb_op *op = &prog->ops[i];
    const int N = p->B * p->T, C = op->d_in, F = op->d_ff;
    const float *in = p->slots + prog->slots[prog->inputs[op->in_first]].offset;
    float *out = p->slots + prog->slots[op->out].offset;
    cb_bf16 *gu = (cb_bf16 *)(p->saved + op->saved), *h = gu + 2 * (size_t)N * F;
    const float *wg = p->weights + op->p[CB_P_GATE], *wu = p->weights + op->p[CB_P_UP];
    const float *wd = p->weights + op->p[CB_P_DOWN];
    size_t used = 0;
    const cb_bf16 *x16 = cb_cuda_as_bf16(c, in, (size_t)N * C, &used), *g16, *u16;
    /* gu (N, 2F): [x Wg^T, x Wu^T] */
    if (gate_up16(c, wg, wu, (size_t)F * C, &used, &g16, &u16)) {
        cb_cuda_gemm16(c, 0, 1, N, 2 * F, C, 1, x16, C, g16, C, 0, gu, 1, 2 * F);
    } else {
        cb_cuda_gemm16(c, 0, 1, N, F, C, 1, x16, C, g16, C, 0, gu, 1, 2 * F);
        cb_cuda_gemm16(c, 0, 1, N, F, C, 1, x16, C, u16, C, 0, gu + F, 1, 2 * F);
    }
    cbk_swiglu16_forward(h, gu, N, F);
    c->fused_runs++;
    /* out (N, C) = h Wd^T */
    const cb_bf16 *d16 = cb_cuda_as_bf16(c, wd, (size_t)C * F, &used);
    cb_cuda_gemm16(c, 0, 1, N, C, F, 1, h, F, d16, F, 0, out, 0, C);
}

void cb_cuda_swiglu16_backward(cuda_ctx *c, cb_pass *p, int i) {
    const cb_program *prog = p->prog;
    const cb_op *op = &prog->ops[i];
    const int N = p->B * p->T, C = op->d_in, F = op->d_ff;
    const int in_slot = prog->inputs[op->in_first];
    const float *in = p->slots + prog->slots[in_slot].offset;
    float *din = p->dslots + prog->slots[in_slot].offset;
    const float *dout = p->dslots + prog->slots[op->out].offset;
    const cb_bf16 *gu = (const cb_bf16 *)(p->saved + op->saved), *h = gu + 2 * (size_t)N * F;
    const float *wg = p->weights + op->p[CB_P_GATE], *wu = p->weights + op->p[CB_P_UP];
    const float *wd = p->weights + op->p[CB_P_DOWN];
    float *dwg = p->grads ? p->grads + op->p[CB_P_GATE] : NULL, *dwu = p->grads ? p->grads + op->p[CB_P_UP] : NULL;
    float *dwd = p->grads ? p->grads + op->p[CB_P_DOWN] : NULL;
    cb_bf16 *dh = (cb_bf16 *)c->ws, *dgu = dh + up8((size_t)N * F); /* ws: 2 N F floats = 4 N F bf16 */
    size_t used = 0;
    const cb_bf16 *y16 = cb_cuda_as_bf16(c, dout, (size_t)N * C, &used);
    const cb_bf16 *d16 = cb_cuda_as_bf16(c, wd, (size_t)C * F, &used);
    /* dh (N, F) = dout Wd; dWd (C, F) += dout^T h */
    cb_cuda_gemm16(c, 0, 0, N, F, C, 1, y16, C, d16, F, 0, dh, 1, F);
    if (dwd) cb_cuda_gemm16(c, 1, 0, C, F, N, 1, y16, C, h, F, 1, dwd, 0, F);
    cbk_swiglu16_backward(dgu, dh, gu, N, F);
    c->fused_runs++;
    const cb_bf16 *x16 = cb_cuda_as_bf16(c, in, (size_t)N * C, &used), *g16, *u16;
    const int one = gate_up16(c, wg, wu, (size_t)F * C, &used, &g16, &u16);
    /* din (N, C) += dgu [Wg; Wu]; [dWg; dWu] (2F, C) += dgu^T x */
    if (one) {
        cb_cuda_gemm16(c, 0, 0, N, C, 2 * F, 1, dgu, 2 * F, g16, C, 1, din, 0, C);
    } else {
        cb_cuda_gemm16(c, 0, 0, N, C, F, 1, dgu, 2 * F, g16, C, 1, din, 0, C);
        cb_cuda_gemm16(c, 0, 0, N, C, F, 1, dgu + F, 2 * F, u16, C, 1, din, 0, C);
    }
    if (one && dwg && dwu) {
        cb_cuda_gemm16(c, 1, 0, 2 * F, C, N, 1, dgu, 2 * F, x16, C, 1, dwg, 0, C);
    } else {
        if (dwg) cb_cuda_gemm16(c, 1, 0, F, C, N, 1, dgu, 2 * F, x16, C, 1, dwg, 0, C);
        if (dwu) cb_cuda_gemm16(c, 1, 0, F, C, N, 1, dgu + F, 2 * F, x16, C, 1, dwu, 0, C);
    }
}
