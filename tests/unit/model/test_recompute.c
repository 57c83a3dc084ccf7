/* test_recompute.c: activation checkpointing (model/program.h cb_program_recompute,
 * backend/pass.c). A checkpointed program shares one saved region among its blocks and
 * reruns a block's forward before its backward; the ops are the same ops on the same
 * inputs, so the loss, every op output and every gradient must equal the program's
 * without checkpointing bit for bit (float on the CPU backend, and the double twin).
 * The models carry dropout (masks from the seed and the op's index), GQA, DBA with a
 * dynamic gate, GPT-2's LayerNorm and MLP, and blocks inside parallel branches. Then the
 * choice of blocks against a budget. */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include "core/rng.h"
#include "model/model.h"
#include "model/run.h"
#include "model_util.h"

static const char *LLAMA =
    "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  tie_embeddings: true\n"
    "  embedder: {type: token, vocab_size: 11, d_model: 16}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n"
    "      - type: NestedTopology\n        repeat: 4\n        layers:\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 16}\n"
    "              - {type: AttentionLayer, d_model: 16, n_heads: 4, n_kv_heads: 2}\n"
    "              - {type: DropoutLayer, p: 0.2}\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 16}\n"
    "              - {type: SwiGLULayer, d_model: 16, d_ff: 24}\n"
    "      - {type: RMSNormLayer, d_model: 16}\n";

static const char *DBA =
    "version: 1\nname: t\nmodel:\n  type: TransformerModel\n"
    "  embedder: {type: token, vocab_size: 9, d_model: 16}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n"
    "      - type: NestedTopology\n        repeat: 3\n        layers:\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 16}\n"
    "              - {type: AttentionLayer, d_model: 16, n_heads: 4, n_kv_heads: 2, mode: decoupled,\n"
    "                 sem_dim: 8, geo_dim: 16, v_dim: 12, decoupled_gate: true, decoupled_gate_dynamic: true}\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 16}\n"
    "              - {type: SwiGLULayer, d_model: 16, d_ff: 20}\n"
    "      - {type: RMSNormLayer, d_model: 16}\n";

static const char *GPT2 =
    "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  head: {bias: true}\n"
    "  embedder: {type: token_position, vocab_size: 13, d_model: 12, max_seq_len: 8, dropout: 0.1}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n"
    "      - type: NestedTopology\n        repeat: 3\n        layers:\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: LayerNormLayer, d_model: 12}\n"
    "              - {type: AttentionLayer, d_model: 12, n_heads: 3, rope_enabled: false, bias: true}\n"
    "              - {type: DropoutLayer, p: 0.1}\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: LayerNormLayer, d_model: 12}\n"
    "              - {type: MLPLayer, d_model: 12, d_ff: 20}\n"
    "      - {type: LayerNormLayer, d_model: 12}\n";

/* Blocks inside the branches of a Parallel topology, each branch's repeats its own
 * blocks; a nested repeat inside a block is part of the block. */
static const char *BRANCHES =
    "version: 1\nname: t\nmodel:\n  type: TransformerModel\n"
    "  embedder: {type: token, vocab_size: 7, d_model: 8}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n"
    "      - type: ParallelTopology\n        combine: mean\n        layers:\n"
    "          - type: NestedTopology\n            repeat: 2\n            layers:\n"
    "              - type: ResidualTopology\n                layers:\n"
    "                  - {type: RMSNormLayer, d_model: 8}\n"
    "                  - {type: AttentionLayer, d_model: 8, n_heads: 2}\n"
    "          - type: NestedTopology\n            repeat: 2\n            layers:\n"
    "              - type: NestedTopology\n                repeat: 2\n                layers:\n"
    "                  - type: ResidualTopology\n                    layers:\n"
    "                      - {type: RMSNormLayer, d_model: 8}\n"
    "                      - {type: MLPLayer, d_model: 8, d_ff: 12}\n"
    "      - {type: RMSNormLayer, d_model: 8}\n";

typedef struct fixture {
    json_t *plan;
    cb_model m;
    int32_t tokens[64], targets[64];
} fixture;

static int fixture_init(fixture *f, const char *what, const char *yaml, int B, int T) {
    memset(f, 0, sizeof *f);
    cb_error e;
    if (!(f->plan = test_compile(yaml, what))) {
        FAILF("%s: does not compile", what);
        return 0;
    }
    if (cb_model_init(&f->m, f->plan, 7, &e) != CB_OK) {
        FAILF("%s: %s", what, e.msg);
        json_decref(f->plan);
        return 0;
    }
    for (size_t i = 0; i < f->m.params.total_floats; i++) f->m.weights[i] *= 4.0f; /* signal on every path */
    cb_rng rng;
    cb_rng_init(&rng, 99);
    for (int i = 0; i < B * T; i++) {
        f->tokens[i] = (int32_t)(cb_rng_next(&rng) % 7);
        f->targets[i] = (int32_t)(cb_rng_next(&rng) % 7);
    }
    return 1;
}

static void fixture_free(fixture *f) {
    cb_model_free(&f->m);
    json_decref(f->plan);
}

/* One training pass (float, CPU backend) of the model at (B, T), checkpointed or not:
 * the loss, the gradients and the slot arena (every op's output) come back. */
