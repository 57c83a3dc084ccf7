/* lower.c: cb-lower's work on a manifest document: "${...}" substitution from vars
 * (resolved lazily, cycles detected, expansion bounded), defaults and group data merged
 * into runs, top-level runs grouped, and a path id on every topology/layer node. */
#include "manifest/lower.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "core/json_doc.h"
#include "manifest/expr.h"

enum { VAR_UNRESOLVED, VAR_RESOLVING, VAR_DONE, VAR_FAILED };

typedef struct lower_var {
    const char *name; /* key in the manifest's vars mapping */
    json_t *raw;      /* the value as written (borrowed) */
    json_t *value;    /* substituted value (owned), once VAR_DONE */
    const char *loc;  /* where the value starts */
    int state;
    long long values; /* number of JSON values in value */
    int depth;        /* nesting depth of value, 0 for a scalar */
    size_t chars;     /* characters in value's strings */
} lower_var;

typedef struct lower_ctx {
    cb_diags *d;
    const char *source;  /* fallback location: the manifest file */
    lower_var *vars;
    int n_vars;
    json_t *var_index;   /* name -> index into vars */
    int vars_broken;     /* vars is not a mapping (reported): references are not checked */
    int *stack;          /* vars being resolved, outermost first */
    int n_stack;
    int nest;            /* containers and vars being substituted now, all together */
    long long values_used; /* budget spent by substitution and merging */
    size_t chars_used;
    int over_budget;     /* reported once; everything after fails silently */
    int n_errors;
    char *path;          /* "model.topology.layers[2].n_heads" of the value at hand */
    size_t path_len, path_cap;
} lower_ctx;

/* ---- paths and errors ------------------------------------------------------ */

static size_t path_push(lower_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(lower_ctx *c, const char *fmt, ...) {
    size_t old = c->path_len;
    char piece[320];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(piece, sizeof piece, fmt, ap);
    va_end(ap);
    if (n < 0) return old;
    size_t len = (size_t)n < sizeof piece ? (size_t)n : sizeof piece - 1;
    if (c->path_len + len + 1 > c->path_cap) {
        size_t cap = (c->path_cap ? c->path_cap * 2 : 256) + len;
        char *p = realloc(c->path, cap);
        if (!p) return old; /* the path only labels errors; keep the shorter one */
        c->path = p;
        c->path_cap = cap;
    }
    memcpy(c->path + c->path_len, piece, len);
    c->path_len += len;
    c->path[c->path_len] = '\0';
    return old;
}

static size_t path_push_key(lower_ctx *c, const char *key) {
    return path_push(c, "%s%s", c->path_len ? "." : "", key);
}

static void path_pop(lower_ctx *c, size_t old) {
    c->path_len = old;
    if (c->path) c->path[old] = '\0';
}

static void report(lower_ctx *c, const char *loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void report(lower_ctx *c, const char *loc, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *path = c->path_len ? c->path : "manifest";
    if (c->path_len > 300) /* very deep: its start and its end say enough */
        cb_diags_addf(c->d, CB_E_INVALID, loc && *loc ? loc : c->source, "%.100s...%s: %s", path,
                      path + c->path_len - 150, msg);
    else
        cb_diags_addf(c->d, CB_E_INVALID, loc && *loc ? loc : c->source, "%s: %s", path, msg);
    c->n_errors++;
}

static void over_budget(lower_ctx *c, const char *loc, const char *what) {
    if (c->over_budget) return;
    c->over_budget = 1;
    if (strcmp(what, "values") == 0)
        report(c, loc, "expansion too large: substituting vars would produce more than %d values",
               CB_LOWER_MAX_VALUES);
    else
        report(c, loc, "expansion too large: substituting vars would produce more than %d characters",
               CB_LOWER_MAX_CHARS);
}

/* ---- measuring values ------------------------------------------------------ */

static void measure(const json_t *v, long long *values, int *depth, size_t *chars) {
    *values = 1;
    *depth = 0;
    *chars = json_is_string(v) ? json_string_length(v) : 0;
    long long n;
    int dd;
    size_t ch;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            measure(x, &n, &dd, &ch);
            *values += n;
            *chars += ch + strlen(k);
            if (dd + 1 > *depth) *depth = dd + 1;
        }
        if (*depth == 0) *depth = 1;
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            measure(x, &n, &dd, &ch);
            *values += n;
            *chars += ch;
            if (dd + 1 > *depth) *depth = dd + 1;
        }
        if (*depth == 0) *depth = 1;
    }
}

