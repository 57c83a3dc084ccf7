/* test_schema.c: the manifest schema check on hand-built lowered documents (a valid
 * base, then one hostile change at a time), the defaults it fills, and did-you-mean. */
#include "test.h"

#include <stdlib.h>
#include <time.h>
#include "core/json_doc.h"
#include "manifest/schema.h"
#include "manifest/suggest.h"

/* JSON with ' for " so the fixtures stay readable */
static json_t *J(const char *text) {
    char *s = strdup(text);
    for (char *p = s; *p; p++)
        if (*p == '\'') *p = '"';
    json_error_t err;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &err);
    if (!v) FAILF("fixture does not parse: %s at %d:%d", err.text, err.line, err.column);
    free(s);
    return v;
}

static const char *base_manifest =
    "{'version': 1, 'name': 'unit', 'notes': 'a small valid manifest',"
    " 'vars': {'d_model': 64, 'n_heads': 4},"
    " 'defaults': {'tokenizer': 'byte', 'eval_iters': 5, 'seed': 7},"
    " 'model': {'type': 'TransformerModel', 'tie_embeddings': true,"
    "   'embedder': {'type': 'token', 'vocab_size': 256, 'd_model': 64},"
    "   'topology': {'type': 'StackedTopology', 'id': '', 'layers': ["
    "     {'type': 'NestedTopology', 'id': 'blocks', 'repeat': 2, 'layers': ["
    "       {'type': 'ResidualTopology', 'id': 'blocks.*.res', 'layers': ["
    "         {'type': 'RMSNormLayer', 'id': 'blocks.*.res.norm', 'd_model': 64, 'eps': 1e-5},"
    "         {'type': 'AttentionLayer', 'id': 'blocks.*.res.attn', 'd_model': 64, 'n_heads': 4,"
    "          'n_kv_heads': 2, 'rope_theta': 500000,"
    "          'rope_scaling': {'type': 'llama3', 'factor': 32, 'low_freq_factor': 1,"
    "                           'high_freq_factor': 4, 'original_max_position_embeddings': 8192}}]},"
    "       {'type': 'ResidualTopology', 'id': 'blocks.*.res_1', 'layers': ["
    "         {'type': 'RMSNormLayer', 'id': 'blocks.*.res_1.norm', 'd_model': 64},"
    "         {'type': 'SwiGLULayer', 'id': 'blocks.*.res_1.mlp', 'd_model': 64, 'd_ff': 128}]}]},"
    "     {'type': 'RMSNormLayer', 'id': 'norm', 'd_model': 64}]}},"
    " 'groups': [{'name': 'g', 'description': 'teacher then DBA student', 'data': 'train.npy', 'runs': ["
    "   {'id': 'teach', 'mode': 'train', 'seed': 7, 'steps': 10,"
    "    'train': {'phase': 'standard', 'lr': 0.001, 'tokenizer': 'byte', 'eval_iters': 5,"
    "              'instrument': ['jsonl', 'hdf5'], 'data': 'train.npy'}},"
    "   {'id': 'bw', 'seed': 7, 'steps': 10,"
    "    'train': {'phase': 'blockwise', 'teacher': {'run': 'teach'}, 'blockwise_steps': 5,"
    "              'student': {'overrides': {'AttentionLayer': {'mode': 'decoupled', 'sem_dim': 16,"
    "                                                           'geo_dim': 32, 'decoupled_gate': true}}},"
    "              'tokenizer': 'byte', 'eval_iters': 5, 'data': 'train.npy'},"
    "    'verify': {'type': 'compare', 'batches': 2, 'attention': {'max_mean_l1': 0.05, 'max_max_l1': 0.25},"
    "               'logits': {'max_mean_l1': 0.05}, 'fail_fast': false}},"
    "   {'id': 'ft', 'seed': 7, 'steps': 10,"
    "    'train': {'phase': 'global', 'optimizer': 'lion', 'lr': 1e-4, 'teacher_ckpt': 'teacher_dir',"
    "              'student': {'run': 'bw'}, 'tokenizer': 'byte', 'eval_iters': 5, 'data': 'train.npy'},"
    "    'verify': {'type': 'fidelity', 'batches': 5, 'split': 'val', 'max_delta_nll': 0.05,"
    "               'max_ppl_ratio': 1.05}},"
    "   {'id': 'sample', 'mode': 'sample', 'seed': 7, 'from_run': 'ft', 'prompt': 'Once',"
    "    'generate': {'max_new_tokens': 16, 'temperature': 0.8, 'top_k': 50, 'top_p': 0.9,"
    "                 'cache_kind': 'q8_0', 'decode_plan': 'auto', 'decode_bucket_short': 512,"
    "                 'draft': {'run': 'teach'}, 'spec_k': 4, 'spec_method': 'greedy'}}],"
    "  'benchmarks': ["
    "   {'id': 'ppl', 'config': {'type': 'perplexity', 'dataset': 'val.npy', 'block_size': 128,"
    "                            'num_batches': 2}, 'models': ['teacher', 'student', 'ft']},"
    "   {'id': 'lat', 'config': {'type': 'latency', 'prompt_lengths': [16, 32], 'generation_lengths': [8],"
    "                            'warmup_runs': 1, 'timed_runs': 2}, 'models': ['teacher', 'student']},"
    "   {'id': 'mem', 'config': {'type': 'memory', 'sequence_lengths': [64, 128],"
    "                            'quantization_modes': ['fp16', 'q8', 'q4', 'nf4']}, 'models': ['student']}]}],"
    " 'paper': {'enabled': true, 'title': 'T', 'authors': ['A'], 'paper_type': 'arxiv',"
    "           'sections': ['abstract', 'results'], 'citations': {'max_citations': 5, 'sources': ['arxiv']},"
    "           'keywords': ['kv cache'], 'temperature': 0.7, 'custom_instructions': 'be brief'},"
    " 'review': {'strictness': 'top_venue', 'check_writing': false, 'min_score_to_approve': 7.0,"
    "            'reviewer_persona': 'practitioner', 'temperature': 0.3},"
    " 'research': {'max_iterations': 3, 'min_score_to_approve': 7.5, 'auto_approve_score': 9.0}}";

