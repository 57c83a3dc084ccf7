/* config.c: a training run's settings from the plan (see config.h). */
#include "train/config.h"

#include <stdio.h>
#include <string.h>
#include "backend/backend.h"
#include "core/json_doc.h"
#include "manifest/schema_table.h"

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static double num(const json_t *o, const char *key, double dflt) {
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static long integer(const json_t *o, const char *key, long dflt) {
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long)json_integer_value(v) : dflt;
}

static int copy_str(char *dst, size_t n, const char *src, const json_t *holder, const char *key, cb_error *e) {
    if ((size_t)snprintf(dst, n, "%s", src ? src : "") >= n)
        return cb_fail(e, CB_E_INVALID, cb_loc(holder, key), "train.%s: too long", key);
    return CB_OK;
}

static int is_train_run(const json_t *run) {
    const char *mode = str(run, "mode");
    return !mode || strcmp(mode, "train") == 0;
}

int cb_train_find_run(const json_t *plan, const char *group, const char *run, const json_t **group_out,
                      const json_t **run_out, cb_error *e) {
    const json_t *groups = json_object_get(plan, "groups");
    size_t n = json_is_array(groups) ? json_array_size(groups) : 0;
    if (n == 0) return cb_fail(e, CB_E_USAGE, "", "the plan has no groups of runs");
    const json_t *g_found = NULL, *r_found = NULL;
    int hits = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *g = json_array_get(groups, i);
        const char *name = str(g, "name");
        if (group && (!name || strcmp(name, group) != 0)) continue;
        if (!group && !run && n > 1)
            return cb_fail(e, CB_E_USAGE, "", "the plan has %zu groups: choose one with --group", n);
        const json_t *runs = json_object_get(g, "runs");
        for (size_t k = 0; k < json_array_size(runs); k++) {
            const json_t *r = json_array_get(runs, k);
            const char *id = str(r, "id");
            if (run ? (id && strcmp(id, run) == 0) : is_train_run(r)) {
                if (!run && g_found == g) continue; /* the group's first training run */
                hits++;
                g_found = g;
                r_found = r;
            }
        }
        if (group && !g_found) {
            return run ? cb_fail(e, CB_E_USAGE, "", "group %s has no run %s", group, run)
                       : cb_fail(e, CB_E_USAGE, "", "group %s has no training run", group);
        }
        if (group) break;
    }
    if (group && !g_found) return cb_fail(e, CB_E_USAGE, "", "the plan has no group %s", group);
    if (!r_found) return cb_fail(e, CB_E_USAGE, "", run ? "no group has a run %s" : "the plan has no training run", run);
    if (hits > 1) return cb_fail(e, CB_E_USAGE, "", "run %s is in %d groups: choose one with --group", run, hits);
    *group_out = g_found;
    *run_out = r_found;
    return CB_OK;
}

static int read_instruments(cb_train_config *c, const json_t *train, cb_error *e) {
    const json_t *v = json_object_get(train, "instrument");
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_is_array(v) ? json_array_get(v, i) : v;
        const char *s = json_is_string(x) ? json_string_value(x) : "jsonl";
        if (strcmp(s, "jsonl") == 0) continue;
        else if (strcmp(s, "hdf5") == 0) c->instruments |= CB_INSTR_HDF5;
        else if (strcmp(s, "tensorboard") == 0) c->instruments |= CB_INSTR_TENSORBOARD;
        else if (strcmp(s, "live") == 0) c->instruments |= CB_INSTR_LIVE;
        else if (strcmp(s, "rich") == 0) c->instruments |= CB_INSTR_RICH;
        else return cb_fail(e, CB_E_INVALID, cb_loc(train, "instrument"), "train.instrument: unknown %s", s);
    }
    return CB_OK;
}

/* initial weights: train.student (ckpt or run), else the teacher (ckpt, run or
 * teacher_ckpt), else surgery from the teacher (a student of phase upcycle or blockwise
 * without weights of its own); the teacher of the phases that train against it */