/* A deep copy that spends the expansion budget. NULL when over it (reported). */
static json_t *copy_counted(lower_ctx *c, const json_t *v, const char *loc) {
    if (c->over_budget) return NULL;
    long long n;
    int depth;
    size_t chars;
    measure(v, &n, &depth, &chars);
    c->values_used += n;
    c->chars_used += chars;
    if (c->values_used > CB_LOWER_MAX_VALUES) { over_budget(c, loc, "values"); return NULL; }
    if (c->chars_used > CB_LOWER_MAX_CHARS) { over_budget(c, loc, "chars"); return NULL; }
    return json_deep_copy(v);
}

static const char *type_word(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "a mapping";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a float";
    case JSON_TRUE:
    case JSON_FALSE: return "a bool";
    default: return "null";
    }
}

/* Shortest text that reads back as the same double, with ".0" for whole numbers. */
static void format_real(double x, char *buf, size_t n) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    if (!strpbrk(buf, ".eEni")) {
        size_t len = strlen(buf);
        if (len + 3 <= n) memcpy(buf + len, ".0", 3);
    }
}

/* ---- variables ------------------------------------------------------------- */

static int osa_distance(const char *a, size_t la, const char *b, size_t lb) {
    int d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best) best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

/* The var name closest to name (a typo away), or NULL. */
static const char *suggest_var(const lower_ctx *c, const char *name, size_t len) {
    const char *best = NULL;
    int best_d = 3;
    if (len > 64) return NULL;
    for (int i = 0; i < c->n_vars; i++) {
        size_t lv = strlen(c->vars[i].name);
        if (lv > 64) continue;
        int dist = osa_distance(name, len, c->vars[i].name, lv);
        if (lv == len && strncasecmp(name, c->vars[i].name, len) == 0) dist = 1;
        /* a typo is at most one edit in three characters */
        if (dist < best_d && (size_t)dist * 3 <= (len > lv ? len : lv)) {
            best_d = dist;
            best = c->vars[i].name;
        }
    }
    return best;
}

static int subst_value(lower_ctx *c, json_t *v, const char *loc, int depth, json_t **out);

/* Substitute a var's own value, in a path of its own ("vars.NAME"). */
static int resolve_var(lower_ctx *c, int idx) {
    lower_var *v = &c->vars[idx];
    v->state = VAR_RESOLVING;
    c->stack[c->n_stack++] = idx;
    char *saved_path = c->path;
    size_t saved_len = c->path_len, saved_cap = c->path_cap;
    c->path = NULL;
    c->path_len = c->path_cap = 0;
    path_push(c, "vars.%s", v->name);

    json_t *value = json_deep_copy(v->raw), *repl = NULL;
    int r = value ? subst_value(c, value, v->loc, 2, &repl) : -1;
    if (r == 1) {
        json_decref(value);
        value = repl;
    }

    free(c->path);
    c->path = saved_path;
    c->path_len = saved_len;
    c->path_cap = saved_cap;
    c->n_stack--;
    if (r < 0) {
        json_decref(value);
        v->state = VAR_FAILED;
        return -1;
    }
    v->value = value;
    measure(value, &v->values, &v->depth, &v->chars);
    v->state = VAR_DONE;
    return 0;
}

/* "vars cycle: a -> b -> a" from the resolution stack (idx: the var seen again), or,
 * with idx -1, a chain of references too long to follow. Kept out of var_get, which
 * recursion stacks up. */
static __attribute__((noinline)) int cycle_error(const lower_ctx *c, int idx, cb_error *e) {
    char chain[700] = "";
    size_t n = 0;
    int from = 0;
    if (idx >= 0)
        while (c->stack[from] != idx) from++;
    for (int i = from; i < c->n_stack && n < sizeof chain - 100; i++)
        n += (size_t)snprintf(chain + n, sizeof chain - n, "%s -> ", c->vars[c->stack[i]].name);
    if (idx >= 0) {
        snprintf(chain + n, sizeof chain - n, "%s", c->vars[idx].name);
        return cb_fail(e, CB_E_INVALID, "", "vars cycle: %s", chain);
    }
    return cb_fail(e, CB_E_INVALID, "", "vars refer to each other more than %d deep: %s...",
                   CB_LOWER_MAX_VAR_CHAIN, chain);
}

/* Find the var name[0..len) and resolve it. CB_OK with *out set, or e filled and
 * *silent = 1 when the problem has already been reported (a broken var, the budget). */
