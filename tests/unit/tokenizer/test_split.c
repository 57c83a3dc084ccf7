/* test_split.c: the pre-tokenizer matchers on tricky cases (expected pieces checked with
 * Python's regex module on the same patterns), pattern recognition, and tiling of any bytes. */
#include "test.h"

#include <stdlib.h>
#include "tokenizer/split.h"

/* The pieces of text joined by '|' (test texts hold no '|'). */
static const char *pieces(cb_split_kind kind, const char *text) {
    static char out[1024];
    size_t n = strlen(text), pos = 0, k = 0;
    while (pos < n) {
        size_t end = cb_split_next(kind, (const uint8_t *)text, n, pos);
        if (end <= pos || end > n) return "(no progress)";
        if (pos) out[k++] = '|';
        memcpy(out + k, text + pos, end - pos);
        k += end - pos;
        pos = end;
    }
    out[k] = '\0';
    return out;
}

TEST(gpt2_pattern) {
    EXPECT_EQ_STR("Hello| world", pieces(CB_SPLIT_GPT2, "Hello world"));
    EXPECT_EQ_STR("I|'m|  | here|\n\n", pieces(CB_SPLIT_GPT2, "I'm   here\n\n"));
    EXPECT_EQ_STR("don|'t| DON|'|T", pieces(CB_SPLIT_GPT2, "don't DON'T")); /* case-sensitive */
    EXPECT_EQ_STR("a|1|b|22", pieces(CB_SPLIT_GPT2, "a1b22"));
    EXPECT_EQ_STR(" | x", pieces(CB_SPLIT_GPT2, "  x"));
    EXPECT_EQ_STR("$$| 12", pieces(CB_SPLIT_GPT2, "$$ 12"));
    EXPECT_EQ_STR("\t|\t|x", pieces(CB_SPLIT_GPT2, "\t\tx"));
    EXPECT_EQ_STR("x|   ", pieces(CB_SPLIT_GPT2, "x   ")); /* white space at the end stays whole */
    EXPECT_EQ_STR("1234567", pieces(CB_SPLIT_GPT2, "1234567"));
    EXPECT_EQ_STR("caf\xC3\xA9| \xE4\xB8\xAD\xE6\x96\x87", pieces(CB_SPLIT_GPT2, "caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87"));
}

TEST(cl100k_pattern) {
    EXPECT_EQ_STR("Hello| world", pieces(CB_SPLIT_CL100K, "Hello world"));
    EXPECT_EQ_STR("I|'M| here", pieces(CB_SPLIT_CL100K, "I'M here"));          /* (?i) */
    EXPECT_EQ_STR("x|'\xC5\xBF", pieces(CB_SPLIT_CL100K, "x'\xC5\xBF"));       /* 'ſ folds to 's */
    EXPECT_EQ_STR("123|45", pieces(CB_SPLIT_CL100K, "12345"));
    EXPECT_EQ_STR(" !!\n\n|x", pieces(CB_SPLIT_CL100K, " !!\n\nx"));
    EXPECT_EQ_STR(" | x", pieces(CB_SPLIT_CL100K, "  x"));
    EXPECT_EQ_STR("(word", pieces(CB_SPLIT_CL100K, "(word"));
    EXPECT_EQ_STR("\tword", pieces(CB_SPLIT_CL100K, "\tword"));
    EXPECT_EQ_STR("a|  \n| b", pieces(CB_SPLIT_CL100K, "a  \n b"));
    EXPECT_EQ_STR("x|\n\t\n", pieces(CB_SPLIT_CL100K, "x\n\t\n"));
    /* the two cl100k forms differ only on white space ending the text after a newline */
    EXPECT_EQ_STR("a|\n|  ", pieces(CB_SPLIT_CL100K, "a\n  "));
    EXPECT_EQ_STR("a|\n  ", pieces(CB_SPLIT_CL100K_TIKTOKEN, "a\n  "));
    EXPECT_EQ_STR("a|\n \n| ", pieces(CB_SPLIT_CL100K, "a\n \n "));
    EXPECT_EQ_STR("a|\n \n ", pieces(CB_SPLIT_CL100K_TIKTOKEN, "a\n \n "));
    EXPECT_EQ_STR("a| \n\n| | b", pieces(CB_SPLIT_CL100K_TIKTOKEN, "a \n\n  b"));
}

