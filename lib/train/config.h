/* config.h: the settings of one training run, read from a plan's lowered run (its seed,
 * steps and train mapping) with the defaults of cb-manifest(5) filled in. */
#ifndef CB_TRAIN_CONFIG_H
#define CB_TRAIN_CONFIG_H

#include <jansson.h>
#include <stdint.h>
#include "core/error.h"
#include "train/optimizer.h"
#include "train/schedule.h"

/* where metrics go besides metrics.jsonl (train.instrument) */
enum {
    CB_INSTR_HDF5 = 1u << 0,
    CB_INSTR_TENSORBOARD = 1u << 1,
    CB_INSTR_LIVE = 1u << 2,
    CB_INSTR_RICH = 1u << 3,
};

#define CB_TRAIN_PATH_MAX 4096
#define CB_TRAIN_NAME_MAX 256

/* train.phase (cb-manifest(5) TRAINING) */
enum cb_phase { CB_PHASE_STANDARD = 0, CB_PHASE_GLOBAL, CB_PHASE_BLOCKWISE, CB_PHASE_UPCYCLE, CB_PHASE_DISTILL };

typedef struct cb_train_config {
    char group[CB_TRAIN_NAME_MAX], run[CB_TRAIN_NAME_MAX];
    char exp[32];                    /* run.exp label, or "" */
    uint64_t seed;
    long steps;                      /* optimizer steps in all */
    char data[CB_TRAIN_PATH_MAX];    /* training tokens */
    char val_split[CB_TRAIN_PATH_MAX]; /* evaluation tokens, or "" to hold out val_frac of data */
    double val_frac;
    int batch_size, block_size, grad_accum;
    cb_schedule schedule;            /* total = steps */
    cb_optimizer_config optimizer;
    double grad_clip;                /* 0: off */
    long log_every, eval_every, eval_iters, save_every, keep_last;
    int prefetch;                    /* batches prepared ahead by the loader thread; 0: none */
    unsigned instruments;            /* CB_INSTR_* */
    int wandb;
    char wandb_project[CB_TRAIN_NAME_MAX], wandb_entity[CB_TRAIN_NAME_MAX];
    /* initial weights: a model dir, checkpoint or Hugging Face dir (init_ckpt), or the
     * final model of an earlier run of the group (init_run); neither: fresh from seed */
    char init_ckpt[CB_TRAIN_PATH_MAX], init_run[CB_TRAIN_NAME_MAX];
    char init_from[16];              /* "student", "teacher" or "" */
    char resume[CB_TRAIN_PATH_MAX];  /* train.resume, or "" */
    char device[16];                 /* train.device: "cpu", "cuda", "auto" (backend/backend.h) */
    int shard_optimizer;             /* strategy fsdp, SHARD_GRAD_OP or FULL_SHARD: each rank holds its
                                        part of the optimizer state and gradients (train/shard.h) */
    int full_shard;                  /* FULL_SHARD: and of the blocks' weights (train/fsdp.h) */
    int recompute;                   /* activation_checkpointing: blocks' saved values rebuilt in
                                        backward (model/program.h cb_program_recompute) */
    double recompute_mb;             /* activation_checkpoint_threshold_mb: checkpoint blocks until
                                        the activations fit in this many MiB; 0: every block */
    size_t bucket_floats;            /* strategy ddp: gradients summed in buckets of this many floats
                                        during the backward pass (bucket_cap_mb; 0: after it) */
    int phase;                       /* enum cb_phase */
    int student;                     /* the run trains its student (train.student.overrides): the
                                        plan's "students" entry for it, not the plan's model */
    int surgery;                     /* the student starts from the teacher by surgery (upcycle,
                                        blockwise without student weights) */
    /* the teacher (blockwise, upcycle, distill): a model directory, checkpoint or Hugging
     * Face directory (teacher_ckpt), or the final model of an earlier run (teacher_run) */
    char teacher_ckpt[CB_TRAIN_PATH_MAX], teacher_run[CB_TRAIN_NAME_MAX];
    long blockwise_steps;            /* steps per attention layer (fixed mode) */
    int blockwise_mse;               /* 0: L1 (mean absolute difference), 1: mean squared */
    double convergence_target;       /* > 0: convergence mode */
    long convergence_patience, max_steps_per_block;
    int cache_teacher;               /* cache_teacher_outputs */
    double distill_temperature, distill_alpha;
    int batch_auto;                  /* batch_size: auto: batch_size is 0 until the runtime plan
                                        (runtime/runtime_plan.h) decides it */
} cb_train_config;

/* Find the run: in group `group` (NULL: the only group, or the group holding run), the
 * run with id `run` (NULL: the group's first run of mode train). A missing or ambiguous
 * choice is CB_E_USAGE; *group_out and *run_out are borrowed from plan. */
int cb_train_find_run(const json_t *plan, const char *group, const char *run, const json_t **group_out,
                      const json_t **run_out, cb_error *e);

/* 1 when a training run of c reads its logits, so its head cannot be fused with the loss
 * (model/run.h cb_run_init_fused): distillation (the KL to the teacher reads them) and fsdp
 * (it gathers and releases weights by block around the ops); fsdp: the run shards. */
int cb_train_keeps_logits(const cb_train_config *c, int fsdp);

/* Read the run's settings. A run that is not mode train, has no steps (phase blockwise
 * needs none), asks for what the trainer does not do (devices this build has no backend
 * for, dtypes other than float32/auto) is an error naming the manifest line of the field. */
int cb_train_config_read(cb_train_config *c, const json_t *group, const json_t *run, cb_error *e);

#endif
