/* pass.h: one pass over a compiled program (model/program.h), on a device. The same op
 * list runs in two ways, through one dispatch loop (cb_pass_forward / cb_pass_backward):
 *   - a full-sequence pass of a training step or an evaluation: (B,T) rows, every op's
 *     output kept in the slot arena, what backward needs in the saved arena;
 *   - a decoding pass (decode != NULL): m <= T new rows of one sequence at positions
 *     pos0 .. pos0+m-1; attention appends their keys and values to the layer's KV cache
 *     and attends against the whole cache, products read the weights in their decoding
 *     storage kind.
 * Every pointer in a pass is device memory of the backend that runs it. cb_pass_f64 is the
 * double twin the finite-difference checks run on the CPU (same loop, compiled twice). */
#ifndef CB_BACKEND_PASS_H
#define CB_BACKEND_PASS_H

#include <stdint.h>
#include "backend/backend.h"
#include "backend/cpu/matvec.h"
#include "infer/decode_plan.h"
#include "infer/kv_cache.h"
#include "model/program.h"

/* What a decoding state is made from (a session's settings). */
typedef struct cb_decode_config {
    cb_kv_kinds kinds;      /* storage of the cached k (k_geo), k_sem, v */
    cb_kv_kind weight_kind; /* fp32: the model's weights as they are; else converted once */
    int rows;               /* the most rows one pass carries (the session's chunk) */
    const cb_decode_plan_config *plan; /* borrowed */
    int graphs_off;         /* CUDA: 1 launches one-row steps op by op; 0 (the default) captures
                               them as graphs unless CB_CUDA_GRAPHS=0 is in the environment */
    cb_kv_layout kv_layout; /* the CPU's caches: packed where heads are narrower than a block
                               (the default), or per head, padded (infer/kv_cache.h); the
                               CUDA backend's are always per head */
    const struct cb_decode *weights_of; /* NULL: convert the weights; else use that state's
                               converted matrices, which must outlive this one (the other
                               sequences of a batch, infer/batch.h); the CPU's only */
} cb_decode_config;

/* A program's decoding state on a device (backend->decode_init). */
typedef struct cb_decode {
    cb_decode_config cfg;
    const cb_program *prog;  /* borrowed: the program the state was made for */
    cb_weight_matrix *mats;  /* (n_ops, CB_OP_MAX_PARAMS) each op's weight matrices (data
                                NULL where none): views of the model's buffer for fp32,
                                else converted, a shared tensor (tied head, cyclic body)
                                once */
    size_t n_mats;
    size_t weight_bytes;     /* bytes of the converted matrices (0 for fp32 views) */
    cb_kv_cache kv;          /* one layer cache per attention op, in program order */
    int *op_layer;           /* (n_ops) index into kv.layers of an attention op, else -1 */
    float *work;             /* work_elems: an op's temporaries (norm statistics, q, k, v, ...) */
    size_t work_elems;
    float *attn_scratch;     /* decode attention's scratch, grown by decode_reserve */
    size_t attn_scratch_elems;
    const char *last_bucket; /* decode-plan bucket of the last pass */
    int mats_borrowed;       /* mats are cfg.weights_of's: not freed with this state */
    void *dev;               /* the device's own state beside these, or NULL (CUDA: a
                                one-row step's stream, CUDA graph, device position and
                                RoPE tables, backend/cuda/decode.c) */
    int rope_on_device;      /* 1: a pass of one row takes its RoPE rows from tables the
                                device keeps, and the session fills none for it */
} cb_decode;

/* The decoding pass's HEAD: the widest product (V columns) runs only for the rows asked. */
enum cb_head_rows { CB_HEAD_NONE = 0, CB_HEAD_LAST = 1, CB_HEAD_ALL = 2 };

