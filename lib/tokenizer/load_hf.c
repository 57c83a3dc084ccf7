/* load_hf.c: Hugging Face tokenizer.json (model type BPE, byte-level) into a cb_tokenizer.
 * Members read: normalizer (must be null), pre_tokenizer (ByteLevel, Split, Sequence),
 * model (BPE: vocab, merges as "a b" or ["a", "b"], ignore_merges, ...), added_tokens,
 * decoder (ByteLevel or null). post_processor is not applied (no BOS added). */
#include "tokenizer/load.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "core/atomic_file.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"

/* Errors: where = the file, message = "member: what is wrong". */
#define BAD(...) cb_fail(e, CB_E_INVALID, path, __VA_ARGS__)

static const char *type_of(const json_t *v) {
    const char *s = json_string_value(json_object_get(v, "type"));
    return s ? s : "";
}

/* An optional boolean member (absent or null: dflt). */
static int get_bool(const json_t *obj, const char *key, int dflt, int *out, const char *path, const char *member,
                    cb_error *e) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) { *out = dflt; return CB_OK; }
    if (!json_is_boolean(v)) return BAD("%s.%s: expected true or false", member, key);
    *out = json_is_true(v);
    return CB_OK;
}

/* A member that must be absent, null, or "" (a feature caramba's BPE does not have). */
static int want_empty_string(const json_t *obj, const char *key, const char *path, cb_error *e) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) return CB_OK;
    return BAD("model.%s: %s is not supported (byte-level BPE has none)", key, json_is_string(v) ? json_string_value(v) : "a value");
}

static int read_pre_tokenizer(cb_tokenizer *t, const json_t *pt, const char *member, int *byte_level,
                              const char *path, cb_error *e) {
    if (!json_is_object(pt)) return BAD("%s: expected an object", member);
    const char *type = type_of(pt);
    char sub[256];
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(pt, "pretokenizers");
        if (!json_is_array(list)) return BAD("%s.pretokenizers: expected an array", member);
        for (size_t i = 0; i < json_array_size(list); i++) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", member, i);
            CB_TRY(read_pre_tokenizer(t, json_array_get(list, i), sub, byte_level, path, e));
        }
        return CB_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        int prefix, use_regex;
        CB_TRY(get_bool(pt, "add_prefix_space", 1, &prefix, path, member, e));
        CB_TRY(get_bool(pt, "use_regex", 1, &use_regex, path, member, e));
        if (*byte_level) return BAD("%s: a second ByteLevel step", member);
        *byte_level = 1;
        /* the prefix space goes in before any splitting in Hugging Face too, as long as
         * no Split precedes this step */
        if (prefix && t->n_split > 0) return BAD("%s: add_prefix_space after a Split is not supported", member);
        t->add_prefix_space = prefix;
        if (use_regex) {
            if (t->n_split == CB_TOK_MAX_SPLITS) return BAD("%s: too many splitting steps", member);
            t->split[t->n_split++] = CB_SPLIT_GPT2;
        }
        return CB_OK;
    }
    if (strcmp(type, "Split") == 0) {
        if (*byte_level) return BAD("%s: a Split after the ByteLevel step is not supported", member);
        json_t *pattern = json_object_get(pt, "pattern");
        const char *regex = json_string_value(json_object_get(pattern, "Regex"));
        if (!regex) return BAD("%s.pattern: expected {\"Regex\": \"...\"}", member);
        const char *behavior = json_string_value(json_object_get(pt, "behavior"));
        if (!behavior || strcmp(behavior, "Isolated") != 0)
            return BAD("%s.behavior: \"%s\" is not supported (only \"Isolated\")", member, behavior ? behavior : "");
        int invert;
        CB_TRY(get_bool(pt, "invert", 0, &invert, path, member, e));
        if (invert) return BAD("%s.invert: true is not supported", member);
        cb_split_kind kind;
        if (cb_split_from_pattern(regex, &kind, e) != CB_OK) {
            cb_error_prefix(e, "%s.pattern.Regex", member);
            snprintf(e->where, sizeof e->where, "%s", path);
            return CB_E_INVALID;
        }
        if (t->n_split == CB_TOK_MAX_SPLITS) return BAD("%s: too many splitting steps", member);
        t->split[t->n_split++] = kind;
        return CB_OK;
    }
    return BAD("%s: pre-tokenizer type \"%s\" is not supported (ByteLevel, Split, Sequence)", member, type);
}

