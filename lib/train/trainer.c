/* trainer.c: the training loop (see trainer.h). */
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "backend/pass.h"
#include "core/clock.h"
#include "core/json_doc.h"
#include "core/rng.h"
#include "dist/buckets.h"
#include "dist/dist.h"
#include "model/program.h"
#include "model/run.h"
#include "train/blockwise.h"
#include "train/checkpoint.h"
#include "train/clip.h"
#include "train/distill.h"
#include "train/metrics.h"
#include "train/optimizer.h"
#include "train/prefetch.h"
#include "train/schedule.h"
#include "train/shard.h"
#include "upcycle/attn_pair.h"

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
                          const cb_train_result *res, const char *started, json_t *info, cb_error *e) {
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
    if (res->world > 1 || res->grad_buckets) /* data parallel: how the ranks summed */
        json_object_set_new(doc, "ranks", json_pack("{s:i, s:s, s:i}", "world", res->world, "strategy",
                                                    c->shard_optimizer ? "fsdp" : "ddp", "grad_buckets",
                                                    res->grad_buckets));
    if (c->shard_optimizer && (res->world > 1 || res->buffer_mb > 0))
        json_object_set_new(json_object_get(doc, "ranks"), "fsdp_sharding_strategy",
                            json_string(c->full_shard ? "FULL_SHARD" : "SHARD_GRAD_OP"));
    if (res->buffer_mb > 0) /* under mpirun: the buffers' memory at the first step's peak */
        json_object_set_new(doc, "memory", json_pack("{s:f, s:f, s:f}", "weights_mb", res->weights_mb, "grads_mb",
                                                     res->grads_mb, "buffer_mb", res->buffer_mb));
    if (c->recompute && res->blocks) /* activation checkpointing: what it chose and saved */
        json_object_set_new(doc, "activation_checkpointing",
                            json_pack("{s:i, s:i, s:f, s:f}", "blocks", res->recompute_blocks, "of", res->blocks,
                                      "activations_mb", res->activation_mb, "without_mb", res->activation_full_mb));
    if (info) json_object_set(doc, "upcycle", info);
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
    cb_grad_buckets buckets; /* strategy ddp: gradient sums overlapped with backward */
    cb_fsdp fsdp;            /* strategy fsdp: gradients (and FULL_SHARD's weights) kept to the part */
    int have_prog, have_run, have_opt, have_prefetch, have_metrics, sharded, bucketed;
    int have_fsdp;           /* dev.grads is fsdp's buffer, summed by region in backward */
    int full_shard;          /* dev.weights is fsdp's buffer too, its blocks released between passes */
    int host_dropped;        /* FULL_SHARD on a device that shares host memory: m->weights freed
                                but while a checkpoint is written (the device copy is the one) */
    /* blockwise and upcycle: where the run stands, kept in every checkpoint's "upcycle" */
    int staged;              /* phase blockwise or upcycle */
    int stage;               /* 0: blockwise distillation, 1: global fine-tuning */
    int block;               /* the attention layer being distilled */
    long block_step, streak; /* its steps so far; steps in a row at or below the target */
    long step0;              /* optimizer steps before the fine-tuning (its step 1 is step0 + 1) */
    json_t *info;            /* what run.json's "upcycle" reports */
    /* distill: the teacher's forward pass on the same batches, for its logits */
    cb_program tprog;
    cb_run trun;
    const float *tw;         /* the teacher's weights on the device */
    float *tw_dev;           /* owned copy where memory is not shared */
    int have_tprog, have_trun;
} trainer;

static void trainer_free(trainer *t) {
    json_decref(t->info);
    if (t->have_trun) cb_run_free(&t->trun);
    if (t->have_tprog) cb_program_free(&t->tprog);
    if (t->be) t->be->free(t->be, t->tw_dev);
    if (t->have_prefetch) cb_prefetch_free(&t->prefetch);
    if (t->have_run) cb_run_free(&t->run);
    if (t->have_prog) cb_program_free(&t->prog);
    cb_backend *be = t->be;
    if (t->have_fsdp) {
        cb_fsdp_buffer_free(be, t->dev.grads, t->m->params.total_floats);
        t->dev.grads = NULL;
        if (t->full_shard) cb_fsdp_buffer_free(be, t->dev.weights, t->m->params.total_floats);
        if (t->full_shard) t->dev.weights = NULL;
        cb_fsdp_free(&t->fsdp);
    }
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
    if (t->bucketed) cb_grad_buckets_free(&t->buckets);
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
    if (t->full_shard) { /* the blocks gathered for the copy, then released again */
        const size_t bytes = param_bytes(t);
        CB_TRY(cb_fsdp_gather_weights(&t->fsdp, t->dev.weights, e));
        if (!t->m->weights && !(t->m->weights = aligned_alloc(64, (bytes + 63) / 64 * 64)))
            return cb_fail(e, CB_E_RUNTIME, "", "out of memory: %zu MB of weights", bytes >> 20);
        CB_TRY(be->download(be, t->m->weights, t->dev.weights, bytes, e));
        CB_TRY(be->synchronize(be, e));
        cb_fsdp_shard_weights(&t->fsdp, t->dev.weights);
        return CB_OK; /* the optimizer state lives in the shard alone */
    }
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
    if (t->have_fsdp) cb_fsdp_begin(&t->fsdp, t->dev.weights, NULL); /* FULL_SHARD gathers each block */
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
    if (t->have_fsdp && cb_fsdp_check(&t->fsdp, e) != CB_OK) return NAN;
    if (cb_dist_sum_f64(ranks(t), &sum, 1, e) != CB_OK) return NAN;
    return sum / (double)t->c->eval_iters / ranks(t)->world;
}

