/* test_eval.c: eval on models whose greedy output and log-probabilities are known by
 * construction. All weights are zero except the embedding, the final norm and the head,
 * so every block adds nothing and the model is a bigram table: token a (class c(a), the
 * embedding row e_c) gives logit z = 10 / sqrt(1/16 + eps) (the RMS norm of e_c, times
 * 10) to the class's successor and 0 to the other 255 ids. The byte tokenizer makes text
 * and ids the same. */
#include "test.h"
#include "verify/eval_suite.h"
#include "core/json_doc.h"
#include "verify/spec.h"
#include "verify/verify.h"
#include "verify_util.h"

enum { V = 256 };
static const double EPS = 1e-5; /* RMSNormLayer's default */

/* class of a token and each class's successor: ':' -> '4' -> '2' -> ' ' -> 'x'; every
 * other token is class 15, followed by '7'. The student writes '3' after '4'. */
static int class_of(int a) { return a == ':' ? 0 : a == '4' ? 1 : a == '2' ? 2 : a == ' ' ? 3 : 15; }

static int bigram(cb_model *m, const char *yaml, int student) {
    if (vu_model(m, yaml, 1)) return 1;
    memset(m->weights, 0, m->params.total_floats * sizeof(float));
    float *emb = vu_param(m, "embed.tok"), *norm = vu_param(m, "norm.weight"), *head = vu_param(m, "head.weight");
    if (!emb || !norm || !head) return 1;
    for (int a = 0; a < V; a++) emb[a * 16 + class_of(a)] = 1;
    for (int j = 0; j < 16; j++) norm[j] = 1;
    const int succ[16] = {'4', student ? '3' : '2', ' ', 'x', [15] = '7'};
    for (int k = 0; k < 16; k++)
        if (succ[k]) head[succ[k] * 16 + k] = 10;
    return 0;
}

static const char *CASES =
    "[{id: add, prompt: \"Q:\", kind: int_greedy, answer: 42},"
    " {id: pick, prompt: \"Q:\", kind: choice_logprob, choices: [\"43\", \"42\", \"7\"], answer: \"42\"},"
    " {id: sevens, prompt: \"x\", kind: int_greedy, answer: 777777}]";

static int suite_of(cb_eval_suite *s, const char *list) {
    char text[2048];
    snprintf(text, sizeof text, "cases: %s\n", list);
    char path[512];
    tmp_path("cases.yml", path, sizeof path);
    if (write_bytes(path, text, strlen(text))) return 1;
    cb_error e;
    cb_eval_suite_init(s);
    int rc = cb_eval_suite_load(s, path, &e);
    if (rc != CB_OK) fprintf(stderr, "  suite: %s: %s\n", e.where, e.msg);
    return rc != CB_OK;
}

static void count_step(void *ctx, const char *what, int done, int total) {
    int *n = ctx;
    if (strcmp(what, "eval: teacher cases") == 0 && done == *n % 3 + 1 && total == 3) ++*n;
}

