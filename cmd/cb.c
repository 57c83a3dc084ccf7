/* cb: the porcelain. `cb compile` is cb-parse | cb-lower | cb-validate in one process,
 * reporting each error under the name of the stage that found it (man/cb.1). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/diag.h"
#include "core/json_doc.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "plan/plan.h"
#include "plan/validate.h"

static const char usage[] =
    "usage: cb compile [--print-plan] [-o file] manifest\n"
    "       cb run [--group name] manifest\n"
    "       cb research [options] manifest\n"
    "Compose the caramba tools. compile: parse, lower and validate a YAML manifest and\n"
    "write its plan as JSON (cb-plan(5)), or as a readable tree with --print-plan.\n"
    "research: the write -> review -> experiment loop (pipelines/research.sh, cb-paper(1),\n"
    "cb-review(1)); `cb research --help` lists its options. run is not in this build yet.\n";

/* Every error of a stage, one line each under the stage's name; returns the status. */
static int report_all(const char *stage, cb_diags *d, const char *file) {
    for (int i = 0; i < d->n; i++) {
        if (!d->items[i].where[0]) snprintf(d->items[i].where, sizeof d->items[i].where, "%s", file);
        cb_cli_report(stage, &d->items[i]);
    }
    if (d->n_dropped) fprintf(stderr, "%s: %s: %d more errors not shown\n", stage, file, d->n_dropped);
    return cb_diags_status(d) ? cb_diags_status(d) : CB_E_INVALID;
}

/* The plan as a tree, to path (NULL = stdout), atomically. */
static int write_tree(const json_t *plan, const char *path, cb_error *e) {
    cb_atomic_file af;
    CB_TRY(cb_atomic_open(&af, path, e));
    if (cb_plan_print(af.fp, plan) != 0) {
        int err = errno;
        cb_atomic_abort(&af);
        return cb_fail(e, CB_E_IO, path ? path : "stdout", "write failed: %s", strerror(err));
    }
    return cb_atomic_commit(&af, e);
}

static int compile(int argc, char **argv) {
    const char *tool = "cb compile", *out_path = NULL;
    int print_plan = 0;
    static const struct option opts[] = {{"print-plan", no_argument, NULL, 'p'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (c == 'p') print_plan = 1;
        else if (c == 'o') out_path = optarg;
        else if (c == 'h') { fputs(usage, stdout); return cb_cli_close_stdout("cb"); }
        else return cb_cli_usage_error(tool, "unknown option or missing argument: %s", argv[optind - 1]);
    }
    if (argc - optind != 1) return cb_cli_usage_error(tool, "expected one manifest file");
    const char *path = argv[optind];
    const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;

    cb_error e;
    cb_error_clear(&e);
    cb_diags d;
    cb_diags_init(&d);
    json_t *manifest = NULL, *lowered = NULL, *plan = NULL;
    int rc = cb_yaml_parse_file(path, &manifest, &e);
    if (rc != CB_OK) return cb_cli_report("cb-parse", &e);
    rc = cb_lower(manifest, &lowered, &d);
    json_decref(manifest);
    if (rc != CB_OK) {
        rc = report_all("cb-lower", &d, name);
        cb_diags_free(&d);
        return rc;
    }
    rc = cb_validate(lowered, &plan, &d);
    json_decref(lowered);
    if (rc != CB_OK) {
        rc = report_all("cb-validate", &d, name);
        cb_diags_free(&d);
        return rc;
    }
    cb_diags_free(&d);
    rc = print_plan ? write_tree(plan, out_path, &e) : cb_doc_save(plan, out_path, &e);
    json_decref(plan);
    if (rc != CB_OK) return cb_cli_report("cb", &e);
    return cb_cli_close_stdout("cb");
}

/* `cb research`: run pipelines/research.sh with the tools beside this binary (CB_BIN),
 * found from this executable's folder (bin/ or build/VARIANT/bin/), or $CB_PIPELINES. */
static int research(int argc, char **argv) {
    char exe[PATH_MAX], script[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return cb_cli_usage_error("cb research", "cannot find this executable's folder");
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    const char *dir = getenv("CB_PIPELINES");
    script[0] = 0;
    if (dir && dir[0]) snprintf(script, sizeof script, "%s/research.sh", dir);
    else {
        static const char *const up[] = {"/../pipelines/research.sh", "/../../../pipelines/research.sh"};
        for (int i = 0; i < 2 && !script[0]; i++) {
            char cand[PATH_MAX + 64];
            snprintf(cand, sizeof cand, "%s%s", exe, up[i]);
            if (access(cand, R_OK) == 0) snprintf(script, sizeof script, "%s", cand);
        }
    }
    if (!script[0] || access(script, R_OK) != 0) {
        fprintf(stderr, "cb research: pipelines/research.sh not found beside %s (set CB_PIPELINES)\n", exe);
        return CB_E_USAGE;
    }
    setenv("CB_BIN", exe, 1);
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args) return CB_E_RUNTIME;
    args[0] = "bash";
    args[1] = script;
    for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
    execvp("bash", args);
    fprintf(stderr, "cb research: cannot run bash: %s\n", strerror(errno));
    free(args);
    return CB_E_RUNTIME;
}

int main(int argc, char **argv) {
    if (cb_cli_start("cb", argc, argv, 0)) return cb_cli_close_stdout("cb");
    /* a full disk or a file-size limit (SIGXFSZ) fails the write, reported as an I/O error */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) return cb_cli_usage_error("cb", "expected a command: compile, run or research");
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage, stdout);
        return cb_cli_close_stdout("cb");
    }
    if (strcmp(cmd, "compile") == 0) return compile(argc - 1, argv + 1);
    if (strcmp(cmd, "research") == 0) return research(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0) {
        fprintf(stderr, "cb %s: not in this build yet\n", cmd);
        return CB_E_USAGE;
    }
    return cb_cli_usage_error("cb", "unknown command '%s' (compile, run or research)", cmd);
}
