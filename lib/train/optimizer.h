/* optimizer.h: the optimizers of a training run (AdamW, Lion, SGD with momentum) over the
 * model's one weight buffer; their state buffers are laid out like the weights. */
#ifndef CB_TRAIN_OPTIMIZER_H
#define CB_TRAIN_OPTIMIZER_H

#include <stdint.h>
#include "core/error.h"
#include "model/params.h"

/* enums only grow at the end: the names are written into checkpoints */
enum cb_optimizer_kind { CB_OPT_ADAMW = 0, CB_OPT_LION = 1, CB_OPT_SGD = 2 };

typedef struct cb_optimizer_config {
    int kind;             /* enum cb_optimizer_kind */
    double beta1, beta2;  /* adamw, lion */
    double eps;           /* adamw */
    double momentum;      /* sgd */
    double weight_decay;  /* decoupled: p -= lr * weight_decay * p, before the update */
    int decay_norms_and_biases; /* decay 1-D tensors too (norm weights, biases, gates) */
    int decay_embeddings;       /* decay embed.* too */
} cb_optimizer_config;

typedef struct cb_optimizer {
    cb_optimizer_config cfg;
    const cb_param_table *params; /* borrowed; its layout is the layout of m and v */
    unsigned char *decay;         /* [params->n]: 1 where weight decay applies */
    float *m;                     /* total_floats: adamw/lion exp_avg, sgd momentum buffer */
    float *v;                     /* total_floats: adamw exp_avg_sq; NULL otherwise */
    uint64_t t;                   /* optimizer steps taken */
} cb_optimizer;

/* "adamw", "lion", "sgd"; NULL for anything else. */
const char *cb_optimizer_name(int kind);
/* The kind named name, or -1. */
int cb_optimizer_kind(const char *name);
/* 1 when weight decay applies to p under c: 2-D and larger tensors always, 1-D tensors
 * (norms, biases) only with decay_norms_and_biases, embed.* only with decay_embeddings. */
int cb_optimizer_decays(const cb_optimizer_config *c, const cb_param *p);

/* State zeroed, t = 0. */
int cb_optimizer_init(cb_optimizer *o, const cb_optimizer_config *c, const cb_param_table *params, cb_error *e);
void cb_optimizer_free(cb_optimizer *o);

/* One update of weights from grads (both params->total_floats) at learning rate lr,
 * elementwise, so the result does not depend on the thread count. Padding between
 * tensors is left alone. */
void cb_optimizer_step(cb_optimizer *o, float *weights, const float *grads, double lr);
/* The same update with the state in m and v (laid out like o->m, o->v; v used by AdamW
 * only) instead of o's own: a backend keeps its copy of the state where it computes. */
void cb_optimizer_step_state(cb_optimizer *o, float *weights, const float *grads, float *m, float *v, double lr);

/* The state as safetensors: "<param>.exp_avg" (adamw, lion), "<param>.exp_avg_sq" (adamw),
 * "<param>.momentum_buffer" (sgd), shaped like the parameter; metadata cb.optimizer
 * (the kind's name), cb.optimizer_step (t) and cb.plan_sha256. Written atomically. */
int cb_optimizer_save(const cb_optimizer *o, const char *path, const char *plan_sha256, cb_error *e);
/* Read the state back: the file must be for the same optimizer kind, hold every tensor
 * with the parameter's shape and nothing else; a defect is CB_E_INVALID naming path. */
int cb_optimizer_load(cb_optimizer *o, const char *path, cb_error *e);

#endif
