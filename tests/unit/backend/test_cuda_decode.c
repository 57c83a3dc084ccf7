/* test_cuda_decode.c: decoding on the GPU (backend/cuda/decode.c, kernels/matvec.cu,
 * kernels/attention_decode.cu) against the CPU's decoding path, the reference:
 *  - weights converted on the device are the CPU's bytes for every kind, and the products
 *    over them are the float products over the dequantised weights;
 *  - a session's logits (a prompt in chunks, then decode steps) per weight kind and per
 *    cache kind, for Llama/GQA, DBA with both gates, GPT-2 (biases, learned positions) and
 *    the topologies (Parallel, Branching, Cyclic, Recurrent, RoPE and linear layers);
 *  - a long context (many splits over the keys, at one query and at prefill chunks), with
 *    and without a local window, over fp32 and q8_0 caches;
 *  - greedy generation on the GPU gives the CPU's tokens, prefill in one pass and chunked;
 *  - truncate (speculative rollback) then continue, across a growth of the cache;
 *  - decode steps captured as CUDA graphs give the logits of the same steps uncaptured,
 *    bit for bit, and the CPU's within TOL, over hundreds of steps across growths of the
 *    cache and of the RoPE tables and changes of the decode plan's window (each a new
 *    capture), and greedy sampling on the GPU picks the CPU's tokens.
 * Skips, saying why, where the build has no CUDA backend or the machine no GPU. */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../infer/infer_util.h"
#include "backend/backend.h"
#include "backend/cpu/matvec.h"
#include "infer/generate.h"
#include "infer/session.h"
#include "tensor/quant.h"
#include "cuda_test.h"
#ifdef CB_HAVE_CUDA
#include <cuda_runtime_api.h>
#include "backend/cuda/cuda.h"
#include "backend/cuda/kernels.h"
#endif

/* float32 on both sides over the same stored weights and cache: the products and the
 * softmax sum in another order, and the GPU's expf is not the CPU's polynomial: a few ulp
 * per op, grown through two layers of weights scaled 5x (attention far from uniform). */
#define TOL 1e-4


#define LLAMA_UNTIED IU_HEAD \
    "  embedder: {type: token, vocab_size: 70, d_model: 64}\n" \
    "  topology:\n    type: StackedTopology\n    layers:\n" \
    "      - type: NestedTopology\n        repeat: 2\n        layers:\n" \
    "          - type: ResidualTopology\n            layers:\n" \
    "              - {type: RMSNormLayer, d_model: 64}\n" \
    "              - {type: AttentionLayer, d_model: 64, n_heads: 8, n_kv_heads: 2, rope_theta: 500}\n" \
    "          - type: ResidualTopology\n            layers:\n" \
    "              - {type: RMSNormLayer, d_model: 64}\n" \
    "              - {type: SwiGLULayer, d_model: 64, d_ff: 100}\n" \
    "      - {type: RMSNormLayer, d_model: 64}\n"

typedef struct model_case { const char *name, *yaml; } model_case;
/* untied models: converting the head then leaves the embedding's lookups alone */
static const model_case CASES[] = {{"llama_gqa_untied", LLAMA_UNTIED},
                                   {"llama_gqa_tied", IU_LLAMA},
                                   {"dba_gated", IU_DBA},
                                   {"gpt2_positions", IU_GPT2},
                                   {"topologies", IU_TOPOLOGIES}};
#define N_CASES ((int)(sizeof CASES / sizeof *CASES))

static int vocab_of(const cb_model *m) {
    return (int)json_integer_value(json_object_get(json_object_get(m->plan, "model"), "vocab_size"));
}

typedef struct sess_opts {
    cb_backend *be;
    int chunk;
    cb_kv_kind weights, cache;
    int window; /* > 0: a fixed plan with this local window */
} sess_opts;

