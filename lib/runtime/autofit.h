/* autofit.h: the seed's ModelConfig.optimize(): from a parameter budget, the width, depth,
 * heads, KV heads and MLP width of a manifest's model. The manifest must be written with
 * vars for them (d_model and n_layers; n_heads, n_kv_heads and d_ff when it has them, as
 * the presets are): each candidate is compiled (the plan's own count, so whatever the
 * model holds, learned positions of block_size rows included, is counted exactly), and
 * the fitted manifest is the original text with those vars' values replaced.
 *   heads: 64-wide (32-wide below d_model 256); KV heads: the manifest's ratio of query to
 *   KV heads; d_ff: the manifest's ratio to d_model (an expression of d_model follows by
 *   itself); depth: among the fits within 2% of the target, the one whose d_model/n_layers
 *   is nearest 100 (between GPT-2's 64 and Llama's 128), else the closest count. */
#ifndef CB_RUNTIME_AUTOFIT_H
#define CB_RUNTIME_AUTOFIT_H

#include "core/error.h"

typedef struct cb_fit_result {
    long long target, params;   /* asked for, and counted by the fitted manifest's plan */
    double error;               /* (params - target) / target */
    int d_model, n_layers, n_heads, n_kv_heads, d_ff; /* 0: not a var the fit set */
    int candidates;             /* widths compiled */
} cb_fit_result;

/* Fit the manifest at path to `target` parameters (all of them: embedding, blocks, head).
 * *out_text (malloc'd) is the fitted manifest. A fit further than 5% from the target, or a
 * manifest without the vars, is CB_E_INVALID naming why. */
int cb_autofit(const char *path, long long target, char **out_text, cb_fit_result *res, cb_error *e);

/* "124M", "1.2B", "350000": a parameter count; -1 when it does not read as one. */
long long cb_autofit_parse_count(const char *s);

#endif