static int var_get(lower_ctx *c, const char *name, size_t len, lower_var **out, cb_error *e,
                   int *silent) {
    *silent = 0;
    if (c->over_budget) {
        *silent = 1;
        return cb_fail(e, CB_E_INVALID, "", "expansion too large");
    }
    json_t *ix = c->var_index ? json_object_getn(c->var_index, name, len) : NULL;
    if (!ix) {
        if (c->vars_broken) {
            *silent = 1;
            return cb_fail(e, CB_E_INVALID, "", "vars is not a mapping");
        }
        const char *s = suggest_var(c, name, len);
        if (s)
            return cb_fail(e, CB_E_INVALID, "", "undefined variable \"%.*s\" (did you mean \"%s\"?)",
                           (int)(len > 200 ? 200 : len), name, s);
        return cb_fail(e, CB_E_INVALID, "", "undefined variable \"%.*s\"%s",
                       (int)(len > 200 ? 200 : len), name, c->n_vars ? "" : " (no vars are defined)");
    }
    int idx = (int)json_integer_value(ix);
    lower_var *v = &c->vars[idx];
    if (v->state == VAR_RESOLVING) return cycle_error(c, idx, e);
    if (v->state == VAR_UNRESOLVED) {
        if (c->n_stack >= CB_LOWER_MAX_VAR_CHAIN)
            return cycle_error(c, -1, e);
        resolve_var(c, idx);
    }
    if (v->state != VAR_DONE) {
        *silent = 1;
        return cb_fail(e, CB_E_INVALID, "", "variable %s is invalid", v->name);
    }
    *out = v;
    return CB_OK;
}

typedef struct arith_ctx {
    lower_ctx *c;
    int silent;
} arith_ctx;

/* cb_expr lookup: a var's value as an integer. */
static int arith_lookup(void *ctx, const char *name, size_t len, int64_t *value, cb_error *e) {
    arith_ctx *a = ctx;
    lower_var *v;
    CB_TRY(var_get(a->c, name, len, &v, e, &a->silent));
    if (json_is_integer(v->value)) {
        *value = json_integer_value(v->value);
        return CB_OK;
    }
    if (json_is_string(v->value)) {
        /* a string that holds an integer, e.g. the text of another var's expression */
        const char *s = json_string_value(v->value);
        size_t i = s[0] == '-', slen = json_string_length(v->value);
        int64_t x = 0;
        int ok = i < slen;
        for (; ok && i < slen; i++) {
            if (!isdigit((unsigned char)s[i])) { ok = 0; break; }
            int digit = s[i] - '0';
            if (__builtin_mul_overflow(x, 10, &x) ||
                __builtin_add_overflow(x, s[0] == '-' ? -digit : digit, &x))
                return cb_fail(e, CB_E_INVALID, "", "%s is \"%.60s\", which does not fit in 64 bits",
                               v->name, s);
        }
        if (ok) {
            *value = x;
            return CB_OK;
        }
        return cb_fail(e, CB_E_INVALID, "", "%s is a string (\"%.60s\"); arithmetic needs an integer",
                       v->name, s);
    }
    if (json_is_real(v->value)) {
        char num[40];
        format_real(json_real_value(v->value), num, sizeof num);
        return cb_fail(e, CB_E_INVALID, "", "%s is a float (%s); arithmetic needs an integer", v->name,
                       num);
    }
    if (json_is_boolean(v->value))
        return cb_fail(e, CB_E_INVALID, "", "%s is a bool (%s); arithmetic needs an integer", v->name,
                       json_is_true(v->value) ? "true" : "false");
    return cb_fail(e, CB_E_INVALID, "", "%s is %s; arithmetic needs an integer", v->name,
                   type_word(v->value));
}

/* ---- substitution ---------------------------------------------------------- */

static void trim(const char **s, size_t *len) {
    while (*len && isspace((unsigned char)**s)) { (*s)++; (*len)--; }
    while (*len && isspace((unsigned char)(*s)[*len - 1])) (*len)--;
}

/* 1 when s[0..len) contains "${" (strings may hold NUL bytes, so no strstr) */
static int has_ref(const char *s, size_t len) {
    for (size_t i = 0; i + 1 < len; i++)
        if (s[i] == '$' && s[i + 1] == '{') return 1;
    return 0;
}

typedef struct text_buf {
    char *s;
    size_t len, cap;
} text_buf;

static int buf_add(text_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) return -1;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

/* Evaluate a reference (the text between "${" and "}") as arithmetic. */
static int eval_ref(lower_ctx *c, const char *expr, size_t len, const char *loc, int64_t *out) {
    arith_ctx a = {c, 0};
    cb_error e;
    cb_error_clear(&e);
    if (cb_expr_eval(expr, len, arith_lookup, &a, out, &e) == CB_OK) return 0;
    if (!a.silent) report(c, loc, "%s", e.msg);
    return -1;
}

