/* test_shape.c: every shape rule of the plan builder, each error with its exact message
 * and location, all errors of a manifest reported, overflow, and hostile documents. */
#include "test.h"

#include "core/json_doc.h"
#include "unit/plan/plan_fixture.h"

/* Build MODEL; expect failure and, among the errors, exactly the message want. */
static void expect_error(const char *want, const char *model) {
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    int rc = fx_build(&plan, &d, "%s", model);
    if (rc != CB_E_INVALID) FAILF("status %d, expected %d (CB_E_INVALID) for %s", rc, CB_E_INVALID, want);
    if (plan) FAILF("a plan was returned despite errors");
    if (fx_find(&d, want) < 0) {
        FAILF("no error \"%s\"", want);
        fx_dump(&d);
    }
    json_decref(plan);
    cb_diags_free(&d);
}

/* Build MODEL; expect success. */
static void expect_ok(const char *model) {
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    if (fx_build(&plan, &d, "%s", model) != CB_OK || d.n) {
        FAILF("plan failed for %s", model);
        fx_dump(&d);
    }
    json_decref(plan);
    cb_diags_free(&d);
}

/* Error i of d is msg at where. */
static void expect_item(const cb_diags *d, int i, const char *where, const char *msg) {
    if (strcmp(d->items[i].where, where) != 0 || strcmp(d->items[i].msg, msg) != 0)
        FAILF("error %d: expected [%s] %s, got [%.100s] %.300s", i, where, msg, d->items[i].where, d->items[i].msg);
}

#define ATTN(FIELDS) "{\"type\":\"AttentionLayer\"," FIELDS "}"

TEST(layer_width_must_match_the_flow) {
    expect_error("model.topology.layers[1].d_model: 32 does not match the width flowing in (64)",
                 FX_MODEL(64, FX_STACK("{\"type\":\"RMSNormLayer\",\"d_model\":64},"
                                       "{\"type\":\"RMSNormLayer\",\"d_model\":32}")));
    expect_error("model.topology.layers[1].d_in: 64 does not match the width flowing in (48)",
                 FX_MODEL(64, FX_STACK("{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":48},"
                                       "{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":64}")));
    expect_ok(FX_MODEL(64, FX_STACK("{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":48},"
                                    "{\"type\":\"DropoutLayer\"},{\"type\":\"LinearLayer\",\"d_in\":48,\"d_out\":64}")));
}

TEST(heads_divide_d_model) {
    expect_error("model.topology.layers[0].n_heads: 12 does not divide d_model 1000",
                 FX_MODEL(1000, FX_STACK(ATTN("\"d_model\":1000,\"n_heads\":12"))));
    expect_error("model.topology.layers[0].n_kv_heads: 5 does not divide n_heads 32",
                 FX_MODEL(2048, FX_STACK(ATTN("\"d_model\":2048,\"n_heads\":32,\"n_kv_heads\":5"))));
    expect_error("model.topology.layers[0].n_kv_heads: 16 does not divide n_heads 8",
                 FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":8,\"n_kv_heads\":16"))));
}

TEST(mode_matches_kv_heads) {
    expect_error("model.topology.layers[0].mode: gqa needs n_kv_heads < n_heads (n_kv_heads 4, n_heads 4)",
                 FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":4,\"mode\":\"gqa\""))));
    expect_error("model.topology.layers[0].mode: standard needs n_kv_heads == n_heads (n_kv_heads 2, n_heads 4); use gqa",
                 FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":4,\"n_kv_heads\":2,\"mode\":\"standard\""))));
    expect_error("model.topology.layers[0].mode: must be one of standard, gqa, decoupled, got \"mqa\"",
                 FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":4,\"mode\":\"mqa\""))));
    expect_ok(FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":4,\"n_kv_heads\":1,\"mode\":\"gqa\""))));
}

TEST(rope_needs_even_head_dims) {
    expect_error("model.topology.layers[0].n_heads: head dim 9 (d_model 36 / n_heads 4) is odd; RoPE rotates pairs of dims",
                 FX_MODEL(36, FX_STACK(ATTN("\"d_model\":36,\"n_heads\":4"))));
    expect_ok(FX_MODEL(36, FX_STACK(ATTN("\"d_model\":36,\"n_heads\":4,\"rope_enabled\":false"))));
    expect_error("model.topology.layers[0].n_heads: 5 does not divide d_model 64",
                 FX_MODEL(64, FX_STACK("{\"type\":\"RoPE\",\"d_model\":64,\"n_heads\":5}")));
    expect_error("model.topology.layers[0].n_heads: per-head dim 3 (d_model 24 / n_heads 8) is odd; RoPE rotates pairs of dims",
                 FX_MODEL(24, FX_STACK("{\"type\":\"RoPE\",\"d_model\":24,\"n_heads\":8}")));
}