static int read_init(cb_train_config *c, const json_t *train, cb_error *e) {
    const json_t *student = json_object_get(train, "student"), *teacher = json_object_get(train, "teacher");
    c->student = json_is_object(student) && json_is_object(json_object_get(student, "overrides"));
    int student_weights = json_is_object(student) && (json_object_get(student, "ckpt") || json_object_get(student, "run"));
    if (json_is_object(teacher)) {
        CB_TRY(copy_str(c->teacher_ckpt, sizeof c->teacher_ckpt, str(teacher, "ckpt"), teacher, "ckpt", e));
        CB_TRY(copy_str(c->teacher_run, sizeof c->teacher_run, str(teacher, "run"), teacher, "run", e));
    }
    if (!c->teacher_ckpt[0] && !c->teacher_run[0] && str(train, "teacher_ckpt"))
        CB_TRY(copy_str(c->teacher_ckpt, sizeof c->teacher_ckpt, str(train, "teacher_ckpt"), train, "teacher_ckpt", e));
    int has_teacher = c->teacher_ckpt[0] || c->teacher_run[0];
    c->surgery = (c->phase == CB_PHASE_UPCYCLE || c->phase == CB_PHASE_BLOCKWISE) && !student_weights;
    if ((c->phase == CB_PHASE_UPCYCLE || c->phase == CB_PHASE_BLOCKWISE || c->phase == CB_PHASE_DISTILL) && !has_teacher)
        return cb_fail(e, CB_E_INVALID, cb_loc(train, "phase"), "train.phase: %s needs a teacher (train.teacher)",
                       str(train, "phase"));
    if (c->surgery && !c->student)
        return cb_fail(e, CB_E_INVALID, cb_loc(train, "phase"),
                       "train.phase: %s makes a student by surgery, which needs train.student.overrides",
                       str(train, "phase"));
    if (c->surgery) {
        snprintf(c->init_from, sizeof c->init_from, "surgery");
        return CB_OK;
    }
    /* a student of another architecture never takes the teacher's weights as they are */
    const json_t *src = student_weights ? student : json_is_object(teacher) && !c->student ? teacher : NULL;
    snprintf(c->init_from, sizeof c->init_from, "%s", src == student && src ? "student" : src ? "teacher" : "");
    if (src) {
        CB_TRY(copy_str(c->init_ckpt, sizeof c->init_ckpt, str(src, "ckpt"), src, "ckpt", e));
        CB_TRY(copy_str(c->init_run, sizeof c->init_run, str(src, "run"), src, "run", e));
    }
    if (!c->init_ckpt[0] && !c->init_run[0] && !c->student && str(train, "teacher_ckpt")) {
        CB_TRY(copy_str(c->init_ckpt, sizeof c->init_ckpt, str(train, "teacher_ckpt"), train, "teacher_ckpt", e));
        snprintf(c->init_from, sizeof c->init_from, "teacher");
    }
    if (!c->init_ckpt[0] && !c->init_run[0]) c->init_from[0] = 0;
    return CB_OK;
}

/* strategy and fsdp_sharding_strategy (dist/dist.h, train/shard.h) */
static int read_strategy(cb_train_config *c, const json_t *train, const json_t *given, cb_error *e) {
    const char *strategy = str(train, "strategy"), *sharding = str(train, "fsdp_sharding_strategy");
    if (!strategy || strcmp(strategy, "fsdp") != 0) {
        c->bucket_floats = (size_t)(num(train, "bucket_cap_mb", 25.0) * 1048576.0 / sizeof(float));
        return CB_OK;
    }
    (void)given, (void)e;
    c->full_shard = sharding && strcmp(sharding, "FULL_SHARD") == 0;
    c->shard_optimizer = !sharding || strcmp(sharding, "SHARD_GRAD_OP") == 0 || c->full_shard;
    /* fsdp_activation_checkpointing is PyTorch FSDP's name for activation_checkpointing */
    if (json_is_true(json_object_get(train, "fsdp_activation_checkpointing"))) c->recompute = 1;
    return CB_OK;
}

static int phase_of(const char *name) {
    static const char *const names[] = {"standard", "global", "blockwise", "upcycle", "distill"};
    for (int i = 0; i < 5; i++)
        if (name && strcmp(name, names[i]) == 0) return i;
    return -1;
}

