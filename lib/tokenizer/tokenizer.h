/* tokenizer.h: a whole tokenizer: added/special tokens, a pre-tokenizer split pattern and
 * a byte-level BPE vocabulary (or plain bytes); text <-> token ids. The loaders that make
 * one from tokenizer.json, encoder.json + vocab.bpe and .tiktoken files are in load_*.c. */
#ifndef CB_TOKENIZER_TOKENIZER_H
#define CB_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "tokenizer/added.h"
#include "tokenizer/bpe.h"
#include "tokenizer/buf.h"
#include "tokenizer/split.h"

#define CB_TOK_MAX_SPLITS 4

typedef struct cb_tokenizer {
    char name[256];        /* what it was loaded from, for messages */
    int bytes_only;        /* the "byte" tokenizer: ids 0..255 are the bytes; no BPE */
    cb_bpe bpe;
    cb_split_kind split[CB_TOK_MAX_SPLITS]; /* applied in turn, each to the pieces of the last */
    int n_split;
    int add_prefix_space;  /* Hugging Face ByteLevel: a space before text not starting with one */
    cb_added added;
    size_t n_vocab;        /* 1 + the largest id */
    /* decoding: the bytes of id are dec_blob.p[dec_off[id] .. dec_off[id+1]) when
     * dec_known[id]; other ids are no token */
    uint32_t *dec_off;     /* (n_vocab + 1) */
    uint8_t *dec_known;    /* (n_vocab) */
    cb_bytes dec_blob;
} cb_tokenizer;

/* Flags of cb_tokenizer_encode. */
enum {
    /* Special tokens written in the text ("<|endoftext|>") become their ids, as Hugging
     * Face does with added tokens and tiktoken with allowed_special="all". Without it they
     * are encoded as the text they are. Added tokens that are not special always match. */
    CB_TOK_SPECIAL = 1,
};

/* Set every field to empty (loaders start here). */
void cb_tokenizer_init(cb_tokenizer *t);
void cb_tokenizer_free(cb_tokenizer *t);

/* The byte tokenizer: id i is the byte i, 256 ids. */
int cb_tokenizer_init_bytes(cb_tokenizer *t, cb_error *e);

/* Called by loaders once the BPE, split and added tokens are in place: checks the BPE
 * and builds the decode table. */
int cb_tokenizer_finish(cb_tokenizer *t, cb_error *e);

/* Append the ids of text[0..n) (any bytes) to out. */
int cb_tokenizer_encode(cb_tokenizer *t, const uint8_t *text, size_t n, int flags, cb_ids *out, cb_error *e);

/* Append the bytes of ids[0..n) to out. An id that is no token: CB_E_INVALID naming its
 * index ("ids[12]: 99999 is not a token id (the vocabulary has 50257)"). */
int cb_tokenizer_decode(const cb_tokenizer *t, const int32_t *ids, size_t n, cb_bytes *out, cb_error *e);

/* The bytes of one id, or NULL (length 0) when the id is no token. */
const uint8_t *cb_tokenizer_token(const cb_tokenizer *t, int32_t id, size_t *len);

#endif
