/* progress.c: the progress bar and periodic lines of a training run. */
#include "train/progress.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>
#include "core/clock.h"

#define BAR_WIDTH 24
#define REDRAW_SECONDS 0.1

void cb_progress_init(cb_progress *p, FILE *out, int quiet, int tty, long first, long total) {
    memset(p, 0, sizeof *p);
    p->out = out;
    p->quiet = quiet;
    p->tty = tty < 0 ? isatty(fileno(out)) : tty;
    p->first = first;
    p->total = total;
    p->t0 = cb_clock_s();
    p->last_draw = -1;
}

const char *cb_progress_duration(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%ldh%02ldm", (long)s / 3600, ((long)s % 3600) / 60);
    else if (s >= 60) snprintf(buf, n, "%ldm%02lds", (long)s / 60, (long)s % 60);
    else snprintf(buf, n, "%lds", (long)s);
    return buf;
}

static const char *rate(char *buf, size_t n, double tok_s) {
    if (tok_s >= 1e6) snprintf(buf, n, "%.2fM", tok_s / 1e6);
    else if (tok_s >= 1e3) snprintf(buf, n, "%.1fk", tok_s / 1e3);
    else snprintf(buf, n, "%.0f", tok_s);
    return buf;
}

void cb_progress_step(cb_progress *p, long step, double loss, double tok_s, int logged) {
    if (p->quiet) return;
    double now = cb_clock_s();
    long done = step - p->first, left = p->total - step;
    double eta = done > 0 ? (now - p->t0) / (double)done * (double)left : NAN;
    char eta_s[32], rate_s[32];
    cb_progress_duration(eta_s, sizeof eta_s, eta);
    rate(rate_s, sizeof rate_s, tok_s);
    if (p->tty) {
        if (step < p->total && now - p->last_draw < REDRAW_SECONDS) return;
        p->last_draw = now;
        int fill = p->total > 0 ? (int)((double)step / (double)p->total * BAR_WIDTH) : BAR_WIDTH;
        char bar[BAR_WIDTH + 1];
        for (int i = 0; i < BAR_WIDTH; i++) bar[i] = i < fill ? '#' : '.';
        bar[BAR_WIDTH] = 0;
        fprintf(p->out, "\r\033[K[%s] step %ld/%ld  loss %.4f  %s tok/s  ETA %s", bar, step, p->total, loss, rate_s,
                eta_s);
        p->bar_shown = 1;
    } else if (logged) {
        fprintf(p->out, "step %ld/%ld  loss %.4f  %s tok/s  ETA %s\n", step, p->total, loss, rate_s, eta_s);
    }
    fflush(p->out);
}

void cb_progress_note(cb_progress *p, const char *fmt, ...) {
    if (p->quiet) return;
    if (p->bar_shown) fprintf(p->out, "\r\033[K");
    p->bar_shown = 0;
    p->last_draw = -1; /* redraw the bar under the note at the next step */
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fputc('\n', p->out);
    fflush(p->out);
}

void cb_progress_end(cb_progress *p) {
    if (p->quiet) return;
    if (p->bar_shown) fputc('\n', p->out);
    p->bar_shown = 0;
    fflush(p->out);
}
