/* test_runtime.c: the runtime plan (training memory from the program's arenas, the batch
 * fitted to a budget, the thread decision cached and reused, a broken cache replaced) and
 * auto-fit (every fitted manifest, compiled afresh from its text, has the parameter count
 * it promises within 5%). */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "core/diag.h"
#include "core/json_doc.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "model/model.h"
#include "plan/validate.h"
#include "runtime/autofit.h"
#include "runtime/runtime_plan.h"
#include "train/config.h"

static json_t *compile_file(const char *path) {
    json_t *doc = NULL, *lowered = NULL, *plan = NULL;
    cb_error e;
    cb_diags d;
    cb_diags_init(&d);
    if (cb_yaml_parse_file(path, &doc, &e) == CB_OK && cb_lower(doc, &lowered, &d) == CB_OK)
        cb_validate(lowered, &plan, &d);
    for (int i = 0; i < d.n; i++) fprintf(stderr, "  %s: %s\n", d.items[i].where, d.items[i].msg);
    cb_diags_free(&d);
    json_decref(doc);
    json_decref(lowered);
    return plan;
}

static long long params_of_text(const char *text) {
    char path[] = "/tmp/cbfit.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    json_t *plan = compile_file(path);
    unlink(path);
    long long n = plan ? (long long)json_integer_value(json_object_get(json_object_get(plan, "totals"), "params")) : -1;
    json_decref(plan);
    return n;
}

TEST(autofit_keeps_its_promise_within_5_percent) {
    static const char *const manifests[] = {"presets/gpt2_124m.yml", "presets/tiny_sotu.yml", "presets/llama32_1b_dba.yml",
                                            "presets/demo.yml"};
    static const long long targets[] = {20000000, 124000000, 350000000, 1200000000};
    for (int m = 0; m < 4; m++)
        for (int t = 0; t < 4; t++) {
            if (m == 2 && t == 0) continue; /* Llama's 128k vocabulary alone is 16M parameters at width 64 */
            char *text = NULL;
            cb_fit_result r;
            cb_error e;
            cb_error_clear(&e);
            if (cb_autofit(manifests[m], targets[t], &text, &r, &e) != CB_OK) {
                FAILF("%s to %lld: %s", manifests[m], targets[t], e.msg);
                continue;
            }
            long long got = params_of_text(text);
            double err = ((double)got - (double)targets[t]) / (double)targets[t];
            if (got != r.params) FAILF("%s: promised %lld, the fitted text compiles to %lld", manifests[m], r.params, got);
            if (fabs(err) > 0.05) FAILF("%s to %lld: %lld is %.2f%% away", manifests[m], targets[t], got, 100 * err);
            if (r.n_heads && r.d_model % r.n_heads) FAILF("%s: %d heads do not divide d_model %d", manifests[m], r.n_heads, r.d_model);
            if (r.n_kv_heads && r.n_heads % r.n_kv_heads)
                FAILF("%s: %d KV heads do not divide %d heads", manifests[m], r.n_kv_heads, r.n_heads);
            fprintf(stderr, "  %-28s %11lld -> %11lld (%+.2f%%) d_model %d n_layers %d heads %d/%d\n", manifests[m],
                    targets[t], got, 100 * err, r.d_model, r.n_layers, r.n_heads, r.n_kv_heads);
            free(text);
        }
}

TEST(autofit_refuses_what_it_cannot_do) {
    char *text = NULL;
    cb_fit_result r;
    cb_error e;
    cb_error_clear(&e);
    EXPECT_EQ_INT(CB_E_INVALID, cb_autofit("presets/llama32_1b_dba.yml", 5000000, &text, &r, &e));
    EXPECT(strstr(e.msg, "already has") != NULL);
    EXPECT(text == NULL);
    /* a manifest whose model is not written with the vars: said so */
    EXPECT_EQ_INT(CB_E_INVALID, cb_autofit("tests/cli/train/mlp.yml", 1000000, &text, &r, &e));
    EXPECT(strstr(e.msg, "d_model") != NULL);
    EXPECT_EQ_INT(124000000, cb_autofit_parse_count("124M"));
    EXPECT_EQ_INT(1200000000, cb_autofit_parse_count("1.2B"));
    EXPECT_EQ_INT(350000, cb_autofit_parse_count("350000"));
    EXPECT_EQ_INT(-1, cb_autofit_parse_count("12X"));
    EXPECT_EQ_INT(-1, cb_autofit_parse_count("-5M"));
}

