/* cli.c: what the cmd/ mains share: error reporting, the start of every main (--version,
 * OpenMP's wait policy, the BLAS kernels). */
#include "cli/cli.h"

#include "backend/cpu/blas.h"
#include "core/json_doc.h"

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

static cb_blas_state blas_state;
static int blas_chosen;

int cb_cli_start(const char *tool, int argc, char **argv, unsigned flags) {
    int version = argc >= 2 && strcmp(argv[1], "--version") == 0;
    int compute = (flags & CB_CLI_COMPUTE) != 0;
    int set_wait = compute && !getenv("OMP_WAIT_POLICY") && setenv("OMP_WAIT_POLICY", "passive", 1) == 0;
    if (compute || version) {
        cb_blas_choose(&blas_state, argv); /* returns only where no re-execution happened */
        blas_chosen = 1;
    }
    if (set_wait) execv("/proc/self/exe", argv);
    if (!version) return 0;

    char blas[512], cpu[256];
    cb_blas_describe(&blas_state, blas, sizeof blas);
    cb_cpu_features_text(&blas_state.cpu, cpu, sizeof cpu);
    printf("%s (caramba) %s\n", tool, CB_VERSION);
    printf("built with:%s%s%s\n",
#ifdef CB_HAVE_HDF5
           " hdf5",
#else
           "",
#endif
#ifdef CB_HAVE_CURL
           " curl",
#else
           "",
#endif
           " openmp");
    printf("cpu: %s family %d model %d: %s\n", blas_state.cpu.vendor[0] ? blas_state.cpu.vendor : "unknown",
           blas_state.cpu.family, blas_state.cpu.model, cpu[0] ? cpu : "no avx");
    printf("blas: %s\n", blas);
    return 1;
}

void cb_cli_note_kernels(const char *tool, int quiet) {
    if (!blas_chosen || quiet || getenv("CB_BLAS_NOTED")) return;
    char note[512];
    cb_blas_note(&blas_state, note, sizeof note);
    if (!note[0]) return;
    fprintf(stderr, "%s: %s\n", tool, note);
    setenv("CB_BLAS_NOTED", "1", 1);
}
