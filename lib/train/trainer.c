/* trainer.c: the training loop (see trainer.h). */
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "core/clock.h"
#include "core/json_doc.h"
#include "core/rng.h"
#include "dist/dist.h"
#include "model/program.h"
#include "model/run.h"
#include "train/checkpoint.h"
#include "train/clip.h"
#include "train/metrics.h"
#include "train/optimizer.h"
#include "train/prefetch.h"
#include "train/schedule.h"
#include "train/shard.h"

/* ---- data ---- */

/* a view of tokens [from, from + n) of an opened file: it owns nothing */
static cb_dataset view(const cb_dataset *file, size_t from, size_t n) {
    cb_dataset v = *file;
    v.tokens = (const char *)file->tokens + from * cb_dtype_size(file->dtype);
    v.n_tokens = n;
    v.map_base = NULL;
    v.map_len = 0;
    v.owned = NULL;
    return v;
}

static int need_window(const cb_dataset *d, const char *what, int block_size, cb_error *e) {
    if (d->n_tokens < (size_t)block_size + 1)
        return cb_fail(e, CB_E_INVALID, d->path, "%s has %zu tokens, fewer than block_size + 1 = %d", what,
                       d->n_tokens, block_size + 1);
    return CB_OK;
}

int cb_train_data_open(cb_train_data *d, const char *data, const char *val_split, double val_frac, int block_size,
                       int64_t vocab_size, cb_error *e) {
    memset(d, 0, sizeof *d);
    CB_TRY(cb_dataset_open(&d->file, data, e));
    int rc = cb_dataset_check_vocab(&d->file, vocab_size, e);
    if (rc == CB_OK && val_split && *val_split) {
        rc = cb_dataset_open(&d->val_file, val_split, e);
        if (rc == CB_OK) {
            d->have_val_file = 1;
            rc = cb_dataset_check_vocab(&d->val_file, vocab_size, e);
        }
        d->train = view(&d->file, 0, d->file.n_tokens);
        d->val = view(&d->val_file, 0, d->val_file.n_tokens);
        d->have_val = 1;
    } else if (rc == CB_OK) {
        size_t n = d->file.n_tokens, n_val = (size_t)((double)n * val_frac);
        d->train = view(&d->file, 0, n - n_val);
        d->val = view(&d->file, n - n_val, n_val);
        d->have_val = n_val > 0;
        if (d->have_val && n_val < (size_t)block_size + 1)
            rc = cb_fail(e, CB_E_INVALID, data,
                         "val_frac %g holds out %zu of %zu tokens, fewer than block_size + 1 = %d; give more data, "
                         "a larger val_frac or a val_split file", val_frac, n_val, n, block_size + 1);
    }
    if (rc == CB_OK) rc = need_window(&d->train, "the training data", block_size, e);
    if (rc == CB_OK && d->have_val) rc = need_window(&d->val, "the validation data", block_size, e);
    if (rc != CB_OK) cb_train_data_close(d);
    return rc;
}

void cb_train_data_close(cb_train_data *d) {
    cb_dataset_close(&d->file);
    if (d->have_val_file) cb_dataset_close(&d->val_file);
    memset(d, 0, sizeof *d);
}

/* ---- the run record ---- */

