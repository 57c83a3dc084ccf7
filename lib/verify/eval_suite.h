/* eval_suite.h: a list of behavioural cases (the eval verify block's `cases`, or a YAML
 * suite file) and its run on one model: what cb-verify's eval type and cb-bench's
 * accuracy benchmark both score.
 *
 * A suite file is one YAML (or JSON) mapping:
 *   suite: arithmetic          # optional name
 *   description: "..."         # optional
 *   cases:                     # required, non-empty: the cases of cb-manifest(5)
 *     - {id: add, prompt: "2 + 2 =", kind: int_greedy, answer: 4}
 *     - {id: capital, prompt: "The capital of France is", kind: choice_logprob,
 *        choices: [" Paris", " London"], answer: " Paris"}
 * Case ids are unique across everything one suite holds. */
#ifndef CB_VERIFY_EVAL_SUITE_H
#define CB_VERIFY_EVAL_SUITE_H

#include <jansson.h>
#include "core/error.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "verify/eval.h"

typedef struct cb_eval_suite {
    cb_eval_case *cases;
    int n, cap;
} cb_eval_suite;

void cb_eval_suite_init(cb_eval_suite *s);
void cb_eval_suite_free(cb_eval_suite *s);

/* Append the cases of a JSON list (checked against the case schema of cb-manifest(5);
 * path names the list in messages, "verify.cases", where its location). Any problem:
 * CB_E_INVALID at the case's location, nothing appended. */
int cb_eval_suite_add_json(cb_eval_suite *s, const json_t *cases, const char *path, const char *where, cb_error *e);
/* Append the cases of a suite file (above). An unreadable file is CB_E_IO; a bad one
 * CB_E_INVALID at file:line:col. */
int cb_eval_suite_load(cb_eval_suite *s, const char *file, cb_error *e);

/* What a suite run on one model gives. */
typedef struct cb_eval_report {
    cb_eval_outcome *outcomes; /* (n), in the suite's order */
    int n, correct;
    double accuracy;           /* correct / n */
    int context;               /* tokens the session held at most */
} cb_eval_report;

/* Score every case of s on m with tok: a decoding session of min(context_window, m's
 * max_seq_len) tokens. cb-bench's accuracy benchmark calls this too. */
int cb_eval_suite_run(cb_eval_report *r, const cb_model *m, cb_tokenizer *tok, const cb_eval_suite *s,
                      const cb_eval_config *cfg, int context_window, cb_error *e);
void cb_eval_report_free(cb_eval_report *r);

/* One case's outcome as verify.json writes it (cb-verify(1), OUTPUT: correct,
 * prompt_tokens, truncated, then output, new_tokens, integer or picked, logprobs,
 * choice_tokens). */
json_t *cb_eval_outcome_json(const cb_eval_case *c, const cb_eval_outcome *o);

#endif