/* The reference ${expr} inside a longer string: append its text to b. */
static int render_ref(lower_ctx *c, const char *expr, size_t len, const char *loc, text_buf *b) {
    char num[40];
    trim(&expr, &len);
    if (cb_expr_is_name(expr, len)) {
        lower_var *v;
        cb_error e;
        int silent;
        cb_error_clear(&e);
        if (var_get(c, expr, len, &v, &e, &silent) != CB_OK) {
            if (!silent) report(c, loc, "%s", e.msg);
            return -1;
        }
        const json_t *x = v->value;
        if (json_is_string(x)) return buf_add(b, json_string_value(x), json_string_length(x));
        if (json_is_integer(x)) snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(x));
        else if (json_is_real(x)) format_real(json_real_value(x), num, sizeof num);
        else if (json_is_boolean(x)) snprintf(num, sizeof num, "%s", json_is_true(x) ? "true" : "false");
        else {
            report(c, loc, "%s is %s; only a string, number or bool can be put inside a longer string",
                   v->name, type_word(x));
            return -1;
        }
        return buf_add(b, num, strlen(num));
    }
    int64_t value;
    if (eval_ref(c, expr, len, loc, &value) != 0) return -1;
    snprintf(num, sizeof num, "%" PRId64, value);
    return buf_add(b, num, strlen(num));
}

/* A string that is exactly "${expr}": a var's value keeps its type, arithmetic gives an integer. */
static int subst_exact(lower_ctx *c, const char *expr, size_t len, const char *loc, int depth,
                       json_t **out) {
    trim(&expr, &len);
    if (cb_expr_is_name(expr, len)) {
        lower_var *v;
        cb_error e;
        int silent;
        cb_error_clear(&e);
        if (var_get(c, expr, len, &v, &e, &silent) != CB_OK) {
            if (!silent) report(c, loc, "%s", e.msg);
            return -1;
        }
        if (depth + v->depth > CB_LOWER_MAX_DEPTH) {
            report(c, loc, "substituting ${%s} here nests deeper than %d levels", v->name,
                   CB_LOWER_MAX_DEPTH);
            return -1;
        }
        *out = copy_counted(c, v->value, loc);
        return *out ? 1 : -1;
    }
    int64_t value;
    if (eval_ref(c, expr, len, loc, &value) != 0) return -1;
    *out = json_integer(value);
    return 1;
}

/* Substitute in the string s[0..len). Returns 0 when it holds no reference, 1 with a
 * new value in *out, -1 on an error (reported). textual: always give a string (keys). */
static int subst_string(lower_ctx *c, const char *s, size_t len, const char *loc, int depth,
                        int textual, json_t **out) {
    if (!has_ref(s, len)) return 0;
    if (!textual && len >= 3 && s[0] == '$' && s[1] == '{' && memchr(s + 2, '}', len - 2) == s + len - 1)
        return subst_exact(c, s + 2, len - 3, loc, depth, out);
    text_buf b = {0};
    int failed = 0;
    for (size_t i = 0; i < len && !failed;) {
        if (s[i] == '$' && i + 2 < len && s[i + 1] == '$' && s[i + 2] == '{') {
            failed = buf_add(&b, "${", 2) != 0; /* "$${" is a literal "${" */
            i += 3;
        } else if (s[i] == '$' && i + 1 < len && s[i + 1] == '{') {
            const char *close = memchr(s + i + 2, '}', len - i - 2);
            if (!close) {
                report(c, loc, "syntax error: \"${\" without a closing '}' in \"%.80s\"", s);
                failed = 1;
                break;
            }
            failed = render_ref(c, s + i + 2, (size_t)(close - s) - i - 2, loc, &b) != 0;
            i = (size_t)(close - s) + 1;
        } else {
            size_t j = i + 1;
            while (j < len && s[j] != '$') j++;
            failed = buf_add(&b, s + i, j - i) != 0;
            i = j;
        }
    }
    if (!failed) {
        c->chars_used += b.len;
        c->values_used += 1;
        if (c->chars_used > CB_LOWER_MAX_CHARS) { over_budget(c, loc, "chars"); failed = 1; }
    }
    if (!failed) {
        *out = json_stringn(b.s ? b.s : "", b.len);
        if (!*out) {
            report(c, loc, "substitution made a string that is not valid UTF-8");
            failed = 1;
        }
    }
    free(b.s);
    return failed ? -1 : 1;
}

