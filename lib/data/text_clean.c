/* text_clean.c: one pass over the bytes, characters decoded as UTF-8; white space at line
 * ends and blank lines are held back until the next visible character shows they count. */
#include "data/text_clean.h"

#include "tokenizer/unicode.h"

int cb_text_clean(const uint8_t *text, size_t n, cb_bytes *out, size_t *n_replaced, cb_error *e) {
    /* room for the worst case: every byte invalid, 3 bytes of U+FFFD each */
    if (n > SIZE_MAX / 3) return cb_fail(e, CB_E_RUNTIME, "", "text of %zu bytes is too large", n);
    CB_TRY(cb_bytes_reserve(out, 3 * n, e));
    size_t start = out->n;
    size_t pending_ws = 0;  /* spaces/tabs seen since the last visible character: their start in text */
    size_t pending_ws_n = 0;
    size_t newlines = 0;    /* LF held back since the last visible character */
    size_t replaced = 0;
    size_t i = 0;
    if (n >= 3 && text[0] == 0xEF && text[1] == 0xBB && text[2] == 0xBF) i = 3;
    while (i < n) {
        uint32_t cp;
        int len = cb_utf8_next(text + i, n - i, &cp);
        size_t at = i;
        i += (size_t)len;
        if (cp == '\r') {
            if (i < n && text[i] == '\n') i++;
            cp = '\n';
        }
        if (cp == '\n') {
            pending_ws_n = 0; /* trailing white space of the line */
            newlines++;
            continue;
        }
        if (cp == ' ' || cp == '\t') {
            if (pending_ws_n == 0) pending_ws = at;
            pending_ws_n++;
            continue;
        }
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) continue;
        /* a visible character: release what was held back */
        if (newlines && out->n > start) {
            size_t k = newlines > 2 ? 2 : newlines;
            for (size_t j = 0; j < k; j++) out->p[out->n++] = '\n';
        }
        newlines = 0;
        if (pending_ws_n) {
            /* the held white space, as it was (only spaces and tabs, possibly with dropped
             * control characters between them: copy the spaces and tabs alone) */
            for (size_t j = pending_ws; j < at; j++)
                if (text[j] == ' ' || text[j] == '\t') out->p[out->n++] = text[j];
            pending_ws_n = 0;
        }
        if (cp == CB_UTF8_INVALID) {
            out->p[out->n++] = 0xEF;
            out->p[out->n++] = 0xBF;
            out->p[out->n++] = 0xBD;
            replaced++;
        } else {
            for (int j = 0; j < len; j++) out->p[out->n++] = text[at + (size_t)j];
        }
    }
    if (n_replaced) *n_replaced = replaced;
    return CB_OK;
}