static int open_session(cb_session *s, const cb_model *m, const sess_opts *o) {
    cb_session_config c = cb_session_config_default();
    c.backend = o->be;
    c.chunk = o->chunk;
    c.weight_kind = o->weights;
    c.kinds.k = c.kinds.k_sem = c.kinds.v = o->cache;
    c.kv_layout = CB_KV_LAYOUT_HEADS; /* the CPU's caches laid out as the GPU's: per head, padded */
    if (o->window > 0) {
        c.plan.mode = CB_DECODE_PLAN_FIXED;
        c.plan.fixed.local_window = o->window;
    }
    cb_error e;
    if (cb_session_init(s, m, &c, &e) != CB_OK) {
        FAILF("session on %s: %s: %s", o->be->name, e.where, e.msg);
        return 1;
    }
    return 0;
}

/* The session's logits of tokens[0..T): a prompt of P tokens in one call (all rows, in
 * passes of chunk), then one token per call. out (T, V). */
static int session_logits(const cb_model *m, const sess_opts *o, const int32_t *tokens, int T, int P, float *out) {
    cb_session s;
    if (open_session(&s, m, o)) return 1;
    cb_error e;
    int rc = cb_session_forward(&s, tokens, P, out, 1, &e);
    for (int t = P; rc == CB_OK && t < T; t++) rc = cb_session_forward(&s, tokens + t, 1, out + (size_t)t * s.vocab, 0, &e);
    if (rc != CB_OK) FAILF("forward on %s: %s", o->be->name, e.msg);
    cb_session_free(&s);
    return rc != CB_OK;
}

/* The weight matrices of m's program (the roles decoding converts) replaced by their
 * round trip through kind, each tensor once: the fp32 model the converted one computes. */
static int is_matrix(const cb_op *op, int role) {
    switch (op->kind) {
    case CB_OP_ATTENTION:
        return role == CB_P_Q_W || role == CB_P_K_W || role == CB_P_V_W || role == CB_P_O_W || role == CB_P_QSEM_W ||
               role == CB_P_KSEM_W || role == CB_P_QGEO_W || role == CB_P_KGEO_W || role == CB_P_GATE_PROJ;
    case CB_OP_SWIGLU: return role == CB_P_GATE || role == CB_P_UP || role == CB_P_DOWN;
    case CB_OP_MLP: return role == CB_P_FC_W || role == CB_P_PROJ_W;
    case CB_OP_LINEAR:
    case CB_OP_HEAD: return role == CB_P_WEIGHT;
    default: return 0;
    }
}
static int round_trip_weights(cb_model *m, cb_kv_kind kind) {
    cb_program prog;
    cb_error e;
    if (cb_program_init(&prog, m->plan, &m->params, 1, 1, &e) != CB_OK) return 1;
    char *done = calloc(m->params.total_floats, 1);
    for (int i = 0; i < prog.n_ops; i++)
        for (int r = 0; r < CB_OP_MAX_PARAMS; r++) {
            const cb_op *op = &prog.ops[i];
            if (op->p[r] == CB_NO_PARAM || !is_matrix(op, r) || done[op->p[r]]) continue;
            done[op->p[r]] = 1;
            for (int k = 0; k < m->params.n; k++) {
                const cb_param *par = &m->params.items[k];
                if (par->offset != op->p[r]) continue;
                const int rows = (int)par->shape[0], cols = (int)par->shape[1];
                unsigned char *buf = malloc(cb_kv_kind_bytes(kind, (size_t)cols));
                for (int row = 0; row < rows; row++) {
                    float *w = m->weights + par->offset + (size_t)row * cols;
                    cb_kv_quantize_row(kind, buf, w, (size_t)cols);
                    cb_kv_dequantize_row(kind, w, buf, (size_t)cols);
                }
                free(buf);
            }
        }
    free(done);
    cb_program_free(&prog);
    return 0;
}