int cb_train_config_read(cb_train_config *c, const json_t *group, const json_t *run, cb_error *e) {
    memset(c, 0, sizeof *c);
    snprintf(c->group, sizeof c->group, "%s", str(group, "name") ? str(group, "name") : "");
    snprintf(c->run, sizeof c->run, "%s", str(run, "id") ? str(run, "id") : "");
    snprintf(c->exp, sizeof c->exp, "%s", str(run, "exp") ? str(run, "exp") : "");
    if (!is_train_run(run))
        return cb_fail(e, CB_E_USAGE, cb_loc(run, "mode"), "run %s is mode %s, not train", c->run, str(run, "mode"));
    const json_t *given = json_object_get(run, "train");
    json_t *train = json_is_object(given) ? json_copy((json_t *)given) : json_object();
    if (!train) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    cb_schema_fill_object(train, &cb_train_schema, 0);
    int rc = CB_OK;
    const char *phase = str(train, "phase");
    c->phase = phase ? phase_of(phase) : CB_PHASE_STANDARD;
    if (c->phase < 0) rc = cb_fail(e, CB_E_USAGE, cb_loc(given, "phase"), "train.phase: unknown phase %s", phase);
    const char *device = str(train, "device"), *dtype = str(train, "dtype");
    cb_backend *be;
    snprintf(c->device, sizeof c->device, "%s", device ? device : "auto");
    /* a named device must be built and present (cuda: when the build found nvcc);
     * auto always is, and is left unopened here: a GPU is set up only when used */
    if (rc == CB_OK && strcmp(c->device, "auto") != 0 && cb_backend_open(c->device, &be, e) != CB_OK) {
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", e->msg);
        rc = cb_fail(e, CB_E_USAGE, cb_loc(given, "device"), "train.device: %s", why);
    }
    if (rc == CB_OK && dtype && strcmp(dtype, "float32") != 0 && strcmp(dtype, "auto") != 0)
        rc = cb_fail(e, CB_E_USAGE, cb_loc(given, "dtype"),
                     "train.dtype: %s is not in this build (the CPU trainer is float32)", dtype);

    c->seed = (uint64_t)integer(train, "seed", integer(run, "seed", 1337));
    c->steps = integer(train, "steps", integer(run, "steps", -1));
    if (c->phase == CB_PHASE_BLOCKWISE && c->steps < 0) c->steps = 0; /* its steps are per layer */
    if (rc == CB_OK && c->steps < 0)
        rc = cb_fail(e, CB_E_INVALID, cb_loc(run, NULL), "run %s: no steps (run.steps or train.steps)", c->run);
    if (rc == CB_OK) rc = copy_str(c->data, sizeof c->data, str(train, "data"), given, "data", e);
    if (rc == CB_OK) rc = copy_str(c->val_split, sizeof c->val_split, str(train, "val_split"), given, "val_split", e);
    if (rc == CB_OK) rc = copy_str(c->resume, sizeof c->resume, str(train, "resume"), given, "resume", e);
    c->val_frac = num(train, "val_frac", 0.05);
    const json_t *batch = json_object_get(train, "batch_size");
    c->batch_auto = json_is_string(batch) && strcmp(json_string_value(batch), "auto") == 0;
    c->batch_size = c->batch_auto ? 0 : (int)integer(train, "batch_size", 8);
    if (rc == CB_OK && !c->batch_auto && batch && !(json_is_integer(batch) && json_integer_value(batch) >= 1))
        rc = cb_fail(e, CB_E_USAGE, cb_loc(given, "batch_size"), "train.batch_size: expected an integer >= 1 or auto");
    c->block_size = (int)integer(train, "block_size", 512);
    c->grad_accum = (int)integer(train, "grad_accum", 1);

    c->schedule.kind = cb_schedule_kind(str(train, "lr_schedule"));
    if (c->schedule.kind < 0) c->schedule.kind = CB_SCHED_COSINE;
    c->schedule.lr = num(train, "lr", 3e-4);
    c->schedule.min_lr = num(train, "min_lr", 0);
    c->schedule.warmup = integer(train, "warmup_steps", 0);
    c->schedule.total = c->steps;

    cb_optimizer_config *o = &c->optimizer;
    o->kind = cb_optimizer_kind(str(train, "optimizer"));
    if (o->kind < 0) o->kind = CB_OPT_ADAMW;
    const json_t *betas = json_object_get(train, "betas");
    o->beta1 = json_is_array(betas) ? json_number_value(json_array_get(betas, 0)) : 0.9;
    o->beta2 = json_is_array(betas) ? json_number_value(json_array_get(betas, 1)) : 0.95;
    o->eps = num(train, "eps", 1e-8);
    o->momentum = num(train, "momentum", 0.9);
    o->weight_decay = num(train, "weight_decay", 0);
    o->decay_norms_and_biases = json_is_true(json_object_get(train, "decay_norms_and_biases"));
    o->decay_embeddings = !json_is_false(json_object_get(train, "decay_embeddings"));

    c->grad_clip = num(train, "grad_clip", 1.0);
    c->recompute = json_is_true(json_object_get(train, "activation_checkpointing"));
    c->recompute_mb = num(train, "activation_checkpoint_threshold_mb", 0);
    c->log_every = integer(train, "log_every", 10);
    c->eval_every = integer(train, "eval_every", 100);
    c->eval_iters = integer(train, "eval_iters", 20);
    c->save_every = integer(train, "save_every", 0);
    c->keep_last = integer(train, "keep_last", 2);
    c->prefetch = (int)integer(train, "prefetch", 2);
    c->wandb = json_is_true(json_object_get(train, "wandb"));
    if (rc == CB_OK)
        rc = copy_str(c->wandb_project, sizeof c->wandb_project, str(train, "wandb_project"), given, "wandb_project", e);
    if (rc == CB_OK)
        rc = copy_str(c->wandb_entity, sizeof c->wandb_entity, str(train, "wandb_entity"), given, "wandb_entity", e);
    if (rc == CB_OK) rc = read_instruments(c, train, e);
    c->blockwise_steps = integer(train, "blockwise_steps", 100);
    c->blockwise_mse = str(train, "blockwise_loss") && strcmp(str(train, "blockwise_loss"), "mse") == 0;
    c->convergence_target = num(train, "convergence_target", 0);
    c->convergence_patience = integer(train, "convergence_patience", 50);
    c->max_steps_per_block = integer(train, "max_steps_per_block", 10 * c->blockwise_steps);
    c->cache_teacher = json_is_true(json_object_get(train, "cache_teacher_outputs"));
    c->distill_temperature = num(train, "distill_temperature", 1.0);
    c->distill_alpha = num(train, "distill_alpha", 0.5);
    if (rc == CB_OK) rc = read_init(c, train, e);
    if (rc == CB_OK) rc = read_strategy(c, train, given, e);
    json_decref(train);
    return rc;
}

int cb_train_keeps_logits(const cb_train_config *c, int fsdp) { return c->phase == CB_PHASE_DISTILL || fsdp; }
