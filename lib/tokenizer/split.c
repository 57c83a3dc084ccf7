/* split.c: hand-written matchers for the pre-tokenizer regexes of split.h. Each function
 * returns the end of the regex's match at pos, trying the alternatives in order and,
 * inside one, backtracking as a Perl-style engine does (greedy first, then shorter). */
#include "tokenizer/split.h"

#include <stdio.h>
#include <string.h>
#include "tokenizer/unicode.h"

/* masks over enum cb_uclass */
#define BIT CB_UC_BIT
#define M_L CB_UC_L_MASK
#define M_N BIT(CB_UC_N)
#define M_SPACE BIT(CB_UC_SPACE)
#define M_OTHER (BIT(CB_UC_OTHER) | BIT(CB_UC_M)) /* [^\s\p{L}\p{N}] */
/* o200k: [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and [\p{Ll}\p{Lm}\p{Lo}\p{M}] */
#define M_UPPER (BIT(CB_UC_LU) | BIT(CB_UC_LT) | BIT(CB_UC_LM) | BIT(CB_UC_LO) | BIT(CB_UC_M))
#define M_LOWER (BIT(CB_UC_LL) | BIT(CB_UC_LM) | BIT(CB_UC_LO) | BIT(CB_UC_M))

typedef struct uchar {
    uint32_t cp;
    unsigned mask; /* BIT(class) */
    int len;       /* bytes; 0 past the end */
} uchar;

/* The character at i; len 0 (mask 0, matching no class) at or past the end. */
static inline uchar char_at(const uint8_t *s, size_t n, size_t i) {
    uchar c = {0, 0, 0};
    if (i >= n) return c;
    if (s[i] < 0x80) {
        c.cp = s[i];
        c.len = 1;
    } else {
        c.len = cb_utf8_next(s + i, n - i, &c.cp);
    }
    c.mask = BIT(cb_uclass_of(c.cp));
    return c;
}

/* End of the run of characters in `mask` that starts at i. */
static inline size_t run(const uint8_t *s, size_t n, size_t i, unsigned mask) {
    while (i < n) {
        if (s[i] < 0x80) { /* ASCII: stage 1 maps code points 0..127 to block 0 */
            if (!(BIT(cb_uclass_stage2[s[i]]) & mask)) break;
            i++;
            continue;
        }
        uchar c = char_at(s, n, i);
        if (!(c.mask & mask)) break;
        i += (size_t)c.len;
    }
    return i;
}

static inline int is_newline(uint32_t cp) { return cp == '\r' || cp == '\n'; }

/* Case-insensitive equality with an ASCII lower-case letter, as (?i) folds: the letter,
 * its upper case, and for 's' also U+017F LATIN SMALL LETTER LONG S (CaseFolding.txt;
 * no other code point folds to any of d e l m r s t v). */
static inline int ci_is(uint32_t cp, char lower) {
    return cp == (uint32_t)lower || cp == (uint32_t)(lower - 32) || (lower == 's' && cp == 0x17F);
}

/* The contraction at i, after the apostrophe is known to be at i: 's 't 'm 'd then 're
 * 've 'll (both orders of listing give the same result: no two share a first letter).
 * Returns the end or 0 when none matches. ci: case-insensitive. */
static size_t contraction(const uint8_t *s, size_t n, size_t i, int ci) {
    if (i >= n || s[i] != '\'') return 0;
    uchar c1 = char_at(s, n, i + 1);
    if (!c1.len) return 0;
    if (ci) {
        if (ci_is(c1.cp, 's') || ci_is(c1.cp, 't') || ci_is(c1.cp, 'm') || ci_is(c1.cp, 'd'))
            return i + 1 + (size_t)c1.len;
        uchar c2 = char_at(s, n, i + 1 + (size_t)c1.len);
        if (!c2.len) return 0;
        if ((ci_is(c1.cp, 'r') && ci_is(c2.cp, 'e')) || (ci_is(c1.cp, 'v') && ci_is(c2.cp, 'e')) ||
            (ci_is(c1.cp, 'l') && ci_is(c2.cp, 'l')))
            return i + 1 + (size_t)c1.len + (size_t)c2.len;
        return 0;
    }
    if (c1.cp == 's' || c1.cp == 't' || c1.cp == 'm' || c1.cp == 'd') return i + 2;
    if (i + 2 < n && ((c1.cp == 'r' && s[i + 2] == 'e') || (c1.cp == 'v' && s[i + 2] == 'e') ||
                      (c1.cp == 'l' && s[i + 2] == 'l')))
        return i + 3;
    return 0;
}

