/* schema_run.c: schema tables of groups and runs: a run, its train options, the teacher
 * and student references, its verify block and its generate (GenerateConfig) mapping. */
#include <string.h>
#include "core/json_doc.h"
#include "manifest/schema_table.h"
#include "manifest/suggest.h"

#define CACHE_KINDS "fp32", "fp16", "bf16", "q8_0", "q4_0", "nf4"

/* ---- model references: train.teacher, train.student ---- */

/* overrides: {NodeType: {field: value}}: each field must be one of that type's,
 * with a value that field accepts; required fields and children do not apply */
static void model_ref_check(cb_check_ctx *c, const json_t *obj, const char *path) {
    if (json_object_get(obj, "ckpt") && json_object_get(obj, "run"))
        cb_schema_errorf(c, cb_loc(obj, "run"), path, "give ckpt or run, not both");
    const json_t *ov = json_object_get(obj, "overrides");
    if (!json_is_object(ov)) return;
    char op[512], p[512];
    cb_path_key(op, sizeof op, path, "overrides");
    const char *type;
    json_t *fields;
    json_object_foreach((json_t *)ov, type, fields) {
        if (cb_is_annotation(type)) continue;
        cb_path_key(p, sizeof p, op, type);
        const cb_schema *s = cb_schema_variant(&cb_node_union, type);
        if (!s) {
            const char *names[64];
            int n = 0;
            for (int i = 0; i < cb_node_union.n_variants && n < 64; i++) names[n++] = cb_node_union.variants[i]->name;
            const char *near = cb_suggest(type, names, n);
            if (near) cb_schema_errorf(c, cb_loc(ov, type), p, "unknown node type %s (did you mean %s?)", type, near);
            else cb_schema_errorf(c, cb_loc(ov, type), p, "unknown node type %s", type);
            continue;
        }
        if (!json_is_object(fields)) {
            cb_type t = {.kind = CB_K_OBJECT, .schema = s};
            cb_schema_check_value(c, fields, &t, p, cb_loc(ov, type));
            continue;
        }
        static const char *const fixed[] = {"type", "id", "layers"};
        for (int i = 0; i < 3; i++)
            if (json_object_get(fields, fixed[i])) {
                char fp[512];
                cb_schema_errorf(c, cb_loc(fields, fixed[i]), cb_path_key(fp, sizeof fp, p, fixed[i]),
                                 "overrides change fields of every %s, not its %s", type, fixed[i]);
            }
        json_t *probe = json_copy(fields);
        if (!probe) continue;
        for (int i = 0; i < 3; i++) json_object_del(probe, fixed[i]);
        int partial = c->partial;
        c->partial = 1;
        cb_schema_check_object(c, probe, s, p);
        c->partial = partial;
        json_decref(probe);
    }
}

static const cb_field model_ref_fields[] = {
    FIELD("ckpt", T_NAME),
    FIELD("run", T_FILE_NAME),
    FIELD("overrides", {.kind = CB_K_MAP, .elem = &(const cb_type)T_ANY}),
};
const cb_schema cb_model_ref_schema = {"model_ref", model_ref_fields, CB_NFIELDS(model_ref_fields), model_ref_check,
                                       NULL};

/* ---- train ---- */

static const char *const ph_blockwise[] = {"blockwise", "upcycle", NULL};
static const char *const ph_distill[] = {"distill", NULL};
static const char *const ph_teacher_cache[] = {"blockwise", "upcycle", "distill", NULL};
static const char *const opt_betas[] = {"adamw", "lion", NULL};
static const char *const opt_adamw[] = {"adamw", NULL};
static const char *const strat_fsdp[] = {"fsdp", NULL};
static const char *const strat_ddp[] = {"ddp", NULL};
static const char *const opt_sgd[] = {"sgd", NULL};

#define BLOCKWISE .when_key = "phase", .when_in = ph_blockwise

/* batch_size: a number of rows, or auto (the runtime plan fits the largest batch to the
 * memory budget: runtime/runtime_plan.h); the table's type lets any scalar through to here */