/* the tiny test model of tests/cli/run/tiny.yml and its run a */
static int tiny_model(cb_model *m, cb_train_config *c, const json_t **train) {
    json_t *plan = compile_file("tests/cli/run/tiny.yml");
    if (!plan) return -1;
    const json_t *g = NULL, *r = NULL;
    cb_error e;
    if (cb_train_find_run(plan, "pipe", "a", &g, &r, &e) != CB_OK || cb_train_config_read(c, g, r, &e) != CB_OK ||
        cb_model_init(m, plan, 1, &e) != CB_OK) {
        json_decref(plan);
        return -1;
    }
    *train = json_object_get(r, "train");
    json_decref(plan); /* the model holds its own reference; r stays valid through it */
    return 0;
}

TEST(training_memory_is_affine_in_the_batch_and_grows_with_the_block) {
    cb_model m;
    static cb_train_config c;
    const json_t *train;
    EXPECT_EQ_INT(0, tiny_model(&m, &c, &train));
    double b1, b2, b3, t32;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_runtime_training_bytes(&m, CB_OPT_ADAMW, 1, 16, 0, 0, 0, &b1, &e));
    EXPECT_EQ_INT(CB_OK, cb_runtime_training_bytes(&m, CB_OPT_ADAMW, 2, 16, 0, 0, 0, &b2, &e));
    EXPECT_EQ_INT(CB_OK, cb_runtime_training_bytes(&m, CB_OPT_ADAMW, 3, 16, 0, 0, 0, &b3, &e));
    EXPECT_EQ_INT(CB_OK, cb_runtime_training_bytes(&m, CB_OPT_ADAMW, 1, 32, 0, 0, 0, &t32, &e));
    EXPECT_NEAR(b2 - b1, b3 - b2, 1e-6); /* so fixed + per_row * B is exact */
    EXPECT(t32 > b1);
    /* the weights, gradients and AdamW's two states alone: 4 floats a parameter */
    EXPECT(b1 > 16.0 * (double)m.params.total_floats);
    double sgd;
    EXPECT_EQ_INT(CB_OK, cb_runtime_training_bytes(&m, CB_OPT_SGD, 1, 16, 0, 0, 0, &sgd, &e));
    EXPECT_NEAR(4.0 * (double)m.params.total_floats, b1 - sgd, 1e-6);
    /* every block checkpointed: less, and still affine in the batch (one block's saved
       values, at the batch, in place of every block's) */
    double r1, r2, r3;
    EXPECT_EQ_INT(CB_OK, cb_runtime_training_bytes(&m, CB_OPT_ADAMW, 1, 16, 1, 0, 0, &r1, &e));
    EXPECT_EQ_INT(CB_OK, cb_runtime_training_bytes(&m, CB_OPT_ADAMW, 2, 16, 1, 0, 0, &r2, &e));
    EXPECT_EQ_INT(CB_OK, cb_runtime_training_bytes(&m, CB_OPT_ADAMW, 3, 16, 1, 0, 0, &r3, &e));
    EXPECT(r1 < b1 && r2 - r1 < b2 - b1);
    EXPECT_NEAR(r2 - r1, r3 - r2, 1e-6);
    cb_model_free(&m);
}

TEST(batch_fitted_to_the_budget_keeps_rows_per_step) {
    cb_model m;
    static cb_train_config c;
    const json_t *train;
    EXPECT_EQ_INT(0, tiny_model(&m, &c, &train));
    char dir[] = "/tmp/cbrt.XXXXXX", cache[256];
    EXPECT(mkdtemp(dir) != NULL);
    snprintf(cache, sizeof cache, "%s/runtime_plans.json", dir);
    c.batch_size = 8;
    c.grad_accum = 1;
    double b1, b2;
    cb_error e;
    cb_runtime_training_bytes(&m, c.optimizer.kind, 1, c.block_size, 0, 0, 0, &b1, &e);
    cb_runtime_training_bytes(&m, c.optimizer.kind, 2, c.block_size, 0, 0, 0, &b2, &e);
    double fixed = 2 * b1 - b2, row = b2 - b1;
    /* room for 5 rows: 4 divides the 8 rows of a step, grad_accum 2 makes them up */
    char budget[64];
    snprintf(budget, sizeof budget, "%.6f", (fixed + 5.5 * row) / 1048576.0);
    setenv("CB_MEMORY_BUDGET_MB", budget, 1);
    cb_runtime_plan rp;
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&rp, &m, train, &c, NULL, cache, 0, &e));
    EXPECT_EQ_INT(4, rp.batch_size);
    EXPECT_EQ_INT(2, rp.grad_accum);
    /* room for all: the manifest's */
    snprintf(budget, sizeof budget, "%.6f", (fixed + 9 * row) / 1048576.0);
    setenv("CB_MEMORY_BUDGET_MB", budget, 1);
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&rp, &m, train, &c, NULL, cache, 0, &e));
    EXPECT_EQ_INT(8, rp.batch_size);
    EXPECT_EQ_INT(1, rp.grad_accum);
    /* room for none */
    snprintf(budget, sizeof budget, "%.6f", fixed / 2 / 1048576.0);
    setenv("CB_MEMORY_BUDGET_MB", budget, 1);
    EXPECT_EQ_INT(CB_E_RUNTIME, cb_runtime_plan_decide(&rp, &m, train, &c, NULL, cache, 0, &e));
    EXPECT(strstr(e.msg, "does not fit") != NULL);
    unsetenv("CB_MEMORY_BUDGET_MB");
    EXPECT(access(cache, F_OK) != 0); /* nothing measured, nothing kept */
    rmdir(dir);
    cb_model_free(&m);
}

