/* quant_dot.h: the inner kernels of decoding: the dot product of a stored row (any
 * cb_kv_kind) with an f32 vector, and y += a * row, dequantising block by block in
 * registers (AVX2/FMA/F16C when compiled for it, portable C otherwise); a stored row is
 * never expanded to f32 in memory beyond one 64-value tile (a partial last block, or the
 * portable _m path). */
#ifndef CB_TENSOR_QUANT_DOT_H
#define CB_TENSOR_QUANT_DOT_H

#include <stddef.h>

#include "tensor/quant.h"

/* sum_j value_j(row) * x[j] over the first n values of the stored row (cb_kv_kind_bytes(k, n)
 * bytes, any n; a partial last block reads only its first n % block values). x (n). */
float cb_kv_dot(cb_kv_kind k, const void *row, const float *x, size_t n);

/* y[j] += a * value_j(row), j < n. y (n). */
void cb_kv_axpy(cb_kv_kind k, float *y, float a, const void *row, size_t n);

/* The same for m vectors at once, sharing each dequantised block (the small-batch case of
 * matvec): out[i] = row . x[i * ldx .. + n], i < m. x (m, ldx), out (m). */
void cb_kv_dot_m(cb_kv_kind k, float *out, const void *row, const float *x, size_t ldx,
                 size_t n, int m);

/* y[i * ldy + j] += a[i] * value_j(row), j < n, i < m: one stored row (a cached value)
 * added into m accumulators (the query heads of a GQA group). y (m, ldy), a (m). */
void cb_kv_axpy_m(cb_kv_kind k, float *y, size_t ldy, const float *a, const void *row, size_t n,
                  int m);

#endif