TEST(converted_weights_are_the_cpus_bytes_and_products_exact) {
#ifdef CB_HAVE_CUDA
    cb_backend *be = gpu();
    if (!be) return;
    unsigned long long st = 0x9E3779B97F4A7C15ULL;
    const int shapes[][3] = {{37, 100, 1}, {64, 256, 3}, {300, 64, 11}, {5, 33, 2}, {129, 2048, 9}, {1000, 36, 1}};
    for (int si = 0; si < 6; si++) {
        const int rows = shapes[si][0], cols = shapes[si][1], n = shapes[si][2];
        float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * n * cols);
        float *bias = malloc(sizeof(float) * rows), *y = malloc(sizeof(float) * n * rows);
        float *deq = malloc(sizeof(float) * cols);
        for (int i = 0; i < rows * cols; i++) w[i] = cb_test_urandf(&st) * (i % 7 == 0 ? 3.0f : 0.5f);
        w[3] = 0; /* and a block of zeros, the q4_0 -0 scale */
        for (int j = 0; j < 32 && j < cols; j++) w[cols + j] = 0;
        for (int j = 0; j < n * cols; j++) x[j] = cb_test_urandf(&st);
        for (int r = 0; r < rows; r++) bias[r] = cb_test_urandf(&st);
        cb_error e;
        float *dw = be->alloc(be, sizeof(float) * rows * cols, &e), *dx = be->alloc(be, sizeof(float) * n * cols, &e);
        float *db = be->alloc(be, sizeof(float) * rows, &e), *dy = be->alloc(be, sizeof(float) * n * rows, &e);
        be->upload(be, dw, w, sizeof(float) * rows * cols, &e);
        be->upload(be, dx, x, sizeof(float) * n * cols, &e);
        be->upload(be, db, bias, sizeof(float) * rows, &e);
        for (int k = 0; k < CB_KV_COUNT; k++) {
            cb_weight_matrix cpu;
            if (cb_weight_matrix_from_f32(&cpu, (cb_kv_kind)k, w, rows, cols, &e) != CB_OK) { FAILF("%s", e.msg); continue; }
            const size_t bytes = cb_weight_matrix_bytes(&cpu);
            void *dq = be->alloc(be, bytes, &e);
            unsigned char *got = malloc(bytes);
            cbk_quantize_rows(dq, cpu.row_bytes, dw, (size_t)cols, k, rows, cols);
            cbk_matvec(dy, dq, cpu.row_bytes, k, dx, db, rows, cols, n);
            if (be->synchronize(be, &e) != CB_OK) FAILF("%s: %s", cb_kv_kind_name((cb_kv_kind)k), e.msg);
            be->download(be, got, dq, bytes, &e);
            be->download(be, y, dy, sizeof(float) * n * rows, &e);
            size_t first = bytes;
            for (size_t b = 0; b < bytes && first == bytes; b++)
                if (got[b] != ((const unsigned char *)cpu.data)[b]) first = b;
            if (first != bytes)
                FAILF("(%d,%d) %s: byte %zu of %zu differs from the CPU's", rows, cols,
                      cb_kv_kind_name((cb_kv_kind)k), first, bytes);
            // y against double sums over the dequantised row: float sums of cols products,
            // each within cols * 2^-24 of their magnitude (sum |w x|)
            double worst = 0;
            for (int r = 0; r < rows; r++) {
                cb_kv_dequantize_row((cb_kv_kind)k, deq, (const unsigned char *)cpu.data + (size_t)r * cpu.row_bytes,
                                     (size_t)cols);
                for (int t = 0; t < n; t++) {
                    double s = bias[r], mag = fabs(bias[r]);
                    for (int j = 0; j < cols; j++) {
                        s += (double)deq[j] * x[(size_t)t * cols + j];
                        mag += fabs((double)deq[j] * x[(size_t)t * cols + j]);
                    }
                    double err = fabs(y[(size_t)t * rows + r] - s) / (mag * (cols + 1) * 0x1p-24 + 1e-30);
                    worst = cb_test_worst(worst, err);
                }
            }
            char what[96];
            snprintf(what, sizeof what, "matvec (%d,%d) x %d %s (in units of the bound)", rows, cols, n,
                     cb_kv_kind_name((cb_kv_kind)k));
            REPORT_DIFF(what, worst, 1.0);
            if (!(worst <= 1.0)) FAILF("%s: %.3g of the bound", what, worst);
            be->free(be, dq);
            free(got);
            cb_weight_matrix_free(&cpu);
        }
        be->free(be, dw), be->free(be, dx), be->free(be, db), be->free(be, dy);
        free(w), free(x), free(bias), free(y), free(deq);
    }
#else
    gpu();
#endif
}

/* GPU logits with weights of kind against the CPU's fp32 decoding of the same model with
 * its matrices rounded through kind (the CPU's own products over block kinds quantise the
 * input to int8, which the GPU does not: the fp32 model is the exact reference). */
