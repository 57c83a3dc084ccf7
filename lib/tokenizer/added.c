/* added.c: the added-token list and its leftmost-longest matcher. The tokens starting
 * with each byte are kept together, longest first, so the first that matches at a place
 * is the longest there; the text is scanned for bytes that start some token. */
#include "tokenizer/added.h"

#include <stdlib.h>
#include <string.h>
#include "tokenizer/unicode.h"

int cb_added_add(cb_added *a, int32_t id, const uint8_t *content, size_t len, int special,
                 int lstrip, int rstrip, cb_error *e) {
    if (len == 0) return cb_fail(e, CB_E_INVALID, "", "added token %d is empty", (int)id);
    if (len > UINT32_MAX || a->blob.n > UINT32_MAX - len)
        return cb_fail(e, CB_E_INVALID, "", "added token %d is too long", (int)id);
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].len == len && memcmp(a->blob.p + a->v[i].off, content, len) == 0)
            return cb_fail(e, CB_E_INVALID, "", "added tokens %d and %d have the same content",
                           (int)a->v[i].id, (int)id);
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        cb_added_token *v = realloc(a->v, cap * sizeof *v);
        if (!v) return cb_fail(e, CB_E_RUNTIME, "", "out of memory adding token %d", (int)id);
        a->v = v;
        a->cap = cap;
    }
    cb_added_token t = {id, (uint32_t)a->blob.n, (uint32_t)len, content[0], (uint8_t)!!special,
                        (uint8_t)!!lstrip, (uint8_t)!!rstrip};
    a->n_plain += !special;
    CB_TRY(cb_bytes_append(&a->blob, content, len, e));
    a->v[a->n++] = t;
    return CB_OK;
}

static int by_first_then_longest(const void *x, const void *y) {
    const cb_added_token *p = x, *q = y;
    if (p->first != q->first) return p->first < q->first ? -1 : 1;
    if (p->len != q->len) return p->len > q->len ? -1 : 1;
    return p->id < q->id ? -1 : p->id > q->id;
}

void cb_added_finish(cb_added *a) {
    if (a->n > 1) qsort(a->v, a->n, sizeof *a->v, by_first_then_longest);
    size_t k = 0;
    for (int c = 0; c < 256; c++) {
        while (k < a->n && a->v[k].first < c) k++;
        a->first[c] = (uint32_t)k;
    }
    a->first[256] = (uint32_t)a->n;
}

static int is_space_at(const uint8_t *s, size_t n, size_t i, int *len) {
    uint32_t cp;
    *len = cb_utf8_next(s + i, n - i, &cp);
    return cb_uclass_of(cp) == CB_UC_SPACE;
}

int cb_added_find(const cb_added *a, const uint8_t *s, size_t n, size_t from, int with_special,
                  size_t *start, size_t *end, const cb_added_token **tok) {
    if (a->n == 0 || (!with_special && a->n_plain == 0)) return 0;
    for (size_t i = from; i < n; i++) {
        uint32_t lo = a->first[s[i]], hi = a->first[s[i] + 1];
        if (lo == hi) continue;
        for (uint32_t k = lo; k < hi; k++) {
            const cb_added_token *t = &a->v[k];
            if (t->special && !with_special) continue;
            if (t->len > n - i || memcmp(a->blob.p + t->off, s + i, t->len) != 0) continue;
            size_t b = i, e = i + t->len;
            if (t->lstrip) {
                /* step back over white space characters (UTF-8: find each one's start) */
                while (b > from) {
                    size_t c = b - 1;
                    while (c > from && (s[c] & 0xC0) == 0x80 && b - c < 4) c--;
                    int len;
                    if (!is_space_at(s, n, c, &len) || c + (size_t)len != b) break;
                    b = c;
                }
            }
            if (t->rstrip) {
                int len;
                while (e < n && is_space_at(s, n, e, &len)) e += (size_t)len;
            }
            *start = b;
            *end = e;
            *tok = t;
            return 1;
        }
    }
    return 0;
}

void cb_added_free(cb_added *a) {
    free(a->v);
    cb_bytes_free(&a->blob);
    memset(a, 0, sizeof *a);
}