static json_t *base_doc(void) {
    json_t *doc = cb_doc_new("lowered");
    json_object_set_new(doc, "source", json_string("t.yml"));
    json_object_set_new(doc, "manifest", J(base_manifest));
    return doc;
}

/* The container and final key of a path like "groups[0].runs[1].train.lr";
 * *index is set (and *key NULL) when the path ends in [i]. */
static json_t *walk(json_t *root, const char *path, char *key, size_t key_n, long *index) {
    json_t *cur = root;
    const char *p = path;
    *index = -1;
    key[0] = '\0';
    for (;;) {
        if (*p == '[') {
            long i = strtol(p + 1, (char **)&p, 10);
            p++; /* ']' */
            if (!*p) { *index = i; return cur; }
            cur = json_array_get(cur, (size_t)i);
        } else {
            size_t n = strcspn(p, ".[");
            snprintf(key, key_n, "%.*s", (int)n, p);
            p += n;
            if (!*p) return cur;
            cur = json_object_get(cur, key);
        }
        if (*p == '.') p++;
        if (!cur) return NULL;
    }
}

/* set (value) or delete (NULL) the member at path under the manifest */
static void put(json_t *doc, const char *path, json_t *value) {
    char key[128];
    long index;
    json_t *parent = walk(json_object_get(doc, "manifest"), path, key, sizeof key, &index);
    if (!parent) { FAILF("fixture path %s not found", path); json_decref(value); return; }
    if (index >= 0) {
        if (value && (size_t)index == json_array_size(parent)) json_array_append_new(parent, value);
        else if (value) json_array_set_new(parent, (size_t)index, value);
        else json_array_remove(parent, (size_t)index);
    } else if (value) {
        json_object_set_new(parent, key, value);
    } else {
        json_object_del(parent, key);
    }
}

static void dump(const cb_diags *d) {
    for (int i = 0; i < d->n; i++) fprintf(stderr, "    %s: %s\n", d->items[i].where, d->items[i].msg);
}

/* Check doc and expect exactly one error whose message starts with want_msg (a full
 * "PATH: message" prefix); want_where may be NULL. Frees doc. */
static void expect_one(json_t *doc, const char *want_msg, const char *want_where) {
    cb_diags d;
    cb_diags_init(&d);
    int n = cb_schema_check(doc, &d);
    if (n != 1 || d.n != 1) {
        FAILF("expected 1 error \"%s\", got %d", want_msg, n);
        dump(&d);
    } else {
        if (strncmp(d.items[0].msg, want_msg, strlen(want_msg)) != 0)
            FAILF("expected \"%.400s\", got \"%.400s\"", want_msg, d.items[0].msg);
        if (want_where) EXPECT_EQ_STR(want_where, d.items[0].where);
        EXPECT_EQ_INT(CB_E_INVALID, d.items[0].code);
    }
    cb_diags_free(&d);
    json_decref(doc);
}

#define ATTN "model.topology.layers[0].layers[0].layers[1]"
#define RUN1 "groups[0].runs[1]"

TEST(schema_valid_base_has_no_errors) {
    json_t *doc = base_doc();
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(0, cb_schema_check(doc, &d));
    if (d.n) dump(&d);
    cb_diags_free(&d);
    json_decref(doc);
}

TEST(schema_unknown_field_suggests_and_locates) {
    json_t *doc = base_doc();
    put(doc, ATTN ".n_head", json_integer(4));
    json_t *attn = json_array_get(json_object_get(json_array_get(json_object_get(json_array_get(json_object_get(
        json_object_get(json_object_get(json_object_get(doc, "manifest"), "model"), "topology"), "layers"), 0),
        "layers"), 0), "layers"), 1);
    cb_loc_set(attn, NULL, "t.yml:10:9");
    cb_loc_set(attn, "n_head", "t.yml:12:18");
    expect_one(doc, ATTN ".n_head: unknown field n_head (did you mean n_heads?)", "t.yml:12:18");
}

TEST(schema_unknown_field_far_from_any_name) {
    json_t *doc = base_doc();
    put(doc, "model.embedder.zzzzzz", json_true());
    expect_one(doc, "model.embedder.zzzzzz: unknown field zzzzzz", NULL);
}

