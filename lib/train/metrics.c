/* metrics.c: metrics.jsonl and the fan-out to HDF5, TensorBoard and the live plot. */
#include "train/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/atomic_file.h"
#include "train/config.h"

static int put_num(char *buf, size_t n, size_t *at, const char *key, double v, const char *fmt) {
    int k;
    if (!isfinite(v)) k = snprintf(buf + *at, n - *at, ",\"%s\":null", key);
    else {
        char num[64];
        snprintf(num, sizeof num, fmt, v);
        k = snprintf(buf + *at, n - *at, ",\"%s\":%s", key, num);
    }
    if (k < 0 || (size_t)k >= n - *at) return -1;
    *at += (size_t)k;
    return 0;
}

int cb_metrics_format(char *buf, size_t n, const cb_metric_row *row) {
    int k = snprintf(buf, n, "{\"step\":%ld", row->step);
    if (k < 0 || (size_t)k >= n) return -1;
    size_t at = (size_t)k;
    if (put_num(buf, n, &at, "loss", row->loss, "%.9g") || put_num(buf, n, &at, "lr", row->lr, "%.9g") ||
        put_num(buf, n, &at, "grad_norm", row->grad_norm, "%.9g") || put_num(buf, n, &at, "tok_s", row->tok_s, "%.1f"))
        return -1;
    k = snprintf(buf + at, n - at, ",\"tokens\":%" PRIu64, row->tokens);
    if (k < 0 || (size_t)k >= n - at) return -1;
    at += (size_t)k;
    if (row->phase) {
        k = snprintf(buf + at, n - at, ",\"phase\":\"%s\",\"block\":%d", row->phase, row->block);
        if (k < 0 || (size_t)k >= n - at) return -1;
        at += (size_t)k;
    }
    if (!isnan(row->val_loss) &&
        (put_num(buf, n, &at, "val_loss", row->val_loss, "%.9g") || put_num(buf, n, &at, "val_ppl", row->val_ppl, "%.9g")))
        return -1;
    if (at + 2 > n) return -1;
    buf[at++] = '}';
    buf[at] = 0;
    return 0;
}

static double field(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Keep the lines of path whose step is <= keep_step (rewritten atomically); feed them to
 * the live plot when there is one. A missing file is not an error (a new run dir). */
static int cut_jsonl(cb_metrics *m, const char *path, long keep_step, cb_error *e) {
    char *text;
    size_t len;
    FILE *probe = fopen(path, "r");
    if (!probe) return CB_OK;
    fclose(probe);
    CB_TRY(cb_read_file(path, 0, &text, &len, e));
    size_t kept = 0;
    for (char *line = text, *next; line < text + len; line = next) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        next = nl ? nl + 1 : text + len;
        if (!nl) break; /* a line cut short by a kill is dropped */
        json_t *o = json_loadb(line, (size_t)(nl - line), 0, NULL);
        const json_t *s = json_object_get(o, "step");
        int keep = json_is_integer(s) && json_integer_value(s) <= keep_step;
        if (keep && m->have_plot)
            cb_liveplot_add(&m->plot, (long)json_integer_value(s), field(o, "loss"), field(o, "val_loss"), e);
        json_decref(o);
        if (keep) {
            memmove(text + kept, line, (size_t)(next - line));
            kept += (size_t)(next - line);
        }
    }
    int rc = cb_atomic_write(path, text, kept, e);
    free(text);
    return rc;
}

