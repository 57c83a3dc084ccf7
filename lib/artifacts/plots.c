/* plots.c: the charts, drawn by gnuplot (pngcairo) from data files and scripts written
 * into dir/plots/, which stay there so a chart can be drawn again or restyled:
 *   summary.png             perplexity, decode throughput and KV cache per token, a bar
 *                           panel each (the comparison's rows)
 *   latency_vs_context.png  decode tokens/s (median) against prompt length, a line per
 *                           model and cache kind, at the longest generation length
 *   memory_scaling.png      KV cache size against sequence length, a line per model and
 *                           cache kind */
#include "artifacts/artifacts.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "core/atomic_file.h"

extern char **environ;

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* a gnuplot double-quoted string: quotes and backslashes escaped */
static void gp_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* the first comparison row whose metric starts with prefix */
static const json_t *row_of(const json_t *compare, const char *prefix) {
    size_t i;
    json_t *r;
    json_array_foreach(compare, i, r) {
        const char *m = str(r, "metric");
        if (m && strncmp(m, prefix, strlen(prefix)) == 0) return r;
    }
    return NULL;
}

/* a bar panel's data: one line "model" value per model that has one; returns how many */
static int bar_data(const char *path, const json_t *row, const json_t *models) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int n = 0;
    for (size_t k = 0; row && k < json_array_size(models); k++) {
        const char *m = json_string_value(json_array_get(models, k));
        const json_t *v = json_object_get(json_object_get(row, "values"), m);
        if (!json_is_number(v)) continue;
        gp_string(f, m);
        fprintf(f, " %.9g\n", json_number_value(v));
        n++;
    }
    return fclose(f) == 0 ? n : -1;
}

static void bar_panel(FILE *f, const char *data, int n, const char *title, const char *ylabel) {
    fputs("set title ", f);
    gp_string(f, title);
    fputs("\nset ylabel ", f);
    gp_string(f, ylabel);
    fputs("\n", f);
    if (n > 0) {
        fputs("set border 3\nset xtics nomirror scale 0\nset ytics nomirror\nset yrange [0:*]\nset style fill solid 0.7\n"
              "set boxwidth 0.6\nunset label\n",
              f);
        fprintf(f, "plot '%s' using 0:2:xtic(1) with boxes lc rgb '#3b6ea8' notitle, '' using 0:2:(sprintf(abs($2) >= 1000 ? '%%.0f' : '%%.4g', $2)) "
                   "with labels offset 0,0.7 notitle\n",
                data);
    } else {
        fputs("unset border\nunset tics\nset label 1 'no measurements' at graph 0.5,0.5 center\n"
              "plot [0:1][0:1] 2 notitle\nunset label 1\nset tics\n",
              f);
    }
}

/* series of (x, y) per model and cache kind from records of type: blocks separated by two
 * blank lines; titles (one per block) into titles. Returns the number of blocks. */
static int series_data(const char *path, const cb_artifacts_input *in, const char *type, const char *xkey,
                       const char *ykey, double yscale, const char *fix_key, json_t *titles) {
    /* the first benchmark id of the type, and the largest value of fix_key in it */
    const char *id = NULL;
    double fix = -1;
    size_t i;
    json_t *r;
    json_array_foreach(in->bench, i, r) {
        if (!str(r, "type") || strcmp(str(r, "type"), type) != 0 || json_object_get(r, "skipped")) continue;
        if (!id) id = str(r, "benchmark");
        if (fix_key && strcmp(str(r, "benchmark"), id) == 0) {
            double v = json_number_value(json_object_get(json_object_get(r, "params"), fix_key));
            if (v > fix) fix = v;
        }
    }
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int blocks = 0;
    json_t *seen = json_object();
    json_array_foreach(in->bench, i, r) {
        if (!id || !str(r, "type") || strcmp(str(r, "type"), type) != 0 || strcmp(str(r, "benchmark"), id) != 0 ||
            json_object_get(r, "skipped"))
            continue;
        char key[300];
        snprintf(key, sizeof key, "%s, %s", str(r, "model") ? str(r, "model") : "?",
                 str(json_object_get(r, "params"), "cache_kind") ? str(json_object_get(r, "params"), "cache_kind") : "?");
        if (json_object_get(seen, key)) continue;
        json_object_set_new(seen, key, json_true());
        int points = 0;
        size_t j;
        json_t *q;
        json_array_foreach(in->bench, j, q) { /* every point of this series, in record order */
            if (!str(q, "type") || strcmp(str(q, "type"), type) != 0 || strcmp(str(q, "benchmark"), id) != 0 ||
                json_object_get(q, "skipped"))
                continue;
            char k2[300];
            snprintf(k2, sizeof k2, "%s, %s", str(q, "model") ? str(q, "model") : "?",
                     str(json_object_get(q, "params"), "cache_kind") ? str(json_object_get(q, "params"), "cache_kind") : "?");
            if (strcmp(k2, key) != 0) continue;
            const json_t *p = json_object_get(q, "params"), *v = json_object_get(json_object_get(q, "values"), ykey);
            if (fix_key && json_number_value(json_object_get(p, fix_key)) != fix) continue;
            double y = json_is_number(v) ? json_number_value(v) : json_number_value(json_object_get(v, "p50"));
            if (!isfinite(y)) continue;
            fprintf(f, "%.9g %.9g\n", json_number_value(json_object_get(p, xkey)), y * yscale);
            points++;
        }
        if (points) {
            fputs("\n\n", f);
            json_array_append_new(titles, json_string(key));
            blocks++;
        }
    }
    json_decref(seen);
    return fclose(f) == 0 ? blocks : -1;
}

