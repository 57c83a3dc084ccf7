/* liveplot.c: the loss plot, drawn by running gnuplot on a script with inline data. */
#include "train/liveplot.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int on_path(const char *prog) {
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    char buf[4096];
    while (*path) {
        size_t len = strcspn(path, ":");
        snprintf(buf, sizeof buf, "%.*s/%s", (int)len, len ? path : ".", prog);
        if (access(buf, X_OK) == 0) return 1;
        path += len;
        if (*path == ':') path++;
    }
    return 0;
}

int cb_liveplot_init(cb_liveplot *p, const char *dir, const char *title, cb_error *e) {
    memset(p, 0, sizeof *p);
    if (!on_path("gnuplot"))
        return cb_fail(e, CB_E_USAGE, "", "train.instrument live: gnuplot is not installed (apt-get install gnuplot-nox)");
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    snprintf(p->title, sizeof p->title, "%s", title);
    return CB_OK;
}

void cb_liveplot_free(cb_liveplot *p) {
    free(p->train);
    free(p->val);
    memset(p, 0, sizeof *p);
}

static int push(double **a, size_t *n, size_t *cap, double x, double y, cb_error *e) {
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 256;
        double *na = realloc(*a, nc * 2 * sizeof *na);
        if (!na) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
        *a = na;
        *cap = nc;
    }
    (*a)[2 * *n] = x;
    (*a)[2 * *n + 1] = y;
    (*n)++;
    return CB_OK;
}

int cb_liveplot_add(cb_liveplot *p, long step, double loss, double val_loss, cb_error *e) {
    if (isfinite(loss)) CB_TRY(push(&p->train, &p->n_train, &p->cap_train, (double)step, loss, e));
    if (isfinite(val_loss)) CB_TRY(push(&p->val, &p->n_val, &p->cap_val, (double)step, val_loss, e));
    return CB_OK;
}

/* gnuplot strings in single quotes: a quote is doubled */
static void quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

static void datablock(FILE *f, const char *name, const double *a, size_t n) {
    fprintf(f, "$%s << EOD\n", name);
    for (size_t i = 0; i < n; i++) fprintf(f, "%.17g %.9g\n", a[2 * i], a[2 * i + 1]);
    if (n == 0) fprintf(f, "NaN NaN\n");
    fprintf(f, "EOD\n");
}

int cb_liveplot_draw(cb_liveplot *p) {
    char script[4200], tmp_png[4200], png[4200];
    snprintf(script, sizeof script, "%s/.loss.gp", p->dir);
    snprintf(tmp_png, sizeof tmp_png, "%s/.loss.png.tmp", p->dir);
    snprintf(png, sizeof png, "%s/loss.png", p->dir);
    FILE *f = fopen(script, "w");
    if (!f) return p->failures++, -1;
    fprintf(f, "set terminal pngcairo size 900,540 noenhanced\nset output ");
    quoted(f, tmp_png);
    fprintf(f, "\nset title ");
    quoted(f, p->title);
    fprintf(f, "\nset xlabel 'step'\nset ylabel 'loss'\nset grid\nset key top right\n");
    datablock(f, "train", p->train, p->n_train);
    datablock(f, "val", p->val, p->n_val);
    fprintf(f, "plot $train using 1:2 with lines lw 1.5 title 'train'");
    if (p->n_val) fprintf(f, ", $val using 1:2 with linespoints lw 2 pt 7 title 'validation'");
    fprintf(f, "\n");
    if (fclose(f) != 0) return p->failures++, -1;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    char *argv[] = {"gnuplot", script, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    int status = 0;
    if (rc == 0) {
        while (waitpid(pid, &status, 0) < 0)
            if (errno != EINTR) break;
    }
    unlink(script);
    if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || rename(tmp_png, png) != 0) {
        unlink(tmp_png);
        p->failures++;
        return -1;
    }
    return 0;
}
