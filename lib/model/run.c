/* run.c: a program's arenas on a device, and its full-sequence passes through the one
 * dispatch loop (backend/pass.c). Written over `real` (layers/real.h) and compiled twice:
 * float on any backend here, double on the CPU in f64/run_f64.c. */
#include "model/run.h"

#include <stdlib.h>
#include <string.h>
#include "layers/real.h"
#include "layers/rope.h"

#ifdef CB_REAL_F64
typedef cb_run_f64 run_t;
typedef cb_pass_f64 pass_t;
/* the double twin lives on the CPU */
static void *arena_alloc(run_t *r, size_t bytes, cb_error *e) {
    (void)r;
    size_t n = ((bytes ? bytes : 1) + 63) / 64 * 64;
    void *p = aligned_alloc(64, n);
    if (!p) cb_fail(e, CB_E_RUNTIME, "", "out of memory: %zu MB of activations", n >> 20);
    else memset(p, 0, n);
    return p;
}
static void arena_free(run_t *r, void *p) {
    (void)r;
    free(p);
}
#else
typedef cb_run run_t;
typedef cb_pass pass_t;
static void *arena_alloc(run_t *r, size_t bytes, cb_error *e) { return r->be->alloc(r->be, bytes, e); }
static void arena_free(run_t *r, void *p) { r->be->free(r->be, p); }
#endif

void CB_FN(cb_run_free)(run_t *r) {
    if (!r->slots && !r->saved && !r->rope) { /* never initialised, or freed */
        memset(r, 0, sizeof *r);
        return;
    }
    real **arenas[] = {&r->slots, &r->dslots, &r->saved, &r->scratch, &r->rope, &r->lse, &r->losses};
    for (size_t i = 0; i < sizeof arenas / sizeof arenas[0]; i++) arena_free(r, *arenas[i]);
    memset(r, 0, sizeof *r);
}

/* The RoPE tables of prog for positions 0..T-1, computed on the host and uploaded. */
static int fill_rope(run_t *r, const cb_program *prog, cb_error *e) {
    if (!prog->rope_elems) return CB_OK;
#ifdef CB_REAL_F64
    real *host = r->rope;
#else
    real *host = r->be->unified ? r->rope : cb_malloc(prog->rope_elems, sizeof *host, e);
    if (!host) return e->code;
#endif
    for (int i = 0; i < prog->n_ropes; i++) {
        const cb_rope_table *t = &prog->ropes[i];
        real *cos = host + t->offset, *sin = cos + (size_t)prog->T * (t->dim / 2);
        CB_FN(cb_rope_tables)(cos, sin, prog->T, t->dim, t->theta, &t->scaling);
    }
#ifndef CB_REAL_F64
    if (host != r->rope) {
        int rc = r->be->upload(r->be, r->rope, host, prog->rope_elems * sizeof *host, e);
        free(host);
        return rc;
    }
#endif
    return CB_OK;
}

/* The arenas for prog; head_chunk > 0 (training): the logits slot, the last of the arena,
 * holds that many rows and its gradient none. */
static int init(run_t *r, const cb_program *prog, int training, int head_chunk, cb_error *e) {
    const size_t N = (size_t)prog->B * prog->T;
    const size_t logits = prog->slots[prog->logits_slot].offset;
    r->training = training;
    r->head_chunk = head_chunk;
    size_t slot_elems = head_chunk ? logits + (size_t)head_chunk * prog->vocab_size : prog->slot_elems;
    size_t dslot_elems = head_chunk ? logits : prog->slot_elems;
    r->slots = arena_alloc(r, slot_elems * sizeof(real), e);
    r->dslots = training ? arena_alloc(r, dslot_elems * sizeof(real), e) : NULL;
    r->saved = arena_alloc(r, prog->saved_elems * sizeof(real), e);
    r->scratch = arena_alloc(r, prog->scratch_elems * sizeof(real), e);
    r->rope = arena_alloc(r, prog->rope_elems * sizeof(real), e);
    r->lse = arena_alloc(r, N * sizeof(real), e);
    r->losses = arena_alloc(r, N * sizeof(real), e);
    int rc = r->slots && (!training || r->dslots) && r->saved && r->scratch && r->rope && r->lse && r->losses
                 ? fill_rope(r, prog, e) : CB_E_RUNTIME;
    if (rc != CB_OK) CB_FN(cb_run_free)(r);
    return rc;
}

/* The head and the loss fused over chunks of rows: it needs the head to be the last op
 * writing the last slot (model/program.c compiles every model so). */
static int chunk_of(const cb_program *prog, int chunk_rows) {
    const int N = prog->B * prog->T;
    const cb_op *h = &prog->ops[prog->n_ops - 1];
    if (h->kind != CB_OP_HEAD || h->out != prog->logits_slot ||
        prog->slots[prog->logits_slot].offset + (size_t)N * prog->vocab_size != prog->slot_elems)
        return 0;
    return chunk_rows < N ? chunk_rows : N;
}

#ifdef CB_REAL_F64
int cb_run_init_f64(run_t *r, const cb_program *prog, int training, cb_error *e) {
    memset(r, 0, sizeof *r);
    return init(r, prog, training, 0, e);
}

