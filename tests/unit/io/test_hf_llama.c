/* test_hf_llama.c: a caramba Llama exported as a Hugging Face directory and read back
 * (derived plan and weights) gives the same logits; broken checkpoints are refused. */
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/atomic_dir.h"
#include "io/hf_llama.h"
#include "model/model.h"
#include "model/run.h"
#include "model_util.h"
#include "tensor/safetensors.h"

static const char *LLAMA =
    "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  tie_embeddings: TIED\n"
    "  embedder: {type: token, vocab_size: 37, d_model: 16}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n"
    "      - type: NestedTopology\n        repeat: 3\n        layers:\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 16, eps: 1.0e-6}\n"
    "              - {type: AttentionLayer, d_model: 16, n_heads: 4, n_kv_heads: 2, rope_theta: 500000.0,\n"
    "                 rope_scaling: {type: llama3, factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0,\n"
    "                                original_max_position_embeddings: 16}}\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 16, eps: 1.0e-6}\n"
    "              - {type: SwiGLULayer, d_model: 16, d_ff: 40}\n"
    "      - {type: RMSNormLayer, d_model: 16, eps: 1.0e-6}\n";

static json_t *llama_plan(int tied) {
    char text[2048];
    const char *at = strstr(LLAMA, "TIED");
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at - LLAMA), LLAMA, tied ? "true" : "false", at + 4);
    return test_compile(text, "llama.yml");
}

static void logits_of(cb_model *m, float *out, int T) {
    cb_program prog;
    cb_error e;
    cb_run r;
    int32_t tokens[16];
    for (int i = 0; i < T; i++) tokens[i] = (int32_t)((i * 7 + 3) % 37);
    if (cb_program_init(&prog, m->plan, &m->params, 1, T, &e) || cb_run_init(&r, &prog, 0, &e)) {
        FAILF("program: %s", e.msg);
        return;
    }
    cb_run_forward(&r, &prog, m->weights, tokens, NULL);
    int width;
    const float *l = cb_run_op_output(&r, &prog, prog.n_ops - 1, &width);
    memcpy(out, l, (size_t)T * (size_t)width * sizeof *out);
    cb_run_free(&r);
    cb_program_free(&prog);
}

static void round_trip(int tied) {
    char dir[] = "/tmp/cbhf.XXXXXX", hf[300];
    EXPECT(mkdtemp(dir) != NULL);
    snprintf(hf, sizeof hf, "%s/hf", dir);
    json_t *plan = llama_plan(tied);
    if (!plan) { FAILF("plan does not compile"); return; }
    cb_model a, b;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_model_init(&a, plan, 5, &e));
    json_decref(plan);
    if (cb_hf_export(&a, hf, &e) != CB_OK) { FAILF("export: %s: %s", e.where, e.msg); cb_model_free(&a); return; }
    json_t *plan2;
    if (cb_hf_plan_from_config(hf, &plan2, &e) != CB_OK) { FAILF("config: %s: %s", e.where, e.msg); cb_model_free(&a); return; }
    EXPECT_EQ_INT(CB_OK, cb_model_init_empty(&b, plan2, &e));
    json_decref(plan2);
    if (cb_hf_load(&b, hf, &e) != CB_OK) FAILF("load: %s: %s", e.where, e.msg);
    EXPECT_EQ_INT(a.params.n, b.params.n);
    float la[8 * 37], lb[8 * 37];
    logits_of(&a, la, 8);
    logits_of(&b, lb, 8);
    double worst = 0;
    for (int i = 0; i < 8 * 37; i++) worst = cb_test_worst(worst, fabs(la[i] - lb[i]));
    REPORT_DIFF(tied ? "hf round trip logits (tied)" : "hf round trip logits (untied)", worst, 0.0);
    EXPECT(worst == 0.0); /* the same f32 weights and the same program: bit-identical */
    cb_safetensors st;
    char path[400];
    snprintf(path, sizeof path, "%s/model.safetensors", hf);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_open(&st, path, &e));
    EXPECT(cb_safetensors_find(&st, "model.layers.2.mlp.down_proj.weight") != NULL);
    EXPECT(cb_safetensors_find(&st, "model.layers.0.self_attn.k_proj.weight") != NULL);
    EXPECT((cb_safetensors_find(&st, "lm_head.weight") != NULL) == !tied);
    cb_safetensors_close(&st);
    cb_model_free(&a);
    cb_model_free(&b);
    cb_remove_tree(dir);
}

