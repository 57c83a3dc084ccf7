/* eval.h: one behavioural case scored on one model through the tokenizer. int_greedy
 * generates greedily from the prompt and takes the first integer of the output (an
 * optional '-' right before a run of digits); choice_logprob scores each choice by the
 * summed log-probability of its tokens after the prompt's (prompt and choice tokenized
 * apart, so every choice follows the same prompt tokens) and picks the highest, the first
 * on a tie. */
#ifndef CB_VERIFY_EVAL_H
#define CB_VERIFY_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "infer/sample.h"
#include "infer/session.h"
#include "tokenizer/tokenizer.h"
#include "verify/progress.h"

enum cb_eval_kind { CB_EVAL_INT_GREEDY = 0, CB_EVAL_CHOICE_LOGPROB };

typedef struct cb_eval_case {
    char id[256];
    char where[512];    /* "file:line:col" of the case, for messages */
    char path[256];     /* "verify.cases[2]", "suite.yml: cases[0]" */
    int kind;           /* enum cb_eval_kind */
    char *prompt;       /* owned */
    long long answer;   /* int_greedy */
    char **choices;     /* choice_logprob: (n_choices) owned strings */
    int n_choices;
    int answer_choice;  /* the index of the answer among the choices */
} cb_eval_case;

typedef struct cb_eval_config {
    int max_new_tokens;             /* int_greedy's budget */
    int32_t eos[CB_STOP_MAX_EOS];   /* end-of-text ids that stop a generation */
    int n_eos;
    const char *who;                /* "teacher", "student": names the model to progress */
    const cb_verify_progress *progress; /* after each case; may be NULL */
} cb_eval_config;

typedef struct cb_eval_outcome {
    int correct;
    int prompt_tokens;   /* prompt tokens run */
    int truncated;       /* prompt tokens dropped from the front to fit the context */
    /* int_greedy */
    char *output;        /* the generated text (NUL-terminated, owned) */
    size_t output_len;
    int has_int;         /* an integer was found in it */
    long long value;
    int new_tokens;
    /* choice_logprob */
    double *logprob;     /* (n_choices) */
    int *choice_tokens;  /* (n_choices) */
    int picked;          /* the choice with the highest log-probability */
} cb_eval_outcome;

/* Score case c on the session's model (the session is reset first; its max_seq_len is the
 * context). A prompt or choice that tokenizes to nothing, or a choice longer than the
 * context, is CB_E_INVALID naming the case; non-finite logits CB_E_RUNTIME. */
int cb_eval_case_run(cb_eval_outcome *o, cb_session *s, cb_tokenizer *tok, const cb_eval_case *c,
                     const cb_eval_config *cfg, cb_error *e);
void cb_eval_outcome_free(cb_eval_outcome *o);

/* The first integer in text[0..n): 1 and *v, or 0 when there is none (or it does not fit
 * in a long long). */
int cb_eval_first_int(const char *text, size_t n, long long *v);

/* log softmax(logits)[id] over V logits, in double. */
double cb_eval_logprob(const float *logits, int V, int32_t id);

#endif
