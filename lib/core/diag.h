/* diag.h: a list of errors, for stages that report every problem they find
 * (cb-validate), not only the first. */
#ifndef CB_CORE_DIAG_H
#define CB_CORE_DIAG_H

#include "core/error.h"

typedef struct cb_diags {
    cb_error *items;
    int n, cap;
    int limit; /* stop recording after this many (0 = 1000); n_dropped counts the rest */
    int n_dropped;
} cb_diags;

void cb_diags_init(cb_diags *d);
void cb_diags_free(cb_diags *d);
/* Record one error (code CB_E_INVALID unless given otherwise). */
void cb_diags_addf(cb_diags *d, int code, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void cb_diags_add(cb_diags *d, const cb_error *e);
/* The exit status for the list: 0 when empty, else the first item's code. */
int cb_diags_status(const cb_diags *d);

#endif
