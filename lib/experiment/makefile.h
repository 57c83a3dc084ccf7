/* makefile.h: an experiment's graph as EXP/Makefile (one rule per stage, on its stamp files,
 * calling this build's tools by absolute path) and EXP/stage.sh, which runs one stage with
 * its output into EXP/logs/ID.log and writes the stage's .done stamp only when it
 * succeeded. `make -f EXP/Makefile` redoes an experiment without cb; `cb run` writes the
 * stamps first (stamps.h), so make's dates and the hashes agree. */
#ifndef CB_EXPERIMENT_MAKEFILE_H
#define CB_EXPERIMENT_MAKEFILE_H

#include "core/error.h"
#include "experiment/graph.h"
#include "experiment/tools.h"

/* The shell command that stage i runs (from work_dir), with the tools' absolute paths.
 * Caller frees. */
char *cb_makefile_command(const cb_graph *g, int i, const cb_tools *t, cb_error *e);

/* Write EXP/Makefile and EXP/stage.sh atomically. work_dir: where relative paths of the
 * manifest (datasets, checkpoints) are resolved, the folder cb run was started in. */
int cb_makefile_write(const cb_graph *g, const cb_tools *t, const char *work_dir, cb_error *e);

/* Quote s for the shell (single quotes), appended to buf; for make, '$' is doubled when
 * for_make. Returns 0, or -1 when it does not fit. */
int cb_shell_quote(char *buf, size_t cap, size_t *len, const char *s, int for_make);

#endif
