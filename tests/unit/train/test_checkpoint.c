/* test_checkpoint.c: checkpoints written and read back exactly; pruning to keep_last;
 * corrupt, truncated, missing and foreign checkpoints refused naming the file; a save
 * that fails (a file-size limit standing in for a full disk) leaves the earlier one. */
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/atomic_file.h"
#include "core/atomic_dir.h"
#include "model/model.h"
#include "model_util.h"
#include "test.h"
#include "train/checkpoint.h"
#include "unit/train/train_util.h"

static const char *YAML =
    "version: 1\nname: ckpt\nmodel:\n  type: TransformerModel\n"
    "  embedder: {type: token, vocab_size: 32, d_model: 8}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n"
    "      - type: ResidualTopology\n        layers:\n"
    "          - {type: RMSNormLayer, d_model: 8}\n"
    "          - {type: AttentionLayer, d_model: 8, n_heads: 2}\n"
    "      - {type: RMSNormLayer, d_model: 8}\n"
    "groups:\n  - name: g\n    runs:\n      - {id: r, mode: train, steps: 5}\n";

typedef struct {
    json_t *plan;
    cb_model m;
    cb_optimizer o;
    cb_train_state st;
} fixture;

static int fixture_init(fixture *f, const char *yaml, uint64_t seed) {
    cb_error e;
    memset(f, 0, sizeof *f);
    f->plan = test_compile(yaml, "ckpt.yml");
    if (!f->plan) return -1;
    if (cb_model_init(&f->m, f->plan, seed, &e) != CB_OK) return -1;
    cb_optimizer_config c = {.kind = CB_OPT_ADAMW, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    if (cb_optimizer_init(&f->o, &c, &f->m.params, &e) != CB_OK) return -1;
    float *g = calloc(f->m.params.total_floats, sizeof *g);
    for (size_t i = 0; i < f->m.params.total_floats; i++) g[i] = (float)((i * 13) % 7) * 0.1f - 0.3f;
    cb_optimizer_step(&f->o, f->m.weights, g, 1e-2);
    free(g);
    f->st.step = 3;
    f->st.data_position = 6;
    f->st.tokens = 384;
    f->st.seed = seed;
    f->st.rng[0] = 0xfedcba9876543210ull, f->st.rng[1] = 1, f->st.rng[2] = 2, f->st.rng[3] = 0xffffffffffffffffull;
    f->st.schedule = (cb_schedule){.kind = CB_SCHED_LINEAR, .lr = 1e-2, .min_lr = 1e-3, .warmup = 1, .total = 5};
    snprintf(f->st.run, sizeof f->st.run, "r");
    snprintf(f->st.group, sizeof f->st.group, "g");
    return 0;
}

static void fixture_free(fixture *f) {
    cb_optimizer_free(&f->o);
    cb_model_free(&f->m);
    json_decref(f->plan);
}

/* a model and optimizer of the same plan, empty, to load into */
static int empty_like(const fixture *f, cb_model *m, cb_optimizer *o) {
    cb_error e;
    if (cb_model_init_empty(m, f->plan, &e) != CB_OK) return -1;
    return cb_optimizer_init(o, &f->o.cfg, &m->params, &e) == CB_OK ? 0 : -1;
}

TEST(round_trip) {
    fixture f;
    if (fixture_init(&f, YAML, 5) != 0) { FAILF("fixture"); return; }
    char dir[512], out[4608];
    tu_tempdir(dir, sizeof dir, "ckpt");
    cb_error e;
    json_t *extra = json_pack("{s:{s:s}}", "wandb", "project", "p");
    EXPECT_EQ_INT(CB_OK, cb_checkpoint_save(dir, &f.m, &f.o, &f.st, extra, 2, out, sizeof out, &e));
    json_decref(extra);
    char want[600];
    snprintf(want, sizeof want, "%s/step-00000003", dir);
    EXPECT_EQ_STR(want, out);
    cb_model m;
    cb_optimizer o;
    cb_train_state st;
    json_t *doc = NULL;
    EXPECT_EQ_INT(0, empty_like(&f, &m, &o));
    EXPECT_EQ_INT(CB_OK, cb_checkpoint_load(out, "g", "r", &m, &o, &st, &doc, &e));
    EXPECT(memcmp(m.weights, f.m.weights, m.params.total_floats * sizeof(float)) == 0);
    EXPECT(memcmp(o.m, f.o.m, m.params.total_floats * sizeof(float)) == 0);
    EXPECT(memcmp(o.v, f.o.v, m.params.total_floats * sizeof(float)) == 0);
    EXPECT_EQ_INT(1, o.t);
    EXPECT_EQ_INT(3, st.step);
    EXPECT_EQ_INT(6, st.data_position);
    EXPECT_EQ_INT(384, st.tokens);
    EXPECT_EQ_INT(5, st.seed);
    EXPECT(memcmp(st.rng, f.st.rng, sizeof st.rng) == 0);
    EXPECT_EQ_INT(CB_SCHED_LINEAR, st.schedule.kind);
    EXPECT_EQ_INT(5, st.schedule.total);
    EXPECT_NEAR(1e-3, st.schedule.min_lr, 0);
    EXPECT_EQ_STR("r", st.run);
    EXPECT_EQ_STR("g", st.group);
    EXPECT_EQ_STR("checkpoint", json_string_value(json_object_get(doc, "kind")));
    EXPECT_EQ_STR("p", json_string_value(json_object_get(json_object_get(doc, "wandb"), "project")));
    EXPECT_EQ_STR(f.m.plan_sha256, json_string_value(json_object_get(doc, "plan_sha256")));
    json_decref(doc);
    /* the checkpoint is a model directory too */
    cb_model md;
    EXPECT_EQ_INT(CB_OK, cb_model_load_dir(&md, out, &e));
    if (e.code == CB_OK) cb_model_free(&md);
    cb_optimizer_free(&o);
    cb_model_free(&m);
    fixture_free(&f);
    cb_remove_tree(dir);
}

static int count_entries(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *ent;
    while (d && (ent = readdir(d)))
        if (strncmp(ent->d_name, prefix, strlen(prefix)) == 0) n++;
    if (d) closedir(d);
    return n;
}

TEST(keep_last_and_resolve) {
    fixture f;
    if (fixture_init(&f, YAML, 5) != 0) { FAILF("fixture"); return; }
    char dir[512], out[4608], stale[700], got[4608];
    tu_tempdir(dir, sizeof dir, "keep");
    snprintf(stale, sizeof stale, "%s/.step-00000002.tmp.abcdef", dir); /* what a killed save leaves */
    mkdir(stale, 0777);
    cb_error e;
    for (long s = 1; s <= 5; s++) {
        f.st.step = s;
        EXPECT_EQ_INT(CB_OK, cb_checkpoint_save(dir, &f.m, &f.o, &f.st, NULL, 2, out, sizeof out, &e));
    }
    EXPECT_EQ_INT(2, count_entries(dir, "step-"));
    struct stat sb;
    EXPECT(stat(stale, &sb) != 0);
    EXPECT_EQ_INT(CB_OK, cb_checkpoint_resolve(dir, got, sizeof got, &e));
    snprintf(stale, sizeof stale, "%s/step-00000005", dir);
    EXPECT_EQ_STR(stale, got);
    EXPECT_EQ_INT(CB_OK, cb_checkpoint_resolve(stale, got, sizeof got, &e));
    EXPECT_EQ_STR(stale, got);
    /* keep_last 0 keeps everything */
    for (long s = 6; s <= 8; s++) {
        f.st.step = s;
        EXPECT_EQ_INT(CB_OK, cb_checkpoint_save(dir, &f.m, &f.o, &f.st, NULL, 0, out, sizeof out, &e));
    }
    EXPECT_EQ_INT(5, count_entries(dir, "step-"));
    snprintf(stale, sizeof stale, "%s/nothing-here", dir);
    mkdir(stale, 0777);
    EXPECT_EQ_INT(CB_E_IO, cb_checkpoint_resolve(stale, got, sizeof got, &e));
    fixture_free(&f);
    cb_remove_tree(dir);
}

/* load `dir` and expect code with `needle` in the message and where_end in `where` */
static void expect_refused(const fixture *f, const char *dir, int code, const char *needle, const char *where_end) {
    cb_model m;
    cb_optimizer o;
    cb_train_state st;
    cb_error e;
    cb_error_clear(&e);
    if (empty_like(f, &m, &o) != 0) { FAILF("empty model"); return; }
    int rc = cb_checkpoint_load(dir, NULL, NULL, &m, &o, &st, NULL, &e);
    if (rc != code) FAILF("%s: expected code %d, got %d (%s: %s)", needle, code, rc, e.where, e.msg);
    else if (!strstr(e.msg, needle)) FAILF("message '%s' lacks '%s'", e.msg, needle);
    if (!strstr(e.where, where_end)) FAILF("where '%s' does not name '%s'", e.where, where_end);
    cb_optimizer_free(&o);
    cb_model_free(&m);
}

static void copy_file(const char *from, const char *to) {
    char *text;
    size_t len;
    cb_error e;
    if (cb_read_file(from, 0, &text, &len, &e) == CB_OK) {
        cb_atomic_write(to, text, len, &e);
        free(text);
    }
}

TEST(corrupt_truncated_missing_foreign) {
    fixture f;
    if (fixture_init(&f, YAML, 5) != 0) { FAILF("fixture"); return; }
    char dir[512], ck[4608], path[4700], backup[4700];
    tu_tempdir(dir, sizeof dir, "bad");
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_checkpoint_save(dir, &f.m, &f.o, &f.st, NULL, 0, ck, sizeof ck, &e));
    snprintf(backup, sizeof backup, "%s/backup", dir);

    /* a flipped bit in the weights */
    snprintf(path, sizeof path, "%s/model.safetensors", ck);
    copy_file(path, backup);
    FILE *fp = fopen(path, "r+b");
    fseek(fp, -5, SEEK_END);
    int c = fgetc(fp);
    fseek(fp, -5, SEEK_END);
    fputc(c ^ 0x10, fp);
    fclose(fp);
    expect_refused(&f, ck, CB_E_INVALID, "corrupt", "/model.safetensors");
    copy_file(backup, path);

    /* a truncated optimizer state */
    snprintf(path, sizeof path, "%s/optimizer.safetensors", ck);
    copy_file(path, backup);
    EXPECT_EQ_INT(0, truncate(path, 1000));
    expect_refused(&f, ck, CB_E_INVALID, "truncated", "/optimizer.safetensors");
    copy_file(backup, path);

    /* a missing file */
    snprintf(path, sizeof path, "%s/model.safetensors", ck);
    copy_file(path, backup);
    unlink(path);
    expect_refused(&f, ck, CB_E_INVALID, "cannot open", "/model.safetensors");
    copy_file(backup, path);

    /* a truncated state.json */
    snprintf(path, sizeof path, "%s/state.json", ck);
    copy_file(path, backup);
    EXPECT_EQ_INT(0, truncate(path, 100));
    expect_refused(&f, ck, CB_E_INVALID, "", "/state.json:");
    unlink(path);
    expect_refused(&f, ck, CB_E_IO, "no state.json", ck + strlen(dir));
    copy_file(backup, path);
    expect_refused(&f, "/nonexistent/ckpt", CB_E_IO, "no such checkpoint", "/nonexistent/ckpt");

    /* all restored: it loads again */
    cb_model m;
    cb_optimizer o;
    cb_train_state st;
    EXPECT_EQ_INT(0, empty_like(&f, &m, &o));
    EXPECT_EQ_INT(CB_OK, cb_checkpoint_load(ck, NULL, NULL, &m, &o, &st, NULL, &e));
    /* of another run of the same plan */
    EXPECT_EQ_INT(CB_E_INVALID, cb_checkpoint_load(ck, "g", "other", &m, &o, &st, NULL, &e));
    EXPECT(strstr(e.msg, "not of g/other") != NULL);
    cb_optimizer_free(&o);
    cb_model_free(&m);

    /* a checkpoint of another plan (here: another run list, same tensors) */
    fixture other;
    char yaml2[2048];
    snprintf(yaml2, sizeof yaml2, "%s", YAML);
    *strstr(yaml2, "steps: 5") = 0;
    strcat(yaml2, "steps: 6}\n");
    if (fixture_init(&other, yaml2, 5) != 0) { FAILF("fixture"); return; }
    expect_refused(&other, ck, CB_E_INVALID, "another plan", ck + strlen(dir));
    fixture_free(&other);
    fixture_free(&f);
    cb_remove_tree(dir);
}

