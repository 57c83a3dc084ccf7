/* progress.h: how far a verification has got, for the tool to show (the library never
 * prints): a callback after each batch or case. */
#ifndef CB_VERIFY_PROGRESS_H
#define CB_VERIFY_PROGRESS_H

typedef struct cb_verify_progress {
    void (*fn)(void *ctx, const char *what, int done, int total); /* NULL: nobody listens */
    void *ctx;
} cb_verify_progress;

/* Tell p (may be NULL) that `done` of `total` steps of `what` are done. */
static inline void cb_verify_progress_step(const cb_verify_progress *p, const char *what, int done, int total) {
    if (p && p->fn) p->fn(p->ctx, what, done, total);
}

#endif