static void batch_size_check(cb_check_ctx *c, const json_t *obj, const char *path) {
    const json_t *v = json_object_get(obj, "batch_size");
    if (!v || (json_is_integer(v) && json_integer_value(v) >= 1) ||
        (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0))
        return;
    char p[512];
    const char *where = cb_loc(obj, "batch_size");
    cb_path_key(p, sizeof p, path, "batch_size");
    if (json_is_integer(v))
        cb_schema_errorf(c, where, p, "must be >= 1 or auto, got %" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_string(v))
        cb_schema_errorf(c, where, p, "expected an integer >= 1 or auto, got the string \"%.40s\"", json_string_value(v));
    else
        cb_schema_errorf(c, where, p, "expected an integer >= 1 or auto, got %s",
                         json_is_real(v) ? "a fractional number" : json_is_boolean(v) ? "true or false" : "a list or mapping");
}

static void train_check(cb_check_ctx *c, const json_t *obj, const char *path) {
    batch_size_check(c, obj, path);
    const json_t *t = json_object_get(obj, "teacher");
    if (json_object_get(obj, "teacher_ckpt") && json_is_object(t) && json_object_get(t, "ckpt")) {
        char p[512];
        cb_schema_errorf(c, cb_loc(obj, "teacher_ckpt"), cb_path_key(p, sizeof p, path, "teacher_ckpt"),
                         "give teacher_ckpt or teacher.ckpt, not both");
    }
    /* amp: true, false or auto (on for the CUDA backend, off on the CPU: cb-train) */
    const json_t *amp = json_object_get(obj, "amp");
    if (amp && !json_is_boolean(amp) && !(json_is_string(amp) && strcmp(json_string_value(amp), "auto") == 0)) {
        char p[512];
        cb_schema_errorf(c, cb_loc(obj, "amp"), cb_path_key(p, sizeof p, path, "amp"),
                         "expected true, false or auto");
    }
}

