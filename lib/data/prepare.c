/* prepare.c: corpus -> split -> token ids -> train.npy, val.npy, prepared.json, written
 * into a temporary directory that replaces the output directory only when complete. */
#include "data/prepare.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/atomic_dir.h"
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/npy_write.h"
#include "tokenizer/load.h"

static const char *const split_names[2] = {"train", "val"};

int cb_prepare_is_val(const cb_prepare_opts *o, const cb_document *d, int *is_val, cb_error *e) {
    if (o->val_from > 0) {
        if (d->year < 0)
            return cb_fail(e, CB_E_INVALID, d->name, "document name does not start with a year; --val-from needs one");
        *is_val = d->year >= o->val_from;
        return CB_OK;
    }
    double frac = o->val_frac > 0 ? o->val_frac : CB_PREPARE_VAL_FRAC;
    double u = (double)(cb_hash_str(0, d->name) >> 11) * 0x1p-53;
    *is_val = u < frac;
    return CB_OK;
}

/* The id and text of the tokenizer's end-of-text token, or -1. */
static int32_t find_eot(const cb_tokenizer *t, const char **text) {
    static const char *const names[] = {"<|endoftext|>", "<|end_of_text|>"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        size_t n = strlen(names[k]);
        for (size_t i = 0; i < t->added.n; i++) {
            const cb_added_token *a = &t->added.v[i];
            if (a->len == n && memcmp(t->added.blob.p + a->off, names[k], n) == 0) {
                *text = names[k];
                return a->id;
            }
        }
    }
    *text = NULL;
    return -1;
}

static int check_opts(const cb_prepare_opts *o, cb_error *e) {
    if (!o->corpus || !o->tokenizer || !o->out_dir)
        return cb_fail(e, CB_E_USAGE, "", "a corpus, a tokenizer and an output directory are required");
    if (!cb_corpus_utf8_valid(o->corpus) || !cb_corpus_utf8_valid(o->tokenizer))
        return cb_fail(e, CB_E_USAGE, "", "the corpus and tokenizer names must be UTF-8 (they are recorded in prepared.json)");
    if (o->val_frac != 0 && o->val_from != 0)
        return cb_fail(e, CB_E_USAGE, "", "--val-frac and --val-from are two rules; give one");
    if (o->val_frac != 0 && !(o->val_frac > 0 && o->val_frac < 1))
        return cb_fail(e, CB_E_USAGE, "", "--val-frac %g is not between 0 and 1", o->val_frac);
    if (o->val_from < 0) return cb_fail(e, CB_E_USAGE, "", "--val-from %d is not a year", o->val_from);
    return CB_OK;
}

/* prepared.json: what was made, from what, by which rule; no time stamps, so that the
 * same inputs give the same file. */
static json_t *describe(const cb_prepare_opts *o, const cb_corpus *c, const cb_prepare_stats *st, const char *eot_text,
                        const char sha[2][65], const enum cb_dtype dtype[2], json_t *val_names) {
    json_t *doc = cb_doc_new("dataset");
    json_object_set_new(doc, "corpus", json_string(c->name));
    json_object_set_new(doc, "source", json_string(c->source));
    json_object_set_new(doc, "tokenizer", json_string(o->tokenizer));
    json_object_set_new(doc, "vocab_size", json_integer((json_int_t)st->vocab_size));
    json_object_set_new(doc, "document_separator",
                        eot_text ? json_pack("{s:s,s:i}", "token", eot_text, "id", (int)st->eot_id) : json_pack("{s:s}", "text", "\n\n"));
    json_t *split = o->val_from > 0 ? json_pack("{s:s,s:i}", "rule", "val_from", "val_from", o->val_from)
                                    : json_pack("{s:s,s:f}", "rule", "val_frac", "val_frac",
                                                o->val_frac > 0 ? o->val_frac : CB_PREPARE_VAL_FRAC);
    json_object_set_new(doc, "split", split);
    json_object_set_new(doc, "documents_dropped_empty", json_integer((json_int_t)c->n_empty));
    json_object_set_new(doc, "invalid_utf8_bytes_replaced", json_integer((json_int_t)c->n_replaced));
    for (int s = 0; s < 2; s++) {
        char file[16];
        snprintf(file, sizeof file, "%s.npy", split_names[s]);
        json_t *part = json_pack("{s:s,s:s,s:I,s:I,s:I,s:s}", "file", file, "dtype", cb_dataset_dtype_name(dtype[s]),
                                 "documents", (json_int_t)st->documents[s], "tokens", (json_int_t)st->tokens[s],
                                 "text_bytes", (json_int_t)st->bytes[s], "sha256", sha[s]);
        if (s == CB_SPLIT_VAL) json_object_set(part, "document_names", val_names);
        json_object_set_new(doc, split_names[s], part);
    }
    return doc;
}