static int save(trainer *t, cb_train_result *res, cb_error *e) {
    t->st.data_position = t->have_prefetch ? cb_prefetch_position(&t->prefetch) : 0;
    memcpy(t->st.rng, t->rng.s, sizeof t->st.rng);
    CB_TRY(download_state(t, e));
    int rc = CB_OK;
    if (is_main(t) && !t->staged) /* every rank holds the same state: rank 0 writes it */
        rc = cb_checkpoint_save(t->io->run_dir, t->m, &t->opt, &t->st, t->io->meta, t->c->keep_last, res->checkpoint,
                                sizeof res->checkpoint, e);
    if (t->host_dropped) { /* the host copy was for the file alone */
        free(t->m->weights);
        t->m->weights = NULL;
    }
    if (!is_main(t) || !t->staged) return rc;
    /* where the staged run stands, so that --resume continues it where it was */
    json_t *extra = t->io->meta ? json_deep_copy(t->io->meta) : json_object();
    json_t *up = json_pack("{s:s, s:i, s:I, s:I, s:I}", "stage", t->stage ? "global" : "blockwise", "block", t->block,
                           "block_step", (json_int_t)t->block_step, "streak", (json_int_t)t->streak, "step0",
                           (json_int_t)t->step0);
    json_object_set(up, "info", t->info);
    json_object_set_new(extra, "upcycle", up);
    uint64_t opt_t = t->opt.t;
    if (!t->stage) t->opt.t = (uint64_t)t->block_step; /* the layer's own optimizer's steps */
    rc = cb_checkpoint_save(t->io->run_dir, t->m, &t->opt, &t->st, extra, t->c->keep_last, res->checkpoint,
                            sizeof res->checkpoint, e);
    t->opt.t = opt_t;
    json_decref(extra);
    return rc;
}

/* The seed of a stream of training batches. A run that trains a student, or distils,
 * starts from a model trained on the batches of its seed (the teacher's, by default the
 * same seed): its streams are keyed by the stage too, so that it learns from windows its
 * starting point has not already been fitted to. Other runs keep the plain seed. */
static uint64_t data_seed(const cb_train_config *c, const char *stage) {
    return c->student || c->phase == CB_PHASE_DISTILL ? cb_hash_str(c->seed, stage) : c->seed;
}

/* The training batches from batch number position on, prepared ahead in a thread. */
static int start_loader(trainer *t, const cb_train_data *d, uint64_t position, cb_error *e) {
    const cb_train_config *c = t->c;
    CB_TRY(cb_batcher_init(&t->batcher, &d->train, c->batch_size, c->block_size, 1,
                           data_seed(c, c->phase == CB_PHASE_DISTILL ? "distill" : "global"), e));
    t->batcher.position = position;
    CB_TRY(cb_prefetch_init(&t->prefetch, &t->batcher, c->prefetch, e));
    t->have_prefetch = 1;
    return CB_OK;
}

/* distill: the teacher's program and arenas on the trainer's device */
static int setup_teacher(trainer *t, cb_error *e) {
    const cb_model *teacher = t->io->teacher;
    cb_backend *be = t->be;
    if (!teacher) return cb_fail(e, CB_E_USAGE, "", "phase distill needs a teacher");
    CB_TRY(cb_program_init(&t->tprog, teacher->plan, &teacher->params, t->prog.B, t->prog.T, e));
    t->have_tprog = 1;
    if (t->tprog.vocab_size != t->prog.vocab_size)
        return cb_fail(e, CB_E_INVALID, "", "the teacher's vocabulary (%d) is not the student's (%d)",
                       t->tprog.vocab_size, t->prog.vocab_size);
    CB_TRY(cb_run_init_on(&t->trun, be, &t->tprog, 0, e));
    t->have_trun = 1;
    t->tw = teacher->weights;
    if (!be->unified) {
        size_t bytes = teacher->params.total_floats * sizeof(float);
        if (!(t->tw_dev = be->alloc(be, bytes, e))) return e->code;
        CB_TRY(be->upload(be, t->tw_dev, teacher->weights, bytes, e));
        t->tw = t->tw_dev;
    }
    return CB_OK;
}

/* One distillation micro-batch: the teacher's logits, the student's forward with its
 * cross-entropy, then the student's backward from the gradient of
 * (1 - alpha) CE + alpha T^2 KL (the pass loop of backend/pass.c, with the KL part
 * added to the logits' gradient between the loss and the ops). Returns that loss. */
