/* text_clean.h: the normal form corpus text is stored in before tokenizing, so that the
 * same corpus gives the same tokens whatever line endings or stray bytes its files carry. */
#ifndef CB_DATA_TEXT_CLEAN_H
#define CB_DATA_TEXT_CLEAN_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "tokenizer/buf.h"

/* Append the clean form of text[0..n) to out:
 *   - UTF-8 is kept; every byte that does not start a well-formed sequence becomes U+FFFD;
 *   - a byte-order mark at the start is dropped;
 *   - CR LF and lone CR become LF;
 *   - control characters other than TAB and LF (C0, DEL, C1) are dropped;
 *   - spaces and tabs at the end of a line are dropped;
 *   - runs of blank lines become one blank line (3 or more LF in a row become 2);
 *   - blank lines at the start and all white space at the end are dropped.
 * Text that is clean already comes out unchanged; cleaning twice changes nothing more.
 * Returns the number of bytes replaced by U+FFFD in *n_replaced (may be NULL). */
int cb_text_clean(const uint8_t *text, size_t n, cb_bytes *out, size_t *n_replaced, cb_error *e);

#endif
