/* diag.c: growing list of cb_error records. */
#include "core/diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cb_diags_init(cb_diags *d) { memset(d, 0, sizeof *d); }

void cb_diags_free(cb_diags *d) {
    free(d->items);
    memset(d, 0, sizeof *d);
}

void cb_diags_add(cb_diags *d, const cb_error *e) {
    int limit = d->limit ? d->limit : 1000;
    if (d->n >= limit) { d->n_dropped++; return; }
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 16;
        cb_error *items = realloc(d->items, (size_t)cap * sizeof *items);
        if (!items) { d->n_dropped++; return; }
        d->items = items;
        d->cap = cap;
    }
    d->items[d->n++] = *e;
}

void cb_diags_addf(cb_diags *d, int code, const char *where, const char *fmt, ...) {
    cb_error e;
    cb_error_clear(&e);
    e.code = code ? code : CB_E_INVALID;
    snprintf(e.where, sizeof e.where, "%s", where ? where : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    cb_diags_add(d, &e);
}

int cb_diags_status(const cb_diags *d) { return d->n ? d->items[0].code : 0; }