static int distill_micro(trainer *t, const float *w, float *g, const int32_t *x, const int32_t *y, double *loss,
                         cb_error *e) {
    const cb_train_config *c = t->c;
    cb_backend *be = t->be;
    cb_run *r = &t->run;
    cb_run_forward(&t->trun, &t->tprog, t->tw, x, NULL);
    double ce = cb_run_forward(r, &t->prog, w, x, y);
    cb_pass p = cb_run_pass(r, &t->prog, w, g);
    p.tokens = x;
    p.targets = y;
    const int rows = t->prog.B * t->prog.T, V = t->prog.vocab_size;
    const size_t n = (size_t)rows * V;
    be->zero(be, p.dslots, t->prog.slot_elems * sizeof(float));
    be->loss_backward(be, &p);
    float *dl = p.dslots + t->prog.slots[t->prog.logits_slot].offset;
    const float *sl = r->slots + t->prog.slots[t->prog.logits_slot].offset;
    const float *tl = t->trun.slots + t->tprog.slots[t->tprog.logits_slot].offset;
    be->scale(be, dl, n, (float)(1.0 - c->distill_alpha));
    /* where the logits are: on a GPU, 3 x B*T*V floats do not cross to the host each step */
    double kl = be->distill_kl(be, dl, sl, tl, rows, V, c->distill_temperature, c->distill_alpha);
    if (kl != kl) CB_TRY(be->synchronize(be, e)); /* a device failure, reported as such */
    cb_pass_backward_ops(be, &p);
    double temp = c->distill_temperature;
    *loss = (1.0 - c->distill_alpha) * ce + c->distill_alpha * temp * temp * kl;
    return CB_OK;
}

/* fsdp (train/fsdp.h): the gradient buffer, and with FULL_SHARD the weights, in memory
 * released by region; the blocks' weights this rank does not own released at once. */
static int setup_fsdp(trainer *t, cb_error *e) {
    cb_backend *be = t->be;
    const size_t n = t->m->params.total_floats;
    CB_TRY(cb_fsdp_init(&t->fsdp, ranks(t), be, &t->prog, &t->m->params, &t->shard.parts, t->c->full_shard, e));
    t->have_fsdp = 1;
    be->free(be, t->dev.grads);
    int reserved;
    if (!(t->dev.grads = cb_fsdp_buffer(be, n, &reserved, e))) return e->code;
    t->fsdp.reserved = reserved;
    CB_TRY(cb_fsdp_commit_part(&t->fsdp, t->dev.grads, e)); /* this rank's part stays throughout */
    if (!t->c->full_shard) return CB_OK;
    float *w = cb_fsdp_buffer(be, n, &reserved, e);
    if (!w) return e->code;
    /* on a GPU the weights' bf16 copy (amp) follows writes through the backend, not
       gathers: a plain buffer there would be read stale */
    int rc = !reserved && !be->unified
                 ? cb_fail(e, CB_E_USAGE, "fsdp_sharding_strategy",
                           "FULL_SHARD on the %s device needs its virtual memory management, which this driver "
                           "lacks; SHARD_GRAD_OP shards the gradients and optimizer state", be->name)
                 : CB_OK;
    if (rc == CB_OK && be->commit) rc = be->commit(be, w, 0, param_bytes(t), e); /* whole until sharded below */
    if (rc == CB_OK) rc = be->upload(be, w, t->m->weights, param_bytes(t), e); /* the host holds the broadcast weights */
    if (rc == CB_OK) rc = be->synchronize(be, e);
    if (rc != CB_OK) {
        cb_fsdp_buffer_free(be, w, n);
        return rc;
    }
    if (!be->unified) be->free(be, t->dev.weights);
    else { /* the host copy goes too: the device's copy, sharded, is the one */
        free(t->m->weights);
        t->m->weights = NULL;
        t->host_dropped = 1;
    }
    t->dev.weights = w;
    t->full_shard = 1;
    cb_fsdp_shard_weights(&t->fsdp, w);
    t->run.on_block = cb_fsdp_on_block; /* every forward and backward gathers each block */
    t->run.on_block_ctx = &t->fsdp;
    return CB_OK;
}