TEST(batch_auto_is_the_largest_that_fits_capped_by_the_data_and_ranks_and_cached) {
    cb_model m;
    static cb_train_config c;
    const json_t *train;
    EXPECT_EQ_INT(0, tiny_model(&m, &c, &train));
    char dir[] = "/tmp/cbrt.XXXXXX", cache[256];
    EXPECT(mkdtemp(dir) != NULL);
    snprintf(cache, sizeof cache, "%s/runtime_plans.json", dir);
    c.batch_auto = 1;
    c.batch_size = 0;
    c.grad_accum = 3;
    setenv("OMP_NUM_THREADS", "1", 1); /* no thread timing: this test is about the batch */
    double b1, b2;
    cb_error e;
    cb_runtime_training_bytes(&m, c.optimizer.kind, 1, c.block_size, 0, 0, 0, &b1, &e);
    cb_runtime_training_bytes(&m, c.optimizer.kind, 2, c.block_size, 0, 0, 0, &b2, &e);
    double fixed = 2 * b1 - b2, row = b2 - b1;
    char budget[64];
    cb_runtime_plan rp, again;
    /* room for 6.5 rows: 6; grad_accum stays 3; decided now and kept */
    snprintf(budget, sizeof budget, "%.6f", (fixed + 6.5 * row) / 1048576.0);
    setenv("CB_MEMORY_BUDGET_MB", budget, 1);
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&rp, &m, train, &c, NULL, cache, 1, &e));
    EXPECT_EQ_INT(6, rp.batch_size);
    EXPECT_EQ_INT(3, rp.grad_accum);
    EXPECT_EQ_INT(0, rp.batch_from_cache);
    EXPECT(strstr(rp.batch_why, "the largest that fits") != NULL);
    /* the same again: from the cache */
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&again, &m, train, &c, NULL, cache, 1, &e));
    EXPECT_EQ_INT(1, again.batch_from_cache);
    EXPECT_EQ_INT(6, again.batch_size);
    EXPECT_EQ_STR(rp.key, again.key);
    /* a larger budget is another key: a larger batch */
    snprintf(budget, sizeof budget, "%.6f", (fixed + 40.2 * row) / 1048576.0);
    setenv("CB_MEMORY_BUDGET_MB", budget, 1);
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&rp, &m, train, &c, NULL, cache, 1, &e));
    EXPECT_EQ_INT(40, rp.batch_size);
    EXPECT_EQ_INT(0, rp.batch_from_cache);
    /* capped by the data: 10 rows of the block; on 4 ranks a multiple of 4 */
    cb_runtime_env env = {.world = 1, .data_tokens = (size_t)c.block_size * 10 + 5};
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&rp, &m, train, &c, &env, cache, 0, &e));
    EXPECT_EQ_INT(10, rp.batch_size);
    EXPECT(strstr(rp.batch_why, "the data holds no more rows") != NULL);
    env.world = 4;
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&rp, &m, train, &c, &env, cache, 0, &e));
    EXPECT_EQ_INT(8, rp.batch_size);
    env.data_tokens = 0; /* the memory on each rank: 40 rows a rank, 160 in all */
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&rp, &m, train, &c, &env, cache, 0, &e));
    EXPECT_EQ_INT(160, rp.batch_size);
    /* room for none: the error, nothing kept */
    snprintf(budget, sizeof budget, "%.6f", (fixed + 0.5 * row) / 1048576.0);
    setenv("CB_MEMORY_BUDGET_MB", budget, 1);
    EXPECT_EQ_INT(CB_E_RUNTIME, cb_runtime_plan_decide(&rp, &m, train, &c, NULL, cache, 1, &e));
    EXPECT(strstr(e.msg, "does not fit the memory budget even at batch 1") != NULL);
    /* a cached batch that no longer fits is decided again: the 6 rows kept above, now room for 4 */
    snprintf(budget, sizeof budget, "%.6f", (fixed + 6.5 * row) / 1048576.0);
    setenv("CB_MEMORY_BUDGET_MB", budget, 1);
    json_t *doc = NULL;
    EXPECT_EQ_INT(CB_OK, cb_doc_load(cache, "runtime_plans", &doc, &e));
    json_t *entry = json_object_get(json_object_get(doc, "plans"), again.key);
    EXPECT(entry != NULL);
    json_object_set_new(entry, "batch_size", json_integer(7)); /* as if kept under more free memory */
    EXPECT_EQ_INT(CB_OK, cb_doc_save(doc, cache, &e));
    json_decref(doc);
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&rp, &m, train, &c, NULL, cache, 1, &e));
    EXPECT_EQ_INT(0, rp.batch_from_cache);
    EXPECT_EQ_INT(6, rp.batch_size);
    /* a bad budget is the user's error */
    setenv("CB_MEMORY_BUDGET_MB", "lots", 1);
    EXPECT_EQ_INT(CB_E_USAGE, cb_runtime_plan_decide(&rp, &m, train, &c, NULL, cache, 0, &e));
    unsetenv("CB_MEMORY_BUDGET_MB");
    unsetenv("OMP_NUM_THREADS");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    EXPECT_EQ_INT(0, system(cmd));
    cb_model_free(&m);
}

