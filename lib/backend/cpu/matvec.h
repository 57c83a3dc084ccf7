/* matvec.h: weight matrices stored for decoding (fp32, bf16, fp16, q8_0; q4_0 and nf4 as
 * well) and y = W x for one token or a small batch of tokens, parallel over rows. */
#ifndef CB_INFER_MATVEC_H
#define CB_INFER_MATVEC_H

#include <stddef.h>

#include "core/error.h"
#include "tensor/quant.h"

/* A (rows, cols) matrix, PyTorch's Linear layout [out, in]; each row stored as
 * cb_kv_kind_bytes(kind, cols) bytes (a partial last block zero-padded).
 *   data (rows, row_bytes), or with x16 the same bytes as 16-row groups (quant_x16.h) */
typedef struct cb_weight_matrix {
    cb_kv_kind kind;
    int rows, cols;
    size_t row_bytes;
    const void *data;
    void *owned; /* what cb_weight_matrix_free releases; NULL for a view */
    int x16;     /* 1: q8_0/q4_0 stored as 16-row groups (quant_x16.h), not row by row */
} cb_weight_matrix;

/* Convert w (rows, cols) f32 into kind (an owned copy). fp32 copies. q8_0 and q4_0 are
 * stored as 16-row groups where cb_x16_wanted says so (x16 = 1). */
int cb_weight_matrix_from_f32(cb_weight_matrix *m, cb_kv_kind kind, const float *w, int rows,
                              int cols, cb_error *e);
/* A view of stored data already in kind's row layout (x16 0) (e.g. bf16 weights memory-mapped from
 * a safetensors file), not copied, not freed. */
void cb_weight_matrix_view(cb_weight_matrix *m, cb_kv_kind kind, const void *data, int rows,
                           int cols);
void cb_weight_matrix_free(cb_weight_matrix *m);
/* Row r of m in kind's row layout (row_bytes): a pointer into m, or for a grouped matrix
 * (x16) the row copied out into buf (row_bytes), which is returned. */
const void *cb_weight_matrix_row(const cb_weight_matrix *m, int r, void *buf);
/* Bytes of the stored rows: rows * row_bytes. */
size_t cb_weight_matrix_bytes(const cb_weight_matrix *m);

/* y (rows) = W x + bias; x (cols); bias (rows) or NULL. */
void cb_matvec(float *y, const cb_weight_matrix *W, const float *x, const float *bias);

/* n tokens at once (prefill chunk, speculative verification): y (n, rows) = x W^T + bias;
 * x (n, cols). Each weight row is read once for all n tokens. */
void cb_matvec_n(float *y, const cb_weight_matrix *W, const float *x, const float *bias, int n);

#endif