static int setup(trainer *t, const cb_train_data *d, cb_error *e) {
    const cb_train_config *c = t->c;
    cb_model *m = t->m;
    const cb_dist *dist = ranks(t);
    if (dist->world > 1 && (t->staged || c->phase == CB_PHASE_DISTILL))
        return cb_fail(e, CB_E_USAGE, "phase", "blockwise, upcycle and distill runs train on one rank in this build "
                       "(standard and global runs are data-parallel)");
    if (c->batch_size % dist->world != 0)
        return cb_fail(e, CB_E_USAGE, "batch_size", "the global batch of %d rows does not divide among %d ranks",
                       c->batch_size, dist->world);
    CB_TRY(cb_program_init(&t->prog, m->plan, &m->params, c->batch_size / dist->world, c->block_size, e));
    t->have_prog = 1;
    if (c->recompute) cb_program_recompute(&t->prog, (size_t)(c->recompute_mb * 1048576.0 / sizeof(float)));
    t->be = t->io->backend ? t->io->backend : cb_backend_cpu();
    if (t->io->dist) CB_TRY(cb_dist_attach(t->io->dist, t->be, e)); /* NCCL on a GPU */
    /* the head fused with the loss where nothing reads the logits (fsdp: as setup_fsdp below) */
    if (!cb_train_keeps_logits(c, c->shard_optimizer && dist->mpi && !t->staged))
        CB_TRY(cb_run_init_fused(&t->run, t->be, &t->prog, 0, e));
    else
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
        json_t *extra = NULL;
        CB_TRY(cb_checkpoint_load(dir, c->group, c->run, m, &t->opt, st, &extra, e));
        const json_t *up = json_object_get(extra, "upcycle");
        if (t->staged && !json_is_object(up)) {
            json_decref(extra);
            return cb_fail(e, CB_E_INVALID, dir, "not a checkpoint of a blockwise or upcycle run (no \"upcycle\" state)");
        }
        if (json_is_object(up)) {
            const char *stage = json_string_value(json_object_get(up, "stage"));
            t->stage = stage && strcmp(stage, "global") == 0;
            t->block = (int)json_integer_value(json_object_get(up, "block"));
            t->block_step = (long)json_integer_value(json_object_get(up, "block_step"));
            t->streak = (long)json_integer_value(json_object_get(up, "streak"));
            t->step0 = (long)json_integer_value(json_object_get(up, "step0"));
            if (json_is_object(json_object_get(up, "info"))) {
                json_decref(t->info);
                t->info = json_deep_copy(json_object_get(up, "info"));
            }
        }
        json_decref(extra);
        if ((t->stage || !t->staged) && st->step - t->step0 > c->steps)
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
        if (!t->staged && c->phase != CB_PHASE_DISTILL) CB_TRY(setup_fsdp(t, e));
    } else if (dist->mpi && c->bucket_floats > 0 && !t->staged && c->phase != CB_PHASE_DISTILL &&
               cb_dist_can_start(dist, t->be)) { /* ddp: sums in buckets during backward */
        CB_TRY(cb_grad_buckets_init(&t->buckets, dist, t->be, &t->prog, &m->params, c->bucket_floats, e));
        t->bucketed = 1;
    }

    if (c->phase == CB_PHASE_DISTILL) CB_TRY(setup_teacher(t, e));
    if (t->staged && !t->stage) return CB_OK; /* the loader starts with the fine-tuning */
    return start_loader(t, d, st->data_position, e);
}

static int is_eval_step(const cb_train_config *c, long step) {
    return step == c->steps || (c->eval_every > 0 && step % c->eval_every == 0);
}

/* The weight and gradient buffers' memory at the peak of the first step (the largest of
 * any rank), for run.json: what fsdp's hooks saw, or the buffers as they are now. */
static int record_memory(trainer *t, cb_train_result *res, cb_error *e) {
    const cb_dist *dist = ranks(t);
    const size_t n = t->m->params.total_floats;
    double *all = calloc(2 * (size_t)dist->world, sizeof *all);
    if (!all) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    all[2 * dist->rank] = (double)(t->have_fsdp ? t->fsdp.peak_w : cb_fsdp_resident(t->be, t->dev.weights, n));
    all[2 * dist->rank + 1] = (double)(t->have_fsdp ? t->fsdp.peak_g : cb_fsdp_resident(t->be, t->dev.grads, n));
    int rc = cb_dist_sum_f64(dist, all, 2 * (size_t)dist->world, e); /* each rank's in its slots */
    for (int r = 0; rc == CB_OK && r < dist->world; r++) {
        if (all[2 * r] / 1048576.0 > res->weights_mb) res->weights_mb = all[2 * r] / 1048576.0;
        if (all[2 * r + 1] / 1048576.0 > res->grads_mb) res->grads_mb = all[2 * r + 1] / 1048576.0;
    }
    res->buffer_mb = (double)(n * sizeof(float)) / 1048576.0;
    free(all);
    return rc;
}