/* A key with a reference is replaced by its text; its location moves with it. */
static int subst_key(lower_ctx *c, json_t *obj, const char *key, int depth) {
    const char *loc = cb_loc(obj, key);
    json_t *newkey = NULL;
    size_t old = path_push_key(c, key);
    int r = subst_string(c, key, strlen(key), loc, depth, 1, &newkey);
    int rc = r < 0 ? -1 : 0;
    if (r == 1) {
        const char *nk = json_string_value(newkey);
        if (strlen(nk) != json_string_length(newkey) || cb_is_annotation(nk) || !*nk) {
            report(c, loc, "key becomes \"%s\" after substitution, which is not a valid key", nk);
            rc = -1;
        } else if (strcmp(nk, key) != 0 && json_object_get(obj, nk)) {
            report(c, loc, "key becomes \"%s\" after substitution, which is already a key here", nk);
            rc = -1;
        } else if (strcmp(nk, key) != 0) {
            json_t *locs = json_object_get(obj, CB_LOC_KEY);
            json_t *keyloc = json_is_object(locs) ? json_object_get(locs, key) : NULL;
            json_object_set(obj, nk, json_object_get(obj, key));
            if (keyloc) json_object_set(locs, nk, keyloc);
            if (keyloc) json_object_del(locs, key);
            json_object_del(obj, key);
        }
        json_decref(newkey);
    }
    path_pop(c, old);
    return rc;
}

/* Substitute in every member of obj except annotations and skip_key (in place). */
static int subst_object(lower_ctx *c, json_t *obj, int depth, const char *skip_key) {
    size_t n = json_object_size(obj), nk = 0;
    char **keys = calloc(n ? n : 1, sizeof *keys);
    if (!keys) { report(c, cb_loc(obj, NULL), "out of memory"); return -1; }
    const char *k;
    json_t *x;
    json_object_foreach(obj, k, x) {
        if (cb_is_annotation(k) || (skip_key && strcmp(k, skip_key) == 0)) continue;
        keys[nk] = strdup(k);
        if (!keys[nk]) break;
        nk++;
    }
    int failed = 0;
    for (size_t i = 0; i < nk && !c->over_budget; i++) {
        json_t *child = json_object_get(obj, keys[i]), *repl = NULL;
        size_t old = path_push_key(c, keys[i]);
        int r = subst_value(c, child, cb_loc(obj, keys[i]), depth + 1, &repl);
        if (r == 1) json_object_set_new(obj, keys[i], repl);
        if (r < 0) failed = 1;
        path_pop(c, old);
    }
    for (size_t i = 0; i < nk && !c->over_budget; i++)
        if (strstr(keys[i], "${") && subst_key(c, obj, keys[i], depth) != 0) failed = 1;
    for (size_t i = 0; i < nk; i++) free(keys[i]);
    free(keys);
    return failed || c->over_budget ? -1 : 0;
}

static int subst_array(lower_ctx *c, json_t *arr, const char *loc, int depth) {
    int failed = 0;
    for (size_t i = 0; i < json_array_size(arr) && !c->over_budget; i++) {
        json_t *elem = json_array_get(arr, i), *repl = NULL;
        const char *eloc = json_is_object(elem) && *cb_loc(elem, NULL) ? cb_loc(elem, NULL) : loc;
        size_t old = path_push(c, "[%zu]", i);
        int r = subst_value(c, elem, eloc, depth + 1, &repl);
        if (r == 1) json_array_set_new(arr, i, repl);
        if (r < 0) failed = 1;
        path_pop(c, old);
    }
    return failed || c->over_budget ? -1 : 0;
}

/* Substitute inside v (at nesting depth `depth`). 0: done in place or nothing to do;
 * 1: *out replaces v; -1: an error, reported. */
static int subst_value(lower_ctx *c, json_t *v, const char *loc, int depth, json_t **out) {
    if (json_is_string(v))
        return subst_string(c, json_string_value(v), json_string_length(v), loc, depth, 0, out);
    if (!json_is_object(v) && !json_is_array(v)) return 0;
    if (depth >= CB_LOWER_MAX_DEPTH) {
        report(c, loc, "nested deeper than %d levels", CB_LOWER_MAX_DEPTH);
        return -1;
    }
    /* vars inside vars inside deep values: bound the recursion as a whole */
    if (c->nest >= CB_LOWER_MAX_NEST) {
        report(c, loc, "vars and values nest more than %d levels deep in all", CB_LOWER_MAX_NEST);
        return -1;
    }
    c->nest++;
    int r = json_is_object(v) ? subst_object(c, v, depth, NULL) : subst_array(c, v, loc, depth);
    c->nest--;
    return r;
}

/* ---- vars section ---------------------------------------------------------- */