static int float_pass(fixture *f, int B, int T, int checkpoint, float *loss, float **grads, float **slots,
                      cb_program *prog) {
    cb_error e;
    if (cb_program_init(prog, f->plan, &f->m.params, B, T, &e) != CB_OK) return 0;
    if (checkpoint) cb_program_recompute(prog, 0);
    cb_run r;
    if (cb_run_init(&r, prog, 1, &e) != CB_OK) return 0;
    r.dropout_seed = 1234;
    *grads = calloc(f->m.params.total_floats, sizeof **grads);
    *slots = malloc(prog->slot_elems * sizeof **slots);
    *loss = cb_run_forward(&r, prog, f->m.weights, f->tokens, f->targets);
    cb_run_backward(&r, prog, f->m.weights, *grads);
    memcpy(*slots, r.slots, prog->slot_elems * sizeof **slots);
    cb_run_free(&r);
    return 1;
}

static double double_pass(fixture *f, const cb_program *prog, double *g) {
    cb_error e;
    size_t n = f->m.params.total_floats;
    double *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = f->m.weights[i];
    cb_run_f64 r;
    double loss = -1;
    if (cb_run_init_f64(&r, prog, 1, &e) == CB_OK) {
        r.dropout_seed = 1234;
        loss = cb_run_forward_f64(&r, prog, w, f->tokens, f->targets);
        cb_run_backward_f64(&r, prog, w, g);
        cb_run_free_f64(&r);
    }
    free(w);
    return loss;
}

static void check_equal(const char *what, const char *yaml, int B, int T, int blocks) {
    fixture f;
    if (!fixture_init(&f, what, yaml, B, T)) return;
    cb_program plain, ck;
    float la, lb, *ga = NULL, *gb = NULL, *sa = NULL, *sb = NULL;
    if (!float_pass(&f, B, T, 0, &la, &ga, &sa, &plain) || !float_pass(&f, B, T, 1, &lb, &gb, &sb, &ck)) {
        FAILF("%s: the passes did not run", what);
        goto done;
    }
    if (ck.n_segments != blocks || ck.n_recompute != blocks)
        FAILF("%s: %d blocks, %d checkpointed; want %d", what, ck.n_segments, ck.n_recompute, blocks);
    if (!(ck.saved_elems < plain.saved_elems))
        FAILF("%s: saved arena %zu elements checkpointed, %zu without", what, ck.saved_elems, plain.saved_elems);
    if (la != lb) FAILF("%s: loss %.9g checkpointed, %.9g without", what, lb, la);
    if (memcmp(ga, gb, f.m.params.total_floats * sizeof *ga) != 0) FAILF("%s: the gradients differ", what);
    if (memcmp(sa, sb, plain.slot_elems * sizeof *sa) != 0) FAILF("%s: the op outputs differ", what);
    {
        size_t n = f.m.params.total_floats;
        double *da = calloc(n, sizeof *da), *db = calloc(n, sizeof *db);
        double dla = double_pass(&f, &plain, da), dlb = double_pass(&f, &ck, db);
        if (dla != dlb || memcmp(da, db, n * sizeof *da) != 0) FAILF("%s: the double twin differs", what);
        free(da);
        free(db);
    }
    printf("  %s: %d blocks, saved arena %zu -> %zu elements, loss %.6f both ways\n", what, ck.n_segments,
           plain.saved_elems, ck.saved_elems, la);
done:
    free(ga), free(gb), free(sa), free(sb);
    cb_program_free(&plain);
    cb_program_free(&ck);
    fixture_free(&f);
}

TEST(recompute_llama_gqa_dropout) { check_equal("llama_gqa", LLAMA, 2, 5, 4); }
TEST(recompute_dba_dynamic_gate) { check_equal("dba", DBA, 2, 4, 3); }
TEST(recompute_gpt2_dropout) { check_equal("gpt2", GPT2, 2, 6, 3); }
TEST(recompute_blocks_in_parallel_branches) { check_equal("branches", BRANCHES, 2, 4, 4); }

/* The budget: no blocks when the activations fit, every block at 0, and otherwise the
 * fewest blocks, first to last, that bring the activations under it. */
TEST(recompute_budget_chooses_the_fewest_blocks) {
    fixture f;
    if (!fixture_init(&f, "budget", LLAMA, 2, 8)) return;
    cb_error e;
    cb_program p;
    if (cb_program_init(&p, f.plan, &f.m.params, 2, 8, &e) != CB_OK) {
        FAILF("budget: %s", e.msg);
        fixture_free(&f);
        return;
    }
    const size_t full = cb_program_activation_elems(&p), block = p.segments[0].saved_elems;
    EXPECT_EQ_INT(4, p.n_segments);
    cb_program_free(&p);
    struct { size_t budget; int want; } cases[] = {
        {full, 0},                 /* fits: nothing to do */
        {full - 1, 2},             /* one block alone frees nothing (the shared region is its size) */
        {full - block, 2},         /* two blocks free exactly one block's values */
        {full - block - 1, 3},
        {full - 3 * block, 4},
        {1, 4},                    /* cannot fit: every block */
        {0, 4},                    /* 0: every block */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (cb_program_init(&p, f.plan, &f.m.params, 2, 8, &e) != CB_OK) break;
        cb_program_recompute(&p, cases[k].budget);
        if (p.n_recompute != cases[k].want)
            FAILF("budget %zu of %zu: %d blocks checkpointed, want %d", cases[k].budget, full, p.n_recompute,
                  cases[k].want);
        if (cases[k].budget >= full - 3 * block && cb_program_activation_elems(&p) > cases[k].budget)
            FAILF("budget %zu: activations %zu", cases[k].budget, cb_program_activation_elems(&p));
        cb_program_free(&p);
    }
    fixture_free(&f);
}
