/* tokenizer_spec.c: a tokenizer mapping as a spec string (see tokenizer_spec.h). */
#include "bench/tokenizer_spec.h"

#include <stdio.h>
#include <string.h>
#include "core/json_doc.h"

int cb_bench_tokenizer_spec(const json_t *tok, char *spec, size_t cap, cb_error *e) {
    const char *type = json_string_value(json_object_get(tok, "type"));
    const char *path = json_string_value(json_object_get(tok, "path"));
    const char *enc = json_string_value(json_object_get(tok, "encoding"));
    const char *s = NULL;
    if (!json_is_object(tok) || !type) return cb_fail(e, CB_E_INVALID, cb_loc(tok, NULL), "tokenizer: no type");
    if (strcmp(type, "tiktoken") == 0) s = enc;
    else if (strcmp(type, "hf") == 0) s = path;
    else if (strcmp(type, "gpt2") == 0) s = path ? path : "gpt2";
    else if (strcmp(type, "byte") == 0) s = "byte";
    if (!s) return cb_fail(e, CB_E_INVALID, cb_loc(tok, NULL), "tokenizer: type %s needs %s", type,
                           strcmp(type, "tiktoken") == 0 ? "encoding" : "path");
    if ((size_t)snprintf(spec, cap, "%s", s) >= cap) return cb_fail(e, CB_E_INVALID, cb_loc(tok, NULL), "tokenizer: too long");
    return CB_OK;
}
