/* test_experiment.c: what decides whether `cb run` redoes a stage (canonical JSON, stage
 * hashes over files and directories, stamp files), the shell quoting of the Makefile, and
 * the stage graph of a group. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/diag.h"
#include "core/json_doc.h"
#include "experiment/graph.h"
#include "experiment/makefile.h"
#include "experiment/stamps.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "plan/validate.h"

static void hash_json(const char *text, char hex[65]) {
    json_t *v = json_loads(text, 0, NULL);
    cb_sha256 s;
    cb_sha256_init(&s);
    cb_stamp_add_json(&s, "x", v);
    cb_stamp_hex(&s, hex);
    json_decref(v);
}

TEST(canonical_json_ignores_order_and_locations) {
    char a[65], b[65], c[65], d[65];
    hash_json("{\"lr\": 0.001, \"steps\": 20, \"@loc\": {\"\": \"m.yml:3:5\"}}", a);
    hash_json("{\"steps\": 20, \"@loc\": {\"\": \"other.yml:9:1\", \"lr\": \"x:1:1\"}, \"lr\": 0.001}", b);
    hash_json("{\"steps\": 21, \"lr\": 0.001}", c);
    hash_json("{\"steps\": 20, \"lr\": 0.0010000000000000002}", d);
    EXPECT_EQ_STR(a, b);
    EXPECT(strcmp(a, c) != 0);
    EXPECT(strcmp(a, d) != 0); /* 17 significant digits: a value one ulp away is another value */
    json_t *nested = json_loads("{\"b\": [{\"@loc\": {}, \"z\": 1, \"y\": 2}], \"a\": null}", 0, NULL);
    char *text = cb_stamp_canonical_json(nested);
    EXPECT_EQ_STR("{\"a\":null,\"b\":[{\"y\":2,\"z\":1}]}", text);
    free(text);
    json_decref(nested);
}

TEST(stamp_items_are_separated) {
    char x[65], y[65];
    cb_sha256 s;
    cb_sha256_init(&s);
    cb_stamp_add(&s, "arg", "ab");
    cb_stamp_add(&s, "arg", "c");
    cb_stamp_hex(&s, x);
    cb_sha256_init(&s);
    cb_stamp_add(&s, "arg", "a");
    cb_stamp_add(&s, "arg", "bc");
    cb_stamp_hex(&s, y);
    EXPECT(strcmp(x, y) != 0);
}

