/* schedule.h: the learning rate at each optimizer step: linear warmup, then cosine or
 * linear decay to min_lr, or a constant rate; or the peak rate throughout ("none"). */
#ifndef CB_TRAIN_SCHEDULE_H
#define CB_TRAIN_SCHEDULE_H

/* enums only grow at the end: the names are written into checkpoints */
enum cb_schedule_kind { CB_SCHED_COSINE = 0, CB_SCHED_LINEAR = 1, CB_SCHED_CONSTANT = 2, CB_SCHED_NONE = 3 };

typedef struct cb_schedule {
    int kind;        /* enum cb_schedule_kind */
    double lr;       /* peak */
    double min_lr;   /* where cosine and linear end */
    long warmup;     /* steps of linear warmup (ignored by "none") */
    long total;      /* optimizer steps of the run */
} cb_schedule;

/* "cosine", "linear", "constant", "none"; the kind of a name, or -1. */
const char *cb_schedule_name(int kind);
int cb_schedule_kind(const char *name);

/* The rate of optimizer step s (0-based, s < total):
 *   s < warmup:  lr * (s + 1) / warmup
 *   after:       p = (s - warmup) / (total - warmup), in [0, 1)
 *     cosine     min_lr + (lr - min_lr) * (1 + cos(pi p)) / 2
 *     linear     lr + (min_lr - lr) * p
 *     constant   lr
 *   none:        lr at every step.
 * The rate reaches min_lr at the end of the last step (p = 1), as Hugging Face's
 * schedules do; steps past total keep min_lr (constant: lr). */
double cb_schedule_lr(const cb_schedule *s, long step);

#endif