TEST(export_then_import_tied) { round_trip(1); }
TEST(export_then_import_untied) { round_trip(0); }

/* A checkpoint split in two shards with an index, one shard then deleted. */
TEST(missing_shard_and_wrong_shape_are_refused) {
    char dir[] = "/tmp/cbhf.XXXXXX", hf[300], path[400];
    EXPECT(mkdtemp(dir) != NULL);
    snprintf(hf, sizeof hf, "%s/hf", dir);
    json_t *plan = llama_plan(1);
    cb_model a;
    cb_error e;
    if (!plan || cb_model_init(&a, plan, 5, &e) != CB_OK) { FAILF("setup"); return; }
    json_decref(plan);
    EXPECT_EQ_INT(CB_OK, cb_hf_export(&a, hf, &e));
    char **names;
    EXPECT_EQ_INT(CB_OK, cb_hf_names(&a, &names, &e));
    /* rewrite as two shards: layer tensors in shard 2, the rest in shard 1 */
    cb_safetensors_writer w1, w2;
    cb_safetensors_writer_init(&w1);
    cb_safetensors_writer_init(&w2);
    json_t *map = json_object();
    for (int i = 0; i < a.params.n; i++) {
        const cb_param *p = &a.params.items[i];
        int second = strstr(names[i], "layers.") != NULL;
        cb_safetensors_writer_add(second ? &w2 : &w1, names[i], CB_DTYPE_F32, p->ndim, p->shape, a.weights + p->offset, &e);
        json_object_set_new(map, names[i], json_string(second ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors"));
    }
    snprintf(path, sizeof path, "%s/model.safetensors", hf);
    unlink(path);
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", hf);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w1, path, &e));
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", hf);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w2, path, &e));
    json_t *index = json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 0, "weight_map", map);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", hf);
    EXPECT_EQ_INT(0, json_dump_file(index, path, 0));
    json_decref(index);
    /* sharded: loads */
    cb_model b;
    json_t *plan2;
    EXPECT_EQ_INT(CB_OK, cb_hf_plan_from_config(hf, &plan2, &e));
    EXPECT_EQ_INT(CB_OK, cb_model_init_empty(&b, plan2, &e));
    if (cb_hf_load(&b, hf, &e) != CB_OK) FAILF("sharded load: %s", e.msg);
    EXPECT(memcmp(a.weights, b.weights, a.params.total_floats * sizeof(float)) == 0);
    /* shard 2 gone */
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", hf);
    unlink(path);
    EXPECT_EQ_INT(CB_E_INVALID, cb_hf_load(&b, hf, &e));
    EXPECT(strstr(e.where, "model-00002-of-00002.safetensors") != NULL);
    EXPECT(strstr(e.msg, "missing") != NULL);
    /* a wrong shape: shard 2 rewritten with one tensor transposed */
    const cb_param *p = &a.params.items[1];
    int64_t shape_t[2] = {p->shape[1], p->shape[0]};
    for (size_t i = 0; i < w2.n_tensors; i++)
        if (strcmp(w2.tensors[i].name, names[1]) == 0) {
            w2.tensors[i].shape[0] = shape_t[0];
            w2.tensors[i].shape[1] = shape_t[1];
        }
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w2, path, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_hf_load(&b, hf, &e));
    EXPECT(strstr(e.msg, names[1]) != NULL);
    cb_safetensors_writer_free(&w1);
    cb_safetensors_writer_free(&w2);
    cb_hf_names_free(names, a.params.n);
    json_decref(plan2);
    cb_model_free(&a);
    cb_model_free(&b);
    cb_remove_tree(dir);
}

TEST(non_llama_plans_do_not_export) {
    json_t *plan = test_compile("version: 1\nname: t\nmodel:\n  type: TransformerModel\n"
        "  embedder: {type: token, vocab_size: 9, d_model: 8}\n"
        "  topology:\n    type: StackedTopology\n    layers:\n"
        "      - {type: LinearLayer, d_in: 8, d_out: 8}\n", "lin.yml");
    cb_model m;
    cb_error e;
    char **names;
    if (!plan || cb_model_init(&m, plan, 1, &e)) { FAILF("setup"); return; }
    EXPECT_EQ_INT(CB_E_INVALID, cb_hf_names(&m, &names, &e));
    EXPECT(strstr(e.msg, "Llama") != NULL);
    json_decref(plan);
    cb_model_free(&m);
}
