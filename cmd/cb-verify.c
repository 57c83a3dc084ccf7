/* cb-verify: check a student model against its teacher as a run's verify block asks
 * (compare, fidelity or eval) and write verify.json; the exit status is the verdict. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "cli/cli.h"
#include "core/json_doc.h"
#include "verify/spec.h"
#include "verify/verify.h"

static const char *TOOL = "cb-verify";

#define MAX_SUITES 64

/* Progress on stderr: redrawn in place on a terminal, else a plain line at every tenth of
 * the steps and at the end (docs/DESIGN.md section 3). */
static void show_progress(void *ctx, const char *what, int done, int total) {
    int tty = *(const int *)ctx;
    if (tty) {
        fprintf(stderr, "\r%s: %s %d/%d%s", TOOL, what, done, total, done == total ? "\n" : "");
        return;
    }
    int every = total >= 10 ? total / 10 : 1;
    if (done % every == 0 || done == total) fprintf(stderr, "%s: %s %d/%d\n", TOOL, what, done, total);
}

static void usage(void) {
    printf("usage: cb-verify [--group G] [--run R] --teacher DIR --student DIR [--data tokens.npy]\n"
           "       [--suite suite.yml] [-o verify.json] [--quiet] plan\n"
           "Check a student model against its teacher as the run's verify block in the plan asks:\n"
           "compare (L1 of attention outputs and logits), fidelity (NLL and perplexity ratio) or\n"
           "eval (behavioural cases). Writes verify.json (stdout without -o) with every number,\n"
           "the thresholds, the warnings and the verdict. Exit 0 pass (or failed checks under\n"
           "fail_fast false, as warnings), 1 a check failed under fail_fast true.\n");
}

int main(int argc, char **argv) {
    if (cb_cli_start(TOOL, argc, argv, CB_CLI_COMPUTE)) return cb_cli_close_stdout(TOOL);
    signal(SIGXFSZ, SIG_IGN); /* a full disk or a file-size limit fails the write, reported */
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'},          {"group", required_argument, 0, 'g'},
        {"run", required_argument, 0, 'r'},     {"teacher", required_argument, 0, 't'},
        {"student", required_argument, 0, 's'}, {"data", required_argument, 0, 'd'},
        {"suite", required_argument, 0, 'S'},   {"output", required_argument, 0, 'o'},
        {"quiet", no_argument, 0, 'q'},         {0, 0, 0, 0}};
    const char *group = NULL, *run = NULL, *out = NULL, *suites[MAX_SUITES];
    cb_verify_inputs in = {0};
    int quiet = 0, c, n_suites = 0;
    while ((c = getopt_long(argc, argv, "ho:q", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(); return 0;
        case 'g': group = optarg; break;
        case 'r': run = optarg; break;
        case 't': in.teacher_dir = optarg; break;
        case 's': in.student_dir = optarg; break;
        case 'd': in.data = optarg; break;
        case 'o': out = optarg; break;
        case 'q': quiet = 1; break;
        case 'S':
            if (n_suites == MAX_SUITES) return cb_cli_usage_error(TOOL, "--suite: at most %d files", MAX_SUITES);
            suites[n_suites++] = optarg;
            break;
        default: return cb_cli_usage_error(TOOL, "unknown option");
        }
    }
    if (argc - optind != 1) return cb_cli_usage_error(TOOL, argc - optind ? "one plan, please" : "no plan given");
    if (!in.student_dir) return cb_cli_usage_error(TOOL, "--student DIR is required");
    in.suites = suites;
    in.n_suites = n_suites;
    int tty = isatty(STDERR_FILENO);
    if (!quiet) in.progress = (cb_verify_progress){.fn = show_progress, .ctx = &tty};
    cb_cli_note_kernels(TOOL, quiet);

    cb_error e;
    cb_error_clear(&e);
    json_t *plan = NULL, *doc = NULL;
    cb_verify_spec spec;
    int status = 0;
    if (cb_doc_load(argv[optind], "plan", &plan, &e) != CB_OK) return cb_cli_report(TOOL, &e);
    int rc = cb_verify_spec_read(&spec, plan, group, run, &e);
    json_decref(plan);
    if (rc != CB_OK) return cb_cli_report(TOOL, &e);
    rc = cb_verify_run(&doc, &status, &spec, &in, &e);
    if (rc == CB_OK) rc = cb_doc_save(doc, out, &e);
    if (rc == CB_OK && !quiet) {
        const char *verdict = json_string_value(json_object_get(doc, "verdict"));
        fprintf(stderr, "%s: %s %s/%s: %s (%lld of %zu checks failed, %zu warnings)\n", TOOL,
                cb_verify_type_name(spec.type), spec.group, spec.run, verdict,
                (long long)json_integer_value(json_object_get(doc, "checks_failed")),
                json_array_size(json_object_get(doc, "checks")), json_array_size(json_object_get(doc, "warnings")));
    }
    json_decref(doc);
    cb_verify_spec_free(&spec);
    if (rc != CB_OK) return cb_cli_report(TOOL, &e);
    if (!out && cb_cli_close_stdout(TOOL)) return 2;
    return status;
}
