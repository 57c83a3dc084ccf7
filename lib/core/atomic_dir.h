/* atomic_dir.h: write a directory of files under a temporary name beside its final one,
 * then swap it into place, so the directory appears complete or not at all. */
#ifndef CB_CORE_ATOMIC_DIR_H
#define CB_CORE_ATOMIC_DIR_H

#include "core/error.h"

typedef struct cb_atomic_dir {
    char path[4096];     /* final name */
    char tmp_path[4096]; /* "<parent>/.<name>.tmp.XXXXXX": write the files here */
    int lock_fd;         /* the temporary directory, locked (flock) while it is written; -1 */
} cb_atomic_dir;

/* Make the temporary directory (first removing stale ones of the same name: see
 * cb_atomic_clean_stale). An existing path is replaced at commit only when it is
 * an empty directory or holds `marker` (the file that says it is an earlier output of
 * the same kind, e.g. "prepared.json"); anything else there is CB_E_IO, untouched. */
int cb_atomic_dir_open(cb_atomic_dir *d, const char *path, const char *marker, cb_error *e);
/* Sync the temporary directory and put it in place: rename, or an atomic exchange with
 * the earlier directory (renameat2 RENAME_EXCHANGE) whose old contents are then removed.
 * Where the file system cannot exchange, the old directory is moved aside first. */
int cb_atomic_dir_commit(cb_atomic_dir *d, cb_error *e);
/* Remove the temporary directory and everything in it; the final name is untouched. */
void cb_atomic_dir_abort(cb_atomic_dir *d);

/* Remove the temporaries that writers of parent/base left when they were killed or their
 * write failed without cleaning up: entries ".<base>.tmp.XXXXXX" (and their ".old"
 * asides). A writer holds an flock on its temporary while it writes, so one that can be
 * locked has no writer left; one that cannot is in use and stays. */
void cb_atomic_clean_stale(const char *parent, const char *base);

/* Lock a temporary just made (fd open on it) for as long as fd stays open. */
void cb_atomic_lock_temp(int fd);

/* Remove path and everything under it (symbolic links are removed, not followed). */
void cb_remove_tree(const char *path);

#endif
