/* checkpoint.h: training checkpoints: DIR/step-NNNNNNNN/ holding plan.json and
 * model.safetensors (so it is a model directory too), optimizer.safetensors and
 * state.json (where the run stands), written whole under a temporary name and renamed,
 * so a killed or failing save never leaves a half checkpoint nor touches an earlier one. */
#ifndef CB_TRAIN_CHECKPOINT_H
#define CB_TRAIN_CHECKPOINT_H

#include <jansson.h>
#include <stdint.h>
#include "core/error.h"
#include "model/model.h"
#include "train/optimizer.h"
#include "train/schedule.h"

/* Where a run stands after `step` optimizer steps. */
typedef struct cb_train_state {
    long step;              /* optimizer steps done */
    uint64_t data_position; /* training batches drawn (cb_batcher.position) */
    uint64_t rng[4];        /* the trainer's generator (dropout seeds), cb_rng state */
    uint64_t tokens;        /* training tokens consumed */
    uint64_t seed;          /* the run's seed */
    cb_schedule schedule;   /* the learning-rate schedule; its position is `step` */
    char run[256], group[256];
} cb_train_state;

/* "step-%08ld" under run_dir into out. */
void cb_checkpoint_dir(char *out, size_t n, const char *run_dir, long step);

/* Write run_dir/step-NNNNNNNN/ for st->step: plan.json, model.safetensors,
 * optimizer.safetensors and state.json {cb_version, kind "checkpoint", step,
 * data_position, tokens, rng_state, schedule, optimizer, plan_sha256, run, group, seed,
 * files: {name: {bytes, crc32c}}} plus the members of extra (may be NULL). Then keep
 * only the newest keep_last checkpoints of run_dir (0: all) and drop the temporary
 * directories that killed saves (of checkpoints and of final/) left there. A failure (full disk) is CB_E_IO and leaves
 * every earlier checkpoint as it was. The directory written goes into out. */
int cb_checkpoint_save(const char *run_dir, const cb_model *m, const cb_optimizer *o, const cb_train_state *st,
                       const json_t *extra, long keep_last, char *out, size_t out_n, cb_error *e);

/* The checkpoint directory dir names: dir itself when it holds state.json, else the
 * newest complete step-NNNNNNNN/ inside it (a run directory). None: CB_E_IO. */
int cb_checkpoint_resolve(const char *dir, char *out, size_t n, cb_error *e);

/* Read a checkpoint into m (initialised from the run's plan) and o (initialised for the
 * run's optimizer): state.json must be a checkpoint of the same plan (plan_sha256) and,
 * when group and run are not NULL, of that run; every file must have the size and
 * CRC-32C that state.json records, every tensor the plan's shape. A missing state.json is
 * CB_E_IO; any other defect is CB_E_INVALID naming the file. *extra (may be NULL)
 * receives state.json itself (caller decrefs). */
int cb_checkpoint_load(const char *dir, const char *group, const char *run, cb_model *m, cb_optimizer *o,
                       cb_train_state *st, json_t **extra, cb_error *e);

#endif
