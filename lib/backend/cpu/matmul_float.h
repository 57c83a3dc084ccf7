/* matmul_float.h: many tokens (a prefill chunk) against fp32, fp16 or bf16 weight rows as a
 * register-tiled matrix-matrix product: y (n, rows) = x (n, cols) W^T + bias.
 *
 * AVX-512 paths (row tiles, the default): the weight rows are read as stored, 6 rows x 64
 * tokens of f32 accumulators in registers, each accumulator lane one token: per column the
 * 4 token vectors are loaded and each row's value broadcast (fp32; fp16 rows widened to f32
 * a 6-row group at a time into a per-thread buffer) or its bf16 pair (vdpbf16ps). The tokens
 * are packed once per product (64-token blocks, column-major; as bf16 pairs for vdpbf16ps),
 * on the pool. A parallel item is up to 48 rows; while a group multiplies the first token
 * block, the next group's stored rows are fetched ahead (a chunk reads every weight from
 * memory again). Nothing is packed per weight: the panels below cost a fifth of an fp16
 * prefill of 64-token chunks.
 *
 * Panels (AVX2, and AVX-512 with cb_mf_panels_force(1) or CB_MF_PANELS=1): each parallel item
 * packs one panel of NR weight rows once, column-major in NR-row groups (fp16 and bf16
 * converted to f32 exactly, or for the bf16 kernel kept as bf16 pairs), and multiplies it by
 * every token: MR tokens x NR rows of f32 accumulators stay in registers over the whole row
 * length. The tokens are packed once per product (MR-token groups, column-major) and shared
 * by all items.
 *
 * Paths, chosen at run time by cpuid (each function carries its own target attribute):
 *   avx512bf16: bf16 weights by vdpbf16ps (row tiles, or panels MR 8 x NR 48): the
 *     activations rounded to bf16 once per product (as llama.cpp does for bf16 weights);
 *     fp32 and fp16 weights as avx512;
 *   avx512: AVX-512F FMA on f32 (row tiles 6 x 64, or panels MR 8 x NR 48), every kind;
 *   avx2: AVX2 FMA on f32 panels (MR 4 x NR 24), every kind;
 *   none: the caller's own products (BLAS).
 *
 * Error against the exact sum over the stored weights w_j (fp64), derived:
 *   f32 (fp32, fp16, and bf16 off the bf16 path; row tiles and panels): the conversion to f32
 *     is exact; each lane sums cols products by FMA in column order (one rounding each), the
 *     result is one lane: |err| <= cols * 2^-24 * sum_j |w_j x_j| (first-order; the sum's
 *     length bounds it).
 *   avx512bf16 on bf16 weights (row tiles and panels: the same pairs in the same order): x_j
 *     rounded to bf16 (RNE, |x_j - x'_j| <= 2^-8 |x_j|, or x_j itself below 2^-126 when the
 *     hardware flushes it to 0), the products w_j x'_j exact in
 *     f32 (8 x 8 bits), and each lane adds 2 products per step (at most 2 roundings a step;
 *     cols / 2 steps): |err| <= 2^-8 sum_j |w_j x_j| + (cols + 2) 2^-24 sum_j |w_j x'_j|
 *     + cols 2^-126 max |w_j| (denormals flushed, inputs and outputs).
 * tests/unit/backend/test_matmul_float.c asserts these on every path the CPU has. */
#ifndef CB_BACKEND_CPU_MATMUL_FLOAT_H
#define CB_BACKEND_CPU_MATMUL_FLOAT_H

#include "backend/cpu/matvec.h"

typedef enum cb_mf_path {
    CB_MF_NONE = 0,      /* no kernel here: the caller's BLAS route */
    CB_MF_AVX2,          /* AVX2, FMA, F16C */
    CB_MF_AVX512,        /* AVX-512 F/VL/DQ/BW */
    CB_MF_AVX512BF16,    /* the above and AVX512-BF16 */
    CB_MF_PATH_COUNT
} cb_mf_path;

int cb_mf_path_supported(cb_mf_path path);
/* The best supported path unless cb_mf_path_force chose another. */
cb_mf_path cb_mf_path_current(void);
/* Use path from now on (tests); 0 and no change when the CPU cannot run it. */
int cb_mf_path_force(cb_mf_path path);
const char *cb_mf_path_name(cb_mf_path path);

/* The AVX-512 paths multiply by row tiles (the default) or, when this is 1, by the panels
 * above (what they did before; CB_MF_PANELS=1 in the environment sets it at the first call,
 * for comparing the two in one build, or as a way back should the row tiles misbehave). */
int cb_mf_panels(void);
void cb_mf_panels_force(int on);

/* 1 when the current path takes W (fp32, fp16 or bf16) and n tokens. */
int cb_mf_takes(const cb_weight_matrix *W, int n);

/* y (n, W->rows) = x (n, W->cols) W^T + bias (rows, or NULL), on the pool's threads; returns 0
 * with y untouched when it cannot (not cb_mf_takes, or no memory for the packed tokens). */
int cb_mf_matmul(float *y, const cb_weight_matrix *W, const float *x, const float *bias, int n);

#endif