TEST(eval_greedy_and_choices_by_hand) {
    char y[4096];
    cb_model t, s;
    cb_eval_suite suite;
    cb_tokenizer tok;
    cb_error e;
    const char *yaml = vu_manifest(y, sizeof y, V, "n_kv_heads: 4", "block_size: 8", "");
    if (bigram(&t, yaml, 0) || bigram(&s, yaml, 1) || suite_of(&suite, CASES) || cb_tokenizer_init_bytes(&tok, &e)) {
        FAILF("setup");
        return;
    }
    int steps = 0;
    cb_verify_progress counter = {.fn = count_step, .ctx = &steps};
    cb_eval_config cfg = {.max_new_tokens = 6, .who = "teacher", .progress = &counter};
    cb_eval_report rt, rs;
    EXPECT_EQ_INT(CB_OK, cb_eval_suite_run(&rt, &t, &tok, &suite, &cfg, 64, &e));
    EXPECT_EQ_INT(CB_OK, cb_eval_suite_run(&rs, &s, &tok, &suite, &cfg, 64, &e));
    if (rt.n == 3 && rs.n == 3) {
        EXPECT_EQ_STR("42 x77", rt.outcomes[0].output);
        EXPECT_EQ_STR("437777", rs.outcomes[0].output);
        EXPECT(rt.outcomes[0].correct && !rs.outcomes[0].correct);
        EXPECT_EQ_INT(437777, rs.outcomes[0].value);
        /* log-probabilities by hand: the successor gets z - log(e^z + 255), any other id
         * -log(e^z + 255) */
        double z = 10.0 / sqrt(1.0 / 16 + EPS), lse = log(exp(z) + 255), hit = z - lse, miss = -lse;
        const double want_t[3] = {hit + miss, 2 * hit, miss}, want_s[3] = {2 * hit, hit + miss, miss};
        for (int j = 0; j < 3; j++) {
            EXPECT_NEAR(want_t[j], rt.outcomes[1].logprob[j], 1e-4);
            EXPECT_NEAR(want_s[j], rs.outcomes[1].logprob[j], 1e-4);
        }
        REPORT_DIFF("choice logprob vs hand", fabs(rt.outcomes[1].logprob[0] - want_t[0]), 1e-4);
        EXPECT_EQ_INT(1, rt.outcomes[1].picked);
        EXPECT_EQ_INT(0, rs.outcomes[1].picked);
        EXPECT_EQ_STR("777777", rt.outcomes[2].output);
        EXPECT_EQ_INT(3, rt.correct);
        EXPECT_EQ_INT(1, rs.correct);
        EXPECT_NEAR(1.0 / 3, rs.accuracy, 1e-12);
        EXPECT_EQ_INT(6, steps); /* one per case and model */
    }
    cb_eval_report_free(&rt);
    cb_eval_report_free(&rs);
    cb_eval_suite_free(&suite);
    cb_tokenizer_free(&tok);
    cb_model_free(&t);
    cb_model_free(&s);
}

TEST(eval_verification_from_a_plan) {
    char y[8192], tdir[512], sdir[512], block[2048];
    cb_model t, s;
    cb_error e;
    if (bigram(&t, vu_manifest(y, sizeof y, V, "n_kv_heads: 4", "block_size: 8", ""), 0) ||
        bigram(&s, vu_manifest(y, sizeof y, V, "n_kv_heads: 2", "block_size: 8", ""), 1)) {
        FAILF("setup");
        return;
    }
    tmp_path("ev_t", tdir, sizeof tdir);
    tmp_path("ev_s", sdir, sizeof sdir);
    if (cb_model_save_dir(&t, tdir, NULL, &e) || cb_model_save_dir(&s, sdir, NULL, &e)) FAILF("save: %s", e.msg);
    for (int ff = 0; ff <= 1; ff++) {
        snprintf(block, sizeof block,
                 "{type: eval, tokenizer: {type: byte}, max_new_tokens: 6, context_window: 64, cases: %s, "
                 "thresholds: {min_student_accuracy: 0.3, max_accuracy_drop: 0.5}, fail_fast: %s}",
                 CASES, ff ? "true" : "false");
        json_t *plan = test_compile(vu_manifest(y, sizeof y, V, "n_kv_heads: 4", "block_size: 8", block), "vu.yml");
        cb_verify_spec spec;
        if (!plan || cb_verify_spec_read(&spec, plan, "g", "r", &e) != CB_OK) {
            FAILF("spec: %s", plan ? e.msg : "compile");
            json_decref(plan);
            return;
        }
        json_decref(plan);
        cb_verify_inputs in = {.teacher_dir = tdir, .student_dir = sdir};
        json_t *doc = NULL;
        int status = -1;
        EXPECT_EQ_INT(CB_OK, cb_verify_run(&doc, &status, &spec, &in, &e));
        const json_t *ev = json_object_get(doc, "eval");
        EXPECT_NEAR(1.0, json_number_value(json_object_get(ev, "teacher_accuracy")), 1e-12);
        EXPECT_NEAR(1.0 / 3, json_number_value(json_object_get(ev, "student_accuracy")), 1e-12);
        EXPECT_NEAR(2.0 / 3, json_number_value(json_object_get(ev, "accuracy_drop")), 1e-12);
        /* min_student_accuracy 0.3 passes, max_accuracy_drop 0.5 fails */
        const json_t *checks = json_object_get(doc, "checks");
        EXPECT_EQ_INT(2, json_array_size(checks));
        EXPECT(json_is_true(json_object_get(json_array_get(checks, 0), "pass")));
        EXPECT(json_is_false(json_object_get(json_array_get(checks, 1), "pass")));
        EXPECT_EQ_STR("fail", json_string_value(json_object_get(doc, "verdict")));
        EXPECT_EQ_INT(ff ? 1 : 0, status);
        EXPECT_EQ_INT(ff ? 0 : 1, json_array_size(json_object_get(doc, "warnings")));
        const json_t *first = json_object_get(json_array_get(json_object_get(ev, "results"), 0), "student");
        EXPECT_EQ_STR("437777", json_string_value(json_object_get(first, "output")));
        json_decref(doc);
        cb_verify_spec_free(&spec);
    }
    cb_model_free(&t);
    cb_model_free(&s);
}

