/* quant_act.h: activations quantised to int16 per 32-value block, and the integer dot
 * products of q8_0 rows against them: the inner loop of a q8_0-weight matvec.
 *
 * Why: widening each int8 weight to f32 (sign-extend, convert, multiply-add) made a q8_0
 * matvec compute-bound at about 3.5 cycles per block per core, below what the memory can
 * feed. With the input vector as int16 the products are one vpmaddwd per 32 weights
 * (int8 sign-extended to int16 times int16, pairs summed into int32), and a block costs one
 * conversion and one multiply-add in f32.
 *
 * Error: x[j] is stored as q[j] * d with d = amax / 32767 over its block, |x[j] - q[j] d| <=
 * d / 2, so a q8_0 row's dot product moves by at most sum_j |w_j| * d(block of j) / 2 --
 * 2^-16 of the block's largest input per weight magnitude, about 200 times below the q8_0
 * weights' own rounding (test_matvec.c checks the sum of both bounds). The int32 sums
 * are exact: |pair| <= 2 * 127 * 32767 < 2^31. */
#ifndef CB_TENSOR_QUANT_ACT_H
#define CB_TENSOR_QUANT_ACT_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/quant.h"

#define CB_ACT_BLOCK 32 /* = CB_QK8_0: one scale per weight block */

/* Blocks of n values: ceil(n / 32). */
static inline size_t cb_act_blocks(size_t n) { return (n + CB_ACT_BLOCK - 1) / CB_ACT_BLOCK; }

/* x (n) -> q (cb_act_blocks(n) * 32, the tail of a partial last block zeroed), d
 * (cb_act_blocks(n)): q[j] = round-to-nearest-even(x[j] / d), d = amax / 32767 of the block
 * (a block of zeros: d = 0, q = 0). */
void cb_act_quantize_i16(int16_t *q, float *d, const float *x, size_t n);

/* sum over nb blocks of row[b].d * d[b] * sum_j row[b].qs[j] * q[32 b + j]: a q8_0 row
 * (nb blocks, a partial last block zero-padded as cb_quantize_row stores it) against one
 * quantised vector. */
float cb_q8_0_dot_i16(const cb_block_q8_0 *row, const int16_t *q, const float *d, size_t nb);

/* The same for m vectors (m <= 8) sharing each widened block: out[i] = row . vector i,
 * vector i at q + i * ldq values and d + i * ldd blocks. */
void cb_q8_0_dot_i16_m(float *out, const cb_block_q8_0 *row, const int16_t *q, size_t ldq,
                       const float *d, size_t ldd, size_t nb, int m);

#endif
