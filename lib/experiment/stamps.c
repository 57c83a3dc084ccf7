/* stamps.c: stage hashes and stamp files (see stamps.h). */
#include "experiment/stamps.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/atomic_file.h"

/* a deep copy without the annotation members */
static json_t *strip_annotations(const json_t *v) {
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if (k[0] == '@') continue;
            json_object_set_new(out, k, strip_annotations(x));
        }
        return out;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(out, strip_annotations(x));
        return out;
    }
    return json_deep_copy(v);
}

char *cb_stamp_canonical_json(const json_t *v) {
    if (!v) return strdup("null");
    json_t *clean = strip_annotations(v);
    if (!clean) return NULL;
    char *s = json_dumps(clean, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    json_decref(clean);
    return s;
}

void cb_stamp_add(cb_sha256 *s, const char *label, const char *value) {
    cb_sha256_update(s, label, strlen(label) + 1);
    cb_sha256_update(s, value ? value : "", strlen(value ? value : "") + 1);
}

void cb_stamp_add_json(cb_sha256 *s, const char *label, const json_t *v) {
    char *text = cb_stamp_canonical_json(v);
    cb_stamp_add(s, label, text ? text : "(unprintable)");
    free(text);
}

static void add_file_content(cb_sha256 *s, const char *path, const struct stat *st) {
    char line[128];
    if (st->st_size > CB_STAMP_CONTENT_MAX) {
        snprintf(line, sizeof line, "size %lld mtime %lld.%09ld", (long long)st->st_size, (long long)st->st_mtim.tv_sec,
                 (long)st->st_mtim.tv_nsec);
        cb_sha256_update(s, line, strlen(line) + 1);
        return;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(line, sizeof line, "unreadable %d", errno);
        cb_sha256_update(s, line, strlen(line) + 1);
        return;
    }
    char buf[1 << 16];
    size_t n;
    cb_sha256 inner;
    cb_sha256_init(&inner);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) cb_sha256_update(&inner, buf, n);
    fclose(f);
    unsigned char d[32];
    cb_sha256_final(&inner, d);
    cb_sha256_update(s, d, sizeof d);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void add_tree(cb_sha256 *s, const char *path, int depth) {
    struct stat st;
    if (stat(path, &st) != 0) {
        cb_sha256_update(s, "missing", 8);
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        add_file_content(s, path, &st);
        return;
    }
    if (depth > 8) return;
    DIR *d = opendir(path);
    if (!d) {
        cb_sha256_update(s, "unreadable dir", 15);
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.') continue; /* ".", "..", temporaries and locks of writers */
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) break;
            names = grown;
        }
        names[n] = strdup(ent->d_name);
        if (names[n]) n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        char sub[4352];
        snprintf(sub, sizeof sub, "%s/%s", path, names[i]);
        cb_sha256_update(s, names[i], strlen(names[i]) + 1);
        add_tree(s, sub, depth + 1);
        free(names[i]);
    }
    free(names);
}

void cb_stamp_add_path(cb_sha256 *s, const char *label, const char *path) {
    cb_stamp_add(s, label, path);
    add_tree(s, path, 0);
}

void cb_stamp_hex(cb_sha256 *s, char hex[65]) {
    unsigned char d[32];
    cb_sha256_final(s, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

int cb_stamp_matches(const char *path, const char *hash) {
    char buf[80] = {0};
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
    return strcmp(buf, hash) == 0;
}

int cb_stamp_write(const char *path, const char *hash, cb_error *e) {
    if (cb_stamp_matches(path, hash)) return CB_OK;
    char line[80];
    int n = snprintf(line, sizeof line, "%s\n", hash);
    return cb_atomic_write(path, line, (size_t)n, e);
}