TEST(eval_bad_cases_one_clear_error) {
    char y[4096];
    cb_model m;
    cb_tokenizer tok;
    cb_error e;
    if (bigram(&m, vu_manifest(y, sizeof y, V, "n_kv_heads: 4", "block_size: 8", ""), 0) ||
        cb_tokenizer_init_bytes(&tok, &e)) {
        FAILF("setup");
        return;
    }
    cb_eval_config cfg = {.max_new_tokens = 2};
    cb_eval_report r;
    cb_eval_suite s;
    /* a choice with no tokens cannot be scored */
    if (suite_of(&s, "[{id: c, prompt: \"Q:\", kind: choice_logprob, choices: [\"\", \"4\"], answer: \"4\"}]") == 0) {
        EXPECT_EQ_INT(CB_E_INVALID, cb_eval_suite_run(&r, &m, &tok, &s, &cfg, 64, &e));
        EXPECT(strstr(e.msg, "cases[0].choices[0]") && strstr(e.msg, "no tokens"));
        EXPECT(strstr(e.where, "cases.yml:1:") != NULL);
        cb_eval_suite_free(&s);
    } else FAILF("suite");
    /* an empty prompt */
    if (suite_of(&s, "[{id: p, prompt: \"\", kind: int_greedy, answer: 1}]") == 0) {
        EXPECT_EQ_INT(CB_E_INVALID, cb_eval_suite_run(&r, &m, &tok, &s, &cfg, 64, &e));
        EXPECT(strstr(e.msg, "prompt") != NULL);
        cb_eval_suite_free(&s);
    } else FAILF("suite");
    /* a choice longer than the context leaves no room for the prompt */
    if (suite_of(&s, "[{id: l, prompt: \"Q:\", kind: choice_logprob, choices: [\"123456789\", \"4\"], answer: \"4\"}]") ==
        0) {
        EXPECT_EQ_INT(CB_E_INVALID, cb_eval_suite_run(&r, &m, &tok, &s, &cfg, 8, &e));
        EXPECT(strstr(e.msg, "no room") != NULL);
        cb_eval_suite_free(&s);
    } else FAILF("suite");
    cb_tokenizer_free(&tok);
    cb_model_free(&m);
}

