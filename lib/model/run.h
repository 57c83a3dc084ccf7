/* run.h: a compiled program bound to a device for full-sequence passes: the forward pass
 * to logits and loss, and the backward pass into the gradient buffer. The run state
 * (llama2.c's RunState) holds the planned arenas on the device; each pass goes through the
 * one dispatch loop of backend/pass.h. cb_run is float on any backend; cb_run_f64 is the
 * double twin on the CPU used by the finite-difference checks of every topology (same
 * code, compiled twice). */
#ifndef CB_MODEL_RUN_H
#define CB_MODEL_RUN_H

#include <stdint.h>
#include "backend/backend.h"
#include "backend/pass.h"
#include "model/program.h"

#define CB_RUN_FIELDS(T)                                                          \
    T *slots;    /* prog->slot_elems: every op's output (B,T,width) */             \
    T *dslots;   /* prog->slot_elems: gradients of the slots (training only) */    \
    T *saved;    /* prog->saved_elems: what forward keeps for backward */          \
    T *scratch;  /* prog->scratch_elems */                                         \
    T *rope;     /* prog->rope_elems: cos and sin tables */                        \
    T *lse;      /* (B*T) log-sum-exp of each logits row */                        \
    T *losses;   /* (B*T) per-position loss */                                     \
    const int32_t *tokens, *targets; /* (B,T) of the last forward */              \
    uint64_t dropout_seed; /* set per step; dropout masks derive from it */       \
    long row0;    /* the global batch row of row 0 (data parallel: rank * B);      \
                     dropout masks index the global batch */                      \
    int training; /* 0: dropout off, no gradient arena needed */                  \
    int head_chunk; /* 0: the logits are kept; > 0: the head runs with the loss,   \
                       this many rows at a time, and the arenas have no (B,T,V)    \
                       logits, only one chunk of them (cb_run_init_fused) */       \
    double *op_seconds; /* NULL, or CB_RUN_TIMES(prog) wall seconds (the caller's) \
                           that every pass adds to: profiling (bench/cpu_step) */  \
    void (*on_backward)(void *ctx, int op); /* NULL, or the backward pass's hook     \
                                                (backend/pass.h) */               \
    void *on_backward_ctx;                                                        \
    void (*on_block)(void *ctx, int segment, int event); /* NULL, or the hook     \
                                                around each block (backend/pass.h) */ \
    void *on_block_ctx;
typedef struct cb_run {
    cb_backend *be; /* the device the arenas live on */
    CB_RUN_FIELDS(float)
} cb_run;
typedef struct cb_run_f64 { CB_RUN_FIELDS(double) } cb_run_f64;

/* Allocate the arenas for prog (dslots only when training) and fill the RoPE tables: on
 * the CPU, or on be. */
int cb_run_init(cb_run *r, const cb_program *prog, int training, cb_error *e);
int cb_run_init_on(cb_run *r, cb_backend *be, const cb_program *prog, int training, cb_error *e);
int cb_run_init_f64(cb_run_f64 *r, const cb_program *prog, int training, cb_error *e);
/* A training run whose head is fused with the loss (backend.h head_loss): the slot arena
 * holds one chunk of logits rows, not (B,T,V), and the gradient arena none (for GPT-2's
 * vocabulary at B 64 x 1024, 26 GB less). Only passes with targets: cb_run_step, and
 * cb_run_forward for the loss alone (an evaluation). chunk_rows 0: the backend's choice;
 * where the backend keeps logits (no head_loss), the run is cb_run_init_on's. */
int cb_run_init_fused(cb_run *r, cb_backend *be, const cb_program *prog, int chunk_rows, cb_error *e);
int cb_run_init_fused_f64(cb_run_f64 *r, const cb_program *prog, int chunk_rows, cb_error *e);
/* The same for the loss alone (an evaluation: no dropout, no gradient arena): cb_run_forward
 * with targets. A GPT-2 vocabulary at B 8 x 1024 holds 1.6 GB of logits otherwise. */
int cb_run_init_loss(cb_run *r, cb_backend *be, const cb_program *prog, int chunk_rows, cb_error *e);
void cb_run_free(cb_run *r);
void cb_run_free_f64(cb_run_f64 *r);

/* Forward over tokens (B,T). With targets (B,T; negative = ignored) returns the mean
 * cross-entropy loss, else 0. Logits are in r->slots + slot offset of prog->logits_slot.
 * weights, tokens and targets are memory of r's device (host memory on the CPU). */
float cb_run_forward(cb_run *r, const cb_program *prog, const float *weights, const int32_t *tokens,
                     const int32_t *targets);
double cb_run_forward_f64(cb_run_f64 *r, const cb_program *prog, const double *weights,
                          const int32_t *tokens, const int32_t *targets);

/* Backward of the mean loss of the last forward: grads (same layout as weights) +=. Not
 * on a fused run, whose forward must take the head's gradients: cb_run_step. */
void cb_run_backward(cb_run *r, const cb_program *prog, const float *weights, float *grads);
void cb_run_backward_f64(cb_run_f64 *r, const cb_program *prog, const double *weights, double *grads);

/* A training step's passes: forward with targets, then backward into grads (+=); returns
 * the mean loss. A fused run (cb_run_init_fused) takes the head's gradients in forward. */
float cb_run_step(cb_run *r, const cb_program *prog, const float *weights, float *grads, const int32_t *tokens,
                  const int32_t *targets);
double cb_run_step_f64(cb_run_f64 *r, const cb_program *prog, const double *weights, double *grads,
                       const int32_t *tokens, const int32_t *targets);

/* The full-sequence pass of r over prog with these weights and gradients (grads NULL:
 * forward only): what cb_run_forward / cb_run_backward run, for a caller that drives the
 * ops itself (distillation, one layer of a pair). tokens and targets are r's last. */
cb_pass cb_run_pass(const cb_run *r, const cb_program *prog, const float *weights, float *grads);

/* The output of op i of the last forward: (B,T,width) in the slot arena (device memory). */
const float *cb_run_op_output(const cb_run *r, const cb_program *prog, int op, int *width);

#endif
