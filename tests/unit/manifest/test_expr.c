/* test_expr.c: "${...}" integer arithmetic: precedence, names, and every error it reports. */
#include "test.h"

#include <stdint.h>
#include "manifest/expr.h"

/* names a..: d_model 1000, n_heads 12, h 8, big 2^62, min INT64_MIN, zero 0 */
static int lookup(void *ctx, const char *name, size_t len, int64_t *value, cb_error *e) {
    static const struct { const char *name; int64_t v; } table[] = {
        {"d_model", 1000}, {"n_heads", 12}, {"h", 8}, {"big", INT64_C(1) << 62},
        {"min", INT64_MIN}, {"zero", 0}, {"_x1", 7},
    };
    (void)ctx;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strlen(table[i].name) == len && memcmp(table[i].name, name, len) == 0) {
            *value = table[i].v;
            return CB_OK;
        }
    return cb_fail(e, CB_E_INVALID, "", "undefined variable \"%.*s\"", (int)len, name);
}

static int64_t eval_ok(const char *src) {
    cb_error e;
    cb_error_clear(&e);
    int64_t v = -999;
    int rc = cb_expr_eval(src, strlen(src), lookup, NULL, &v, &e);
    if (rc != CB_OK) FAILF("%.100s: unexpected error: %.300s", src, e.msg);
    return v;
}

/* Evaluate src expecting an error; returns its message. */
static const char *eval_err(const char *src, cb_error *e) {
    cb_error_clear(e);
    int64_t v = 0;
    int rc = cb_expr_eval(src, strlen(src), lookup, NULL, &v, e);
    if (rc != CB_E_INVALID) FAILF("%s: expected an error, got %lld", src, (long long)v);
    return e->msg;
}

TEST(literals_and_names) {
    EXPECT_EQ_INT(42, eval_ok("42"));
    EXPECT_EQ_INT(1000, eval_ok("d_model"));
    EXPECT_EQ_INT(7, eval_ok("  _x1 "));
    EXPECT_EQ_INT(INT64_MAX, eval_ok("9223372036854775807"));
}

TEST(precedence_and_associativity) {
    EXPECT_EQ_INT(14, eval_ok("2 + 3 * 4"));
    EXPECT_EQ_INT(20, eval_ok("(2 + 3) * 4"));
    EXPECT_EQ_INT(5, eval_ok("10 - 3 - 2"));      /* left associative: (10-3)-2 */
    EXPECT_EQ_INT(2, eval_ok("64 / 8 / 4"));      /* (64/8)/4 */
    EXPECT_EQ_INT(1, eval_ok("7 % 3"));
    EXPECT_EQ_INT(8, eval_ok("2*3%4*4"));         /* ((2*3)%4)*4 */
    EXPECT_EQ_INT(125, eval_ok("d_model / h"));
    EXPECT_EQ_INT(1004, eval_ok("d_model+n_heads/3"));
    EXPECT_EQ_INT(336, eval_ok("((d_model - 160) / (n_heads / 4)) + 56"));
}

TEST(unary_minus) {
    EXPECT_EQ_INT(-5, eval_ok("-5"));
    EXPECT_EQ_INT(5, eval_ok("--5"));
    EXPECT_EQ_INT(-6, eval_ok("-2 * 3"));
    EXPECT_EQ_INT(-1, eval_ok("2 - 3"));
    EXPECT_EQ_INT(-992, eval_ok("h - d_model"));
    EXPECT_EQ_INT(-1, eval_ok("-7 % 3"));        /* C remainder: sign of the dividend */
    EXPECT_EQ_INT(INT64_MIN, eval_ok("-9223372036854775807 - 1"));
    EXPECT_EQ_INT(0, eval_ok("min % -1"));
}

TEST(inexact_division_names_operands) {
    cb_error e;
    EXPECT_EQ_STR("d_model / n_heads = 1000 / 12 is not exact", eval_err("d_model / n_heads", &e));
    EXPECT_EQ_STR("(d_model + 1) / h = 1001 / 8 is not exact", eval_err("(d_model + 1) / h", &e));
    EXPECT_EQ_INT(CB_E_INVALID, e.code);
    EXPECT_EQ_STR("", e.where);
}

TEST(division_by_zero) {
    cb_error e;
    EXPECT_EQ_STR("d_model / zero: division by zero", eval_err("d_model / zero", &e));
    EXPECT_EQ_STR("5 % (h - 8): division by zero", eval_err("5 % (h - 8)", &e));
}