static const cb_field train_fields[] = {
    FIELD("phase", T_ENUM("standard", "upcycle", "blockwise", "global", "distill"), .def = "\"standard\""),
    FIELD("teacher", T_OBJ(cb_model_ref_schema)),
    FIELD("student", T_OBJ(cb_model_ref_schema)),
    FIELD("teacher_ckpt", T_NAME),
    FIELD("data", T_NAME),
    FIELD("val_frac", T_FLOAT_IN_HALF(0, 1), .def = "0.05"),
    FIELD("val_split", T_NAME),
    FIELD("tokenizer", T_NAME),
    FIELD("batch_size", T_SCALAR, .def = "8"), /* or auto: batch_size_check */
    FIELD("block_size", T_INT_GE(1), .def = "512"),
    FIELD("steps", T_INT_GE(0)),
    FIELD("seed", T_INT_GE(0)),
    FIELD("lr", T_FLOAT_GT(0), .def = "0.0003"),
    FIELD("min_lr", T_FLOAT_GE(0), .def = "0.0"),
    FIELD("warmup_steps", T_INT_GE(0), .def = "0"),
    FIELD("lr_schedule", T_ENUM("cosine", "linear", "constant", "none"), .def = "\"cosine\""),
    FIELD("optimizer", T_ENUM("adamw", "lion", "sgd"), .def = "\"adamw\""),
    FIELD("betas", {.kind = CB_K_LIST, .min_len = 2, .max_len = 2, .elem = &(const cb_type)T_FLOAT_IN_HALF(0, 1)},
          .def = "[0.9, 0.95]", .when_key = "optimizer", .when_in = opt_betas),
    FIELD("eps", T_FLOAT_GT(0), .def = "1e-08", .when_key = "optimizer", .when_in = opt_adamw),
    FIELD("momentum", T_FLOAT_IN_HALF(0, 1), .def = "0.9", .when_key = "optimizer", .when_in = opt_sgd),
    FIELD("weight_decay", T_FLOAT_GE(0), .def = "0.0"),
    FIELD("decay_norms_and_biases", T_BOOL, .def = "false"),
    FIELD("decay_embeddings", T_BOOL, .def = "true"),
    FIELD("grad_clip", T_FLOAT_GE(0), .def = "1.0"),
    FIELD("grad_accum", T_INT_GE(1), .def = "1"),
    FIELD("strategy", T_ENUM("ddp", "fsdp"), .def = "\"ddp\""),
    FIELD("bucket_cap_mb", T_FLOAT_GE(0), .def = "25.0", .when_key = "strategy", .when_in = strat_ddp),
    FIELD("fsdp_sharding_strategy", T_ENUM("SHARD_GRAD_OP", "NO_SHARD", "FULL_SHARD"), .def = "\"SHARD_GRAD_OP\"",
          .when_key = "strategy", .when_in = strat_fsdp),
    FIELD("fsdp_activation_checkpointing", T_BOOL, .def = "false", .when_key = "strategy", .when_in = strat_fsdp),
    FIELD("fsdp_mixed_precision", T_BOOL, .def = "false", .when_key = "strategy", .when_in = strat_fsdp),
    FIELD("log_every", T_INT_GE(1), .def = "10"),
    FIELD("eval_every", T_INT_GE(0), .def = "100"),
    FIELD("eval_iters", T_INT_GE(1), .def = "20"),
    FIELD("save_every", T_INT_GE(0), .def = "0"),
    FIELD("keep_last", T_INT_GE(0), .def = "2"),
    FIELD("resume", T_NAME),
    FIELD("device", T_ENUM("cpu", "cuda", "mps", "auto"), .def = "\"auto\""),
    FIELD("dtype", T_ENUM("float32", "bfloat16", "float16", "auto"), .def = "\"float32\""),
    FIELD("amp", T_SCALAR, .def = "false"), /* true, false or "auto": train_check */
    FIELD("compile", T_BOOL, .def = "false"),
    FIELD("activation_checkpointing", T_BOOL, .def = "false"),
    FIELD("activation_checkpoint_threshold_mb", T_FLOAT_GE(0), .def = "0.0"),
    FIELD("num_workers", T_INT_GE(0), .def = "0"),
    FIELD("prefetch", T_INT_GE(0), .def = "2"),
    FIELD("instrument",
          {.kind = CB_K_LIST,
           .flags = CB_F_ONE_OR_LIST,
           .elem = &(const cb_type)T_ENUM("jsonl", "hdf5", "tensorboard", "live", "rich")},
          .def = "\"jsonl\""),
    FIELD("wandb", T_BOOL, .def = "false"),
    FIELD("wandb_project", T_NAME),
    FIELD("wandb_entity", T_NAME),
    FIELD("blockwise_steps", T_INT_GE(1), .def = "100", BLOCKWISE),
    FIELD("blockwise_loss", T_ENUM("l1", "mse"), .def = "\"l1\"", BLOCKWISE),
    FIELD("convergence_target", T_FLOAT_GT(0), BLOCKWISE),
    FIELD("convergence_patience", T_INT_GE(1), .def = "50", BLOCKWISE),
    FIELD("max_steps_per_block", T_INT_GE(1), BLOCKWISE),
    FIELD("distill_temperature", T_FLOAT_GT(0), .def = "1.0", .when_key = "phase", .when_in = ph_distill),
    FIELD("distill_alpha", T_FLOAT_IN(0, 1), .def = "0.5", .when_key = "phase", .when_in = ph_distill),
    FIELD("cache_teacher_outputs", T_BOOL, .def = "false", .when_key = "phase", .when_in = ph_teacher_cache),
};
const cb_schema cb_train_schema = {"train", train_fields, CB_NFIELDS(train_fields), train_check, NULL};

/* ---- generate (GenerateConfig, SpeculativeConfig) ---- */

static const char *const decode_fixed[] = {"fixed", NULL};
static const char *const decode_auto[] = {"auto", NULL};
#define SPEC .needs = "draft"