TEST(o200k_pattern) {
    EXPECT_EQ_STR("HTMLParser| i|Phone", pieces(CB_SPLIT_O200K, "HTMLParser iPhone"));
    EXPECT_EQ_STR("HELLO| world", pieces(CB_SPLIT_O200K, "HELLO world"));
    EXPECT_EQ_STR("x|/\n/|y", pieces(CB_SPLIT_O200K, "x/\n/y"));
    EXPECT_EQ_STR("we'RE", pieces(CB_SPLIT_O200K, "we'RE"));
    EXPECT_EQ_STR("\xCC\x81" "a", pieces(CB_SPLIT_O200K, "\xCC\x81" "a")); /* a mark leads a word */
    EXPECT_EQ_STR("123|4", pieces(CB_SPLIT_O200K, "1234"));
    EXPECT_EQ_STR("Mc|Donald's", pieces(CB_SPLIT_O200K, "McDonald's"));
    EXPECT_EQ_STR("\xC7\x85" "emal", pieces(CB_SPLIT_O200K, "\xC7\x85" "emal")); /* Lt then Ll */
}

TEST(patterns_are_recognised_by_their_spelling) {
    cb_error e;
    cb_split_kind k = CB_SPLIT_NONE;
    EXPECT_EQ_INT(CB_OK, cb_split_from_pattern("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
                                               " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", &k, &e));
    EXPECT_EQ_INT(CB_SPLIT_CL100K, k);
    EXPECT_EQ_INT(CB_OK, cb_split_from_pattern("'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+|"
                                               " ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s", &k, &e));
    EXPECT_EQ_INT(CB_SPLIT_CL100K_TIKTOKEN, k);
    EXPECT_EQ_INT(CB_OK, cb_split_from_pattern("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", &k, &e));
    EXPECT_EQ_INT(CB_SPLIT_GPT2, k);
    EXPECT_EQ_INT(CB_E_INVALID, cb_split_from_pattern("\\w+|\\s+", &k, &e));
    EXPECT(strstr(e.msg, "unknown pre-tokenizer pattern \"\\w+|\\s+\"") != NULL);
}

TEST(pieces_tile_any_bytes) {
    /* random strings over bytes that matter to the patterns, valid UTF-8 or not */
    static const char *alphabet[] = {"a", "Z", "7", " ", "  ", "\t", "\n", "\r", "'", "s", "L", "/", "!", "\xC3\xA9",
                                     "\xCC\x81", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80", "\x80", "\xFF", "\xE4\xB8",
                                     "\xC2\xA0", "\xE3\x80\x80", "\xC5\xBF", "\x00"};
    srand(12345);
    uint8_t text[256];
    for (int kind = CB_SPLIT_NONE; kind <= CB_SPLIT_O200K; kind++) {
        for (int trial = 0; trial < 3000; trial++) {
            size_t n = 0;
            int parts = rand() % 40;
            for (int p = 0; p < parts; p++) {
                const char *a = alphabet[rand() % (int)(sizeof alphabet / sizeof alphabet[0])];
                size_t len = a[0] ? strlen(a) : 1;
                memcpy(text + n, a, len);
                n += len;
            }
            size_t pos = 0, count = 0;
            while (pos < n) {
                size_t end = cb_split_next((cb_split_kind)kind, text, n, pos);
                if (end <= pos || end > n) {
                    FAILF("%s: piece at %zu ends at %zu of %zu", cb_split_name((cb_split_kind)kind), pos, end, n);
                    return;
                }
                pos = end;
                count++;
            }
            if (kind == CB_SPLIT_NONE && n && count != 1) FAILF("none: %zu pieces", count);
        }
    }
}