int cb_metrics_open(cb_metrics *m, const char *run_dir, unsigned instruments, long resume_step, const char *title,
                    cb_error *e) {
    memset(m, 0, sizeof *m);
    m->instruments = instruments;
    char path[4200];
    int rc = CB_OK;
    if (instruments & CB_INSTR_LIVE) {
        rc = cb_liveplot_init(&m->plot, run_dir, title, e);
        m->have_plot = rc == CB_OK;
    }
    snprintf(m->jsonl_path, sizeof m->jsonl_path, "%s/metrics.jsonl", run_dir);
    if (rc == CB_OK && resume_step >= 0) rc = cut_jsonl(m, m->jsonl_path, resume_step, e);
    if (rc == CB_OK) {
        m->jsonl = fopen(m->jsonl_path, resume_step >= 0 ? "a" : "w");
        if (!m->jsonl) rc = cb_fail(e, CB_E_IO, m->jsonl_path, "cannot create: %s", strerror(errno));
    }
    if (rc == CB_OK && (instruments & CB_INSTR_HDF5)) {
        snprintf(path, sizeof path, "%s/metrics.h5", run_dir);
        rc = cb_h5metrics_open(&m->h5, path, resume_step, e);
        m->have_h5 = rc == CB_OK;
    }
    if (rc == CB_OK && (instruments & CB_INSTR_TENSORBOARD)) {
        snprintf(path, sizeof path, "%s/tb", run_dir);
        rc = cb_tfevents_open(&m->tb, path, resume_step >= 0 ? resume_step + 1 : -1, e);
        m->have_tb = rc == CB_OK;
    }
    if (rc != CB_OK) {
        cb_error ignored;
        cb_metrics_close(m, &ignored);
    }
    return rc;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cb_metrics_log(cb_metrics *m, const cb_metric_row *row, cb_error *e) {
    char line[1024];
    if (cb_metrics_format(line, sizeof line, row) != 0) return cb_fail(e, CB_E_RUNTIME, m->jsonl_path, "line too long");
    if (fprintf(m->jsonl, "%s\n", line) < 0 || fflush(m->jsonl) != 0)
        return cb_fail(e, CB_E_IO, m->jsonl_path, "write failed: %s", strerror(errno));
    int evaluated = !isnan(row->val_loss);
    if (m->have_h5) {
        double v[CB_H5_N_METRICS - 1] = {row->loss,  row->lr, row->tok_s, row->grad_norm, (double)row->tokens,
                                         row->val_loss, row->val_ppl};
        CB_TRY(cb_h5metrics_append(&m->h5, row->step, v, e));
    }
    if (m->have_tb) {
        double wall = wall_now();
        CB_TRY(cb_tfevents_scalar(&m->tb, row->step, "train/loss", (float)row->loss, wall, e));
        CB_TRY(cb_tfevents_scalar(&m->tb, row->step, "train/lr", (float)row->lr, wall, e));
        CB_TRY(cb_tfevents_scalar(&m->tb, row->step, "train/grad_norm", (float)row->grad_norm, wall, e));
        CB_TRY(cb_tfevents_scalar(&m->tb, row->step, "train/tok_s", (float)row->tok_s, wall, e));
        if (evaluated) {
            CB_TRY(cb_tfevents_scalar(&m->tb, row->step, "val/loss", (float)row->val_loss, wall, e));
            CB_TRY(cb_tfevents_scalar(&m->tb, row->step, "val/ppl", (float)row->val_ppl, wall, e));
        }
    }
    if (m->have_plot) {
        CB_TRY(cb_liveplot_add(&m->plot, row->step, row->loss, row->val_loss, e));
        if (evaluated) cb_liveplot_draw(&m->plot);
    }
    return CB_OK;
}

int cb_metrics_close(cb_metrics *m, cb_error *e) {
    int rc = CB_OK;
    if (m->jsonl && fclose(m->jsonl) != 0) rc = cb_fail(e, CB_E_IO, m->jsonl_path, "write failed: %s", strerror(errno));
    m->jsonl = NULL;
    if (m->have_h5) cb_h5metrics_close(&m->h5);
    if (m->have_tb && cb_tfevents_close(&m->tb, e) != CB_OK) rc = e->code;
    if (m->have_plot) cb_liveplot_free(&m->plot);
    m->have_h5 = m->have_tb = m->have_plot = 0;
    return rc;
}
