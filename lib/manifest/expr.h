/* expr.h: the integer arithmetic inside a manifest's "${...}" references:
 * names, integer literals, + - * / %, unary minus and parentheses, in 64 bits. */
#ifndef CB_MANIFEST_EXPR_H
#define CB_MANIFEST_EXPR_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"

/* Deepest nesting of parentheses and unary minus an expression may use. */
#define CB_EXPR_MAX_DEPTH 256

/* Gives the integer value of the name name[0..len). Returns CB_OK, or fills e
 * (message without location) and returns its code. */
typedef int (*cb_expr_lookup_fn)(void *ctx, const char *name, size_t len, int64_t *value,
                                 cb_error *e);

/* Evaluate src[0..len). Usual precedence (unary minus, then * / %, then + -), left
 * associative. '/' must divide exactly; '%' is C's remainder (sign of the dividend).
 * Overflow, division by zero, an inexact division and a syntax error fill e with
 * CB_E_INVALID and a message that quotes the operands, e.g.
 *   "d_model / n_heads = 1000 / 12 is not exact". e->where is left empty. */
int cb_expr_eval(const char *src, size_t len, cb_expr_lookup_fn lookup, void *ctx,
                 int64_t *out, cb_error *e);

/* 1 when s[0..len) is a name: [A-Za-z_][A-Za-z0-9_]* */
int cb_expr_is_name(const char *s, size_t len);

#endif