TEST(the_host_memory_is_known_and_the_budget_leaves_headroom) {
    cb_backend *cpu = cb_backend_cpu();
    size_t free_bytes = 0, total = 0;
    cb_error e;
    EXPECT(cpu->memory_info != NULL);
    EXPECT_EQ_INT(CB_OK, cpu->memory_info(cpu, &free_bytes, &total, &e));
    EXPECT(total > 0 && free_bytes > 0 && free_bytes <= total);
    unsetenv("CB_MEMORY_BUDGET_MB");
    double mb;
    char why[128];
    EXPECT_EQ_INT(CB_OK, cb_runtime_memory_budget(NULL, &mb, why, sizeof why, &e));
    /* half of what was available a moment ago; free memory moves, so within a quarter */
    EXPECT(mb > 0.25 * (double)free_bytes / 1048576.0 && mb < 0.75 * (double)free_bytes / 1048576.0);
    EXPECT(strstr(why, "half of the") != NULL);
}

TEST(thread_decision_measured_once_then_reused) {
    cb_model m;
    static cb_train_config c;
    const json_t *train;
    EXPECT_EQ_INT(0, tiny_model(&m, &c, &train));
    char dir[] = "/tmp/cbrt.XXXXXX", cache[256];
    EXPECT(mkdtemp(dir) != NULL);
    snprintf(cache, sizeof cache, "%s/sub/runtime_plans.json", dir);
    unsetenv("OMP_NUM_THREADS");
    cb_runtime_plan a, b;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&a, &m, train, &c, NULL, cache, 1, &e));
    EXPECT_EQ_INT(0, a.from_cache);
    EXPECT(a.n_measured >= 1 && a.measured_threads[0] == 1 && a.measured_ms[0] > 0);
    EXPECT(a.threads >= 1);
    EXPECT_EQ_STR("not applicable (cpu)", a.cuda_graphs);
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&b, &m, train, &c, NULL, cache, 1, &e));
    EXPECT_EQ_INT(1, b.from_cache);
    EXPECT_EQ_STR(a.key, b.key);
    EXPECT_EQ_INT(a.threads, b.threads);
    EXPECT_EQ_INT(a.n_measured, b.n_measured);
    /* another batch is another key: measured again */
    c.batch_size = 3;
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&b, &m, train, &c, NULL, cache, 1, &e));
    EXPECT_EQ_INT(0, b.from_cache);
    EXPECT(strcmp(a.key, b.key) != 0);
    /* a broken cache: decided again, the file replaced by a readable one */
    FILE *f = fopen(cache, "w");
    fputs("{\"plans\": not json", f);
    fclose(f);
    c.batch_size = 2;
    EXPECT_EQ_INT(CB_OK, cb_runtime_plan_decide(&b, &m, train, &c, NULL, cache, 1, &e));
    EXPECT_EQ_INT(0, b.from_cache);
    json_t *doc = NULL;
    EXPECT_EQ_INT(CB_OK, cb_doc_load(cache, "runtime_plans", &doc, &e));
    EXPECT(json_object_get(json_object_get(doc, "plans"), b.key) != NULL);
    json_decref(doc);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    EXPECT_EQ_INT(0, system(cmd));
    cb_model_free(&m);
}
