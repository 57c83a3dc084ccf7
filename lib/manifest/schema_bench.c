/* schema_bench.c: schema tables of a group's benchmarks: id, models and a config whose
 * type (perplexity, latency, memory, accuracy, generation, custom) picks its fields. */
#include "manifest/schema_table.h"

#define CACHE_KIND FIELD("cache_kind", T_ENUM("fp32", "fp16", "bf16", "q8_0", "q4_0", "nf4"), .def = "\"fp32\"")
#define LENGTHS(name, def_json) FIELD(name, T_LIST_NE(T_INT_GE(1)), .def = def_json)

static const cb_field perplexity_fields[] = {
    FIELD("dataset", T_NAME),
    FIELD("block_size", T_INT_GE(1), .def = "1024"),
    FIELD("num_batches", T_INT_GE(1), .def = "100"),
    FIELD("batch_size", T_INT_GE(1), .def = "1"),
    /* no default: without it the full-sequence forward, as before */
    FIELD("cache_kind", T_ENUM("fp32", "fp16", "bf16", "q8_0", "q4_0", "nf4")),
};
static const cb_schema perplexity_schema = {"perplexity", perplexity_fields, CB_NFIELDS(perplexity_fields), NULL,
                                            NULL};

static const cb_field latency_fields[] = {
    LENGTHS("prompt_lengths", "[128, 512, 1024, 2048]"),
    LENGTHS("generation_lengths", "[64, 128, 256]"),
    LENGTHS("batch_sizes", "[1]"),
    FIELD("warmup_runs", T_INT_GE(0), .def = "3"),
    FIELD("timed_runs", T_INT_GE(1), .def = "10"),
    CACHE_KIND,
    FIELD("weights", T_ENUM("fp32", "fp16", "bf16", "q8_0", "q4_0", "nf4"), .def = "\"fp32\""),
};
static const cb_schema latency_schema = {"latency", latency_fields, CB_NFIELDS(latency_fields), NULL, NULL};

static const cb_field memory_fields[] = {
    LENGTHS("sequence_lengths", "[512, 1024, 2048, 4096]"),
    LENGTHS("batch_sizes", "[1]"),
    FIELD("quantization_modes",
          T_LIST_NE(T_ENUM("fp32", "fp16", "bf16", "q8", "q8_0", "q4", "q4_0", "nf4")),
          .def = "[\"fp16\", \"q8_0\", \"q4_0\"]"),
};
static const cb_schema memory_schema = {"memory", memory_fields, CB_NFIELDS(memory_fields), NULL, NULL};

static const cb_field accuracy_fields[] = {
    FIELD("tokenizer", T_OBJ(cb_tokenizer_schema), .required = 1),
    FIELD("cases", {.kind = CB_K_LIST, .flags = CB_F_NONEMPTY, .elem = &(const cb_type)T_OBJ(cb_eval_case_schema),
                    .unique_key = "id"},
          .required = 1),
    FIELD("max_new_tokens", T_INT_GE(1), .def = "32"),
    FIELD("context_window", T_INT_GE(1), .def = "2048"),
};
static const cb_schema accuracy_schema = {"accuracy", accuracy_fields, CB_NFIELDS(accuracy_fields), NULL, NULL};

static const cb_field generation_fields[] = {
    FIELD("tokenizer", T_OBJ(cb_tokenizer_schema), .required = 1),
    FIELD("prompts", T_LIST_NE(T_STRING), .required = 1),
    FIELD("max_new_tokens", T_INT_GE(1), .def = "64"),
    FIELD("temperature", T_FLOAT_GE(0), .def = "1.0"),
    FIELD("top_k", T_INT_GE(0), .def = "0"),
    FIELD("top_p", {.kind = CB_K_FLOAT, .range = CB_R_MIN_EXCL | CB_R_MAX, .min = 0, .max = 1}, .def = "1.0"),
    FIELD("seed", T_INT_GE(0), .def = "1337"),
    CACHE_KIND,
};
static const cb_schema generation_schema = {"generation", generation_fields, CB_NFIELDS(generation_fields), NULL,
                                            NULL};

/* a suite file in the shape of the seed's config/benchmarks files (cb-bench(1), CUSTOM SUITES) */
static const cb_field custom_fields[] = {
    FIELD("suite", T_NAME, .required = 1),
};
static const cb_schema custom_schema = {"custom", custom_fields, CB_NFIELDS(custom_fields), NULL, NULL};

static const cb_schema *const config_variants[] = {&perplexity_schema, &latency_schema, &memory_schema,
                                                   &accuracy_schema, &generation_schema, &custom_schema};
const cb_union cb_benchmark_config_union = {"benchmark type", "type", config_variants, CB_NFIELDS(config_variants)};

static const cb_field benchmark_fields[] = {
    FIELD("id", T_FILE_NAME, .required = 1),
    FIELD("description", T_STRING),
    FIELD("config", T_UNION(cb_benchmark_config_union), .required = 1),
    FIELD("models", T_LIST_NE(T_NAME), .required = 1),
    FIELD("device", T_ENUM("cpu", "cuda", "auto")), /* cb-bench --device; absent: its default, the CPU */
};
const cb_schema cb_benchmark_schema = {"benchmark", benchmark_fields, CB_NFIELDS(benchmark_fields), NULL, NULL};
