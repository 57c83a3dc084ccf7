/* atomic_dir.c: temporary directory, fsync, then rename or exchange into place. */
#include "core/atomic_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CB_RENAME_EXCHANGE (1 << 1) /* linux/fs.h */

void cb_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *ent;
    while (d && (ent = readdir(d))) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
        char sub[8192];
        snprintf(sub, sizeof sub, "%s/%s", path, ent->d_name);
        cb_remove_tree(sub);
    }
    if (d) closedir(d);
    rmdir(path);
}

void cb_atomic_lock_temp(int fd) {
    if (fd >= 0) (void)flock(fd, LOCK_EX | LOCK_NB);
}

/* 1 when name is ".<base>.tmp.XXXXXX" or that plus ".old" */
static int is_temp_of(const char *name, const char *base) {
    size_t nb = strlen(base);
    if (name[0] != '.' || strncmp(name + 1, base, nb) != 0 || strncmp(name + 1 + nb, ".tmp.", 5) != 0) return 0;
    const char *rest = name + 1 + nb + 5;
    size_t n = strlen(rest);
    if (n == 6 + 4 && strcmp(rest + 6, ".old") == 0) n = 6;
    if (n != 6) return 0;
    for (int i = 0; i < 6; i++)
        if (!((rest[i] >= 'a' && rest[i] <= 'z') || (rest[i] >= 'A' && rest[i] <= 'Z') || (rest[i] >= '0' && rest[i] <= '9')))
            return 0;
    return 1;
}

void cb_atomic_clean_stale(const char *parent, const char *base) {
    if (!*base) return;
    DIR *d = opendir(parent);
    struct dirent *ent;
    while (d && (ent = readdir(d))) {
        if (!is_temp_of(ent->d_name, base)) continue;
        char p[8400];
        if ((size_t)snprintf(p, sizeof p, "%s/%s", parent, ent->d_name) >= sizeof p) continue;
        int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) continue;
        int free_to_remove = flock(fd, LOCK_EX | LOCK_NB) == 0;
        if (free_to_remove) cb_remove_tree(p);
        close(fd);
    }
    if (d) closedir(d);
}

/* The parent directory of path and its last component. */
static void split_path(const char *path, char *parent, size_t np, const char **base) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(parent, np, ".");
        *base = path;
    } else if (slash == path) {
        snprintf(parent, np, "/");
        *base = slash + 1;
    } else {
        snprintf(parent, np, "%.*s", (int)(slash - path), path);
        *base = slash + 1;
    }
}

static int sync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* 1 when path may be replaced: an empty directory, or one holding marker. */
static int replaceable(const char *path, const char *marker) {
    char m[8192];
    struct stat st;
    snprintf(m, sizeof m, "%s/%s", path, marker);
    if (marker && *marker && stat(m, &st) == 0) return 1;
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *ent;
    int empty = 1;
    while (empty && (ent = readdir(d))) empty = strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0;
    closedir(d);
    return empty;
}

static void unlock(cb_atomic_dir *d) {
    if (d->lock_fd >= 0) close(d->lock_fd);
    d->lock_fd = -1;
}

int cb_atomic_dir_open(cb_atomic_dir *d, const char *path, const char *marker, cb_error *e) {
    memset(d, 0, sizeof *d);
    d->lock_fd = -1;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--; /* "out/" names "out" */
    if (n == 0 || n >= sizeof d->path - 32) return cb_fail(e, CB_E_IO, path, "bad output directory name");
    memcpy(d->path, path, n);
    d->path[n] = '\0';
    char parent[4096];
    const char *base;
    split_path(d->path, parent, sizeof parent, &base);
    if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strcmp(base, "/") == 0 || !*base)
        return cb_fail(e, CB_E_IO, path, "cannot replace this directory; name a new one");
    struct stat st;
    if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode))
        return cb_fail(e, CB_E_IO, path, "parent directory %s does not exist", parent);
    if (lstat(d->path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return cb_fail(e, CB_E_IO, d->path, "exists and is not a directory");
        if (!replaceable(d->path, marker))
            return cb_fail(e, CB_E_IO, d->path, "exists, is not empty and holds no %s; not replacing it", marker);
    }
    cb_atomic_clean_stale(parent, base);
    if ((size_t)snprintf(d->tmp_path, sizeof d->tmp_path, "%s/.%s.tmp.XXXXXX", parent, base) >= sizeof d->tmp_path) {
        d->tmp_path[0] = '\0';
        return cb_fail(e, CB_E_IO, path, "output directory name too long");
    }
    if (!mkdtemp(d->tmp_path)) {
        int err = errno;
        d->tmp_path[0] = '\0';
        return cb_fail(e, CB_E_IO, path, "cannot create a temporary directory beside it: %s", strerror(err));
    }
    d->lock_fd = open(d->tmp_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cb_atomic_lock_temp(d->lock_fd);
    /* mkdtemp makes 0700; the final directory gets what an ordinary mkdir would give */
    mode_t mask = umask(0);
    umask(mask);
    chmod(d->tmp_path, 0777 & ~mask);
    return CB_OK;
}

int cb_atomic_dir_commit(cb_atomic_dir *d, cb_error *e) {
    char parent[4096];
    const char *base;
    split_path(d->path, parent, sizeof parent, &base);
    if (sync_dir(d->tmp_path) != 0) {
        int err = errno;
        cb_atomic_dir_abort(d);
        return cb_fail(e, CB_E_IO, d->path, "cannot sync the temporary directory: %s", strerror(err));
    }
    if (rename(d->tmp_path, d->path) == 0) {
        d->tmp_path[0] = '\0';
        unlock(d);
        sync_dir(parent);
        return CB_OK;
    }
    if (errno != EEXIST && errno != ENOTEMPTY) {
        int err = errno;
        cb_atomic_dir_abort(d);
        return cb_fail(e, CB_E_IO, d->path, "cannot rename the temporary directory into place: %s", strerror(err));
    }
    /* an earlier directory is there: swap the two, then remove the old one (now under
     * the temporary name) */
    int swapped = 0;
#ifdef SYS_renameat2
    swapped = syscall(SYS_renameat2, AT_FDCWD, d->tmp_path, AT_FDCWD, d->path, CB_RENAME_EXCHANGE) == 0;
#endif
    if (!swapped) {
        char aside[8192];
        snprintf(aside, sizeof aside, "%s.old", d->tmp_path);
        if (rename(d->path, aside) != 0 || rename(d->tmp_path, d->path) != 0) {
            int err = errno;
            rename(aside, d->path); /* put the old one back if it was moved */
            cb_atomic_dir_abort(d);
            return cb_fail(e, CB_E_IO, d->path, "cannot replace the directory: %s", strerror(err));
        }
        cb_remove_tree(aside);
        d->tmp_path[0] = '\0';
    }
    sync_dir(parent);
    cb_atomic_dir_abort(d); /* the old contents */
    return CB_OK;
}

void cb_atomic_dir_abort(cb_atomic_dir *d) {
    if (d->tmp_path[0]) cb_remove_tree(d->tmp_path);
    d->tmp_path[0] = '\0';
    unlock(d);
}
