/* test_cuda.c: the CUDA backend against the CPU backend (the reference). Every op of
 * several models (Llama with GQA, GPT-2 with biases and learned positions, DBA with both
 * gates and a value width unlike the key width, the Parallel/Branching/Cyclic/Recurrent
 * topologies with RoPE, linear and dropout layers), at odd shapes, forward and backward
 * on random weights and tokens: each op's output, each slot's gradient and each
 * parameter's gradient, as a normalised error (max |gpu - cpu| over max |cpu|, the
 * denominator floored at 1e-3 of the largest gradient so a gradient that is zero in exact
 * arithmetic, like a key bias's, compares its rounding noise against the others' scale).
 * Then whole training runs (AdamW with gradient accumulation, clipping, weight decay and
 * dropout; Lion; SGD) GPU against CPU. Skips, saying why, where the build has no CUDA
 * backend or the machine no GPU. */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "core/rng.h"
#include "model/model.h"
#include "model/run.h"
#include "model_util.h"
#include "train/config.h"
#include "train/optimizer.h"
#include "train/trainer.h"
#include "../data/tmp_dir.h"
#include "cuda_test.h"
#ifdef CB_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

/* float32 on both sides; the products sum in another order (cuBLAS against OpenBLAS) and
 * the GPU's expf is not the CPU's polynomial exp: a few ulp per op, grown through a
 * model of a few layers. */
#define FWD_TOL 2e-5
#define BWD_TOL 1e-4
/* A training run of six steps: the same data, dropout masks and schedule. */
#define TRAIN_TOL 1e-4


static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}
/* max |a - b| / max(max |a|, floor); NaN anywhere gives NaN */
static double norm_err(const float *a, const float *b, size_t n, double floor) {
    double d = 0, m = floor;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - (double)b[i]);
        if (isnan(x)) return NAN;
        d = x > d ? x : d;
        m = fabs(a[i]) > m ? fabs(a[i]) : m;
    }
    return m > 0 ? d / m : d;
}

static float *download(cb_backend *be, const float *dev, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof *h);
    cb_error e;
    if (h && be->download(be, h, dev, n * sizeof *h, &e) != CB_OK) {
        free(h);
        return NULL;
    }
    return h;
}

static const char *kind_name(int k) {
    static const char *names[] = {"embed", "rmsnorm", "layernorm", "attention", "swiglu", "mlp", "linear",
                                  "dropout", "rope", "add", "combine", "concat", "head"};
    return k >= 0 && k < (int)(sizeof names / sizeof *names) ? names[k] : "?";
}

/* The model of yaml (weights from seed 7) compiled for (B,T); 1 and a failure said when it
 * does not build (nothing left to free). */
static int build_model(const char *what, const char *yaml, int B, int T, json_t **plan, cb_model *m,
                       cb_program *prog) {
    cb_error e;
    if (!(*plan = test_compile(yaml, what))) {
        FAILF("%s: does not compile", what);
        return 1;
    }
    if (cb_model_init(m, *plan, 7, &e) != CB_OK) {
        FAILF("%s: %s", what, e.msg);
        json_decref(*plan);
        return 1;
    }
    if (cb_program_init(prog, *plan, &m->params, B, T, &e) != CB_OK) {
        FAILF("%s: %s", what, e.msg);
        cb_model_free(m);
        json_decref(*plan);
        return 1;
    }
    return 0;
}