TEST(decoupled_dims_split_over_heads) {
    expect_error("model.topology.layers[0].sem_dim: 30 is not divisible by n_heads 4",
                 FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":4,\"mode\":\"decoupled\",\"sem_dim\":30,\"geo_dim\":16"))));
    expect_error("model.topology.layers[0].geo_dim: 18 is not divisible by n_heads 4",
                 FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":4,\"mode\":\"decoupled\",\"sem_dim\":32,\"geo_dim\":18"))));
    expect_error("model.topology.layers[0].geo_dim: per-head geometric dim 3 (geo_dim 12 / n_heads 4) is odd; RoPE rotates pairs of dims",
                 FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":4,\"mode\":\"decoupled\",\"sem_dim\":32,\"geo_dim\":12"))));
    expect_ok(FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":4,\"mode\":\"decoupled\",\"sem_dim\":32,\"geo_dim\":12,\"rope_enabled\":false"))));
    expect_error("model.topology.layers[0].v_dim: 30 is not divisible by n_heads 4",
                 FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":4,\"mode\":\"decoupled\",\"sem_dim\":32,\"geo_dim\":16,\"v_dim\":30"))));
    /* v_dim defaults to d_model, so an indivisible d_model is caught through it */
    expect_error("model.topology.layers[0].v_dim: 66 is not divisible by n_heads 4",
                 FX_MODEL(66, FX_STACK(ATTN("\"d_model\":66,\"n_heads\":4,\"mode\":\"decoupled\",\"sem_dim\":32,\"geo_dim\":16"))));
    expect_error("model.topology.layers[0].sem_dim: missing (a positive integer is required)",
                 FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":4,\"mode\":\"decoupled\",\"geo_dim\":16"))));
}

TEST(residual_returns_its_input_width) {
    expect_error("model.topology.layers[0]: residual body returns width 32, not its input width 64",
                 FX_MODEL(64, FX_STACK("{\"type\":\"ResidualTopology\",\"layers\":["
                                       "{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":32}]},"
                                       "{\"type\":\"RMSNormLayer\",\"d_model\":64}")));
}

TEST(repeated_bodies_preserve_width) {
    const char *body = "\"layers\":[{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":32}]";
    char model[1024];
    snprintf(model, sizeof model, FX_MODEL(64, FX_STACK("{\"type\":\"NestedTopology\",\"repeat\":2,%s}")), body);
    expect_error("model.topology.layers[0].repeat: repeat 2 needs the body to return its input width, but it maps 64 to 32", model);
    snprintf(model, sizeof model, FX_MODEL(64, FX_STACK("{\"type\":\"CyclicTopology\",%s}")), body);
    expect_error("model.topology.layers[0].cycles: cycles 2 needs the body to return its input width, but it maps 64 to 32", model);
    snprintf(model, sizeof model, FX_MODEL(64, FX_STACK("{\"type\":\"RecurrentTopology\",\"steps\":1,%s}")), body);
    expect_error("model.topology.layers[0].steps: steps 1 needs the body to return its input width, but it maps 64 to 32", model);
    /* a single repeat may change the width */
    snprintf(model, sizeof model, FX_MODEL(64, FX_STACK("{\"type\":\"NestedTopology\",\"repeat\":1,%s},"
                                                        "{\"type\":\"RMSNormLayer\",\"d_model\":32}")), body);
    expect_ok(model);
}

TEST(parallel_outputs_have_equal_widths) {
    expect_error("model.topology.layers[0].layers[1]: output width 32 differs from layers[0]'s 64 (parallel outputs are combined by mean)",
                 FX_MODEL(64, FX_STACK("{\"type\":\"ParallelTopology\",\"combine\":\"mean\",\"layers\":["
                                       "{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":64},"
                                       "{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":32}]}")));
}

