/* byte_level.h: GPT-2's byte-to-unicode mapping, in which byte-level BPE vocabularies
 * (encoder.json, Hugging Face tokenizer.json) spell their tokens: each byte is shown as
 * one printable character, e.g. the space 0x20 as U+0120 'Ġ', the newline as U+010A 'Ċ'. */
#ifndef CB_TOKENIZER_BYTE_LEVEL_H
#define CB_TOKENIZER_BYTE_LEVEL_H

#include <stddef.h>
#include <stdint.h>

/* The code point that shows byte b: b itself for '!'..'~', U+00A1..U+00AC and
 * U+00AE..U+00FF; the other 68 bytes, in increasing order, get U+0100 upwards. */
uint32_t cb_byte_level_cp(uint8_t b);

/* The bytes a token spelled in the mapping stands for: s[0..n) is UTF-8 text, out has
 * room for n bytes (each character stands for one byte and takes at least one).
 * Returns the number of bytes written, or -1 when s holds a character outside the
 * mapping (or invalid UTF-8); then *bad_cp is that character (CB_UTF8_INVALID for
 * invalid UTF-8). */
long cb_byte_level_decode(const uint8_t *s, size_t n, uint8_t *out, uint32_t *bad_cp);

#endif