/* Tokenize every document into its split. */
static int tokenize(const cb_prepare_opts *o, const cb_corpus *c, cb_tokenizer *t, cb_ids ids[2],
                    cb_prepare_stats *st, json_t *val_names, cb_error *e) {
    const char *eot_text;
    st->eot_id = find_eot(t, &eot_text);
    cb_ids sep = {0};
    if (st->eot_id >= 0) CB_TRY(cb_ids_push(&sep, st->eot_id, e));
    else CB_TRY(cb_tokenizer_encode(t, (const uint8_t *)"\n\n", 2, 0, &sep, e));
    int rc = CB_OK;
    for (size_t i = 0; i < c->n && rc == CB_OK; i++) {
        const cb_document *d = &c->docs[i];
        int v = 0;
        rc = cb_prepare_is_val(o, d, &v, e);
        if (rc != CB_OK) break;
        size_t before = ids[v].n;
        /* text that spells a special token stays text: only the separator is special */
        rc = cb_tokenizer_encode(t, d->text, d->len, 0, &ids[v], e);
        if (rc == CB_OK) rc = cb_ids_reserve(&ids[v], sep.n, e);
        if (rc != CB_OK) {
            cb_error_prefix(e, "document %s", d->name);
            break;
        }
        memcpy(ids[v].v + ids[v].n, sep.v, sep.n * sizeof *sep.v);
        ids[v].n += sep.n;
        st->documents[v]++;
        st->tokens[v] += ids[v].n - before;
        st->bytes[v] += d->len;
        if (v) json_array_append_new(val_names, json_string(d->name));
    }
    cb_ids_free(&sep);
    return rc;
}

int cb_prepare(const cb_prepare_opts *o, cb_prepare_stats *stats, cb_error *e) {
    CB_TRY(check_opts(o, e));
    cb_prepare_stats st;
    memset(&st, 0, sizeof st);
    /* the output location is checked before the long work */
    cb_atomic_dir dir;
    CB_TRY(cb_atomic_dir_open(&dir, o->out_dir, "prepared.json", e));
    cb_tokenizer t;
    int rc = cb_tokenizer_open(&t, o->tokenizer, e);
    if (rc != CB_OK) {
        cb_atomic_dir_abort(&dir);
        return rc;
    }
    st.vocab_size = t.n_vocab;
    cb_corpus c;
    rc = cb_corpus_load(&c, o->corpus, e);
    if (rc != CB_OK) {
        cb_tokenizer_free(&t);
        cb_atomic_dir_abort(&dir);
        return rc;
    }
    st.dropped_empty = c.n_empty;
    cb_ids ids[2] = {{0}, {0}};
    json_t *val_names = json_array();
    rc = tokenize(o, &c, &t, ids, &st, val_names, e);
    const char *eot_text = NULL;
    find_eot(&t, &eot_text);
    cb_tokenizer_free(&t);
    if (rc == CB_OK) {
        for (int s = 0; s < 2 && rc == CB_OK; s++) {
            if (st.documents[s] > 0) continue;
            if (o->val_from > 0)
                rc = cb_fail(e, CB_E_INVALID, o->corpus, "--val-from %d leaves no document for %s (%zu documents)",
                             o->val_from, s ? "validation" : "training", c.n);
            else
                rc = cb_fail(e, CB_E_INVALID, o->corpus, "--val-frac %g puts no document in %s (%zu documents)",
                             o->val_frac > 0 ? o->val_frac : CB_PREPARE_VAL_FRAC, s ? "validation" : "training", c.n);
        }
    }
    char sha[2][65] = {"", ""};
    enum cb_dtype dtype[2] = {CB_DTYPE_U16, CB_DTYPE_U16};
    for (int s = 0; s < 2 && rc == CB_OK; s++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s.npy", dir.tmp_path, split_names[s]);
        rc = cb_npy_write_tokens(path, ids[s].v, ids[s].n, &dtype[s], sha[s], e);
        /* name the file as it will be, not its temporary directory */
        if (rc != CB_OK) snprintf(e->where, sizeof e->where, "%.400s/%s.npy", o->out_dir, split_names[s]);
    }
    if (rc == CB_OK) {
        json_t *doc = describe(o, &c, &st, eot_text, sha, dtype, val_names);
        char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
        json_decref(doc);
        if (!text) {
            rc = cb_fail(e, CB_E_RUNTIME, o->out_dir, "cannot format prepared.json");
        } else {
            size_t n = strlen(text);
            char path[8192];
            snprintf(path, sizeof path, "%s/prepared.json", dir.tmp_path);
            char *with_nl = realloc(text, n + 2);
            if (!with_nl) {
                free(text);
                rc = cb_fail(e, CB_E_RUNTIME, o->out_dir, "out of memory");
            } else {
                with_nl[n] = '\n';
                with_nl[n + 1] = '\0';
                rc = cb_atomic_write(path, with_nl, n + 1, e);
                free(with_nl);
            }
        }
    }
    json_decref(val_names);
    cb_ids_free(&ids[0]);
    cb_ids_free(&ids[1]);
    cb_corpus_free(&c);
    if (rc == CB_OK) rc = cb_atomic_dir_commit(&dir, e);
    else cb_atomic_dir_abort(&dir);
    if (rc == CB_OK && stats) *stats = st;
    return rc;
}