TEST(branching_width_is_the_sum) {
    expect_error("model.topology.layers[1].d_model: 64 does not match the width flowing in (128)",
                 FX_MODEL(64, FX_STACK("{\"type\":\"BranchingTopology\",\"layers\":["
                                       "{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":64},"
                                       "{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":64}]},"
                                       "{\"type\":\"RMSNormLayer\",\"d_model\":64}")));
}

TEST(embedder_feeds_the_topology) {
    expect_error("model.embedder.d_model: 32 does not match the topology's input width 64",
                 FX_MODEL(32, FX_STACK("{\"type\":\"DropoutLayer\"},{\"type\":\"RMSNormLayer\",\"d_model\":64}")));
}

TEST(tied_head_needs_the_embedder_width) {
    expect_error("model.tie_embeddings: true needs the topology's output width 32 to equal the embedder's d_model 64",
                 "{\"tie_embeddings\":true,\"embedder\":{\"type\":\"token\",\"vocab_size\":100,\"d_model\":64},"
                 "\"topology\":" FX_STACK("{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":32}") "}");
    expect_ok("{\"tie_embeddings\":false,\"embedder\":{\"type\":\"token\",\"vocab_size\":100,\"d_model\":64},"
              "\"topology\":" FX_STACK("{\"type\":\"LinearLayer\",\"d_in\":64,\"d_out\":32}") "}");
    expect_error("model.head.vocab_size: 50 differs from the embedder's vocab_size 100",
                 "{\"head\":{\"vocab_size\":50},\"embedder\":{\"type\":\"token\",\"vocab_size\":100,\"d_model\":64},"
                 "\"topology\":" FX_STACK("{\"type\":\"RMSNormLayer\",\"d_model\":64}") "}");
}

TEST(overflow_is_an_error) {
    expect_error("model.topology.layers[0]: parameter count overflows a 64-bit integer",
                 FX_MODEL(1000000000000, FX_STACK(ATTN("\"d_model\":1000000000000,\"n_heads\":8"))));
    expect_error("model.topology.layers[0]: parameter count overflows a 64-bit integer",
                 FX_MODEL(4096, FX_STACK("{\"type\":\"NestedTopology\",\"repeat\":4000000000000000000,\"layers\":["
                                         "{\"type\":\"RMSNormLayer\",\"d_model\":4096}]}")));
    /* each count fits, their sum does not */
    expect_error("model: parameter or KV-cache total overflows a 64-bit integer",
                 "{\"embedder\":{\"type\":\"token\",\"vocab_size\":3,\"d_model\":3000000000000000000},"
                 "\"topology\":" FX_STACK("{\"type\":\"RMSNormLayer\",\"d_model\":3000000000000000000}") "}");
}

TEST(every_error_is_reported_in_order_with_its_location) {
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    int rc = fx_build(&plan, &d, FX_MODEL(1000, FX_STACK(
        "{\"@loc\":{\"\":\"t.yml:10:9\",\"n_heads\":\"t.yml:12:18\"},"
        " \"type\":\"AttentionLayer\",\"d_model\":1000,\"n_heads\":12},"
        "{\"type\":\"ResidualTopology\",\"@loc\":{\"\":\"t.yml:14:9\"},\"layers\":["
        " {\"type\":\"LinearLayer\",\"d_in\":1000,\"d_out\":10}]},"
        "{\"@loc\":{\"\":\"t.yml:20:9\",\"d_model\":\"t.yml:21:18\"},\"type\":\"RMSNormLayer\",\"d_model\":999}")));
    EXPECT_EQ_INT(CB_E_INVALID, rc);
    EXPECT_EQ_INT(3, d.n);
    if (d.n == 3) {
        expect_item(&d, 0, "t.yml:12:18", "model.topology.layers[0].n_heads: 12 does not divide d_model 1000");
        expect_item(&d, 1, "t.yml:14:9", "model.topology.layers[1]: residual body returns width 10, not its input width 1000");
        expect_item(&d, 2, "t.yml:21:18", "model.topology.layers[2].d_model: 999 does not match the width flowing in (1000)");
        for (int i = 0; i < 3; i++) EXPECT_EQ_INT(CB_E_INVALID, d.items[i].code);
    } else {
        fx_dump(&d);
    }
    json_decref(plan);
    cb_diags_free(&d);
}

