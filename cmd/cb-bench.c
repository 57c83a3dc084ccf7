/* cb-bench: run a plan's benchmarks (a group's benchmarks:, or a custom suite file) on model
 * directories, one JSON line per measurement. A thin main over lib/bench. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "bench/custom.h"
#include "bench/machine.h"
#include "bench/results_json.h"
#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "core/sha256.h"
#include "manifest/yaml_parse.h"

static const char *TOOL = "cb-bench";
#define MAX_MODELS 32

static void usage(void) {
    printf("usage: cb-bench [--group G] [--bench ID] --model NAME=DIR [--model NAME=DIR ...]\n"
           "       [--data tokens.npy] [--device D] [-o results.jsonl] [--quiet] PLAN\n"
           "Run the benchmarks of a plan's group (perplexity, latency, memory, accuracy, generation,\n"
           "custom) on model directories, or a custom suite file (benchmark: YAML) on every model\n"
           "given; one JSON line per measurement on stdout or -o. More in cb-bench(1).\n");
}

typedef struct opts {
    const char *group, *bench, *data, *device, *out, *plan;
    int quiet;
    cb_bench_model *models;
    int n_models;
} opts;

static int parse_model(opts *o, const char *arg) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) return cb_cli_usage_error(TOOL, "--model: want NAME=DIR, not %s", arg);
    if (o->n_models == MAX_MODELS) return cb_cli_usage_error(TOOL, "--model: at most %d models", MAX_MODELS);
    cb_bench_model *m = &o->models[o->n_models];
    size_t n = (size_t)(eq - arg);
    if (n >= sizeof m->name || strlen(eq + 1) >= sizeof m->dir) return cb_cli_usage_error(TOOL, "--model: too long: %s", arg);
    memcpy(m->name, arg, n);
    m->name[n] = 0;
    snprintf(m->dir, sizeof m->dir, "%s", eq + 1);
    for (int i = 0; i < o->n_models; i++)
        if (strcmp(o->models[i].name, m->name) == 0) return cb_cli_usage_error(TOOL, "--model: %s given twice", m->name);
    o->n_models++;
    return -1;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, opts *o) {
    static const struct option table[] = {
        {"group", required_argument, 0, 'g'}, {"bench", required_argument, 0, 'b'},
        {"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
        {"device", required_argument, 0, 'D'}, {"output", required_argument, 0, 'o'},
        {"quiet", no_argument, 0, 'q'},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "ho:q", table, NULL)) != -1) {
        int st;
        switch (c) {
        case 'h': usage(); return 0;
        case 'g': o->group = optarg; break;
        case 'b': o->bench = optarg; break;
        case 'm': if ((st = parse_model(o, optarg)) >= 0) return st; break;
        case 'd': o->data = optarg; break;
        case 'D': o->device = optarg; break;
        case 'o': o->out = optarg; break;
        case 'q': o->quiet = 1; break;
        default: return cb_cli_usage_error(TOOL, "unknown or incomplete option %s", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return cb_cli_usage_error(TOOL, argc == optind ? "a plan is required" : "one plan, not %d arguments", argc - optind);
    o->plan = argv[optind];
    if (o->n_models == 0) return cb_cli_usage_error(TOOL, "no model: give --model NAME=DIR");
    return -1;
}

typedef struct sink_state {
    cb_atomic_file out;
} sink_state;

static int emit_line(void *ctx, const json_t *rec, cb_error *e) {
    sink_state *s = ctx;
    char *text = json_dumps(rec, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!text) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    int ok = fprintf(s->out.fp, "%s\n", text) >= 0;
    free(text);
    if (s->out.is_stdout) fflush(s->out.fp);
    if (!ok) return cb_fail(e, CB_E_IO, s->out.is_stdout ? "<stdout>" : s->out.path, "write failed");
    return CB_OK;
}

static void progress(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "%s: %s\n", TOOL, line);
}

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

/* The benchmarks to run: a plan's (group, --bench), or a suite file's one custom benchmark
 * over every model given. */
