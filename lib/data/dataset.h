/* dataset.h: token datasets for training and evaluation: .npy arrays (uint16, uint32,
 * int32, int64; memory-mapped) and .tokens text files (whitespace-separated ids),
 * picked by suffix; and the batcher that cuts them into (B, T+1) windows,
 * deterministically for a seed and resumable from a saved position. */
#ifndef CB_DATA_DATASET_H
#define CB_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "tensor/dtype.h"

typedef struct cb_dataset {
    char path[4096];
    enum cb_dtype dtype;      /* U16, U32, I32 or I64 (.tokens files are held as I32) */
    size_t n_tokens;
    const void *tokens;       /* the token array (mapped, or owned for .tokens) */
    void *map_base;           /* mapping to unmap, or NULL */
    size_t map_len;
    void *owned;              /* malloc'd storage, or NULL */
    int64_t max_token;        /* largest id in the file (checked against the vocabulary) */
} cb_dataset;

/* Open path (".npy" or ".tokens"). A missing file is CB_E_IO; a malformed, truncated or
 * lying file (header shape past the data, unsupported dtype, negative ids, Fortran
 * order, not one-dimensional) is CB_E_INVALID naming the file and what is wrong. */
int cb_dataset_open(cb_dataset *ds, const char *path, cb_error *e);
void cb_dataset_close(cb_dataset *ds);
/* The token at index i < n_tokens. */
int64_t cb_dataset_token(const cb_dataset *ds, size_t i);
/* numpy's name of a token dtype: "uint16", "uint32", "int32", "int64". */
const char *cb_dataset_dtype_name(enum cb_dtype dtype);
/* CB_E_INVALID unless every id < vocab_size ("data.npy: token id 50300 at index 17 is
 * past the vocabulary (50257)"). */
int cb_dataset_check_vocab(const cb_dataset *ds, int64_t vocab_size, cb_error *e);

/* Windows of T+1 tokens: x = window[0..T), y = window[1..T]. Random mode draws each
 * window's start from (seed, batch index, row) alone, so batch k is the same whether or
 * not the run was resumed; sequential mode walks the data in order, wrapping around. */
typedef struct cb_batcher {
    const cb_dataset *ds;
    int B, T;
    int random;
    uint64_t seed;
    uint64_t position; /* batches drawn so far: save it in checkpoints, restore it to resume */
} cb_batcher;

/* CB_E_INVALID when the dataset has fewer than T+1 tokens. */
int cb_batcher_init(cb_batcher *b, const cb_dataset *ds, int B, int T, int random, uint64_t seed,
                    cb_error *e);
/* Fill x and y (B*T each) with batch number b->position, then advance. */
void cb_batcher_next(cb_batcher *b, int32_t *x, int32_t *y);
/* Where row `row` of batch number `batch` starts, in [0, n_tokens - T - 1]: random mode
 * hashes (seed, batch, row); sequential mode is ((batch * B + row) * T) mod (n_tokens - T). */
uint64_t cb_batcher_row_start(const cb_batcher *b, uint64_t batch, int row);

#endif
