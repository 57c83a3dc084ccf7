/* cb-lower: manifest document -> lowered document (vars substituted, defaults merged,
 * node ids assigned). The work is in lib/manifest/lower.c. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "core/diag.h"
#include "core/json_doc.h"
#include "manifest/lower.h"

#define TOOL "cb-lower"
#define USAGE "usage: cb-lower [-o file] [file]\n"

int main(int argc, char **argv) {
    if (cb_cli_start(TOOL, argc, argv, 0)) return cb_cli_close_stdout(TOOL);
    /* a full disk or a file-size limit (SIGXFSZ) fails the write, reported as an I/O error */
    signal(SIGXFSZ, SIG_IGN);
    static const struct option options[] = {
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *output = NULL;
    int opt;
    opterr = 0; /* one error line, ours */
    while ((opt = getopt_long(argc, argv, ":o:h", options, NULL)) != -1) {
        switch (opt) {
        case 'o': output = optarg; break;
        case 'h':
            printf(USAGE "Lower a manifest document (from cb-parse): substitute ${...} references to vars,\n"
                         "merge defaults into runs, and give every topology node its id.\n");
            return cb_cli_close_stdout(TOOL);
        case ':': return cb_cli_usage_error(TOOL, "option %s needs an argument", argv[optind - 1]);
        default: return cb_cli_usage_error(TOOL, "unknown option %s", argv[optind - 1]);
        }
    }
    if (argc - optind > 1) return cb_cli_usage_error(TOOL, "too many arguments");
    const char *input = optind < argc ? argv[optind] : "-";

    cb_error e;
    cb_error_clear(&e);
    json_t *doc;
    /* the kind is checked here rather than by cb_doc_load, whose message reads the kind
     * after freeing the document */
    if (cb_doc_load(input, NULL, &doc, &e) != CB_OK) return cb_cli_report(TOOL, &e);
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    if (strcmp(kind, "manifest") != 0) {
        cb_fail(&e, CB_E_INVALID, strcmp(input, "-") == 0 ? "<stdin>" : input,
                "expected a document of kind \"manifest\", got \"%s\"", kind);
        json_decref(doc);
        return cb_cli_report(TOOL, &e);
    }

    cb_diags d;
    cb_diags_init(&d);
    json_t *lowered;
    int rc = cb_lower(doc, &lowered, &d);
    json_decref(doc);
    if (rc != CB_OK) {
        for (int i = 0; i < d.n; i++) cb_cli_report(TOOL, &d.items[i]);
        if (d.n_dropped) fprintf(stderr, "%s: %d more errors not shown\n", TOOL, d.n_dropped);
        cb_diags_free(&d);
        return rc;
    }
    cb_diags_free(&d);
    rc = cb_doc_save(lowered, output, &e);
    json_decref(lowered);
    if (rc != CB_OK) return cb_cli_report(TOOL, &e);
    if (!output || strcmp(output, "-") == 0) return cb_cli_close_stdout(TOOL);
    return 0;
}
