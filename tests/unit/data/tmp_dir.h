/* tmp_dir.h: for the data tests, a scratch directory under $TMPDIR made on first use and
 * removed with everything in it when the test program ends. */
#ifndef CB_TEST_TMP_DIR_H
#define CB_TEST_TMP_DIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_dir_path[256];

/* dir/name into buf; the directory is made on first use ("" when that failed). */
static inline const char *tmp_path(const char *name, char *buf, size_t n) {
    if (!tmp_dir_path[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(tmp_dir_path, sizeof tmp_dir_path, "%s/cbdata.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(tmp_dir_path)) tmp_dir_path[0] = '\0';
    }
    snprintf(buf, n, "%s/%s", tmp_dir_path, name);
    return buf;
}

/* Remove path and, when it is a directory, everything under it (links not followed). */
static inline void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *ent;
        while (d && (ent = readdir(d))) {
            if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", path, ent->d_name);
            remove_tree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

__attribute__((destructor)) static void tmp_dir_remove(void) {
    if (tmp_dir_path[0]) remove_tree(tmp_dir_path);
}

/* Write n bytes to path; 0 on success. */
static inline int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) != 0 || w != n) ? -1 : 0;
}

/* The tree the tests run in (tests/run.sh sets CB_ROOT). */
static inline const char *tree_root(void) {
    const char *r = getenv("CB_ROOT");
    return r && *r ? r : ".";
}

#endif
