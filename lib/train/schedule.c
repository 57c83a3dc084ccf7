/* schedule.c: learning-rate schedules (see schedule.h for the formulas). */
#include "train/schedule.h"

#include <math.h>
#include <string.h>

static const char *const names[] = {"cosine", "linear", "constant", "none"};

const char *cb_schedule_name(int kind) {
    return kind >= 0 && kind < (int)(sizeof names / sizeof *names) ? names[kind] : NULL;
}

int cb_schedule_kind(const char *name) {
    for (int i = 0; i < (int)(sizeof names / sizeof *names); i++)
        if (name && strcmp(name, names[i]) == 0) return i;
    return -1;
}

double cb_schedule_lr(const cb_schedule *s, long step) {
    if (s->kind == CB_SCHED_NONE) return s->lr;
    if (step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
    if (s->kind == CB_SCHED_CONSTANT) return s->lr;
    long span = s->total - s->warmup;
    double p = span > 0 ? (double)(step - s->warmup) / (double)span : 1.0;
    if (p > 1.0) p = 1.0;
    if (s->kind == CB_SCHED_LINEAR) return s->lr + (s->min_lr - s->lr) * p;
    return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * p));
}
