/* atomic_file.h: write a file under a temporary name, then rename it into place,
 * so a killed run never leaves a half-written file under the final name. */
#ifndef CB_CORE_ATOMIC_FILE_H
#define CB_CORE_ATOMIC_FILE_H

#include <stdio.h>
#include "core/error.h"

typedef struct cb_atomic_file {
    FILE *fp;            /* write here */
    char path[4096];     /* final name */
    char tmp_path[4096]; /* "<dir>/.<name>.tmp.XXXXXX" in the same directory */
    int is_stdout;       /* path was NULL or "-": fp is stdout, commit only flushes */
} cb_atomic_file;

/* Open for writing. path NULL or "-" means stdout. */
int cb_atomic_open(cb_atomic_file *af, const char *path, cb_error *e);
/* Flush, fsync, close and rename into place. Reports a full disk. */
int cb_atomic_commit(cb_atomic_file *af, cb_error *e);
/* Close and remove the temporary file; the final name is untouched. */
void cb_atomic_abort(cb_atomic_file *af);

/* Write a whole buffer to path atomically. */
int cb_atomic_write(const char *path, const void *data, size_t n, cb_error *e);

/* Read a whole file ("-" = stdin) into a NUL-terminated malloc'd buffer.
 * max_bytes bounds what is accepted (0 = no bound). */
int cb_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len, cb_error *e);

#endif
