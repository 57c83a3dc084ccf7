/* atomic_dir.h: write a directory of files under a temporary name beside its final one,
 * then swap it into place, so the directory appears complete or not at all. */
#ifndef CB_CORE_ATOMIC_DIR_H
#define CB_CORE_ATOMIC_DIR_H

#include "core/error.h"

typedef struct cb_atomic_dir {
    char path[4096];     /* final name */
    char tmp_path[4096]; /* "<parent>/.<name>.tmp.XXXXXX": write the files here */
} cb_atomic_dir;

/* Make the temporary directory. An existing path is replaced at commit only when it is
 * an empty directory or holds `marker` (the file that says it is an earlier output of
 * the same kind, e.g. "prepared.json"); anything else there is CB_E_IO, untouched. */
int cb_atomic_dir_open(cb_atomic_dir *d, const char *path, const char *marker, cb_error *e);
/* Sync the temporary directory and put it in place: rename, or an atomic exchange with
 * the earlier directory (renameat2 RENAME_EXCHANGE) whose old contents are then removed.
 * Where the file system cannot exchange, the old directory is moved aside first. */
int cb_atomic_dir_commit(cb_atomic_dir *d, cb_error *e);
/* Remove the temporary directory and everything in it; the final name is untouched. */
void cb_atomic_dir_abort(cb_atomic_dir *d);

/* Remove path and everything under it (symbolic links are removed, not followed). */
void cb_remove_tree(const char *path);

#endif
