/* progress.h: what a training run shows while it runs: a progress bar redrawn in place
 * (step, loss, tokens/s, ETA) when the stream is a terminal, plain lines at logged steps
 * otherwise, nothing when quiet. */
#ifndef CB_TRAIN_PROGRESS_H
#define CB_TRAIN_PROGRESS_H

#include <stdio.h>

typedef struct cb_progress {
    FILE *out;
    int tty, quiet;
    long first, total;  /* steps: the run starts after `first` done and ends at `total` */
    double t0, last_draw; /* monotonic seconds */
    int bar_shown;      /* the current line holds a bar to erase before a note */
} cb_progress;

/* tty: -1 asks isatty(out); 0 or 1 forces the mode. */
void cb_progress_init(cb_progress *p, FILE *out, int quiet, int tty, long first, long total);
/* After each step; logged: the step is one of the logged ones (plain mode prints those). */
void cb_progress_step(cb_progress *p, long step, double loss, double tok_s, int logged);
/* A line of its own (evaluations, checkpoints), printed in both modes unless quiet. */
void cb_progress_note(cb_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* End the bar's line. */
void cb_progress_end(cb_progress *p);

/* "1h02m", "3m07s", "12s" into buf */
const char *cb_progress_duration(char *buf, size_t n, double seconds);

#endif
