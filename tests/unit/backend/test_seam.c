/* test_seam.c: the runtime reaches a device only through backend/backend.h. A "discrete"
 * test device runs the CPU backend's ops on memory of its own (unified = 0) and records
 * every pointer a pass, a transfer or an optimizer step hands it that is not its own
 * memory, and every transfer whose host side is device memory. Full-sequence passes,
 * decoding sessions and whole training runs on it must touch only its memory and give
 * bit for bit the CPU's results: that is what a CUDA backend will rely on. */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "infer/session.h"
#include "model/model.h"
#include "model/run.h"
#include "model_util.h"
#include "train/config.h"
#include "train/trainer.h"
#include "../data/tmp_dir.h"

/* ---- the discrete device ---- */

#define MAX_BLOCKS 4096
static struct { const char *p; size_t n; } blocks[MAX_BLOCKS];
static int n_blocks, violations, transfers;
static char first_violation[256];

static int is_device(const void *p) {
    for (int i = 0; i < n_blocks; i++)
        if ((const char *)p >= blocks[i].p && (const char *)p < blocks[i].p + blocks[i].n) return 1;
    return 0;
}

static void check(const void *p, const char *what) {
    if (!p || is_device(p)) return;
    if (!violations) snprintf(first_violation, sizeof first_violation, "%s is host memory", what);
    violations++;
}

static void *d_alloc(cb_backend *be, size_t bytes, cb_error *e) {
    void *p = cb_backend_cpu()->alloc(be, bytes, e);
    if (p && n_blocks < MAX_BLOCKS) {
        blocks[n_blocks].p = p;
        blocks[n_blocks++].n = bytes ? bytes : 1;
    }
    return p;
}
static void d_free(cb_backend *be, void *p) {
    (void)be;
    for (int i = 0; i < n_blocks; i++)
        if (blocks[i].p == p) blocks[i] = blocks[--n_blocks];
    free(p);
}
static int d_upload(cb_backend *be, void *dst, const void *src, size_t bytes, cb_error *e) {
    (void)be, (void)e;
    check(dst, "an upload's destination");
    if (is_device(src) && !violations++) snprintf(first_violation, sizeof first_violation, "an upload from device memory");
    transfers++;
    memcpy(dst, src, bytes);
    return CB_OK;
}
static int d_download(cb_backend *be, void *dst, const void *src, size_t bytes, cb_error *e) {
    (void)be, (void)e;
    check(src, "a download's source");
    if (is_device(dst) && !violations++) snprintf(first_violation, sizeof first_violation, "a download into device memory");
    transfers++;
    memcpy(dst, src, bytes);
    return CB_OK;
}
static void d_zero(cb_backend *be, void *p, size_t bytes) {
    (void)be;
    check(p, "zero");
    memset(p, 0, bytes);
}

