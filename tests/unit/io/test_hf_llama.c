/* test_hf_llama.c: Hugging Face Llama directories written outside caramba give the logits
 * of transformers' Llama (tests/reference/make_hf_llama_reference.py) and export back to the
 * same tensors; a caramba Llama exported and read back (derived plan and weights) gives the
 * same logits; broken checkpoints are refused. */
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

/* tests/reference/hf_llama/NAME: config.json and model.safetensors with transformers' names,
 * written without caramba (transformers5_tied: by transformers 5.17's save_pretrained, RoPE
 * in one rope_parameters object), and reference_logits.safetensors: the logits (F64 [T, V])
 * of transformers 5.17's own LlamaForCausalLM in float64 for "tokens" (I32 [T]), made on the
 * GPU machine by tests/reference/make_hf_llama_fixtures.py. caramba's import and
 * forward pass must give them to 1e-5 of the largest logit; its export must give back every
 * tensor of the file, bit for bit. */
#define HF_REF_TOL 1e-5

static void outside_checkpoint(const char *name) {
    const char *root = getenv("CB_ROOT");
    char dir[1024], path[1200], out[] = "/tmp/cbhfref.XXXXXX", exported[1200];
    snprintf(dir, sizeof dir, "%s/tests/reference/hf_llama/%s", root && *root ? root : ".", name);
    cb_error e;
    json_t *plan;
    if (cb_hf_plan_from_config(dir, &plan, &e) != CB_OK) { FAILF("%s: config: %s: %s", name, e.where, e.msg); return; }
    cb_model m;
    if (cb_model_init_empty(&m, plan, &e) != CB_OK) { FAILF("%s: %s", name, e.msg); json_decref(plan); return; }
    json_decref(plan);
    if (cb_hf_load(&m, dir, &e) != CB_OK) { FAILF("%s: load: %s: %s", name, e.where, e.msg); cb_model_free(&m); return; }
    cb_safetensors ref;
    snprintf(path, sizeof path, "%s/reference_logits.safetensors", dir);
    if (cb_safetensors_open(&ref, path, &e) != CB_OK) { FAILF("%s: %s", path, e.msg); cb_model_free(&m); return; }
    cb_tensor tt, lt;
    EXPECT_EQ_INT(CB_OK, cb_safetensors_get(&ref, "tokens", &tt, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_get(&ref, "logits", &lt, &e));
    const int T = (int)tt.shape[0], V = (int)lt.shape[1];
    if (tt.dtype != CB_DTYPE_I32 || lt.dtype != CB_DTYPE_F64 || T < 1 || T > 64 || lt.shape[0] != T) {
        FAILF("%s: tokens I32 [T] and logits F64 [T, V] expected", path);
    } else {
        int32_t tokens[64];
        memcpy(tokens, tt.data, sizeof(int32_t) * (size_t)T);
        cb_program prog;
        cb_run r;
        if (cb_program_init(&prog, m.plan, &m.params, 1, T, &e) != CB_OK || cb_run_init(&r, &prog, 0, &e) != CB_OK) {
            FAILF("%s: program: %s", name, e.msg);
        } else {
            cb_run_forward(&r, &prog, m.weights, tokens, NULL);
            int width;
            const float *got = cb_run_op_output(&r, &prog, prog.n_ops - 1, &width);
            EXPECT_EQ_INT(V, width);
            const double *want = lt.data;
            double worst = 0, scale = 0;
            for (size_t i = 0; width == V && i < (size_t)T * V; i++) {
                worst = cb_test_worst(worst, fabs(got[i] - want[i]));
                scale = cb_test_worst(scale, fabs(want[i]));
            }
            char what[96];
            snprintf(what, sizeof what, "%s: logits vs the outside reference", name);
            REPORT_DIFF(what, worst / scale, HF_REF_TOL);
            if (!(worst / scale <= HF_REF_TOL)) FAILF("%s: %.3e above %.1e", what, worst / scale, HF_REF_TOL);
            cb_run_free(&r);
            cb_program_free(&prog);
        }
    }
    cb_safetensors_close(&ref);
    /* exported back: every tensor of the outside file, same name, dtype, shape and bytes */
    EXPECT(mkdtemp(out) != NULL);
    snprintf(exported, sizeof exported, "%s/hf", out);
    if (cb_hf_export(&m, exported, &e) != CB_OK) {
        FAILF("%s: export: %s: %s", name, e.where, e.msg);
    } else {
        cb_safetensors theirs, ours;
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        EXPECT_EQ_INT(CB_OK, cb_safetensors_open(&theirs, path, &e));
        snprintf(path, sizeof path, "%s/model.safetensors", exported);
        EXPECT_EQ_INT(CB_OK, cb_safetensors_open(&ours, path, &e));
        EXPECT_EQ_INT(theirs.n_tensors, ours.n_tensors);
        for (size_t i = 0; i < theirs.n_tensors; i++) {
            cb_tensor a, b;
            cb_safetensors_view(&theirs, i, &a);
            if (cb_safetensors_get(&ours, theirs.tensors[i].name, &b, &e) != CB_OK) {
                FAILF("%s: the export lacks %s", name, theirs.tensors[i].name);
                continue;
            }
            if (a.dtype != b.dtype || a.ndim != b.ndim || a.nbytes != b.nbytes ||
                memcmp(a.shape, b.shape, sizeof(int64_t) * (size_t)a.ndim) != 0 || memcmp(a.data, b.data, a.nbytes) != 0)
                FAILF("%s: exported %s differs from the outside file's", name, theirs.tensors[i].name);
        }
        cb_safetensors_close(&theirs);
        cb_safetensors_close(&ours);
    }
    cb_remove_tree(out);
    cb_model_free(&m);
}

TEST(reads_an_outside_checkpoint_tied) { outside_checkpoint("tied"); }
TEST(reads_an_outside_checkpoint_untied) { outside_checkpoint("untied"); }
/* written by transformers 5 itself: RoPE settings in one rope_parameters object */
TEST(reads_a_transformers5_checkpoint) { outside_checkpoint("transformers5_tied"); }

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
