/* model.h: a model in memory (llama2.c's config + weights): its plan, the parameter
 * table laid out from it, and one float buffer of weights. A model directory holds
 * plan.json and model.safetensors (docs/DESIGN.md section 2). */
#ifndef CB_MODEL_MODEL_H
#define CB_MODEL_MODEL_H

#include <jansson.h>
#include <stdint.h>
#include "core/error.h"
#include "model/params.h"

typedef struct cb_model {
    json_t *plan;           /* owned reference */
    cb_param_table params;
    float *weights;         /* params.total_floats, 64-byte aligned, owned */
    char plan_sha256[65];   /* of the plan as written to plan.json */
} cb_model;

/* A model with fresh weights, initialised per the plan, deterministic for seed. */
int cb_model_init(cb_model *m, json_t *plan, uint64_t seed, cb_error *e);
/* A model with all weights zero (to be filled by a loader). */
int cb_model_init_empty(cb_model *m, json_t *plan, cb_error *e);
void cb_model_free(cb_model *m);

/* Write dir/plan.json and dir/model.safetensors. The directory appears whole or not at
 * all: it is written under a temporary name and renamed; an existing directory of the
 * same name (a model directory: it holds plan.json) is replaced only once the new one is
 * complete; anything else at that path is left alone and is an error. extra_meta may be NULL
 * (a JSON object of string values added to the safetensors metadata). */
int cb_model_save_dir(const cb_model *m, const char *dir, const json_t *extra_meta, cb_error *e);
/* Write only the weights file (used inside checkpoint directories). */
int cb_model_save_weights(const cb_model *m, const char *path, const json_t *extra_meta, cb_error *e);
/* Read a model directory: plan.json, then model.safetensors, every tensor of the plan
 * present with its exact shape and nothing else (F32, BF16 or F16 are converted). Weights
 * that carry the sha256 of the plan they were saved with (cb.plan_sha256) must carry
 * plan.json's: another plan of the same shapes in its place is CB_E_INVALID. */
int cb_model_load_dir(cb_model *m, const char *dir, cb_error *e);
/* Fill m's weights from a safetensors file matching m's plan. */
int cb_model_load_weights(cb_model *m, const char *path, cb_error *e);

/* The first parameter tensor (index into m->params) holding a NaN or an infinity, with the
 * element's index in *at; -1 when every weight is finite. */
int cb_model_first_nonfinite(const cb_model *m, size_t *at);

/* The JSON text of plan.json for this plan (what plan_sha256 hashes). Caller frees. */
char *cb_model_plan_text(const json_t *plan);

#endif
