/* metrics.h: where a run's metrics go: run_dir/metrics.jsonl always (one JSON object per
 * logged step), and, as train.instrument asks, run_dir/metrics.h5, TensorBoard event
 * files under run_dir/tb/ and the live plot run_dir/loss.png. */
#ifndef CB_TRAIN_METRICS_H
#define CB_TRAIN_METRICS_H

#include <stdint.h>
#include <stdio.h>
#include "core/error.h"
#include "train/h5metrics.h"
#include "train/liveplot.h"
#include "train/tfevents.h"

typedef struct cb_metric_row {
    long step;          /* optimizer steps done */
    double loss;        /* mean training loss of this step's micro-batches */
    double lr;          /* the rate this step used */
    double tok_s;       /* training tokens per second over this step */
    double grad_norm;   /* global gradient norm before clipping */
    uint64_t tokens;    /* training tokens so far */
    double val_loss;    /* mean validation loss; NaN when the step did not evaluate */
    double val_ppl;     /* exp(val_loss); NaN likewise */
    const char *phase;  /* NULL, or "blockwise": loss is then the attention-output distance
                           of layer `block` (written as "phase" and "block") */
    int block;
} cb_metric_row;

typedef struct cb_metrics {
    FILE *jsonl;
    char jsonl_path[4096];
    unsigned instruments; /* CB_INSTR_* of train/config.h */
    cb_h5metrics h5;
    cb_tfevents tb;
    cb_liveplot plot;
    int have_h5, have_tb, have_plot;
} cb_metrics;

/* One JSON line for row into buf (no newline): step, loss, lr, grad_norm, tok_s, tokens,
 * and val_loss, val_ppl when evaluated; floats in the shortest form that reads back the
 * same float ("%.9g"), non-finite values as null. */
int cb_metrics_format(char *buf, size_t n, const cb_metric_row *row);

/* Open every sink. resume_step < 0 starts afresh (replacing what run_dir held); else
 * the files of the run are continued: lines and rows past resume_step (logged after the
 * checkpoint by the run that stopped) are dropped first. */
int cb_metrics_open(cb_metrics *m, const char *run_dir, unsigned instruments, long resume_step, const char *title,
                    cb_error *e);
/* Log a row everywhere; the live plot is redrawn when the row has a validation loss. */
int cb_metrics_log(cb_metrics *m, const cb_metric_row *row, cb_error *e);
int cb_metrics_close(cb_metrics *m, cb_error *e);

#endif
