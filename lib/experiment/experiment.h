/* experiment.h: `cb run` (man/cb.1): a manifest's group compiled, its stages hashed and
 * written as EXP/Makefile, then make runs what changed. The folder EXP holds the exact
 * manifest, the lowered plan and the plan (with the command line's overrides), the
 * provenance, the Makefile, stamps/ and logs/, runs/RUN/ (one run folder each: a copy of
 * those files and the tool's outputs), bench/ and artifacts/. */
#ifndef CB_EXPERIMENT_EXPERIMENT_H
#define CB_EXPERIMENT_EXPERIMENT_H

#include <stdio.h>
#include "core/diag.h"
#include "core/error.h"

#define CB_RUN_MAX_VARS 32

typedef struct cb_run_request {
    const char *manifest;       /* YAML manifest */
    const char *group;          /* NULL: the only group */
    const char *exp_dir;        /* NULL: runs/NAME/GROUP */
    int jobs;                   /* make -j; 0: 1 */
    int dry_run, force, quiet;
    const char *vars[CB_RUN_MAX_VARS]; /* "NAME=VALUE": the manifest's vars, set before lowering */
    int n_vars;
    long steps, seed;           /* every training run's steps and every run's seed; -1: as the manifest says */
    const char *data;           /* every training run's train.data; NULL: as the manifest says */
    const char *resume;         /* the group's first training run continues this checkpoint */
    int runtime_plan;           /* cb-train --runtime-plan (lib/runtime) for every training run */
    int argc;                   /* the command line, kept in provenance.json */
    char *const *argv;
    const char *tools_dir;      /* NULL: the folder of this executable */
} cb_run_request;

typedef struct cb_run_result {
    char exp_dir[4096];
    int n_stages, n_todo;
    int failed_verdicts;        /* verify stages whose verdict was negative */
    char compile_stage[32];     /* when the manifest did not compile: the stage that said so */
} cb_run_result;

/* Run it. Status: 0 done; 1 a verification's verdict was negative (each named on
 * stderr); 2 usage or I/O (no such group, missing data or checkpoint, no GPU, a tool not
 * in this build); 3 the manifest is invalid (the errors in d, found by the stage named
 * in res->compile_stage); 4 a stage failed (stage.sh named it and its log on stderr).
 * Progress goes to `progress` (stderr) unless quiet. */
int cb_experiment_run(const cb_run_request *rq, cb_run_result *res, cb_diags *d, FILE *progress, cb_error *e);

#endif
