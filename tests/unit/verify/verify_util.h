/* verify_util.h: test helpers for lib/verify: a tiny Llama-style manifest (attention mode
 * chosen per test), models from it, a token file, model directories on disk, and the
 * reference forward pass of one window (model/trace.h, batch 1). Header-only, test-only. */
#ifndef CB_TEST_VERIFY_UTIL_H
#define CB_TEST_VERIFY_UTIL_H

#include <math.h>
#include <stdlib.h>
#include "model/model.h"
#include "model/trace.h"
#include "model_util.h"
#include "test.h"
#include "unit/data/tmp_dir.h"

/* A two-block model, vocab `vocab`, d_model 16; attn is the AttentionLayer's extra fields
 * ("n_kv_heads: 4", "n_kv_heads: 2", "mode: decoupled, sem_dim: 8, geo_dim: 8"); verify
 * is the run's verify block as YAML flow text (may be ""). Into buf. */
static inline const char *vu_manifest(char *buf, size_t n, int vocab, const char *attn, const char *train,
                                      const char *verify) {
    snprintf(buf, n,
             "version: 1\nname: vu\nmodel:\n  type: TransformerModel\n  tie_embeddings: false\n"
             "  embedder: {type: token, vocab_size: %d, d_model: 16}\n"
             "  topology:\n    type: StackedTopology\n    layers:\n"
             "      - type: NestedTopology\n        repeat: 2\n        layers:\n"
             "          - type: ResidualTopology\n            layers:\n"
             "              - {type: RMSNormLayer, d_model: 16}\n"
             "              - {type: AttentionLayer, d_model: 16, n_heads: 4, %s}\n"
             "          - type: ResidualTopology\n            layers:\n"
             "              - {type: RMSNormLayer, d_model: 16}\n"
             "              - {type: SwiGLULayer, d_model: 16, d_ff: 32}\n"
             "      - {type: RMSNormLayer, d_model: 16}\n"
             "groups:\n  - name: g\n    runs:\n      - id: r\n        mode: train\n        steps: 0\n"
             "        train: {teacher: {ckpt: teacher}, %s}\n%s%s\n",
             vocab, attn, train, verify[0] ? "        verify: " : "", verify);
    return buf;
}

static inline int vu_model(cb_model *m, const char *yaml, uint64_t seed) {
    json_t *plan = test_compile(yaml, "vu.yml");
    if (!plan) return 1;
    cb_error e;
    int rc = cb_model_init(m, plan, seed, &e);
    json_decref(plan);
    if (rc != CB_OK) fprintf(stderr, "  model: %s\n", e.msg);
    return rc != CB_OK;
}

/* A copy of m (same plan, same weights). */
static inline int vu_copy(cb_model *dst, const cb_model *m) {
    cb_error e;
    if (cb_model_init_empty(dst, m->plan, &e) != CB_OK) return 1; /* takes its own reference */
    memcpy(dst->weights, m->weights, m->params.total_floats * sizeof(float));
    return 0;
}

static inline float *vu_param(cb_model *m, const char *name) {
    const cb_param *p = cb_params_find(&m->params, name);
    return p ? m->weights + p->offset : NULL;
}

/* n tokens below vocab into a .tokens file named name; their values into tokens. */
static inline const char *vu_tokens(const char *name, int32_t *tokens, int n, int vocab, char *path, size_t pn) {
    tmp_path(name, path, pn);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    unsigned long long st = 99;
    for (int i = 0; i < n; i++) {
        tokens[i] = (int32_t)((cb_test_urandf(&st) + 1.0f) * 0.5f * (float)vocab);
        if (tokens[i] >= vocab) tokens[i] = vocab - 1;
        fprintf(f, "%d%c", tokens[i], i % 20 == 19 ? '\n' : ' ');
    }
    fclose(f);
    return path;
}

/* The logits (T,V) of m over one window through the traced batch-1 pass, in new memory. */
static inline float *vu_logits(const cb_model *m, const int32_t *x, int T) {
    cb_trace t;
    cb_error e;
    if (cb_trace_forward(&t, m, x, T, "test", &e) != CB_OK) return NULL;
    int w = 0;
    const float *o = NULL;
    for (int i = 0; i < t.prog.n_ops; i++)
        if (t.prog.ops[i].kind == CB_OP_HEAD) o = cb_run_op_output(&t.run, &t.prog, i, &w);
    float *out = malloc((size_t)T * (size_t)w * sizeof *out);
    if (out && o) memcpy(out, o, (size_t)T * (size_t)w * sizeof *out);
    cb_trace_free(&t);
    return out;
}

#endif