static void utc_now(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* run_dir/run.json: what the run is and how far it got */
static int write_run_json(const cb_train_config *c, const cb_model *m, const cb_train_io *io, const char *status,
                          const cb_train_result *res, const char *started, cb_error *e) {
    json_t *doc = cb_doc_new("run");
    char now[32], path[4200];
    utc_now(now, sizeof now);
    json_object_set_new(doc, "group", json_string(c->group));
    json_object_set_new(doc, "run", json_string(c->run));
    if (c->exp[0]) json_object_set_new(doc, "exp", json_string(c->exp));
    json_object_set_new(doc, "status", json_string(status));
    json_object_set_new(doc, "plan_sha256", json_string(m->plan_sha256));
    const json_t *src = json_object_get(m->plan, "source");
    if (json_is_string(src)) json_object_set(doc, "source", (json_t *)src);
    json_object_set_new(doc, "seed", json_integer((json_int_t)c->seed));
    json_object_set_new(doc, "steps", json_integer(c->steps));
    json_object_set_new(doc, "step", json_integer(res->step));
    json_object_set_new(doc, "params", json_integer((json_int_t)m->params.total_floats));
    json_object_set_new(doc, "data", json_string(c->data));
    if (c->val_split[0]) json_object_set_new(doc, "val_split", json_string(c->val_split));
    json_object_set_new(doc, "batch_size", json_integer(c->batch_size));
    json_object_set_new(doc, "block_size", json_integer(c->block_size));
    json_object_set_new(doc, "grad_accum", json_integer(c->grad_accum));
    json_object_set_new(doc, "optimizer", json_string(cb_optimizer_name(c->optimizer.kind)));
    json_object_set_new(doc, "lr_schedule", json_string(cb_schedule_name(c->schedule.kind)));
    if (c->init_ckpt[0] || c->init_run[0])
        json_object_set_new(doc, "init", json_pack("{s:s, s:s}", "from", c->init_from, c->init_ckpt[0] ? "ckpt" : "run",
                                                   c->init_ckpt[0] ? c->init_ckpt : c->init_run));
    if (io->resume) json_object_set_new(doc, "resumed_from", json_string(io->resume));
    json_object_set_new(doc, "started", json_string(started));
    json_object_set_new(doc, "updated", json_string(now));
    if (res->checkpoint[0]) json_object_set_new(doc, "checkpoint", json_string(res->checkpoint));
    if (res->final_dir[0]) json_object_set_new(doc, "final", json_string(res->final_dir));
    if (isfinite(res->loss)) json_object_set_new(doc, "loss", json_real(res->loss));
    if (isfinite(res->val_loss)) json_object_set_new(doc, "val_loss", json_real(res->val_loss));
    const char *key;
    json_t *val;
    if (io->meta)
        json_object_foreach((json_t *)io->meta, key, val) {
            if (!json_object_get(doc, key)) json_object_set(doc, key, val);
        }
    snprintf(path, sizeof path, "%s/run.json", io->run_dir);
    int rc = cb_doc_save(doc, path, e);
    json_decref(doc);
    return rc;
}

/* ---- the loop ---- */

/* The device's copies of what a step reads and writes. On a device that shares host
 * memory (the CPU) weights and optimizer state are the host buffers themselves; elsewhere
 * they are copies, uploaded at the start and downloaded before a checkpoint is written. */
typedef struct device_state {
    float *weights, *grads, *opt_m, *opt_v; /* params.total_floats each (opt_v AdamW only) */
    int32_t *batch;                         /* (2, B, T) tokens and targets; NULL when unified */
} device_state;

typedef struct trainer {
    const cb_train_config *c;
    cb_model *m;
    const cb_train_io *io;
    cb_backend *be;
    cb_program prog;
    cb_run run;
    device_state dev;
    cb_optimizer opt;
    cb_train_state st;
    cb_rng rng;
    cb_batcher batcher;
    cb_prefetch prefetch;
    cb_metrics metrics;
    cb_shard shard; /* strategy fsdp: this rank's part of the optimizer state */
    int have_prog, have_run, have_opt, have_prefetch, have_metrics, sharded;
} trainer;

static void trainer_free(trainer *t) {
    if (t->have_prefetch) cb_prefetch_free(&t->prefetch);
    if (t->have_run) cb_run_free(&t->run);
    if (t->have_prog) cb_program_free(&t->prog);
    cb_backend *be = t->be;
    if (be) {
        be->free(be, t->dev.grads);
        be->free(be, t->dev.batch);
        if (!be->unified) {
            be->free(be, t->dev.weights);
            be->free(be, t->dev.opt_m);
            be->free(be, t->dev.opt_v);
        }
    }
    if (t->sharded) cb_shard_free(&t->shard, be);
    if (t->have_opt) cb_optimizer_free(&t->opt);
}

/* The ranks of the run (dist/dist.h); this process alone when the caller gave none. */
static const cb_dist *ranks(const trainer *t) {
    static const cb_dist alone = {0, 1, 0, NULL};
    return t->io->dist ? t->io->dist : &alone;
}
static int is_main(const trainer *t) { return ranks(t)->rank == 0; }

static size_t param_bytes(const trainer *t) { return t->m->params.total_floats * sizeof(float); }

/* Weights and optimizer state onto the device (after they were initialised or resumed). */
static int upload_state(trainer *t, cb_error *e) {
    cb_backend *be = t->be;
    const size_t bytes = param_bytes(t);
    if (be->unified) {
        t->dev.weights = t->m->weights;
        t->dev.opt_m = t->opt.m;
        t->dev.opt_v = t->opt.v;
        return CB_OK;
    }
    if (!(t->dev.weights = be->alloc(be, bytes, e)) || !(t->dev.opt_m = be->alloc(be, bytes, e)) ||
        (t->opt.v && !(t->dev.opt_v = be->alloc(be, bytes, e))) ||
        !(t->dev.batch = be->alloc(be, 2 * (size_t)t->prog.B * t->prog.T * sizeof(int32_t), e)))
        return e->code;
    CB_TRY(be->upload(be, t->dev.weights, t->m->weights, bytes, e));
    CB_TRY(be->upload(be, t->dev.opt_m, t->opt.m, bytes, e));
    if (t->opt.v) CB_TRY(be->upload(be, t->dev.opt_v, t->opt.v, bytes, e));
    return CB_OK;
}

/* The device's weights and optimizer state back into the host buffers a checkpoint writes. */
static int download_state(trainer *t, cb_error *e) {
    cb_backend *be = t->be;
    if (t->sharded) CB_TRY(cb_shard_collect(&t->shard, ranks(t), be, &t->opt, e)); /* every rank's part */
    if (be->unified) return be->synchronize(be, e);
    const size_t bytes = param_bytes(t);
    CB_TRY(be->download(be, t->m->weights, t->dev.weights, bytes, e));
    if (t->dev.opt_m) CB_TRY(be->download(be, t->opt.m, t->dev.opt_m, bytes, e));
    if (t->dev.opt_v) CB_TRY(be->download(be, t->opt.v, t->dev.opt_v, bytes, e));
    return be->synchronize(be, e);
}

/* This rank's rows of a global batch (x, y: (B * world, T) each): rows rank*B .. */
static void rank_rows(const trainer *t, const int32_t **x, const int32_t **y) {
    size_t skip = (size_t)ranks(t)->rank * t->prog.B * t->prog.T;
    *x += skip;
    *y += skip;
}

/* A batch (x, y: (B,T) each) where the device reads it. */
static int place_batch(trainer *t, const int32_t **x, const int32_t **y, cb_error *e) {
    if (!t->dev.batch) return CB_OK;
    const size_t n = (size_t)t->prog.B * t->prog.T;
    CB_TRY(t->be->upload(t->be, t->dev.batch, *x, n * sizeof(int32_t), e));
    CB_TRY(t->be->upload(t->be, t->dev.batch + n, *y, n * sizeof(int32_t), e));
    *x = t->dev.batch;
    *y = t->dev.batch + n;
    return CB_OK;
}

/* mean loss over eval_iters batches of the validation data, from its start every time */
static double evaluate(trainer *t, const cb_dataset *val, cb_error *e) {
    cb_batcher vb;
    if (cb_batcher_init(&vb, val, t->c->batch_size, t->prog.T, 0, t->c->seed, e) != CB_OK) return NAN;
    size_t n = (size_t)t->c->batch_size * t->prog.T; /* the global batch; this rank reads its rows */
    int32_t *x = cb_malloc(2 * n, sizeof *x, e);
    if (!x) return NAN;
    double sum = 0;
    t->run.training = 0; /* no dropout */
    for (long i = 0; i < t->c->eval_iters; i++) {
        cb_batcher_next(&vb, x, x + n);
        const int32_t *bx = x, *by = x + n;
        rank_rows(t, &bx, &by);
        if (place_batch(t, &bx, &by, e) != CB_OK) {
            free(x);
            return NAN;
        }
        sum += cb_run_forward(&t->run, &t->prog, t->dev.weights, bx, by);
    }
    t->run.training = 1;
    free(x);
    if (cb_dist_sum_f64(ranks(t), &sum, 1, e) != CB_OK) return NAN;
    return sum / (double)t->c->eval_iters / ranks(t)->world;
}

static int save(trainer *t, cb_train_result *res, cb_error *e) {
    t->st.data_position = cb_prefetch_position(&t->prefetch);
    memcpy(t->st.rng, t->rng.s, sizeof t->st.rng);
    CB_TRY(download_state(t, e));
    if (!is_main(t)) return CB_OK; /* every rank holds the same state: rank 0 writes it */
    return cb_checkpoint_save(t->io->run_dir, t->m, &t->opt, &t->st, t->io->meta, t->c->keep_last, res->checkpoint,
                              sizeof res->checkpoint, e);
}

static int setup(trainer *t, const cb_train_data *d, cb_error *e) {
    const cb_train_config *c = t->c;
    cb_model *m = t->m;
    const cb_dist *dist = ranks(t);
    if (c->batch_size % dist->world != 0)
        return cb_fail(e, CB_E_USAGE, "batch_size", "the global batch of %d rows does not divide among %d ranks",
                       c->batch_size, dist->world);
    CB_TRY(cb_program_init(&t->prog, m->plan, &m->params, c->batch_size / dist->world, c->block_size, e));
    t->have_prog = 1;
    t->be = t->io->backend ? t->io->backend : cb_backend_cpu();
    if (t->io->dist) CB_TRY(cb_dist_attach(t->io->dist, t->be, e)); /* NCCL on a GPU */
    CB_TRY(cb_run_init_on(&t->run, t->be, &t->prog, 1, e));
    t->have_run = 1;
    t->run.row0 = (long)dist->rank * t->prog.B; /* dropout masks index the global batch */
    t->dev.grads = t->be->alloc(t->be, param_bytes(t), e);
    if (!t->dev.grads) return e->code;
    CB_TRY(cb_optimizer_init(&t->opt, &c->optimizer, &m->params, e));
    t->have_opt = 1;

    cb_train_state *st = &t->st;
    memset(st, 0, sizeof *st);
    cb_rng_init_keyed(&t->rng, c->seed, "dropout");
    if (t->io->resume) {
        char dir[4608];
        CB_TRY(cb_checkpoint_resolve(t->io->resume, dir, sizeof dir, e));
        CB_TRY(cb_checkpoint_load(dir, c->group, c->run, m, &t->opt, st, NULL, e));
        if (st->step > c->steps)
            return cb_fail(e, CB_E_USAGE, dir, "the checkpoint is at step %ld, past the run's %ld steps", st->step,
                           c->steps);
        memcpy(t->rng.s, st->rng, sizeof st->rng);
    }
    st->seed = c->seed;
    st->schedule = c->schedule;
    snprintf(st->run, sizeof st->run, "%s", c->run);
    snprintf(st->group, sizeof st->group, "%s", c->group);

    CB_TRY(upload_state(t, e));
    /* ranks start from rank 0's weights and optimizer state, whatever each read */
    CB_TRY(cb_dist_broadcast(dist, t->be, t->dev.weights, param_bytes(t), e));
    CB_TRY(cb_dist_broadcast(dist, t->be, t->dev.opt_m, param_bytes(t), e));
    if (t->dev.opt_v) CB_TRY(cb_dist_broadcast(dist, t->be, t->dev.opt_v, param_bytes(t), e));
    if (c->shard_optimizer && dist->mpi) { /* one rank under mpirun too: its path is the same */
        /* the state as the host holds it (fresh, or resumed and broadcast) cut to this rank's part */
        if (!t->be->unified) CB_TRY(download_state(t, e));
        CB_TRY(cb_shard_init(&t->shard, dist, t->be, &t->opt, e));
        t->sharded = 1;
        if (!t->be->unified) { /* the whole state leaves the device: only the part stays */
            t->be->free(t->be, t->dev.opt_m);
            t->be->free(t->be, t->dev.opt_v);
        }
        t->dev.opt_m = t->dev.opt_v = NULL;
    }

    CB_TRY(cb_batcher_init(&t->batcher, &d->train, c->batch_size, c->block_size, 1, c->seed, e));
    t->batcher.position = st->data_position;
    CB_TRY(cb_prefetch_init(&t->prefetch, &t->batcher, c->prefetch, e));
    t->have_prefetch = 1;
    return CB_OK;
}

static int is_eval_step(const cb_train_config *c, long step) {
    return step == c->steps || (c->eval_every > 0 && step % c->eval_every == 0);
}

static int train_loop(trainer *t, const cb_train_data *d, cb_train_result *res, cb_error *e) {
    const cb_train_config *c = t->c;
    cb_model *m = t->m;
    cb_backend *be = t->be;
    size_t n_floats = m->params.total_floats;
    float *w = t->dev.weights, *g = t->dev.grads;
    uint64_t step_tokens = (uint64_t)c->batch_size * (uint64_t)c->block_size * (uint64_t)c->grad_accum;
    const cb_dist *dist = ranks(t);
    long saved_at = -1;
    while (t->st.step < c->steps) {
        long step = t->st.step + 1;
        double t0 = cb_clock_s();
        be->zero(be, g, n_floats * sizeof(float));
        double loss_sum = 0;
        for (int k = 0; k < c->grad_accum; k++) {
            const int32_t *x, *y;
            cb_prefetch_take(&t->prefetch, &x, &y);
            rank_rows(t, &x, &y);
            CB_TRY(place_batch(t, &x, &y, e));
            t->run.dropout_seed = cb_rng_next(&t->rng);
            loss_sum += cb_run_forward(&t->run, &t->prog, w, x, y);
            cb_run_backward(&t->run, &t->prog, w, g);
        }
        /* data parallel: the sums over ranks, once a step (after the last micro-batch) */
        CB_TRY(cb_dist_sum_f64(dist, &loss_sum, 1, e));
        int parts = c->grad_accum * dist->world;
        double loss = parts == 1 ? loss_sum : loss_sum / parts;
        if (!isfinite(loss)) return cb_fail(e, CB_E_RUNTIME, "", "step %ld: the loss is %s", step, isnan(loss) ? "nan" : "inf");
        double lr = cb_schedule_lr(&c->schedule, step - 1), norm;
        if (t->sharded) {
            CB_TRY(cb_shard_step(&t->shard, dist, be, &t->opt, w, g, 1.0f / (float)parts, c->grad_clip, lr, &norm, e));
        } else {
            CB_TRY(cb_dist_sum_f32(dist, be, g, n_floats, e));
            if (parts > 1) be->scale(be, g, n_floats, 1.0f / (float)parts);
            norm = be->grad_clip(be, g, n_floats, c->grad_clip);
        }
        if (!isfinite(norm))
            return cb_fail(e, CB_E_RUNTIME, "", "step %ld: the gradient norm is %s", step, isnan(norm) ? "nan" : "inf");
        if (!t->sharded) be->optimizer_step(be, &t->opt, w, g, t->dev.opt_m, t->dev.opt_v, lr);
        t->st.step = step;
        t->st.tokens += step_tokens;
        double seconds = cb_clock_s() - t0;

        cb_metric_row row = {.step = step, .loss = loss, .lr = lr, .grad_norm = norm, .tokens = t->st.tokens,
                             .tok_s = seconds > 0 ? (double)step_tokens / seconds : 0, .val_loss = NAN, .val_ppl = NAN};
        if (d->have_val && is_eval_step(c, step)) {
            row.val_loss = evaluate(t, &d->val, e);
            if (isnan(row.val_loss) && e->code) return e->code;
            row.val_ppl = exp(row.val_loss);
            res->val_loss = row.val_loss;
        }
        res->loss = loss;
        res->step = step;
        int logged = step == 1 || step % c->log_every == 0 || step == c->steps || !isnan(row.val_loss);
        if (logged && t->have_metrics) CB_TRY(cb_metrics_log(&t->metrics, &row, e));
        if (t->io->progress) {
            cb_progress_step(t->io->progress, step, loss, row.tok_s, logged);
            if (!isnan(row.val_loss))
                cb_progress_note(t->io->progress, "step %ld: val_loss %.4f  val_ppl %.2f", step, row.val_loss,
                                 row.val_ppl);
        }
        int stopping = 0; /* a stop any rank saw stops every rank after the same step */
        CB_TRY(cb_dist_any(dist, t->io->stop && *t->io->stop, &stopping, e));
        if (stopping || step == c->steps || (c->save_every > 0 && step % c->save_every == 0)) {
            CB_TRY(save(t, res, e));
            saved_at = step;
            if (t->io->progress && !stopping && step != c->steps)
                cb_progress_note(t->io->progress, "step %ld: checkpoint %s", step, res->checkpoint);
        }
        if (stopping) {
            res->interrupted = 1;
            return CB_OK;
        }
    }
    if (saved_at != t->st.step) CB_TRY(save(t, res, e)); /* zero steps left: still a checkpoint */
    return CB_OK;
}

int cb_train_run(const cb_train_config *c, cb_model *m, const cb_train_data *d, const cb_train_io *io,
                 cb_train_result *res, cb_error *e) {
    memset(res, 0, sizeof *res);
    res->loss = res->val_loss = NAN;
    trainer t;
    memset(&t, 0, sizeof t);
    t.c = c;
    t.m = m;
    t.io = io;
    char started[32];
    utc_now(started, sizeof started);
    int rc = setup(&t, d, e);
    res->step = t.st.step;
    int main_rank = is_main(&t); /* the others write nothing */
    if (rc == CB_OK && main_rank) rc = write_run_json(c, m, io, "running", res, started, e);
    if (rc == CB_OK && main_rank) {
        char title[600];
        snprintf(title, sizeof title, "%s/%s", c->group, c->run);
        rc = cb_metrics_open(&t.metrics, io->run_dir, c->instruments, io->resume ? t.st.step : -1, title, e);
        t.have_metrics = rc == CB_OK;
    }
    if (rc == CB_OK && io->progress) {
        io->progress->first = t.st.step;
        io->progress->total = c->steps;
    }
    if (rc == CB_OK) rc = train_loop(&t, d, res, e);
    if (io->progress) cb_progress_end(io->progress);
    if (t.have_metrics) {
        cb_error close_e;
        if (cb_metrics_close(&t.metrics, &close_e) != CB_OK && rc == CB_OK) {
            *e = close_e;
            rc = close_e.code;
        }
    }
    if (rc == CB_OK && !res->interrupted && main_rank) {
        snprintf(res->final_dir, sizeof res->final_dir, "%s/final", io->run_dir);
        rc = cb_model_save_dir(m, res->final_dir, NULL, e);
        if (rc != CB_OK) res->final_dir[0] = 0;
    }
    if (t.have_prog && main_rank) {
        cb_error ignored;
        const char *status = rc != CB_OK ? "failed" : res->interrupted ? "interrupted" : "finished";
        int wrc = write_run_json(c, m, io, status, res, started, rc == CB_OK ? e : &ignored);
        if (rc == CB_OK) rc = wrc;
    }
    trainer_free(&t);
    return rc;
}
