/* blockwise.c: one layer's optimizer, the attention-output distance, the teacher cache
 * (blockwise.h). */
#include "train/blockwise.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/atomic_file.h"

int cb_layer_optimizer_init(cb_layer_optimizer *l, const cb_optimizer *full, const cb_op *op, size_t *lo, size_t *hi,
                            cb_error *e) {
    memset(l, 0, sizeof *l);
    const cb_param_table *t = full->params;
    l->table.items = calloc((size_t)CB_OP_MAX_PARAMS, sizeof *l->table.items);
    l->view.decay = calloc((size_t)CB_OP_MAX_PARAMS, 1);
    if (!l->table.items || !l->view.decay) {
        cb_layer_optimizer_free(l);
        return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    }
    *lo = SIZE_MAX;
    *hi = 0;
    for (int r = 0; r < CB_OP_MAX_PARAMS; r++) {
        if (op->p[r] == CB_NO_PARAM) continue;
        for (int i = 0; i < t->n; i++) {
            if (t->items[i].offset != op->p[r]) continue;
            l->view.decay[l->table.n] = full->decay[i];
            l->table.items[l->table.n++] = t->items[i];
            if (t->items[i].offset < *lo) *lo = t->items[i].offset;
            if (t->items[i].offset + t->items[i].numel > *hi) *hi = t->items[i].offset + t->items[i].numel;
        }
    }
    l->table.total_floats = t->total_floats;
    l->view.cfg = full->cfg;
    l->view.params = &l->table;
    l->view.m = full->m;
    l->view.v = full->v;
    l->view.t = 0;
    if (l->table.n == 0) *lo = *hi = 0;
    return CB_OK;
}

void cb_layer_optimizer_free(cb_layer_optimizer *l) {
    free(l->table.items);
    free(l->view.decay);
    memset(l, 0, sizeof *l);
}

double cb_blockwise_loss(float *ds, const float *s, const float *t, size_t n, int mse) {
    double sum = 0;
    const double inv = 1.0 / (double)n;
    for (size_t i = 0; i < n; i++) {
        double diff = (double)s[i] - (double)t[i];
        if (mse) {
            sum += diff * diff;
            ds[i] = (float)(2 * diff * inv);
        } else {
            sum += fabs(diff);
            ds[i] = (float)((diff > 0) - (diff < 0)) * (float)inv;
        }
    }
    return sum * inv;
}

typedef struct cache_header {
    char magic[8]; /* "cbtcache" */
    int32_t n_layers, B, T, d;
} cache_header;

static void cache_path(char *out, size_t n, const char *run_dir, uint64_t batch) {
    snprintf(out, n, "%s/teacher_cache/batch-%08llu.bin", run_dir, (unsigned long long)batch);
}

int cb_teacher_cache_read(const char *run_dir, uint64_t batch, float *buf, int n_layers, int B, int T, int d,
                          cb_error *e) {
    char path[4400];
    cache_path(path, sizeof path, run_dir, batch);
    FILE *f = fopen(path, "rb");
    if (!f) return cb_fail(e, CB_E_IO, path, "not cached");
    cache_header h;
    size_t n = (size_t)n_layers * 2 * B * T * d;
    int ok = fread(&h, sizeof h, 1, f) == 1 && memcmp(h.magic, "cbtcache", 8) == 0 && h.n_layers == n_layers &&
             h.B == B && h.T == T && h.d == d && fread(buf, sizeof(float), n, f) == n;
    fclose(f);
    return ok ? CB_OK : cb_fail(e, CB_E_IO, path, "not a cache of this shape");
}

int cb_teacher_cache_write(const char *run_dir, uint64_t batch, const float *buf, int n_layers, int B, int T, int d,
                           cb_error *e) {
    char path[4400];
    snprintf(path, sizeof path, "%s/teacher_cache", run_dir);
    if (mkdir(path, 0777) != 0 && errno != EEXIST) return cb_fail(e, CB_E_IO, path, "cannot create: %s", strerror(errno));
    cache_path(path, sizeof path, run_dir, batch);
    size_t n = (size_t)n_layers * 2 * B * T * d;
    char *blob = malloc(sizeof(cache_header) + n * sizeof(float));
    if (!blob) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    cache_header h = {.n_layers = n_layers, .B = B, .T = T, .d = d};
    memcpy(h.magic, "cbtcache", 8);
    memcpy(blob, &h, sizeof h);
    memcpy(blob + sizeof h, buf, n * sizeof(float));
    int rc = cb_atomic_write(path, blob, sizeof h + n * sizeof(float), e);
    free(blob);
    return rc;
}