static int vars_collect(lower_ctx *c, json_t *m) {
    json_t *vars = json_object_get(m, "vars");
    if (!vars || json_is_null(vars)) return 0;
    if (!json_is_object(vars)) {
        size_t old = path_push_key(c, "vars");
        report(c, cb_loc(m, "vars"), "expected a mapping of names to values, got %s", type_word(vars));
        path_pop(c, old);
        c->vars_broken = 1;
        return 0;
    }
    size_t n = json_object_size(vars);
    c->vars = calloc(n ? n : 1, sizeof *c->vars);
    c->stack = calloc(n ? n : 1, sizeof *c->stack);
    c->var_index = json_object();
    if (!c->vars || !c->stack || !c->var_index) return -1;
    const char *k;
    json_t *x;
    json_object_foreach(vars, k, x) {
        if (cb_is_annotation(k)) continue;
        if (!cb_expr_is_name(k, strlen(k))) {
            size_t old = path_push(c, "vars.%s", k);
            report(c, cb_loc(vars, k), "a variable name must match [A-Za-z_][A-Za-z0-9_]*");
            path_pop(c, old);
            continue;
        }
        lower_var *v = &c->vars[c->n_vars];
        v->name = k;
        v->raw = x;
        v->loc = cb_loc(vars, k);
        json_object_set_new(c->var_index, k, json_integer(c->n_vars));
        c->n_vars++;
    }
    return 0;
}

/* vars becomes the resolved values (with the original locations). */
static void vars_replace(lower_ctx *c, json_t *m) {
    json_t *vars = json_object_get(m, "vars");
    if (!json_is_object(vars)) return;
    json_t *resolved = json_object();
    const char *k;
    json_t *x;
    json_object_foreach(vars, k, x)
        if (cb_is_annotation(k)) json_object_set_new(resolved, k, json_deep_copy(x));
    for (int i = 0; i < c->n_vars; i++)
        if (c->vars[i].state == VAR_DONE) json_object_set(resolved, c->vars[i].name, c->vars[i].value);
    json_object_set_new(m, "vars", resolved); /* frees the raw values: vars[].raw dangle now */
    for (int i = 0; i < c->n_vars; i++) {
        c->vars[i].raw = NULL;
        c->vars[i].name = NULL;
    }
}

/* ---- runs, groups and defaults --------------------------------------------- */

/* dst[key] = copy of value when dst lacks key; the location travels along. */
static void put_missing(lower_ctx *c, json_t *dst, const char *key, const json_t *value, const char *loc) {
    if (json_object_get(dst, key)) return;
    json_t *copy = copy_counted(c, value, loc);
    if (!copy) return;
    json_object_set_new(dst, key, copy);
    if (loc && *loc) cb_loc_set(dst, key, loc);
}

/* run.train, created when missing; NULL when it is something else (cb-validate says so). */
static json_t *run_train(json_t *run) {
    json_t *train = json_object_get(run, "train");
    if (!train) {
        train = json_object();
        const char *loc = cb_loc(run, NULL);
        if (*loc) cb_loc_set(train, NULL, loc);
        json_object_set_new(run, "train", train);
        if (*loc) cb_loc_set(run, "train", loc);
    }
    return json_is_object(train) ? train : NULL;
}

