/* cli.h: what every cmd/ main shares: reporting an error as one stderr line
 * and choosing the exit status (docs/DESIGN.md section 3). Never exits itself. */
#ifndef CB_CLI_CLI_H
#define CB_CLI_CLI_H

#include <stdio.h>
#include "core/error.h"

/* Print "tool: where: msg" on stderr; return e->code (the exit status). */
int cb_cli_report(const char *tool, const cb_error *e);

/* Print "tool: msg" and "Try 'tool --help'." on stderr; return 2. */
int cb_cli_usage_error(const char *tool, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Close stdout and report a failed write (a full disk is an error too).
 * Returns 0 or 2. Call it last in every main that wrote to stdout. */
int cb_cli_close_stdout(const char *tool);



/* For a tool whose capability is not in this build yet: answers --help with its
 * synopsis (exit 0) and anything else with one line on stderr (exit 2). */
int cb_cli_unbuilt(const char *tool, const char *synopsis, const char *purpose, int argc, char **argv);
/* OpenMP threads that spin between parallel regions starve the working ones on a shared
 * machine (measured here: 2 against 164 tokens/s decoding beside another job). libgomp
 * reads OMP_WAIT_POLICY once, when it loads, so a compute tool that wants the passive
 * default re-executes itself once with it set. A user's own setting is kept; if the
 * re-execution fails the tool runs on as it is. Call first thing in main. */
void cb_cli_prefer_passive_wait(char **argv);

/* What the tool's work runs on, for cb_cli_start. */
enum { CB_CLI_COMPUTE = 1 }; /* matrix products (OpenBLAS) and OpenMP: train, build, generate */

/* Call first thing in every main. A compute tool prefers passive OpenMP waiting (as above) and
 * the BLAS kernels that suit this CPU (backend/cpu/blas.h: where OpenBLAS fell back to lesser
 * ones, the tool re-executes itself once under better ones that passed a self-check). Every
 * tool answers `TOOL --version` (the first argument) here: it prints the version and which
 * kernels run on stdout and returns 1, and main returns cb_cli_close_stdout(tool). Returns 0
 * otherwise. */
int cb_cli_start(const char *tool, int argc, char **argv, unsigned flags);

/* A compute tool calls this once its options are read: unless quiet, one line on stderr where
 * the user should know about the kernels (their OPENBLAS_CORETYPE holds the BLAS below this
 * CPU, or better kernels failed the self-check). Given once: tools it starts, and any process
 * where CB_BLAS_NOTED is set, stay silent. */
void cb_cli_note_kernels(const char *tool, int quiet);

#endif