TEST(logits_per_weight_kind) {
    cb_backend *be = gpu();
    if (!be) return;
    const int T = 30, P = 20; /* the GPU's prompt in passes of 16 (cuBLAS) and 4 (matvec kernel) */
    for (int c = 0; c < N_CASES; c++) {
        if (strstr(CASES[c].name, "tied") && !strstr(CASES[c].name, "untied")) continue; /* tied: below */
        for (int k = 0; k < CB_KV_COUNT; k++) {
            cb_model m, ref;
            if (iu_model(&m, CASES[c].yaml, 3, 5.0) || iu_model(&ref, CASES[c].yaml, 3, 5.0)) {
                FAILF("%s: model", CASES[c].name);
                return;
            }
            round_trip_weights(&ref, (cb_kv_kind)k);
            const int V = vocab_of(&m);
            int32_t tokens[64];
            iu_tokens(tokens, T, V, 11 + c);
            float *want = calloc((size_t)T * V, sizeof *want), *got = calloc((size_t)T * V, sizeof *got);
            sess_opts oc = {cb_backend_cpu(), 4, CB_KV_F32, CB_KV_F32, 0}, og = {be, 16, (cb_kv_kind)k, CB_KV_F32, 0};
            if (!session_logits(&ref, &oc, tokens, T, P, want) && !session_logits(&m, &og, tokens, T, P, got)) {
                double d = iu_rel_diff(got, want, (size_t)T * V);
                char what[128];
                snprintf(what, sizeof what, "%s: weights %s", CASES[c].name, cb_kv_kind_name((cb_kv_kind)k));
                REPORT_DIFF(what, d, TOL);
                if (!(d <= TOL)) FAILF("%s: relative difference %.3g", what, d);
            }
            free(want), free(got);
            cb_model_free(&m), cb_model_free(&ref);
        }
    }
}

/* The tied model (the head converted, the embedding's lookups fp32) at the CPU's own kind:
 * fp16/bf16 products read the same values on both sides; over the block kinds the two
 * differ by the CPU's int8 rounding of the input alone, which is a part of the kind's
 * whole effect on the CPU's logits (the weights' rounding plus that): bounded by it. */
TEST(logits_tied_head_per_weight_kind) {
    cb_backend *be = gpu();
    if (!be) return;
    const int T = 15, P = 5;
    cb_model m;
    if (iu_model(&m, IU_LLAMA, 4, 5.0)) { FAILF("model"); return; }
    const int V = vocab_of(&m);
    int32_t tokens[64];
    iu_tokens(tokens, T, V, 7);
    float *f32 = calloc((size_t)T * V, sizeof *f32), *want = calloc((size_t)T * V, sizeof *want);
    float *got = calloc((size_t)T * V, sizeof *got);
    sess_opts o32 = {cb_backend_cpu(), 64, CB_KV_F32, CB_KV_F32, 0};
    if (session_logits(&m, &o32, tokens, T, P, f32)) goto out;
    for (int k = 0; k < CB_KV_COUNT; k++) {
        sess_opts oc = {cb_backend_cpu(), 64, (cb_kv_kind)k, CB_KV_F32, 0}, og = {be, 64, (cb_kv_kind)k, CB_KV_F32, 0};
        if (session_logits(&m, &oc, tokens, T, P, want) || session_logits(&m, &og, tokens, T, P, got)) break;
        const int blocks = k == CB_KV_Q8_0 || k == CB_KV_Q4_0 || k == CB_KV_NF4;
        const double tol = TOL + (blocks ? iu_rel_diff(want, f32, (size_t)T * V) : 0);
        double d = iu_rel_diff(got, want, (size_t)T * V);
        char what[128];
        snprintf(what, sizeof what, "llama tied: weights %s vs the CPU's", cb_kv_kind_name((cb_kv_kind)k));
        REPORT_DIFF(what, d, tol);
        if (!(d <= tol)) FAILF("%s: relative difference %.3g", what, d);
    }
out:
    free(f32), free(want), free(got);
    cb_model_free(&m);
}