static void check_pass(const cb_pass *p) {
    check(p->weights, "pass weights");
    check(p->grads, "pass grads");
    check(p->slots, "pass slots");
    check(p->dslots, "pass dslots");
    check(p->saved, "pass saved");
    check(p->scratch, "pass scratch");
    check(p->rope, "pass rope");
    check(p->lse, "pass lse");
    check(p->losses, "pass losses");
    check(p->tokens, "pass tokens");
    check(p->targets, "pass targets");
}
static int d_op_forward(cb_backend *be, cb_pass *p, int i, cb_error *e) {
    (void)be;
    check_pass(p);
    return cb_cpu_op_forward(p, i, e);
}
static void d_op_backward(cb_backend *be, cb_pass *p, int i) {
    (void)be;
    check_pass(p);
    cb_cpu_op_backward(p, i);
}
static float d_loss_forward(cb_backend *be, cb_pass *p) {
    (void)be;
    check_pass(p);
    return cb_cpu_loss_forward(p);
}
static void d_loss_backward(cb_backend *be, cb_pass *p) {
    (void)be;
    check_pass(p);
    cb_cpu_loss_backward(p);
}
static void d_scale(cb_backend *be, float *x, size_t n, float s) {
    check(x, "scale");
    cb_backend_cpu()->scale(be, x, n, s);
}
static double d_grad_clip(cb_backend *be, float *g, size_t n, double max_norm) {
    check(g, "grad_clip");
    return cb_backend_cpu()->grad_clip(be, g, n, max_norm);
}
static double d_distill_kl(cb_backend *be, float *ds, const float *s, const float *t, int rows, int V, double temp,
                           double scale) {
    check(ds, "distill_kl gradient");
    check(s, "distill_kl student");
    check(t, "distill_kl teacher");
    return cb_backend_cpu()->distill_kl(be, ds, s, t, rows, V, temp, scale);
}
static void d_optimizer_step(cb_backend *be, cb_optimizer *o, float *w, const float *g, float *m, float *v,
                             double lr) {
    check(w, "optimizer weights");
    check(g, "optimizer grads");
    check(m, "optimizer m");
    check(v, "optimizer v");
    cb_backend_cpu()->optimizer_step(be, o, w, g, m, v, lr);
}
static int d_decode_init(cb_backend *be, cb_decode *d, const cb_program *prog, const cb_param_table *params,
                         const float *weights, const cb_decode_config *cfg, cb_error *e) {
    check(weights, "decode weights");
    return cb_cpu_decode_init(be, d, prog, params, weights, cfg, e);
}

static cb_backend discrete;
static cb_backend *discrete_backend(void) {
    discrete = *cb_backend_cpu();
    discrete.name = "discrete";
    discrete.unified = 0;
    discrete.alloc = d_alloc;
    discrete.free = d_free;
    discrete.upload = d_upload;
    discrete.download = d_download;
    discrete.zero = d_zero;
    discrete.op_forward = d_op_forward;
    discrete.op_backward = d_op_backward;
    discrete.loss_forward = d_loss_forward;
    discrete.loss_backward = d_loss_backward;
    discrete.scale = d_scale;
    discrete.grad_clip = d_grad_clip;
    discrete.distill_kl = d_distill_kl;
    discrete.optimizer_step = d_optimizer_step;
    discrete.decode_init = d_decode_init;
    violations = transfers = 0;
    first_violation[0] = 0;
    return &discrete;
}

