/* compare.h: teacher and student on identical batches, layer by layer: the L1 distance
 * between their attention outputs (B,T,d_model) at each attention layer, paired in the
 * order they run, and between their logits (B,T,V). Per level, mean_l1 is the mean of
 * |teacher - student| over every element of every batch, and max_l1 its largest element. */
#ifndef CB_VERIFY_COMPARE_H
#define CB_VERIFY_COMPARE_H

#include <stddef.h>
#include "core/error.h"
#include "data/dataset.h"
#include "model/model.h"
#include "model/program.h"
#include "verify/progress.h"

typedef struct cb_l1_stat {
    double sum;  /* of |t - s| */
    double max;  /* largest |t - s| */
    size_t n;    /* elements */
} cb_l1_stat;

double cb_l1_mean(const cb_l1_stat *s);
/* Add |a[i] - b[i]| for i < n. */
void cb_l1_add(cb_l1_stat *s, const float *a, const float *b, size_t n);

typedef struct cb_compare_layer {
    char teacher_op[CB_PARAM_NAME_MAX], student_op[CB_PARAM_NAME_MAX]; /* op ids */
    cb_l1_stat l1;
} cb_compare_layer;

typedef struct cb_compare_result {
    int n_layers;
    cb_compare_layer *layers; /* (n_layers) */
    cb_l1_stat logits;
    int batches, B, T;
    int nonfinite;            /* an output held a NaN or an infinity (the L1 is then NaN) */
} cb_compare_result;

/* Run both models over `batches` batches of (B,T) tokens of ds, taken in order from its
 * start (sequential windows, as cb-train evaluates). Models with other vocabularies, or
 * other counts or widths of attention layers, are CB_E_INVALID. */
int cb_compare_run(cb_compare_result *r, const cb_model *teacher, const cb_model *student, const cb_dataset *ds,
                   int B, int T, int batches, const cb_verify_progress *progress, cb_error *e);
void cb_compare_result_free(cb_compare_result *r);

#endif
