/* model_dir.c: model directories for generation: tokenizer, end-of-text ids. */
#include "infer/model_dir.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "tokenizer/load.h"

static int exists(const char *dir, const char *name) {
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

/* The first train.tokenizer string of the plan's runs (groups[].runs[].train.tokenizer). */
static const char *plan_tokenizer(const json_t *plan) {
    size_t i, j;
    const json_t *g, *r;
    json_array_foreach(json_object_get(plan, "groups"), i, g) {
        json_array_foreach(json_object_get(g, "runs"), j, r) {
            const char *s = json_string_value(json_object_get(json_object_get(r, "train"), "tokenizer"));
            if (s && *s) return s;
        }
    }
    return NULL;
}

int cb_model_tokenizer(cb_tokenizer *t, const char *spec, const char *dir, const cb_model *m, int *found, char *used,
                       size_t n, cb_error *e) {
    *found = 0;
    const char *src = spec;
    if (!src && (exists(dir, "tokenizer.json") || (exists(dir, "encoder.json") && exists(dir, "vocab.bpe")))) src = dir;
    if (!src) src = plan_tokenizer(m->plan);
    if (!src) return CB_OK;
    snprintf(used, n, "%s", src);
    CB_TRY(cb_tokenizer_open(t, src, e));
    int vocab = (int)json_integer_value(json_object_get(json_object_get(m->plan, "model"), "vocab_size"));
    if (t->n_vocab > (size_t)vocab) {
        cb_fail(e, CB_E_INVALID, src, "the tokenizer has %zu ids, the model's vocabulary %d", t->n_vocab, vocab);
        cb_tokenizer_free(t);
        return CB_E_INVALID;
    }
    *found = 1;
    return CB_OK;
}

int32_t cb_tokenizer_special_id(const cb_tokenizer *t, const char *content) {
    size_t k = strlen(content);
    for (size_t i = 0; i < t->added.n; i++) {
        const cb_added_token *a = &t->added.v[i];
        if (a->len == k && memcmp(t->added.blob.p + a->off, content, k) == 0) return a->id;
    }
    return -1;
}

int cb_tokenizer_same(const cb_tokenizer *a, const cb_tokenizer *b) {
    if (a->n_vocab != b->n_vocab) return 0;
    for (size_t i = 0; i < a->n_vocab; i++) {
        size_t la, lb;
        const uint8_t *pa = cb_tokenizer_token(a, (int32_t)i, &la), *pb = cb_tokenizer_token(b, (int32_t)i, &lb);
        if ((pa == NULL) != (pb == NULL) || la != lb || (la && memcmp(pa, pb, la) != 0)) return 0;
    }
    return 1;
}

int cb_model_eos_ids(const char *dir, const cb_tokenizer *t, int32_t *ids, int max) {
    int n = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    json_t *g = json_load_file(path, 0, NULL);
    const json_t *eos = json_object_get(g, "eos_token_id");
    if (json_is_integer(eos) && n < max) ids[n++] = (int32_t)json_integer_value(eos);
    size_t i;
    const json_t *v;
    json_array_foreach(eos, i, v) if (json_is_integer(v) && n < max) ids[n++] = (int32_t)json_integer_value(v);
    json_decref(g);
    if (n || !t) return n;
    static const char *names[] = {"<|end_of_text|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|im_end|>"};
    for (size_t k = 0; k < sizeof names / sizeof *names && n < max; k++) {
        int32_t id = cb_tokenizer_special_id(t, names[k]);
        if (id >= 0) ids[n++] = id;
    }
    return n;
}