/* The white-space alternatives, c0 at pos being white space.
 *   newline_rule: "\s*[\r\n]+" (or the equivalent "\s*[\r\n]") comes first
 *   tail_rule:    "\s++$" comes before it (tiktoken's rewrite of cl100k)
 * then "\s+(?!\S)" and "\s+" (or "\s", the same at that point). */
static size_t whitespace(const uint8_t *s, size_t n, size_t pos, int newline_rule, int tail_rule) {
    size_t i = pos, last_start = pos, last_newline = SIZE_MAX;
    while (i < n) {
        uchar c = char_at(s, n, i);
        if (!(c.mask & M_SPACE)) break;
        if (is_newline(c.cp)) last_newline = i;
        last_start = i;
        i += (size_t)c.len;
    }
    size_t end = i;
    if (tail_rule && end == n) return n;
    /* \s*[\r\n]+: \s* backs off to the last newline of the run, [\r\n]+ takes it alone
     * (the character after it, if in the run, is not a newline) */
    if (newline_rule && last_newline != SIZE_MAX) return last_newline + 1;
    /* \s+(?!\S): the whole run at the end of the text, else all but its last character */
    if (end == n) return n;
    if (last_start > pos) return last_start;
    return end; /* \s+: a single white-space character before a non-space */
}

static size_t split_gpt2(const uint8_t *s, size_t n, size_t pos) {
    uchar c0 = char_at(s, n, pos);
    if (c0.cp == '\'') {
        size_t e = contraction(s, n, pos, 0);
        if (e) return e;
    }
    size_t start = pos;
    unsigned m = c0.mask;
    if (c0.cp == ' ') {
        /* " ?X+": the space joins a following run of letters, numbers or other */
        uchar c1 = char_at(s, n, pos + 1);
        if (c1.mask & (M_L | M_N | M_OTHER)) {
            start = pos + 1;
            m = c1.mask;
        }
    }
    if (m & M_L) return run(s, n, start, M_L);
    if (m & M_N) return run(s, n, start, M_N);
    if (m & M_OTHER) return run(s, n, start, M_OTHER);
    return whitespace(s, n, pos, 0, 0);
}