/* A vocabulary key in the byte-level spelling -> raw bytes in buf (room for len bytes). */
static int unmap(const char *s, size_t len, uint8_t *buf, size_t *out_len, const char *member, const char *path,
                 cb_error *e) {
    uint32_t bad;
    long n = cb_byte_level_decode((const uint8_t *)s, len, buf, &bad);
    if (n < 0) {
        if (bad == CB_UTF8_INVALID) return BAD("%s: token \"%.60s\" is not valid UTF-8", member, s);
        return BAD("%s: token \"%.60s\" has the character U+%04X, which no byte stands for in the "
                   "byte-level alphabet", member, s, (unsigned)bad);
    }
    if (n == 0) return BAD("%s: empty token", member);
    *out_len = (size_t)n;
    return CB_OK;
}

static int read_model(cb_tokenizer *t, const json_t *model, size_t n_tokens, const char *path, cb_error *e) {
    size_t id_limit = cb_tokenizer_id_limit(n_tokens);
    if (!json_is_object(model)) return BAD("model: expected an object");
    const char *type = type_of(model);
    if (*type ? strcmp(type, "BPE") != 0 : !json_object_get(model, "merges"))
        return BAD("model.type: \"%s\" is not supported (caramba reads BPE models)", type);
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0))
        return BAD("model.dropout: BPE dropout is not supported (it makes encoding random)");
    CB_TRY(want_empty_string(model, "continuing_subword_prefix", path, e));
    CB_TRY(want_empty_string(model, "end_of_word_suffix", path, e));
    int byte_fallback;
    CB_TRY(get_bool(model, "byte_fallback", 0, &byte_fallback, path, "model", e));
    if (byte_fallback) return BAD("model.byte_fallback: true is not supported (byte-level BPE needs none)");
    int ignore_merges;
    CB_TRY(get_bool(model, "ignore_merges", 0, &ignore_merges, path, "model", e));

    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return BAD("model.vocab: expected an object of token: id");
    size_t n_ids = 0, longest = 0;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= INT32_MAX)
            return BAD("model.vocab.\"%.60s\": expected an id from 0 to %d", key, INT32_MAX - 1);
        if ((size_t)json_integer_value(val) >= id_limit)
            return BAD("model.vocab.\"%.60s\": id %lld is far past the %zu tokens the file holds (ids below %zu "
                       "accepted)", key, (long long)json_integer_value(val), n_tokens, id_limit);
        if ((size_t)json_integer_value(val) + 1 > n_ids) n_ids = (size_t)json_integer_value(val) + 1;
        if (strlen(key) > longest) longest = strlen(key);
    }
    CB_TRY(cb_bpe_init(&t->bpe, n_ids, e));
    t->bpe.ignore_merges = ignore_merges;
    uint8_t *buf = cb_malloc(2 * longest + 2, 1, e), *buf2 = buf ? buf + longest + 1 : NULL;
    if (!buf) return CB_E_RUNTIME;
    int rc = CB_OK;
    json_object_foreach(vocab, key, val) {
        size_t n;
        rc = unmap(key, strlen(key), buf, &n, "model.vocab", path, e);
        if (rc == CB_OK && cb_bpe_add_token(&t->bpe, (int32_t)json_integer_value(val), buf, n, e) != CB_OK) {
            cb_error_prefix(e, "model.vocab.\"%.60s\"", key);
            snprintf(e->where, sizeof e->where, "%s", path);
            rc = CB_E_INVALID;
        }
        if (rc != CB_OK) break;
    }

    json_t *merges = json_object_get(model, "merges");
    if (rc == CB_OK && !json_is_array(merges)) rc = BAD("model.merges: expected an array");
    for (size_t i = 0; rc == CB_OK && i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t na, nb;
        if (json_is_string(m)) {
            /* "a b": tokens never hold a space in the byte-level spelling */
            a = json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ') || sp == a || !sp[1]) {
                rc = BAD("model.merges[%zu]: \"%.60s\" is not two tokens separated by one space", i, a);
                break;
            }
            na = (size_t)(sp - a);
            b = sp + 1;
            nb = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            na = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            nb = json_string_length(json_array_get(m, 1));
        } else {
            rc = BAD("model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", i);
            break;
        }
        size_t la, lb;
        char member[64];
        snprintf(member, sizeof member, "model.merges[%zu]", i);
        if (na > longest || nb > longest) { rc = BAD("%s: a token is not in the vocabulary", member); break; }
        if ((rc = unmap(a, na, buf, &la, member, path, e)) != CB_OK) break;
        if ((rc = unmap(b, nb, buf2, &lb, member, path, e)) != CB_OK) break;
        int32_t ia = cb_bpe_find(&t->bpe, buf, la), ib = cb_bpe_find(&t->bpe, buf2, lb);
        if (ia < 0 || ib < 0) {
            rc = BAD("%s: \"%.*s\" is not in the vocabulary", member, (int)(ia < 0 ? na : nb), ia < 0 ? a : b);
            break;
        }
        if (i >= UINT32_MAX - 1) { rc = BAD("model.merges: too many merges"); break; }
        if (cb_bpe_add_merge(&t->bpe, ia, ib, (uint32_t)i, e) != CB_OK) {
            rc = BAD("%s: \"%.*s\" + \"%.*s\" is not in the vocabulary", member, (int)na, a, (int)nb, b);
            break;
        }
    }
    free(buf);
    return rc;
}

