/* atomic_file.c: temp-file-then-rename writes, and whole-file reads. */
#define _GNU_SOURCE
#include "core/atomic_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/atomic_dir.h"

int cb_atomic_open(cb_atomic_file *af, const char *path, cb_error *e) {
    memset(af, 0, sizeof *af);
    if (!path || strcmp(path, "-") == 0) {
        af->fp = stdout;
        af->is_stdout = 1;
        snprintf(af->path, sizeof af->path, "-");
        return CB_OK;
    }
    if (strlen(path) + 32 >= sizeof af->tmp_path)
        return cb_fail(e, CB_E_USAGE, path, "path too long");
    snprintf(af->path, sizeof af->path, "%s", path);
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    snprintf(af->tmp_path, sizeof af->tmp_path, "%.*s.%s.tmp.XXXXXX", dirlen, path,
             slash ? slash + 1 : path);
    char parent[4096];
    snprintf(parent, sizeof parent, "%.*s", dirlen ? dirlen : 1, dirlen ? path : ".");
    cb_atomic_clean_stale(parent, slash ? slash + 1 : path);
    int fd = mkstemp(af->tmp_path);
    if (fd < 0) return cb_fail(e, CB_E_IO, path, "cannot create: %s", strerror(errno));
    cb_atomic_lock_temp(fd); /* held until the file is closed: it is not stale */
    /* mkstemp makes 0600; the final file gets what an ordinary create would give */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        int err = errno;
        close(fd);
        unlink(af->tmp_path);
        return cb_fail(e, CB_E_IO, path, "cannot open: %s", strerror(err));
    }
    return CB_OK;
}

int cb_atomic_commit(cb_atomic_file *af, cb_error *e) {
    if (af->is_stdout) {
        if (fflush(stdout) != 0 || ferror(stdout))
            return cb_fail(e, CB_E_IO, "stdout", "write failed: %s", strerror(errno));
        return CB_OK;
    }
    int failed = fflush(af->fp) != 0 || ferror(af->fp);
    int err = errno;
    if (!failed && fsync(fileno(af->fp)) != 0) { failed = 1; err = errno; }
    if (fclose(af->fp) != 0 && !failed) { failed = 1; err = errno; }
    af->fp = NULL;
    if (failed) {
        unlink(af->tmp_path);
        return cb_fail(e, CB_E_IO, af->path, "write failed: %s", strerror(err));
    }
    if (rename(af->tmp_path, af->path) != 0) {
        err = errno;
        unlink(af->tmp_path);
        return cb_fail(e, CB_E_IO, af->path, "cannot rename into place: %s", strerror(err));
    }
    return CB_OK;
}

void cb_atomic_abort(cb_atomic_file *af) {
    if (af->is_stdout || !af->fp) return;
    fclose(af->fp);
    af->fp = NULL;
    unlink(af->tmp_path);
}

int cb_atomic_write(const char *path, const void *data, size_t n, cb_error *e) {
    cb_atomic_file af;
    CB_TRY(cb_atomic_open(&af, path, e));
    if (n && fwrite(data, 1, n, af.fp) != n) {
        int err = errno;
        cb_atomic_abort(&af);
        return cb_fail(e, CB_E_IO, path, "write failed: %s", strerror(err));
    }
    return cb_atomic_commit(&af, e);
}

int cb_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len, cb_error *e) {
    *out = NULL;
    if (out_len) *out_len = 0;
    int is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "<stdin>" : path;
    FILE *fp = is_stdin ? stdin : fopen(path, "rb");
    if (!fp) return cb_fail(e, CB_E_IO, path, "cannot open: %s", strerror(errno));
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        if (!is_stdin) fclose(fp);
        return cb_fail(e, CB_E_RUNTIME, name, "out of memory");
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (max_bytes && len > max_bytes) break;
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                if (!is_stdin) fclose(fp);
                return cb_fail(e, CB_E_RUNTIME, name, "out of memory");
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, fp);
        len += got;
        if (got == 0) break;
    }
    int read_err = ferror(fp);
    if (!is_stdin) fclose(fp);
    if (read_err) {
        free(buf);
        return cb_fail(e, CB_E_IO, name, "read failed");
    }
    if (max_bytes && len > max_bytes) {
        free(buf);
        return cb_fail(e, CB_E_INVALID, name, "file larger than %zu bytes", max_bytes);
    }
    buf[len] = '\0';
    *out = buf;
    if (out_len) *out_len = len;
    return CB_OK;
}
