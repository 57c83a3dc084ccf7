/* preflight.h: what a group needs that is not there, found before any stage starts, so
 * an experiment does not fail an hour in: a GPU (train.device: cuda) in a build or on a
 * machine without one, a teacher or other checkpoint that is not on disk, a dataset that
 * is missing, a tool whose capability is not in this build, a run the trainer of this
 * build cannot do. */
#ifndef CB_EXPERIMENT_PREFLIGHT_H
#define CB_EXPERIMENT_PREFLIGHT_H

#include "core/error.h"
#include "experiment/graph.h"
#include "experiment/tools.h"

/* The first problem, as one error naming the manifest line and field (CB_E_USAGE for what
 * is missing, the trainer's own code for a run it refuses); CB_OK when nothing is missing.
 * Relative paths are resolved from the current folder, as the tools will. */
int cb_preflight(const cb_graph *g, cb_tools *t, cb_error *e);

#endif
