/* test_plan.c: the plan's numbers: parameters of every layer type, KV elements per token
 * per attention mode, topology counting, the Llama 3.2 1B total, ids, config defaults. */
#include "test.h"

#include <stdint.h>
#include "core/json_doc.h"
#include "unit/plan/plan_fixture.h"

/* Parameters of the single layer LAYER (JSON) in a stack fed with width D. */
static long long layer_params(const char *layer_json, int d_model) {
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    int rc = fx_build(&plan, &d, "{\"embedder\":{\"type\":\"token\",\"vocab_size\":100,\"d_model\":%d},"
                                 "\"topology\":{\"type\":\"StackedTopology\",\"layers\":[%s]}}",
                      d_model, layer_json);
    long long p = -1;
    if (rc != CB_OK) { fx_dump(&d); FAILF("plan of %s failed", layer_json); }
    else p = fx_int(json_array_get(json_object_get(fx_node(plan, ""), "children"), 0), "params");
    json_decref(plan);
    cb_diags_free(&d);
    return p;
}

TEST(params_norms) {
    EXPECT_EQ_INT(64, layer_params("{\"type\":\"RMSNormLayer\",\"d_model\":64}", 64));
    EXPECT_EQ_INT(128, layer_params("{\"type\":\"LayerNormLayer\",\"d_model\":64}", 64));
    EXPECT_EQ_INT(64, layer_params("{\"type\":\"LayerNormLayer\",\"d_model\":64,\"bias\":false}", 64));
}

TEST(params_feed_forward) {
    /* SwiGLU 3 d F; with bias 2F + d more. MLP 2 d F + F + d (bias by default). */
    EXPECT_EQ_INT(3 * 64 * 256, layer_params("{\"type\":\"SwiGLULayer\",\"d_model\":64,\"d_ff\":256}", 64));
    EXPECT_EQ_INT(3 * 64 * 256 + 2 * 256 + 64,
                  layer_params("{\"type\":\"SwiGLULayer\",\"d_model\":64,\"d_ff\":256,\"bias\":true}", 64));
    EXPECT_EQ_INT(2 * 64 * 256 + 256 + 64, layer_params("{\"type\":\"MLPLayer\",\"d_model\":64,\"d_ff\":256}", 64));
    EXPECT_EQ_INT(2 * 64 * 256, layer_params("{\"type\":\"MLPLayer\",\"d_model\":64,\"d_ff\":256,\"bias\":false}", 64));
}

