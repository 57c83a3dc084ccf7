/* schema_model.c: schema tables of the model section: the model, its embedder and head,
 * every topology node type and every layer type (CONTRACTS.md "Model section"). */
#include <string.h>
#include "manifest/schema_table.h"

static const char *const decoupled[] = {"decoupled", NULL};
static const char *const token_position[] = {"token_position", NULL};

#define NODE_ID FIELD("id", {.kind = CB_K_STRING, .flags = CB_F_NODE_ID})
#define CHILDREN FIELD("layers", {.kind = CB_K_LIST, .flags = CB_F_NONEMPTY, .elem = &(const cb_type)T_UNION(cb_node_union)}, .required = 1)
#define DECOUPLED .when_key = "mode", .when_in = decoupled

/* ---- layers ---- */

static const cb_field rope_scaling_fields[] = {
    FIELD("type", T_ENUM("llama3"), .required = 1),
    FIELD("factor", T_FLOAT_GT(0), .def = "8.0"),
    FIELD("low_freq_factor", T_FLOAT_GT(0), .def = "1.0"),
    FIELD("high_freq_factor", T_FLOAT_GT(0), .def = "4.0"),
    FIELD("original_max_position_embeddings", T_INT_GE(1), .def = "8192"),
};
const cb_schema cb_rope_scaling_schema = {"rope_scaling", rope_scaling_fields, CB_NFIELDS(rope_scaling_fields), NULL, NULL};

#define ROPE_SCALING \
    FIELD("rope_scaling", {.kind = CB_K_OBJECT, .flags = CB_F_NULLABLE, .schema = &cb_rope_scaling_schema}, .def = "null")

static const cb_field attention_fields[] = {
    NODE_ID,
    FIELD("d_model", T_INT_GE(1), .required = 1),
    FIELD("n_heads", T_INT_GE(1), .required = 1),
    FIELD("n_kv_heads", T_INT_GE(1), .def_from = "n_heads"),
    FIELD("mode", T_ENUM("standard", "gqa", "decoupled")), /* derived: attention_fill */
    FIELD("sem_dim", T_INT_GE(1), .required = 1, DECOUPLED),
    FIELD("geo_dim", T_INT_GE(1), .required = 1, DECOUPLED),
    FIELD("v_dim", T_INT_GE(1), .def_from = "d_model", DECOUPLED),
    FIELD("rope_enabled", T_BOOL, .def = "true"),
    FIELD("rope_theta", T_FLOAT_GT(0), .def = "10000.0"),
    ROPE_SCALING,
    FIELD("bias", T_BOOL, .def = "false"),
    FIELD("dropout", T_FLOAT_IN_HALF(0, 1), .def = "0.0"),
    FIELD("is_causal", T_BOOL, .def = "true"),
    FIELD("decoupled_gate", T_BOOL, .def = "false", DECOUPLED),
    FIELD("decoupled_gate_dynamic", T_BOOL, .def = "false", DECOUPLED),
};

/* mode defaults to standard when every query head has its own key/value head, else gqa */
static void attention_fill(json_t *obj) {
    if (json_object_get(obj, "mode")) return;
    const json_t *h = json_object_get(obj, "n_heads"), *kv = json_object_get(obj, "n_kv_heads");
    if (!json_is_integer(h)) return;
    json_int_t n_kv = json_is_integer(kv) ? json_integer_value(kv) : json_integer_value(h);
    json_object_set_new(obj, "mode", json_string(n_kv == json_integer_value(h) ? "standard" : "gqa"));
}

static const cb_schema attention_schema = {"AttentionLayer", attention_fields, CB_NFIELDS(attention_fields), NULL,
                                           attention_fill};

static const cb_field rmsnorm_fields[] = {
    NODE_ID,
    FIELD("d_model", T_INT_GE(1), .required = 1),
    FIELD("eps", T_FLOAT_GT(0), .def = "1e-05"),
};
static const cb_schema rmsnorm_schema = {"RMSNormLayer", rmsnorm_fields, CB_NFIELDS(rmsnorm_fields), NULL, NULL};

static const cb_field layernorm_fields[] = {
    NODE_ID,
    FIELD("d_model", T_INT_GE(1), .required = 1),
    FIELD("eps", T_FLOAT_GT(0), .def = "1e-05"),
    FIELD("bias", T_BOOL, .def = "true"),
};
static const cb_schema layernorm_schema = {"LayerNormLayer", layernorm_fields, CB_NFIELDS(layernorm_fields), NULL,
                                           NULL};

static const cb_field swiglu_fields[] = {
    NODE_ID,
    FIELD("d_model", T_INT_GE(1), .required = 1),
    FIELD("d_ff", T_INT_GE(1), .required = 1),
    FIELD("bias", T_BOOL, .def = "false"),
};
static const cb_schema swiglu_schema = {"SwiGLULayer", swiglu_fields, CB_NFIELDS(swiglu_fields), NULL, NULL};

static const cb_field mlp_fields[] = {
    NODE_ID,
    FIELD("d_model", T_INT_GE(1), .required = 1),
    FIELD("d_ff", T_INT_GE(1), .required = 1),
    FIELD("activation", T_ENUM("gelu"), .def = "\"gelu\""),
    FIELD("bias", T_BOOL, .def = "true"),
};
static const cb_schema mlp_schema = {"MLPLayer", mlp_fields, CB_NFIELDS(mlp_fields), NULL, NULL};

