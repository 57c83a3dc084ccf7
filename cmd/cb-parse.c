/* cb-parse: a YAML manifest to manifest JSON with source locations (the first pipeline stage). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include "cli/cli.h"
#include "core/json_doc.h"
#include "manifest/yaml_parse.h"

static const char *const tool = "cb-parse";

static void print_help(void) {
    printf("usage: cb-parse [-o file] [file]\n"
           "Read a YAML manifest (file, or standard input when it is '-' or absent) and write\n"
           "it as a JSON document of kind \"manifest\", every mapping annotated with \"@loc\".\n"
           "\n"
           "  -o, --output file  write there (atomically) instead of standard output\n"
           "      --help         print this help\n"
           "\n"
           "Exit status: 0 success, 2 usage or I/O error, 3 invalid manifest. See cb-parse(1).\n");
}

int main(int argc, char **argv) {
    if (cb_cli_start("cb-parse", argc, argv, 0)) return cb_cli_close_stdout("cb-parse");
    /* a full disk or a file-size limit (SIGXFSZ) fails the write, reported as an I/O error */
    signal(SIGXFSZ, SIG_IGN);
    static const struct option options[] = {
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out_path = NULL;
    int c;
    opterr = 0; /* getopt stays quiet: errors go out as one line through cb_cli_usage_error */
    while ((c = getopt_long(argc, argv, ":o:h", options, NULL)) != -1) {
        switch (c) {
        case 'o': out_path = optarg; break;
        case 'h': print_help(); return cb_cli_close_stdout(tool);
        case ':':
            return cb_cli_usage_error(tool, "option %s needs an argument", argv[optind - 1]);
        default:
            if (optopt) return cb_cli_usage_error(tool, "unknown option -%c", optopt);
            return cb_cli_usage_error(tool, "unknown option %s", argv[optind - 1]);
        }
    }
    if (argc - optind > 1) return cb_cli_usage_error(tool, "one manifest at a time (got %d)", argc - optind);
    const char *in_path = optind < argc ? argv[optind] : "-";

    cb_error e;
    cb_error_clear(&e);
    json_t *doc = NULL;
    if (cb_yaml_parse_file(in_path, &doc, &e) != CB_OK) return cb_cli_report(tool, &e);
    int rc = cb_doc_save(doc, out_path, &e);
    json_decref(doc);
    if (rc != CB_OK) return cb_cli_report(tool, &e);
    return cb_cli_close_stdout(tool);
}
