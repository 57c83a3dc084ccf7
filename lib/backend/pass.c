/* pass.c: the one dispatch loop over a program's ops, forward in order and backward in
 * reverse, for training and decoding passes alike; what each op does is the backend's
 * (backend->op_forward). Written over `real` and compiled twice: float through the
 * backend interface here, double on the CPU in f64/pass_f64.c. */
#include "backend/pass.h"

#include "backend/cpu/cpu.h"
#include "core/clock.h"
#include "layers/real.h"

#ifdef CB_REAL_F64
typedef cb_pass_f64 pass_t;
#define OP_FORWARD(be, p, i, e) cb_cpu_op_forward_f64(p, i)
#define OP_BACKWARD(be, p, i) cb_cpu_op_backward_f64(p, i)
#define LOSS_FORWARD(be, p) cb_cpu_loss_forward_f64(p)
#define LOSS_BACKWARD(be, p) cb_cpu_loss_backward_f64(p)
#define ZERO(be, x, bytes) memset(x, 0, bytes)
#define HEAD_LOSS(be, p) cb_cpu_head_loss_f64(p, (p)->head_chunk)
#else
typedef cb_pass pass_t;
#define OP_FORWARD(be, p, i, e) (be)->op_forward(be, p, i, e)
#define OP_BACKWARD(be, p, i) (be)->op_backward(be, p, i)
#define LOSS_FORWARD(be, p) (be)->loss_forward(be, p)
#define LOSS_BACKWARD(be, p) (be)->loss_backward(be, p)
#define ZERO(be, x, bytes) (be)->zero(be, x, bytes)
#define HEAD_LOSS(be, p) (be)->head_loss(be, p, (p)->head_chunk)
#endif

#include <math.h>
#include <string.h>

/* Profiling (p->op_seconds set): the clock now, and the time since t0 added to slot i. */
static double clock_if(const pass_t *p) { return p->op_seconds ? cb_clock_s() : 0; }
static void add_time(const pass_t *p, size_t i, double t0) {
    if (p->op_seconds) p->op_seconds[i] += cb_clock_s() - t0;
}

#ifdef CB_REAL_F64
double cb_pass_forward_f64(pass_t *p) {
    cb_backend *be = NULL;
    cb_error *e = NULL;
    (void)be;
#else
int cb_pass_forward(cb_backend *be, pass_t *p, float *loss, cb_error *e) {
#endif
    const cb_program *prog = p->prog;
    const int fused = p->head_chunk > 0, n_ops = fused ? prog->n_ops - 1 : prog->n_ops;
#ifdef CB_REAL_F64
    if (fused && !p->targets) return NAN;
#else
    if (fused && !p->targets)
        return cb_fail(e, CB_E_INVALID, "", "this run keeps no logits (its head is fused with the loss): a pass without targets has nothing to give");
#endif
    for (int i = 0; i < n_ops; i++) {
        const int s = prog->ops[i].segment;
        if (p->on_block && s >= 0 && i == prog->segments[s].first) p->on_block(p->on_block_ctx, s, CB_BLOCK_FORWARD);
        const double t0 = clock_if(p);
#ifdef CB_REAL_F64
        OP_FORWARD(be, p, i, e);
#else
        CB_TRY(OP_FORWARD(be, p, i, e));
#endif
        add_time(p, (size_t)i, t0);
        if (p->on_block && s >= 0 && i == prog->segments[s].last)
            p->on_block(p->on_block_ctx, s, CB_BLOCK_FORWARD_DONE);
    }
    real l = 0;
    if (fused) {
        /* the head's input gradient is whole after this (the head is its only reader that
           comes later) and backward keeps it */
        const double t0 = clock_if(p);
        const cb_slot *x = &prog->slots[prog->inputs[prog->ops[n_ops].in_first]];
        if (p->grads) ZERO(be, p->dslots + x->offset, (size_t)p->B * p->T * x->width * sizeof *p->dslots);
        l = HEAD_LOSS(be, p);
        add_time(p, (size_t)n_ops, t0);
    } else if (p->targets) {
        const double t0 = clock_if(p);
        l = LOSS_FORWARD(be, p);
        add_time(p, CB_RUN_T_LOSS_FWD(prog), t0);
    }
    (void)e;
#ifdef CB_REAL_F64
    return l;
#else
    if (loss) *loss = l;
    return CB_OK;
#endif
}

/* Activation checkpointing (model/program.h): the block's forward once more, from its
 * input slot, which backward has not touched, so its saved values are back in the region
 * it shares with the other checkpointed blocks; its outputs are written again with the
 * values they hold (the same ops on the same inputs; dropout masks are drawn from the
 * seed and the op's index). A full-sequence op cannot fail on the CPU; on the GPU a failure
 * stops every later op and the step's synchronize reports it (backend/cuda). */
static void recompute(cb_backend *be, pass_t *p, const cb_segment *g) {
    cb_error e;
    (void)be;
    (void)e;
    for (int i = g->first; i <= g->last; i++) {
        const double t0 = clock_if(p);
        OP_FORWARD(be, p, i, &e);
        add_time(p, (size_t)i, t0);
    }
}

/* Every op in reverse, a checkpointed block's forward rerun as backward reaches it. */
static void backward_ops(cb_backend *be, pass_t *p) {
    const cb_program *prog = p->prog;
    for (int i = prog->n_ops - 1; i >= 0; i--) {
        const int s = prog->ops[i].segment;
        if (p->on_block && s >= 0 && i == prog->segments[s].last) p->on_block(p->on_block_ctx, s, CB_BLOCK_BACKWARD);
        if (s >= 0 && prog->segments[s].recompute && i == prog->segments[s].last)
            recompute(be, p, &prog->segments[s]);
        const double t0 = clock_if(p);
        if (!p->head_chunk || i < prog->n_ops - 1) OP_BACKWARD(be, p, i); /* a fused head's ran in forward */
        add_time(p, (size_t)prog->n_ops + (size_t)i, t0);
        if (p->on_block && s >= 0 && i == prog->segments[s].first)
            p->on_block(p->on_block_ctx, s, CB_BLOCK_BACKWARD_DONE);
        if (p->on_backward) p->on_backward(p->on_backward_ctx, i);
    }
    (void)be;
}

#ifdef CB_REAL_F64
void cb_pass_backward_f64(pass_t *p) {
    cb_backend *be = NULL;
#else
void cb_pass_backward(cb_backend *be, pass_t *p) {
#endif
    const cb_program *prog = p->prog;
    double t0 = clock_if(p);
    if (p->head_chunk) { /* every gradient slot below the logits but the head's input */
        const cb_slot *x = &prog->slots[prog->inputs[prog->ops[prog->n_ops - 1].in_first]];
        const size_t x_end = x->offset + (size_t)p->B * p->T * x->width, end = prog->slots[prog->logits_slot].offset;
        ZERO(be, p->dslots, x->offset * sizeof *p->dslots);
        if (end > x_end) ZERO(be, p->dslots + x_end, (end - x_end) * sizeof *p->dslots);
    } else {
        ZERO(be, p->dslots, prog->slot_elems * sizeof *p->dslots);
    }
    add_time(p, CB_RUN_T_ZERO(prog), t0);
    t0 = clock_if(p);
    if (!p->head_chunk) LOSS_BACKWARD(be, p);
    add_time(p, CB_RUN_T_LOSS_BWD(prog), t0);
    backward_ops(be, p);
    (void)be;
}

#ifndef CB_REAL_F64
void cb_pass_backward_ops(cb_backend *be, cb_pass *p) { backward_ops(be, p); }
#endif
