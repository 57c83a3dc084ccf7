/* liveplot.h: the live loss plot of a run (train.instrument live): gnuplot redraws
 * DIR/loss.png (training and validation loss against step) at every evaluation. */
#ifndef CB_TRAIN_LIVEPLOT_H
#define CB_TRAIN_LIVEPLOT_H

#include <stddef.h>
#include "core/error.h"

typedef struct cb_liveplot {
    char dir[4096], title[256];
    double *train;   /* (n_train, 2): step, loss */
    double *val;     /* (n_val, 2): step, val_loss */
    size_t n_train, cap_train, n_val, cap_val;
    int failures;    /* draws gnuplot did not finish (the run goes on without them) */
} cb_liveplot;

/* CB_E_USAGE when gnuplot is not on PATH. */
int cb_liveplot_init(cb_liveplot *p, const char *dir, const char *title, cb_error *e);
void cb_liveplot_free(cb_liveplot *p);
/* Record a point; val_loss NaN when the step was not evaluated. */
int cb_liveplot_add(cb_liveplot *p, long step, double loss, double val_loss, cb_error *e);
/* Write DIR/loss.png (through a temporary file and a rename) and wait for gnuplot.
 * Returns 0, or -1 when gnuplot failed (counted in failures). */
int cb_liveplot_draw(cb_liveplot *p);

#endif
