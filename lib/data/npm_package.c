/* npm_package.c: finding a cached npm package, or running pipelines/fetch-npm.sh for it. */
#include "data/npm_package.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* pipelines/fetch-npm.sh: from the environment, or in a directory above the program */
static int find_script(char *out, size_t n) {
    const char *s = getenv("CB_FETCH_NPM");
    if (s && *s) { snprintf(out, n, "%s", s); return is_file(out); }
    s = getenv("CB_ROOT");
    if (s && *s) {
        snprintf(out, n, "%s/pipelines/fetch-npm.sh", s);
        if (is_file(out)) return 1;
    }
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) return 0;
    exe[k] = '\0';
    /* bin/cb-data, build/asan/bin/cb-data, build/rel/tests/tokenizer/test_x: up to 5 levels */
    for (int up = 0; up < 5; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) return 0;
        *slash = '\0';
        if ((size_t)snprintf(out, n, "%s/pipelines/fetch-npm.sh", exe) < n && is_file(out)) return 1;
    }
    return 0;
}

/* 'text' for the shell */
static void shell_quote(char *out, size_t n, const char *s) {
    size_t k = 0;
    if (k + 1 < n) out[k++] = '\'';
    for (; *s && k + 5 < n; s++) {
        if (*s == '\'') { memcpy(out + k, "'\\''", 4); k += 4; }
        else out[k++] = *s;
    }
    if (k + 1 < n) out[k++] = '\'';
    out[k] = '\0';
}

int cb_npm_package_dir(const char *spec, char *dir, size_t dir_size, cb_error *e) {
    const char *cache = getenv("CB_CACHE"), *home = getenv("HOME");
    char cached[4096];
    if (cache && *cache) snprintf(cached, sizeof cached, "%s/npm/%s", cache, spec);
    else snprintf(cached, sizeof cached, "%s/.cache/caramba/npm/%s", home ? home : ".", spec);
    if (is_dir(cached)) {
        if ((size_t)snprintf(dir, dir_size, "%s", cached) >= dir_size)
            return cb_fail(e, CB_E_IO, cached, "path too long");
        return CB_OK;
    }
    char script[4096], qs[8300], qspec[600], cmd[9000];
    if (!find_script(script, sizeof script))
        return cb_fail(e, CB_E_IO, spec, "npm package not in the cache (%s) and pipelines/fetch-npm.sh not found "
                       "(set CB_ROOT or CB_FETCH_NPM)", cached);
    shell_quote(qs, sizeof qs, script);
    shell_quote(qspec, sizeof qspec, spec);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", qs, qspec);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p) return cb_fail(e, CB_E_IO, spec, "cannot run %s", script);
    char line[4096], last[4096] = "";
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0]) snprintf(last, sizeof last, "%s", line);
    }
    int status = pclose(p);
    if (status != 0 || !is_dir(last))
        return cb_fail(e, CB_E_IO, spec, "fetching the npm package failed: %s", last[0] ? last : "no output");
    if ((size_t)snprintf(dir, dir_size, "%s", last) >= dir_size) return cb_fail(e, CB_E_IO, last, "path too long");
    return CB_OK;
}