static void normalise_runs(lower_ctx *c, json_t *m) {
    json_t *groups = json_object_get(m, "groups");
    json_t *runs = json_object_get(m, "runs"), *benches = json_object_get(m, "benchmarks");
    if ((runs || benches) && (!groups || json_is_array(groups))) {
        const char *first = runs ? "runs" : "benchmarks";
        const char *loc = cb_loc(m, first);
        size_t i;
        json_t *g;
        int clash = 0;
        json_array_foreach(groups, i, g) {
            const char *name = json_string_value(json_object_get(g, "name"));
            if (name && strcmp(name, "default") == 0) clash = 1;
        }
        if (clash) {
            size_t old = path_push_key(c, first);
            report(c, loc, "top-level %s go into a group named \"default\", but groups already has one; "
                           "move them into it", first);
            path_pop(c, old);
        } else {
            char *loc_copy = strdup(loc);
            g = json_object();
            if (loc_copy && *loc_copy) {
                cb_loc_set(g, NULL, loc_copy);
                cb_loc_set(g, "name", loc_copy);
            }
            json_object_set_new(g, "name", json_string("default"));
            json_t *locs = json_object_get(m, CB_LOC_KEY);
            const char *moved[2] = {"runs", "benchmarks"};
            for (int j = 0; j < 2; j++) {
                json_t *x = json_object_get(m, moved[j]);
                if (!x) continue;
                const char *xl = cb_loc(m, moved[j]);
                if (*xl) cb_loc_set(g, moved[j], xl);
                json_object_set(g, moved[j], x);
                json_object_del(m, moved[j]);
                if (json_is_object(locs)) json_object_del(locs, moved[j]);
            }
            if (!groups) {
                groups = json_array();
                json_object_set_new(m, "groups", groups);
                if (loc_copy && *loc_copy) cb_loc_set(m, "groups", loc_copy);
            }
            json_array_append_new(groups, g);
            free(loc_copy);
        }
    }
    if (!json_is_array(groups)) return;

    json_t *verify = json_object_get(m, "verify");
    const char *verify_loc = cb_loc(m, "verify");
    json_t *defaults = json_object_get(m, "defaults");
    if (!json_is_object(defaults)) defaults = NULL;
    size_t gi, ri;
    json_t *g, *run;
    json_array_foreach(groups, gi, g) {
        json_t *group_runs = json_object_get(g, "runs");
        if (!json_is_object(g) || !json_is_array(group_runs)) continue;
        json_t *data = json_object_get(g, "data");
        json_array_foreach(group_runs, ri, run) {
            if (!json_is_object(run)) continue;
            if (verify) put_missing(c, run, "verify", verify, verify_loc);
            /* the group's data before defaults: the nearer setting wins */
            if (data) {
                json_t *train = run_train(run);
                if (train) put_missing(c, train, "data", data, cb_loc(g, "data"));
            }
            if (!defaults) continue;
            const char *k;
            json_t *x;
            json_object_foreach(defaults, k, x) {
                if (cb_is_annotation(k)) continue;
                int on_run = !strcmp(k, "seed") || !strcmp(k, "steps") || !strcmp(k, "mode");
                json_t *dst = on_run ? run : run_train(run);
                if (dst) put_missing(c, dst, k, x, cb_loc(defaults, k));
            }
            if (c->over_budget) return;
        }
    }
}

/* ---- node ids --------------------------------------------------------------- */

const char *cb_lower_default_name(const char *type) {
    static const char *const names[][2] = {
        {"AttentionLayer", "attn"},       {"RMSNormLayer", "norm"},
        {"LayerNormLayer", "norm"},       {"SwiGLULayer", "mlp"},
        {"MLPLayer", "mlp"},              {"LinearLayer", "linear"},
        {"DropoutLayer", "dropout"},      {"RoPE", "rope"},
        {"ResidualTopology", "res"},      {"StackedTopology", "stack"},
        {"SequentialTopology", "stack"},  {"NestedTopology", "blocks"},
        {"ParallelTopology", "par"},      {"BranchingTopology", "branch"},
        {"CyclicTopology", "cycle"},      {"RecurrentTopology", "rec"},
    };
    for (size_t i = 0; type && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(type, names[i][0]) == 0) return names[i][1];
    return "node";
}

/* Give node the id `id`, then name its children (explicit ids first, then defaults
 * with _1, _2 ... per base name) and recurse. */
