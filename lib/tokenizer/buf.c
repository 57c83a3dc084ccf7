/* buf.c: growth of the id and byte arrays (doubling, checked for overflow). */
#include "tokenizer/buf.h"

#include <stdlib.h>
#include <string.h>

static int grow(void **p, size_t *cap, size_t need, size_t elem, cb_error *e) {
    if (need <= *cap) return CB_OK;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) {
        if (cap2 > SIZE_MAX / 2 / elem) return cb_fail(e, CB_E_RUNTIME, "", "buffer of %zu elements is too large", need);
        cap2 *= 2;
    }
    void *q = realloc(*p, cap2 * elem);
    if (!q) return cb_fail(e, CB_E_RUNTIME, "", "out of memory growing a buffer to %zu bytes", cap2 * elem);
    *p = q;
    *cap = cap2;
    return CB_OK;
}

int cb_ids_reserve(cb_ids *a, size_t extra, cb_error *e) {
    if (extra > SIZE_MAX - a->n) return cb_fail(e, CB_E_RUNTIME, "", "id buffer overflows");
    void *p = a->v;
    int rc = grow(&p, &a->cap, a->n + extra, sizeof *a->v, e);
    a->v = p;
    return rc;
}

int cb_bytes_reserve(cb_bytes *b, size_t extra, cb_error *e) {
    if (extra > SIZE_MAX - b->n) return cb_fail(e, CB_E_RUNTIME, "", "byte buffer overflows");
    void *p = b->p;
    int rc = grow(&p, &b->cap, b->n + extra, 1, e);
    b->p = p;
    return rc;
}

int cb_bytes_append(cb_bytes *b, const void *p, size_t n, cb_error *e) {
    if (n == 0) return CB_OK;
    CB_TRY(cb_bytes_reserve(b, n, e));
    memcpy(b->p + b->n, p, n);
    b->n += n;
    return CB_OK;
}

void cb_ids_free(cb_ids *a) {
    free(a->v);
    memset(a, 0, sizeof *a);
}

void cb_bytes_free(cb_bytes *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
