/* walk.h: what the plan builder's files share while walking a model: the error list,
 * the init settings, totals, and field readers that record an error for a bad value. */
#ifndef CB_PLAN_WALK_H
#define CB_PLAN_WALK_H

#include <stdint.h>
#include <jansson.h>
#include "core/diag.h"

#define CB_PLAN_UNKNOWN (-1)   /* a width or count that an earlier error left unknown */
#define CB_PLAN_MAX_DEPTH 64   /* topology nesting beyond this is refused, not recursed */

typedef struct cb_plan_walk {
    cb_diags *d;
    double init_std;             /* std of normally initialised weights */
    double residual_std;         /* std of attn o / mlp down / mlp proj (scaled residual init) */
    int64_t attention_layers;    /* attention applications per forward pass */
    int64_t applications;        /* how often the node being described runs per forward pass
                                    (enclosing repeats, cycles and steps multiplied) */
    int64_t kv_elems_per_token;  /* summed over those applications */
} cb_plan_walk;

/* Record "PATH.key: message" (or "PATH: message" when key is NULL) at the location
 * of obj's key (or of obj itself). */
void cb_plan_errf(cb_plan_walk *w, const json_t *obj, const char *key, const char *path,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* A positive integer member. Absent: def when def > 0, else an error ("missing").
 * Returns CB_PLAN_UNKNOWN after recording an error. */
int64_t cb_plan_int(cb_plan_walk *w, const json_t *obj, const char *key, int64_t def,
                    const char *path);
/* A boolean member, def when absent or (after an error) not a boolean. */
int cb_plan_bool(cb_plan_walk *w, const json_t *obj, const char *key, int def, const char *path);
/* A number in [lo, hi], def when absent or (after an error) out of range. */
double cb_plan_num(cb_plan_walk *w, const json_t *obj, const char *key, double def, double lo,
                   double hi, const char *path);
/* A string among choices (NULL-terminated). def when absent; NULL after an error. */
const char *cb_plan_str(cb_plan_walk *w, const json_t *obj, const char *key, const char *def,
                        const char *const *choices, const char *path);

/* The declared input width `key` of a layer (required), checked against the width
 * d_in flowing in. Returns the declared width (what flows on), or d_in when the
 * declaration is unusable. */
int64_t cb_plan_width_in(cb_plan_walk *w, const json_t *obj, const char *key, int64_t d_in,
                         const char *path);

/* Append {"name", "shape": [rows(, cols)], "init", "std" (normal only)} to tensors and
 * add rows*cols to *params. cols 0 means a 1-D tensor [rows]. */
void cb_plan_tensor(json_t *tensors, const char *name, int64_t rows, int64_t cols,
                    const char *init, double std, int64_t *params, int *overflow);

/* A copy of v without its "@..." annotation members (config values are data only). */
json_t *cb_plan_copy_data(const json_t *v);

/* Describe one layer node src (type given) that receives width d_in (CB_PLAN_UNKNOWN
 * when an earlier error left it unknown): add "config", "tensors" and, for attention,
 * "kv_cache_elems_per_token" to node; set *params (CB_PLAN_UNKNOWN after an overflow).
 * Returns the output width. layer.c dispatches; attention.c does AttentionLayer. */
int64_t cb_plan_layer(cb_plan_walk *w, const json_t *src, const char *type, const char *path,
                      int64_t d_in, json_t *node, int64_t *params);
int64_t cb_plan_attention(cb_plan_walk *w, const json_t *src, const char *path, int64_t d_in,
                          json_t *node, int64_t *params);
/* The rope_scaling member of obj checked: null (or absent) or a llama3 mapping with
 * factor (8), low_freq_factor (1), high_freq_factor (4), original_max_position_embeddings
 * (8192), defaults filled.
 * Returns the config value to record (json null when absent). */
json_t *cb_plan_rope_scaling(cb_plan_walk *w, const json_t *obj, const char *path);
/* 1 when type names a layer that cb_plan_layer knows. */
int cb_plan_is_layer(const char *type);

/* Topology walk (topology.c). Attention applications per forward pass under src
 * (repeats, cycles and steps multiply; saturates instead of overflowing). */
int64_t cb_plan_count_attention(const json_t *src, int depth);
/* The width the first layer under src expects (CB_PLAN_UNKNOWN when none declares one). */
int64_t cb_plan_first_width(const json_t *src, int depth);
/* Describe node src (layer or topology) with id and the width d_in flowing in; *out is
 * the plan NODE; *params its parameter count. Returns its output width. */
int64_t cb_plan_node(cb_plan_walk *w, const json_t *src, const char *path, const char *id,
                     int64_t d_in, int depth, json_t **out, int64_t *params);

/* The plan of a lowered model mapping (plan.c): embedder, topology, head; *totals_out
 * its totals. Errors go to w->d. */
json_t *cb_plan_model(cb_plan_walk *w, const json_t *model, json_t **totals_out);

/* The students of the lowered manifest m's runs (student.c): for every run whose
 * train.student has overrides, {"group", "run", "overrides", "surgery", "model",
 * "totals"}: the teacher's model (m.model) with the overrides applied to every node of
 * each named type, planned like the teacher. A student that surgery must make (phase
 * upcycle or blockwise, no student weights given) is checked against teacher_plan (the
 * planned teacher model): an attention layer surgery cannot make, or any other tensor
 * that differs from the teacher's, is an error at the override's line. Returns an array
 * (maybe empty). */
json_t *cb_plan_students(const json_t *m, const json_t *teacher_plan, cb_diags *d);

#endif