static const cb_field generate_fields[] = {
    FIELD("max_new_tokens", T_INT_GE(1), .def = "128"),
    FIELD("temperature", T_FLOAT_GE(0), .def = "1.0"),
    FIELD("top_k", T_INT_GE(0), .def = "0"),
    FIELD("top_p", {.kind = CB_K_FLOAT, .range = CB_R_MIN_EXCL | CB_R_MAX, .min = 0, .max = 1}, .def = "1.0"),
    FIELD("eos_token_id", T_INT_GE(0)),
    FIELD("max_seq_len", T_INT_GE(1)),
    FIELD("seed", T_INT_GE(0)),
    FIELD("cache_kind", T_ENUM(CACHE_KINDS, "auto"), .def = "\"fp32\""),
    FIELD("cache_kind_k", T_ENUM(CACHE_KINDS)),
    FIELD("cache_kind_v", T_ENUM(CACHE_KINDS)),
    FIELD("cache_budget_mb", T_FLOAT_GT(0)),
    FIELD("cache_quality_max_delta_nll", T_FLOAT_GE(0)),
    FIELD("cache_quality_max_ppl_ratio", T_FLOAT_GE(1)),
    FIELD("cache_quality_max_mean_kl", T_FLOAT_GE(0)),
    FIELD("cache_auto_benchmark", T_BOOL, .def = "false"),
    FIELD("cache_auto_bench_steps", T_INT_GE(1), .def = "8"),
    FIELD("cache_plan_path", T_NAME),
    FIELD("cache_plan_probe", T_BOOL, .def = "false"),
    FIELD("cache_plan_probe_interval_sec", T_FLOAT_GT(0), .def = "3600.0"),
    FIELD("decode_plan", T_ENUM("auto", "fixed", "none"), .def = "\"none\""),
    FIELD("decode_q_chunk", T_INT_GE(1), .when_key = "decode_plan", .when_in = decode_fixed),
    FIELD("decode_local_window", T_INT_GE(1), .when_key = "decode_plan", .when_in = decode_fixed),
    FIELD("decode_bucket_short", T_INT_GE(1), .def = "4096", .when_key = "decode_plan", .when_in = decode_auto),
    FIELD("decode_bucket_long", T_INT_GE(1), .def = "16384", .when_key = "decode_plan", .when_in = decode_auto),
    FIELD("decode_q_chunk_mid", T_INT_GE(1), .def = "256", .when_key = "decode_plan", .when_in = decode_auto),
    FIELD("decode_q_chunk_long", T_INT_GE(1), .def = "128", .when_key = "decode_plan", .when_in = decode_auto),
    FIELD("decode_local_window_long", T_INT_GE(0), .def = "0", .when_key = "decode_plan", .when_in = decode_auto),
    FIELD("draft", T_OBJ(cb_model_ref_schema)),
    FIELD("spec_k", T_INT_GE(1), .def = "4", SPEC),
    FIELD("spec_k_adaptive", T_BOOL, .def = "false", SPEC),
    FIELD("spec_method", T_ENUM("reject_sampling", "greedy"), .def = "\"reject_sampling\"", SPEC),
    FIELD("spec_extra_token", T_BOOL, .def = "true", SPEC),
    FIELD("spec_disable_below_accept", T_FLOAT_IN(0, 1), .def = "0.0", SPEC),
};

static void generate_check(cb_check_ctx *c, const json_t *obj, const char *path) {
    const json_t *s = json_object_get(obj, "decode_bucket_short"), *l = json_object_get(obj, "decode_bucket_long");
    if (json_is_integer(s) && json_is_integer(l) && json_integer_value(s) >= json_integer_value(l)) {
        char p[512];
        cb_schema_errorf(c, cb_loc(obj, "decode_bucket_long"), cb_path_key(p, sizeof p, path, "decode_bucket_long"),
                         "must be greater than decode_bucket_short (%" JSON_INTEGER_FORMAT ")",
                         json_integer_value(s));
    }
}
const cb_schema cb_generate_schema = {"generate", generate_fields, CB_NFIELDS(generate_fields), generate_check,
                                      NULL};

/* ---- verify ---- */

static const char *const tok_tiktoken[] = {"tiktoken", NULL};
static const char *const tok_files[] = {"hf", "gpt2", NULL};
static const char *const kind_choice[] = {"choice_logprob", NULL};

static void tokenizer_check(cb_check_ctx *c, const json_t *obj, const char *path) {
    const json_t *t = json_object_get(obj, "type");
    if (json_is_string(t) && strcmp(json_string_value(t), "hf") == 0 && !json_object_get(obj, "path"))
        cb_schema_errorf(c, cb_loc(obj, NULL), path, "missing required field path (type hf)");
}

static const cb_field tokenizer_fields[] = {
    FIELD("type", T_ENUM("tiktoken", "hf", "gpt2", "byte"), .required = 1),
    FIELD("encoding", T_ENUM("cl100k_base", "o200k_base", "r50k_base"), .required = 1, .when_key = "type",
          .when_in = tok_tiktoken),
    FIELD("path", T_NAME, .when_key = "type", .when_in = tok_files),
};
const cb_schema cb_tokenizer_schema = {"tokenizer", tokenizer_fields, CB_NFIELDS(tokenizer_fields), tokenizer_check,
                                       NULL};

