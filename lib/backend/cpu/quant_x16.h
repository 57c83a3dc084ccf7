/* quant_x16.h: q8_0 and q4_0 weight matrices stored as groups of 16 rows, so that the
 * integer products of one token (or a few) put 16 rows in the 16 lanes of a register.
 *
 * Why: in the row layout (quant_int.h) every 32-value block of a row costs its own dot, a
 * permute for its fp16 scale, a conversion and a multiply-add, and the one-token q4_0 kernel
 * spent about 11 vector operations per 96 weights: compute-bound at 31-43 GB/s of weights a
 * Zen 5 core, below what its caches serve (issue 21: q4_0 at 42-48% of its working set's
 * read on two cores). Here each 64-byte load holds 4 bytes of each of 16 rows, multiplied
 * against the token's 4 activation bytes broadcast (the broadcast folded into vpdpbusd),
 * and a block's 16 scales are one fp16 load: about 28 operations per 512 q4_0 weights.
 *
 * Layout of a matrix (rows a multiple of 16, nbk = ceil(cols / 32) blocks a row), group g
 * (rows 16g .. 16g + 15) at byte g * 16 * row_bytes, the same bytes as its 16 rows (the
 * matrix's size does not change):
 *   values: nbk blocks of V bytes (q4_0 V = 256, q8_0 V = 512): block b holds V / 64 vectors
 *     of 64 bytes; vector k's bytes 4r .. 4r + 3 are row r's stored bytes 4k .. 4k + 3 of its
 *     block b: q4_0 its nibble bytes as stored (low nibbles values 4k .. 4k + 3, high nibbles
 *     values 16 + 4k ..), q8_0 its int8 values + 128 (unsigned, as vpdpbusd takes them);
 *   scales: then nbk times the 16 rows' fp16 scales of block b (32 bytes).
 * A partial last block keeps the zero padding cb_kv_quantize_row gives it.
 *
 * Products: y = W x with x quantised once a token (cb_act_q8); each lane's block sum is
 * exact (starting at -8 or -128 times the sum of the activation block, the stored offset),
 * converted, scaled by the product of the two scales (one rounding) and added into the
 * row's lane (one rounding, nb additions a lane), so quant_int.h's bound holds unchanged
 * (tests/unit/backend/test_quant_x16.c asserts it against fp64). The AVX512-VNNI kernel and
 * the portable loop compute the same block sums. */
#ifndef CB_BACKEND_CPU_QUANT_X16_H
#define CB_BACKEND_CPU_QUANT_X16_H

#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/quant_int.h"
#include "tensor/quant.h"

#define CB_X16_ROWS 16

/* 1 when a (rows, cols) matrix of kind is stored as groups here from now on: q8_0 or q4_0,
 * rows a multiple of 16, AVX512-VNNI the integer path in use (cb_qi_path_current), and
 * CB_QI_X16 not 0 in the environment (read once). */
int cb_x16_wanted(cb_kv_kind kind, int rows);

/* dst (rows * row_bytes, 64-byte aligned) = the rows of kind (row layout, row_bytes apart:
 * cb_kv_kind_bytes(kind, cols)) regrouped as above, group by group. */
void cb_x16_pack_group(void *dst, const void *rows16, cb_kv_kind kind, int cols);

/* y[i * ldy + r] = row r . token i for the ng * 16 rows of groups g0 .. g0 + ng - 1 (r from
 * 0 at group g0's first row), i < m (1 <= m <= CB_QI_MAX_M); data: the whole matrix; a (m)
 * quantised tokens of cols values. Groups ahead are prefetched. */
void cb_x16_dot(cb_kv_kind kind, float *y, size_t ldy, const void *data, int cols, int g0, int ng,
                const cb_act_q8 *a, int m);

/* The same with x (m, cols, ldx apart) in f32: each weight converted (no activation
 * rounding), for when the activations could not be quantised (no memory). */
void cb_x16_dot_f32(cb_kv_kind kind, float *y, size_t ldy, const void *data, int cols, int g0, int ng,
                    const float *x, size_t ldx, int m);

/* row (row_bytes of kind's row layout) = row r of a grouped matrix, as it was stored before
 * grouping (the fp16 scale and stored values of each block). */
void cb_x16_get_row(void *row, const void *data, cb_kv_kind kind, int cols, int r);

/* Group g as quant_mm's 16-row panel: wp (nbk * 8 * 64 bytes) column group q of block b at
 * (b * 8 + q) * 64, lane r row r's values 4q .. 4q + 3 as unsigned bytes (stored + offset);
 * dw (nbk * 16) the scales in f32. */
void cb_x16_unpack_group(uint8_t *wp, float *dw, const void *data, cb_kv_kind kind, int cols, int g);

#endif