static void assign_ids(lower_ctx *c, json_t *node, const char *id, int depth) {
    json_t *had_id = json_object_get(node, "id");
    json_object_set_new(node, "id", json_string(id));
    if (!had_id && *cb_loc(node, NULL)) cb_loc_set(node, "id", cb_loc(node, NULL));
    json_t *layers = json_object_get(node, "layers");
    if (!json_is_array(layers) || json_array_size(layers) == 0) return;
    if (depth >= CB_LOWER_MAX_DEPTH / 2) {
        report(c, cb_loc(node, "layers"), "topology nested deeper than %d levels", CB_LOWER_MAX_DEPTH / 2);
        return;
    }
    int nested = json_is_string(json_object_get(node, "type")) &&
                 strcmp(json_string_value(json_object_get(node, "type")), "NestedTopology") == 0;
    size_t n = json_array_size(layers);
    char **names = calloc(n, sizeof *names);
    json_t *taken = json_object();    /* name -> where it was given */
    json_t *counters = json_object(); /* base name -> next suffix to try */
    if (!names || !taken || !counters) {
        report(c, cb_loc(node, "layers"), "out of memory");
        goto done;
    }
    size_t i;
    json_t *child;
    json_array_foreach(layers, i, child) {
        json_t *jid = json_object_get(child, "id");
        if (!json_is_object(child) || !jid) continue;
        const char *loc = cb_loc(child, "id");
        size_t old = path_push(c, ".layers[%zu].id", i);
        const char *name = json_string_value(jid);
        if (!name || !cb_expr_is_name(name, json_string_length(jid)))
            report(c, loc, "invalid id %s%.80s%s: an id must match [A-Za-z_][A-Za-z0-9_]*",
                   name ? "\"" : "", name ? name : type_word(jid), name ? "\"" : "");
        else if (json_object_get(taken, name))
            report(c, loc, "duplicate id \"%s\": a sibling at %s has it too", name,
                   json_string_value(json_object_get(taken, name)));
        else if (!*id && !nested && (!strcmp(name, "embed") || !strcmp(name, "head")))
            report(c, loc, "id \"%s\" is reserved at the root level (the %s uses it)", name,
                   name[0] == 'e' ? "embedder" : "LM head");
        else {
            names[i] = strdup(name);
            json_object_set_new(taken, name, json_string(*loc ? loc : "?"));
        }
        path_pop(c, old);
    }
    json_array_foreach(layers, i, child) {
        if (!json_is_object(child) || names[i]) continue;
        const char *base = cb_lower_default_name(json_string_value(json_object_get(child, "type")));
        json_int_t k = json_integer_value(json_object_get(counters, base));
        char cand[64];
        do {
            if (k == 0) snprintf(cand, sizeof cand, "%s", base);
            else snprintf(cand, sizeof cand, "%s_%" JSON_INTEGER_FORMAT, base, k);
            k++;
        } while (json_object_get(taken, cand));
        json_object_set_new(counters, base, json_integer(k));
        json_object_set_new(taken, cand, json_string("?"));
        names[i] = strdup(cand);
    }
    json_array_foreach(layers, i, child) {
        if (!json_is_object(child) || !names[i]) continue;
        size_t len = strlen(id) + strlen(names[i]) + 4;
        char *child_id = malloc(len);
        if (!child_id) break;
        snprintf(child_id, len, "%s%s%s%s", id, *id ? "." : "", nested ? "*." : "", names[i]);
        size_t old = path_push(c, ".layers[%zu]", i);
        assign_ids(c, child, child_id, depth + 1);
        path_pop(c, old);
        free(child_id);
    }
done:
    for (i = 0; names && i < n; i++) free(names[i]);
    free(names);
    json_decref(taken);
    json_decref(counters);
}

static void assign_model_ids(lower_ctx *c, json_t *m) {
    json_t *topo = json_object_get(json_object_get(m, "model"), "topology");
    if (!json_is_object(topo)) return;
    size_t old = path_push_key(c, "model.topology");
    assign_ids(c, topo, "", 0);
    path_pop(c, old);
}

/* ---- entry point -------------------------------------------------------------- */

int cb_lower(json_t *manifest_doc, json_t **lowered_doc, cb_diags *d) {
    *lowered_doc = NULL;
    lower_ctx c;
    memset(&c, 0, sizeof c);
    c.d = d;
    c.source = json_string_value(json_object_get(manifest_doc, "source"));
    if (!c.source) c.source = "";
    json_t *in_m = json_object_get(manifest_doc, "manifest");
    if (!json_is_object(in_m)) {
        cb_diags_addf(d, CB_E_INVALID, c.source, "manifest: expected a mapping at the top, got %s",
                      in_m ? type_word(in_m) : "nothing");
        return CB_E_INVALID;
    }
    json_t *out = json_deep_copy(manifest_doc);
    if (!out) {
        cb_diags_addf(d, CB_E_RUNTIME, c.source, "out of memory copying the manifest");
        return CB_E_RUNTIME;
    }
    json_object_set_new(out, "kind", json_string("lowered"));
    json_t *m = json_object_get(out, "manifest");

    int rc = CB_OK;
    if (vars_collect(&c, m) != 0) {
        cb_diags_addf(d, CB_E_RUNTIME, c.source, "out of memory");
        rc = CB_E_RUNTIME;
        goto done;
    }
    for (int i = 0; i < c.n_vars && !c.over_budget; i++)
        if (c.vars[i].state == VAR_UNRESOLVED) resolve_var(&c, i);
    if (!c.over_budget) subst_object(&c, m, 0, "vars");
    vars_replace(&c, m);
    if (!c.over_budget) normalise_runs(&c, m);
    if (!c.over_budget) assign_model_ids(&c, m);
    if (c.n_errors) rc = CB_E_INVALID;

done:
    for (int i = 0; i < c.n_vars; i++) json_decref(c.vars[i].value);
    free(c.vars);
    free(c.stack);
    json_decref(c.var_index);
    free(c.path);
    if (rc != CB_OK) {
        json_decref(out);
        return rc;
    }
    *lowered_doc = out;
    return CB_OK;
}
