/* trace.h: one forward pass over a token sequence with every op's output kept, to look
 * at: the outputs of chosen ops written as safetensors (cb-build --forward --trace), and
 * the first op whose output is not finite (cb-generate, once its logits were not). Runs
 * through the public API of model/run.h. */
#ifndef CB_MODEL_TRACE_H
#define CB_MODEL_TRACE_H

#include <stdint.h>
#include "core/error.h"
#include "model/model.h"
#include "model/program.h"
#include "model/run.h"

typedef struct cb_trace {
    const cb_model *model;
    cb_program prog;
    cb_run run;
    int T;
} cb_trace;

/* The forward pass of m over tokens (1,T). A token past the vocabulary: CB_E_USAGE at
 * "where" (the option or file the tokens came from). */
int cb_trace_forward(cb_trace *t, const cb_model *m, const int32_t *tokens, int T, const char *where, cb_error *e);
void cb_trace_free(cb_trace *t);

/* 1 when op's id or type matches one of the comma-separated fnmatch patterns. */
int cb_trace_matches(const char *patterns, const cb_op *op);

/* Write the logits (as "logits") and the outputs of the ops patterns match (under their
 * ids), each (1,T,width) F32, to path ("-" or NULL: stdout), with the plan's sha256. */
int cb_trace_write(const cb_trace *t, const char *patterns, const char *path, cb_error *e);

/* The first op, in the order they run, whose output holds a NaN or an infinity: its index
 * (and in *position the first position where it does), or -1 when all are finite. */
int cb_trace_first_nonfinite(const cb_trace *t, int *position);

/* Why the logits of m over tokens (1,T) are not finite, as one phrase into msg: the first
 * weight tensor holding a non-finite value, and the first op whose output is not finite
 * (or that the pass over these tokens is finite throughout). */
void cb_trace_explain_nonfinite(const cb_model *m, const int32_t *tokens, int T, char *msg, size_t n);

#endif
