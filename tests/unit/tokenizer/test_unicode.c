/* test_unicode.c: the generated class table, UTF-8 decoding of arbitrary bytes, and
 * GPT-2's byte-to-unicode mapping. */
#include "test.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"

TEST(classes_of_known_code_points) {
    EXPECT_EQ_INT(CB_UC_LU, cb_uclass_of('A'));
    EXPECT_EQ_INT(CB_UC_LL, cb_uclass_of('z'));
    EXPECT_EQ_INT(CB_UC_LL, cb_uclass_of(0xE9));    /* é */
    EXPECT_EQ_INT(CB_UC_LU, cb_uclass_of(0x416));   /* Ж */
    EXPECT_EQ_INT(CB_UC_LT, cb_uclass_of(0x1C5));   /* ǅ */
    EXPECT_EQ_INT(CB_UC_LM, cb_uclass_of(0x2B0));   /* ʰ */
    EXPECT_EQ_INT(CB_UC_LM, cb_uclass_of(0x3005));  /* 々 */
    EXPECT_EQ_INT(CB_UC_LO, cb_uclass_of(0x4E2D));  /* 中 (CJK range in UnicodeData.txt) */
    EXPECT_EQ_INT(CB_UC_LO, cb_uclass_of(0x20000)); /* CJK extension B, first of a range */
    EXPECT_EQ_INT(CB_UC_LO, cb_uclass_of(0xAC00));  /* 가 (Hangul range) */
    EXPECT_EQ_INT(CB_UC_LO, cb_uclass_of(0x627));   /* ا */
    EXPECT_EQ_INT(CB_UC_M, cb_uclass_of(0x301));    /* combining acute */
    EXPECT_EQ_INT(CB_UC_M, cb_uclass_of(0x93F));    /* Devanagari vowel sign i (Mc) */
    EXPECT_EQ_INT(CB_UC_M, cb_uclass_of(0x20DD));   /* combining enclosing circle (Me) */
    EXPECT_EQ_INT(CB_UC_M, cb_uclass_of(0xFE0F));   /* variation selector 16 (Mn) */
    EXPECT_EQ_INT(CB_UC_N, cb_uclass_of('7'));
    EXPECT_EQ_INT(CB_UC_N, cb_uclass_of(0xB2));     /* ² (No) */
    EXPECT_EQ_INT(CB_UC_N, cb_uclass_of(0x216B));   /* Ⅻ (Nl) */
    EXPECT_EQ_INT(CB_UC_N, cb_uclass_of(0x663));    /* Arabic-Indic three */
    EXPECT_EQ_INT(CB_UC_SPACE, cb_uclass_of(' '));
    EXPECT_EQ_INT(CB_UC_SPACE, cb_uclass_of('\t'));
    EXPECT_EQ_INT(CB_UC_SPACE, cb_uclass_of('\r'));
    EXPECT_EQ_INT(CB_UC_SPACE, cb_uclass_of(0x0B));
    EXPECT_EQ_INT(CB_UC_SPACE, cb_uclass_of(0x85));
    EXPECT_EQ_INT(CB_UC_SPACE, cb_uclass_of(0xA0));
    EXPECT_EQ_INT(CB_UC_SPACE, cb_uclass_of(0x2028));
    EXPECT_EQ_INT(CB_UC_SPACE, cb_uclass_of(0x3000));
    EXPECT_EQ_INT(CB_UC_OTHER, cb_uclass_of(0x1C));    /* not White_Space, though Python's isspace says so */
    EXPECT_EQ_INT(CB_UC_OTHER, cb_uclass_of(0x200B));  /* zero width space is Cf */
    EXPECT_EQ_INT(CB_UC_OTHER, cb_uclass_of(0x200D));  /* ZWJ */
    EXPECT_EQ_INT(CB_UC_OTHER, cb_uclass_of(0x1F600)); /* emoji are So */
    EXPECT_EQ_INT(CB_UC_OTHER, cb_uclass_of('\''));
    EXPECT_EQ_INT(CB_UC_OTHER, cb_uclass_of(0x10FFFF));
    EXPECT_EQ_INT(CB_UC_OTHER, cb_uclass_of(CB_UTF8_INVALID));
}

