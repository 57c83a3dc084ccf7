/* quant_mm.h: many tokens (a prefill chunk) against q8_0, q4_0 or nf4 weight rows as a
 * matrix-matrix integer product, on AVX512-VNNI: y (n, rows) = x W^T + bias with x already
 * quantised to int8 blocks once per token (cb_act_q8, quant_int.h).
 *
 * Why: the decode kernel's tiles (a row against 8 tokens, two 32-value blocks per register)
 * spend a horizontal layout per token: every 64 multiply-adds cost a dot, a conversion, a
 * scale product and a multiply-add, and the 512-token prefill ran at 0.5-0.95x llama.cpp's.
 * Here the vector lanes are 16 weight rows: each parallel item repacks its rows once into
 * 4-byte column groups (q4_0 nibbles and nf4 levels unpacked to bytes, every weight + its
 * offset as an unsigned byte, one f32 scale per row and 32-value block), and a register tile
 * of 16 rows x 12 tokens runs 8 vpdpbusd per block and token (each 64 multiply-adds, the
 * token's 4 bytes broadcast), then one conversion and one multiply-add of the block's scales.
 * The int32 block sums start at -offset * sum(q) of the token's block, so they are exact.
 *
 * Error: the same as quant_int.h's for the row kernels (the same exact integer block sums and
 * activation and nf4 roundings; each lane adds a row's nb block terms in block order, one
 * rounding for the scale product and one for the multiply-add each), so its bound holds, and
 * tests/unit/backend/test_quant_mm.c asserts it against fp64. */
#ifndef CB_BACKEND_CPU_QUANT_MM_H
#define CB_BACKEND_CPU_QUANT_MM_H

#include "backend/cpu/matvec.h"
#include "backend/cpu/quant_int.h"

/* 1 when the product of W (q8_0, q4_0, nf4) and n tokens goes here: AVX512-VNNI is the
 * integer path in use (cb_qi_path_current), more than 16 tokens, and not disabled. */
int cb_qmm_takes(const cb_weight_matrix *W, int n);
/* enable 0: cb_qmm_takes refuses everything (benchmarks compare the tiles before it). */
void cb_qmm_enable(int enable);

/* y (n, W->rows) = x W^T + bias (rows, or NULL), x as a (n), on the pool's threads; returns 0
 * with y untouched when it cannot (not cb_qmm_takes, or no memory). */
int cb_qmm(float *y, const cb_weight_matrix *W, const cb_act_q8 *a, const float *bias, int n);

#endif