#define CB_PASS_FIELDS(R)                                                                  \
    const cb_program *prog;                                                                \
    int B, T;           /* this pass's rows (B,T); a decoding pass is (1, m), m <= prog->T */ \
    int pos0;           /* position of row 0 (decoding); 0 in a full-sequence pass */       \
    int training;       /* dropout on */                                                    \
    uint64_t dropout_seed; /* masks derive from it and the op's index */                    \
    long row0;          /* row 0's row in the global batch (data parallel): dropout masks  \
                           index the global batch, so W ranks drop what one rank would */  \
    const R *weights;   /* the model's buffer (params.total_floats) */                     \
    R *grads;           /* backward adds here; same layout */                              \
    R *slots;           /* prog->slot_elems: every op's output */                          \
    R *dslots;          /* prog->slot_elems: their gradients (backward only) */            \
    R *saved;           /* prog->saved_elems: what forward keeps for backward */           \
    R *scratch;         /* prog->scratch_elems */                                          \
    R *rope;            /* prog->rope_elems: cos then sin (T rows) of each RoPE table, for  \
                           positions 0..T-1, or pos0..pos0+m-1 when decoding */             \
    R *lse, *losses;    /* (B*T) per row: log-sum-exp of the logits, loss */               \
    const int32_t *tokens, *targets; /* (B,T); targets NULL: no loss */                   \
    cb_decode *decode;  /* NULL: a full-sequence pass */                                   \
    int head_rows;      /* decoding: enum cb_head_rows */                                  \
    cb_decode **row_seqs; /* a batched decoding pass (infer/batch.h): NULL, or (T) the state \
                           of each row's own sequence, whose KV caches its attention appends \
                           to and reads (weights and work are decode's); row r is one new  \
                           token at position row_pos[r], and its RoPE row is for that      \
                           position */                                                      \
    const int *row_pos;                                                                    \
    int head_chunk;     /* full-sequence: 0, the head is an op like any and the loss reads \
                           its (B,T,V) logits; > 0, the run keeps no logits (model/run.h   \
                           cb_run_init_fused): forward runs the head with the loss, that  \
                           many rows at a time (backend.h head_loss), and with grads their \
                           gradients at once; backward then starts below the head */        \
    double *op_seconds; /* NULL, or CB_RUN_TIMES(prog) seconds each op adds to (profiling) */ \
    void (*on_backward)(void *ctx, int op); /* NULL, or called after each op's backward    \
                           (data parallel: a bucket of final gradients to sum, dist/buckets.h) */ \
    void *on_backward_ctx;                                                                 \
    void (*on_block)(void *ctx, int segment, int event); /* NULL, or called around each    \
                           block's forward and backward (enum cb_block_event; fsdp gathers \
                           a block's weights before and releases them after, train/fsdp.h) */ \
    void *on_block_ctx;

/* Where a pass stands in a block (cb_program.segments) when on_block is called: before
 * its first op's forward, after its last op's forward, before its backward (ahead of the
 * rerun of a checkpointed block's forward), after its first op's backward. */
enum cb_block_event { CB_BLOCK_FORWARD = 0, CB_BLOCK_FORWARD_DONE, CB_BLOCK_BACKWARD, CB_BLOCK_BACKWARD_DONE };

typedef struct cb_pass { CB_PASS_FIELDS(float) } cb_pass;
typedef struct cb_pass_f64 { CB_PASS_FIELDS(double) } cb_pass_f64;

/* The op_seconds layout: op i's forward at [i], its backward at [n_ops + i], then the
 * loss's forward, the clearing of the slot gradients, and the loss's backward. */
#define CB_RUN_TIMES(prog) (2 * (size_t)(prog)->n_ops + 3)
#define CB_RUN_T_LOSS_FWD(prog) (2 * (size_t)(prog)->n_ops)
#define CB_RUN_T_ZERO(prog) (2 * (size_t)(prog)->n_ops + 1)
#define CB_RUN_T_LOSS_BWD(prog) (2 * (size_t)(prog)->n_ops + 2)

/* Every op in order; with targets, *loss = the mean cross-entropy (else 0). With head_chunk
 * the targets are required, and with grads the head's gradients are added here: its input's
 * gradient slot is cleared first, the head's weight gradients take +=. */
int cb_pass_forward(cb_backend *be, cb_pass *p, float *loss, cb_error *e);
/* Clear the slot gradients, the loss's backward, every op in reverse: grads +=. A block
 * the program checkpoints (model/program.h cb_program_recompute) has its forward rerun
 * just before its backward. With head_chunk (after a forward with grads) the head's input
 * gradient is kept and the loss and the head are done already. */
void cb_pass_backward(cb_backend *be, cb_pass *p);
/* Every op in reverse as cb_pass_backward, after a loss backward of the caller's own. */
void cb_pass_backward_ops(cb_backend *be, cb_pass *p);
/* The same on the CPU in double. */
double cb_pass_forward_f64(cb_pass_f64 *p);
void cb_pass_backward_f64(cb_pass_f64 *p);

#endif