TEST(schema_wrong_types) {
    json_t *doc = base_doc();
    put(doc, ATTN ".n_heads", json_string("abc"));
    expect_one(doc, ATTN ".n_heads: expected an integer, got the string \"abc\"", NULL);
    doc = base_doc();
    put(doc, ATTN ".n_heads", json_real(4.5));
    expect_one(doc, ATTN ".n_heads: expected an integer, got the number 4.5", NULL);
    doc = base_doc();
    put(doc, "model.tie_embeddings", json_string("yes"));
    expect_one(doc, "model.tie_embeddings: expected true or false, got the string \"yes\"", NULL);
    doc = base_doc();
    put(doc, "name", json_integer(5));
    expect_one(doc, "name: expected a string, got the integer 5", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs", json_object());
    expect_one(doc, "groups[0].runs: expected a list, got a mapping", NULL);
    doc = base_doc();
    put(doc, "model.embedder", json_array());
    expect_one(doc, "model.embedder: expected a mapping, got a list", NULL);
    doc = base_doc();
    put(doc, ATTN ".d_model", json_null());
    expect_one(doc, ATTN ".d_model: expected an integer, got null", NULL);
}

TEST(schema_numbers_accept_integers) {
    json_t *doc = base_doc();
    put(doc, RUN1 ".train.lr", json_integer(1));
    put(doc, "review.min_score_to_approve", json_integer(8));
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(0, cb_schema_check(doc, &d));
    if (d.n) dump(&d);
    cb_diags_free(&d);
    json_decref(doc);
}

TEST(schema_missing_required) {
    json_t *doc = base_doc();
    put(doc, "model.topology.layers[1].d_model", NULL);
    expect_one(doc, "model.topology.layers[1]: missing required field d_model (type RMSNormLayer)", NULL);
    doc = base_doc();
    put(doc, "version", NULL);
    expect_one(doc, "missing required field version", NULL);
    doc = base_doc();
    put(doc, "model.topology.layers[0].repeat", NULL);
    expect_one(doc, "model.topology.layers[0]: missing required field repeat (type NestedTopology)", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[0].id", NULL);
    expect_one(doc, "groups[0].runs[0]: missing required field id", NULL);
    doc = base_doc();
    put(doc, "model.topology.layers[0].layers[0].type", NULL);
    expect_one(doc, "model.topology.layers[0].layers[0]: missing required field type", NULL);
}

TEST(schema_out_of_range) {
    json_t *doc = base_doc();
    put(doc, "groups[0].runs[0].steps", json_integer(-5));
    expect_one(doc, "groups[0].runs[0].steps: must be >= 0, got -5", NULL);
    doc = base_doc();
    put(doc, "model.topology.layers[1]", J("{'type': 'DropoutLayer', 'p': 1.5}"));
    expect_one(doc, "model.topology.layers[1].p: must be in [0, 1), got 1.5", NULL);
    doc = base_doc();
    put(doc, "version", json_integer(2));
    expect_one(doc, "version: must be 1, got 2", NULL);
    doc = base_doc();
    put(doc, ATTN ".n_heads", json_integer(0));
    expect_one(doc, ATTN ".n_heads: must be >= 1, got 0", NULL);
    doc = base_doc();
    put(doc, "model.topology.layers[1].eps", json_real(0.0));
    expect_one(doc, "model.topology.layers[1].eps: must be > 0, got 0", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[3].generate.top_p", json_real(0.0));
    expect_one(doc, "groups[0].runs[3].generate.top_p: must be in (0, 1], got 0", NULL);
    doc = base_doc();
    put(doc, "review.temperature", json_real(2.5));
    expect_one(doc, "review.temperature: must be in [0, 2], got 2.5", NULL);
    doc = base_doc();
    put(doc, "research.auto_approve_score", json_real(6.0));
    expect_one(doc, "research.auto_approve_score: must be >= min_score_to_approve (7.5), got 6", NULL);
}

TEST(schema_bad_enums_list_the_allowed_values) {
    json_t *doc = base_doc();
    put(doc, "groups[0].runs[0].train.lr_schedule", json_string("cosin"));
    expect_one(doc, "groups[0].runs[0].train.lr_schedule: unknown value \"cosin\" (did you mean cosine? "
                    "expected one of cosine, linear, constant, none)", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[0].mode", json_string("evaluate"));
    expect_one(doc, "groups[0].runs[0].mode: unknown value \"evaluate\" (expected one of train, sample, chat)", NULL);
    doc = base_doc();
    put(doc, "groups[0].benchmarks[2].config.quantization_modes[1]", json_string("q3"));
    expect_one(doc, "groups[0].benchmarks[2].config.quantization_modes[1]: unknown value \"q3\"", NULL);
    doc = base_doc();
    put(doc, "model.topology.layers[0].layers[0].layers[1].type", json_string("AttentionLayr"));
    expect_one(doc, ATTN ".type: unknown node type AttentionLayr (did you mean AttentionLayer?)", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[1].verify.type", json_string("kompare"));
    expect_one(doc, RUN1 ".verify.type: unknown verify type kompare (did you mean compare?)", NULL);
    doc = base_doc();
    put(doc, "groups[0].benchmarks[0].config.type", json_string("speed"));
    expect_one(doc, "groups[0].benchmarks[0].config.type: unknown benchmark type speed (expected one of "
                    "perplexity, latency, memory, accuracy, generation, custom)", NULL);
}

TEST(schema_fields_for_the_wrong_type) {
    json_t *doc = base_doc();
    put(doc, ATTN ".sem_dim", json_integer(16));
    expect_one(doc, ATTN ".sem_dim: sem_dim is only valid with mode decoupled (mode is gqa by default)", NULL);
    doc = base_doc();
    put(doc, ATTN ".mode", json_string("standard"));
    put(doc, ATTN ".n_kv_heads", NULL);
    put(doc, ATTN ".decoupled_gate", json_true());
    expect_one(doc, ATTN ".decoupled_gate: decoupled_gate is only valid with mode decoupled (mode is standard)",
               NULL);
    doc = base_doc();
    put(doc, "model.topology.repeat", json_integer(2));
    expect_one(doc, "model.topology.repeat: repeat is only valid for type NestedTopology, not StackedTopology",
               NULL);
    doc = base_doc();
    put(doc, "model.topology.layers[1].steps", json_integer(2));
    expect_one(doc, "model.topology.layers[1].steps: steps is only valid for type RecurrentTopology, not RMSNormLayer",
               NULL);
    doc = base_doc();
    put(doc, "model.embedder.max_seq_len", json_integer(128));
    expect_one(doc, "model.embedder.max_seq_len: max_seq_len is only valid with type token_position", NULL);
    doc = base_doc();
    put(doc, "model.embedder.type", json_string("token_position"));
    expect_one(doc, "model.embedder: missing required field max_seq_len", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[0].train.blockwise_steps", json_integer(5));
    expect_one(doc, "groups[0].runs[0].train.blockwise_steps: blockwise_steps is only valid with phase blockwise or "
                    "upcycle (phase is standard)", NULL);
}

TEST(schema_optimizer_and_decode_applicability) {
    json_t *doc = base_doc();
    put(doc, "groups[0].runs[2].train.optimizer", json_string("sgd"));
    put(doc, "groups[0].runs[2].train.betas", J("[0.9, 0.99]"));
    expect_one(doc, "groups[0].runs[2].train.betas: betas is only valid with optimizer adamw or lion (optimizer is sgd)",
               NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[0].train.betas", J("[0.9, 0.99, 0.5]"));
    expect_one(doc, "groups[0].runs[0].train.betas: expected exactly 2 elements, got 3", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[0].train.betas", J("[0.9, 1.0]"));
    expect_one(doc, "groups[0].runs[0].train.betas[1]: must be in [0, 1), got 1", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[3].generate.decode_q_chunk", json_integer(64));
    expect_one(doc, "groups[0].runs[3].generate.decode_q_chunk: decode_q_chunk is only valid with decode_plan fixed",
               NULL);
    doc = base_doc(); /* lion takes betas too */
    put(doc, "groups[0].runs[2].train.betas", J("[0.9, 0.99]"));
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(0, cb_schema_check(doc, &d));
    cb_diags_free(&d);
    json_decref(doc);
}

TEST(schema_records_every_error) {
    json_t *doc = base_doc();
    put(doc, "groups[0].runs[3].generate.draft", NULL); /* spec_k and spec_method lose their draft */
    put(doc, "version", json_integer(3));
    put(doc, ATTN ".n_head", json_integer(4));
    put(doc, "paper.paper_type", json_string("book"));
    cb_diags d;
    cb_diags_init(&d);
    int n = cb_schema_check(doc, &d);
    EXPECT_EQ_INT(5, n);
    int saw_spec_k = 0, saw_spec_method = 0;
    for (int i = 0; i < d.n; i++) {
        if (strstr(d.items[i].msg, "spec_k is only valid with draft")) saw_spec_k = 1;
        if (strstr(d.items[i].msg, "spec_method is only valid with draft")) saw_spec_method = 1;
    }
    EXPECT(saw_spec_k && saw_spec_method);
    if (n != 5) dump(&d);
    cb_diags_free(&d);
    json_decref(doc);
}

TEST(schema_defaults_merged_into_runs_report_once) {
    json_t *doc = base_doc();
    json_t *defaults = json_object_get(json_object_get(doc, "manifest"), "defaults");
    cb_loc_set(defaults, "eval_iters", "t.yml:4:15");
    /* cb-lower copied the bad default into every run, with its location */
    put(doc, "defaults.eval_iters", json_integer(0));
    for (int i = 0; i < 3; i++) {
        char p[64];
        snprintf(p, sizeof p, "groups[0].runs[%d].train.eval_iters", i);
        put(doc, p, json_integer(0));
        snprintf(p, sizeof p, "groups[0].runs[%d].train", i);
        char key[32];
        long index;
        json_t *train = walk(json_object_get(doc, "manifest"), p, key, sizeof key, &index);
        cb_loc_set(json_object_get(train, key), "eval_iters", "t.yml:4:15");
    }
    expect_one(doc, "defaults.eval_iters: must be >= 1, got 0", "t.yml:4:15");
}

TEST(schema_bad_default_reported_once_at_defaults) {
    /* "mdoe" is unknown as a default (did you mean mode?) and, copied by cb-lower into
     * each run's train, unknown there with another hint: one error, at the default */
    json_t *doc = base_doc();
    put(doc, "defaults.mdoe", json_string("train"));
    cb_loc_set(json_object_get(json_object_get(doc, "manifest"), "defaults"), "mdoe", "t.yml:5:9");
    for (int i = 0; i < 3; i++) {
        char p[64];
        snprintf(p, sizeof p, "groups[0].runs[%d].train.mdoe", i);
        put(doc, p, json_string("train"));
        char key[32];
        long index;
        snprintf(p, sizeof p, "groups[0].runs[%d].train", i);
        json_t *train = walk(json_object_get(doc, "manifest"), p, key, sizeof key, &index);
        cb_loc_set(json_object_get(train, key), "mdoe", "t.yml:5:9");
    }
    expect_one(doc, "defaults.mdoe: unknown field mdoe (did you mean mode?)", "t.yml:5:9");
}

TEST(schema_defaults_keys) {
    json_t *doc = base_doc();
    put(doc, "defaults.eval_itres", json_integer(5));
    expect_one(doc, "defaults.eval_itres: unknown field eval_itres (did you mean eval_iters?)", NULL);
    doc = base_doc();
    put(doc, "defaults.mode", json_string("sample"));
    put(doc, "defaults.mode", json_string("sampl"));
    expect_one(doc, "defaults.mode: unknown value \"sampl\" (did you mean sample?", NULL);
}

TEST(schema_verify_rules) {
    json_t *doc = base_doc();
    put(doc, "groups[0].runs[0].verify", J("{'type': 'compare'}"));
    expect_one(doc, "groups[0].runs[0].verify: verify compare compares the student with a teacher", NULL);
    doc = base_doc();
    put(doc, RUN1 ".verify.max_delta_nll", json_real(0.1));
    expect_one(doc, RUN1 ".verify.max_delta_nll: max_delta_nll is only valid for type fidelity, not compare", NULL);
    doc = base_doc();
    put(doc, RUN1 ".verify.attention.max_mean_l2", json_real(0.1));
    expect_one(doc, RUN1 ".verify.attention.max_mean_l2: unknown field max_mean_l2 (did you mean max_mean_l1?)", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[2].verify.split", json_string("test"));
    expect_one(doc, "groups[0].runs[2].verify.split: unknown value \"test\" (expected one of auto, train, val)", NULL);
}

static const char *eval_verify =
    "{'type': 'eval', 'tokenizer': {'type': 'tiktoken', 'encoding': 'cl100k_base'},"
    " 'max_new_tokens': 32, 'context_window': 2048,"
    " 'cases': [{'id': 'math', 'prompt': '2 + 2 =', 'kind': 'int_greedy', 'answer': 4},"
    "           {'id': 'capital', 'prompt': 'The capital of France is', 'kind': 'choice_logprob',"
    "            'choices': ['Paris', 'London'], 'answer': 'Paris'}],"
    " 'thresholds': {'min_student_accuracy': 0.8, 'max_accuracy_drop': 0.1}}";

TEST(schema_eval_cases) {
    json_t *doc = base_doc();
    put(doc, RUN1 ".verify", J(eval_verify));
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(0, cb_schema_check(doc, &d));
    if (d.n) dump(&d);
    cb_diags_free(&d);
    json_decref(doc);

    doc = base_doc();
    put(doc, RUN1 ".verify", J(eval_verify));
    put(doc, RUN1 ".verify.cases[1].answer", json_string("Rome"));
    expect_one(doc, RUN1 ".verify.cases[1].answer: answer \"Rome\" is not one of the choices", NULL);
    doc = base_doc();
    put(doc, RUN1 ".verify", J(eval_verify));
    put(doc, RUN1 ".verify.cases[0].answer", json_string("four"));
    expect_one(doc, RUN1 ".verify.cases[0].answer: kind int_greedy needs an integer answer", NULL);
    doc = base_doc();
    put(doc, RUN1 ".verify", J(eval_verify));
    put(doc, RUN1 ".verify.cases[1].choices", NULL);
    expect_one(doc, RUN1 ".verify.cases[1]: missing required field choices", NULL);
    doc = base_doc();
    put(doc, RUN1 ".verify", J(eval_verify));
    put(doc, RUN1 ".verify.cases[1].id", json_string("math"));
    expect_one(doc, RUN1 ".verify.cases[1].id: duplicate id \"math\" (also " RUN1 ".verify.cases[0])", NULL);
    doc = base_doc();
    put(doc, RUN1 ".verify", J(eval_verify));
    put(doc, RUN1 ".verify.tokenizer.encoding", NULL);
    expect_one(doc, RUN1 ".verify.tokenizer: missing required field encoding", NULL);
    doc = base_doc();
    put(doc, RUN1 ".verify", J(eval_verify));
    put(doc, RUN1 ".verify.tokenizer", J("{'type': 'hf'}"));
    expect_one(doc, RUN1 ".verify.tokenizer: missing required field path (type hf)", NULL);
    doc = base_doc();
    put(doc, RUN1 ".verify", J(eval_verify));
    put(doc, RUN1 ".verify.cases", json_array());
    expect_one(doc, RUN1 ".verify.cases: must not be empty", NULL);
}

TEST(schema_teacher_student_references) {
    json_t *doc = base_doc();
    put(doc, RUN1 ".train.teacher", NULL);
    /* both the phase and the compare verify need the teacher */
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(2, cb_schema_check(doc, &d));
    EXPECT(d.n >= 1 && strstr(d.items[0].msg, "phase blockwise needs a teacher"));
    cb_diags_free(&d);
    json_decref(doc);

    doc = base_doc();
    put(doc, RUN1 ".train.teacher.run", json_string("ft"));
    expect_one(doc, RUN1 ".train.teacher.run: run \"ft\" comes later in this group", NULL);
    doc = base_doc();
    put(doc, RUN1 ".train.teacher.run", json_string("bw"));
    expect_one(doc, RUN1 ".train.teacher.run: run \"bw\" cannot refer to itself", NULL);
    doc = base_doc();
    put(doc, RUN1 ".train.teacher.run", json_string("nope"));
    expect_one(doc, RUN1 ".train.teacher.run: no earlier run \"nope\" in this group", NULL);
    doc = base_doc();
    put(doc, RUN1 ".train.teacher.ckpt", json_string("dir"));
    expect_one(doc, RUN1 ".train.teacher: give ckpt or run, not both", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[2].train.teacher", J("{'ckpt': 'x'}"));
    expect_one(doc, "groups[0].runs[2].train.teacher_ckpt: give teacher_ckpt or teacher.ckpt, not both", NULL);
    doc = base_doc();
    put(doc, RUN1 ".train.student.overrides.AttentionLayer.n_head", json_integer(2));
    expect_one(doc, RUN1 ".train.student.overrides.AttentionLayer.n_head: unknown field n_head (did you mean n_heads?)",
               NULL);
    doc = base_doc();
    put(doc, RUN1 ".train.student.overrides.AttentionLayer.sem_dim", json_string("big"));
    expect_one(doc, RUN1 ".train.student.overrides.AttentionLayer.sem_dim: expected an integer", NULL);
    doc = base_doc();
    put(doc, RUN1 ".train.student.overrides.Attention", J("{'mode': 'gqa'}"));
    expect_one(doc, RUN1 ".train.student.overrides.Attention: unknown node type Attention", NULL);
    doc = base_doc();
    put(doc, RUN1 ".train.student.overrides.SwiGLULayer", J("{'layers': []}"));
    expect_one(doc, RUN1 ".train.student.overrides.SwiGLULayer.layers: overrides change fields of every SwiGLULayer, "
                    "not its layers", NULL);
    doc = base_doc();
    put(doc, "groups[0].benchmarks[0].models[2]", json_string("finetune"));
    expect_one(doc, "groups[0].benchmarks[0].models[2]: unknown model \"finetune\"", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[3].from_run", json_string("later"));
    expect_one(doc, "groups[0].runs[3].from_run: no earlier run \"later\" in this group", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[3].from_run", NULL);
    expect_one(doc, "groups[0].runs[3]: mode sample needs ckpt or from_run", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[2].from_run", json_string("teach"));
    expect_one(doc, "groups[0].runs[2].from_run: from_run is only valid with mode sample or chat (mode is train by "
                    "default)", NULL);
}

TEST(schema_names_and_ids) {
    json_t *doc = base_doc();
    put(doc, "groups[0].runs[2].id", json_string("bw"));
    expect_one(doc, "groups[0].runs[2].id: duplicate id \"bw\" (also groups[0].runs[1])", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[3].id", json_string("../etc"));
    expect_one(doc, "groups[0].runs[3].id: \"../etc\" is not a valid name", NULL);
    doc = base_doc();
    put(doc, "model.topology.layers[1].id", json_string("final norm"));
    expect_one(doc, "model.topology.layers[1].id: \"final norm\" is not a valid id", NULL);
    doc = base_doc();
    put(doc, "vars.1x", json_integer(1));
    expect_one(doc, "vars.1x: \"1x\" is not a valid name", NULL);
    doc = base_doc();
    put(doc, "groups[1]", J("{'name': 'g'}"));
    expect_one(doc, "groups[1].name: duplicate name \"g\" (also groups[0])", NULL);
    doc = base_doc();
    put(doc, "model.topology.layers[0].layers", json_array());
    expect_one(doc, "model.topology.layers[0].layers: must not be empty", NULL);
}

/* CPU seconds of the calling thread: unlike wall time, not stretched by other processes
 * on a loaded machine */
static double thread_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The check of the lists below took 0.6 to 0.8 CPU seconds under ASan and UBSan on a
 * loaded 2-core machine (0.26 in the optimised build); ten times that is the bound, on the
 * thread's CPU time. A pairwise comparison of 40000 ids (8e8 of them) takes far longer. */
#define SCHEMA_LONG_LISTS_S 0.8

TEST(schema_long_hostile_lists_stay_fast) {
    /* 40000 runs, each referring to the one before, and every one of 40000 eval cases
     * with the same id: hashing keeps this linear (timed), and the error list stays bounded */
    json_t *doc = base_doc();
    json_t *runs = json_array();
    for (int i = 0; i < 40000; i++) {
        char text[160];
        snprintf(text, sizeof text, "{'id': 'r%d', 'steps': 1, 'train': {'student': {'run': 'r%d'}}}", i,
                 i ? i - 1 : 0);
        json_array_append_new(runs, J(text));
    }
    json_object_del(json_object_get(json_array_get(runs, 0), "train"), "student");
    put(doc, "groups[0].runs", runs);
    put(doc, "groups[0].benchmarks", J("[{'id': 'b', 'config': {'type': 'perplexity'}, 'models': ['r39999']}]"));
    json_t *cases = json_array();
    for (int i = 0; i < 40000; i++)
        json_array_append_new(cases, J("{'id': 'same', 'prompt': 'p', 'kind': 'int_greedy', 'answer': 1}"));
    json_t *bench = J("{'id': 'acc', 'config': {'type': 'accuracy', 'tokenizer': {'type': 'byte'}}, "
                      "'models': ['student']}");
    json_object_set_new(json_object_get(bench, "config"), "cases", cases);
    json_array_append_new(json_object_get(json_array_get(json_object_get(json_object_get(doc, "manifest"), "groups"), 0),
                                          "benchmarks"), bench);
    cb_diags d;
    cb_diags_init(&d);
    double t0 = thread_cpu_seconds();
    int n = cb_schema_check(doc, &d);
    double seconds = thread_cpu_seconds() - t0;
    fprintf(stderr, "  schema check of 40000 runs and 40000 cases: %.3f CPU s (bound %.1f)\n", seconds,
            10 * SCHEMA_LONG_LISTS_S);
    if (!(seconds <= 10 * SCHEMA_LONG_LISTS_S))
        FAILF("the schema check of 40000 runs and 40000 cases took %.2f CPU seconds, bound %.1f", seconds,
              10 * SCHEMA_LONG_LISTS_S);
    EXPECT_EQ_INT(39999, n);
    EXPECT_EQ_INT(1000, d.n);
    EXPECT_EQ_INT(38999, d.n_dropped);
    EXPECT(d.n > 0 && strstr(d.items[0].msg, ".cases[1].id: duplicate id \"same\" (also ") != NULL);
    cb_diags_free(&d);
    json_decref(doc);
}

TEST(schema_instrument_one_or_list) {
    json_t *doc = base_doc();
    put(doc, "groups[0].runs[0].train.instrument", json_string("rich"));
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(0, cb_schema_check(doc, &d));
    cb_diags_free(&d);
    json_decref(doc);
    doc = base_doc();
    put(doc, "groups[0].runs[0].train.instrument", J("['jsonl', 'csv']"));
    expect_one(doc, "groups[0].runs[0].train.instrument[1]: unknown value \"csv\"", NULL);
    doc = base_doc();
    put(doc, "groups[0].runs[0].train.instrument", J("{'jsonl': true}"));
    expect_one(doc, "groups[0].runs[0].train.instrument: expected one of jsonl, hdf5, tensorboard, live, rich, or a "
                    "list of them, got a mapping", NULL);
}

TEST(schema_annotations_are_ignored) {
    json_t *doc = base_doc();
    put(doc, ATTN ".@note", json_string("anything"));
    put(doc, "@extra", json_integer(1));
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(0, cb_schema_check(doc, &d));
    cb_diags_free(&d);
    json_decref(doc);
}

TEST(schema_rope_scaling) {
    json_t *doc = base_doc();
    put(doc, ATTN ".rope_scaling", json_null());
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(0, cb_schema_check(doc, &d));
    cb_diags_free(&d);
    json_decref(doc);
    doc = base_doc();
    put(doc, ATTN ".rope_scaling.type", json_string("yarn"));
    expect_one(doc, ATTN ".rope_scaling.type: unknown value \"yarn\" (expected one of llama3)", NULL);
    doc = base_doc();
    put(doc, ATTN ".rope_scaling.factor", json_integer(-1));
    expect_one(doc, ATTN ".rope_scaling.factor: must be > 0, got -1", NULL);
}

TEST(schema_document_without_manifest) {
    json_t *doc = cb_doc_new("lowered");
    json_object_set_new(doc, "source", json_string("m.yml"));
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(1, cb_schema_check(doc, &d));
    EXPECT_EQ_STR("m.yml", d.items[0].where);
    cb_diags_free(&d);
    json_decref(doc);
}

TEST(schema_check_node_by_name) {
    json_t *gen = J("{'max_new_tokens': 0, 'cache_kind': 'q8'}");
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(2, cb_schema_check_node(gen, "generate", "cfg", &d));
    EXPECT(d.n == 2 && strcmp(d.items[0].msg, "cfg.max_new_tokens: must be >= 1, got 0") == 0);
    cb_diags_free(&d);
    json_decref(gen);
    json_t *rms = J("{'type': 'RMSNormLayer', 'd_model': 8}");
    cb_diags_init(&d);
    EXPECT_EQ_INT(0, cb_schema_check_node(rms, "RMSNormLayer", NULL, &d));
    EXPECT_EQ_INT(1, cb_schema_check_node(rms, "LayerNormLayer", NULL, &d));
    cb_diags_free(&d);
    json_decref(rms);
}

TEST(schema_fill_attention_defaults) {
    json_t *a = J("{'type': 'AttentionLayer', 'd_model': 64, 'n_heads': 8, 'n_kv_heads': 2}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(a, "AttentionLayer"));
    EXPECT_EQ_STR("gqa", json_string_value(json_object_get(a, "mode")));
    EXPECT_NEAR(10000.0, json_number_value(json_object_get(a, "rope_theta")), 0);
    EXPECT(json_is_true(json_object_get(a, "rope_enabled")));
    EXPECT(json_is_null(json_object_get(a, "rope_scaling")));
    EXPECT(json_is_true(json_object_get(a, "is_causal")));
    EXPECT(json_is_false(json_object_get(a, "bias")));
    EXPECT(json_object_get(a, "v_dim") == NULL);
    EXPECT(json_object_get(a, "decoupled_gate") == NULL);
    json_decref(a);

    a = J("{'type': 'AttentionLayer', 'd_model': 64, 'n_heads': 8}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(a, "node"));
    EXPECT_EQ_INT(8, json_integer_value(json_object_get(a, "n_kv_heads")));
    EXPECT_EQ_STR("standard", json_string_value(json_object_get(a, "mode")));
    json_decref(a);

    a = J("{'type': 'AttentionLayer', 'd_model': 64, 'n_heads': 8, 'mode': 'decoupled', 'sem_dim': 16,"
          " 'geo_dim': 32, 'rope_scaling': {'type': 'llama3', 'factor': 32}}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(a, "node"));
    EXPECT_EQ_INT(64, json_integer_value(json_object_get(a, "v_dim")));
    EXPECT(json_is_false(json_object_get(a, "decoupled_gate")));
    EXPECT(json_is_false(json_object_get(a, "decoupled_gate_dynamic")));
    json_t *rs = json_object_get(a, "rope_scaling");
    EXPECT_NEAR(32.0, json_number_value(json_object_get(rs, "factor")), 0);
    EXPECT_NEAR(4.0, json_number_value(json_object_get(rs, "high_freq_factor")), 0);
    EXPECT_EQ_INT(8192, json_integer_value(json_object_get(rs, "original_max_position_embeddings")));
    json_decref(a);
}

TEST(schema_fill_other_defaults) {
    json_t *n = J("{'type': 'RMSNormLayer', 'd_model': 8}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(n, "node"));
    EXPECT_NEAR(1e-5, json_number_value(json_object_get(n, "eps")), 1e-12);
    json_decref(n);
    n = J("{'type': 'CyclicTopology', 'layers': []}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(n, "CyclicTopology"));
    EXPECT_EQ_INT(2, json_integer_value(json_object_get(n, "cycles")));
    json_decref(n);
    n = J("{'type': 'DropoutLayer'}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(n, "node"));
    EXPECT_NEAR(0.1, json_number_value(json_object_get(n, "p")), 1e-12);
    json_decref(n);

    json_t *t = J("{'optimizer': 'sgd'}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(t, "train"));
    EXPECT_NEAR(0.9, json_number_value(json_object_get(t, "momentum")), 1e-12);
    EXPECT(json_object_get(t, "betas") == NULL);
    EXPECT_EQ_STR("standard", json_string_value(json_object_get(t, "phase")));
    EXPECT(json_object_get(t, "blockwise_steps") == NULL);
    EXPECT_EQ_INT(8, json_integer_value(json_object_get(t, "batch_size")));
    EXPECT_EQ_STR("jsonl", json_string_value(json_object_get(t, "instrument")));
    json_decref(t);
    t = J("{'phase': 'blockwise'}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(t, "train"));
    EXPECT_EQ_INT(2, json_array_size(json_object_get(t, "betas")));
    EXPECT_EQ_INT(100, json_integer_value(json_object_get(t, "blockwise_steps")));
    EXPECT(json_is_false(json_object_get(t, "cache_teacher_outputs")));
    json_decref(t);

    json_t *v = J("{'type': 'compare', 'attention': {}}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(v, "verify"));
    EXPECT_EQ_INT(2, json_integer_value(json_object_get(v, "batches")));
    EXPECT_NEAR(0.25, json_number_value(json_object_get(json_object_get(v, "attention"), "max_max_l1")), 1e-12);
    EXPECT(json_object_get(v, "logits") == NULL);
    json_decref(v);

    json_t *m = J("{'embedder': {'type': 'token', 'vocab_size': 5, 'd_model': 4}}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(m, "model"));
    EXPECT_NEAR(0.02, json_number_value(json_object_get(m, "init_std")), 1e-12);
    EXPECT(json_is_false(json_object_get(json_object_get(m, "head"), "bias")));
    EXPECT_NEAR(0.0, json_number_value(json_object_get(json_object_get(m, "embedder"), "dropout")), 0);
    json_decref(m);

    json_t *p = J("{'title': 'x'}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(p, "paper"));
    EXPECT_EQ_INT(25, json_integer_value(json_object_get(json_object_get(p, "citations"), "max_citations")));
    EXPECT_EQ_INT(8, json_array_size(json_object_get(p, "sections")));
    json_decref(p);

    json_t *b = J("{'type': 'latency'}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(b, "benchmark_config"));
    EXPECT_EQ_INT(4, json_array_size(json_object_get(b, "prompt_lengths")));
    EXPECT_EQ_STR("fp32", json_string_value(json_object_get(b, "cache_kind")));
    json_decref(b);

    json_t *g = J("{'decode_plan': 'auto'}");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(g, "generate"));
    EXPECT_EQ_INT(4096, json_integer_value(json_object_get(g, "decode_bucket_short")));
    EXPECT(json_object_get(g, "spec_k") == NULL);
    json_decref(g);

    json_t *x = J("{'type': 'NoSuchLayer'}");
    EXPECT_EQ_INT(CB_E_INVALID, cb_schema_fill_defaults(x, "node"));
    EXPECT_EQ_INT(CB_E_INVALID, cb_schema_fill_defaults(x, "no_such_schema"));
    json_decref(x);
}

TEST(schema_filled_base_still_valid) {
    /* defaults the table fills must pass the table's own check */
    json_t *doc = base_doc();
    json_t *m = json_object_get(doc, "manifest");
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(json_object_get(m, "model"), "model"));
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(json_object_get(m, "paper"), "paper"));
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(json_object_get(m, "review"), "review"));
    EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(json_object_get(m, "research"), "research"));
    json_t *g0 = json_array_get(json_object_get(m, "groups"), 0);
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(g0, "runs"), i, r) {
        EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(r, "run"));
        if (json_object_get(r, "train")) EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(json_object_get(r, "train"), "train"));
    }
    json_array_foreach(json_object_get(g0, "benchmarks"), i, r)
        EXPECT_EQ_INT(CB_OK, cb_schema_fill_defaults(json_object_get(r, "config"), "benchmark_config"));
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(0, cb_schema_check(doc, &d));
    if (d.n) dump(&d);
    cb_diags_free(&d);
    json_decref(doc);
}

TEST(schema_node_kinds) {
    EXPECT(cb_schema_is_layer_type("AttentionLayer"));
    EXPECT(cb_schema_is_layer_type("RoPE"));
    EXPECT(!cb_schema_is_layer_type("NestedTopology"));
    EXPECT(cb_schema_is_topology_type("RecurrentTopology"));
    EXPECT(!cb_schema_is_topology_type("AttentionLayer"));
    EXPECT(!cb_schema_is_layer_type("Nope"));
    EXPECT(!cb_schema_is_topology_type(NULL));
}

TEST(suggest_distance_and_pick) {
    EXPECT_EQ_INT(1, cb_edit_distance("n_head", "n_heads"));
    EXPECT_EQ_INT(1, cb_edit_distance("lr_shcedule", "lr_schedule")); /* one swap */
    EXPECT_EQ_INT(3, cb_edit_distance("kitten", "sitting"));
    EXPECT_EQ_INT(0, cb_edit_distance("", ""));
    EXPECT_EQ_INT(4, cb_edit_distance("", "abcd"));
    static const char *const names[] = {"n_heads", "n_kv_heads", "d_model", NULL, "mode"};
    EXPECT_EQ_STR("n_heads", cb_suggest("n_head", names, 5));
    EXPECT_EQ_STR("d_model", cb_suggest("D_MODEL", names, 5));
    EXPECT_EQ_STR("mode", cb_suggest("mdoe", names, 5));
    EXPECT(cb_suggest("zzzzzz", names, 5) == NULL);
    EXPECT(cb_suggest("x", names, 5) == NULL);
}

/* ---- the tables and man/cb-manifest.5 document the same fields ---- */
#include "core/atomic_file.h"
#include "manifest/schema_table.h"

static int word_in(const char *text, const char *word) {
    size_t n = strlen(word);
    for (const char *p = strstr(text, word); p; p = strstr(p + 1, word)) {
        int before = p == text || !(p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z') || (p[-1] >= 'A' && p[-1] <= 'Z'));
        char a = p[n];
        int after = !(a == '_' || (a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z') || (a >= '0' && a <= '9'));
        if (before && after) return 1;
    }
    return 0;
}

static int n_documented;
static const cb_schema *visited[256];
static int n_visited;

static void check_documented(const char *man, const cb_type *t);

/* every field name and enum value of s appears in the man page; each schema once */
static void check_schema_documented(const char *man, const cb_schema *s) {
    for (int i = 0; i < n_visited; i++)
        if (visited[i] == s) return;
    if (n_visited < 256) visited[n_visited++] = s;
    for (int i = 0; i < s->n_fields; i++) {
        const cb_field *f = &s->fields[i];
        if (!word_in(man, f->name)) FAILF("man/cb-manifest.5 does not document %s.%s", s->name, f->name);
        n_documented++;
        check_documented(man, &f->t);
    }
}

static void check_documented(const char *man, const cb_type *t) {
    if ((t->kind == CB_K_LIST || t->kind == CB_K_MAP) && t->elem) {
        check_documented(man, t->elem);
    } else if (t->kind == CB_K_OBJECT) {
        check_schema_documented(man, t->schema);
    } else if (t->kind == CB_K_UNION) {
        for (int i = 0; i < t->un->n_variants; i++) {
            /* the variant names are what users write after type: */
            if (!word_in(man, t->un->variants[i]->name))
                FAILF("man/cb-manifest.5 does not mention type %s", t->un->variants[i]->name);
            check_schema_documented(man, t->un->variants[i]);
        }
    } else if (t->kind == CB_K_ENUM) {
        for (int v = 0; t->values[v]; v++)
            if (!word_in(man, t->values[v])) FAILF("man/cb-manifest.5 does not mention value %s", t->values[v]);
    }
}

TEST(schema_every_field_is_in_the_man_page) {
    char *man = NULL;
    size_t n = 0;
    cb_error e;
    if (cb_read_file("man/cb-manifest.5", 0, &man, &n, &e) != CB_OK) {
        FAILF("cannot read man/cb-manifest.5 (tests run from the repository root): %.200s", e.msg);
        return;
    }
    n_documented = n_visited = 0;
    check_schema_documented(man, &cb_manifest_schema);
    EXPECT(n_documented > 250);
    fprintf(stderr, "  %d documented fields checked\n", n_documented);
    free(man);
}
