/* program.h: a model's topology compiled, for one batch shape (B,T), into a straight
 * list of ops over planned buffers, as llm.c plans its activations. Forward runs the
 * ops in order, backward in reverse. Topologies become data flow between slots:
 * Residual adds, Parallel combines, Branching concatenates, Cyclic and Recurrent
 * repeat their body with shared weights. The program holds offsets only (in elements),
 * so the same program drives the float runtime and its double twin (run.c). */
#ifndef CB_MODEL_PROGRAM_H
#define CB_MODEL_PROGRAM_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "layers/attention.h"
#include "layers/rope.h"
#include "model/params.h"

enum cb_op_kind {
    CB_OP_EMBED = 0,  /* tokens -> (B,T,d) (+ learned positions) */
    CB_OP_RMSNORM,
    CB_OP_LAYERNORM,
    CB_OP_ATTENTION,
    CB_OP_SWIGLU,
    CB_OP_MLP,
    CB_OP_LINEAR,
    CB_OP_DROPOUT,
    CB_OP_ROPE,
    CB_OP_ADD,        /* out = in[0] + in[1] (residual, recurrent input injection) */
    CB_OP_COMBINE,    /* out = sum or mean of in[...] (Parallel) */
    CB_OP_CONCAT,     /* out = concat of in[...] on the last axis (Branching) */
    CB_OP_HEAD,       /* logits (B,T,V) = in @ W^T (+ b); W = embed.tok when tied */
};

#define CB_OP_MAX_PARAMS 18
#define CB_OP_MAX_INPUTS 64 /* branches of one Parallel or Branching topology */
#define CB_NO_PARAM SIZE_MAX

typedef struct cb_slot {
    int width;     /* last dimension; the slot holds (B,T,width) */
    size_t offset; /* elements from the start of the slot arena (and of the gradient arena) */
} cb_slot;

typedef struct cb_op {
    int kind;             /* enum cb_op_kind */
    char id[CB_PARAM_NAME_MAX]; /* node instance id ("blocks.3.res.attn"); "#2" marks a later cycle */
    const char *type;     /* plan node type ("AttentionLayer") for tracing; points into the plan */
    int in_first, n_in;   /* inputs: program->inputs[in_first .. in_first+n_in) are slot indices */
    int out;              /* output slot */
    size_t p[CB_OP_MAX_PARAMS]; /* parameter offsets into the weight buffer, CB_NO_PARAM if absent */
    size_t saved;         /* offset of what forward saves for backward, in the saved arena */
    size_t n_saved;       /* its elements */
    int rope;             /* index into program->ropes, or -1 */
    int d_in, d_out, d_ff;
    float eps, p_drop;
    int mean;             /* CB_OP_COMBINE: 1 mean, 0 sum */
    int heads, head_dim;  /* CB_OP_ROPE */
    cb_attention_config attn;
    int segment;          /* the block (cb_program.segments) the op belongs to, or -1 */
} cb_op;

/* Parameter roles inside cb_op.p, per kind. */
enum { CB_P_WEIGHT = 0, CB_P_BIAS = 1, CB_P_POS = 2 };          /* norms, linear, embed, head */
enum { CB_P_GATE = 0, CB_P_UP = 1, CB_P_DOWN = 2 };             /* swiglu */
enum { CB_P_FC_W = 0, CB_P_FC_B = 1, CB_P_PROJ_W = 2, CB_P_PROJ_B = 3 }; /* mlp */
enum { /* attention, in the order of cb_attention_weights */
    CB_P_Q_W, CB_P_Q_B, CB_P_K_W, CB_P_K_B, CB_P_V_W, CB_P_V_B, CB_P_O_W, CB_P_O_B,
    CB_P_QSEM_W, CB_P_QSEM_B, CB_P_KSEM_W, CB_P_KSEM_B, CB_P_QGEO_W, CB_P_QGEO_B,
    CB_P_KGEO_W, CB_P_KGEO_B, CB_P_GATE_A, CB_P_GATE_PROJ
};

typedef struct cb_rope_table {
    int dim;                 /* per-head rotated width */
    double theta;
    cb_rope_scaling scaling;
    size_t offset;           /* cos then sin, each (T, dim/2), in the rope arena */
} cb_rope_table;

/* A block of the topology: one repeat of its outermost NestedTopology (a transformer
 * block). Activation checkpointing (cb_program_recompute) keeps no saved values for a
 * checkpointed block: its ops share one saved region with every other checkpointed
 * block, and backward reruns the block's forward, from its input slot, just before the
 * block's own backward (backend/pass.c). */
typedef struct cb_segment {
    int first, last;     /* ops [first, last] */
    size_t saved_elems;  /* what its ops save for backward */
    int recompute;       /* checkpointed: its saved values are rebuilt in backward */
} cb_segment;

typedef struct cb_program {
    int B, T;
    int vocab_size, d_model;
    cb_op *ops;
    int n_ops, cap_ops;
    int *inputs;             /* slot indices referenced by ops */
    int n_inputs, cap_inputs;
    cb_slot *slots;
    int n_slots, cap_slots;
    cb_rope_table ropes[16];
    int n_ropes;
    size_t slot_elems;       /* slot arena size; the gradient arena has the same layout */
    size_t saved_elems;      /* saved arena size */
    size_t scratch_elems;    /* largest scratch any op needs */
    size_t rope_elems;
    int logits_slot;         /* (B,T,V) */
    cb_segment *segments;    /* the blocks, in op order */
    int n_segments, cap_segments;
    int n_recompute;         /* blocks checkpointed by cb_program_recompute */
    size_t saved_full_elems; /* the saved arena without checkpointing */
} cb_program;

/* Compile the plan's model for batch shape (B,T). params names every tensor's offset. */
int cb_program_init(cb_program *prog, const json_t *plan, const cb_param_table *params, int B, int T,
                    cb_error *e);
void cb_program_free(cb_program *prog);

/* Activation checkpointing: checkpoint blocks, first to last, until the activations
 * (cb_program_activation_elems) are at most budget_elems, or every block when
 * budget_elems is 0; then lay the saved arena out again (saved_elems shrinks, op offsets
 * move). Call before any run is made of prog. Sets n_recompute. */
void cb_program_recompute(cb_program *prog, size_t budget_elems);
/* For a program whose runs only go forward (evaluation, verification): what an op saves
 * for backward is never read after its block, so every block's saved values share one
 * region (cb_program_recompute's layout, every block checkpointed): the saved arena of
 * GPT-2 124M at B 8 x 1024 goes from 3.63 GB to the 0.30 GB of one block and the ops
 * outside the blocks. Call before any run is made of prog. */
void cb_program_forward_only(cb_program *prog);
/* Elements a training pass keeps for prog: slots, their gradients, saved values. */
size_t cb_program_activation_elems(const cb_program *prog);

#endif