TEST(params_linear_dropout_rope) {
    EXPECT_EQ_INT(64 * 48 + 48, layer_params("{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":48}", 64));
    EXPECT_EQ_INT(64 * 48, layer_params("{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":48,\"bias\":false}", 64));
    EXPECT_EQ_INT(0, layer_params("{\"type\":\"DropoutLayer\",\"p\":0.2}", 64));
    EXPECT_EQ_INT(0, layer_params("{\"type\":\"RoPE\",\"d_model\":64,\"n_heads\":4}", 64));
}

TEST(params_attention_modes) {
    /* standard d 64, H 4: q k v o all 64x64 */
    EXPECT_EQ_INT(4 * 64 * 64, layer_params("{\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4}", 64));
    EXPECT_EQ_INT(4 * 64 * 64 + 4 * 64,
                  layer_params("{\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4,\"bias\":true}", 64));
    /* gqa H 4, Hkv 2, hd 16: q 64x64, k v 32x64, o 64x64 */
    EXPECT_EQ_INT(2 * 64 * 64 + 2 * 32 * 64,
                  layer_params("{\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4,\"n_kv_heads\":2}", 64));
    /* decoupled H 4, Hkv 2, sem 32 (8/head), geo 16 (4/head), v_dim 64 (16/head):
     * q_sem 32x64, k_sem 16x64, q_geo 16x64, k_geo 8x64, v 32x64, o 64x64 */
    const long long dba = 32 * 64 + 16 * 64 + 16 * 64 + 8 * 64 + 32 * 64 + 64 * 64;
    EXPECT_EQ_INT(dba, layer_params("{\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4,\"n_kv_heads\":2,"
                                    "\"mode\":\"decoupled\",\"sem_dim\":32,\"geo_dim\":16}", 64));
    EXPECT_EQ_INT(dba + 4 + 4 * 64,
                  layer_params("{\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4,\"n_kv_heads\":2,"
                               "\"mode\":\"decoupled\",\"sem_dim\":32,\"geo_dim\":16,"
                               "\"decoupled_gate\":true,\"decoupled_gate_dynamic\":true}", 64));
    /* an explicit v_dim 32 (8/head): v 16x64, o 64x32 */
    EXPECT_EQ_INT(32 * 64 + 16 * 64 + 16 * 64 + 8 * 64 + 16 * 64 + 64 * 32,
                  layer_params("{\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4,\"n_kv_heads\":2,"
                               "\"mode\":\"decoupled\",\"sem_dim\":32,\"geo_dim\":16,\"v_dim\":32}", 64));
}

/* KV elements per token of a single attention layer. */
static long long layer_kv(const char *layer_json) {
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    long long kv = -1;
    if (fx_build(&plan, &d, FX_MODEL(64, FX_STACK("%s")), layer_json) != CB_OK) {
        fx_dump(&d);
        FAILF("plan of %s failed", layer_json);
    } else {
        kv = fx_int(fx_node(plan, "attn"), "kv_cache_elems_per_token");
        EXPECT_EQ_INT(kv, fx_total(plan, "kv_cache_elems_per_token"));
    }
    json_decref(plan);
    cb_diags_free(&d);
    return kv;
}

TEST(kv_elems_per_mode) {
    EXPECT_EQ_INT(2 * 4 * 16, layer_kv("{\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4}"));
    EXPECT_EQ_INT(2 * 2 * 16, layer_kv("{\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4,\"n_kv_heads\":2}"));
    EXPECT_EQ_INT(2 * (8 + 4 + 16), layer_kv("{\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4,\"n_kv_heads\":2,"
                                             "\"mode\":\"decoupled\",\"sem_dim\":32,\"geo_dim\":16}"));
    EXPECT_EQ_INT(4 * (8 + 4 + 16), layer_kv("{\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4,"
                                             "\"mode\":\"decoupled\",\"sem_dim\":32,\"geo_dim\":16}"));
}

TEST(decoupled_tensor_shapes_and_init) {
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(CB_OK, fx_build(&plan, &d, FX_MODEL(64, FX_STACK(
        "{\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4,\"n_kv_heads\":2,\"mode\":\"decoupled\","
        "\"sem_dim\":32,\"geo_dim\":16,\"decoupled_gate\":true,\"decoupled_gate_dynamic\":true}"))));
    const json_t *attn = fx_node(plan, "attn");
    char buf[64];
    const char *names[] = {"q_sem.weight", "k_sem.weight", "q_geo.weight", "k_geo.weight", "v.weight",
                           "o.weight", "gate", "gate_proj.weight"};
    const char *shapes[] = {"[32,64]", "[16,64]", "[16,64]", "[8,64]", "[32,64]", "[64,64]", "[4]", "[4,64]"};
    EXPECT_EQ_INT(8, json_array_size(json_object_get(attn, "tensors")));
    for (int i = 0; i < 8; i++) {
        const json_t *t = fx_tensor(attn, names[i]);
        if (!t) { FAILF("no tensor %s", names[i]); continue; }
        EXPECT_EQ_STR(shapes[i], fx_shape(t, buf, sizeof buf));
    }
    EXPECT_EQ_STR("zeros", json_string_value(json_object_get(fx_tensor(attn, "gate"), "init")));
    EXPECT_EQ_STR("zeros", json_string_value(json_object_get(fx_tensor(attn, "gate_proj.weight"), "init")));
    /* one attention layer: o gets 0.02 / sqrt(2) */
    EXPECT_NEAR(0.02 / sqrt(2.0), json_real_value(json_object_get(fx_tensor(attn, "o.weight"), "std")), 1e-15);
    EXPECT_NEAR(0.02, json_real_value(json_object_get(fx_tensor(attn, "q_sem.weight"), "std")), 1e-15);
    json_decref(plan);
    cb_diags_free(&d);
}

TEST(config_defaults_filled) {
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(CB_OK, fx_build(&plan, &d, FX_MODEL(64, FX_STACK(
        "{\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4},"
        "{\"type\":\"LayerNormLayer\",\"d_model\":64},{\"type\":\"DropoutLayer\"},"
        "{\"type\":\"ParallelTopology\",\"layers\":[{\"type\":\"RMSNormLayer\",\"d_model\":64}]},"
        "{\"type\":\"CyclicTopology\",\"layers\":[{\"type\":\"RMSNormLayer\",\"d_model\":64}]}"))));
    const json_t *cfg = json_object_get(fx_node(plan, "attn"), "config");
    EXPECT_EQ_INT(4, fx_int(cfg, "n_kv_heads"));
    EXPECT_EQ_STR("standard", json_string_value(json_object_get(cfg, "mode")));
    EXPECT(json_is_true(json_object_get(cfg, "rope_enabled")));
    EXPECT(json_is_true(json_object_get(cfg, "is_causal")));
    EXPECT(json_is_false(json_object_get(cfg, "bias")));
    EXPECT(json_is_null(json_object_get(cfg, "rope_scaling")));
    EXPECT_NEAR(10000, json_number_value(json_object_get(cfg, "rope_theta")), 0);
    EXPECT(json_object_get(cfg, "sem_dim") == NULL);
    cfg = json_object_get(fx_node(plan, "norm"), "config");
    EXPECT_NEAR(1e-5, json_number_value(json_object_get(cfg, "eps")), 1e-20);
    EXPECT(json_is_true(json_object_get(cfg, "bias")));
    EXPECT_NEAR(0.1, json_number_value(json_object_get(json_object_get(fx_node(plan, "dropout"), "config"), "p")), 1e-15);
    EXPECT_EQ_STR("sum", json_string_value(json_object_get(fx_node(plan, "par"), "combine")));
    EXPECT_EQ_INT(2, fx_int(fx_node(plan, "cycle"), "cycles"));
    json_decref(plan);
    cb_diags_free(&d);
}

TEST(default_ids_when_lower_gave_none) {
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(CB_OK, fx_build(&plan, &d, FX_MODEL(64, FX_STACK(
        "{\"type\":\"NestedTopology\",\"repeat\":2,\"layers\":["
        "{\"type\":\"ResidualTopology\",\"layers\":[{\"type\":\"RMSNormLayer\",\"d_model\":64}]},"
        "{\"type\":\"ResidualTopology\",\"layers\":[{\"type\":\"RMSNormLayer\",\"d_model\":64}]}]},"
        "{\"type\":\"RMSNormLayer\",\"d_model\":64,\"id\":\"final\"}"))));
    EXPECT(fx_node(plan, "blocks.*.res.norm") != NULL);
    EXPECT(fx_node(plan, "blocks.*.res_1.norm") != NULL);
    const json_t *fin = fx_node(plan, "final");
    EXPECT(fin != NULL);
    EXPECT_EQ_STR("final", json_string_value(json_object_get(fin, "name")));
    EXPECT_EQ_STR("res_1", json_string_value(json_object_get(fx_node(plan, "blocks.*.res_1"), "name")));
    json_decref(plan);
    cb_diags_free(&d);
}

TEST(topology_counting) {
    /* Nested x3 multiplies parameters and attention layers; Cyclic x2 shares weights
     * (parameters once) but runs attention twice (KV cache twice); Branching concatenates. */
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    int rc = fx_build(&plan, &d, FX_MODEL(64, FX_STACK(
        "{\"type\":\"NestedTopology\",\"repeat\":3,\"layers\":["
        "  {\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4}]},"
        "{\"type\":\"CyclicTopology\",\"cycles\":2,\"layers\":["
        "  {\"type\":\"AttentionLayer\",\"d_model\":64,\"n_heads\":4}]},"
        "{\"type\":\"BranchingTopology\",\"layers\":["
        "  {\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":16},{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":48}]},"
        "{\"type\":\"RMSNormLayer\",\"d_model\":64}")));
    EXPECT_EQ_INT(CB_OK, rc);
    if (rc != CB_OK) { fx_dump(&d); cb_diags_free(&d); return; }
    const long long attn = 4 * 64 * 64, lin = 64 * 16 + 16 + 64 * 48 + 48;
    EXPECT_EQ_INT(3 * attn, fx_int(fx_node(plan, "blocks"), "params"));
    EXPECT_EQ_INT(attn, fx_int(fx_node(plan, "blocks.*.attn"), "params"));
    EXPECT_EQ_INT(attn, fx_int(fx_node(plan, "cycle"), "params"));
    EXPECT_EQ_INT(64, fx_int(fx_node(plan, "branch"), "d_out"));
    EXPECT_EQ_INT(lin, fx_int(fx_node(plan, "branch"), "params"));
    EXPECT_EQ_INT(5, fx_total(plan, "attention_layers"));
    EXPECT_EQ_INT(5 * 128, fx_total(plan, "kv_cache_elems_per_token"));
    EXPECT_EQ_INT(4 * attn + lin + 64, fx_total(plan, "params_topology"));
    EXPECT_EQ_INT(100 * 64, fx_total(plan, "params_embedding"));
    EXPECT_EQ_INT(100 * 64, fx_total(plan, "params_head")); /* untied: head.weight [100, 64] */
    EXPECT_EQ_INT(4 * attn + lin + 64 + 2 * 6400, fx_total(plan, "params"));
    /* 5 attention applications: residual outputs get 0.02 / sqrt(10) */
    EXPECT_NEAR(0.02 / sqrt(10.0),
                json_real_value(json_object_get(fx_tensor(fx_node(plan, "cycle.attn"), "o.weight"), "std")), 1e-15);
    json_decref(plan);
    cb_diags_free(&d);
}

TEST(embedder_and_head_tensors) {
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(CB_OK, fx_build(&plan, &d,
        "{\"embedder\":{\"type\":\"token_position\",\"vocab_size\":100,\"d_model\":32,\"max_seq_len\":16},"
        "\"head\":{\"bias\":true},\"scaled_residual_init\":false,\"init_std\":0.5,"
        "\"topology\":" FX_STACK("{\"type\":\"LinearLayer\",\"d_in\":32,\"d_out\":8}") "}"));
    const json_t *model = json_object_get(plan, "model");
    const json_t *emb = json_object_get(model, "embedder"), *head = json_object_get(model, "head");
    char buf[64];
    EXPECT_EQ_INT(100 * 32 + 16 * 32, fx_int(emb, "params"));
    EXPECT_EQ_STR("[16,32]", fx_shape(fx_tensor(emb, "embed.pos"), buf, sizeof buf));
    EXPECT_NEAR(0.5, json_real_value(json_object_get(fx_tensor(emb, "embed.tok"), "std")), 0);
    EXPECT_EQ_INT(8, fx_int(head, "d_in"));
    EXPECT_EQ_STR("[100,8]", fx_shape(fx_tensor(head, "head.weight"), buf, sizeof buf));
    EXPECT_EQ_STR("[100]", fx_shape(fx_tensor(head, "head.bias"), buf, sizeof buf));
    EXPECT_EQ_INT(100 * 8 + 100, fx_int(head, "params"));
    EXPECT_EQ_STR("zeros", json_string_value(json_object_get(fx_tensor(head, "head.bias"), "init")));
    json_decref(plan);
    cb_diags_free(&d);
}

/* The Llama 3.2 1B teacher: d 2048, 16 blocks, 32 heads, 8 kv heads, d_ff 8192,
 * vocab 128256, tied embeddings. */
#define LLAMA_1B                                                                                          \
    "{\"tie_embeddings\":true,\"embedder\":{\"type\":\"token\",\"vocab_size\":128256,\"d_model\":2048},"     \
    "\"topology\":{\"type\":\"StackedTopology\",\"id\":\"\",\"layers\":["                                  \
    " {\"type\":\"NestedTopology\",\"id\":\"blocks\",\"repeat\":16,\"layers\":["                           \
    "  {\"type\":\"ResidualTopology\",\"id\":\"blocks.*.res\",\"layers\":["                                \
    "   {\"type\":\"RMSNormLayer\",\"id\":\"blocks.*.res.norm\",\"d_model\":2048},"                        \
    "   {\"type\":\"AttentionLayer\",\"id\":\"blocks.*.res.attn\",\"d_model\":2048,\"n_heads\":32,"        \
    "    \"n_kv_heads\":8,\"rope_theta\":500000}]},"                                                       \
    "  {\"type\":\"ResidualTopology\",\"id\":\"blocks.*.res_1\",\"layers\":["                              \
    "   {\"type\":\"RMSNormLayer\",\"id\":\"blocks.*.res_1.norm\",\"d_model\":2048},"                      \
    "   {\"type\":\"SwiGLULayer\",\"id\":\"blocks.*.res_1.mlp\",\"d_model\":2048,\"d_ff\":8192}]}]},"      \
    " {\"type\":\"RMSNormLayer\",\"id\":\"norm\",\"d_model\":2048}]}}"

TEST(llama_3_2_1b_total) {
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(CB_OK, fx_build(&plan, &d, "%s", LLAMA_1B));
    EXPECT_EQ_INT(1235814400LL, fx_total(plan, "params"));
    EXPECT_EQ_INT(128256LL * 2048, fx_total(plan, "params_embedding"));
    EXPECT_EQ_INT(0, fx_total(plan, "params_head"));
    EXPECT_EQ_INT(16, fx_total(plan, "attention_layers"));
    EXPECT_EQ_INT(16 * 2 * 8 * 64, fx_total(plan, "kv_cache_elems_per_token"));
    EXPECT_EQ_INT(1024, fx_int(fx_node(plan, "blocks.*.res.attn"), "kv_cache_elems_per_token"));
    EXPECT_EQ_STR("gqa", json_string_value(json_object_get(json_object_get(fx_node(plan, "blocks.*.res.attn"), "config"), "mode")));
    const json_t *head = json_object_get(json_object_get(plan, "model"), "head");
    EXPECT(json_is_true(json_object_get(head, "tied")));
    EXPECT_EQ_INT(0, json_array_size(json_object_get(head, "tensors")));
    EXPECT_NEAR(0.02 / sqrt(32.0),
                json_real_value(json_object_get(fx_tensor(fx_node(plan, "blocks.*.res_1.mlp"), "down.weight"), "std")), 1e-15);
    EXPECT_EQ_STR("plan", json_string_value(json_object_get(plan, "kind")));
    EXPECT_EQ_STR("t.yml", json_string_value(json_object_get(plan, "source")));
    json_decref(plan);
    cb_diags_free(&d);
}

TEST(print_tree) {
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(CB_OK, fx_build(&plan, &d, "%s", LLAMA_1B));
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);
    EXPECT_EQ_INT(0, cb_plan_print(fp, plan));
    fclose(fp);
    const char *want[] = {
        "NestedTopology x16", "blocks.*.res.attn", "10,485,760", "kv 1,024 elems/token",
        "1,235,814,400 (1.24B)", "16,384 elems = 32,768 bytes fp16, 65,536 bytes fp32", "128256->2048",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(text, want[i])) FAILF("tree lacks \"%s\":\n%s", want[i], text);
    /* the nested block is printed once, not 16 times */
    int attn_lines = 0;
    for (const char *p = text; (p = strstr(p, "AttentionLayer")); p++) attn_lines++;
    EXPECT_EQ_INT(1, attn_lines);
    free(text);
    json_decref(plan);
    cb_diags_free(&d);
}