static void series_plot(FILE *f, const char *data, const json_t *titles) {
    fputs("plot ", f);
    for (size_t k = 0; k < json_array_size(titles); k++) {
        fprintf(f, "%s'%s' index %zu using 1:2 with linespoints lw 2 pt 7 title ", k ? ", " : "", data, k);
        gp_string(f, json_string_value(json_array_get(titles, k)));
    }
    fputs("\n", f);
}

/* Run gnuplot on script; CB_OK when it exited 0 and png exists. */
static int run_gnuplot(const char *gnuplot, const char *dir, const char *script_rel, const char *png,
                       const char *errlog, cb_error *e) {
    char cd[4400], script[4400];
    int at = snprintf(cd, sizeof cd, "cd '");
    for (const char *p = dir; *p && at < (int)sizeof cd - 4; p++) { /* '' is a quote inside '...' */
        if (*p == '\'') cd[at++] = '\'';
        cd[at++] = *p;
    }
    snprintf(cd + at, sizeof cd - (size_t)at, "'");
    snprintf(script, sizeof script, "%s/%s", dir, script_rel);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, errlog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char *argv[] = {(char *)gnuplot, "-e", cd, (char *)script_rel, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, gnuplot, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        if (rc == ENOENT)
            return cb_fail(e, CB_E_RUNTIME, "", "%s not found on PATH (install gnuplot-nox): no charts drawn", gnuplot);
        return cb_fail(e, CB_E_RUNTIME, "", "cannot run %s: %s", gnuplot, strerror(rc));
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return cb_fail(e, CB_E_RUNTIME, "", "waiting for %s: %s", gnuplot, strerror(errno));
    struct stat sb;
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && stat(png, &sb) == 0 && sb.st_size > 0;
    if (ok) return CB_OK;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        return cb_fail(e, CB_E_RUNTIME, "", "%s not found on PATH (install gnuplot-nox): no charts drawn", gnuplot);
    char line[400] = "";
    FILE *f = fopen(errlog, "r");
    if (f) { /* the first line that says something */
        while (fgets(line, sizeof line, f) && strspn(line, " \t\r\n^") == strlen(line)) line[0] = 0;
        fclose(f);
    }
    line[strcspn(line, "\r\n")] = 0;
    char how[48];
    if (WIFEXITED(st)) snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(st));
    else snprintf(how, sizeof how, "signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return cb_fail(e, CB_E_RUNTIME, "", "%s failed on %s (%s): %s", gnuplot, script_rel, how,
                   line[0] ? line : "no message");
}

/* path: the script; png: the chart's name (paths in scripts are relative to the artifact
 * directory, where gnuplot runs, so the directory can move) */
