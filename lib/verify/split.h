/* split.h: the tokens a compare or fidelity check reads: the run's data split as cb-train
 * splits it (a val_split file, or the last val_frac of the data held out), and which part
 * split auto|train|val picks. */
#ifndef CB_VERIFY_SPLIT_H
#define CB_VERIFY_SPLIT_H

#include <stdint.h>
#include "core/error.h"
#include "data/dataset.h"
#include "train/trainer.h"

typedef struct cb_verify_data {
    cb_train_data parts;     /* the opened files and their train / val views */
    const cb_dataset *tokens; /* the part the check reads (a view into parts) */
    int split;               /* enum cb_verify_split: train or val, auto resolved */
} cb_verify_data;

/* Open data (and val_split, or hold out val_frac) for windows of block_size + 1 tokens,
 * every id below vocab_size, and pick the part: train, val, or auto (val when there is
 * one, else train). split val with nothing held out is CB_E_USAGE naming the data. */
int cb_verify_data_open(cb_verify_data *d, const char *data, const char *val_split, double val_frac, int block_size,
                        int64_t vocab_size, int split, cb_error *e);
void cb_verify_data_close(cb_verify_data *d);

#endif
