/* ids_text.h: token ids as text: a JSON array on one line ("[15496,995]"), the output of
 * cb-data encode, and its reading back, which also takes whitespace-separated ids (the
 * .tokens format of docs/DESIGN.md section 2). */
#ifndef CB_TOKENIZER_IDS_TEXT_H
#define CB_TOKENIZER_IDS_TEXT_H

#include <stddef.h>
#include "core/error.h"
#include "tokenizer/buf.h"
#include "tokenizer/tokenizer.h"

/* Append "[a,b,c]\n" to out. */
int cb_ids_format_json(const int32_t *ids, size_t n, cb_bytes *out, cb_error *e);

/* Parse text[0..len) (a JSON array of integers, or integers separated by white space)
 * and append the ids to out. When t is not NULL every id must be a token of t. Errors are
 * CB_E_INVALID at "name:line:col". */
int cb_ids_parse(const char *text, size_t len, const char *name, const cb_tokenizer *t, cb_ids *out, cb_error *e);

/* Parse a command-line list of ids ("1,2,3" or "1 2 3"): decimal ids from 0 to INT32_MAX
 * separated by commas or white space. An empty item ("1,,2", "1,2,", ",1") or an empty
 * list is CB_E_USAGE at opt (the option's name). */
int cb_ids_parse_arg(const char *s, const char *opt, cb_ids *out, cb_error *e);

#endif