/* Per cache kind, GPU against CPU at that kind, the CPU's caches in the GPU's per-head layout
 * (open_session: kv_layout; the CPU's default packs DBA's small heads, a block spanning
 * heads and tokens, which the GPU does not read). The caches hold the same values except
 * where a key or value computed in another float order rounds to the neighbouring level
 * (rare, one level): bounded by half of the kind's own effect (CPU kind vs CPU fp32). */
TEST(logits_per_cache_kind) {
    cb_backend *be = gpu();
    if (!be) return;
    const int T = 21, P = 9;
    for (int c = 0; c < N_CASES; c++) {
        cb_model m;
        if (iu_model(&m, CASES[c].yaml, 5, 5.0)) { FAILF("%s: model", CASES[c].name); continue; }
        const int V = vocab_of(&m);
        int32_t tokens[64];
        iu_tokens(tokens, T, V, 31 + c);
        float *f32 = calloc((size_t)T * V, sizeof *f32), *want = calloc((size_t)T * V, sizeof *want);
        float *got = calloc((size_t)T * V, sizeof *got);
        sess_opts o32 = {cb_backend_cpu(), 4, CB_KV_F32, CB_KV_F32, 0};
        if (!session_logits(&m, &o32, tokens, T, P, f32))
            for (int k = 0; k < CB_KV_COUNT; k++) {
                sess_opts oc = {cb_backend_cpu(), 4, CB_KV_F32, (cb_kv_kind)k, 0};
                sess_opts og = {be, 4, CB_KV_F32, (cb_kv_kind)k, 0};
                if (session_logits(&m, &oc, tokens, T, P, want) || session_logits(&m, &og, tokens, T, P, got)) break;
                const double tol = TOL + 0.5 * iu_rel_diff(want, f32, (size_t)T * V);
                double d = iu_rel_diff(got, want, (size_t)T * V);
                char what[128];
                snprintf(what, sizeof what, "%s: cache %s", CASES[c].name, cb_kv_kind_name((cb_kv_kind)k));
                REPORT_DIFF(what, d, tol);
                if (!(d <= tol)) FAILF("%s: relative difference %.3g", what, d);
            }
        free(f32), free(want), free(got);
        cb_model_free(&m);
    }
}

/* 700 tokens: the keys split over many blocks at prefill chunks of 64 and at one query;
 * a local window of 100 (fixed plan) on both sides; fp32 and q8_0 caches, the GQA model
 * and DBA. The last 12 rows (decode steps) and the prompt's last chunk compared. */
TEST(long_context_splits_and_windows) {
    cb_backend *be = gpu();
    if (!be) return;
    const int T = 700, P = 688;
    const model_case *cs[2] = {&CASES[0], &CASES[2]};
    for (int c = 0; c < 2; c++) {
        cb_model m;
        if (iu_model(&m, cs[c]->yaml, 6, 1.0)) { FAILF("model"); return; }
        const int V = vocab_of(&m);
        int32_t *tokens = malloc(sizeof *tokens * T);
        iu_tokens(tokens, T, V, 77);
        float *want = calloc((size_t)T * V, sizeof *want), *got = calloc((size_t)T * V, sizeof *got);
        const cb_kv_kind kinds[2] = {CB_KV_F32, CB_KV_Q8_0};
        for (int ki = 0; ki < 2; ki++)
            for (int window = 0; window <= 100; window += 100) {
                sess_opts oc = {cb_backend_cpu(), 64, CB_KV_F32, kinds[ki], window};
                sess_opts og = {be, 64, CB_KV_F32, kinds[ki], window};
                if (session_logits(&m, &oc, tokens, T, P, want) || session_logits(&m, &og, tokens, T, P, got)) break;
                const size_t from = (size_t)(P - 64) * V;
                /* q8_0: a key rounding to the neighbouring level moves a score by ~1/254 of a
                 * block's |k| |q|; over weights at their init scale that stays below 1e-3 */
                const double tol = kinds[ki] == CB_KV_F32 ? TOL : 1e-3;
                double d = iu_rel_diff(got + from, want + from, (size_t)T * V - from);
                char what[128];
                snprintf(what, sizeof what, "%s: %d tokens, cache %s, window %d", cs[c]->name, T,
                         cb_kv_kind_name(kinds[ki]), window);
                REPORT_DIFF(what, d, tol);
                if (!(d <= tol)) FAILF("%s: relative difference %.3g", what, d);
            }
        free(tokens), free(want), free(got);
        cb_model_free(&m);
    }
}

