/* added.h: added tokens (Hugging Face's added_tokens, tiktoken's special tokens): strings
 * matched whole in the text before pre-tokenization, leftmost first and longest at a place,
 * as Hugging Face's aho-corasick (LeftmostLongest) finds them. */
#ifndef CB_TOKENIZER_ADDED_H
#define CB_TOKENIZER_ADDED_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "tokenizer/buf.h"

typedef struct cb_added_token {
    int32_t id;
    uint32_t off, len; /* content bytes in cb_added.blob */
    uint8_t first;     /* content's first byte */
    uint8_t special;   /* 1: matched only when the caller asks for special tokens */
    uint8_t lstrip;    /* the match takes in white space on its left ... */
    uint8_t rstrip;    /* ... or its right (dropped from the output, as in Hugging Face) */
} cb_added_token;

typedef struct cb_added {
    cb_added_token *v; /* (n) sorted by first byte, then longest first, after cb_added_finish */
    size_t n, cap;
    size_t n_plain;    /* tokens that are not special */
    cb_bytes blob;
    uint32_t first[257]; /* tokens starting with byte c are v[first[c] .. first[c+1]) */
} cb_added;

/* Add one token (content non-empty). The same content twice: CB_E_INVALID. */
int cb_added_add(cb_added *a, int32_t id, const uint8_t *content, size_t len, int special,
                 int lstrip, int rstrip, cb_error *e);
/* Sort and index the tokens; call once after the last cb_added_add. */
void cb_added_finish(cb_added *a);

/* The first match in s[from..n): returns 1 and sets [*start, *end) (lstrip/rstrip
 * white space included, never before `from`) and *tok, or 0 when there is none.
 * Special tokens take part only when with_special. */
int cb_added_find(const cb_added *a, const uint8_t *s, size_t n, size_t from, int with_special,
                  size_t *start, size_t *end, const cb_added_token **tok);

void cb_added_free(cb_added *a);

#endif