TEST(utf8_decoding_splits_invalid_bytes_one_by_one) {
    struct { const char *bytes; int len; uint32_t cp; } cases[] = {
        {"A", 1, 'A'},
        {"\xC3\xA9", 2, 0xE9},
        {"\xE4\xB8\xAD", 3, 0x4E2D},
        {"\xF0\x9F\x98\x80", 4, 0x1F600},
        {"\xF4\x8F\xBF\xBF", 4, 0x10FFFF},
        {"\x80", 1, CB_UTF8_INVALID},             /* lone continuation */
        {"\xC0\x80", 1, CB_UTF8_INVALID},         /* overlong */
        {"\xC1\xBF", 1, CB_UTF8_INVALID},         /* overlong */
        {"\xE0\x80\x80", 1, CB_UTF8_INVALID},     /* overlong */
        {"\xED\xA0\x80", 1, CB_UTF8_INVALID},     /* surrogate */
        {"\xF0\x80\x80\x80", 1, CB_UTF8_INVALID}, /* overlong */
        {"\xF4\x90\x80\x80", 1, CB_UTF8_INVALID}, /* above U+10FFFF */
        {"\xF5\x80\x80\x80", 1, CB_UTF8_INVALID},
        {"\xFF", 1, CB_UTF8_INVALID},
        {"\xE4\xB8", 1, CB_UTF8_INVALID},         /* cut short */
        {"\xC3 ", 1, CB_UTF8_INVALID},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t cp = 0;
        size_t n = strlen(cases[i].bytes);
        int len = cb_utf8_next((const uint8_t *)cases[i].bytes, n, &cp);
        if (len != cases[i].len || cp != cases[i].cp)
            FAILF("case %zu: length %d code point %#x, expected %d %#x", i, len, (unsigned)cp, cases[i].len,
                  (unsigned)cases[i].cp);
    }
    uint8_t out[4];
    EXPECT_EQ_INT(3, cb_utf8_put(0x4E2D, out));
    EXPECT(memcmp(out, "\xE4\xB8\xAD", 3) == 0);
}

TEST(byte_level_mapping_is_gpt2s) {
    EXPECT_EQ_INT(0x120, cb_byte_level_cp(' '));  /* Ġ */
    EXPECT_EQ_INT(0x10A, cb_byte_level_cp('\n')); /* Ċ */
    EXPECT_EQ_INT(0x100, cb_byte_level_cp(0));
    EXPECT_EQ_INT('!', cb_byte_level_cp('!'));
    EXPECT_EQ_INT(0x121, cb_byte_level_cp(0x7F));
    EXPECT_EQ_INT(0x142, cb_byte_level_cp(0xA0));
    EXPECT_EQ_INT(0x143, cb_byte_level_cp(0xAD));
    EXPECT_EQ_INT(0xFF, cb_byte_level_cp(0xFF));
    /* a bijection of the 256 bytes onto 256 code points, inverted by cb_byte_level_decode */
    uint8_t text[256 * 4], back[256 * 4];
    size_t n = 0;
    int seen[0x144] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = cb_byte_level_cp((uint8_t)b);
        if (cp >= 0x144 || seen[cp]++) FAILF("byte %d maps to %#x twice or out of range", b, (unsigned)cp);
        n += (size_t)cb_utf8_put(cp, text + n);
    }
    uint32_t bad = 0;
    EXPECT_EQ_INT(256, cb_byte_level_decode(text, n, back, &bad));
    for (int b = 0; b < 256; b++)
        if (back[b] != b) { FAILF("byte %d came back as %d", b, back[b]); break; }
    EXPECT_EQ_INT(-1, cb_byte_level_decode((const uint8_t *)" ", 1, back, &bad)); /* a real space is not in the alphabet */
    EXPECT_EQ_INT(' ', bad);
    EXPECT_EQ_INT(-1, cb_byte_level_decode((const uint8_t *)"\xC5\x84", 2, back, &bad)); /* U+0144 */
    EXPECT_EQ_INT(0x144, bad);
}