/* Every op of the model of yaml at (B,T), forward and backward, on the GPU against the CPU. */
static void compare_model(cb_backend *be, const char *what, const char *yaml, int B, int T) {
    json_t *plan;
    cb_model m;
    cb_error e;
    cb_program prog;
    if (build_model(what, yaml, B, T, &plan, &m, &prog)) return;
    const size_t nw = m.params.total_floats, N = (size_t)B * T;
    cb_rng rng;
    cb_rng_init(&rng, 99);
    /* larger weights than the init's 0.02 so every path carries signal; norms perturbed */
    for (size_t i = 0; i < nw; i++) m.weights[i] *= 4.0f;
    for (int i = 0; i < m.params.n; i++)
        if (m.params.items[i].init != CB_INIT_NORMAL)
            for (size_t k = 0; k < m.params.items[i].numel; k++)
                m.weights[m.params.items[i].offset + k] += (float)(0.3 * cb_rng_normal(&rng));
    int32_t *tok = malloc(2 * N * sizeof *tok);
    for (size_t i = 0; i < 2 * N; i++) tok[i] = (int32_t)(cb_rng_next(&rng) % (uint64_t)prog.vocab_size);
    tok[N + 1] = -1; /* one ignored target */

    cb_run host, dev;
    float *g_cpu = calloc(nw, sizeof *g_cpu);
    EXPECT(cb_run_init(&host, &prog, 1, &e) == CB_OK);
    host.dropout_seed = 1234;
    float loss_cpu = cb_run_forward(&host, &prog, m.weights, tok, tok + N);
    cb_run_backward(&host, &prog, m.weights, g_cpu);

    int rc = cb_run_init_on(&dev, be, &prog, 1, &e);
    if (rc != CB_OK) {
        FAILF("%s: %s", what, e.msg);
        goto done;
    }
    dev.dropout_seed = 1234;
    float *w = be->alloc(be, nw * sizeof *w, &e), *g = be->alloc(be, nw * sizeof *g, &e);
    int32_t *t = be->alloc(be, 2 * N * sizeof *t, &e);
    if (!w || !g || !t) {
        FAILF("%s: %s", what, e.msg);
        goto done_dev;
    }
    be->upload(be, w, m.weights, nw * sizeof *w, &e);
    be->upload(be, t, tok, 2 * N * sizeof *t, &e);
    float loss_gpu = cb_run_forward(&dev, &prog, w, t, t + N);
    float *slots = download(be, dev.slots, prog.slot_elems);
    cb_run_backward(&dev, &prog, w, g);
    float *dslots = download(be, dev.dslots, prog.slot_elems), *g_gpu = download(be, g, nw);
    if (be->synchronize(be, &e) != CB_OK) FAILF("%s: %s: %s", what, e.where, e.msg);
    if (!slots || !dslots || !g_gpu) {
        FAILF("%s: downloads failed", what);
    } else {
        double lerr = fabs((double)loss_gpu - loss_cpu) / fabs((double)loss_cpu);
        if (!(lerr <= FWD_TOL)) FAILF("%s: loss %.9g on the GPU, %.9g on the CPU", what, loss_gpu, loss_cpu);
        double worst_f = 0, worst_b = 0, gmax = max_abs(g_cpu, nw);
        char wf[128] = "", wb[160] = "";
        for (int i = 0; i < prog.n_ops; i++) {
            const cb_op *op = &prog.ops[i];
            const cb_slot *s = &prog.slots[op->out];
            size_t n = N * (size_t)s->width;
            double ef = norm_err(host.slots + s->offset, slots + s->offset, n, 1e-6);
            double eb = norm_err(host.dslots + s->offset, dslots + s->offset, n, 1e-3 * max_abs(host.dslots + s->offset, n) + 1e-12);
            /* a residual add fused with the RMSNorm after it (CB_CUDA_FUSE addnorm, ops.c's
             * addnorm_pair) never holds its whole output gradient: the norm's backward sends
             * it on to the add's inputs, whose gradients (other ops' outputs) and every
             * weight gradient are checked here */
            const cb_op *next = i + 1 < prog.n_ops ? &prog.ops[i + 1] : NULL;
            const int fused_add = (cb_backend_cuda_fuse() & CB_CUDA_FUSE_ADDNORM) && op->kind == CB_OP_ADD && next &&
                                  next->kind == CB_OP_RMSNORM && prog.inputs[next->in_first] == op->out;
            if (fused_add) eb = 0;
            if (!(ef <= worst_f)) {
                worst_f = ef;
                snprintf(wf, sizeof wf, "op %d %s %s", i, kind_name(op->kind), op->id);
            }
            if (!(eb <= worst_b)) {
                worst_b = eb;
                snprintf(wb, sizeof wb, "d op %d %s %s", i, kind_name(op->kind), op->id);
            }
            if (!(ef <= FWD_TOL)) FAILF("%s: op %d (%s %s) forward: normalised error %.3g", what, i, kind_name(op->kind), op->id, ef);
            if (!(eb <= BWD_TOL)) FAILF("%s: op %d (%s %s) output gradient: normalised error %.3g", what, i, kind_name(op->kind), op->id, eb);
        }
        for (int pi = 0; pi < m.params.n; pi++) {
            const cb_param *p = &m.params.items[pi];
            double eg = norm_err(g_cpu + p->offset, g_gpu + p->offset, p->numel, 1e-3 * gmax);
            if (!(eg <= worst_b)) {
                worst_b = eg;
                snprintf(wb, sizeof wb, "d %s", p->name);
            }
            if (!(eg <= BWD_TOL)) FAILF("%s: gradient of %s: normalised error %.3g", what, p->name, eg);
        }
        char label[300];
        snprintf(label, sizeof label, "%s forward (worst: %s)", what, wf);
        REPORT_DIFF(label, worst_f, FWD_TOL);
        snprintf(label, sizeof label, "%s backward (worst: %s)", what, wb);
        REPORT_DIFF(label, worst_b, BWD_TOL);
    }
    free(slots);
    free(dslots);
    free(g_gpu);
done_dev:
    be->free(be, w);
    be->free(be, g);
    be->free(be, t);
    cb_run_free(&dev);
done:
    cb_run_free(&host);
    free(g_cpu);
    free(tok);
    cb_program_free(&prog);
    cb_model_free(&m);
    json_decref(plan);
}

