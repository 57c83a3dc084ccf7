/* checkpoint.c: saving, finding, pruning and loading training checkpoints. */
#include "train/checkpoint.h"
#include "train/resume.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/atomic_dir.h"
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "train/crc32c.h"

#define CB_CKPT_PATH 4608

static const char *const ckpt_files[] = {"plan.json", "model.safetensors", "optimizer.safetensors"};
#define N_CKPT_FILES (sizeof ckpt_files / sizeof *ckpt_files)

void cb_checkpoint_dir(char *out, size_t n, const char *run_dir, long step) {
    snprintf(out, n, "%s/step-%08ld", run_dir, step);
}

/* the step of a directory entry named "step-NNNNNNNN" (8 or more digits), or -1 */
static long entry_step(const char *name) {
    if (strncmp(name, "step-", 5) != 0) return -1;
    const char *d = name + 5;
    size_t len = strlen(d);
    if (len < 8 || len > 18) return -1;
    for (size_t i = 0; i < len; i++)
        if (d[i] < '0' || d[i] > '9') return -1;
    return strtol(d, NULL, 10);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_long_desc(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

/* keep the newest keep_last step directories (0: all); remove what killed saves of
 * checkpoints and of final/ left (cb_atomic_dir's ".NAME.tmp.XXXXXX") */
static void prune(const char *run_dir, long keep_last) {
    DIR *d = opendir(run_dir);
    if (!d) return;
    long *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *ent;
    char path[CB_CKPT_PATH];
    while ((ent = readdir(d))) {
        long s = entry_step(ent->d_name);
        if (s >= 0) {
            if (n == cap) {
                size_t nc = cap ? 2 * cap : 16;
                long *ns = realloc(steps, nc * sizeof *ns);
                if (!ns) break;
                steps = ns;
                cap = nc;
            }
            steps[n++] = s;
        } else if ((strncmp(ent->d_name, ".step-", 6) == 0 || strncmp(ent->d_name, ".final.", 7) == 0) &&
                   strstr(ent->d_name, ".tmp.")) {
            snprintf(path, sizeof path, "%s/%s", run_dir, ent->d_name); /* cb_atomic_dir's temporary name */
            if (is_dir(path)) cb_remove_tree(path);
        }
    }
    closedir(d);
    if (keep_last > 0 && n > (size_t)keep_last) {
        qsort(steps, n, sizeof *steps, cmp_long_desc);
        for (size_t i = (size_t)keep_last; i < n; i++) {
            cb_checkpoint_dir(path, sizeof path, run_dir, steps[i]);
            cb_remove_tree(path);
        }
    }
    free(steps);
}

static void hex64(char out[17], uint64_t x) { snprintf(out, 17, "%016" PRIx64, x); }

static json_t *state_doc(const cb_model *m, const cb_optimizer *o, const cb_train_state *st, const json_t *files,
                         const json_t *extra) {
    json_t *doc = cb_doc_new("checkpoint");
    if (!doc) return NULL;
    json_t *rng = json_array();
    char hex[17];
    for (int i = 0; i < 4; i++) {
        hex64(hex, st->rng[i]);
        json_array_append_new(rng, json_string(hex));
    }
    const cb_schedule *s = &st->schedule;
    json_t *sched = json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:f}", "kind", cb_schedule_name(s->kind), "position",
                              (json_int_t)st->step, "total", (json_int_t)s->total, "warmup_steps",
                              (json_int_t)s->warmup, "lr", s->lr, "min_lr", s->min_lr, "next_lr",
                              cb_schedule_lr(s, st->step));
    json_t *opt = json_pack("{s:s, s:I}", "kind", cb_optimizer_name(o->cfg.kind), "step", (json_int_t)o->t);
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, st->seed);
    json_object_set_new(doc, "cb_tool_version", json_string(CB_VERSION));
    json_object_set_new(doc, "step", json_integer(st->step));
    json_object_set_new(doc, "data_position", json_integer((json_int_t)st->data_position));
    json_object_set_new(doc, "tokens", json_integer((json_int_t)st->tokens));
    json_object_set_new(doc, "rng_state", rng);
    json_object_set_new(doc, "schedule", sched);
    json_object_set_new(doc, "optimizer", opt);
    json_object_set_new(doc, "plan_sha256", json_string(m->plan_sha256));
    json_object_set_new(doc, "group", json_string(st->group));
    json_object_set_new(doc, "run", json_string(st->run));
    json_object_set_new(doc, "seed", json_integer((json_int_t)st->seed));
    json_object_set(doc, "files", (json_t *)files);
    const char *key;
    json_t *val;
    if (extra)
        json_object_foreach((json_t *)extra, key, val) {
            if (!json_object_get(doc, key)) json_object_set(doc, key, val);
        }
    return doc;
}

