/* buf.h: growable arrays of token ids and of bytes, the outputs of encoding and decoding. */
#ifndef CB_TOKENIZER_BUF_H
#define CB_TOKENIZER_BUF_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"

typedef struct cb_ids {
    int32_t *v; /* (n) token ids */
    size_t n, cap;
} cb_ids;

typedef struct cb_bytes {
    uint8_t *p; /* (n) bytes, not NUL-terminated */
    size_t n, cap;
} cb_bytes;

/* Make room for `extra` more elements. */
int cb_ids_reserve(cb_ids *a, size_t extra, cb_error *e);
int cb_bytes_reserve(cb_bytes *b, size_t extra, cb_error *e);

static inline int cb_ids_push(cb_ids *a, int32_t id, cb_error *e) {
    if (a->n == a->cap) CB_TRY(cb_ids_reserve(a, 1, e));
    a->v[a->n++] = id;
    return CB_OK;
}

int cb_bytes_append(cb_bytes *b, const void *p, size_t n, cb_error *e);

void cb_ids_free(cb_ids *a);
void cb_bytes_free(cb_bytes *b);

#endif