/* A Llama block stack of width d, H heads over Hkv kv heads, feed-forward F, dropout p. */
static const char *llama_yaml(char *buf, size_t n, int vocab, int d, int H, int Hkv, int F, double p) {
    snprintf(buf, n,
             "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  tie_embeddings: true\n"
             "  embedder: {type: token, vocab_size: %d, d_model: %d}\n"
             "  topology:\n    type: StackedTopology\n    layers:\n"
             "      - type: NestedTopology\n        repeat: 2\n        layers:\n"
             "          - type: ResidualTopology\n            layers:\n"
             "              - {type: RMSNormLayer, d_model: %d}\n"
             "              - {type: AttentionLayer, d_model: %d, n_heads: %d, n_kv_heads: %d}\n"
             "              - {type: DropoutLayer, p: %g}\n"
             "          - type: ResidualTopology\n            layers:\n"
             "              - {type: RMSNormLayer, d_model: %d}\n"
             "              - {type: SwiGLULayer, d_model: %d, d_ff: %d}\n"
             "      - {type: RMSNormLayer, d_model: %d}\n",
             vocab, d, d, d, H, Hkv, p, d, d, F, d);
    return buf;
}

TEST(cuda_ops_llama_gqa) {
    cb_backend *be = gpu();
    if (!be) return;
    char y[2048];
    compare_model(be, "llama_gqa 2x5", llama_yaml(y, sizeof y, 11, 16, 4, 2, 24, 0.1), 2, 5);
    compare_model(be, "llama_gqa 3x37", llama_yaml(y, sizeof y, 53, 48, 6, 2, 70, 0.25), 3, 37);
    compare_model(be, "llama_mha 1x130", llama_yaml(y, sizeof y, 301, 64, 4, 4, 96, 0.0), 1, 130);
}

TEST(cuda_ops_dba) {
    cb_backend *be = gpu();
    if (!be) return;
    compare_model(be, "dba_gate",
                  "version: 1\nname: t\nmodel:\n  type: TransformerModel\n"
                  "  embedder: {type: token, vocab_size: 29, d_model: 24}\n"
                  "  topology:\n    type: StackedTopology\n    layers:\n"
                  "      - type: ResidualTopology\n        layers:\n"
                  "          - {type: RMSNormLayer, d_model: 24}\n"
                  "          - {type: AttentionLayer, d_model: 24, n_heads: 4, n_kv_heads: 2, mode: decoupled,\n"
                  "             sem_dim: 8, geo_dim: 16, v_dim: 12, decoupled_gate: true, decoupled_gate_dynamic: true}\n"
                  "      - type: ResidualTopology\n        layers:\n"
                  "          - {type: RMSNormLayer, d_model: 24}\n"
                  "          - {type: AttentionLayer, d_model: 24, n_heads: 2, mode: decoupled, sem_dim: 4, geo_dim: 8,\n"
                  "             v_dim: 20, decoupled_gate: true, bias: true}\n"
                  "      - type: ResidualTopology\n        layers:\n"
                  "          - {type: RMSNormLayer, d_model: 24}\n"
                  "          - {type: AttentionLayer, d_model: 24, n_heads: 4, mode: decoupled, sem_dim: 16, geo_dim: 8}\n"
                  "      - {type: RMSNormLayer, d_model: 24}\n",
                  3, 19);
}

