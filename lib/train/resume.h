/* resume.h: which edits of a plan a checkpoint survives. A resumed run follows the
 * trajectory of one that never stopped (docs/DESIGN.md section 3), so its model, its data
 * and every setting that steers its updates must be those the checkpoint was written
 * under. What may differ: where things stand in the manifest (the "@loc" positions, the
 * source path), the manifest's other groups and runs, its benchmarks, descriptions and
 * notes, and the run's settings that change neither a weight nor a batch: logging,
 * saving, prefetching, workers, instruments, the device (a run moves between devices, as
 * --device does), the ddp bucket size (each gradient element is summed once, over the same
 * ranks) and activation checkpointing (tests/unit/model/test_recompute.c: the same
 * gradients bit for bit). Everything else, steps and the schedule included, must be equal:
 * a longer run is a new run, whose first steps would have had another learning rate. */
#ifndef CB_TRAIN_RESUME_H
#define CB_TRAIN_RESUME_H

#include <jansson.h>
#include <stddef.h>

/* What of plan a checkpoint of run (in group) depends on: a new JSON value. Where the plan
 * has no such group and run (a plan of one model), the whole plan less positions. */
json_t *cb_resume_key(const json_t *plan, const char *group, const char *run);

/* 1 when the keys are equal; else 0 with the first difference in buf as
 * "train.steps: 20 at the checkpoint, 30 now" (paths from the run or the plan's top). */
int cb_resume_key_same(const json_t *was, const json_t *now, char *buf, size_t n);

#endif