/* Greedy generation on the GPU gives the CPU's tokens: fp32 weights and cache, the prompt
 * in one pass and in chunks of 3; GQA (tied head) and DBA. */
TEST(greedy_generation_equals_the_cpus) {
    cb_backend *be = gpu();
    if (!be) return;
    const char *yamls[2] = {IU_LLAMA, IU_DBA};
    for (int c = 0; c < 2; c++) {
        cb_model m;
        if (iu_model(&m, yamls[c], 9, 5.0)) { FAILF("model"); return; }
        int32_t prompt[10];
        iu_tokens(prompt, 10, vocab_of(&m), 5);
        cb_generate_config g = cb_generate_config_default();
        g.sample.temperature = 0;
        g.stop.max_new_tokens = 20;
        g.stop.n_eos = 0;
        cb_generate_io io = {0};
        cb_generate_output cpu_out, gpu_out;
        cb_error e;
        cb_session_config sc = cb_session_config_default();
        if (cb_generate(&m, &sc, prompt, 10, &g, &io, &cpu_out, &e) != CB_OK) { FAILF("cpu: %s", e.msg); continue; }
        for (int chunk = 64; chunk >= 3; chunk -= 61) {
            sc.backend = be;
            sc.chunk = chunk;
            if (cb_generate(&m, &sc, prompt, 10, &g, &io, &gpu_out, &e) != CB_OK) { FAILF("gpu: %s", e.msg); break; }
            EXPECT_EQ_INT(cpu_out.ids.n, gpu_out.ids.n);
            for (size_t i = 0; i < cpu_out.ids.n && i < gpu_out.ids.n; i++)
                if (cpu_out.ids.v[i] != gpu_out.ids.v[i]) {
                    FAILF("model %d chunk %d: token %zu: gpu %d, cpu %d", c, chunk, i, gpu_out.ids.v[i],
                          cpu_out.ids.v[i]);
                    break;
                }
            fprintf(stderr, "  greedy model %d chunk %d: %zu tokens, gpu equal to cpu: %s\n", c, chunk,
                    gpu_out.ids.n, cb_test_failed ? "no" : "yes");
            cb_generate_output_free(&gpu_out);
        }
        cb_generate_output_free(&cpu_out);
        cb_model_free(&m);
    }
}

/* Speculative rollback: 14 tokens, 6 more (the cache grows past 16: its tokens copied to
 * the new block), truncate to 14, 4 others; the GPU's logits of those are the CPU's, and
 * the same again after a second truncate. DBA, fp16 semantic keys and bf16 values. */
TEST(truncate_then_continue) {
    cb_backend *be = gpu();
    if (!be) return;
    cb_model m;
    if (iu_model(&m, IU_DBA, 5, 5.0)) { FAILF("model"); return; }
    float *logits[2][2];
    for (int side = 0; side < 2; side++) {
        cb_session s;
        cb_session_config c = cb_session_config_default();
        c.backend = side ? be : cb_backend_cpu();
        c.chunk = 8;
        c.kinds.k = CB_KV_F32;
        c.kinds.k_sem = CB_KV_F16;
        c.kinds.v = CB_KV_BF16;
        cb_error e;
        if (cb_session_init(&s, &m, &c, &e) != CB_OK) { FAILF("%s", e.msg); cb_model_free(&m); return; }
        const int V = s.vocab;
        int32_t a[20], b[4];
        iu_tokens(a, 20, V, 1);
        iu_tokens(b, 4, V, 2);
        logits[side][0] = calloc((size_t)4 * V, sizeof(float));
        logits[side][1] = calloc((size_t)4 * V, sizeof(float));
        int rc = cb_session_forward(&s, a, 14, NULL, 0, &e);
        if (rc == CB_OK) rc = cb_session_forward(&s, a + 14, 6, NULL, 0, &e);
        cb_session_truncate(&s, 14);
        EXPECT_EQ_INT(14, s.dec.kv.layers[0].len);
        if (rc == CB_OK) rc = cb_session_forward(&s, b, 4, logits[side][0], 1, &e);
        cb_session_truncate(&s, 14);
        if (rc == CB_OK) rc = cb_session_forward(&s, b, 4, logits[side][1], 1, &e);
        if (rc != CB_OK) FAILF("forward: %s", e.msg);
        cb_session_free(&s);
    }
    const size_t n = (size_t)4 * vocab_of(&m);
    double again = iu_rel_diff(logits[1][1], logits[1][0], n);
    REPORT_DIFF("gpu: after truncate, the same tokens", again, 0);
    EXPECT(again == 0);
    /* fp16/bf16: a value computed in another float order may round to the neighbouring
     * 16-bit value (rare; 2^-11 or 2^-8 of it): far below 1e-3 of the logits */
    double d = iu_rel_diff(logits[1][0], logits[0][0], n);
    REPORT_DIFF("gpu vs cpu after rollback (fp32/f16/bf16)", d, 1e-3);
    if (!(d <= 1e-3)) FAILF("gpu vs cpu after rollback: %.3g", d);
    for (int i = 0; i < 2; i++) free(logits[i][0]), free(logits[i][1]);
    cb_model_free(&m);
}

