/* test_prefetch.c: the loader thread hands out exactly the batches the batcher would, in
 * order, whatever its depth, and reports the position a checkpoint must save. */
#include <stdlib.h>
#include "data/dataset.h"
#include "test.h"
#include "train/prefetch.h"

TEST(same_batches_any_depth) {
    enum { N = 997, B = 3, T = 7, BATCHES = 40 };
    static int32_t tokens[N];
    for (int i = 0; i < N; i++) tokens[i] = (i * 31) % 101;
    cb_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.dtype = CB_DTYPE_I32;
    ds.tokens = tokens;
    ds.n_tokens = N;
    ds.max_token = 100;
    cb_error e;
    static int32_t want_x[BATCHES][B * T], want_y[BATCHES][B * T];
    cb_batcher direct;
    EXPECT_EQ_INT(CB_OK, cb_batcher_init(&direct, &ds, B, T, 1, 99, &e));
    direct.position = 5;
    for (int k = 0; k < BATCHES; k++) cb_batcher_next(&direct, want_x[k], want_y[k]);
    const int depths[] = {0, 1, 2, 5};
    for (size_t d = 0; d < sizeof depths / sizeof *depths; d++) {
        cb_batcher b;
        EXPECT_EQ_INT(CB_OK, cb_batcher_init(&b, &ds, B, T, 1, 99, &e));
        b.position = 5; /* as after a resume */
        cb_prefetch p;
        EXPECT_EQ_INT(CB_OK, cb_prefetch_init(&p, &b, depths[d], &e));
        EXPECT_EQ_INT(5, cb_prefetch_position(&p));
        int same = 1;
        for (int k = 0; k < BATCHES; k++) {
            const int32_t *x, *y;
            cb_prefetch_take(&p, &x, &y);
            same &= memcmp(x, want_x[k], sizeof want_x[k]) == 0 && memcmp(y, want_y[k], sizeof want_y[k]) == 0;
            if (k == 9) EXPECT_EQ_INT(15, cb_prefetch_position(&p)); /* the next batch to hand out */
        }
        if (!same) FAILF("depth %d: batches differ from the batcher's", depths[d]);
        EXPECT_EQ_INT(5 + BATCHES, cb_prefetch_position(&p));
        cb_prefetch_free(&p);
    }
}