TEST(eval_suite_files) {
    char path[512];
    cb_eval_suite s;
    cb_error e;
    cb_eval_suite_init(&s);
    /* an unknown kind, an answer not among the choices, an unknown field, a duplicate id:
     * each one line at file:line:col */
    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"cases:\n  - {id: a, prompt: p, kind: greedy, answer: 1}\n", "kind"},
        {"cases:\n  - {id: a, prompt: p, kind: choice_logprob, choices: [x, y], answer: z}\n", "not one of the choices"},
        {"suite: s\nbenchmark: {}\ncases:\n  - {id: a, prompt: p, kind: int_greedy, answer: 1}\n", "unknown field"},
        {"cases:\n  - {id: a, prompt: p, kind: int_greedy, answer: 1}\n  - {id: a, prompt: q, kind: int_greedy, "
         "answer: 2}\n", "a"},
        {"cases: []\n", "cases"},
        {"cases:\n  - {id: a, prompt: p, kind: int_greedy, answer: four}\n", "integer"},
    };
    tmp_path("bad.yml", path, sizeof path);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (write_bytes(path, bad[i].text, strlen(bad[i].text))) FAILF("write");
        int rc = cb_eval_suite_load(&s, path, &e);
        if (rc != CB_E_INVALID || !strstr(e.where, "bad.yml:") || !strstr(e.msg, bad[i].msg))
            FAILF("bad suite %zu: rc %d, %s: %s", i, rc, e.where, e.msg);
        EXPECT_EQ_INT(0, s.n); /* nothing appended */
    }
    tmp_path("missing.yml", path, sizeof path);
    EXPECT_EQ_INT(CB_E_IO, cb_eval_suite_load(&s, path, &e));
    /* a good one, then the same ids again: refused, the first kept */
    tmp_path("good.yml", path, sizeof path);
    const char *good = "suite: arithmetic\ndescription: two cases\ncases:\n"
                       "  - {id: a, prompt: p, kind: int_greedy, answer: 1}\n"
                       "  - {id: b, prompt: q, kind: choice_logprob, choices: [x, y], answer: y}\n";
    if (write_bytes(path, good, strlen(good))) FAILF("write");
    EXPECT_EQ_INT(CB_OK, cb_eval_suite_load(&s, path, &e));
    EXPECT_EQ_INT(2, s.n);
    if (s.n == 2) {
        EXPECT_EQ_INT(1, s.cases[1].answer_choice);
        EXPECT_EQ_STR("cases[1]", s.cases[1].path);
    }
    EXPECT_EQ_INT(CB_E_INVALID, cb_eval_suite_load(&s, path, &e));
    EXPECT(strstr(e.msg, "also the id") != NULL);
    EXPECT_EQ_INT(2, s.n);
    cb_eval_suite_free(&s);
}

TEST(eval_first_integer) {
    long long v = 0;
    EXPECT(cb_eval_first_int("The answer is 42.", 17, &v) && v == 42);
    EXPECT(cb_eval_first_int("x -12 y 3", 9, &v) && v == -12);
    EXPECT(cb_eval_first_int("a-b 007", 7, &v) && v == 7);
    EXPECT(cb_eval_first_int("12", 1, &v) && v == 1); /* only the first n bytes */
    EXPECT(!cb_eval_first_int("no digits - here", 16, &v));
    EXPECT(!cb_eval_first_int("99999999999999999999999", 23, &v)); /* past a long long */
}

TEST(eval_tokenizer_mapping) {
    static const struct {
        const char *json, *spec;
    } cases[] = {
        {"{\"type\": \"byte\"}", "byte"},
        {"{\"type\": \"tiktoken\", \"encoding\": \"cl100k_base\"}", "cl100k_base"},
        {"{\"type\": \"hf\", \"path\": \"ckpt/tokenizer.json\"}", "ckpt/tokenizer.json"},
        {"{\"type\": \"gpt2\"}", "gpt2"},
        {"{\"type\": \"gpt2\", \"path\": \"gpt2dir\"}", "gpt2dir"},
        {"{\"type\": \"llama\"}", NULL},
        {"{\"type\": \"hf\"}", NULL},
        {"{}", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *m = json_loads(cases[i].json, 0, NULL);
        char spec[256];
        cb_error e;
        int rc = cb_verify_tokenizer_spec(m, spec, sizeof spec, &e);
        if (cases[i].spec) {
            EXPECT_EQ_INT(CB_OK, rc);
            if (rc == CB_OK) EXPECT_EQ_STR(cases[i].spec, spec);
        } else {
            EXPECT_EQ_INT(CB_E_INVALID, rc);
        }
        json_decref(m);
    }
}
