/* split.c: the part of the run's data a check reads; the split itself is cb-train's
 * (train/trainer.h cb_train_data_open), so verify reads what training held out. */
#include "verify/split.h"

#include <string.h>
#include "verify/spec.h"

int cb_verify_data_open(cb_verify_data *d, const char *data, const char *val_split, double val_frac, int block_size,
                        int64_t vocab_size, int split, cb_error *e) {
    memset(d, 0, sizeof *d);
    CB_TRY(cb_train_data_open(&d->parts, data, val_split, val_frac, block_size, vocab_size, e));
    if (split == CB_SPLIT_VAL && !d->parts.have_val) {
        cb_train_data_close(&d->parts);
        return cb_fail(e, CB_E_USAGE, data,
                       "split val: the run holds out no validation data (val_frac 0 and no val_split)");
    }
    int use_val = split == CB_SPLIT_VAL || (split == CB_SPLIT_AUTO && d->parts.have_val);
    d->tokens = use_val ? &d->parts.val : &d->parts.train;
    d->split = use_val ? CB_SPLIT_VAL : CB_SPLIT_TRAIN;
    return CB_OK;
}

void cb_verify_data_close(cb_verify_data *d) {
    cb_train_data_close(&d->parts);
    memset(d, 0, sizeof *d);
}