TEST(cuda_ops_gpt2) {
    cb_backend *be = gpu();
    if (!be) return;
    compare_model(be, "gpt2",
                  "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  head: {bias: true}\n"
                  "  embedder: {type: token_position, vocab_size: 67, d_model: 36, max_seq_len: 40}\n"
                  "  topology:\n    type: StackedTopology\n    layers:\n"
                  "      - type: NestedTopology\n        repeat: 2\n        layers:\n"
                  "          - type: ResidualTopology\n            layers:\n"
                  "              - {type: LayerNormLayer, d_model: 36}\n"
                  "              - {type: AttentionLayer, d_model: 36, n_heads: 3, rope_enabled: false, bias: true}\n"
                  "              - {type: DropoutLayer, p: 0.1}\n"
                  "          - type: ResidualTopology\n            layers:\n"
                  "              - {type: LayerNormLayer, d_model: 36}\n"
                  "              - {type: MLPLayer, d_model: 36, d_ff: 100}\n"
                  "      - {type: LayerNormLayer, d_model: 36}\n",
                  2, 33);
}

/* The head fused with the loss (backend.h head_loss), chunk rows at a time, on the GPU
 * against the CPU's unfused pass: the loss, the head input's gradient and every parameter's
 * gradient; then an evaluation (no gradients) on the same fused run. */
