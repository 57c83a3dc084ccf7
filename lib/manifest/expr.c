/* expr.c: recursive-descent evaluator for "${...}" integer arithmetic. Every operand
 * keeps its source span so errors can quote what the user wrote. */
#include "manifest/expr.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef struct expr_parser {
    const char *src;
    size_t len, pos;
    cb_expr_lookup_fn lookup;
    void *ctx;
    cb_error *e;
    int depth;
} expr_parser;

/* a value and the source text [start, end) it came from */
typedef struct expr_operand {
    int64_t v;
    size_t start, end;
} expr_operand;

int cb_expr_is_name(const char *s, size_t len) {
    if (len == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return 0;
    for (size_t i = 1; i < len; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) return 0;
    return 1;
}

static void skip_space(expr_parser *p) {
    while (p->pos < p->len && isspace((unsigned char)p->src[p->pos])) p->pos++;
}

/* The operand's source text, trimmed and shortened to fit buf. */
static const char *span_text(const expr_parser *p, const expr_operand *o, char *buf, size_t n) {
    size_t a = o->start, b = o->end;
    while (a < b && isspace((unsigned char)p->src[a])) a++;
    while (b > a && isspace((unsigned char)p->src[b - 1])) b--;
    size_t len = b - a;
    if (len + 1 > n) snprintf(buf, n, "%.*s...", (int)(n - 4), p->src + a);
    else snprintf(buf, n, "%.*s", (int)len, p->src + a);
    return buf;
}

static int syntax_error(expr_parser *p, const char *expected) {
    char rest[24];
    if (p->pos >= p->len) snprintf(rest, sizeof rest, "end");
    else snprintf(rest, sizeof rest, "\"%.*s%s\"", (int)(p->len - p->pos > 12 ? 12 : p->len - p->pos),
                  p->src + p->pos, p->len - p->pos > 12 ? "..." : "");
    return cb_fail(p->e, CB_E_INVALID, "", "syntax error in ${%.*s}: expected %s at %s",
                   (int)(p->len > 200 ? 200 : p->len), p->src, expected, rest);
}

static int parse_sum(expr_parser *p, expr_operand *out);

static int parse_primary(expr_parser *p, expr_operand *out) {
    skip_space(p);
    size_t start = p->pos;
    if (p->pos >= p->len) return syntax_error(p, "a name, a number or '('");
    char c = p->src[p->pos];
    if (c == '(') {
        if (++p->depth > CB_EXPR_MAX_DEPTH)
            return cb_fail(p->e, CB_E_INVALID, "", "expression nested deeper than %d levels",
                           CB_EXPR_MAX_DEPTH);
        p->pos++;
        CB_TRY(parse_sum(p, out));
        skip_space(p);
        if (p->pos >= p->len || p->src[p->pos] != ')') return syntax_error(p, "')'");
        p->pos++;
        p->depth--;
        out->start = start;
        out->end = p->pos;
        return CB_OK;
    }
    if (isdigit((unsigned char)c)) {
        int64_t v = 0;
        while (p->pos < p->len && isdigit((unsigned char)p->src[p->pos])) {
            int digit = p->src[p->pos] - '0';
            if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, digit, &v)) {
                size_t end = p->pos;
                while (end < p->len && isdigit((unsigned char)p->src[end])) end++;
                return cb_fail(p->e, CB_E_INVALID, "",
                               "integer literal %.*s does not fit in 64 bits", (int)(end - start),
                               p->src + start);
            }
            p->pos++;
        }
        if (p->pos < p->len && (isalpha((unsigned char)p->src[p->pos]) || p->src[p->pos] == '_' ||
                                p->src[p->pos] == '.'))
            return syntax_error(p, "an operator (integers only, names start with a letter)");
        out->v = v;
        out->start = start;
        out->end = p->pos;
        return CB_OK;
    }
    if (isalpha((unsigned char)c) || c == '_') {
        while (p->pos < p->len && (isalnum((unsigned char)p->src[p->pos]) || p->src[p->pos] == '_'))
            p->pos++;
        out->start = start;
        out->end = p->pos;
        return p->lookup(p->ctx, p->src + start, p->pos - start, &out->v, p->e);
    }
    return syntax_error(p, "a name, a number or '('");
}

