/* h5metrics.h: training metrics as an HDF5 file (train.instrument hdf5): one extendible
 * 1-D dataset per metric, one row per logged step, appendable across resumes. */
#ifndef CB_TRAIN_H5METRICS_H
#define CB_TRAIN_H5METRICS_H

#include <stdint.h>
#include "core/error.h"

/* the datasets, in row order; "step" is int64, the others double (NaN where absent) */
#define CB_H5_N_METRICS 8
extern const char *const cb_h5_metric_names[CB_H5_N_METRICS]; /* step loss lr tok_s grad_norm tokens val_loss val_ppl */

typedef struct cb_h5metrics {
    int64_t file;                    /* hid_t; -1 when closed */
    int64_t sets[CB_H5_N_METRICS];   /* hid_t of each dataset */
    uint64_t rows;
    char path[4096];
} cb_h5metrics;

/* Create path afresh (keep_step < 0), or open it and keep only the rows with
 * step <= keep_step (a resumed run continues the file). CB_E_USAGE when this build has
 * no HDF5. */
int cb_h5metrics_open(cb_h5metrics *h, const char *path, long keep_step, cb_error *e);
/* Append one row (values in cb_h5_metric_names order after step) and flush. */
int cb_h5metrics_append(cb_h5metrics *h, int64_t step, const double values[CB_H5_N_METRICS - 1], cb_error *e);
void cb_h5metrics_close(cb_h5metrics *h);

#endif