static void compare_fused_head(cb_backend *be, const char *what, const char *yaml, int B, int T, int chunk) {
    json_t *plan;
    cb_model m;
    cb_program prog;
    cb_error e;
    if (build_model(what, yaml, B, T, &plan, &m, &prog)) return;
    const size_t nw = m.params.total_floats, N = (size_t)B * T;
    for (size_t i = 0; i < nw; i++) m.weights[i] *= 4.0f;
    cb_rng rng;
    cb_rng_init(&rng, 5);
    int32_t *tok = malloc(2 * N * sizeof *tok);
    for (size_t i = 0; i < 2 * N; i++) tok[i] = (int32_t)(cb_rng_next(&rng) % (uint64_t)prog.vocab_size);
    tok[N + 2] = tok[N + N - 1] = -1; /* ignored targets, one of them in the last chunk */
    const cb_slot *x = &prog.slots[prog.inputs[prog.ops[prog.n_ops - 1].in_first]];
    const size_t nx = N * (size_t)x->width;
    cb_run host, dev;
    float *g_cpu = calloc(nw, sizeof *g_cpu), *w = NULL, *g = NULL, *g_gpu = NULL, *dx = NULL;
    int32_t *t = NULL;
    EXPECT(cb_run_init(&host, &prog, 1, &e) == CB_OK);
    host.training = 0; /* no dropout: the same pass on both */
    float loss_cpu = cb_run_step(&host, &prog, m.weights, g_cpu, tok, tok + N);
    if (cb_run_init_fused(&dev, be, &prog, chunk, &e) != CB_OK) {
        FAILF("%s: %s", what, e.msg);
        goto done;
    }
    if (dev.head_chunk != chunk) FAILF("%s: the run's chunk is %d rows, not %d", what, dev.head_chunk, chunk);
    dev.training = 0;
    w = be->alloc(be, nw * sizeof *w, &e);
    g = be->alloc(be, nw * sizeof *g, &e);
    t = be->alloc(be, 2 * N * sizeof *t, &e);
    if (!w || !g || !t) {
        FAILF("%s: %s", what, e.msg);
        goto done_dev;
    }
    be->upload(be, w, m.weights, nw * sizeof *w, &e);
    be->upload(be, t, tok, 2 * N * sizeof *t, &e);
    float loss_gpu = cb_run_step(&dev, &prog, w, g, t, t + N);
    g_gpu = download(be, g, nw);
    dx = download(be, dev.dslots + x->offset, nx);
    float loss_eval = cb_run_forward(&dev, &prog, w, t, t + N);
    if (be->synchronize(be, &e) != CB_OK) FAILF("%s: %s: %s", what, e.where, e.msg);
    if (!g_gpu || !dx) {
        FAILF("%s: downloads failed", what);
        goto done_dev;
    }
    double lerr = fabs((double)loss_gpu - loss_cpu) / fabs((double)loss_cpu);
    double eerr = fabs((double)loss_eval - loss_cpu) / fabs((double)loss_cpu);
    double xerr = norm_err(host.dslots + x->offset, dx, nx, 1e-3 * max_abs(host.dslots + x->offset, nx) + 1e-12);
    double gerr = 0, gmax = max_abs(g_cpu, nw);
    for (int pi = 0; pi < m.params.n; pi++) {
        const cb_param *p = &m.params.items[pi];
        double eg = norm_err(g_cpu + p->offset, g_gpu + p->offset, p->numel, 1e-3 * gmax);
        if (!(eg <= BWD_TOL)) FAILF("%s: gradient of %s: normalised error %.3g", what, p->name, eg);
        if (!(eg <= gerr)) gerr = eg;
    }
    if (!(lerr <= FWD_TOL)) FAILF("%s: loss %.9g fused on the GPU, %.9g on the CPU", what, loss_gpu, loss_cpu);
    if (!(eerr <= FWD_TOL)) FAILF("%s: evaluation loss %.9g fused on the GPU, %.9g on the CPU", what, loss_eval, loss_cpu);
    if (!(xerr <= BWD_TOL)) FAILF("%s: the head input's gradient: normalised error %.3g", what, xerr);
    char label[200];
    snprintf(label, sizeof label, "%s: loss", what);
    REPORT_DIFF(label, lerr, FWD_TOL);
    snprintf(label, sizeof label, "%s: head input gradient", what);
    REPORT_DIFF(label, xerr, BWD_TOL);
    snprintf(label, sizeof label, "%s: parameter gradients", what);
    REPORT_DIFF(label, gerr, BWD_TOL);
done_dev:
    be->free(be, w);
    be->free(be, g);
    be->free(be, t);
    cb_run_free(&dev);
done:
    cb_run_free(&host);
    free(g_cpu);
    free(g_gpu);
    free(dx);
    free(tok);
    cb_program_free(&prog);
    cb_model_free(&m);
    json_decref(plan);
}

TEST(cuda_fused_head_equals_the_cpu) {
    cb_backend *be = gpu();
    if (!be) return;
    char y[2048];
    compare_fused_head(be, "fused head, tied, chunks of 7", llama_yaml(y, sizeof y, 301, 48, 6, 2, 70, 0.0), 3, 37, 7);
    compare_fused_head(be, "fused head, tied, one chunk", llama_yaml(y, sizeof y, 301, 48, 6, 2, 70, 0.0), 3, 37, 111);
    compare_fused_head(be, "fused head, bias, chunks of 128",
                       "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  head: {bias: true}\n"
                       "  embedder: {type: token_position, vocab_size: 1000, d_model: 36, max_seq_len: 300}\n"
                       "  topology:\n    type: StackedTopology\n    layers:\n"
                       "      - type: ResidualTopology\n        layers:\n"
                       "          - {type: LayerNormLayer, d_model: 36}\n"
                       "          - {type: AttentionLayer, d_model: 36, n_heads: 3, rope_enabled: false, bias: true}\n"
                       "      - {type: LayerNormLayer, d_model: 36}\n",
                       2, 300, 128);
}

/* The same comparison through the CPU backend's head_loss: it runs on every machine, so the
 * fused path and this check of it are exercised where there is no GPU. */
TEST(fused_head_on_the_cpu_equals_unfused) {
    char y[2048];
    compare_fused_head(cb_backend_cpu(), "cpu fused head, tied, chunks of 7", llama_yaml(y, sizeof y, 301, 48, 6, 2, 70, 0.0),
                       3, 37, 7);
}