static int train_loop(trainer *t, const cb_train_data *d, cb_train_result *res, cb_error *e) {
    const cb_train_config *c = t->c;
    cb_model *m = t->m;
    cb_backend *be = t->be;
    size_t n_floats = m->params.total_floats;
    float *w = t->dev.weights, *g = t->dev.grads;
    uint64_t step_tokens = (uint64_t)c->batch_size * (uint64_t)c->block_size * (uint64_t)c->grad_accum;
    const cb_dist *dist = ranks(t);
    long saved_at = -1, first_step = t->st.step + 1;
    while (t->st.step - t->step0 < c->steps) {
        long step = t->st.step + 1, local = step - t->step0; /* local: the step of this stage */
        double t0 = cb_clock_s();
        if (t->have_fsdp) /* the rest of the buffer was released (reads zero) when it was summed */
            be->zero(be, g + t->fsdp.own_lo, (t->fsdp.own_hi - t->fsdp.own_lo) * sizeof(float));
        else
            be->zero(be, g, n_floats * sizeof(float));
        if (t->have_fsdp) t->fsdp.measuring = step == first_step;
        double loss_sum = 0;
        for (int k = 0; k < c->grad_accum; k++) {
            const int32_t *x, *y;
            cb_prefetch_take(&t->prefetch, &x, &y);
            rank_rows(t, &x, &y);
            CB_TRY(place_batch(t, &x, &y, e));
            t->run.dropout_seed = cb_rng_next(&t->rng);
            if (c->phase == CB_PHASE_DISTILL) {
                double l;
                CB_TRY(distill_micro(t, w, g, x, y, &l, e));
                loss_sum += l;
            } else {
                if (t->have_fsdp) cb_fsdp_begin(&t->fsdp, w, g);
                /* the last micro-batch's backward sends the gradients in buckets as they
                   become final (dist/buckets.h); earlier ones only accumulate */
                if (t->bucketed && k == c->grad_accum - 1) {
                    cb_grad_buckets_begin(&t->buckets, g, n_floats);
                    t->run.on_backward = cb_grad_buckets_op_done;
                    t->run.on_backward_ctx = &t->buckets;
                }
                /* fsdp: every micro-batch's gradients summed by block as they become final */
                if (t->have_fsdp) {
                    t->run.on_backward = cb_fsdp_on_backward;
                    t->run.on_backward_ctx = &t->fsdp;
                }
                loss_sum += cb_run_step(&t->run, &t->prog, w, g, x, y);
                t->run.on_backward = NULL;
                if (t->have_fsdp) CB_TRY(cb_fsdp_finish(&t->fsdp, e));
            }
        }
        CB_TRY(be->synchronize(be, e)); /* a device fault in the passes surfaces here, named */
        if (step == first_step && dist->mpi) CB_TRY(record_memory(t, res, e));
        /* data parallel: the sums over ranks, once a step (after the last micro-batch) */
        CB_TRY(cb_dist_sum_f64(dist, &loss_sum, 1, e));
        int parts = c->grad_accum * dist->world;
        double loss = parts == 1 ? loss_sum : loss_sum / parts;
        if (!isfinite(loss)) return cb_fail(e, CB_E_RUNTIME, "", "step %ld: the loss is %s", step, isnan(loss) ? "nan" : "inf");
        double lr = cb_schedule_lr(&c->schedule, local - 1), norm;
        if (t->sharded) {
            CB_TRY(cb_shard_step(&t->shard, dist, be, &t->opt, t->have_fsdp ? &t->fsdp : NULL, w, g,
                                 1.0f / (float)parts, c->grad_clip, lr, &norm, e));
        } else {
            if (t->bucketed) CB_TRY(cb_grad_buckets_finish(&t->buckets, e));
            else CB_TRY(cb_dist_sum_f32(dist, be, g, n_floats, e));
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
        if (d->have_val && is_eval_step(c, local)) {
            row.val_loss = evaluate(t, &d->val, e);
            if (isnan(row.val_loss) && e->code) return e->code;
            row.val_ppl = exp(row.val_loss);
            res->val_loss = row.val_loss;
        }
        res->loss = loss;
        res->step = step;
        if (t->bucketed) res->grad_buckets = t->buckets.buckets;
        int logged = local == 1 || local % c->log_every == 0 || local == c->steps || !isnan(row.val_loss);
        if (logged && t->have_metrics) CB_TRY(cb_metrics_log(&t->metrics, &row, e));
        if (t->io->progress) {
            cb_progress_step(t->io->progress, step, loss, row.tok_s, logged);
            if (!isnan(row.val_loss))
                cb_progress_note(t->io->progress, "step %ld: val_loss %.4f  val_ppl %.2f", step, row.val_loss,
                                 row.val_ppl);
        }
        int stopping = 0; /* a stop any rank saw stops every rank after the same step */
        CB_TRY(cb_dist_any(dist, t->io->stop && *t->io->stop, &stopping, e));
        if (stopping || local == c->steps || (c->save_every > 0 && local % c->save_every == 0)) {
            CB_TRY(save(t, res, e));
            saved_at = step;
            if (t->io->progress && !stopping && local != c->steps)
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


/* ---- blockwise distillation ---- */

/* The attention-output L1 of the student to the teacher (mean over layers) on the first
 * batch of the validation data (or of the training data). */
static double attention_l1(trainer *t, cb_attn_pair *ap, const float *tw, const cb_train_data *d, cb_error *e) {
    cb_batcher vb;
    const cb_dataset *ds = d->have_val ? &d->val : &d->train;
    if (cb_batcher_init(&vb, ds, t->prog.B, t->prog.T, 0, t->c->seed, e) != CB_OK) return NAN;
    size_t n = (size_t)t->prog.B * t->prog.T;
    int32_t *x = cb_malloc(2 * n, sizeof *x, e);
    if (!x) return NAN;
    cb_batcher_next(&vb, x, x + n);
    const int32_t *bx = x, *by = x + n;
    double l1 = place_batch(t, &bx, &by, e) == CB_OK ? cb_attn_pair_l1(ap, tw, t->dev.weights, bx, NULL, e) : NAN;
    free(x);
    return l1;
}

/* The teacher's input and output of layer k for training batch `batch` (tokens x on
 * the device): from the cache, or computed (and cached when asked). *tin is device
 * memory unless *tin_on_host; *tout is host memory. */
static int teacher_layer(trainer *t, cb_attn_pair *ap, const float *tw, const int32_t *x, uint64_t batch, int k,
                         cb_teacher_cache *cache, float *cache_buf, float *tout_host, const float **tin,
                         int *tin_on_host, const float **tout, cb_error *e) {
    const size_t N = (size_t)ap->B * ap->T * ap->d;
    if (cache) {
        cb_error miss;
        const float *all = NULL;
        if (cb_teacher_cache_get(cache, batch, cache_buf, &all, &miss) != CB_OK) {
            CB_TRY(cb_attn_pair_teacher(ap, tw, x, ap->n - 1, e));
            for (int j = 0; j < ap->n; j++) {
                float *a = cache_buf + (size_t)2 * j * N, *b = a + N;
                const float *ha = cb_attn_pair_host(ap, a, cb_attn_pair_teacher_in(ap, j), N, e);
                const float *hb = ha ? cb_attn_pair_host(ap, b, cb_attn_pair_teacher_out(ap, j), N, e) : NULL;
                if (!hb) return e->code;
                if (ha != a) memcpy(a, ha, N * sizeof(float));
                if (hb != b) memcpy(b, hb, N * sizeof(float));
            }
            CB_TRY(cb_teacher_cache_put(cache, batch, cache_buf, e));
            all = cache_buf;
        }
        *tin = all + (size_t)2 * k * N;
        *tin_on_host = 1;
        *tout = *tin + N;
        return CB_OK;
    }
    CB_TRY(cb_attn_pair_teacher(ap, tw, x, k, e));
    *tin = cb_attn_pair_teacher_in(ap, k);
    *tin_on_host = 0;
    *tout = cb_attn_pair_host(ap, tout_host, cb_attn_pair_teacher_out(ap, k), N, e);
    return *tout ? CB_OK : e->code;
}

/* Bytes of teacher outputs kept in memory before the cache goes to disk:
 * CB_TEACHER_CACHE_MB (MiB), default 1024. */
static size_t cache_budget(void) {
    const char *s = getenv("CB_TEACHER_CACHE_MB");
    char *end;
    long mb = s && *s ? strtol(s, &end, 10) : 1024;
    if (s && *s && (*end || mb < 0)) mb = 1024;
    return (size_t)mb << 20;
}

static int block_done(const cb_train_config *c, long steps, long streak) {
    if (c->convergence_target > 0) return streak >= c->convergence_patience || steps >= c->max_steps_per_block;
    return steps >= c->blockwise_steps;
}

/* Every attention layer in turn, from where the run stands; then the switch to the
 * global stage (its checkpoint, so a resume after it does not distil again). */
static int blockwise_stage(trainer *t, const cb_train_data *d, cb_train_result *res, cb_error *e) {
    const cb_train_config *c = t->c;
    cb_backend *be = t->be;
    const cb_model *teacher = t->io->teacher;
    if (!teacher) return cb_fail(e, CB_E_USAGE, "", "phase %s needs a teacher", c->phase == CB_PHASE_UPCYCLE ? "upcycle" : "blockwise");
    const float *tw = teacher->weights;
    float *tw_dev = NULL;
    if (!be->unified) {
        size_t bytes = teacher->params.total_floats * sizeof(float);
        if (!(tw_dev = be->alloc(be, bytes, e))) return e->code;
        if (be->upload(be, tw_dev, teacher->weights, bytes, e) != CB_OK) {
            be->free(be, tw_dev);
            return e->code;
        }
        tw = tw_dev;
    }
    cb_attn_pair ap;
    int rc = cb_attn_pair_init(&ap, be, teacher, t->m, c->batch_size, c->block_size, e);
    if (rc != CB_OK) {
        be->free(be, tw_dev);
        return rc;
    }
    const size_t BT = (size_t)c->batch_size * c->block_size, N = BT * (size_t)ap.d;
    int32_t *tok = cb_malloc(2 * BT, sizeof *tok, e);
    float *dout = cb_malloc(N, sizeof *dout, e), *hs = cb_malloc(N, sizeof *hs, e), *ht = cb_malloc(N, sizeof *ht, e);
    float *cache_buf = c->cache_teacher ? cb_malloc((size_t)2 * ap.n * N, sizeof *cache_buf, e) : NULL;
    if (!tok || !dout || !hs || !ht || (c->cache_teacher && !cache_buf)) rc = CB_E_RUNTIME;
    cb_teacher_cache cache_store, *cache = NULL;
    if (rc == CB_OK && c->cache_teacher) {
        long max_batches = c->convergence_target > 0 ? c->max_steps_per_block : c->blockwise_steps;
        rc = cb_teacher_cache_init(&cache_store, t->io->run_dir, ap.n, c->batch_size, c->block_size, ap.d, max_batches,
                                   cache_budget(), e);
        if (rc == CB_OK) cache = &cache_store;
    }
    if (rc == CB_OK && !json_object_get(t->info, "attention_l1_surgery")) {
        double l1 = attention_l1(t, &ap, tw, d, e);
        if (isnan(l1)) rc = e->code ? e->code : CB_E_RUNTIME;
        else json_object_set_new(t->info, "attention_l1_surgery", json_real(l1));
    }
    if (t->io->progress) /* distillation's steps, at most, then fine-tuning's */
        t->io->progress->total = t->st.step + (long)(ap.n - t->block) *
                                     (c->convergence_target > 0 ? c->max_steps_per_block : c->blockwise_steps) -
                                 t->block_step + c->steps;
    json_t *blocks = json_object_get(t->info, "block_steps");
    if (!blocks) json_object_set_new(t->info, "block_steps", blocks = json_array());
    int stopping = 0;
    for (; rc == CB_OK && t->block < ap.n && !stopping; t->block++, t->block_step = 0, t->streak = 0) {
        const cb_op *op = &ap.sp.ops[ap.s_op[t->block]];
        cb_layer_optimizer lopt;
        size_t lo, hi;
        rc = cb_layer_optimizer_init(&lopt, &t->opt, op, &lo, &hi, e);
        if (rc != CB_OK) break;
        lopt.view.t = (uint64_t)t->block_step;
        if (t->block_step == 0) { /* the layer's optimizer starts afresh */
            be->zero(be, t->dev.opt_m + lo, (hi - lo) * sizeof(float));
            if (t->dev.opt_v) be->zero(be, t->dev.opt_v + lo, (hi - lo) * sizeof(float));
        }
        cb_batcher b;
        rc = cb_batcher_init(&b, &d->train, c->batch_size, c->block_size, 1, data_seed(c, "blockwise"), e);
        while (rc == CB_OK && !block_done(c, t->block_step, t->streak)) {
            double t0 = cb_clock_s();
            b.position = (uint64_t)t->block_step; /* every layer sees the same batches: one teacher pass each */
            cb_batcher_next(&b, tok, tok + BT);
            const int32_t *x = tok, *y = tok + BT;
            const float *tin = NULL, *tout = NULL, *sout = NULL;
            int tin_host = 0;
            rc = place_batch(t, &x, &y, e);
            if (rc == CB_OK)
                rc = teacher_layer(t, &ap, tw, x, (uint64_t)t->block_step, t->block, cache, cache_buf, ht, &tin, &tin_host,
                                   &tout, e);
            if (rc == CB_OK) rc = cb_attn_pair_student_forward(&ap, t->dev.weights, t->block, tin, tin_host, &sout, e);
            const float *hsout = rc == CB_OK ? cb_attn_pair_host(&ap, hs, sout, N, e) : NULL;
            if (!hsout) {
                rc = rc ? rc : e->code;
                break;
            }
            double loss = cb_blockwise_loss(dout, hsout, tout, N, c->blockwise_mse);
            if (!isfinite(loss)) {
                rc = cb_fail(e, CB_E_RUNTIME, "", "step %ld (layer %d): the distillation loss is %s", t->st.step + 1,
                             t->block, isnan(loss) ? "nan" : "inf");
                break;
            }
            be->zero(be, t->dev.grads + lo, (hi - lo) * sizeof(float));
            rc = cb_attn_pair_student_backward(&ap, t->dev.weights, t->dev.grads, t->block, dout, e);
            if (rc != CB_OK) break;
            double norm = be->grad_clip(be, t->dev.grads + lo, hi - lo, c->grad_clip);
            if (!isfinite(norm)) {
                rc = cb_fail(e, CB_E_RUNTIME, "", "step %ld (layer %d): the gradient norm is %s", t->st.step + 1,
                             t->block, isnan(norm) ? "nan" : "inf");
                break;
            }
            double lr = c->schedule.lr; /* a constant rate: each layer is a short problem of its own */
            be->optimizer_step(be, &lopt.view, t->dev.weights, t->dev.grads, t->dev.opt_m, t->dev.opt_v, lr);
            t->block_step++;
            t->st.step++;
            t->st.tokens += BT;
            t->streak = c->convergence_target > 0 && loss <= c->convergence_target ? t->streak + 1 : 0;
            double seconds = cb_clock_s() - t0;
            int last = block_done(c, t->block_step, t->streak);
            cb_metric_row row = {.step = t->st.step, .loss = loss, .lr = lr, .grad_norm = norm, .tokens = t->st.tokens,
                                 .tok_s = seconds > 0 ? (double)BT / seconds : 0, .val_loss = NAN, .val_ppl = NAN,
                                 .phase = "blockwise", .block = t->block};
            res->loss = loss;
            res->step = t->st.step;
            int logged = t->block_step == 1 || t->block_step % c->log_every == 0 || last;
            if (logged) rc = cb_metrics_log(&t->metrics, &row, e);
            if (rc != CB_OK) break;
            if (t->io->progress) cb_progress_step(t->io->progress, t->st.step, loss, row.tok_s, logged);
            stopping = t->io->stop && *t->io->stop;
            if (last && !stopping) break; /* the layer's end is saved with the next layer's position */
            if (stopping || (c->save_every > 0 && t->st.step % c->save_every == 0)) rc = save(t, res, e);
            if (stopping) break;
        }
        cb_layer_optimizer_free(&lopt);
        if (rc == CB_OK && !stopping) json_array_append_new(blocks, json_integer(t->block_step));
        if (stopping) break;
    }
    if (rc == CB_OK && stopping) {
        res->interrupted = 1;
    } else if (rc == CB_OK) {
        double l1 = attention_l1(t, &ap, tw, d, e);
        if (isnan(l1)) rc = e->code ? e->code : CB_E_RUNTIME;
        else json_object_set_new(t->info, "attention_l1_distilled", json_real(l1));
        t->stage = 1; /* on to fine-tuning: its optimizer starts afresh */
        t->step0 = t->st.step;
        if (t->io->progress) t->io->progress->total = t->step0 + c->steps;
        if (rc == CB_OK) {
            size_t bytes = param_bytes(t);
            be->zero(be, t->dev.opt_m, bytes);
            if (t->dev.opt_v) be->zero(be, t->dev.opt_v, bytes);
            t->opt.t = 0;
        }
        if (rc == CB_OK && d->have_val && c->phase == CB_PHASE_UPCYCLE) {
            double v = evaluate(t, &d->val, e);
            if (isnan(v)) rc = e->code ? e->code : CB_E_RUNTIME;
            else json_object_set_new(t->info, "val_loss_before_global", json_real(v));
        }
        if (rc == CB_OK) rc = save(t, res, e);
    }
    free(tok);
    free(dout);
    free(hs);
    free(ht);
    free(cache_buf);
    if (cache) cb_teacher_cache_free(cache);
    cb_attn_pair_free(&ap);
    be->free(be, tw_dev);
    return rc;
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
    t.staged = c->phase == CB_PHASE_BLOCKWISE || c->phase == CB_PHASE_UPCYCLE;
    t.info = json_object();
    char started[32];
    utc_now(started, sizeof started);
    int rc = setup(&t, d, e);
    res->step = t.st.step;
    res->world = ranks(&t)->world;
    if (t.have_prog) {
        const cb_program *pr = &t.prog;
        res->blocks = pr->n_segments;
        res->recompute_blocks = pr->n_recompute;
        res->activation_mb = 4.0 * (double)cb_program_activation_elems(pr) / 1048576.0;
        res->activation_full_mb = 4.0 * (double)(2 * pr->slot_elems + pr->saved_full_elems) / 1048576.0;
    }
    int main_rank = is_main(&t); /* the others write nothing */
    if (rc == CB_OK && main_rank) rc = write_run_json(c, m, io, "running", res, started, t.staged ? t.info : NULL, e);
    if (rc == CB_OK && main_rank) {
        char title[600];
        snprintf(title, sizeof title, "%s/%s", c->group, c->run);
        rc = cb_metrics_open(&t.metrics, io->run_dir, c->instruments, io->resume ? t.st.step : -1, title, e);
        t.have_metrics = rc == CB_OK;
    }
    if (rc == CB_OK && io->progress) {
        io->progress->first = t.st.step;
        io->progress->total = t.step0 + c->steps;
    }
    if (rc == CB_OK && t.staged && !t.stage) rc = blockwise_stage(&t, d, res, e);
    if (rc == CB_OK && !res->interrupted && c->phase != CB_PHASE_BLOCKWISE) {
        if (!t.have_prefetch) rc = start_loader(&t, d, t.st.data_position, e);
        if (rc == CB_OK) rc = train_loop(&t, d, res, e);
    }
    if (io->progress) cb_progress_end(io->progress);
    if (t.have_metrics) {
        cb_error close_e;
        if (cb_metrics_close(&t.metrics, &close_e) != CB_OK && rc == CB_OK) {
            *e = close_e;
            rc = close_e.code;
        }
    }
    if (rc == CB_OK && t.host_dropped) { /* FULL_SHARD: m holds the trained weights again */
        t.host_dropped = 0;
        rc = download_state(&t, e);
    }
    if (rc == CB_OK && !res->interrupted && main_rank) {
        snprintf(res->final_dir, sizeof res->final_dir, "%s/final", io->run_dir);
        rc = cb_model_save_dir(m, res->final_dir, NULL, e);
        if (rc != CB_OK) res->final_dir[0] = 0;
    }
    if (t.have_prog && main_rank) {
        cb_error ignored;
        const char *status = rc != CB_OK ? "failed" : res->interrupted ? "interrupted" : "finished";
        int wrc = write_run_json(c, m, io, status, res, started, t.staged ? t.info : NULL, rc == CB_OK ? e : &ignored);
        if (rc == CB_OK) rc = wrc;
    }
    trainer_free(&t);
    return rc;
}