static void hash_path(const char *path, char hex[65]) {
    cb_sha256 s;
    cb_sha256_init(&s);
    cb_stamp_add_path(&s, "input", path);
    cb_stamp_hex(&s, hex);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

TEST(path_hash_follows_content) {
    char dir[] = "/tmp/cbstamp.XXXXXX";
    EXPECT(mkdtemp(dir) != NULL);
    char file[256], sub[256], h0[65], h1[65], h2[65], h3[65], h4[65], h5[65], missing[65];
    snprintf(file, sizeof file, "%s/data.tokens", dir);
    write_text(file, "1 2 3\n");
    hash_path(file, h0);
    write_text(file, "1 2 3\n"); /* rewritten with the same bytes: the same hash */
    hash_path(file, h1);
    write_text(file, "1 2 4\n");
    hash_path(file, h2);
    EXPECT_EQ_STR(h0, h1);
    EXPECT(strcmp(h0, h2) != 0);
    /* a directory (a checkpoint): each file counts, temporaries of writers (".name") do not */
    snprintf(sub, sizeof sub, "%s/ckpt", dir);
    mkdir(sub, 0777);
    snprintf(file, sizeof file, "%s/ckpt/model.safetensors", dir);
    write_text(file, "weights");
    hash_path(sub, h3);
    snprintf(file, sizeof file, "%s/ckpt/.model.safetensors.tmp.123", dir);
    write_text(file, "half written");
    hash_path(sub, h4);
    EXPECT_EQ_STR(h3, h4);
    snprintf(file, sizeof file, "%s/ckpt/optimizer.safetensors", dir);
    write_text(file, "state");
    hash_path(sub, h5);
    EXPECT(strcmp(h3, h5) != 0);
    snprintf(file, sizeof file, "%s/none", dir);
    hash_path(file, missing);
    EXPECT(strcmp(missing, h0) != 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    EXPECT_EQ_INT(0, system(cmd));
}

TEST(stamp_written_only_when_it_changes) {
    char dir[] = "/tmp/cbstamp.XXXXXX";
    EXPECT(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/train-a.want", dir);
    const char *h = "3f0c1d2e3f0c1d2e3f0c1d2e3f0c1d2e3f0c1d2e3f0c1d2e3f0c1d2e3f0c1d2e";
    cb_error e;
    cb_error_clear(&e);
    EXPECT(!cb_stamp_matches(path, h));
    EXPECT_EQ_INT(CB_OK, cb_stamp_write(path, h, &e));
    EXPECT(cb_stamp_matches(path, h));
    struct stat st0, st1, st2;
    stat(path, &st0);
    EXPECT_EQ_INT(CB_OK, cb_stamp_write(path, h, &e));
    stat(path, &st1);
    /* the same hash: the file is not replaced, so make sees nothing new */
    EXPECT_EQ_INT(st0.st_ino, st1.st_ino);
    EXPECT_EQ_INT(CB_OK, cb_stamp_write(path, "00", &e));
    stat(path, &st2);
    EXPECT(st0.st_ino != st2.st_ino);
    EXPECT(!cb_stamp_matches(path, h));
    unlink(path);
    rmdir(dir);
}

/* what sh makes of a quoted word is the word */
static void check_quote(const char *word) {
    char q[512], cmd[1024];
    size_t len = 0;
    EXPECT_EQ_INT(0, cb_shell_quote(q, sizeof q, &len, word, 0));
    snprintf(cmd, sizeof cmd, "printf '%%s' %s", q);
    FILE *p = popen(cmd, "r");
    char got[512] = "";
    size_t n = p ? fread(got, 1, sizeof got - 1, p) : 0;
    if (p) pclose(p);
    got[n] = 0;
    if (strcmp(got, word) != 0) FAILF("quoted %s, sh gave back \"%s\" for \"%s\"", q, got, word);
}

TEST(shell_quote_round_trips) {
    check_quote("plain/path-1.0_x=y");
    check_quote("Mr. Speaker, it's $HOME \"quoted\" `cmd` \\ ; & | * ?");
    check_quote("");
    char q[64];
    size_t len = 0;
    EXPECT_EQ_INT(0, cb_shell_quote(q, sizeof q, &len, "a$b", 1));
    EXPECT_EQ_STR("'a$$b'", q); /* for make, $ is doubled */
    len = 0;
    EXPECT_EQ_INT(-1, cb_shell_quote(q, 4, &len, "too long a word", 0));
}

static json_t *compile_text(const char *yaml) {
    char path[] = "/tmp/cbgraph.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "w");
    fputs(yaml, f);
    fclose(f);
    json_t *doc = NULL, *lowered = NULL, *plan = NULL;
    cb_error e;
    cb_diags d;
    cb_diags_init(&d);
    if (cb_yaml_parse_file(path, &doc, &e) == CB_OK && cb_lower(doc, &lowered, &d) == CB_OK)
        cb_validate(lowered, &plan, &d);
    for (int i = 0; i < d.n; i++) fprintf(stderr, "  %s\n", d.items[i].msg);
    cb_diags_free(&d);
    json_decref(doc);
    json_decref(lowered);
    unlink(path);
    return plan;
}

static const char model_yaml[] =
    "version: 1\nname: g\nmodel:\n  type: TransformerModel\n  embedder: {type: token, vocab_size: 32, d_model: 8}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n      - {type: RMSNormLayer, d_model: 8}\n";

TEST(graph_orders_runs_and_their_dependencies) {
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "%sgroups:\n  - name: g1\n    data: d.npy\n    runs:\n"
             "      - {id: t, steps: 2, train: {block_size: 4}}\n"
             "      - {id: s, steps: 2, train: {block_size: 4, teacher: {run: t}}, verify: {type: fidelity}}\n"
             "      - {id: gen, mode: sample, from_run: s, prompt: \"hi\\nthere\", generate: {top_k: 5, cache_kind: q8_0}}\n"
             "    benchmarks:\n      - {id: ppl, config: {type: perplexity, dataset: v.npy}, models: [teacher, student, t]}\n"
             "  - name: g2\n    runs:\n      - {id: x, steps: 1, train: {data: d.npy}}\n",
             model_yaml);
    json_t *plan = compile_text(yaml);
    EXPECT(plan != NULL);
    if (!plan) return;
    const json_t *group = NULL;
    cb_error e;
    cb_error_clear(&e);
    EXPECT_EQ_INT(CB_E_USAGE, cb_graph_find_group(plan, "nope", &group, &e));
    EXPECT(strstr(e.msg, "no group nope (the manifest has g1, g2)") != NULL);
    EXPECT_EQ_INT(CB_E_USAGE, cb_graph_find_group(plan, NULL, &group, &e));
    EXPECT_EQ_INT(CB_OK, cb_graph_find_group(plan, "g1", &group, &e));
    cb_graph g;
    EXPECT_EQ_INT(CB_OK, cb_graph_build(&g, plan, group, "/x/exp", NULL, &e));
    static const char *const want[] = {"build-t", "train-t", "build-s", "train-s", "verify-s", "build-gen",
                                       "sample-gen", "bench-ppl", "artifacts"};
    EXPECT_EQ_INT(9, g.n);
    for (int i = 0; i < g.n && i < 9; i++) EXPECT_EQ_STR(want[i], g.stages[i].id);
    /* every dependency comes earlier; the ones that matter are there */
    for (int i = 0; i < g.n; i++)
        for (int k = 0; k < g.stages[i].n_deps; k++) EXPECT(g.stages[i].deps[k] < i);
#define DEPENDS(a, b)                                                                         \
    do {                                                                                      \
        int ia = cb_graph_find(&g, a), ib = cb_graph_find(&g, b), hit = 0;                    \
        for (int k = 0; ia >= 0 && k < g.stages[ia].n_deps; k++) hit |= g.stages[ia].deps[k] == ib; \
        if (!hit) FAILF("%s does not wait for %s", a, b);                                     \
    } while (0)
    DEPENDS("train-t", "build-t");
    DEPENDS("train-s", "train-t");
    DEPENDS("verify-s", "train-s");
    DEPENDS("verify-s", "train-t");
    DEPENDS("sample-gen", "train-s");
    DEPENDS("bench-ppl", "train-t");
    DEPENDS("bench-ppl", "train-s");
    DEPENDS("artifacts", "bench-ppl");
    DEPENDS("artifacts", "verify-s");
    EXPECT_EQ_STR("/x/exp/runs/t/final", g.teacher);
    EXPECT_EQ_STR("/x/exp/runs/s/final", g.student);
    /* the sample's settings became cb-generate options; the prompt keeps its newline */
    int gen = cb_graph_find(&g, "sample-gen"), found = 0;
    for (int k = 0; gen >= 0 && k + 1 < g.stages[gen].n_args; k++) {
        found += strcmp(g.stages[gen].args[k], "--top-k") == 0 && strcmp(g.stages[gen].args[k + 1], "5") == 0;
        found += strcmp(g.stages[gen].args[k], "--cache-kind") == 0 && strcmp(g.stages[gen].args[k + 1], "q8_0") == 0;
        found += strcmp(g.stages[gen].args[k], "--prompt") == 0 && strcmp(g.stages[gen].args[k + 1], "hi\nthere") == 0;
    }
    EXPECT_EQ_INT(3, found);
    EXPECT_EQ_STR("/x/exp/runs/s/final", g.stages[gen].args[g.stages[gen].n_args - 1]);
    /* the datasets are the inputs that count for training and the benchmark */
    int bench = cb_graph_find(&g, "bench-ppl");
    EXPECT(bench >= 0 && g.stages[bench].n_inputs == 1 && strcmp(g.stages[bench].inputs[0], "v.npy") == 0);
    cb_graph_free(&g);
    json_decref(plan);
}

TEST(graph_refuses_a_teacher_nobody_has) {
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "%sgroups:\n  - name: g1\n    data: d.npy\n    runs:\n      - {id: t, steps: 2, train: {block_size: 4}}\n"
             "    benchmarks:\n      - {id: ppl, config: {type: perplexity}, models: [teacher]}\n",
             model_yaml);
    json_t *plan = compile_text(yaml);
    EXPECT(plan != NULL);
    if (!plan) return;
    const json_t *group = NULL;
    cb_error e;
    cb_error_clear(&e);
    EXPECT_EQ_INT(CB_OK, cb_graph_find_group(plan, NULL, &group, &e));
    cb_graph g;
    EXPECT_EQ_INT(CB_E_INVALID, cb_graph_build(&g, plan, group, "/x/exp", NULL, &e));
    EXPECT(strstr(e.msg, "names the teacher") != NULL);
    EXPECT(strstr(e.where, ":") != NULL); /* the manifest line of models */
    json_decref(plan);
}
