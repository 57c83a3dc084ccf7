/* cb-artifacts: an experiment's results (cb-bench JSON lines, cb-verify's verify.json,
 * cb-train run directories) into a folder of paper-ready artifacts, DIR/NAME_TIMESTAMP/:
 * report.json, CSVs, gnuplot charts, LaTeX and Markdown tables. A thin main over
 * lib/artifacts. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "artifacts/artifacts.h"
#include "bench/bench.h"
#include "bench/results_json.h"
#include "cli/cli.h"
#include "core/atomic_dir.h"
#include "core/json_doc.h"

static const char *TOOL = "cb-artifacts";

static void usage(void) {
    printf("usage: cb-artifacts [-o DIR] [--plan PLAN] [--group G] [--name NAME] RESULT_FILE ...\n"
           "Write DIR/NAME_TIMESTAMP/ (DIR: artifacts) from cb-bench results (JSON lines), cb-verify's\n"
           "verify.json and cb-train run directories (metrics.jsonl): report.json, perplexity.csv,\n"
           "latency.csv, memory.csv, summary.png, latency_vs_context.png, memory_scaling.png (gnuplot),\n"
           "tables.tex and tables.md. Prints the folder's path. More in cb-artifacts(1).\n");
}

typedef struct opts {
    const char *out, *plan, *group, *name;
    char **inputs;
    int n_inputs;
} opts;

static int valid_name(const char *s) {
    return s[0] && s[0] != '.' &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == strlen(s);
}

static int parse_args(int argc, char **argv, opts *o) {
    static const struct option table[] = {{"output", required_argument, 0, 'o'}, {"plan", required_argument, 0, 'p'},
                                          {"group", required_argument, 0, 'g'},  {"name", required_argument, 0, 'n'},
                                          {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    opterr = 0;
    int c;
    o->out = "artifacts";
    while ((c = getopt_long(argc, argv, "ho:", table, NULL)) != -1) {
        switch (c) {
        case 'h': usage(); return 0;
        case 'o': o->out = optarg; break;
        case 'p': o->plan = optarg; break;
        case 'g': o->group = optarg; break;
        case 'n':
            if (!valid_name(optarg))
                return cb_cli_usage_error(TOOL, "--name: want letters, digits, _ . - (a file name): %s", optarg);
            o->name = optarg;
            break;
        default: return cb_cli_usage_error(TOOL, "unknown or incomplete option %s", argv[optind - 1]);
        }
    }
    if (o->group && !o->plan) return cb_cli_usage_error(TOOL, "--group goes with --plan");
    if (optind == argc) return cb_cli_usage_error(TOOL, "no result files");
    o->inputs = argv + optind;
    o->n_inputs = argc - optind;
    return -1;
}

/* The creation time: SOURCE_DATE_EPOCH where set (reproducible outputs), else now. */
static time_t created_at(void) {
    const char *s = getenv("SOURCE_DATE_EPOCH");
    char *end;
    if (s && *s) {
        long long v = strtoll(s, &end, 10);
        if (!*end && v >= 0) return (time_t)v;
    }
    return time(NULL);
}