/* int_greedy compares an integer; choice_logprob picks one of its choices */
static void eval_case_check(cb_check_ctx *c, const json_t *obj, const char *path) {
    const json_t *kind = json_object_get(obj, "kind"), *ans = json_object_get(obj, "answer");
    if (!json_is_string(kind) || !ans) return;
    char p[512];
    cb_path_key(p, sizeof p, path, "answer");
    if (strcmp(json_string_value(kind), "int_greedy") == 0) {
        if (!json_is_integer(ans))
            cb_schema_errorf(c, cb_loc(obj, "answer"), p, "kind int_greedy needs an integer answer");
        return;
    }
    const json_t *choices = json_object_get(obj, "choices");
    if (strcmp(json_string_value(kind), "choice_logprob") != 0 || !json_is_array(choices)) return;
    if (!json_is_string(ans)) {
        cb_schema_errorf(c, cb_loc(obj, "answer"), p, "kind choice_logprob needs one of its choices as answer");
        return;
    }
    size_t i;
    json_t *ch;
    json_array_foreach(choices, i, ch) if (json_is_string(ch) && strcmp(json_string_value(ch), json_string_value(ans)) == 0) return;
    cb_schema_errorf(c, cb_loc(obj, "answer"), p, "answer \"%s\" is not one of the choices", json_string_value(ans));
}

static const cb_field eval_case_fields[] = {
    FIELD("id", T_FILE_NAME, .required = 1),
    FIELD("prompt", T_STRING, .required = 1),
    FIELD("kind", T_ENUM("int_greedy", "choice_logprob"), .required = 1),
    FIELD("answer", T_SCALAR, .required = 1),
    FIELD("choices", {.kind = CB_K_LIST, .min_len = 2, .elem = &(const cb_type)T_STRING}, .required = 1,
          .when_key = "kind", .when_in = kind_choice),
};
const cb_schema cb_eval_case_schema = {"case", eval_case_fields, CB_NFIELDS(eval_case_fields), eval_case_check, NULL};

static const cb_field l1_fields[] = {
    FIELD("max_mean_l1", T_FLOAT_GE(0), .def = "0.05"),
    FIELD("max_max_l1", T_FLOAT_GE(0), .def = "0.25"),
};
static const cb_schema l1_schema = {"l1 thresholds", l1_fields, CB_NFIELDS(l1_fields), NULL, NULL};

static const cb_field compare_fields[] = {
    FIELD("batches", T_INT_GE(1), .def = "2"),
    FIELD("attention", T_OBJ(l1_schema)),
    FIELD("logits", T_OBJ(l1_schema)),
    FIELD("fail_fast", T_BOOL, .def = "false"),
};
static const cb_schema compare_schema = {"compare", compare_fields, CB_NFIELDS(compare_fields), NULL, NULL};

static const cb_field fidelity_fields[] = {
    FIELD("batches", T_INT_GE(1), .def = "5"),
    FIELD("split", T_ENUM("auto", "train", "val"), .def = "\"auto\""),
    FIELD("max_delta_nll", T_FLOAT, .def = "0.05"),
    FIELD("max_ppl_ratio", T_FLOAT_GT(0), .def = "1.05"),
    FIELD("fail_fast", T_BOOL, .def = "false"),
};
static const cb_schema fidelity_schema = {"fidelity", fidelity_fields, CB_NFIELDS(fidelity_fields), NULL, NULL};

static const cb_field thresholds_fields[] = {
    FIELD("min_student_accuracy", T_FLOAT_IN(0, 1)),
    FIELD("max_accuracy_drop", T_FLOAT_IN(0, 1)),
};
static const cb_schema thresholds_schema = {"thresholds", thresholds_fields, CB_NFIELDS(thresholds_fields), NULL,
                                            NULL};

static const cb_field eval_fields[] = {
    FIELD("tokenizer", T_OBJ(cb_tokenizer_schema), .required = 1),
    FIELD("max_new_tokens", T_INT_GE(1), .def = "32"),
    FIELD("context_window", T_INT_GE(1), .def = "2048"),
    FIELD("cases", {.kind = CB_K_LIST, .flags = CB_F_NONEMPTY, .elem = &(const cb_type)T_OBJ(cb_eval_case_schema),
                    .unique_key = "id"},
          .required = 1),
    FIELD("thresholds", T_OBJ(thresholds_schema)),
    FIELD("fail_fast", T_BOOL, .def = "false"),
};
static const cb_schema eval_schema = {"eval", eval_fields, CB_NFIELDS(eval_fields), NULL, NULL};

