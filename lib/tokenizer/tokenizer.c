/* tokenizer.c: encoding (added tokens, then the split patterns, then BPE per piece) and
 * decoding (concatenating the bytes of each id) of a loaded tokenizer. */
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cb_tokenizer_init(cb_tokenizer *t) {
    memset(t, 0, sizeof *t);
}

void cb_tokenizer_free(cb_tokenizer *t) {
    cb_bpe_free(&t->bpe);
    cb_added_free(&t->added);
    free(t->dec_off);
    free(t->dec_known);
    cb_bytes_free(&t->dec_blob);
    memset(t, 0, sizeof *t);
}

int cb_tokenizer_init_bytes(cb_tokenizer *t, cb_error *e) {
    cb_tokenizer_init(t);
    snprintf(t->name, sizeof t->name, "byte");
    t->bytes_only = 1;
    return cb_tokenizer_finish(t, e);
}

int cb_tokenizer_finish(cb_tokenizer *t, cb_error *e) {
    size_t n_vocab = t->bytes_only ? 256 : t->bpe.n_ids;
    if (!t->bytes_only) CB_TRY(cb_bpe_finish(&t->bpe, e));
    cb_added_finish(&t->added);
    for (size_t i = 0; i < t->added.n; i++)
        if ((size_t)t->added.v[i].id + 1 > n_vocab) n_vocab = (size_t)t->added.v[i].id + 1;
    t->n_vocab = n_vocab;
    t->dec_off = cb_calloc(n_vocab + 1, sizeof *t->dec_off, e);
    t->dec_known = cb_calloc(n_vocab, 1, e);
    if (!t->dec_off || !t->dec_known) return CB_E_RUNTIME;
    /* Added tokens decode to their content (Hugging Face looks them up before the
     * vocabulary), BPE tokens to their bytes. One blob, in id order. */
    const cb_added_token **added_of = cb_calloc(n_vocab, sizeof *added_of, e);
    if (!added_of) return CB_E_RUNTIME;
    for (size_t i = 0; i < t->added.n; i++) added_of[t->added.v[i].id] = &t->added.v[i];
    int rc = CB_OK;
    for (size_t id = 0; id < n_vocab && rc == CB_OK; id++) {
        t->dec_off[id] = (uint32_t)t->dec_blob.n;
        const uint8_t *p = NULL;
        size_t len = 0;
        if (added_of[id]) {
            p = t->added.blob.p + added_of[id]->off;
            len = added_of[id]->len;
        } else if (t->bytes_only) {
            uint8_t byte = (uint8_t)id;
            rc = cb_bytes_append(&t->dec_blob, &byte, 1, e);
            t->dec_known[id] = 1;
            continue;
        } else if (id < t->bpe.n_ids && t->bpe.tok_len[id] >= 0) {
            p = t->bpe.blob.p + t->bpe.tok_off[id];
            len = (size_t)t->bpe.tok_len[id];
        } else {
            continue;
        }
        if (t->dec_blob.n + len > UINT32_MAX) rc = cb_fail(e, CB_E_INVALID, "", "the vocabulary is too large");
        else rc = cb_bytes_append(&t->dec_blob, p, len, e);
        t->dec_known[id] = 1;
    }
    t->dec_off[n_vocab] = (uint32_t)t->dec_blob.n;
    free(added_of);
    return rc;
}

const uint8_t *cb_tokenizer_token(const cb_tokenizer *t, int32_t id, size_t *len) {
    *len = 0;
    if (id < 0 || (size_t)id >= t->n_vocab || !t->dec_known[id]) return NULL;
    *len = t->dec_off[id + 1] - t->dec_off[id];
    return t->dec_blob.p + t->dec_off[id];
}

int cb_tokenizer_decode(const cb_tokenizer *t, const int32_t *ids, size_t n, cb_bytes *out, cb_error *e) {
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const uint8_t *p = cb_tokenizer_token(t, ids[i], &len);
        if (!p)
            return cb_fail(e, CB_E_INVALID, "", "ids[%zu]: %ld is not a token id of %s (%zu ids)", i, (long)ids[i],
                           t->name, t->n_vocab);
        CB_TRY(cb_bytes_append(out, p, len, e));
    }
    return CB_OK;
}

/* Split s[0..n) with split[level..] and BPE-encode the pieces. */
static int encode_pieces(cb_tokenizer *t, const uint8_t *s, size_t n, int level, cb_ids *out, cb_error *e) {
    if (level == t->n_split) return cb_bpe_encode(&t->bpe, s, n, out, e);
    cb_split_kind kind = t->split[level];
    size_t pos = 0;
    while (pos < n) {
        size_t end = cb_split_next(kind, s, n, pos);
        CB_TRY(encode_pieces(t, s + pos, end - pos, level + 1, out, e));
        pos = end;
    }
    return CB_OK;
}

/* One stretch of text between added tokens. */
static int encode_segment(cb_tokenizer *t, const uint8_t *s, size_t n, cb_ids *out, cb_error *e) {
    if (n == 0) return CB_OK;
    if (t->bytes_only) {
        CB_TRY(cb_ids_reserve(out, n, e));
        for (size_t i = 0; i < n; i++) out->v[out->n++] = s[i];
        return CB_OK;
    }
    if (t->add_prefix_space && s[0] != ' ') {
        /* Hugging Face's ByteLevel(add_prefix_space): the pattern sees " " + segment */
        cb_bytes tmp = {0};
        int rc = cb_bytes_append(&tmp, " ", 1, e);
        if (rc == CB_OK) rc = cb_bytes_append(&tmp, s, n, e);
        if (rc == CB_OK) rc = encode_pieces(t, tmp.p, tmp.n, 0, out, e);
        cb_bytes_free(&tmp);
        return rc;
    }
    return encode_pieces(t, s, n, 0, out, e);
}

int cb_tokenizer_encode(cb_tokenizer *t, const uint8_t *text, size_t n, int flags, cb_ids *out, cb_error *e) {
    size_t pos = 0;
    while (pos < n) {
        size_t start, end;
        const cb_added_token *tok;
        if (!cb_added_find(&t->added, text, n, pos, flags & CB_TOK_SPECIAL, &start, &end, &tok)) break;
        CB_TRY(encode_segment(t, text + pos, start - pos, out, e));
        CB_TRY(cb_ids_push(out, tok->id, e));
        pos = end;
    }
    return encode_segment(t, text + pos, n - pos, out, e);
}
