/* chat.h: the conversation format of an interactive chat, taken from the tokenizer's
 * special tokens: Llama 3's header tokens (<|start_header_id|>role<|end_header_id|>, turns
 * ended by <|eot_id|>), ChatML's <|im_start|>/<|im_end|>, or for a tokenizer with neither a
 * plain "User: ... / Assistant:" transcript that stops at the next "\nUser:". */
#ifndef CB_INFER_CHAT_H
#define CB_INFER_CHAT_H

#include <stdint.h>
#include "core/error.h"
#include "infer/sample.h"
#include "tokenizer/tokenizer.h"

typedef enum cb_chat_style { CB_CHAT_LLAMA3 = 0, CB_CHAT_CHATML = 1, CB_CHAT_PLAIN = 2 } cb_chat_style;

typedef struct cb_chat {
    cb_chat_style style;
    cb_tokenizer *tok;
    int32_t end_turn;   /* the id that ends a turn (<|eot_id|>, <|im_end|>), -1 for plain */
    int32_t bos;        /* <|begin_of_text|> for Llama 3, else -1 */
} cb_chat;

/* The style the tokenizer supports. */
void cb_chat_init(cb_chat *c, cb_tokenizer *tok);
const char *cb_chat_style_name(cb_chat_style s);

/* Stop rules of an assistant turn added to stop: the turn's end id, or for plain the stop
 * string "\nUser:". */
void cb_chat_stop(const cb_chat *c, cb_stop_config *stop);

/* Append to conv the tokens that open the conversation (system text may be NULL). */
int cb_chat_begin(const cb_chat *c, const char *system, cb_ids *conv, cb_error *e);
/* Append a user turn (msg[0..n), its special-token text not interpreted) and the header of
 * the assistant's answer. */
int cb_chat_user(const cb_chat *c, const char *msg, size_t n, cb_ids *conv, cb_error *e);
/* Append the assistant's answer ids[0..n) and what closes its turn. */
int cb_chat_assistant(const cb_chat *c, const int32_t *ids, size_t n, cb_ids *conv, cb_error *e);

#endif
