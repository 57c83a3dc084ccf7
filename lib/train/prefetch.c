/* prefetch.c: a single producer thread filling a ring of batch slots in order. */
#include "train/prefetch.h"

#include <stdlib.h>
#include <string.h>

static void *loader(void *arg) {
    cb_prefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        /* a slot is free when fewer than n_slots batches are produced and not released;
         * the batch the trainer holds (taken - 1) is released at its next take */
        while (!p->stop && p->produced - (p->taken ? p->taken - 1 : 0) >= (uint64_t)p->n_slots)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) break;
        size_t slot = (size_t)(p->produced % (uint64_t)p->n_slots);
        pthread_mutex_unlock(&p->mu);
        cb_batcher_next(p->batcher, p->x + slot * p->batch_elems, p->y + slot * p->batch_elems);
        pthread_mutex_lock(&p->mu);
        p->produced++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int cb_prefetch_init(cb_prefetch *p, cb_batcher *b, int depth, cb_error *e) {
    memset(p, 0, sizeof *p);
    p->batcher = b;
    p->depth = depth < 0 ? 0 : depth;
    p->n_slots = p->depth + 1;
    p->batch_elems = (size_t)b->B * (size_t)b->T;
    p->start = b->position;
    p->x = cb_malloc((size_t)p->n_slots * p->batch_elems, sizeof(int32_t), e);
    p->y = cb_malloc((size_t)p->n_slots * p->batch_elems, sizeof(int32_t), e);
    if (!p->x || !p->y) {
        free(p->x);
        free(p->y);
        return CB_E_RUNTIME;
    }
    if (p->depth == 0) return CB_OK;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->thread, NULL, loader, p) != 0) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p->x);
        free(p->y);
        return cb_fail(e, CB_E_RUNTIME, "", "cannot start the data loader thread");
    }
    p->running = 1;
    return CB_OK;
}

void cb_prefetch_take(cb_prefetch *p, const int32_t **x, const int32_t **y) {
    if (!p->running) {
        cb_batcher_next(p->batcher, p->x, p->y);
        p->taken++;
        *x = p->x;
        *y = p->y;
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->taken++; /* releases the slot of the previous batch */
    pthread_cond_broadcast(&p->cv);
    while (p->produced < p->taken) pthread_cond_wait(&p->cv, &p->mu);
    size_t slot = (size_t)((p->taken - 1) % (uint64_t)p->n_slots);
    pthread_mutex_unlock(&p->mu);
    *x = p->x + slot * p->batch_elems;
    *y = p->y + slot * p->batch_elems;
}

uint64_t cb_prefetch_position(const cb_prefetch *p) { return p->start + p->taken; }

void cb_prefetch_free(cb_prefetch *p) {
    if (p->running) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
    }
    free(p->x);
    free(p->y);
    memset(p, 0, sizeof *p);
}