static int parse_unary(expr_parser *p, expr_operand *out) {
    skip_space(p);
    if (p->pos < p->len && p->src[p->pos] == '-') {
        size_t start = p->pos++;
        if (++p->depth > CB_EXPR_MAX_DEPTH)
            return cb_fail(p->e, CB_E_INVALID, "", "expression nested deeper than %d levels",
                           CB_EXPR_MAX_DEPTH);
        expr_operand inner;
        CB_TRY(parse_unary(p, &inner));
        p->depth--;
        if (inner.v == INT64_MIN) {
            char t[80];
            return cb_fail(p->e, CB_E_INVALID, "", "-%s = -(%" PRId64 ") does not fit in 64 bits",
                           span_text(p, &inner, t, sizeof t), inner.v);
        }
        out->v = -inner.v;
        out->start = start;
        out->end = inner.end;
        return CB_OK;
    }
    return parse_primary(p, out);
}

/* Apply lhs OP rhs into lhs, with the checks that make arithmetic safe. */
static int apply(expr_parser *p, char op, expr_operand *lhs, const expr_operand *rhs) {
    char a[80], b[80];
    int64_t r = 0;
    int overflow = 0;
    switch (op) {
    case '+': overflow = __builtin_add_overflow(lhs->v, rhs->v, &r); break;
    case '-': overflow = __builtin_sub_overflow(lhs->v, rhs->v, &r); break;
    case '*': overflow = __builtin_mul_overflow(lhs->v, rhs->v, &r); break;
    case '/':
    case '%':
        if (rhs->v == 0)
            return cb_fail(p->e, CB_E_INVALID, "", "%s %c %s: division by zero",
                           span_text(p, lhs, a, sizeof a), op, span_text(p, rhs, b, sizeof b));
        if (rhs->v == -1) { /* INT64_MIN / -1 traps in C */
            overflow = op == '/' && lhs->v == INT64_MIN;
            r = op == '/' ? (overflow ? 0 : -lhs->v) : 0;
            break;
        }
        if (op == '%') { r = lhs->v % rhs->v; break; }
        if (lhs->v % rhs->v != 0)
            return cb_fail(p->e, CB_E_INVALID, "", "%s / %s = %" PRId64 " / %" PRId64 " is not exact",
                           span_text(p, lhs, a, sizeof a), span_text(p, rhs, b, sizeof b), lhs->v,
                           rhs->v);
        r = lhs->v / rhs->v;
        break;
    }
    if (overflow)
        return cb_fail(p->e, CB_E_INVALID, "",
                       "%s %c %s = %" PRId64 " %c %" PRId64 " does not fit in 64 bits",
                       span_text(p, lhs, a, sizeof a), op, span_text(p, rhs, b, sizeof b), lhs->v,
                       op, rhs->v);
    lhs->v = r;
    lhs->end = rhs->end;
    return CB_OK;
}

static int parse_product(expr_parser *p, expr_operand *out) {
    CB_TRY(parse_unary(p, out));
    for (;;) {
        skip_space(p);
        if (p->pos >= p->len) return CB_OK;
        char op = p->src[p->pos];
        if (op != '*' && op != '/' && op != '%') return CB_OK;
        p->pos++;
        expr_operand rhs;
        CB_TRY(parse_unary(p, &rhs));
        CB_TRY(apply(p, op, out, &rhs));
    }
}

static int parse_sum(expr_parser *p, expr_operand *out) {
    CB_TRY(parse_product(p, out));
    for (;;) {
        skip_space(p);
        if (p->pos >= p->len) return CB_OK;
        char op = p->src[p->pos];
        if (op != '+' && op != '-') return CB_OK;
        p->pos++;
        expr_operand rhs;
        CB_TRY(parse_product(p, &rhs));
        CB_TRY(apply(p, op, out, &rhs));
    }
}

int cb_expr_eval(const char *src, size_t len, cb_expr_lookup_fn lookup, void *ctx,
                 int64_t *out, cb_error *e) {
    expr_parser p = {src, len, 0, lookup, ctx, e, 0};
    skip_space(&p);
    if (p.pos == len) return cb_fail(e, CB_E_INVALID, "", "syntax error in ${%.*s}: empty expression",
                                     (int)(len > 200 ? 200 : len), src);
    expr_operand result;
    CB_TRY(parse_sum(&p, &result));
    skip_space(&p);
    if (p.pos < len) return syntax_error(&p, "an operator");
    *out = result.v;
    return CB_OK;
}
