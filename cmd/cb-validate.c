/* cb-validate: a lowered manifest checked (schema, then shapes through the topology)
 * and made into its plan document (man/cb-validate.1, man/cb-plan.5). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "core/diag.h"
#include "core/json_doc.h"
#include "plan/validate.h"

static const char usage[] =
    "usage: cb-validate [-o file] [file]\n"
    "Check a lowered manifest (schema, then widths and heads through the topology) and\n"
    "write its plan: every node with widths, config, tensors and parameter counts.\n"
    "Every error is reported, one line each; exit 3 when there is any.\n"
    "  -o, --output file   write the plan there (atomically) instead of stdout\n";

int main(int argc, char **argv) {
    if (cb_cli_start("cb-validate", argc, argv, 0)) return cb_cli_close_stdout("cb-validate");
    /* a full disk or a file-size limit (SIGXFSZ) fails the write, reported as an I/O error */
    signal(SIGXFSZ, SIG_IGN);
    const char *tool = "cb-validate", *out_path = NULL;
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (c == 'o') out_path = optarg;
        else if (c == 'h') { fputs(usage, stdout); return cb_cli_close_stdout(tool); }
        else return cb_cli_usage_error(tool, "unknown option or missing argument: %s", argv[optind - 1]);
    }
    if (argc - optind > 1) return cb_cli_usage_error(tool, "one input file at most");
    const char *in_path = optind < argc ? argv[optind] : "-";

    cb_error e;
    cb_error_clear(&e);
    json_t *lowered = NULL, *plan = NULL;
    /* any kind loads; cb_validate says what it expected */
    if (cb_doc_load(in_path, NULL, &lowered, &e) != CB_OK) return cb_cli_report(tool, &e);
    cb_diags d;
    cb_diags_init(&d);
    int rc = cb_validate(lowered, &plan, &d);
    json_decref(lowered);
    if (rc != CB_OK) {
        const char *name = strcmp(in_path, "-") == 0 ? "<stdin>" : in_path;
        for (int i = 0; i < d.n; i++) {
            /* an error without a source location names the input file */
            if (!d.items[i].where[0]) snprintf(d.items[i].where, sizeof d.items[i].where, "%s", name);
            cb_cli_report(tool, &d.items[i]);
        }
        if (d.n_dropped) fprintf(stderr, "%s: %s: %d more errors not shown\n", tool, name, d.n_dropped);
        rc = cb_diags_status(&d) ? cb_diags_status(&d) : rc;
        cb_diags_free(&d);
        return rc;
    }
    cb_diags_free(&d);
    rc = cb_doc_save(plan, out_path, &e);
    json_decref(plan);
    if (rc != CB_OK) return cb_cli_report(tool, &e);
    return cb_cli_close_stdout(tool);
}
