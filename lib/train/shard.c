/* shard.c: the optimizer state sharded across ranks (shard.h). */
#include "train/shard.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int cb_shard_init(cb_shard *s, const cb_dist *d, cb_backend *be, const cb_optimizer *o, cb_error *e) {
    memset(s, 0, sizeof *s);
    const cb_param_table *all = o->params;
    const size_t total = all->total_floats, W = (size_t)d->world;
    s->parts.begin = calloc(W, sizeof *s->parts.begin);
    s->parts.count = calloc(W, sizeof *s->parts.count);
    s->table.items = calloc((size_t)all->n + 1, sizeof *s->table.items);
    s->view.decay = calloc((size_t)all->n + 1, 1);
    if (!s->parts.begin || !s->parts.count || !s->table.items || !s->view.decay) {
        cb_shard_free(s, be);
        return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    }
    /* equal parts of whole 16-float lines (the buffer's alignment), the last one shorter */
    size_t per = (total + W - 1) / W;
    per = (per + 15) / 16 * 16;
    for (size_t r = 0; r < W; r++) {
        size_t b = r * per < total ? r * per : total;
        s->parts.begin[r] = b;
        s->parts.count[r] = (b + per < total ? b + per : total) - b;
    }
    s->begin = s->parts.begin[d->rank];
    s->n = s->parts.count[d->rank];
    const size_t end = s->begin + s->n;
    /* the parameters that overlap the part, cut to it */
    for (int k = 0; k < all->n; k++) {
        const cb_param *p = &all->items[k];
        size_t lo = p->offset > s->begin ? p->offset : s->begin;
        size_t hi = p->offset + p->numel < end ? p->offset + p->numel : end;
        if (lo >= hi) continue;
        cb_param *q = &s->table.items[s->table.n];
        *q = *p;
        q->offset = lo - s->begin;
        q->numel = hi - lo;
        q->ndim = 1;
        q->shape[0] = (int64_t)q->numel;
        s->view.decay[s->table.n] = o->decay[k];
        s->table.n++;
    }
    s->table.total_floats = s->n;
    s->view.cfg = o->cfg;
    s->view.params = &s->table;
    s->view.t = o->t;
    /* the state of the part on the device; never the whole of it */
    size_t bytes = (s->n ? s->n : 1) * sizeof(float);
    if (!(s->m = be->alloc(be, bytes, e)) || (o->v && !(s->v = be->alloc(be, bytes, e)))) {
        int rc = e->code;
        cb_shard_free(s, be);
        return rc;
    }
    int rc = be->upload(be, s->m, o->m + s->begin, s->n * sizeof(float), e);
    if (rc == CB_OK && o->v) rc = be->upload(be, s->v, o->v + s->begin, s->n * sizeof(float), e);
    if (rc != CB_OK) cb_shard_free(s, be);
    return rc;
}

void cb_shard_free(cb_shard *s, cb_backend *be) {
    if (be) {
        be->free(be, s->m);
        be->free(be, s->v);
    }
    free(s->parts.begin);
    free(s->parts.count);
    free(s->table.items);
    free(s->view.decay);
    memset(s, 0, sizeof *s);
}

int cb_shard_step(cb_shard *s, const cb_dist *d, cb_backend *be, cb_optimizer *o, cb_fsdp *f, float *w, float *g,
                  float scale, double max_norm, double lr, double *norm, cb_error *e) {
    if (!f) CB_TRY(cb_dist_sum_parts(d, be, g, &s->parts, e));
    float *gp = g + s->begin;
    if (scale != 1.0f) be->scale(be, gp, s->n, scale);
    /* the global norm from the parts' squared norms (max_norm 0: measured, not clipped) */
    double part = s->n ? be->grad_clip(be, gp, s->n, 0) : 0;
    double sq = part * part;
    CB_TRY(cb_dist_sum_f64(d, &sq, 1, e));
    *norm = sqrt(sq);
    if (max_norm > 0 && isfinite(*norm)) {
        double coef = max_norm / (*norm + 1e-6); /* as train/clip.h, as torch */
        if (coef < 1.0 && s->n) be->scale(be, gp, s->n, (float)coef);
    }
    if (!isfinite(*norm)) return CB_OK; /* the caller stops the run with the step named */
    s->view.t = o->t;
    if (s->n) be->optimizer_step(be, &s->view, w + s->begin, gp, s->m, s->v, lr);
    o->t++; /* every rank counts the step, whether or not its part held anything */
    return f ? cb_fsdp_gather_kept(f, w, e) : cb_dist_gather_parts(d, be, w, &s->parts, e);
}

int cb_shard_collect(cb_shard *s, const cb_dist *d, cb_backend *be, cb_optimizer *o, cb_error *e) {
    CB_TRY(be->download(be, o->m + s->begin, s->m, s->n * sizeof(float), e));
    if (o->v) CB_TRY(be->download(be, o->v + s->begin, s->v, s->n * sizeof(float), e));
    cb_backend *host = cb_backend_cpu();
    CB_TRY(cb_dist_gather_parts(d, host, o->m, &s->parts, e));
    if (o->v) CB_TRY(cb_dist_gather_parts(d, host, o->v, &s->parts, e));
    return CB_OK;
}