#ifdef CB_HAVE_CUDA
/* Logits of tokens[0..T) (a prompt of P in one call, then a token a call) with the GPU's
 * steps graphed or not; captures and replays counted. out (T, V). */
static int graph_logits(const cb_model *m, const sess_opts *o, const cb_decode_plan_config *plan, int graphs,
                        const int32_t *tokens, int T, int P, float *out, int32_t *argmax, long *captures,
                        long *replays) {
    cb_session s;
    cb_session_config c = cb_session_config_default();
    c.backend = o->be;
    c.chunk = o->chunk;
    c.weight_kind = o->weights;
    c.kinds.k = c.kinds.k_sem = c.kinds.v = o->cache;
    c.kv_layout = CB_KV_LAYOUT_HEADS; /* as open_session */
    c.plan = *plan;
    cb_error e;
    if (cb_session_init(&s, m, &c, &e) != CB_OK) {
        FAILF("session on %s: %s: %s", o->be->name, e.where, e.msg);
        return 1;
    }
    if (o->be->device == CB_DEVICE_CUDA) cb_cuda_decode_set_graphs(&s.dec, graphs);
    int rc = cb_session_forward(&s, tokens, P, out, 1, &e);
    for (int t = P; rc == CB_OK && t < T; t++) {
        if (argmax && t % 2) { /* every other step greedy on the device: its logits read back after */
            int bad = 1;
            rc = cb_session_forward_argmax(&s, tokens + t, 1, &argmax[t], &bad, &e);
            if (rc == CB_OK && bad) FAILF("step %d: non-finite logits", t);
            const float *slot = s.slots + s.prog.slots[s.prog.logits_slot].offset;
            if (rc == CB_OK) rc = o->be->download(o->be, out + (size_t)t * s.vocab, slot, sizeof(float) * s.vocab, &e);
        } else {
            rc = cb_session_forward(&s, tokens + t, 1, out + (size_t)t * s.vocab, 0, &e);
        }
    }
    if (rc != CB_OK) FAILF("forward on %s (graphs %d): %s", o->be->name, graphs, e.msg);
    *captures = *replays = 0;
    if (o->be->device == CB_DEVICE_CUDA) cb_cuda_decode_graph_counts(&s.dec, captures, replays);
    cb_session_free(&s);
    return rc != CB_OK;
}
#endif

/* Graphed steps against uncaptured ones and the CPU: fp32 weights and cache (and bf16
 * weights with a q8_0 cache, GPU against GPU); Llama (tied, GQA) over 300 steps (the
 * cache grows 16 -> 512 tokens and the RoPE tables past 256 positions: each move a new
 * capture; the decode plan's window changes at 100 and 200 keys: a new capture each),
 * GPT-2 (learned positions, the position read on the device) and DBA (both gates). The
 * same kernels run either way, so graphed and uncaptured logits are equal bit for bit;
 * against the CPU TOL holds as in the tests above. Greedy argmax on the GPU (every other
 * step) is the CPU's cb_argmax of the same logits. */
