/* error.h: the error record every library call fills instead of printing or exiting. */
#ifndef CB_CORE_ERROR_H
#define CB_CORE_ERROR_H

#include <stddef.h>

/* Error codes are the exit statuses of docs/DESIGN.md section 3, so a main can
 * return err.code unchanged. */
enum cb_code {
    CB_OK = 0,
    CB_E_VERDICT = 1, /* a check ran and its verdict is negative */
    CB_E_USAGE = 2,   /* bad command line, unreadable or unwritable file */
    CB_E_INVALID = 3, /* invalid input: manifest, plan, tensor file, dataset */
    CB_E_RUNTIME = 4, /* device, out of memory, numbers blew up */
};
#define CB_E_IO CB_E_USAGE

typedef struct cb_error {
    int code;          /* enum cb_code */
    char where[512];   /* "m.yml:14:9" or a file path; empty when unknown */
    char msg[1024];    /* "model.topology.layers[2].n_heads: 12 does not divide ..." */
    const char *src_file; /* the caramba source line that raised it, for debugging */
    int src_line;
} cb_error;

void cb_error_clear(cb_error *e);

/* Fill e (if not NULL) and return code. printf-style message. */
int cb_error_setf_at(cb_error *e, const char *src_file, int src_line, int code,
                     const char *where, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#define cb_fail(e, code, where, ...) \
    cb_error_setf_at((e), __FILE__, __LINE__, (code), (where), __VA_ARGS__)

/* Prefix e->msg with "prefix: " (used to add context while unwinding). */
void cb_error_prefix(cb_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One line "where: msg" (or "msg" when where is empty) into buf. */
const char *cb_error_line(const cb_error *e, char *buf, size_t n);

/* Checked allocation: NULL and e filled (CB_E_RUNTIME) on failure or on
 * a size product that overflows. */
void *cb_malloc_at(size_t n, size_t size, cb_error *e, const char *f, int l);
void *cb_calloc_at(size_t n, size_t size, cb_error *e, const char *f, int l);
#define cb_malloc(n, size, e) cb_malloc_at((n), (size), (e), __FILE__, __LINE__)
#define cb_calloc(n, size, e) cb_calloc_at((n), (size), (e), __FILE__, __LINE__)

/* Propagate a failing status: CB_TRY(rc = f(..., e)); */
#define CB_TRY(expr) do { int cb_try_rc_ = (expr); if (cb_try_rc_ != CB_OK) return cb_try_rc_; } while (0)

#endif