int cb_run_init_fused_f64(run_t *r, const cb_program *prog, int chunk_rows, cb_error *e) {
    memset(r, 0, sizeof *r);
    return init(r, prog, 1, chunk_of(prog, chunk_rows > 0 ? chunk_rows : prog->B * prog->T), e);
}
#else
int cb_run_init(run_t *r, const cb_program *prog, int training, cb_error *e) {
    return cb_run_init_on(r, cb_backend_cpu(), prog, training, e);
}

int cb_run_init_on(run_t *r, cb_backend *be, const cb_program *prog, int training, cb_error *e) {
    memset(r, 0, sizeof *r);
    r->be = be;
    return init(r, prog, training, 0, e);
}

/* The chunk of a fused run on be: chunk_rows, or the backend's choice (0: it keeps the logits). */
static int fused_chunk(cb_backend *be, const cb_program *prog, int chunk_rows) {
    if (!be->head_loss) return 0;
    if (chunk_rows <= 0) chunk_rows = be->head_chunk_rows ? be->head_chunk_rows(be, prog->B * prog->T, prog->vocab_size) : 0;
    return chunk_rows > 0 ? chunk_of(prog, chunk_rows) : 0;
}

int cb_run_init_fused(run_t *r, cb_backend *be, const cb_program *prog, int chunk_rows, cb_error *e) {
    memset(r, 0, sizeof *r);
    r->be = be;
    return init(r, prog, 1, fused_chunk(be, prog, chunk_rows), e);
}

int cb_run_init_loss(run_t *r, cb_backend *be, const cb_program *prog, int chunk_rows, cb_error *e) {
    memset(r, 0, sizeof *r);
    r->be = be;
    return init(r, prog, 0, fused_chunk(be, prog, chunk_rows), e);
}
#endif

/* The full-sequence pass of r over prog. */
static pass_t pass_of(run_t *r, const cb_program *prog, const real *weights, real *grads) {
    pass_t p;
    memset(&p, 0, sizeof p);
    p.prog = prog;
    p.B = prog->B;
    p.T = prog->T;
    p.training = r->training;
    p.head_chunk = r->head_chunk;
    p.dropout_seed = r->dropout_seed;
    p.row0 = r->row0;
    p.weights = weights;
    p.grads = grads;
    p.slots = r->slots;
    p.dslots = r->dslots;
    p.saved = r->saved;
    p.scratch = r->scratch;
    p.rope = r->rope;
    p.lse = r->lse;
    p.losses = r->losses;
    p.tokens = r->tokens;
    p.targets = r->targets;
    p.op_seconds = r->op_seconds;
    p.on_backward = r->on_backward;
    p.on_backward_ctx = r->on_backward_ctx;
    p.on_block = r->on_block;
    p.on_block_ctx = r->on_block_ctx;
    return p;
}

#ifndef CB_REAL_F64
cb_pass cb_run_pass(const cb_run *r, const cb_program *prog, const float *weights, float *grads) {
    return pass_of((cb_run *)r, prog, weights, grads);
}
#endif

real CB_FN(cb_run_step)(run_t *r, const cb_program *prog, const real *weights, real *grads, const int32_t *tokens,
                         const int32_t *targets) {
    r->tokens = tokens;
    r->targets = targets;
    pass_t p = pass_of(r, prog, weights, grads);
#ifdef CB_REAL_F64
    real loss = cb_pass_forward_f64(&p);
    cb_pass_backward_f64(&p);
#else
    float loss = 0;
    cb_error e; /* a pass with targets has no step that can fail */
    cb_pass_forward(r->be, &p, &loss, &e);
    cb_pass_backward(r->be, &p);
#endif
    return loss;
}

#ifdef CB_REAL_F64
double cb_run_forward_f64(run_t *r, const cb_program *prog, const real *weights, const int32_t *tokens,
                          const int32_t *targets) {
    r->tokens = tokens;
    r->targets = targets;
    pass_t p = pass_of(r, prog, weights, NULL);
    return cb_pass_forward_f64(&p);
}

void cb_run_backward_f64(run_t *r, const cb_program *prog, const real *weights, real *grads) {
    pass_t p = pass_of(r, prog, weights, grads);
    cb_pass_backward_f64(&p);
}
#else
float cb_run_forward(run_t *r, const cb_program *prog, const real *weights, const int32_t *tokens,
                     const int32_t *targets) {
    r->tokens = tokens;
    r->targets = targets;
    pass_t p = pass_of(r, prog, weights, NULL);
    float loss = 0;
    cb_error e; /* a full-sequence pass has no step that can fail */
    cb_pass_forward(r->be, &p, &loss, &e);
    return loss;
}

void cb_run_backward(run_t *r, const cb_program *prog, const real *weights, real *grads) {
    pass_t p = pass_of(r, prog, weights, grads);
    cb_pass_backward(r->be, &p);
}

const float *cb_run_op_output(const cb_run *r, const cb_program *prog, int op, int *width) {
    int slot = prog->ops[op].out;
    if (width) *width = prog->slots[slot].width;
    return r->slots + prog->slots[slot].offset;
}
#endif
