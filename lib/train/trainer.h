/* trainer.h: the training loop of one run: micro-batches with gradient accumulation,
 * clipping, the optimizer step at the scheduled rate, evaluation on validation data,
 * metrics, periodic checkpoints, resuming on the same trajectory, and a clean stop. */
#ifndef CB_TRAIN_TRAINER_H
#define CB_TRAIN_TRAINER_H

#include <jansson.h>
#include <signal.h>
#include "backend/backend.h"
#include "core/error.h"
#include "data/dataset.h"
#include "model/model.h"
#include "train/config.h"
#include "train/progress.h"

/* The token sets of a run: the training data, and the validation data (a file of its
 * own, or the last val_frac of the training file). Views share the opened files. */
typedef struct cb_train_data {
    cb_dataset file, val_file; /* opened; val_file unused when the split is by fraction */
    int have_val_file;
    cb_dataset train, val;     /* views into the files (never closed themselves) */
    int have_val;              /* 0: nothing to evaluate on (val_frac 0, no val_split) */
} cb_train_data;

/* Open data (and val_split, or hold out val_frac of data), check every id against
 * vocab_size and that each part holds at least one window of block_size + 1 tokens.
 * A missing file is CB_E_IO; a bad, short or out-of-vocabulary file CB_E_INVALID. */
int cb_train_data_open(cb_train_data *d, const char *data, const char *val_split, double val_frac, int block_size,
                       int64_t vocab_size, cb_error *e);
void cb_train_data_close(cb_train_data *d);

typedef struct cb_train_io {
    const char *run_dir;             /* exists; checkpoints, metrics and final/ go here */
    const char *resume;              /* a checkpoint or run directory, or NULL */
    volatile sig_atomic_t *stop;     /* set (by a signal handler): save at the end of the step, return */
    cb_progress *progress;           /* may be NULL */
    const json_t *meta;              /* members added to state.json and run.json (wandb, source); may be NULL */
    cb_backend *backend;             /* the device it trains on (backend/backend.h); NULL: the CPU */
    struct cb_dist *dist;            /* the ranks of a data-parallel run (dist/dist.h); NULL: alone */
    const cb_model *teacher;         /* phases blockwise, upcycle: the teacher (host weights); else NULL */
} cb_train_io;

typedef struct cb_train_result {
    long step;                       /* optimizer steps done */
    int interrupted;                 /* stopped through io.stop */
    char checkpoint[4608];           /* the last checkpoint written, or "" */
    char final_dir[4608];            /* run_dir/final when the run completed */
    double loss, val_loss;           /* of the last step (val_loss NaN when never evaluated) */
    int world;                       /* ranks that trained (1 alone) */
    int grad_buckets;                /* strategy ddp under mpirun: gradient sums each step started
                                        during the backward pass (dist/buckets.h); 0: none */
    int blocks, recompute_blocks;    /* the model's blocks; those checkpointed (activation_checkpointing) */
    double activation_mb, activation_full_mb; /* a step's activations with and without checkpointing */
    double weights_mb, grads_mb;     /* under mpirun: the weight and gradient buffers' memory held at
                                        the peak of the first step, the largest of any rank (fsdp
                                        releases what a rank does not own, train/fsdp.h) */
    double buffer_mb;                /* one whole buffer (the parameters' floats) */
} cb_train_result;

/* Train m (weights initialised, or loaded, by the caller) for c->steps steps on d.
 * Phase blockwise: each attention layer of m in turn, alone, for the distance of its
 * output to io->teacher's on the teacher's input of that layer (blockwise_steps steps, or
 * in convergence mode until the distance stayed at or below convergence_target for
 * convergence_patience steps, at most max_steps_per_block); phase upcycle: that, then
 * c->steps steps of next-token cross-entropy on every parameter, one step counter and one
 * resumable run throughout. run.json's "upcycle" records the attention-output L1 to the
 * teacher before and after distillation and the validation loss before fine-tuning.
 * With io->resume, the model, optimizer and run state come from that checkpoint, and
 * every later step is bit for bit the step a run that never stopped would have taken
 * (same machine, same thread count). A non-finite loss or gradient norm is
 * CB_E_RUNTIME ("step 12: the loss is nan"). Writes run_dir/run.json at the start and
 * the end. */
int cb_train_run(const cb_train_config *c, cb_model *m, const cb_train_data *d, const cb_train_io *io,
                 cb_train_result *res, cb_error *e);

#endif
