/* prefetch.h: the training data loader in its own thread, preparing the next batches
 * while the model computes. Batches come out in the batcher's order, so which batches
 * a run sees does not depend on the prefetch depth or on timing. */
#ifndef CB_TRAIN_PREFETCH_H
#define CB_TRAIN_PREFETCH_H

#include <pthread.h>
#include <stdint.h>
#include "core/error.h"
#include "data/dataset.h"

typedef struct cb_prefetch {
    cb_batcher *batcher;  /* borrowed; only the loader thread touches it while it runs */
    int depth;            /* batches prepared ahead; 0: drawn on demand, no thread */
    int n_slots;          /* depth + 1: the one the trainer holds and the ones ahead */
    size_t batch_elems;   /* B*T */
    int32_t *x, *y;       /* (n_slots, B, T) each */
    uint64_t start;       /* batcher position when the loader started */
    uint64_t produced;    /* batches written into slots */
    uint64_t taken;       /* batches handed to the trainer */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running, stop;
} cb_prefetch;

int cb_prefetch_init(cb_prefetch *p, cb_batcher *b, int depth, cb_error *e);
/* The next batch: x, y (B,T) each, valid until the next call. */
void cb_prefetch_take(cb_prefetch *p, const int32_t **x, const int32_t **y);
/* The batcher position of the next batch take will return (what a checkpoint saves). */
uint64_t cb_prefetch_position(const cb_prefetch *p);
/* Stop the thread and free the slots. */
void cb_prefetch_free(cb_prefetch *p);

#endif