TEST(cuda_ops_topologies) {
    cb_backend *be = gpu();
    if (!be) return;
    compare_model(be, "topologies",
                  "version: 1\nname: t\nmodel:\n  type: TransformerModel\n"
                  "  embedder: {type: token, vocab_size: 7, d_model: 8}\n"
                  "  topology:\n    type: SequentialTopology\n    layers:\n"
                  "      - type: ParallelTopology\n        layers:\n"
                  "          - {type: LinearLayer, d_in: 8, d_out: 8}\n"
                  "          - {type: SwiGLULayer, d_model: 8, d_ff: 6}\n"
                  "      - type: ParallelTopology\n        combine: mean\n        layers:\n"
                  "          - {type: RMSNormLayer, d_model: 8}\n"
                  "          - type: StackedTopology\n            layers:\n"
                  "              - {type: RoPE, d_model: 8, n_heads: 2}\n"
                  "              - {type: LinearLayer, d_in: 8, d_out: 8, bias: false}\n"
                  "      - type: BranchingTopology\n        layers:\n"
                  "          - {type: LinearLayer, d_in: 8, d_out: 4}\n"
                  "          - {type: AttentionLayer, d_model: 8, n_heads: 2}\n"
                  "      - {type: LinearLayer, d_in: 12, d_out: 8}\n"
                  "      - type: CyclicTopology\n        cycles: 2\n        layers:\n"
                  "          - {type: LayerNormLayer, d_model: 8}\n"
                  "          - {type: MLPLayer, d_model: 8, d_ff: 10}\n"
                  "      - type: RecurrentTopology\n        steps: 3\n        layers:\n"
                  "          - {type: RMSNormLayer, d_model: 8}\n"
                  "          - {type: LinearLayer, d_in: 8, d_out: 8}\n"
                  "      - {type: DropoutLayer, p: 0.25}\n",
                  2, 9);
}

/* ---- whole training runs ---- */

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

/* Train tests/cli/train/tiny.yml's run `run` for `steps` on be into dir; the final
 * weights into w, the last loss into *loss. */
static int train(cb_backend *be, const char *run, int sgd, const char *dir, long steps, float *w, size_t nw,
                 double *loss, cb_error *e) {
    char *yaml = read_text("tests/cli/train/tiny.yml");
    json_t *plan = yaml ? test_compile(yaml, "tiny.yml") : NULL;
    free(yaml);
    if (!plan) return cb_fail(e, CB_E_INVALID, "tiny.yml", "does not compile");
    const json_t *g, *r;
    static cb_train_config c;
    char data[300];
    int rc = cb_train_find_run(plan, "test", run, &g, &r, e);
    if (rc == CB_OK) rc = cb_train_config_read(&c, g, r, e);
    c.steps = c.schedule.total = steps;
    c.save_every = 0;
    c.instruments = 0; /* metrics.jsonl only */
    if (sgd) { /* the run's schedule, clipping and accumulation; SGD with momentum instead */
        c.optimizer.kind = CB_OPT_SGD;
        c.optimizer.momentum = 0.9;
    }
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
        if (rc == CB_OK) {
            memcpy(w, m.weights, nw * sizeof *w);
            *loss = res.loss;
        }
        cb_train_data_close(&d);
    }
    cb_model_free(&m);
    return rc;
}