static const cb_schema *const verify_variants[] = {&compare_schema, &fidelity_schema, &eval_schema};
const cb_union cb_verify_union = {"verify type", "type", verify_variants, CB_NFIELDS(verify_variants)};

/* ---- runs ---- */

static const char *const mode_sample_chat[] = {"sample", "chat", NULL};
static const char *const mode_sample[] = {"sample", NULL};

static int phase_needs_teacher(const char *phase) {
    return strcmp(phase, "upcycle") == 0 || strcmp(phase, "blockwise") == 0 || strcmp(phase, "distill") == 0;
}

static void run_check(cb_check_ctx *c, const json_t *run, const char *path) {
    char p[512];
    const json_t *mode = json_object_get(run, "mode");
    const char *m = json_is_string(mode) ? json_string_value(mode) : "train";
    if (strcmp(m, "sample") == 0 || strcmp(m, "chat") == 0) {
        int n = (json_object_get(run, "ckpt") != NULL) + (json_object_get(run, "from_run") != NULL);
        if (n != 1)
            cb_schema_errorf(c, cb_loc(run, n ? "from_run" : NULL), path,
                             n ? "give ckpt or from_run, not both" : "mode %s needs ckpt or from_run", m);
    }
    const json_t *train = json_object_get(run, "train");
    int has_teacher = json_is_object(train) &&
                      (json_object_get(train, "teacher") || json_object_get(train, "teacher_ckpt"));
    const json_t *phase = json_is_object(train) ? json_object_get(train, "phase") : NULL;
    if (json_is_string(phase) && phase_needs_teacher(json_string_value(phase)) && !has_teacher)
        cb_schema_errorf(c, cb_loc(train, "phase"), cb_path_key(p, sizeof p, path, "train"),
                         "phase %s needs a teacher (train.teacher or train.teacher_ckpt)", json_string_value(phase));
    const json_t *verify = json_object_get(run, "verify");
    const json_t *vt = json_is_object(verify) ? json_object_get(verify, "type") : NULL;
    if (!has_teacher && json_is_string(vt)) {
        const char *t = json_string_value(vt);
        const json_t *th = json_object_get(verify, "thresholds");
        int needs = strcmp(t, "compare") == 0 || strcmp(t, "fidelity") == 0 ||
                    (strcmp(t, "eval") == 0 && json_is_object(th) && json_object_get(th, "max_accuracy_drop"));
        if (needs)
            cb_schema_errorf(c, cb_loc(run, "verify"), cb_path_key(p, sizeof p, path, "verify"),
                             "verify %s compares the student with a teacher, and the run has none "
                             "(train.teacher or train.teacher_ckpt)", t);
    }
}

static const cb_field run_fields[] = {
    FIELD("id", T_FILE_NAME, .required = 1),
    FIELD("description", T_STRING),
    FIELD("mode", T_ENUM("train", "sample", "chat"), .def = "\"train\""),
    FIELD("exp", T_ENUM("baseline", "gqa", "bottleneck", "decoupled")),
    FIELD("seed", T_INT_GE(0), .def = "1337"),
    FIELD("steps", T_INT_GE(0)),
    FIELD("expected", {.kind = CB_K_MAP, .elem = &(const cb_type)T_FLOAT}),
    FIELD("train", T_OBJ(cb_train_schema)),
    FIELD("verify", T_UNION(cb_verify_union)),
    FIELD("generate", T_OBJ(cb_generate_schema)),
    FIELD("ckpt", T_NAME, .when_key = "mode", .when_in = mode_sample_chat),
    FIELD("from_run", T_FILE_NAME, .when_key = "mode", .when_in = mode_sample_chat),
    FIELD("prompt", T_STRING, .when_key = "mode", .when_in = mode_sample),
};
const cb_schema cb_run_schema = {"run", run_fields, CB_NFIELDS(run_fields), run_check, NULL};

/* ---- groups ---- */

/* a run reference names an earlier run of the same group; ids maps id -> index */
static void check_run_ref(cb_check_ctx *c, const json_t *ids, size_t before, const json_t *holder, const char *key,
                          const char *path) {
    const json_t *ref = json_object_get(holder, key);
    if (!json_is_string(ref)) return;
    const json_t *at = json_object_get(ids, json_string_value(ref));
    if (at && (size_t)json_integer_value(at) < before) return;
    char p[512];
    const char *why = !at                                     ? "no earlier run \"%s\" in this group"
                      : (size_t)json_integer_value(at) == before ? "run \"%s\" cannot refer to itself"
                                                              : "run \"%s\" comes later in this group; a reference "
                                                                "names an earlier run";
    cb_schema_errorf(c, cb_loc(holder, key), cb_path_key(p, sizeof p, path, key), why, json_string_value(ref));
}