static int read_added_tokens(cb_tokenizer *t, const json_t *list, size_t n_tokens, const char *path, cb_error *e) {
    if (!list || json_is_null(list)) return CB_OK;
    if (!json_is_array(list)) return BAD("added_tokens: expected an array");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *a = json_array_get(list, i);
        char member[64];
        snprintf(member, sizeof member, "added_tokens[%zu]", i);
        if (!json_is_object(a)) return BAD("%s: expected an object", member);
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= INT32_MAX)
            return BAD("%s.id: expected an id from 0 to %d", member, INT32_MAX - 1);
        if ((size_t)json_integer_value(id) >= cb_tokenizer_id_limit(n_tokens))
            return BAD("%s.id: id %lld of \"%.60s\" is far past the %zu tokens the file holds (ids below %zu "
                       "accepted)", member, (long long)json_integer_value(id),
                       json_is_string(content) ? json_string_value(content) : "", n_tokens,
                       cb_tokenizer_id_limit(n_tokens));
        if (!json_is_string(content) || json_string_length(content) == 0)
            return BAD("%s.content: expected a non-empty string", member);
        int special, lstrip, rstrip, single_word;
        CB_TRY(get_bool(a, "special", 0, &special, path, member, e));
        CB_TRY(get_bool(a, "lstrip", 0, &lstrip, path, member, e));
        CB_TRY(get_bool(a, "rstrip", 0, &rstrip, path, member, e));
        CB_TRY(get_bool(a, "single_word", 0, &single_word, path, member, e));
        if (single_word) return BAD("%s.single_word: true is not supported", member);
        if (cb_added_add(&t->added, (int32_t)json_integer_value(id), (const uint8_t *)json_string_value(content),
                         json_string_length(content), special, lstrip, rstrip, e) != CB_OK) {
            cb_error_prefix(e, "%s", member);
            snprintf(e->where, sizeof e->where, "%s", path);
            return CB_E_INVALID;
        }
    }
    return CB_OK;
}

static int load(cb_tokenizer *t, const json_t *root, const char *path, cb_error *e) {
    if (!json_is_object(root)) return BAD("expected a JSON object (a Hugging Face tokenizer.json)");
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) return BAD("normalizer: type \"%s\" is not supported (caramba reads "
                                                "byte-level BPE tokenizers without a normalizer)", type_of(norm));
    json_t *pt = json_object_get(root, "pre_tokenizer");
    int byte_level = 0;
    if (pt && !json_is_null(pt)) CB_TRY(read_pre_tokenizer(t, pt, "pre_tokenizer", &byte_level, path, e));
    if (!byte_level) return BAD("pre_tokenizer: no ByteLevel step (caramba reads byte-level BPE tokenizers)");
    json_t *dec = json_object_get(root, "decoder");
    if (dec && !json_is_null(dec) && strcmp(type_of(dec), "ByteLevel") != 0)
        return BAD("decoder: type \"%s\" is not supported (only ByteLevel)", type_of(dec));
    /* what the file holds bounds the ids it may use */
    json_t *added = json_object_get(root, "added_tokens");
    size_t n_tokens = json_object_size(json_object_get(json_object_get(root, "model"), "vocab")) + json_array_size(added);
    CB_TRY(read_model(t, json_object_get(root, "model"), n_tokens, path, e));
    CB_TRY(read_added_tokens(t, added, n_tokens, path, e));
    if (cb_tokenizer_finish(t, e) != CB_OK) {
        if (e->code == CB_E_INVALID) snprintf(e->where, sizeof e->where, "%s", path);
        return e->code;
    }
    return CB_OK;
}

int cb_tokenizer_load_hf(cb_tokenizer *t, const char *path, cb_error *e) {
    cb_tokenizer_init(t);
    snprintf(t->name, sizeof t->name, "%s", path);
    char *text = NULL;
    size_t len = 0;
    CB_TRY(cb_read_file(path, 0, &text, &len, e));
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    free(text);
    if (!root) {
        char where[512];
        snprintf(where, sizeof where, "%s:%d:%d", path, je.line, je.column);
        return cb_fail(e, CB_E_INVALID, where, "invalid JSON: %s", je.text);
    }
    int rc = load(t, root, path, e);
    json_decref(root);
    if (rc != CB_OK) {
        cb_tokenizer_free(t);
        snprintf(t->name, sizeof t->name, "%s", path);
    }
    return rc;
}