static const cb_field linear_fields[] = {
    NODE_ID,
    FIELD("d_in", T_INT_GE(1), .required = 1),
    FIELD("d_out", T_INT_GE(1), .required = 1),
    FIELD("bias", T_BOOL, .def = "true"),
};
static const cb_schema linear_schema = {"LinearLayer", linear_fields, CB_NFIELDS(linear_fields), NULL, NULL};

static const cb_field dropout_fields[] = {
    NODE_ID,
    FIELD("p", T_FLOAT_IN_HALF(0, 1), .def = "0.1"),
};
static const cb_schema dropout_schema = {"DropoutLayer", dropout_fields, CB_NFIELDS(dropout_fields), NULL, NULL};

static const cb_field rope_fields[] = {
    NODE_ID,
    FIELD("d_model", T_INT_GE(1), .required = 1),
    FIELD("n_heads", T_INT_GE(1), .def = "1"),
    FIELD("rope_theta", T_FLOAT_GT(0), .def = "10000.0"),
    ROPE_SCALING,
};
static const cb_schema rope_schema = {"RoPE", rope_fields, CB_NFIELDS(rope_fields), NULL, NULL};

/* ---- topologies ---- */

static const cb_field plain_topology_fields[] = {NODE_ID, CHILDREN};
static const cb_schema stacked_schema = {"StackedTopology", plain_topology_fields, CB_NFIELDS(plain_topology_fields),
                                         NULL, NULL};
static const cb_schema sequential_schema = {"SequentialTopology", plain_topology_fields,
                                            CB_NFIELDS(plain_topology_fields), NULL, NULL};
static const cb_schema residual_schema = {"ResidualTopology", plain_topology_fields,
                                          CB_NFIELDS(plain_topology_fields), NULL, NULL};
static const cb_schema branching_schema = {"BranchingTopology", plain_topology_fields,
                                           CB_NFIELDS(plain_topology_fields), NULL, NULL};

static const cb_field nested_fields[] = {NODE_ID, CHILDREN, FIELD("repeat", T_INT_GE(1), .required = 1)};
static const cb_schema nested_schema = {"NestedTopology", nested_fields, CB_NFIELDS(nested_fields), NULL, NULL};

static const cb_field parallel_fields[] = {NODE_ID, CHILDREN,
                                           FIELD("combine", T_ENUM("sum", "mean"), .def = "\"sum\"")};
static const cb_schema parallel_schema = {"ParallelTopology", parallel_fields, CB_NFIELDS(parallel_fields), NULL,
                                          NULL};

static const cb_field cyclic_fields[] = {NODE_ID, CHILDREN, FIELD("cycles", T_INT_GE(1), .def = "2")};
static const cb_schema cyclic_schema = {"CyclicTopology", cyclic_fields, CB_NFIELDS(cyclic_fields), NULL, NULL};

static const cb_field recurrent_fields[] = {NODE_ID, CHILDREN, FIELD("steps", T_INT_GE(1), .def = "2")};
static const cb_schema recurrent_schema = {"RecurrentTopology", recurrent_fields, CB_NFIELDS(recurrent_fields),
                                           NULL, NULL};

static const cb_schema *const node_variants[] = {
    &attention_schema, &rmsnorm_schema,    &layernorm_schema,  &swiglu_schema,    &mlp_schema,
    &linear_schema,    &dropout_schema,    &rope_schema,       &stacked_schema,   &sequential_schema,
    &residual_schema,  &nested_schema,     &parallel_schema,   &branching_schema, &cyclic_schema,
    &recurrent_schema,
};
const cb_union cb_node_union = {"node type", "type", node_variants, CB_NFIELDS(node_variants)};

/* ---- the model ---- */

static const cb_field embedder_fields[] = {
    FIELD("type", T_ENUM("token", "token_position"), .required = 1),
    FIELD("vocab_size", T_INT_GE(1), .required = 1),
    FIELD("d_model", T_INT_GE(1), .required = 1),
    FIELD("max_seq_len", T_INT_GE(1), .required = 1, .when_key = "type", .when_in = token_position),
    FIELD("dropout", T_FLOAT_IN_HALF(0, 1), .def = "0.0"),
};
const cb_schema cb_embedder_schema = {"embedder", embedder_fields, CB_NFIELDS(embedder_fields), NULL, NULL};

static const cb_field head_fields[] = {
    FIELD("bias", T_BOOL, .def = "false"),
};
const cb_schema cb_head_schema = {"head", head_fields, CB_NFIELDS(head_fields), NULL, NULL};

static const cb_field model_fields[] = {
    FIELD("type", T_ENUM("TransformerModel"), .def = "\"TransformerModel\""),
    FIELD("tie_embeddings", T_BOOL, .def = "false"),
    FIELD("init_std", T_FLOAT_GT(0), .def = "0.02"),
    FIELD("scaled_residual_init", T_BOOL, .def = "true"),
    FIELD("embedder", T_OBJ(cb_embedder_schema), .required = 1),
    FIELD("topology", T_UNION(cb_node_union), .required = 1),
    FIELD("head", T_OBJ(cb_head_schema), .def = "{\"bias\": false}"),
};
const cb_schema cb_model_schema = {"model", model_fields, CB_NFIELDS(model_fields), NULL, NULL};