/* name the final directory in an error about a file of the temporary one */
static void retarget(cb_error *e, const char *tmp, const char *dir) {
    size_t n = strlen(tmp);
    if (strncmp(e->where, tmp, n) == 0) {
        char rest[sizeof e->where];
        snprintf(rest, sizeof rest, "%s", e->where + n);
        if (snprintf(e->where, sizeof e->where, "%s%s", dir, rest) >= (int)sizeof e->where)
            snprintf(e->where, sizeof e->where, "%s", rest);
    }
}

static int write_files(const char *tmp, const cb_model *m, const cb_optimizer *o, const cb_train_state *st,
                       const json_t *extra, cb_error *e) {
    char path[CB_CKPT_PATH + 128];
    char *text = cb_model_plan_text(m->plan);
    if (!text) return cb_fail(e, CB_E_RUNTIME, tmp, "cannot serialise the plan");
    size_t len = strlen(text);
    text[len] = '\n'; /* plan.json is the text and a newline; the NUL is not written */
    snprintf(path, sizeof path, "%s/plan.json", tmp);
    int rc = cb_atomic_write(path, text, len + 1, e);
    free(text);
    if (rc == CB_OK) {
        snprintf(path, sizeof path, "%s/model.safetensors", tmp);
        rc = cb_model_save_weights(m, path, NULL, e);
    }
    if (rc == CB_OK) {
        snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
        rc = cb_optimizer_save(o, path, m->plan_sha256, e);
    }
    json_t *files = json_object();
    for (size_t i = 0; rc == CB_OK && i < N_CKPT_FILES; i++) {
        uint32_t crc;
        uint64_t size;
        char hex[9];
        snprintf(path, sizeof path, "%s/%s", tmp, ckpt_files[i]);
        rc = cb_crc32c_file(path, &crc, &size, e);
        snprintf(hex, sizeof hex, "%08" PRIx32, crc);
        if (rc == CB_OK)
            json_object_set_new(files, ckpt_files[i], json_pack("{s:I, s:s}", "bytes", (json_int_t)size, "crc32c", hex));
    }
    if (rc == CB_OK) {
        json_t *doc = state_doc(m, o, st, files, extra);
        snprintf(path, sizeof path, "%s/state.json", tmp);
        rc = doc ? cb_doc_save(doc, path, e) : cb_fail(e, CB_E_RUNTIME, path, "out of memory");
        json_decref(doc);
    }
    json_decref(files);
    return rc;
}

int cb_checkpoint_save(const char *run_dir, const cb_model *m, const cb_optimizer *o, const cb_train_state *st,
                       const json_t *extra, long keep_last, char *out, size_t out_n, cb_error *e) {
    char dir[CB_CKPT_PATH];
    cb_checkpoint_dir(dir, sizeof dir, run_dir, st->step);
    cb_atomic_dir ad;
    /* an earlier checkpoint of the same step (it holds state.json) may be replaced */
    CB_TRY(cb_atomic_dir_open(&ad, dir, "state.json", e));
    int rc = write_files(ad.tmp_path, m, o, st, extra, e);
    if (rc != CB_OK) {
        retarget(e, ad.tmp_path, dir);
        cb_atomic_dir_abort(&ad);
        return rc;
    }
    rc = cb_atomic_dir_commit(&ad, e);
    if (rc != CB_OK) {
        retarget(e, ad.tmp_path, dir);
        cb_atomic_dir_abort(&ad);
        return rc;
    }
    if (out) snprintf(out, out_n, "%s", dir);
    prune(run_dir, keep_last);
    return CB_OK;
}

