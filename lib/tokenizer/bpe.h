/* bpe.h: the byte-level BPE engine: a vocabulary of byte strings, a table of merges
 * ((left id, right id) -> rank, merged id) and the merging of one pre-token into ids.
 * Merging takes the pair of lowest rank, the leftmost among equals, until none is left:
 * Hugging Face's BPE model (rank = line of the merge) and tiktoken (rank = rank of the
 * merged token) both work so. */
#ifndef CB_TOKENIZER_BPE_H
#define CB_TOKENIZER_BPE_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "tokenizer/buf.h"

typedef struct cb_bpe_cache_slot {
    uint64_t hash;     /* 0: empty */
    uint32_t key_off;  /* piece bytes in cache_keys */
    uint32_t ids_off;  /* its ids in cache_ids */
    uint16_t key_len;
    uint16_t n_ids;
} cb_bpe_cache_slot;

typedef struct cb_bpe {
    size_t n_ids;       /* ids are 0..n_ids-1; some may have no token */
    size_t n_tokens;    /* ids that have one */
    uint32_t *tok_off;  /* (n_ids) where each token's bytes start in blob */
    int32_t *tok_len;   /* (n_ids) their length; -1: no token has this id */
    cb_bytes blob;
    int32_t byte_id[256]; /* the token of each single byte; -1 while unknown */

    int32_t *tok_slot;  /* (tok_mask+1) open-addressing hash of token bytes -> id, -1 empty */
    size_t tok_mask;

    uint64_t *pair_key; /* (pair_mask+1) left << 32 | right; UINT64_MAX empty */
    uint64_t *pair_val; /* rank << 32 | merged id */
    size_t pair_mask, n_pairs;

    /* A piece that is a whole token is that token, without merging (tiktoken does
     * this; Hugging Face's BPE when "ignore_merges" is true, as in Llama 3). */
    int ignore_merges;

    /* Pieces longer than this many bytes merge with a heap (O(n log n)); shorter ones
     * rescan their pairs (O(n^2), faster when short). Both give the same ids. */
    size_t heap_threshold;

    /* Recent pieces and their ids: a direct-mapped cache, emptied when its arenas fill.
     * Encoding therefore changes the cb_bpe: one encoder per thread. */
    cb_bpe_cache_slot *cache;
    size_t cache_mask;
    cb_bytes cache_keys;
    cb_ids cache_ids;
} cb_bpe;

/* An empty engine for ids 0..n_ids-1. */
int cb_bpe_init(cb_bpe *b, size_t n_ids, cb_error *e);
void cb_bpe_free(cb_bpe *b);

/* Give id the token bytes[0..n) (n >= 1). Two ids with the same bytes, or an id given
 * twice, fill e (CB_E_INVALID, message without a location: the caller adds it). */
int cb_bpe_add_token(cb_bpe *b, int32_t id, const uint8_t *bytes, size_t n, cb_error *e);

/* The id of the token bytes[0..n), or -1. */
int32_t cb_bpe_find(const cb_bpe *b, const uint8_t *bytes, size_t n);

/* Merge left+right into the token their bytes make, with this rank (lower merges first).
 * A later merge of the same pair replaces an earlier one, as in Hugging Face. The
 * concatenation must be a token (else CB_E_INVALID). */
int cb_bpe_add_merge(cb_bpe *b, int32_t left, int32_t right, uint32_t rank, cb_error *e);

/* tiktoken's rule: any two tokens whose bytes concatenate to a token t merge into t
 * with rank id(t). Adds every such pair (after all tokens are added). */
int cb_bpe_merges_from_ranks(cb_bpe *b, cb_error *e);

/* Check that every byte has a token (byte-level BPE can then encode any input). */
int cb_bpe_finish(cb_bpe *b, cb_error *e);

/* Append the ids of the piece p[0..n) (n >= 1) to out. */
int cb_bpe_encode(cb_bpe *b, const uint8_t *p, size_t n, cb_ids *out, cb_error *e);

#endif