/* id -> index of every run; NULL when some run lacks an id or shares one, as then the
 * missing or duplicate id has its error already and guessing would add false ones */
static json_t *run_ids(const json_t *runs) {
    json_t *ids = json_object();
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r) {
        const json_t *id = json_is_object(r) ? json_object_get(r, "id") : NULL;
        if (!json_is_string(id) || json_object_get(ids, json_string_value(id))) {
            json_decref(ids);
            return NULL;
        }
        json_object_set_new(ids, json_string_value(id), json_integer((json_int_t)i));
    }
    return ids;
}

void cb_schema_check_refs(cb_check_ctx *c, const json_t *runs, const json_t *benchmarks, const char *runs_path,
                          const char *bench_path) {
    char p[512], q[512];
    size_t i;
    json_t *run;
    json_t *ids = runs ? run_ids(runs) : json_object();
    if (!ids) return;
    json_array_foreach(runs, i, run) {
        if (!json_is_object(run)) continue;
        cb_path_index(p, sizeof p, runs_path, i);
        check_run_ref(c, ids, i, run, "from_run", p);
        const json_t *train = json_object_get(run, "train");
        if (json_is_object(train)) {
            static const char *const roles[] = {"teacher", "student"};
            for (int r = 0; r < 2; r++) {
                const json_t *ref = json_object_get(train, roles[r]);
                if (!json_is_object(ref)) continue;
                cb_path_key(q, sizeof q, p, "train");
                char rp[512];
                check_run_ref(c, ids, i, ref, "run", cb_path_key(rp, sizeof rp, q, roles[r]));
            }
        }
        const json_t *gen = json_object_get(run, "generate");
        const json_t *draft = json_is_object(gen) ? json_object_get(gen, "draft") : NULL;
        if (json_is_object(draft)) {
            cb_path_key(q, sizeof q, p, "generate.draft");
            check_run_ref(c, ids, i, draft, "run", q);
        }
    }
    json_t *b;
    json_array_foreach(benchmarks, i, b) {
        const json_t *models = json_is_object(b) ? json_object_get(b, "models") : NULL;
        if (!json_is_array(models)) continue;
        size_t k;
        json_t *m;
        json_array_foreach(models, k, m) {
            if (!json_is_string(m)) continue;
            const char *name = json_string_value(m);
            if (strcmp(name, "teacher") == 0 || strcmp(name, "student") == 0 || json_object_get(ids, name)) continue;
            cb_path_index(p, sizeof p, bench_path, i);
            cb_path_key(q, sizeof q, p, "models");
            cb_path_index(p, sizeof p, q, k);
            cb_schema_errorf(c, cb_loc(b, "models"), p,
                             "unknown model \"%s\" (expected teacher, student or a run id of this group)", name);
        }
    }
    json_decref(ids);
}

static void group_check(cb_check_ctx *c, const json_t *g, const char *path) {
    const json_t *runs = json_object_get(g, "runs"), *benchmarks = json_object_get(g, "benchmarks");
    char rp[512], bp[512];
    if (runs && !json_is_array(runs)) return; /* its own error; references cannot be resolved */
    cb_schema_check_refs(c, json_is_array(runs) ? runs : NULL, json_is_array(benchmarks) ? benchmarks : NULL,
                         cb_path_key(rp, sizeof rp, path, "runs"), cb_path_key(bp, sizeof bp, path, "benchmarks"));
}

static const cb_field group_fields[] = {
    FIELD("name", T_FILE_NAME, .required = 1),
    FIELD("description", T_STRING),
    FIELD("data", T_NAME),
    FIELD("runs", T_LIST_UNIQUE(T_OBJ(cb_run_schema), "id"), .def = "[]"),
    FIELD("benchmarks", T_LIST_UNIQUE(T_OBJ(cb_benchmark_schema), "id"), .def = "[]"),
};
const cb_schema cb_group_schema = {"group", group_fields, CB_NFIELDS(group_fields), group_check, NULL};