static void expect_clean(const char *what) {
    if (violations) FAILF("%s: %d pointers outside the device's memory; first: %s", what, violations, first_violation);
    if (!transfers) FAILF("%s: nothing went through upload/download", what);
    if (n_blocks) FAILF("%s: %d device blocks never freed", what, n_blocks);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

/* the tiny Llama of the training tests: GQA, dropout, SwiGLU, two blocks */
static json_t *tiny_plan(void) {
    char *yaml = read_text("tests/cli/train/tiny.yml");
    if (!yaml) return NULL;
    json_t *plan = test_compile(yaml, "tiny.yml");
    free(yaml);
    return plan;
}

/* ---- full-sequence passes ---- */

TEST(run_on_a_discrete_device_equals_the_cpu) {
    json_t *plan = tiny_plan();
    if (!plan) {
        FAILF("tiny.yml does not compile");
        return;
    }
    cb_model m;
    cb_error e;
    EXPECT(cb_model_init(&m, plan, 3, &e) == CB_OK);
    json_decref(plan);
    cb_program prog;
    EXPECT(cb_program_init(&prog, m.plan, &m.params, 2, 16, &e) == CB_OK);
    const size_t n = 32, nw = m.params.total_floats;
    int32_t tok[64];
    for (size_t i = 0; i < 2 * n; i++) tok[i] = (int32_t)((i * 7 + 3) % 64);

    cb_run host;
    EXPECT(cb_run_init(&host, &prog, 1, &e) == CB_OK);
    host.dropout_seed = 99;
    float *g_host = calloc(nw, sizeof *g_host);
    float loss_host = cb_run_forward(&host, &prog, m.weights, tok, tok + n);
    cb_run_backward(&host, &prog, m.weights, g_host);

    cb_backend *be = discrete_backend();
    cb_run dev;
    EXPECT(cb_run_init_on(&dev, be, &prog, 1, &e) == CB_OK);
    dev.dropout_seed = 99;
    float *w = be->alloc(be, nw * sizeof *w, &e), *g = be->alloc(be, nw * sizeof *g, &e);
    int32_t *t = be->alloc(be, 2 * n * sizeof *t, &e);
    be->upload(be, w, m.weights, nw * sizeof *w, &e);
    be->upload(be, t, tok, 2 * n * sizeof *t, &e);
    float loss_dev = cb_run_forward(&dev, &prog, w, t, t + n);
    cb_run_backward(&dev, &prog, w, g);
    float *g_back = malloc(nw * sizeof *g_back);
    be->download(be, g_back, g, nw * sizeof *g, &e);
    if (loss_dev != loss_host) FAILF("loss %.9g on the device, %.9g on the CPU", loss_dev, loss_host);
    if (!(loss_host > 0 && isfinite(loss_host))) FAILF("loss %g", loss_host);
    if (memcmp(g_back, g_host, nw * sizeof *g_host) != 0) FAILF("the gradients differ from the CPU's");
    be->free(be, w);
    be->free(be, g);
    be->free(be, t);
    cb_run_free(&dev);
    expect_clean("run");
    free(g_back);
    free(g_host);
    cb_run_free(&host);
    cb_program_free(&prog);
    cb_model_free(&m);
}

/* ---- decoding ---- */

TEST(session_on_a_discrete_device_equals_the_cpu) {
    json_t *plan = tiny_plan();
    if (!plan) {
        FAILF("tiny.yml does not compile");
        return;
    }
    cb_model m;
    cb_error e;
    EXPECT(cb_model_init(&m, plan, 5, &e) == CB_OK);
    json_decref(plan);
    const cb_kv_kind kinds[] = {CB_KV_F32, CB_KV_Q8_0};
    for (int k = 0; k < 2; k++) {
        cb_session a, b;
        cb_session_config cfg = cb_session_config_default();
        cfg.max_seq_len = 40;
        cfg.chunk = 5;
        cfg.kinds.k = cfg.kinds.k_sem = cfg.kinds.v = kinds[k];
        cfg.weight_kind = kinds[k];
        EXPECT(cb_session_init(&a, &m, &cfg, &e) == CB_OK);
        cfg.backend = discrete_backend();
        EXPECT(cb_session_init(&b, &m, &cfg, &e) == CB_OK);
        int32_t prompt[12];
        for (int i = 0; i < 12; i++) prompt[i] = (int32_t)(i * 5 % 64);
        float la[64], lb[64], all_a[3 * 64], all_b[3 * 64];
        EXPECT(cb_session_prefill(&a, prompt, 12, la, &e) == CB_OK);
        EXPECT(cb_session_prefill(&b, prompt, 12, lb, &e) == CB_OK);
        for (int step = 0; step < 8 && !cb_test_failed; step++) {
            if (memcmp(la, lb, sizeof la) != 0) FAILF("kind %d step %d: logits differ from the CPU's", k, step);
            int32_t next = (int32_t)(step * 11 % 64);
            EXPECT(cb_session_forward(&a, &next, 1, la, 0, &e) == CB_OK);
            EXPECT(cb_session_forward(&b, &next, 1, lb, 0, &e) == CB_OK);
        }
        /* several rows at once (speculative verification), then a rollback */
        EXPECT(cb_session_forward(&a, prompt, 3, all_a, 1, &e) == CB_OK);
        EXPECT(cb_session_forward(&b, prompt, 3, all_b, 1, &e) == CB_OK);
        if (memcmp(all_a, all_b, sizeof all_a) != 0) FAILF("kind %d: all-rows logits differ", k);
        cb_session_truncate(&a, 10);
        cb_session_truncate(&b, 10);
        EXPECT_EQ_INT(10, b.dec.kv.layers[0].len);
        EXPECT(cb_session_forward(&a, prompt + 2, 1, la, 0, &e) == CB_OK);
        EXPECT(cb_session_forward(&b, prompt + 2, 1, lb, 0, &e) == CB_OK);
        if (memcmp(la, lb, sizeof la) != 0) FAILF("kind %d: logits after a rollback differ", k);
        cb_session_free(&b);
        cb_session_free(&a);
        expect_clean("session");
    }
    cb_model_free(&m);
}

/* ---- a whole training run ---- */

/* Train the tiny plan's adamw run for `steps` on be into dir; the final weights into w. */
static int train(cb_backend *be, const char *dir, long steps, float *w, size_t nw, cb_error *e) {
    json_t *plan = tiny_plan();
    if (!plan) return cb_fail(e, CB_E_INVALID, "tiny.yml", "does not compile");
    const json_t *g, *r;
    static cb_train_config c;
    char data[300];
    int rc = cb_train_find_run(plan, "test", "adamw", &g, &r, e);
    if (rc == CB_OK) rc = cb_train_config_read(&c, g, r, e);
    c.steps = c.schedule.total = steps;
    c.save_every = 0;
    snprintf(c.data, sizeof c.data, "%s", tmp_path("train.tokens", data, sizeof data));
    cb_model m;
    if (rc == CB_OK) rc = cb_model_init(&m, plan, c.seed, e);
    json_decref(plan);
    if (rc != CB_OK) return rc;
    cb_train_data d;
    rc = cb_train_data_open(&d, c.data, NULL, c.val_frac, c.block_size, 64, e);
    if (rc == CB_OK) {
        cb_train_io io = {.run_dir = dir, .backend = be};
        cb_train_result res;
        rc = cb_train_run(&c, &m, &d, &io, &res, e);
        if (rc == CB_OK) memcpy(w, m.weights, nw * sizeof *w);
        cb_train_data_close(&d);
    }
    cb_model_free(&m);
    return rc;
}

TEST(training_on_a_discrete_device_equals_the_cpu) {
    char path[300], cpu_dir[300], dev_dir[300];
    FILE *f = fopen(tmp_path("train.tokens", path, sizeof path), "w");
    if (!f) {
        FAILF("cannot write %s", path);
        return;
    }
    for (int i = 0; i < 3000; i++) fprintf(f, "%d ", (i * i + 3 * i) % 61);
    fclose(f);
    mkdir(tmp_path("cpu", cpu_dir, sizeof cpu_dir), 0777);
    mkdir(tmp_path("dev", dev_dir, sizeof dev_dir), 0777);
    json_t *plan = tiny_plan();
    if (!plan) {
        FAILF("tiny.yml does not compile");
        return;
    }
    cb_model m;
    cb_error e;
    EXPECT(cb_model_init(&m, plan, 1, &e) == CB_OK);
    json_decref(plan);
    const size_t nw = m.params.total_floats;
    cb_model_free(&m);
    float *a = malloc(nw * sizeof *a), *b = malloc(nw * sizeof *b);
    if (train(cb_backend_cpu(), cpu_dir, 6, a, nw, &e) != CB_OK) FAILF("on the CPU: %s: %s", e.where, e.msg);
    if (train(discrete_backend(), dev_dir, 6, b, nw, &e) != CB_OK) FAILF("on the device: %s: %s", e.where, e.msg);
    if (!cb_test_failed && memcmp(a, b, nw * sizeof *a) != 0) FAILF("the trained weights differ from the CPU's");
    expect_clean("training");
    free(a);
    free(b);
    remove_tree(tmp_dir_path);
}

TEST(backends_by_name) {
    cb_backend *be;
    cb_error e;
    EXPECT(cb_backend_open("cpu", &be, &e) == CB_OK && be == cb_backend_cpu());
    EXPECT(cb_backend_open("auto", &be, &e) == CB_OK && be != NULL);
    EXPECT_EQ_INT(CB_E_USAGE, cb_backend_open("tpu", &be, &e));
    EXPECT(strstr(e.msg, "unknown device 'tpu'") != NULL);
#ifndef CB_HAVE_CUDA
    EXPECT_EQ_INT(CB_E_USAGE, cb_backend_open("cuda", &be, &e));
    EXPECT(strstr(e.msg, "this build has no cuda backend") != NULL);
#endif
}
