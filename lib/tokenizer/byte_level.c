/* byte_level.c: GPT-2's bytes_to_unicode() and its inverse, in closed form. The bytes
 * not shown as themselves are 0x00..0x20 (33 bytes), 0x7F..0xA0 (34) and 0xAD (1);
 * in that order they are shown as U+0100..U+0120, U+0121..U+0142 and U+0143. */
#include "tokenizer/byte_level.h"

#include "tokenizer/unicode.h"

static int shown_as_itself(uint32_t b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t cb_byte_level_cp(uint8_t b) {
    if (shown_as_itself(b)) return b;
    if (b <= 0x20) return 0x100 + b;
    if (b >= 0x7F && b <= 0xA0) return 0x121 + (b - 0x7Fu);
    return 0x143; /* 0xAD */
}

long cb_byte_level_decode(const uint8_t *s, size_t n, uint8_t *out, uint32_t *bad_cp) {
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t cp;
        int len = cb_utf8_next(s + i, n - i, &cp);
        if (cp < 0x100 && shown_as_itself(cp)) out[k++] = (uint8_t)cp;
        else if (cp >= 0x100 && cp <= 0x120) out[k++] = (uint8_t)(cp - 0x100);
        else if (cp >= 0x121 && cp <= 0x142) out[k++] = (uint8_t)(0x7F + (cp - 0x121));
        else if (cp == 0x143) out[k++] = 0xAD;
        else {
            *bad_cp = cp;
            return -1;
        }
        i += (size_t)len;
    }
    return (long)k;
}
