/* bench.h: a group's benchmarks (cb-manifest(5), "benchmarks:") run against model
 * directories: perplexity, latency, memory, accuracy, generation and custom suites. Each
 * measurement becomes one JSON line (kind "bench", results_json.h) handed to a sink, so
 * the caller decides where lines go (cb-bench: stdout or an atomic file). */
#ifndef CB_BENCH_BENCH_H
#define CB_BENCH_BENCH_H

#include <jansson.h>
#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"

#define CB_BENCH_NAME_MAX 128
#define CB_BENCH_PATH_MAX 4096

/* A model the benchmarks may name: NAME=DIR of the command line, opened on first use. */
typedef struct cb_bench_model {
    char name[CB_BENCH_NAME_MAX]; /* how a benchmark's models: names it (run id, teacher, student) */
    char dir[CB_BENCH_PATH_MAX];  /* a caramba model directory or a Hugging Face Llama directory */
    cb_model model;
    int loaded;
} cb_bench_model;

/* Where measurements go: emit takes one record (it does not steal the reference). */
typedef struct cb_bench_sink {
    int (*emit)(void *ctx, const json_t *record, cb_error *e);
    void *ctx;
} cb_bench_sink;

typedef struct cb_bench_ctx {
    const json_t *plan;        /* the plan document (borrowed) */
    char plan_sha256[65];      /* of the plan's text as plan.json holds it (model/model.h) */
    const json_t *group;       /* the plan's group whose benchmarks run (borrowed) */
    cb_bench_model *models;    /* (n_models) borrowed */
    int n_models;
    const char *data;          /* --data: token ids that override perplexity's dataset and give
                                  latency and memory their prompts; NULL: the config's dataset,
                                  and seeded random prompt ids */
    cb_backend *be;            /* the device; NULL: the CPU */
    json_t *machine;           /* machine.h (owned by the caller) */
    cb_bench_sink sink;
    void (*progress)(void *ctx, const char *line); /* NULL: silent */
    void *progress_ctx;
} cb_bench_ctx;

/* Prompt ids where no --data is given: uniform over the vocabulary from this seed. */
#define CB_BENCH_PROMPT_SEED 1337

/* The group named name (NULL: the plan's only group). A missing group: CB_E_USAGE listing
 * the groups there are. */
int cb_bench_find_group(const json_t *plan, const char *name, const json_t **group, cb_error *e);

/* The benchmarks to run: all of the group's, or the one with id (NULL: all). An unknown id:
 * CB_E_USAGE listing the ids there are; a group without benchmarks: CB_E_USAGE. *list is a
 * new array of borrowed benchmark objects (caller decrefs). */
int cb_bench_select(const json_t *group, const char *id, json_t **list, cb_error *e);

/* Check one benchmark before anything runs, so bad input fails with nothing written: every
 * model it names was given, its dataset (or --data) opens, its settings are ones this
 * build measures. Errors name the manifest line of the field. */
int cb_bench_check(cb_bench_ctx *c, const json_t *bench, cb_error *e);

/* Open the models a benchmark names (they stay open), so a bad model directory fails
 * before any output; call after every benchmark passed cb_bench_check. */
int cb_bench_open_models(cb_bench_ctx *c, const json_t *bench, cb_error *e);

/* Run one benchmark for each of its models, emitting records as they are measured. */
int cb_bench_run(cb_bench_ctx *c, const json_t *bench, cb_error *e);

/* The model named name, opened on first use; CB_E_USAGE when it was not given. where: the
 * manifest location to name. */
int cb_bench_model_get(cb_bench_ctx *c, const char *name, const char *where, cb_bench_model **out, cb_error *e);

/* The model's vocabulary size (its plan's model.vocab_size). */
int cb_bench_vocab(const cb_model *m);

/* Release every opened model. */
void cb_bench_models_free(cb_bench_model *models, int n);

/* One progress line (when a progress callback is set). */
void cb_bench_progress(cb_bench_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The benchmark types, each in its own file; cfg: the benchmark's config with its defaults
 * filled; m: one of its models. */
int cb_bench_perplexity(cb_bench_ctx *c, const json_t *bench, const json_t *cfg, cb_bench_model *m, cb_error *e);
int cb_bench_latency(cb_bench_ctx *c, const json_t *bench, const json_t *cfg, cb_bench_model *m, cb_error *e);
int cb_bench_memory(cb_bench_ctx *c, const json_t *bench, const json_t *cfg, cb_bench_model *m, cb_error *e);
int cb_bench_generation(cb_bench_ctx *c, const json_t *bench, const json_t *cfg, cb_bench_model *m, cb_error *e);
int cb_bench_accuracy_run(cb_bench_ctx *c, const json_t *bench, const json_t *cfg, cb_bench_model *m, cb_error *e);

#endif