TEST(overflow_is_an_error) {
    cb_error e;
    EXPECT_EQ_STR("big * 2 = 4611686018427387904 * 2 does not fit in 64 bits", eval_err("big * 2", &e));
    EXPECT(strstr(eval_err("big + big", &e), "does not fit in 64 bits") != NULL);
    EXPECT(strstr(eval_err("min - 1", &e), "does not fit in 64 bits") != NULL);
    EXPECT(strstr(eval_err("-min", &e), "does not fit in 64 bits") != NULL);
    EXPECT(strstr(eval_err("min / -1", &e), "does not fit in 64 bits") != NULL);
    EXPECT_EQ_STR("integer literal 9223372036854775808 does not fit in 64 bits",
                  eval_err("9223372036854775808", &e));
}

TEST(syntax_errors) {
    cb_error e;
    EXPECT_EQ_STR("syntax error in ${}: empty expression", eval_err("", &e));
    EXPECT_EQ_STR("syntax error in ${  }: empty expression", eval_err("  ", &e));
    EXPECT_EQ_STR("syntax error in ${h +}: expected a name, a number or '(' at end", eval_err("h +", &e));
    EXPECT_EQ_STR("syntax error in ${(h}: expected ')' at end", eval_err("(h", &e));
    EXPECT_EQ_STR("syntax error in ${h)}: expected an operator at \")\"", eval_err("h)", &e));
    EXPECT_EQ_STR("syntax error in ${h h}: expected an operator at \"h\"", eval_err("h h", &e));
    EXPECT(strstr(eval_err("2 ** 3", &e), "syntax error") != NULL);
    EXPECT(strstr(eval_err("1.5 * h", &e), "syntax error") != NULL);
    EXPECT(strstr(eval_err("+h", &e), "syntax error") != NULL);
    EXPECT(strstr(eval_err("h # 2", &e), "syntax error") != NULL);
    EXPECT(strstr(eval_err("3h", &e), "syntax error") != NULL);
}

TEST(messages_quote_only_the_expression) {
    /* the text after the expression (here "}tail") is not part of it */
    const char *src = "h h}tail";
    cb_error e;
    cb_error_clear(&e);
    int64_t v;
    EXPECT_EQ_INT(CB_E_INVALID, cb_expr_eval(src, 3, lookup, NULL, &v, &e));
    EXPECT(strcmp("syntax error in ${h h}: expected an operator at \"h\"", e.msg) == 0);
    EXPECT_EQ_INT(CB_OK, cb_expr_eval("h*2junk", 3, lookup, NULL, &v, &e));
    EXPECT_EQ_INT(16, v);
}

TEST(undefined_name_comes_from_lookup) {
    cb_error e;
    EXPECT_EQ_STR("undefined variable \"nope\"", eval_err("h * nope", &e));
}

TEST(nesting_is_bounded) {
    char deep[2 * CB_EXPR_MAX_DEPTH + 8];
    size_t n = 0;
    for (int i = 0; i < CB_EXPR_MAX_DEPTH + 1; i++) deep[n++] = '(';
    deep[n] = '\0';
    cb_error e;
    EXPECT(strstr(eval_err(deep, &e), "nested deeper") != NULL);
    n = 0;
    for (int i = 0; i < CB_EXPR_MAX_DEPTH + 1; i++) deep[n++] = '-';
    deep[n++] = '1';
    deep[n] = '\0';
    EXPECT(strstr(eval_err(deep, &e), "nested deeper") != NULL);
    /* just inside the bound is fine */
    n = 0;
    for (int i = 0; i < CB_EXPR_MAX_DEPTH; i++) deep[n++] = '(';
    deep[n++] = '3';
    for (int i = 0; i < CB_EXPR_MAX_DEPTH; i++) deep[n++] = ')';
    deep[n] = '\0';
    EXPECT_EQ_INT(3, eval_ok(deep));
}

TEST(is_name) {
    EXPECT(cb_expr_is_name("d_model", 7));
    EXPECT(cb_expr_is_name("_a9", 3));
    EXPECT(!cb_expr_is_name("9a", 2));
    EXPECT(!cb_expr_is_name("a-b", 3));
    EXPECT(!cb_expr_is_name("", 0));
    EXPECT(!cb_expr_is_name("a b", 3));
}
