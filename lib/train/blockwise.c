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

int cb_teacher_cache_init(cb_teacher_cache *c, const char *run_dir, int n_layers, int B, int T, int d,
                          long max_batches, size_t mem_budget, cb_error *e) {
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s/teacher_cache", run_dir);
    c->n_layers = n_layers;
    c->B = B;
    c->T = T;
    c->d = d;
    c->batch_floats = (size_t)n_layers * 2 * B * T * d;
    if (max_batches > 0 && c->batch_floats * sizeof(float) * (size_t)max_batches <= mem_budget) {
        c->mem = calloc((size_t)max_batches, sizeof *c->mem);
        if (!c->mem) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
        c->n_mem = max_batches;
    }
    return CB_OK;
}

void cb_teacher_cache_free(cb_teacher_cache *c) {
    for (long i = 0; i < c->n_mem; i++) free(c->mem[i]);
    free(c->mem);
    memset(c, 0, sizeof *c);
}

static void cache_path(char *out, size_t n, const cb_teacher_cache *c, uint64_t batch) {
    snprintf(out, n, "%s/batch-%08llu.bin", c->dir, (unsigned long long)batch);
}

int cb_teacher_cache_get(cb_teacher_cache *c, uint64_t batch, float *buf, const float **out, cb_error *e) {
    if (c->mem) {
        if (batch >= (uint64_t)c->n_mem || !c->mem[batch]) return cb_fail(e, CB_E_IO, "", "not cached");
        *out = c->mem[batch];
        return CB_OK;
    }
    char path[4400];
    cache_path(path, sizeof path, c, batch);
    FILE *f = fopen(path, "rb");
    if (!f) return cb_fail(e, CB_E_IO, path, "not cached");
    cache_header h;
    int ok = fread(&h, sizeof h, 1, f) == 1 && memcmp(h.magic, "cbtcache", 8) == 0 && h.n_layers == c->n_layers &&
             h.B == c->B && h.T == c->T && h.d == c->d && fread(buf, sizeof(float), c->batch_floats, f) == c->batch_floats;
    fclose(f);
    if (!ok) return cb_fail(e, CB_E_IO, path, "not a cache of this shape");
    *out = buf;
    return CB_OK;
}

int cb_teacher_cache_put(cb_teacher_cache *c, uint64_t batch, const float *buf, cb_error *e) {
    if (c->mem) {
        if (batch >= (uint64_t)c->n_mem) return CB_OK; /* past the layers' steps: nothing to keep */
        float *copy = cb_malloc(c->batch_floats, sizeof *copy, e);
        if (!copy) return e->code;
        memcpy(copy, buf, c->batch_floats * sizeof *copy);
        free(c->mem[batch]);
        c->mem[batch] = copy;
        return CB_OK;
    }
    if (mkdir(c->dir, 0777) != 0 && errno != EEXIST) return cb_fail(e, CB_E_IO, c->dir, "cannot create: %s", strerror(errno));
    char path[4400];
    cache_path(path, sizeof path, c, batch);
    char *blob = malloc(sizeof(cache_header) + c->batch_floats * sizeof(float));
    if (!blob) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    cache_header h = {.n_layers = c->n_layers, .B = c->B, .T = c->T, .d = c->d};
    memcpy(h.magic, "cbtcache", 8);
    memcpy(blob, &h, sizeof h);
    memcpy(blob + sizeof h, buf, c->batch_floats * sizeof(float));
    int rc = cb_atomic_write(path, blob, sizeof h + c->batch_floats * sizeof(float), e);
    free(blob);
    return rc;
}