int cb_checkpoint_resolve(const char *dir, char *out, size_t n, cb_error *e) {
    char path[CB_CKPT_PATH];
    snprintf(path, sizeof path, "%s/state.json", dir);
    if (is_file(path)) {
        snprintf(out, n, "%s", dir);
        return CB_OK;
    }
    DIR *d = opendir(dir);
    if (!d) return cb_fail(e, CB_E_IO, dir, "cannot open: %s", strerror(errno));
    long best = -1;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        long s = entry_step(ent->d_name);
        if (s <= best) continue;
        snprintf(path, sizeof path, "%s/%s/state.json", dir, ent->d_name);
        if (is_file(path)) best = s;
    }
    closedir(d);
    if (best < 0) return cb_fail(e, CB_E_IO, dir, "no checkpoint here (no state.json, no step-NNNNNNNN/ with one)");
    cb_checkpoint_dir(out, n, dir, best);
    return CB_OK;
}

static int get_uint(const json_t *doc, const char *key, uint64_t *out, const char *path, cb_error *e) {
    const json_t *v = json_object_get(doc, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return cb_fail(e, CB_E_INVALID, path, "%s: missing or not a non-negative integer", key);
    *out = (uint64_t)json_integer_value(v);
    return CB_OK;
}

static int check_files(const char *dir, const json_t *doc, const char *state_path, cb_error *e) {
    const json_t *files = json_object_get(doc, "files");
    if (!json_is_object(files)) return cb_fail(e, CB_E_INVALID, state_path, "files: missing");
    char path[CB_CKPT_PATH];
    for (size_t i = 0; i < N_CKPT_FILES; i++) {
        const json_t *f = json_object_get(files, ckpt_files[i]);
        const json_t *bytes = json_object_get(f, "bytes"), *crc = json_object_get(f, "crc32c");
        if (!json_is_integer(bytes) || !json_is_string(crc))
            return cb_fail(e, CB_E_INVALID, state_path, "files.%s: missing size or crc32c", ckpt_files[i]);
        snprintf(path, sizeof path, "%s/%s", dir, ckpt_files[i]);
        uint32_t got;
        uint64_t size;
        if (cb_crc32c_file(path, &got, &size, e) != CB_OK) {
            e->code = CB_E_INVALID; /* a checkpoint with a file missing is broken, not a usage error */
            return CB_E_INVALID;
        }
        char hex[9];
        snprintf(hex, sizeof hex, "%08" PRIx32, got);
        if (size != (uint64_t)json_integer_value(bytes))
            return cb_fail(e, CB_E_INVALID, path, "truncated or altered: %" PRIu64 " bytes, state.json says %lld", size,
                           (long long)json_integer_value(bytes));
        if (strcmp(hex, json_string_value(crc)) != 0)
            return cb_fail(e, CB_E_INVALID, path, "corrupt: CRC-32C %s, state.json says %s", hex,
                           json_string_value(crc));
    }
    return CB_OK;
}

static int read_state(const json_t *doc, const char *path, cb_train_state *st, cb_error *e) {
    memset(st, 0, sizeof *st);
    uint64_t step;
    CB_TRY(get_uint(doc, "step", &step, path, e));
    CB_TRY(get_uint(doc, "data_position", &st->data_position, path, e));
    CB_TRY(get_uint(doc, "tokens", &st->tokens, path, e));
    CB_TRY(get_uint(doc, "seed", &st->seed, path, e));
    st->step = (long)step;
    const json_t *rng = json_object_get(doc, "rng_state");
    if (!json_is_array(rng) || json_array_size(rng) != 4)
        return cb_fail(e, CB_E_INVALID, path, "rng_state: not a list of 4 hexadecimal words");
    for (int i = 0; i < 4; i++) {
        const char *s = json_string_value(json_array_get(rng, (size_t)i));
        char *end = NULL;
        errno = 0;
        st->rng[i] = s ? strtoull(s, &end, 16) : 0;
        if (!s || !*s || *end || errno || strlen(s) != 16)
            return cb_fail(e, CB_E_INVALID, path, "rng_state[%d]: not a 16-digit hexadecimal word", i);
    }
    const json_t *sched = json_object_get(doc, "schedule");
    const json_t *kind = json_object_get(sched, "kind"), *total = json_object_get(sched, "total"),
                 *warm = json_object_get(sched, "warmup_steps"), *lr = json_object_get(sched, "lr"),
                 *min_lr = json_object_get(sched, "min_lr");
    st->schedule.kind = cb_schedule_kind(json_string_value(kind));
    if (st->schedule.kind < 0 || !json_is_integer(total) || !json_is_integer(warm) || !json_is_number(lr) ||
        !json_is_number(min_lr))
        return cb_fail(e, CB_E_INVALID, path, "schedule: missing or malformed");
    st->schedule.total = (long)json_integer_value(total);
    st->schedule.warmup = (long)json_integer_value(warm);
    st->schedule.lr = json_number_value(lr);
    st->schedule.min_lr = json_number_value(min_lr);
    const char *run = json_string_value(json_object_get(doc, "run"));
    const char *group = json_string_value(json_object_get(doc, "group"));
    snprintf(st->run, sizeof st->run, "%s", run ? run : "");
    snprintf(st->group, sizeof st->group, "%s", group ? group : "");
    return CB_OK;
}

/* The checkpoint was written under another plan (its plan.json): resumable when the plan
 * was edited only where a resumed run does not depend on it (resume.h). */
static int check_edited_plan(const char *dir, const char *sha, const cb_model *m, const cb_train_state *st,
                             cb_error *e) {
    char path[CB_CKPT_PATH], diff[400];
    snprintf(path, sizeof path, "%s/plan.json", dir);
    json_t *was_plan = json_load_file(path, 0, NULL);
    if (!was_plan)
        return cb_fail(e, CB_E_INVALID, dir, "a checkpoint of another plan (plan_sha256 %.12s..., this plan %.12s...)",
                       sha, m->plan_sha256);
    json_t *was = cb_resume_key(was_plan, st->group, st->run), *now = cb_resume_key(m->plan, st->group, st->run);
    int same = was && now && cb_resume_key_same(was, now, diff, sizeof diff);
    json_decref(was);
    json_decref(now);
    json_decref(was_plan);
    if (same) return CB_OK;
    return cb_fail(e, CB_E_INVALID, dir, "a checkpoint of another plan: %s (a resumed run must keep what its updates "
                   "depend on; a new run can start from its weights: train.student.ckpt)", diff);
}

int cb_checkpoint_load(const char *dir, const char *group, const char *run, cb_model *m, cb_optimizer *o,
                       cb_train_state *st, json_t **extra, cb_error *e) {
    char path[CB_CKPT_PATH], state_path[CB_CKPT_PATH];
    snprintf(state_path, sizeof state_path, "%s/state.json", dir);
    if (!is_file(state_path))
        return cb_fail(e, CB_E_IO, dir, is_dir(dir) ? "not a checkpoint: no state.json" : "no such checkpoint directory");
    json_t *doc;
    CB_TRY(cb_doc_load(state_path, "checkpoint", &doc, e));
    int rc = CB_OK;
    const char *sha = json_string_value(json_object_get(doc, "plan_sha256"));
    if (!sha) rc = cb_fail(e, CB_E_INVALID, state_path, "plan_sha256: missing");
    if (rc == CB_OK) rc = read_state(doc, state_path, st, e);
    if (rc == CB_OK && strcmp(sha, m->plan_sha256) != 0) rc = check_edited_plan(dir, sha, m, st, e);
    if (rc == CB_OK && group && run && (strcmp(st->run, run) != 0 || strcmp(st->group, group) != 0))
        rc = cb_fail(e, CB_E_INVALID, dir, "a checkpoint of run %s/%s, not of %s/%s", st->group, st->run, group, run);
    if (rc == CB_OK) rc = check_files(dir, doc, state_path, e);
    if (rc == CB_OK) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = cb_model_load_weights(m, path, e);
    }
    if (rc == CB_OK) {
        snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
        rc = cb_optimizer_load(o, path, e);
    }
    if (rc == CB_OK && extra) *extra = doc;
    else json_decref(doc);
    return rc;
}
