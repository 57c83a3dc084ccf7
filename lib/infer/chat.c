/* chat.c: conversation formats. Template text is encoded with special tokens recognised;
 * what the user types is encoded as plain text, so typing "<|eot_id|>" cannot end a turn. */
#include "infer/chat.h"

#include <string.h>
#include "infer/model_dir.h"

void cb_chat_init(cb_chat *c, cb_tokenizer *tok) {
    memset(c, 0, sizeof *c);
    c->tok = tok;
    c->bos = -1;
    c->end_turn = -1;
    if (cb_tokenizer_special_id(tok, "<|start_header_id|>") >= 0 && cb_tokenizer_special_id(tok, "<|end_header_id|>") >= 0 &&
        cb_tokenizer_special_id(tok, "<|eot_id|>") >= 0) {
        c->style = CB_CHAT_LLAMA3;
        c->end_turn = cb_tokenizer_special_id(tok, "<|eot_id|>");
        c->bos = cb_tokenizer_special_id(tok, "<|begin_of_text|>");
    } else if (cb_tokenizer_special_id(tok, "<|im_start|>") >= 0 && cb_tokenizer_special_id(tok, "<|im_end|>") >= 0) {
        c->style = CB_CHAT_CHATML;
        c->end_turn = cb_tokenizer_special_id(tok, "<|im_end|>");
    } else {
        c->style = CB_CHAT_PLAIN;
    }
}

const char *cb_chat_style_name(cb_chat_style s) {
    return s == CB_CHAT_LLAMA3 ? "llama3" : s == CB_CHAT_CHATML ? "chatml" : "plain";
}

void cb_chat_stop(const cb_chat *c, cb_stop_config *stop) {
    if (c->end_turn >= 0) {
        if (!cb_stop_is_eos(stop, c->end_turn) && stop->n_eos < CB_STOP_MAX_EOS) stop->eos[stop->n_eos++] = c->end_turn;
    } else if (stop->n_strings < CB_STOP_MAX_STRINGS) {
        stop->strings[stop->n_strings++] = "\nUser:";
    }
}

static int add(const cb_chat *c, const char *text, size_t n, int special, cb_ids *conv, cb_error *e) {
    return cb_tokenizer_encode(c->tok, (const uint8_t *)text, n, special ? CB_TOK_SPECIAL : 0, conv, e);
}
static int add_s(const cb_chat *c, const char *text, cb_ids *conv, cb_error *e) {
    return add(c, text, strlen(text), 1, conv, e);
}

int cb_chat_begin(const cb_chat *c, const char *system, cb_ids *conv, cb_error *e) {
    if (c->bos >= 0) CB_TRY(cb_ids_push(conv, c->bos, e));
    if (!system || !*system) return CB_OK;
    switch (c->style) {
    case CB_CHAT_LLAMA3: CB_TRY(add_s(c, "<|start_header_id|>system<|end_header_id|>\n\n", conv, e)); break;
    case CB_CHAT_CHATML: CB_TRY(add_s(c, "<|im_start|>system\n", conv, e)); break;
    default: CB_TRY(add_s(c, "System: ", conv, e));
    }
    CB_TRY(add(c, system, strlen(system), 0, conv, e));
    switch (c->style) {
    case CB_CHAT_LLAMA3: return add_s(c, "<|eot_id|>", conv, e);
    case CB_CHAT_CHATML: return add_s(c, "<|im_end|>\n", conv, e);
    default: return add_s(c, "\n", conv, e);
    }
}

int cb_chat_user(const cb_chat *c, const char *msg, size_t n, cb_ids *conv, cb_error *e) {
    switch (c->style) {
    case CB_CHAT_LLAMA3: CB_TRY(add_s(c, "<|start_header_id|>user<|end_header_id|>\n\n", conv, e)); break;
    case CB_CHAT_CHATML: CB_TRY(add_s(c, "<|im_start|>user\n", conv, e)); break;
    default: CB_TRY(add_s(c, "User: ", conv, e));
    }
    CB_TRY(add(c, msg, n, 0, conv, e));
    switch (c->style) {
    case CB_CHAT_LLAMA3: return add_s(c, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", conv, e);
    case CB_CHAT_CHATML: return add_s(c, "<|im_end|>\n<|im_start|>assistant\n", conv, e);
    default: return add_s(c, "\nAssistant:", conv, e);
    }
}

int cb_chat_assistant(const cb_chat *c, const int32_t *ids, size_t n, cb_ids *conv, cb_error *e) {
    CB_TRY(cb_ids_reserve(conv, n, e));
    memcpy(conv->v + conv->n, ids, n * sizeof *ids);
    conv->n += n;
    switch (c->style) {
    case CB_CHAT_LLAMA3: return add_s(c, "<|eot_id|>", conv, e);
    case CB_CHAT_CHATML: return add_s(c, "<|im_end|>\n", conv, e);
    default: return add_s(c, "\n", conv, e);
    }
}
