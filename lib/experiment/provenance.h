/* provenance.h: what a run folder keeps so its result can be made again (docs/DESIGN.md
 * section 8): the command line and its overrides, the folder it ran in, the git revision
 * of caramba's tree and of the working folder (when they are git trees), and the machine
 * (uname, CPU model, threads, the tools' --version with their BLAS kernels). */
#ifndef CB_EXPERIMENT_PROVENANCE_H
#define CB_EXPERIMENT_PROVENANCE_H

#include <jansson.h>

/* A document of kind "provenance". overrides: an object (may be NULL); tools_dir: where
 * the tools are (its git tree is caramba's); version_text: `cb --version`. */
json_t *cb_provenance_new(int argc, char *const *argv, const json_t *overrides, const char *work_dir,
                          const char *tools_dir, const char *version_text);

/* The machine alone: {"uname", "cpu_model", "threads"}. */
json_t *cb_provenance_machine(void);

#endif
