/* infer_util.h: test helpers for lib/infer: small models from manifest text with weights
 * scaled up from the init (so attention is far from uniform), their full-sequence logits
 * through cb_run_forward, and a relative difference. Header-only, test-only. */
#ifndef CB_TEST_INFER_UTIL_H
#define CB_TEST_INFER_UTIL_H

#include <math.h>
#include <stdlib.h>
#include "core/rng.h"
#include "model/model.h"
#include "model/run.h"
#include "model_util.h"
#include "test.h"

/* A model of the manifest, weights from seed, every weight times `scale`, norms and gates
 * (initialised to ones or zeros) perturbed. 0 on success. */
static inline int iu_model(cb_model *m, const char *yaml, uint64_t seed, double scale) {
    json_t *plan = test_compile(yaml, "model.yml");
    if (!plan) return 1;
    cb_error e;
    int rc = cb_model_init(m, plan, seed, &e);
    json_decref(plan);
    if (rc != CB_OK) {
        fprintf(stderr, "  model: %s\n", e.msg);
        return 1;
    }
    cb_rng r;
    cb_rng_init(&r, seed + 1);
    for (size_t i = 0; i < m->params.total_floats; i++) m->weights[i] *= (float)scale;
    for (int i = 0; i < m->params.n; i++)
        if (m->params.items[i].init != CB_INIT_NORMAL)
            for (size_t k = 0; k < m->params.items[i].numel; k++)
                m->weights[m->params.items[i].offset + k] += (float)(0.3 * cb_rng_normal(&r));
    return 0;
}

/* logits (T, V) of one full forward pass over tokens (T); NULL on failure. */
static inline float *iu_full_logits(const cb_model *m, const int32_t *tokens, int T) {
    cb_program prog;
    cb_run r;
    cb_error e;
    if (cb_program_init(&prog, m->plan, &m->params, 1, T, &e) != CB_OK) {
        fprintf(stderr, "  program: %s\n", e.msg);
        return NULL;
    }
    if (cb_run_init(&r, &prog, 0, &e) != CB_OK) {
        cb_program_free(&prog);
        return NULL;
    }
    cb_run_forward(&r, &prog, m->weights, tokens, NULL);
    size_t n = (size_t)T * prog.vocab_size;
    float *out = malloc(n * sizeof *out);
    memcpy(out, r.slots + prog.slots[prog.logits_slot].offset, n * sizeof *out);
    cb_run_free(&r);
    cb_program_free(&prog);
    return out;
}

/* max |a - b| / max |b| over n values; NaN when either holds a NaN (see cb_test_worst) */
static inline double iu_rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = cb_test_worst(d, fabs((double)a[i] - b[i]));
        s = cb_test_worst(s, fabs((double)b[i]));
    }
    return s > 0 ? d / s : d;
}

static inline void iu_tokens(int32_t *t, int n, int vocab, uint64_t seed) {
    cb_rng r;
    cb_rng_init(&r, seed);
    for (int i = 0; i < n; i++) t[i] = (int32_t)(cb_rng_next(&r) % (uint64_t)vocab);
}

/* Manifests of the models the inference tests run. */
#define IU_HEAD "version: 1\nname: t\nmodel:\n  type: TransformerModel\n"
#define IU_LLAMA IU_HEAD "  tie_embeddings: true\n" \
    "  embedder: {type: token, vocab_size: 48, d_model: 32}\n" \
    "  topology:\n    type: StackedTopology\n    layers:\n" \
    "      - type: NestedTopology\n        repeat: 2\n        layers:\n" \
    "          - type: ResidualTopology\n            layers:\n" \
    "              - {type: RMSNormLayer, d_model: 32}\n" \
    "              - {type: AttentionLayer, d_model: 32, n_heads: 4, n_kv_heads: 2, rope_theta: 500}\n" \
    "          - type: ResidualTopology\n            layers:\n" \
    "              - {type: RMSNormLayer, d_model: 32}\n" \
    "              - {type: SwiGLULayer, d_model: 32, d_ff: 48}\n" \
    "      - {type: RMSNormLayer, d_model: 32}\n"
#define IU_DBA IU_HEAD \
    "  embedder: {type: token, vocab_size: 40, d_model: 32}\n" \
    "  topology:\n    type: StackedTopology\n    layers:\n" \
    "      - type: ResidualTopology\n        layers:\n" \
    "          - {type: RMSNormLayer, d_model: 32}\n" \
    "          - {type: AttentionLayer, d_model: 32, n_heads: 4, n_kv_heads: 2, mode: decoupled,\n" \
    "             sem_dim: 16, geo_dim: 32, v_dim: 24, decoupled_gate: true, decoupled_gate_dynamic: true}\n" \
    "      - type: ResidualTopology\n        layers:\n" \
    "          - {type: RMSNormLayer, d_model: 32}\n" \
    "          - {type: AttentionLayer, d_model: 32, n_heads: 2, mode: decoupled, sem_dim: 8, geo_dim: 16,\n" \
    "             decoupled_gate: true}\n" \
    "      - {type: RMSNormLayer, d_model: 32}\n"
#define IU_GPT2 IU_HEAD "  head: {bias: true}\n" \
    "  embedder: {type: token_position, vocab_size: 50, d_model: 24, max_seq_len: 40}\n" \
    "  topology:\n    type: StackedTopology\n    layers:\n" \
    "      - type: NestedTopology\n        repeat: 2\n        layers:\n" \
    "          - type: ResidualTopology\n            layers:\n" \
    "              - {type: LayerNormLayer, d_model: 24}\n" \
    "              - {type: AttentionLayer, d_model: 24, n_heads: 3, rope_enabled: false, bias: true}\n" \
    "          - type: ResidualTopology\n            layers:\n" \
    "              - {type: LayerNormLayer, d_model: 24}\n" \
    "              - {type: MLPLayer, d_model: 24, d_ff: 40}\n" \
    "      - {type: LayerNormLayer, d_model: 24}\n"
#define IU_TOPOLOGIES IU_HEAD \
    "  embedder: {type: token, vocab_size: 30, d_model: 16}\n" \
    "  topology:\n    type: SequentialTopology\n    layers:\n" \
    "      - type: ParallelTopology\n        combine: mean\n        layers:\n" \
    "          - {type: RMSNormLayer, d_model: 16}\n" \
    "          - type: StackedTopology\n            layers:\n" \
    "              - {type: RoPE, d_model: 16, n_heads: 2}\n" \
    "              - {type: LinearLayer, d_in: 16, d_out: 16, bias: false}\n" \
    "      - type: BranchingTopology\n        layers:\n" \
    "          - {type: LinearLayer, d_in: 16, d_out: 8}\n" \
    "          - {type: AttentionLayer, d_model: 16, n_heads: 2}\n" \
    "      - {type: LinearLayer, d_in: 24, d_out: 16}\n" \
    "      - type: CyclicTopology\n        cycles: 2\n        layers:\n" \
    "          - type: ResidualTopology\n            layers:\n" \
    "              - {type: LayerNormLayer, d_model: 16}\n" \
    "              - {type: AttentionLayer, d_model: 16, n_heads: 4, n_kv_heads: 1}\n" \
    "      - type: RecurrentTopology\n        steps: 2\n        layers:\n" \
    "          - {type: RMSNormLayer, d_model: 16}\n" \
    "          - {type: MLPLayer, d_model: 16, d_ff: 20}\n" \
    "      - {type: DropoutLayer, p: 0.25}\n"

#endif