static int write_all(const opts *o, const cb_artifacts_input *in, const json_t *plan, char *final_path, size_t cap,
                     int *plot_rc, cb_error *plot_err, cb_error *e) {
    double t0 = cb_bench_now();
    const char *name = o->name ? o->name
                       : plan && json_string_value(json_object_get(plan, "name")) && valid_name(json_string_value(json_object_get(plan, "name")))
                           ? json_string_value(json_object_get(plan, "name"))
                           : "results";
    time_t now = created_at();
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32], iso[32];
    strftime(stamp, sizeof stamp, "%Y%m%d_%H%M%S", &tm);
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    struct stat st;
    if (mkdir(o->out, 0755) != 0 && errno != EEXIST) return cb_fail(e, CB_E_IO, o->out, "cannot create: %s", strerror(errno));
    if (stat(o->out, &st) != 0 || !S_ISDIR(st.st_mode)) return cb_fail(e, CB_E_IO, o->out, "not a directory");
    if ((size_t)snprintf(final_path, cap, "%s/%s_%s", o->out, name, stamp) >= cap)
        return cb_fail(e, CB_E_USAGE, o->out, "path too long");
    json_t *models = cb_artifacts_models(in);
    json_t *compare = cb_artifacts_compare(in, models);
    json_t *plots = json_object();
    cb_atomic_dir d;
    int rc = cb_atomic_dir_open(&d, final_path, "report.json", e);
    if (rc == CB_OK) rc = cb_artifacts_write_csvs(in, d.tmp_path, e);
    char caption[300];
    snprintf(caption, sizeof caption, "%s: %s", name, json_array_size(models) == 2 ? "teacher and student" : "results");
    if (json_array_size(models) == 2)
        snprintf(caption, sizeof caption, "%s: %s against %s", name, json_string_value(json_array_get(models, 0)),
                 json_string_value(json_array_get(models, 1)));
    if (rc == CB_OK) rc = cb_artifacts_write_tables(compare, models, in, caption, d.tmp_path, e);
    if (rc == CB_OK) {
        *plot_rc = cb_artifacts_plot(in, compare, models, d.tmp_path, NULL, plots, plot_err);
        if (*plot_rc != CB_OK) {
            const char *all[] = {"summary.png", "latency_vs_context.png", "memory_scaling.png"};
            for (int k = 0; k < 3; k++)
                if (!json_object_get(plots, all[k])) {
                    char why[1200];
                    snprintf(why, sizeof why, "not drawn: %s", plot_err->msg);
                    json_object_set_new(plots, all[k], json_string(why));
                }
        }
        cb_report_meta meta = {.name = name, .created = iso, .plan = plan, .group = o->group,
                               .wall_s = cb_bench_now() - t0};
        json_t *report = cb_artifacts_report(in, compare, models, plots, &meta);
        char path[4400];
        snprintf(path, sizeof path, "%s/report.json", d.tmp_path);
        rc = cb_doc_save(report, path, e);
        json_decref(report);
    }
    if (rc == CB_OK) rc = cb_atomic_dir_commit(&d, e);
    else cb_atomic_dir_abort(&d);
    json_decref(plots);
    json_decref(compare);
    json_decref(models);
    return rc;
}

int main(int argc, char **argv) {
    if (cb_cli_start(TOOL, argc, argv, 0)) return cb_cli_close_stdout(TOOL);
    signal(SIGXFSZ, SIG_IGN);
    opts o;
    memset(&o, 0, sizeof o);
    int status = parse_args(argc, argv, &o);
    if (status >= 0) return status;
    cb_error e;
    cb_error_clear(&e);
    cb_artifacts_input in;
    cb_artifacts_input_init(&in);
    json_t *plan = NULL;
    int rc = CB_OK;
    if (o.plan) {
        rc = cb_doc_load(o.plan, "plan", &plan, &e);
        const json_t *g;
        if (rc == CB_OK && o.group) rc = cb_bench_find_group(plan, o.group, &g, &e);
        if (rc != CB_OK && !e.where[0]) snprintf(e.where, sizeof e.where, "%s", o.plan);
    }
    for (int i = 0; rc == CB_OK && i < o.n_inputs; i++) rc = cb_artifacts_read(&in, o.inputs[i], &e);
    char final_path[4400];
    int plot_rc = CB_OK;
    cb_error plot_err;
    cb_error_clear(&plot_err);
    if (rc == CB_OK) rc = write_all(&o, &in, plan, final_path, sizeof final_path, &plot_rc, &plot_err, &e);
    cb_artifacts_input_free(&in);
    json_decref(plan);
    if (rc != CB_OK) return cb_cli_report(TOOL, &e);
    printf("%s\n", final_path);
    int out_rc = cb_cli_close_stdout(TOOL);
    if (plot_rc != CB_OK) return cb_cli_report(TOOL, &plot_err); /* the rest was written: say what is missing */
    return out_rc;
}