static size_t split_cl100k(const uint8_t *s, size_t n, size_t pos, int tail_rule) {
    uchar c0 = char_at(s, n, pos);
    if (c0.cp == '\'') {
        size_t e = contraction(s, n, pos, 1);
        if (e) return e;
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c0.mask & M_L) return run(s, n, pos, M_L);
    if (!(c0.mask & M_N) && !is_newline(c0.cp)) {
        uchar c1 = char_at(s, n, pos + (size_t)c0.len);
        if (c1.mask & M_L) return run(s, n, pos + (size_t)c0.len, M_L);
    }
    /* \p{N}{1,3} */
    if (c0.mask & M_N) {
        size_t i = pos + (size_t)c0.len;
        for (int k = 1; k < 3; k++) {
            uchar c = char_at(s, n, i);
            if (!(c.mask & M_N)) break;
            i += (size_t)c.len;
        }
        return i;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t start = SIZE_MAX;
    if (c0.mask & M_OTHER) start = pos;
    else if (c0.cp == ' ' && (char_at(s, n, pos + 1).mask & M_OTHER)) start = pos + 1;
    if (start != SIZE_MAX) {
        size_t i = run(s, n, start, M_OTHER);
        while (i < n && (s[i] == '\r' || s[i] == '\n')) i++;
        return i;
    }
    return whitespace(s, n, pos, 1, tail_rule);
}

/* o200k's "[A]*[B]+" from i (A = M_UPPER, B = M_LOWER): greedy A*, backing off until B+
 * can match. Returns the end, or SIZE_MAX when no B character is reachable. */
static size_t upper_star_lower_plus(const uint8_t *s, size_t n, size_t i) {
    size_t last_lower = SIZE_MAX; /* start of the last character of the A run that is also in B */
    int last_lower_len = 0;
    uchar c;
    for (;;) {
        c = char_at(s, n, i);
        if (!(c.mask & M_UPPER)) break;
        if (c.mask & M_LOWER) { last_lower = i; last_lower_len = c.len; }
        i += (size_t)c.len;
    }
    if (c.mask & M_LOWER) return run(s, n, i, M_LOWER); /* B+ right after the whole A run */
    /* backing off A* to the last character that is in B too; B+ then takes just it,
     * since what follows it is in A but not B, or is the character that ended the run */
    if (last_lower != SIZE_MAX) return last_lower + (size_t)last_lower_len;
    return SIZE_MAX;
}

static size_t o200k_suffix(const uint8_t *s, size_t n, size_t end) {
    size_t e = contraction(s, n, end, 1);
    return e ? e : end;
}

static size_t split_o200k(const uint8_t *s, size_t n, size_t pos) {
    uchar c0 = char_at(s, n, pos);
    /* [^\r\n\p{L}\p{N}]? */
    int has_prefix = !(c0.mask & (M_L | M_N)) && !is_newline(c0.cp);
    size_t after = pos + (size_t)c0.len;
    size_t e;
    /* alternative 1: P? A* B+ C?  (with the prefix, then without) */
    if (has_prefix && (e = upper_star_lower_plus(s, n, after)) != SIZE_MAX) return o200k_suffix(s, n, e);
    if ((e = upper_star_lower_plus(s, n, pos)) != SIZE_MAX) return o200k_suffix(s, n, e);
    /* alternative 2: P? A+ B* C? */
    if (has_prefix && (char_at(s, n, after).mask & M_UPPER))
        return o200k_suffix(s, n, run(s, n, run(s, n, after, M_UPPER), M_LOWER));
    if (c0.mask & M_UPPER) return o200k_suffix(s, n, run(s, n, run(s, n, pos, M_UPPER), M_LOWER));
    /* \p{N}{1,3} */
    if (c0.mask & M_N) {
        size_t i = after;
        for (int k = 1; k < 3; k++) {
            uchar c = char_at(s, n, i);
            if (!(c.mask & M_N)) break;
            i += (size_t)c.len;
        }
        return i;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n/]* */
    size_t start = SIZE_MAX;
    if (c0.mask & M_OTHER) start = pos;
    else if (c0.cp == ' ' && (char_at(s, n, pos + 1).mask & M_OTHER)) start = pos + 1;
    if (start != SIZE_MAX) {
        size_t i = run(s, n, start, M_OTHER);
        while (i < n && (s[i] == '\r' || s[i] == '\n' || s[i] == '/')) i++;
        return i;
    }
    return whitespace(s, n, pos, 1, 0);
}

size_t cb_split_next(cb_split_kind kind, const uint8_t *s, size_t n, size_t pos) {
    switch (kind) {
    case CB_SPLIT_GPT2: return split_gpt2(s, n, pos);
    case CB_SPLIT_CL100K: return split_cl100k(s, n, pos, 0);
    case CB_SPLIT_CL100K_TIKTOKEN: return split_cl100k(s, n, pos, 1);
    case CB_SPLIT_O200K: return split_o200k(s, n, pos);
    case CB_SPLIT_NONE: break;
    }
    return n;
}

/* Spellings of each pattern met in tokenizer.json files and tiktoken's sources. */
static const struct {
    cb_split_kind kind;
    const char *pattern;
} known_patterns[] = {
    {CB_SPLIT_GPT2, "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
    {CB_SPLIT_GPT2, "'s|'t|'re|'ve|'m|'ll|'d| ?[\\p{L}]+| ?[\\p{N}]+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
    {CB_SPLIT_GPT2, "'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
    {CB_SPLIT_GPT2, "'(?:[sdmt]|ll|ve|re)| ?\\p{L}++| ?\\p{N}++| ?[^\\s\\p{L}\\p{N}]++|\\s++$|\\s+(?!\\S)|\\s"},
    {CB_SPLIT_CL100K, "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {CB_SPLIT_CL100K, "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"},
    {CB_SPLIT_CL100K_TIKTOKEN, "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s"},
    {CB_SPLIT_O200K, "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                     "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                     "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

int cb_split_from_pattern(const char *pattern, cb_split_kind *kind, cb_error *e) {
    for (size_t i = 0; i < sizeof known_patterns / sizeof known_patterns[0]; i++) {
        if (strcmp(pattern, known_patterns[i].pattern) == 0) {
            *kind = known_patterns[i].kind;
            return CB_OK;
        }
    }
    char shown[160];
    size_t len = strlen(pattern);
    if (len < sizeof shown) snprintf(shown, sizeof shown, "%s", pattern);
    else snprintf(shown, sizeof shown, "%.*s...", (int)sizeof shown - 4, pattern);
    return cb_fail(e, CB_E_INVALID, "", "unknown pre-tokenizer pattern \"%s\" (caramba knows the GPT-2, "
                   "cl100k_base, o200k_base and Llama 3 patterns)", shown);
}

const char *cb_split_name(cb_split_kind kind) {
    switch (kind) {
    case CB_SPLIT_NONE: return "none";
    case CB_SPLIT_GPT2: return "gpt2";
    case CB_SPLIT_CL100K: return "cl100k";
    case CB_SPLIT_CL100K_TIKTOKEN: return "cl100k (tiktoken >= 0.8)";
    case CB_SPLIT_O200K: return "o200k";
    }
    return "unknown";
}
