/* error.c: filling and formatting cb_error records. */
#include "core/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cb_error_clear(cb_error *e) {
    if (!e) return;
    memset(e, 0, sizeof *e);
}

int cb_error_setf_at(cb_error *e, const char *src_file, int src_line, int code,
                     const char *where, const char *fmt, ...) {
    if (!e) return code;
    e->code = code;
    e->src_file = src_file;
    e->src_line = src_line;
    snprintf(e->where, sizeof e->where, "%s", where ? where : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

void cb_error_prefix(cb_error *e, const char *fmt, ...) {
    if (!e) return;
    char prefix[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    int n = snprintf(e->msg, sizeof e->msg, "%s: ", prefix);
    if (n >= 0 && (size_t)n < sizeof e->msg) snprintf(e->msg + n, sizeof e->msg - (size_t)n, "%s", old);
}

const char *cb_error_line(const cb_error *e, char *buf, size_t n) {
    if (e->where[0]) snprintf(buf, n, "%s: %s", e->where, e->msg);
    else snprintf(buf, n, "%s", e->msg);
    return buf;
}

void *cb_malloc_at(size_t n, size_t size, cb_error *e, const char *f, int l) {
    if (size && n > SIZE_MAX / size) {
        cb_error_setf_at(e, f, l, CB_E_RUNTIME, "", "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    void *p = malloc(n * size != 0 ? n * size : 1);
    if (!p) cb_error_setf_at(e, f, l, CB_E_RUNTIME, "", "out of memory allocating %zu bytes", n * size);
    return p;
}

void *cb_calloc_at(size_t n, size_t size, cb_error *e, const char *f, int l) {
    if (size && n > SIZE_MAX / size) {
        cb_error_setf_at(e, f, l, CB_E_RUNTIME, "", "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) cb_error_setf_at(e, f, l, CB_E_RUNTIME, "", "out of memory allocating %zu bytes", n * size);
    return p;
}
