/* accuracy.h: the accuracy benchmark runs the eval suites of cb-verify (a benchmark config
 * of type accuracy has the shape of a verify block of type eval: tokenizer, cases of kind
 * int_greedy or choice_logprob, max_new_tokens, context_window). The suite is scored by
 * one function, cb_bench_accuracy, the seam between lib/bench and lib/verify. */
#ifndef CB_BENCH_ACCURACY_H
#define CB_BENCH_ACCURACY_H

#include <jansson.h>
#include "core/error.h"
#include "model/model.h"

typedef struct cb_accuracy_result {
    int cases;       /* cases scored */
    int correct;     /* of them answered correctly */
    double accuracy; /* correct / cases */
    json_t *per_case;/* optional: an array of {"id", "correct", "output"}; NULL or owned */
} cb_accuracy_result;

/* Score the eval suite (the accuracy config, defaults filled) on model, loaded from
 * model_dir (its tokenizer files), through lib/verify's eval runner: the same outcomes
 * cb-verify's eval gives the model. A bad case or tokenizer is CB_E_INVALID naming it. */
int cb_bench_accuracy(const char *model_dir, const cb_model *model, const json_t *suite, cb_accuracy_result *r,
                      cb_error *e);

#endif
