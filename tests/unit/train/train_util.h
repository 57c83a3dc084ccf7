/* train_util.h: test helpers for lib/train: a hand-made parameter table, temporary
 * directories, and a tiny compiled model. Header-only, test-only. */
#ifndef CB_TEST_TRAIN_UTIL_H
#define CB_TEST_TRAIN_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/params.h"

/* A table of n tensors laid out back to back at offsets rounded up to 16 floats. */
static inline void tu_table(cb_param_table *t, cb_param *items, int n, const char *const *names, const int *ndims,
                            const int64_t (*shapes)[2]) {
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        memset(&items[i], 0, sizeof items[i]);
        snprintf(items[i].name, sizeof items[i].name, "%s", names[i]);
        items[i].ndim = ndims[i];
        items[i].numel = 1;
        for (int k = 0; k < ndims[i]; k++) {
            items[i].shape[k] = shapes[i][k];
            items[i].numel *= (size_t)shapes[i][k];
        }
        items[i].offset = off;
        off += (items[i].numel + 15) / 16 * 16;
    }
    t->items = items;
    t->n = n;
    t->total_floats = off;
}

/* A fresh directory under $TMPDIR; the caller removes it (cb_remove_tree). */
static inline void tu_tempdir(char *out, size_t n, const char *tag) {
    const char *base = getenv("TMPDIR");
    snprintf(out, n, "%s/cbtrain-%s.XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(out)) out[0] = 0;
}

#endif
