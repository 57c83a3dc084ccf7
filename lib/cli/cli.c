/* cli.c: error reporting shared by the cmd/ mains. */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdarg.h>
#include <string.h>

int cb_cli_report(const char *tool, const cb_error *e) {
    char line[2048];
    cb_error_line(e, line, sizeof line);
    /* one line, always: fold any newline a message may carry */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fprintf(stderr, "%s: %s\n", tool, line);
    return e->code ? e->code : CB_E_RUNTIME;
}

int cb_cli_usage_error(const char *tool, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", tool);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try '%s --help')\n", tool);
    return CB_E_USAGE;
}

int cb_cli_close_stdout(const char *tool) {
    int bad = fflush(stdout) != 0 || ferror(stdout);
    if (fclose(stdout) != 0) bad = 1;
    if (bad) {
        fprintf(stderr, "%s: stdout: write failed: %s\n", tool, strerror(errno));
        return CB_E_IO;
    }
    return 0;
}

int cb_cli_unbuilt(const char *tool, const char *synopsis, const char *purpose, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s\n%s\n", synopsis, purpose);
            return 0;
        }
    }
    fprintf(stderr, "%s: this capability is not in this build of caramba yet (see README.md)\n", tool);
    return CB_E_USAGE;
}

void cb_cli_prefer_passive_wait(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv("/proc/self/exe", argv);
}