TEST(one_fault_one_error) {
    /* a wrong width is reported where it is declared, and the declared width flows on:
     * the layers after it are not blamed too */
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    fx_build(&plan, &d, FX_MODEL(64, FX_STACK(
        "{\"type\":\"RMSNormLayer\",\"d_model\":32},{\"type\":\"RMSNormLayer\",\"d_model\":32},"
        "{\"type\":\"LinearLayer\",\"d_in\":32,\"d_out\":64}")));
    EXPECT_EQ_INT(1, d.n);
    EXPECT(fx_find(&d, "model.embedder.d_model: 64 does not match the topology's input width 32") == 0);
    json_decref(plan);
    cb_diags_free(&d);
}

/* Hostile and schema-invalid documents: errors, never a crash (ASan runs this too). */
TEST(hostile_documents_give_errors) {
    const char *models[] = {
        "{}",
        "{\"embedder\":7,\"topology\":\"x\"}",
        "{\"embedder\":{\"type\":\"word\"},\"topology\":{\"layers\":[]}}",
        FX_MODEL(64, "{\"type\":\"StackedTopology\"}"),
        FX_MODEL(64, "{\"type\":\"StackedTopology\",\"layers\":{}}"),
        FX_MODEL(64, FX_STACK("3,null,\"x\",[]")),
        FX_MODEL(64, FX_STACK("{\"type\":\"WarpLayer\"},{\"d_model\":64}")),
        FX_MODEL(64, FX_STACK(ATTN("\"d_model\":\"64\",\"n_heads\":0,\"n_kv_heads\":-2,\"mode\":7,\"bias\":\"yes\""))),
        FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":4,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":-1}"))),
        FX_MODEL(64, FX_STACK("{\"type\":\"NestedTopology\",\"repeat\":0,\"layers\":[" ATTN("\"n_heads\":4") "]}")),
        FX_MODEL(64, FX_STACK("{\"type\":\"ParallelTopology\",\"combine\":\"max\",\"layers\":[{\"type\":\"DropoutLayer\",\"p\":2}]}")),
        FX_MODEL(64, FX_STACK(ATTN("\"d_model\":64,\"n_heads\":4,\"mode\":\"decoupled\",\"sem_dim\":1.5,\"geo_dim\":[]"))),
        FX_MODEL(64, FX_STACK("{\"type\":\"LinearLayer\"},{\"type\":\"SwiGLULayer\",\"d_model\":64}")),
    };
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        json_t *plan;
        cb_diags d;
        cb_diags_init(&d);
        int rc = fx_build(&plan, &d, "%s", models[i]);
        if (rc != CB_E_INVALID || d.n == 0 || plan) FAILF("model %zu: status %d with %d errors", i, rc, d.n);
        if (getenv("CB_TEST_VERBOSE")) fx_dump(&d);
        for (int k = 0; k < d.n; k++)
            if (!strstr(d.items[k].msg, ": ")) FAILF("model %zu: message without a path: %.300s", i, d.items[k].msg);
        json_decref(plan);
        cb_diags_free(&d);
    }
}

TEST(deep_nesting_is_refused_not_recursed) {
    /* 200 stacked topologies around one norm */
    size_t cap = 200 * 64 + 256;
    char *topo = malloc(cap), *p = topo;
    for (int i = 0; i < 200; i++) p += sprintf(p, "{\"type\":\"StackedTopology\",\"layers\":[");
    p += sprintf(p, "{\"type\":\"RMSNormLayer\",\"d_model\":8}");
    for (int i = 0; i < 200; i++) p += sprintf(p, "]}");
    json_t *plan;
    cb_diags d;
    cb_diags_init(&d);
    int rc = fx_build(&plan, &d, "{\"embedder\":{\"type\":\"token\",\"vocab_size\":5,\"d_model\":8},\"topology\":%s}", topo);
    EXPECT_EQ_INT(CB_E_INVALID, rc);
    EXPECT_EQ_INT(1, d.n);
    if (d.n && !strstr(d.items[0].msg, "topologies nested deeper than 64 levels")) FAILF("got %.300s", d.items[0].msg);
    free(topo);
    json_decref(plan);
    cb_diags_free(&d);
}

TEST(not_a_lowered_document) {
    json_t *doc = json_loads("{\"cb_version\":\"0.1\",\"kind\":\"manifest\",\"manifest\":{}}", 0, NULL), *plan;
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(CB_E_INVALID, cb_plan_build(doc, &plan, &d));
    EXPECT_EQ_INT(1, d.n);
    EXPECT(plan == NULL);
    json_decref(doc);
    cb_diags_free(&d);
}