TEST(graphed_steps_equal_uncaptured_and_cpu) {
    cb_backend *be = gpu();
    if (!be) return;
#ifdef CB_HAVE_CUDA
    struct { const char *name, *yaml; int T, P, windows; cb_kv_kind w, c; } cases[] = {
        {"llama_tied fp32", IU_LLAMA, 300, 9, 1, CB_KV_F32, CB_KV_F32},
        {"llama_tied bf16/q8_0", IU_LLAMA, 140, 9, 0, CB_KV_BF16, CB_KV_Q8_0},
        {"gpt2 fp32", IU_GPT2, 40, 5, 0, CB_KV_F32, CB_KV_F32},
        {"dba fp32", IU_DBA, 60, 7, 0, CB_KV_F32, CB_KV_F32},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        cb_model m;
        if (iu_model(&m, cases[c].yaml, 21, 5.0)) { FAILF("%s: model", cases[c].name); return; }
        const int V = vocab_of(&m), T = cases[c].T, P = cases[c].P;
        int32_t *tokens = calloc((size_t)T, sizeof *tokens), *amax = calloc((size_t)T, sizeof *amax);
        iu_tokens(tokens, T, V, 31 + (int)c);
        cb_decode_plan_config plan = cb_decode_plan_config_default();
        if (cases[c].windows) { /* no window below 100 keys, 48 below 200, then 80 */
            plan.bucket_short = 100, plan.bucket_mid = 200;
            plan.when_short.local_window = 0, plan.when_mid.local_window = 48, plan.when_long.local_window = 80;
        }
        float *cpu = calloc((size_t)T * V, sizeof *cpu), *off = calloc((size_t)T * V, sizeof *off),
              *on = calloc((size_t)T * V, sizeof *on);
        long cap_off, rep_off, cap_on, rep_on, cc, cr;
        sess_opts og = {be, 4, cases[c].w, cases[c].c, 0}, oc = {cb_backend_cpu(), 4, CB_KV_F32, CB_KV_F32, 0};
        const int fp32 = cases[c].w == CB_KV_F32 && cases[c].c == CB_KV_F32;
        int bad = graph_logits(&m, &og, &plan, 0, tokens, T, P, off, NULL, &cap_off, &rep_off) ||
                  graph_logits(&m, &og, &plan, 1, tokens, T, P, on, amax, &cap_on, &rep_on) ||
                  (fp32 && graph_logits(&m, &oc, &plan, 0, tokens, T, P, cpu, NULL, &cc, &cr));
        if (!bad) {
            const size_t n = (size_t)T * V;
            double same = iu_rel_diff(on, off, n);
            char what[160];
            snprintf(what, sizeof what, "%s: graphed vs uncaptured (%ld captures, %ld replays)", cases[c].name,
                     cap_on, rep_on);
            REPORT_DIFF(what, same, 0);
            if (!(same == 0)) FAILF("%s: %.3g", what, same);
            EXPECT_EQ_INT(0, (int)cap_off);
            EXPECT_EQ_INT(0, (int)rep_off);
            /* one-row passes: the steps, and the prompt's last chunk when it has one row */
            EXPECT(cap_on >= 1 && cap_on + rep_on == T - P + (P % og.chunk == 1));
            if (cases[c].windows) EXPECT(cap_on >= 7); /* cache 16..512: 6 growths, tables, 2 windows */
            EXPECT(rep_on > cap_on);
            if (fp32) {
                double d = iu_rel_diff(on, cpu, n);
                snprintf(what, sizeof what, "%s: graphed vs cpu", cases[c].name);
                REPORT_DIFF(what, d, TOL);
                if (!(d <= TOL)) FAILF("%s: %.3g", what, d);
            }
            for (int t = P + 1; t < T; t += 2)
                if (amax[t] != cb_argmax(on + (size_t)t * V, V)) {
                    FAILF("%s: step %d: argmax on the gpu %d, on the host %d", cases[c].name, t, amax[t],
                          cb_argmax(on + (size_t)t * V, V));
                    break;
                }
        }
        free(tokens), free(amax), free(cpu), free(off), free(on);
        cb_model_free(&m);
    }
#endif
}