TEST(cuda_training_equals_the_cpu) {
    cb_backend *be = gpu();
    if (!be) return;
    char path[300];
    FILE *f = fopen(tmp_path("train.tokens", path, sizeof path), "w");
    if (!f) {
        FAILF("cannot write %s", path);
        return;
    }
    for (int i = 0; i < 3000; i++) fprintf(f, "%d ", (i * i + 3 * i) % 61);
    fclose(f);
    char *yaml = read_text("tests/cli/train/tiny.yml");
    json_t *plan = yaml ? test_compile(yaml, "tiny.yml") : NULL;
    free(yaml);
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
    /* adamw: grad_accum 2, grad_clip 1, weight decay, dropout 0.1 in the blocks; lion;
     * sgd: the adamw run with SGD and momentum */
    const char *runs[] = {"adamw", "lion", "adamw"}, *names[] = {"adamw", "lion", "sgd"};
    for (int k = 0; k < 3; k++) {
        char cpu_dir[300], dev_dir[300], name[64];
        snprintf(name, sizeof name, "cpu_%s", names[k]);
        mkdir(tmp_path(name, cpu_dir, sizeof cpu_dir), 0777);
        snprintf(name, sizeof name, "gpu_%s", names[k]);
        mkdir(tmp_path(name, dev_dir, sizeof dev_dir), 0777);
        double la = 0, lb = 0;
        if (train(cb_backend_cpu(), runs[k], k == 2, cpu_dir, 6, a, nw, &la, &e) != CB_OK)
            FAILF("%s on the CPU: %s: %s", names[k], e.where, e.msg);
        if (train(be, runs[k], k == 2, dev_dir, 6, b, nw, &lb, &e) != CB_OK)
            FAILF("%s on the GPU: %s: %s", names[k], e.where, e.msg);
        if (cb_test_failed) break;
        double err = norm_err(a, b, nw, 1e-6), lerr = fabs(la - lb) / fabs(la);
        char label[128];
        snprintf(label, sizeof label, "training %s: weights after 6 steps", names[k]);
        REPORT_DIFF(label, err, TRAIN_TOL);
        snprintf(label, sizeof label, "training %s: last loss", names[k]);
        REPORT_DIFF(label, lerr, TRAIN_TOL);
        if (!(err <= TRAIN_TOL)) FAILF("%s: the trained weights differ from the CPU's by %.3g (normalised)", names[k], err);
        if (!(lerr <= TRAIN_TOL)) FAILF("%s: last loss %.9g on the GPU, %.9g on the CPU", names[k], lb, la);
    }
    free(a);
    free(b);
    remove_tree(tmp_dir_path);
}

/* The fault contract's first half: a buffer larger than the GPU is one clear error. */
TEST(cuda_out_of_memory_is_an_error) {
    cb_backend *be = gpu();
    if (!be) return;
    cb_error e;
    void *p = be->alloc(be, (size_t)1 << 50, &e);
    EXPECT(p == NULL);
    if (!p) EXPECT(strstr(e.msg, "out of GPU memory") != NULL);
    be->free(be, p);
    EXPECT(be->synchronize(be, &e) == CB_OK); /* not sticky */
}

/* A pass whose scratch does not fit (a tiny model at T 32768: the attention scores alone
 * would take 137 GB) stops with that error at synchronize, runs nothing after it (backward
 * included), and the device works again afterwards. */
TEST(cuda_scratch_out_of_memory_stops_the_pass) {
    cb_backend *be = gpu();
    if (!be) return;
    char y[2048];
    json_t *plan = test_compile(llama_yaml(y, sizeof y, 11, 16, 4, 2, 24, 0.0), "huge_T");
    if (!plan) {
        FAILF("does not compile");
        return;
    }
    cb_model m;
    cb_program prog;
    cb_run r;
    cb_error e;
    const int B = 8, T = 32768;
    const size_t N = (size_t)B * T;
    EXPECT(cb_model_init(&m, plan, 1, &e) == CB_OK);
    EXPECT(cb_program_init(&prog, plan, &m.params, B, T, &e) == CB_OK);
    if (cb_test_failed || cb_run_init_on(&r, be, &prog, 1, &e) != CB_OK) {
        FAILF("setup: %s", e.msg);
        json_decref(plan);
        return;
    }
    const size_t nw = m.params.total_floats;
    float *w = be->alloc(be, nw * sizeof *w, &e), *g = be->alloc(be, nw * sizeof *g, &e);
    int32_t *t = be->alloc(be, 2 * N * sizeof *t, &e); /* zeroed: token 0 everywhere */
    be->upload(be, w, m.weights, nw * sizeof *w, &e);
    float loss = cb_run_forward(&r, &prog, w, t, t + N);
    cb_run_backward(&r, &prog, w, g);
    double norm = be->grad_clip(be, g, nw, 1.0);
    EXPECT(loss != loss || loss == 0); /* NaN, or never computed */
    EXPECT(norm != norm);
    EXPECT_EQ_INT(CB_E_RUNTIME, be->synchronize(be, &e));
    if (!strstr(e.msg, "out of GPU memory") || !strstr(e.msg, "scratch")) FAILF("message: %s", e.msg);
    EXPECT(be->synchronize(be, &e) == CB_OK); /* reported once, then the device is usable */
    float *back = malloc(nw * sizeof *back);
    EXPECT(be->download(be, back, w, nw * sizeof *w, &e) == CB_OK);
    EXPECT(back && memcmp(back, m.weights, nw * sizeof *back) == 0); /* untouched */
    free(back);
    be->free(be, w);
    be->free(be, g);
    be->free(be, t);
    cb_run_free(&r);
    cb_program_free(&prog);
    cb_model_free(&m);
    json_decref(plan);
}

