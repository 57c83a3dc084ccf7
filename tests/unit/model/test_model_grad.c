/* test_model_grad.c: every topology and layer inside a whole model, forward and backward
 * in double precision, against central finite differences of the mean loss. */
#include "test.h"

#include <stdlib.h>
#include "core/rng.h"
#include "model/model.h"
#include "model/run.h"
#include "model_util.h"

/* Relative tolerance of the analytic gradient against central differences (h = 1e-6)
 * of a double-precision loss, with an absolute floor for gradients near zero. */
#define FD_H 1e-6
#define FD_RTOL 1e-6
#define FD_ATOL 1e-9

/* chunk > 0: the run fuses the head with the loss, chunk rows at a time (model/run.h
 * cb_run_init_fused), and every fourth target is ignored, so the chunks' gradients must share
 * the pass's count of valid rows. */
static void check_model_run(const char *what, const char *yaml, int B, int T, int chunk) {
    json_t *plan = test_compile(yaml, what);
    if (!plan) { FAILF("%s: does not compile", what); return; }
    cb_model m;
    cb_error e;
    if (cb_model_init(&m, plan, 7, &e) != CB_OK) { FAILF("%s: %s", what, e.msg); json_decref(plan); return; }
    cb_program prog;
    if (cb_program_init(&prog, plan, &m.params, B, T, &e) != CB_OK) {
        FAILF("%s: %s", what, e.msg);
        cb_model_free(&m);
        json_decref(plan);
        return;
    }
    size_t n = m.params.total_floats;
    double *w = calloc(n, sizeof *w), *g = calloc(n, sizeof *g);
    cb_rng rng;
    cb_rng_init(&rng, 99);
    /* larger weights than the init's 0.02 so every path carries signal */
    for (size_t i = 0; i < n; i++) w[i] = m.weights[i] * 4.0;
    for (int i = 0; i < m.params.n; i++) /* norms start at 1: perturb them too */
        if (m.params.items[i].init != CB_INIT_NORMAL)
            for (size_t k = 0; k < m.params.items[i].numel; k++)
                w[m.params.items[i].offset + k] += 0.3 * cb_rng_normal(&rng);
    int32_t tokens[64], targets[64];
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (int32_t)(cb_rng_next(&rng) % (uint64_t)prog.vocab_size);
        targets[i] = (int32_t)(cb_rng_next(&rng) % (uint64_t)prog.vocab_size);
        if (chunk && i % 4 == 1) targets[i] = -1;
    }
    cb_run_f64 r;
    if ((chunk ? cb_run_init_fused_f64(&r, &prog, chunk, &e) : cb_run_init_f64(&r, &prog, 1, &e)) != CB_OK) {
        FAILF("%s: %s", what, e.msg);
        goto done;
    }
    if (chunk && r.head_chunk != chunk) FAILF("%s: the run's head chunk is %d rows, not %d", what, r.head_chunk, chunk);
    r.dropout_seed = 1234;
    double loss = cb_run_step_f64(&r, &prog, w, g, tokens, targets);
    if (!(loss > 0)) FAILF("%s: loss %g", what, loss);
    double worst = 0;
    const char *worst_name = "";
    for (int pi = 0; pi < m.params.n; pi++) {
        const cb_param *p = &m.params.items[pi];
        /* every element of small tensors, a spread sample of large ones */
        size_t step = p->numel > 48 ? p->numel / 48 : 1;
        for (size_t k = 0; k < p->numel; k += step) {
            size_t i = p->offset + k;
            double keep = w[i];
            w[i] = keep + FD_H;
            double lp = cb_run_forward_f64(&r, &prog, w, tokens, targets);
            w[i] = keep - FD_H;
            double lm = cb_run_forward_f64(&r, &prog, w, tokens, targets);
            w[i] = keep;
            double num = (lp - lm) / (2 * FD_H);
            double excess = fabs(num - g[i]) - (FD_RTOL * fabs(num) + FD_ATOL);
            double rel = fabs(num - g[i]) / (fabs(num) + FD_ATOL / FD_RTOL);
            if (!(rel <= worst) && !isnan(worst)) { worst = rel; worst_name = p->name; } // a NaN stays
            if (!(excess <= 0)) { // NaN fails
                FAILF("%s: d loss / d %s[%zu]: analytic %.10g, numeric %.10g", what, p->name, k, g[i], num);
                goto done_run;
            }
        }
    }
    {
        char label[320];
        snprintf(label, sizeof label, "%s (worst: %s)", what, worst_name);
        REPORT_DIFF(label, worst, FD_RTOL);
    }