static int load_input(const opts *o, cb_bench_ctx *c, json_t **doc, json_t **list, cb_error *e) {
    if (has_suffix(o->plan, ".yml") || has_suffix(o->plan, ".yaml")) {
        cb_bench_suite s;
        CB_TRY(cb_bench_suite_load(&s, o->plan, e));
        if (o->bench && strcmp(o->bench, s.id) != 0) {
            int rc = cb_fail(e, CB_E_USAGE, o->plan, "the suite is %s, not %s (--bench)", s.id, o->bench);
            cb_bench_suite_free(&s);
            return rc;
        }
        json_t *models = json_array();
        for (int i = 0; i < o->n_models; i++) json_array_append_new(models, json_string(o->models[i].name));
        *doc = json_pack("{s:[{s:s, s:[{s:s, s:{s:s, s:s}, s:o}]}]}", "groups", "name", "suite", "benchmarks", "id",
                         s.id, "config", "type", "custom", "suite", o->plan, "models", models);
        snprintf(c->plan_sha256, sizeof c->plan_sha256, "%s", s.sha256);
        cb_bench_suite_free(&s);
        c->plan = *doc;
        c->group = json_array_get(json_object_get(*doc, "groups"), 0);
        return cb_bench_select(c->group, NULL, list, e);
    }
    CB_TRY(cb_doc_load(o->plan, "plan", doc, e));
    c->plan = *doc;
    if (cb_bench_plan_sha256(*doc, c->plan_sha256) != 0) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    CB_TRY(cb_bench_find_group(*doc, o->group, &c->group, e));
    return cb_bench_select(c->group, o->bench, list, e);
}

static int main_run(opts *o, cb_bench_ctx *c, sink_state *sink, cb_error *e) {
    json_t *doc = NULL, *list = NULL;
    int rc = load_input(o, c, &doc, &list, e);
    for (size_t i = 0; rc == CB_OK && i < json_array_size(list); i++) rc = cb_bench_check(c, json_array_get(list, i), e);
    for (size_t i = 0; rc == CB_OK && i < json_array_size(list); i++) rc = cb_bench_open_models(c, json_array_get(list, i), e);
    int opened = 0;
    if (rc == CB_OK) {
        c->machine = cb_machine_describe(c->be ? c->be->name : "cpu");
        rc = cb_atomic_open(&sink->out, o->out, e);
        opened = rc == CB_OK;
    }
    for (size_t i = 0; rc == CB_OK && i < json_array_size(list); i++) rc = cb_bench_run(c, json_array_get(list, i), e);
    if (opened) {
        if (rc == CB_OK) rc = cb_atomic_commit(&sink->out, e);
        else cb_atomic_abort(&sink->out);
    }
    json_decref(c->machine);
    c->machine = NULL;
    json_decref(list);
    json_decref(doc);
    return rc;
}

int main(int argc, char **argv) {
    if (cb_cli_start(TOOL, argc, argv, CB_CLI_COMPUTE)) return cb_cli_close_stdout(TOOL);
    signal(SIGXFSZ, SIG_IGN);
    static cb_bench_model models[MAX_MODELS];
    opts o;
    memset(&o, 0, sizeof o);
    o.models = models;
    int status = parse_args(argc, argv, &o);
    if (status >= 0) return status;
    cb_cli_note_kernels(TOOL, o.quiet);
    cb_error e;
    cb_error_clear(&e);
    cb_bench_ctx c;
    memset(&c, 0, sizeof c);
    c.models = models;
    c.n_models = o.n_models;
    c.data = o.data;
    if (o.device && cb_backend_open(o.device, &c.be, &e) != CB_OK) return cb_cli_usage_error(TOOL, "--device: %s", e.msg);
    if (!o.quiet) c.progress = progress;
    sink_state sink;
    memset(&sink, 0, sizeof sink);
    c.sink.emit = emit_line;
    c.sink.ctx = &sink;
    int rc = main_run(&o, &c, &sink, &e);
    cb_bench_models_free(models, o.n_models);
    if (rc != CB_OK) {
        fflush(stdout);
        return cb_cli_report(TOOL, &e);
    }
    return cb_cli_close_stdout(TOOL);
}