/* Distillation's KL on the device (kernels/distill.cu) against train/distill.c's: rows of
 * logits of a small and a GPT-2-sized vocabulary, a temperature, a gradient that already
 * holds values (the KL part is added). Float exponentials and log-sum-exps against the
 * CPU's doubles: the KL within 1e-4 relative (its terms are sums of V products, each good
 * to a few float ulps), the gradient within 1e-4 of its largest value. */
TEST(cuda_distill_kl_equals_the_cpu) {
    cb_backend *be = gpu();
    if (!be) return;
    const struct { int rows, V; double temp, scale; } cases[] = {{37, 100, 2.0, 0.5}, {9, 50257, 1.0, 0.3}, {3, 50257, 4.0, 1.0}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const int rows = cases[c].rows, V = cases[c].V;
        const size_t n = (size_t)rows * V;
        float *s = malloc(n * sizeof *s), *t = malloc(n * sizeof *t), *ds = malloc(n * sizeof *ds),
              *want = malloc(n * sizeof *want);
        cb_rng r;
        cb_rng_init(&r, 11 + c);
        for (size_t i = 0; i < n; i++) {
            s[i] = (float)(3 * cb_rng_normal(&r));
            t[i] = s[i] + (float)cb_rng_normal(&r); /* a teacher near the student, as after surgery */
            ds[i] = want[i] = (float)(1e-7 * cb_rng_normal(&r)); /* below the KL part, which the check weighs */
        }
        cb_error e;
        float *d_s = be->alloc(be, n * sizeof *d_s, &e), *d_t = be->alloc(be, n * sizeof *d_t, &e),
              *d_ds = be->alloc(be, n * sizeof *d_ds, &e);
        if (!d_s || !d_t || !d_ds) {
            FAILF("alloc: %s", e.msg);
            return;
        }
        be->upload(be, d_s, s, n * sizeof *s, &e);
        be->upload(be, d_t, t, n * sizeof *t, &e);
        be->upload(be, d_ds, ds, n * sizeof *ds, &e);
        double kl_cpu = cb_backend_cpu()->distill_kl(cb_backend_cpu(), want, s, t, rows, V, cases[c].temp, cases[c].scale);
        double kl_gpu = be->distill_kl(be, d_ds, d_s, d_t, rows, V, cases[c].temp, cases[c].scale);
        EXPECT(be->synchronize(be, &e) == CB_OK);
        float *got = download(be, d_ds, n);
        char what[96];
        snprintf(what, sizeof what, "distill kl %dx%d T%g: kl %.6g vs %.6g", rows, V, cases[c].temp, kl_gpu, kl_cpu);
        double dk = fabs(kl_gpu - kl_cpu) / fabs(kl_cpu);
        REPORT_DIFF(what, dk, 1e-4);
        if (!(dk <= 1e-4)) FAILF("%s", what);
        double dg = norm_err(got, want, n, 0);
        snprintf(what, sizeof what, "distill kl %dx%d gradient", rows, V);
        REPORT_DIFF(what, dg, 1e-4);
        if (!(dg <= 1e-4)) FAILF("%s: %.3g", what, dg);
        free(got), free(s), free(t), free(ds), free(want);
        be->free(be, d_s), be->free(be, d_t), be->free(be, d_ds);
    }
}