static FILE *script_open(const char *path, const char *png, int w, int h) {
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fprintf(f, "# drawn by cb-artifacts; to draw it again, in the artifact directory: gnuplot plots/%s\n",
            strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
    fprintf(f, "set terminal pngcairo size %d,%d noenhanced font 'sans,10'\nset output '%s'\n", w, h, png);
    fputs("set grid ytics lc rgb '#dddddd'\nset key top left\n", f);
    return f;
}

int cb_artifacts_plot(const cb_artifacts_input *in, const json_t *compare, const json_t *models, const char *dir,
                      const char *gnuplot, json_t *plots, cb_error *e) {
    if (!gnuplot) gnuplot = "gnuplot";
    char pdir[4200], data[4300], script[4300], png[4300], log[4300];
    snprintf(pdir, sizeof pdir, "%s/plots", dir);
    if (mkdir(pdir, 0755) != 0 && errno != EEXIST) return cb_fail(e, CB_E_IO, pdir, "cannot create: %s", strerror(errno));
    snprintf(log, sizeof log, "%s/gnuplot.log", pdir);

    /* summary.png */
    const json_t *ppl = row_of(compare, "Perplexity"), *tput = row_of(compare, "Decode throughput"),
                 *kv = row_of(compare, "KV cache");
    char d1[4300], d2[4300], d3[4300];
    snprintf(d1, sizeof d1, "%s/summary_perplexity.dat", pdir);
    snprintf(d2, sizeof d2, "%s/summary_throughput.dat", pdir);
    snprintf(d3, sizeof d3, "%s/summary_kv_cache.dat", pdir);
    int n1 = bar_data(d1, ppl, models), n2 = bar_data(d2, tput, models), n3 = bar_data(d3, kv, models);
    if (n1 < 0 || n2 < 0 || n3 < 0) return cb_fail(e, CB_E_IO, pdir, "cannot write the chart data");
    int rc = CB_OK;
    if (n1 + n2 + n3 == 0) {
        json_object_set_new(plots, "summary.png", json_string("not drawn: no perplexity, latency or memory measurements"));
    } else {
        snprintf(script, sizeof script, "%s/summary.gp", pdir);
        snprintf(png, sizeof png, "%s/summary.png", dir);
        FILE *f = script_open(script, "summary.png", CB_SUMMARY_PNG_W, CB_SUMMARY_PNG_H);
        if (!f) return cb_fail(e, CB_E_IO, script, "cannot write");
        fputs("set multiplot layout 1,3\n", f);
        char t[200];
        bar_panel(f, "plots/summary_perplexity.dat", n1, "Perplexity (lower is better)", "perplexity");
        snprintf(t, sizeof t, "%s (higher is better)", tput ? str(tput, "metric") : "Decode throughput");
        bar_panel(f, "plots/summary_throughput.dat", n2, t, "tokens/s");
        snprintf(t, sizeof t, "%s (lower is better)", kv ? str(kv, "metric") : "KV cache");
        bar_panel(f, "plots/summary_kv_cache.dat", n3, t, "bytes per token");
        fputs("unset multiplot\n", f);
        if (fclose(f) != 0) return cb_fail(e, CB_E_IO, script, "cannot write");
        rc = run_gnuplot(gnuplot, dir, "plots/summary.gp", png, log, e);
        if (rc != CB_OK) return rc;
        json_object_set_new(plots, "summary.png", json_string("drawn"));
    }

    /* latency_vs_context.png and memory_scaling.png */
    struct {
        const char *png, *type, *x, *y, *fix, *xlabel, *ylabel, *title, *none;
        double yscale;
    } charts[] = {
        {"latency_vs_context", "latency", "prompt_length", "decode_tokens_per_s", "generation_length",
         "prompt length (tokens)", "decode tokens/s (median)", "Decode throughput against context",
         "not drawn: no latency measurements", 1.0},
        {"memory_scaling", "memory", "sequence_length", "kv_bytes", NULL, "sequence length (tokens)", "KV cache (MiB)",
         "KV cache against sequence length", "not drawn: no memory measurements", 1.0 / 1048576.0},
    };
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s.png", charts[k].png);
        snprintf(data, sizeof data, "%s/%s.dat", pdir, charts[k].png);
        json_t *titles = json_array();
        int blocks = series_data(data, in, charts[k].type, charts[k].x, charts[k].y, charts[k].yscale, charts[k].fix, titles);
        if (blocks < 0) {
            json_decref(titles);
            return cb_fail(e, CB_E_IO, data, "cannot write");
        }
        if (blocks == 0) {
            json_object_set_new(plots, name, json_string(charts[k].none));
            json_decref(titles);
            continue;
        }
        snprintf(script, sizeof script, "%s/%s.gp", pdir, charts[k].png);
        snprintf(png, sizeof png, "%s/%s", dir, name);
        FILE *f = script_open(script, name, CB_CHART_PNG_W, CB_CHART_PNG_H);
        if (!f) {
            json_decref(titles);
            return cb_fail(e, CB_E_IO, script, "cannot write");
        }
        fputs("set title ", f);
        gp_string(f, charts[k].title);
        fputs("\nset xlabel ", f);
        gp_string(f, charts[k].xlabel);
        fputs("\nset ylabel ", f);
        gp_string(f, charts[k].ylabel);
        fputs("\nset logscale x 2\nset yrange [0:*]\n", f);
        char rel[128];
        snprintf(rel, sizeof rel, "plots/%s.dat", charts[k].png);
        series_plot(f, rel, titles);
        json_decref(titles);
        if (fclose(f) != 0) return cb_fail(e, CB_E_IO, script, "cannot write");
        snprintf(rel, sizeof rel, "plots/%s.gp", charts[k].png);
        rc = run_gnuplot(gnuplot, dir, rel, png, log, e);
        if (rc != CB_OK) return rc;
        json_object_set_new(plots, name, json_string("drawn"));
    }
    remove(log);
    return CB_OK;
}
