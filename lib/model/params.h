/* params.h: the parameter table of a model: every tensor the plan names, expanded over
 * NestedTopology repeats, laid out back to back (64-byte aligned) in one float buffer. */
#ifndef CB_MODEL_PARAMS_H
#define CB_MODEL_PARAMS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "core/error.h"

#define CB_PARAM_NAME_MAX 192
#define CB_PARAM_MAX_DIM 4

enum cb_init { CB_INIT_NORMAL = 0, CB_INIT_ZEROS = 1, CB_INIT_ONES = 2 };

typedef struct cb_param {
    char name[CB_PARAM_NAME_MAX]; /* "blocks.3.res.attn.q.weight" */
    int ndim;
    int64_t shape[CB_PARAM_MAX_DIM]; /* PyTorch order: Linear weight is [out, in] */
    size_t numel;
    size_t offset; /* in floats, from the start of the buffer; a multiple of 16 */
    int init;      /* enum cb_init */
    float std;     /* CB_INIT_NORMAL only */
} cb_param;

typedef struct cb_param_table {
    cb_param *items;
    int n;
    size_t total_floats; /* buffer size in floats, padding included */
} cb_param_table;

/* Build the table from a plan document (kind "plan"). */
int cb_params_from_plan(cb_param_table *t, const json_t *plan, cb_error *e);
void cb_params_free(cb_param_table *t);
/* NULL when absent. */
const cb_param *cb_params_find(const cb_param_table *t, const char *name);
/* Fill weights (total_floats) per each tensor's init; deterministic for seed,
 * and each tensor's values depend only on (seed, its name). Padding is zeroed. */
void cb_params_init_values(const cb_param_table *t, float *weights, uint64_t seed);

#endif
