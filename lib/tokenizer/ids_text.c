/* ids_text.c: writing ids as a JSON array and reading JSON arrays or white-space lists. */
#include "tokenizer/ids_text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cb_ids_format_json(const int32_t *ids, size_t n, cb_bytes *out, cb_error *e) {
    /* at most 11 characters per id plus a comma, and "[]\n" */
    if (n > (SIZE_MAX - 4) / 12) return cb_fail(e, CB_E_RUNTIME, "", "too many ids");
    CB_TRY(cb_bytes_reserve(out, 12 * n + 4, e));
    uint8_t *p = out->p + out->n;
    *p++ = '[';
    for (size_t i = 0; i < n; i++) {
        if (i) *p++ = ',';
        int64_t v = ids[i];
        if (v < 0) { *p++ = '-'; v = -v; }
        char digits[12];
        int k = 0;
        do { digits[k++] = (char)('0' + v % 10); v /= 10; } while (v);
        while (k) *p++ = (uint8_t)digits[--k];
    }
    *p++ = ']';
    *p++ = '\n';
    out->n = (size_t)(p - out->p);
    return CB_OK;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* where = "name:line:col" of offset off */
static int fail_at(cb_error *e, const char *name, const char *text, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail_at(cb_error *e, const char *name, const char *text, size_t off, const char *fmt, ...) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') { line++; col = 1; }
        else col++;
    }
    char where[512];
    snprintf(where, sizeof where, "%s:%zu:%zu", name, line, col);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cb_fail(e, CB_E_INVALID, where, "%s", msg);
}

int cb_ids_parse(const char *text, size_t len, const char *name, const cb_tokenizer *t, cb_ids *out, cb_error *e) {
    size_t i = 0;
    while (i < len && is_space(text[i])) i++;
    int json = i < len && text[i] == '[';
    if (json) i++;
    int need_id = 0; /* after a comma */
    for (;;) {
        while (i < len && is_space(text[i])) i++;
        if (i == len) {
            if (json) return fail_at(e, name, text, i, "the array has no closing ']'");
            return CB_OK;
        }
        if (json && text[i] == ']' && !need_id) {
            i++;
            while (i < len && is_space(text[i])) i++;
            if (i != len) return fail_at(e, name, text, i, "text after the array");
            return CB_OK;
        }
        size_t start = i;
        int neg = text[i] == '-';
        if (neg) i++;
        long long v = 0;
        size_t digits = 0;
        while (i < len && text[i] >= '0' && text[i] <= '9') {
            if (v < 10000000000LL) v = v * 10 + (text[i] - '0');
            i++;
            digits++;
        }
        if (!digits) return fail_at(e, name, text, start, json && !need_id ? "expected a token id or ']'" : "expected a token id");
        if (neg) v = -v;
        if (i < len && !is_space(text[i]) && !(json && (text[i] == ',' || text[i] == ']')))
            return fail_at(e, name, text, i, "expected a token id");
        if (v < 0 || v > INT32_MAX) return fail_at(e, name, text, start, "%lld is not a token id", v);
        size_t tok_len;
        if (t && !cb_tokenizer_token(t, (int32_t)v, &tok_len)) {
            int rc = fail_at(e, name, text, start, "%lld is not a token id of this tokenizer", v);
            size_t n = strlen(e->msg);
            snprintf(e->msg + n, sizeof e->msg - n, " (%s, %zu ids)", t->name, t->n_vocab);
            return rc;
        }
        CB_TRY(cb_ids_push(out, (int32_t)v, e));
        need_id = 0;
        if (json) {
            while (i < len && is_space(text[i])) i++;
            if (i < len && text[i] == ',') { i++; need_id = 1; }
            else if (!(i < len && text[i] == ']') && i < len) return fail_at(e, name, text, i, "expected ',' or ']'");
        }
    }
}

int cb_ids_parse_arg(const char *s, const char *opt, cb_ids *out, cb_error *e) {
    const char *p = s;
    int want_item = 1; /* at the start, and after a comma: an id must come */
    size_t n0 = out->n;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        if (*p == ',') {
            if (want_item)
                return cb_fail(e, CB_E_USAGE, opt, "empty item at byte %zu of \"%.60s\"", (size_t)(p - s), s);
            want_item = 1;
            p++;
            continue;
        }
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',' && *end != ' ' && *end != '\t' &&
                                                          *end != '\n'))
            return cb_fail(e, CB_E_USAGE, opt, "not a list of token ids: \"%.40s\"", p);
        CB_TRY(cb_ids_push(out, (int32_t)v, e));
        want_item = 0;
        p = end;
    }
    if (out->n == n0) return cb_fail(e, CB_E_USAGE, opt, "no token ids");
    if (want_item) return cb_fail(e, CB_E_USAGE, opt, "empty item at the end of \"%.60s\"", s);
    return CB_OK;
}