TEST(failed_save_keeps_the_previous) {
    fixture f;
    if (fixture_init(&f, YAML, 5) != 0) { FAILF("fixture"); return; }
    char dir[512], first[4608], out[4608];
    tu_tempdir(dir, sizeof dir, "full");
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_checkpoint_save(dir, &f.m, &f.o, &f.st, NULL, 1, first, sizeof first, &e));
    /* a file-size limit below the model file: the write fails as on a full disk */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    f.st.step = 4;
    int rc = cb_checkpoint_save(dir, &f.m, &f.o, &f.st, NULL, 1, out, sizeof out, &e);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    EXPECT_EQ_INT(CB_E_IO, rc);
    EXPECT(strstr(e.where, "step-00000004/") != NULL && strstr(e.where, ".tmp.") == NULL);
    EXPECT_EQ_INT(1, count_entries(dir, "step-")); /* the first kept */
    EXPECT_EQ_INT(0, count_entries(dir, ".step-")); /* no temporary directory left */
    cb_model m;
    cb_optimizer o;
    cb_train_state st;
    EXPECT_EQ_INT(0, empty_like(&f, &m, &o));
    EXPECT_EQ_INT(CB_OK, cb_checkpoint_load(first, "g", "r", &m, &o, &st, NULL, &e));
    EXPECT_EQ_INT(3, st.step);
    cb_optimizer_free(&o);
    cb_model_free(&m);
    fixture_free(&f);
    cb_remove_tree(dir);
}
