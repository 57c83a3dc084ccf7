/* graph.h: the stages of one group of a plan, in an order that runs each after what it
 * reads: per run build (the run folder: manifest, plan, provenance) -> train -> verify, or
 * sample/chat with cb-generate; runs that start from earlier runs after them; then the
 * benchmarks; then the artifacts. Each stage names the tool it runs and that tool's
 * arguments; makefile.h turns them into make rules. */
#ifndef CB_EXPERIMENT_GRAPH_H
#define CB_EXPERIMENT_GRAPH_H

#include <jansson.h>
#include "core/error.h"
#include "experiment/tools.h"

enum cb_stage_kind {
    CB_STAGE_BUILD,     /* the run folder: exact manifest, lowered plan, plan, provenance */
    CB_STAGE_TRAIN,     /* cb-train into the run folder (resumed from its last checkpoint) */
    CB_STAGE_VERIFY,    /* cb-verify of the run's final model against its teacher */
    CB_STAGE_SAMPLE,    /* cb-generate: mode sample, into the run folder's sample.txt */
    CB_STAGE_CHAT,      /* cb-generate --chat: mode chat, interactive, after the graph */
    CB_STAGE_BENCH,     /* cb-bench of one benchmark over its models */
    CB_STAGE_ARTIFACTS, /* cb-artifacts over every result of the group */
};

#define CB_STAGE_MAX_DEPS 64
#define CB_STAGE_MAX_ARGS 128
#define CB_STAGE_MAX_INPUTS 8

typedef struct cb_stage {
    int kind;                         /* enum cb_stage_kind */
    char id[192];                     /* "train-pretrain": make target, stamp and log name */
    char name[128];                   /* the run's or benchmark's id */
    const json_t *section;            /* the run or benchmark in the plan (borrowed) */
    int tool;                         /* enum cb_tool_id */
    char *args[CB_STAGE_MAX_ARGS];    /* the tool's arguments (owned) */
    int n_args;
    char dir[4400];                   /* the run folder (runs) or the results folder */
    char output[4600];                /* what it leaves behind; missing means redo */
    char *inputs[CB_STAGE_MAX_INPUTS]; /* files from outside the experiment it reads (owned) */
    int n_inputs;
    int deps[CB_STAGE_MAX_DEPS];      /* indices of earlier stages it reads from */
    int n_deps;
    int fail_fast;                    /* verify: a negative verdict stops the graph */
    int fixed_resume;                 /* train: resumes the checkpoint given on the command line */
    char hash[65];                    /* of its inputs (experiment.c, stamps.h) */
    int todo;                         /* to be run: outdated, or after a stage that is */
} cb_stage;

typedef struct cb_graph {
    cb_stage *stages;
    int n, cap;
    const json_t *plan, *group;       /* borrowed */
    char group_name[128];
    char exp_dir[4096];               /* absolute */
    char plan_path[4200];             /* EXP/plan.json */
    char teacher[4400], student[4400]; /* what a benchmark's "teacher" and "student" name, or "" */
} cb_graph;

/* Overrides from the command line that change arguments rather than the plan. */
typedef struct cb_graph_options {
    const char *resume;   /* a checkpoint the group's first training run continues from, or NULL */
    int runtime_plan;     /* cb-train --runtime-plan for every training run */
} cb_graph_options;

/* The group named `group` (NULL: the only one). A name the plan does not have is
 * CB_E_USAGE listing the groups it has. */
int cb_graph_find_group(const json_t *plan, const char *group, const json_t **out, cb_error *e);

/* Build the stages of the group. exp_dir must be absolute. A benchmark naming a model the
 * group does not make (teacher or student without a run that has them, a run that trains
 * nothing) is CB_E_INVALID at the manifest line of its models. */
int cb_graph_build(cb_graph *g, const json_t *plan, const json_t *group, const char *exp_dir,
                   const cb_graph_options *opt, cb_error *e);
void cb_graph_free(cb_graph *g);

/* Index of the stage with this id, or -1. */
int cb_graph_find(const cb_graph *g, const char *id);

#endif
