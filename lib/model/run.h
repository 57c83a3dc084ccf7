/* run.h: executing a compiled program: the forward pass to logits and loss, and the
 * backward pass into the gradient buffer. The run state (llama2.c's RunState) holds the
 * planned arenas. cb_run is float; cb_run_f64 is the double twin used by the
 * finite-difference checks of every topology (same code, compiled twice). */
#ifndef CB_MODEL_RUN_H
#define CB_MODEL_RUN_H

#include <stdint.h>
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
    int training; /* 0: dropout off, no gradient arena needed */                  \
    double *op_seconds; /* NULL, or CB_RUN_TIMES(prog) wall seconds (the caller's) \
                           that every pass adds to: profiling (bench/cpu_step) */
typedef struct cb_run { CB_RUN_FIELDS(float) } cb_run;
/* The op_seconds layout: op i's forward at [i], its backward at [n_ops + i], then the
 * loss's forward, the clearing of the slot gradients, and the loss's backward. */
#define CB_RUN_TIMES(prog) (2 * (size_t)(prog)->n_ops + 3)
#define CB_RUN_T_LOSS_FWD(prog) (2 * (size_t)(prog)->n_ops)
#define CB_RUN_T_ZERO(prog) (2 * (size_t)(prog)->n_ops + 1)
#define CB_RUN_T_LOSS_BWD(prog) (2 * (size_t)(prog)->n_ops + 2)
typedef struct cb_run_f64 { CB_RUN_FIELDS(double) } cb_run_f64;

/* Allocate the arenas for prog (dslots only when training) and fill the RoPE tables. */
int cb_run_init(cb_run *r, const cb_program *prog, int training, cb_error *e);
int cb_run_init_f64(cb_run_f64 *r, const cb_program *prog, int training, cb_error *e);
void cb_run_free(cb_run *r);
void cb_run_free_f64(cb_run_f64 *r);

/* Forward over tokens (B,T). With targets (B,T; negative = ignored) returns the mean
 * cross-entropy loss, else 0. Logits are in r->slots + slot offset of prog->logits_slot. */
float cb_run_forward(cb_run *r, const cb_program *prog, const float *weights, const int32_t *tokens,
                     const int32_t *targets);
double cb_run_forward_f64(cb_run_f64 *r, const cb_program *prog, const double *weights,
                          const int32_t *tokens, const int32_t *targets);

/* Backward of the mean loss of the last forward: grads (same layout as weights) +=. */
void cb_run_backward(cb_run *r, const cb_program *prog, const float *weights, float *grads);
void cb_run_backward_f64(cb_run_f64 *r, const cb_program *prog, const double *weights, double *grads);

/* The output of op i of the last forward: (B,T,width) in the slot arena. */
const float *cb_run_op_output(const cb_run *r, const cb_program *prog, int op, int *width);

#endif