done_run:
    cb_run_free_f64(&r);
done:
    free(w);
    free(g);
    cb_program_free(&prog);
    cb_model_free(&m);
    json_decref(plan);
}

static void check_model(const char *what, const char *yaml, int B, int T) { check_model_run(what, yaml, B, T, 0); }

static const char LLAMA_TIED[] = "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  tie_embeddings: true\n"
        "  embedder: {type: token, vocab_size: 11, d_model: 16}\n"
        "  topology:\n    type: StackedTopology\n    layers:\n"
        "      - type: NestedTopology\n        repeat: 2\n        layers:\n"
        "          - type: ResidualTopology\n            layers:\n"
        "              - {type: RMSNormLayer, d_model: 16}\n"
        "              - {type: AttentionLayer, d_model: 16, n_heads: 4, n_kv_heads: 2}\n"
        "          - type: ResidualTopology\n            layers:\n"
        "              - {type: RMSNormLayer, d_model: 16}\n"
        "              - {type: SwiGLULayer, d_model: 16, d_ff: 24}\n"
        "      - {type: RMSNormLayer, d_model: 16}\n";

TEST(llama_gqa_nested_residual) { check_model("llama_gqa", LLAMA_TIED, 2, 5); }

TEST(dba_with_static_and_dynamic_gate) {
    check_model("dba_gate", "version: 1\nname: t\nmodel:\n  type: TransformerModel\n"
        "  embedder: {type: token, vocab_size: 9, d_model: 16}\n"
        "  topology:\n    type: StackedTopology\n    layers:\n"
        "      - type: ResidualTopology\n        layers:\n"
        "          - {type: RMSNormLayer, d_model: 16}\n"
        "          - {type: AttentionLayer, d_model: 16, n_heads: 4, n_kv_heads: 2, mode: decoupled,\n"
        "             sem_dim: 8, geo_dim: 16, v_dim: 12, decoupled_gate: true, decoupled_gate_dynamic: true}\n"
        "      - type: ResidualTopology\n        layers:\n"
        "          - {type: RMSNormLayer, d_model: 16}\n"
        "          - {type: AttentionLayer, d_model: 16, n_heads: 2, mode: decoupled, sem_dim: 4, geo_dim: 8,\n"
        "             decoupled_gate: true}\n"
        "      - {type: RMSNormLayer, d_model: 16}\n", 2, 4);
}

static const char GPT2_BIAS_HEAD[] = "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  head: {bias: true}\n"
        "  embedder: {type: token_position, vocab_size: 13, d_model: 12, max_seq_len: 8}\n"
        "  topology:\n    type: StackedTopology\n    layers:\n"
        "      - type: NestedTopology\n        repeat: 2\n        layers:\n"
        "          - type: ResidualTopology\n            layers:\n"
        "              - {type: LayerNormLayer, d_model: 12}\n"
        "              - {type: AttentionLayer, d_model: 12, n_heads: 3, rope_enabled: false, bias: true}\n"
        "          - type: ResidualTopology\n            layers:\n"
        "              - {type: LayerNormLayer, d_model: 12}\n"
        "              - {type: MLPLayer, d_model: 12, d_ff: 20}\n"
        "      - {type: LayerNormLayer, d_model: 12}\n";

TEST(gpt2_style) { check_model("gpt2", GPT2_BIAS_HEAD, 2, 6); }

/* The head fused with the loss over chunks that do not divide the rows: a tied head (its
 * gradient shared with the embedding's) and a head with a bias. */
TEST(fused_head_tied_chunks_of_3) { check_model_run("fused llama_gqa", LLAMA_TIED, 2, 5, 3); }
TEST(fused_head_bias_chunks_of_5) { check_model_run("fused gpt2", GPT2_BIAS_HEAD, 2, 6, 5); }

TEST(parallel_branching_cyclic_recurrent) {
    check_model("topologies", "version: 1\nname: t\nmodel:\n  type: TransformerModel\n"
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
        "      - {type: DropoutLayer, p: 0.25}\n", 2, 5);
}