TEST(plan_carries_runs_and_name) {
    const char *text =
        "{\"cb_version\":\"0.1\",\"kind\":\"lowered\",\"source\":\"m.yml\",\"manifest\":{\"name\":\"exp\","
        "\"notes\":\"n\",\"groups\":[{\"name\":\"default\",\"runs\":[{\"id\":\"r\"}]}],\"paper\":{\"title\":\"T\"},"
        "\"model\":" FX_MODEL(8, FX_STACK("{\"type\":\"RMSNormLayer\",\"d_model\":8}")) "}}";
    json_t *doc = json_loads(text, 0, NULL), *plan = NULL;
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(CB_OK, cb_plan_build(doc, &plan, &d));
    EXPECT_EQ_STR("exp", json_string_value(json_object_get(plan, "name")));
    EXPECT_EQ_STR("n", json_string_value(json_object_get(plan, "notes")));
    EXPECT_EQ_STR("r", json_string_value(json_object_get(json_array_get(json_object_get(
        json_array_get(json_object_get(plan, "groups"), 0), "runs"), 0), "id")));
    EXPECT_EQ_STR("T", json_string_value(json_object_get(json_object_get(plan, "paper"), "title")));
    EXPECT_EQ_STR(CB_FORMAT_VERSION, json_string_value(json_object_get(plan, "cb_version")));
    json_decref(doc);
    json_decref(plan);
    cb_diags_free(&d);
}
