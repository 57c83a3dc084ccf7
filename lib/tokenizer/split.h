/* split.h: the pre-tokenizer split patterns of GPT-2, cl100k_base, o200k_base and Llama 3,
 * as hand-written matchers with the exact leftmost-first backtracking semantics of the
 * regular expressions that tiktoken (fancy-regex) and Hugging Face tokenizers (Oniguruma) run. */
#ifndef CB_TOKENIZER_SPLIT_H
#define CB_TOKENIZER_SPLIT_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"

/* Enums only grow at the end. */
typedef enum cb_split_kind {
    CB_SPLIT_NONE = 0, /* the whole text is one piece */
    /* GPT-2, r50k_base, p50k_base:
     * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    CB_SPLIT_GPT2 = 1,
    /* cl100k_base as first published, and Llama 3's tokenizer.json:
     * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
     * |\s*[\r\n]+|\s+(?!\S)|\s+ */
    CB_SPLIT_CL100K = 2,
    /* cl100k_base as tiktoken >= 0.8 runs it: the same but for "\s++$" before "\s*[\r\n]",
     * which keeps a run of white space that ends the text in one piece even when a newline
     * precedes its last character ("a\n  " is "a", "\n  " where the form above gives
     * "a", "\n", "  "). */
    CB_SPLIT_CL100K_TIKTOKEN = 3,
    /* o200k_base:
     * [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
     * |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
     * |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    CB_SPLIT_O200K = 4,
} cb_split_kind;

/* The end of the piece that starts at pos (pos < n) of the text s[0..n): the regex's
 * match at pos, the text seen as ending at n. Every pattern matches at every position
 * and never matches empty, so pieces tile the text. Bytes of invalid UTF-8 count as
 * characters of class "other" (see unicode.h), which tiktoken and Hugging Face never see. */
size_t cb_split_next(cb_split_kind kind, const uint8_t *s, size_t n, size_t pos);

/* The kind whose regex is `pattern` (a spelling known from tokenizer.json files or
 * tiktoken, compared exactly). An unknown pattern fills e (CB_E_INVALID) naming it. */
int cb_split_from_pattern(const char *pattern, cb_split_kind *kind, cb_error *e);

/* "gpt2", "cl100k", ... for messages. */
const char *cb_split_name(cb_split_kind kind);

#endif
